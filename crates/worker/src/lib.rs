//! The job-queue worker: apalis on the service's PostgreSQL, one named queue per kind of work,
//! our own retry with backoff and jitter, dead letters the API can show, and periodic jobs that
//! run once per period across every replica.

mod gitlab;
mod rate_budget;
mod retry;
mod runner;
mod scheduler;

pub use gitlab::{DEFAULT_OUTAGE_PATIENCE, DEFAULT_TOKEN_ROTATION_LEASE, Disconnected, GitLabJobs, SyncSettings};
pub use rate_budget::SharedRateBudget;
pub use retry::RetryPolicy;
pub use runner::{JobError, Jobs, WorkerConfig, run_workers};
pub use scheduler::{
    Periodic, STALL_CHECK_EVERY, STALLED_AFTER, ScheduleConfig, claim_period, enqueue_due, requeue_stalled, run_scheduler,
};
