//! The error of a sync step (a page, a comparison, a hook repair), so that a backfill slice or a
//! catch-up is written with `?` and its job learns once, at the end, what the failure means.

use connector_store::TenantId;
use gitlab_client::Error as GitLab;
use uuid::Uuid;

use super::{GitLabJobs, retry};
use crate::runner::JobError;

/// Why a step of a sync stopped: GitLab's answer (for [`GitLabJobs::step_failure`] to map to a
/// status or a retry), the database's (always worth a retry), or what a step decided itself.
#[derive(Debug)]
pub(super) enum StepError {
    GitLab(GitLab),
    Store(connector_store::Error),
    Job(JobError),
}

impl From<GitLab> for StepError {
    fn from(e: GitLab) -> Self {
        StepError::GitLab(e)
    }
}

impl From<connector_store::Error> for StepError {
    fn from(e: connector_store::Error) -> Self {
        StepError::Store(e)
    }
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> Self {
        StepError::Store(e.into())
    }
}

impl From<JobError> for StepError {
    fn from(e: JobError) -> Self {
        StepError::Job(e)
    }
}

impl GitLabJobs {
    /// What a sync step's failure means for its job.
    pub(super) async fn step_failure(&self, tenant: &TenantId, id: Uuid, error: StepError) -> Result<(), JobError> {
        match error {
            StepError::GitLab(e) => self.gitlab_failure(tenant, id, e).await,
            StepError::Store(e) => Err(retry(e)),
            StepError::Job(e) => Err(e),
        }
    }
}
