//! Counters the caller can read to see what the client did (demo output, benchmarks), and a hook
//! that tells a process-wide observer (metrics) the same as it happens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Told about every request as it happens, across all clients given it in
/// [`ClientOptions::observer`](crate::ClientOptions::observer).
pub trait Observer: Send + Sync + 'static {
    /// One attempt ended with `status`, or with no response at all (`None`: timeout, connection
    /// failure, refused by the URL policy).
    fn attempt(&self, status: Option<u16>);
    /// The rate budget delayed a request by `wait` (never zero).
    fn rate_limit_wait(&self, wait: Duration);
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limit_waits: AtomicU64,
    rate_limit_wait_micros: AtomicU64,
    rate_limited_responses: AtomicU64,
}

/// A point-in-time copy of a client's counters (shared by all its clones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Attempts that were retries of an earlier failed attempt.
    pub retries: u64,
    /// Requests the rate budget delayed.
    pub rate_limit_waits: u64,
    /// Total time spent in those delays.
    pub rate_limit_wait: Duration,
    /// 429 responses received.
    pub rate_limited_responses: u64,
}

impl Stats {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        self.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.rate_limit_wait_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited_responses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limit_waits: self.rate_limit_waits.load(Ordering::Relaxed),
            rate_limit_wait: Duration::from_micros(self.rate_limit_wait_micros.load(Ordering::Relaxed)),
            rate_limited_responses: self.rate_limited_responses.load(Ordering::Relaxed),
        }
    }
}
