//! Validate a connection: the token, its user, each group (visible, plan, role) and the
//! projects to sync, as [`connector_check`] asks GitLab. The first problem the user can fix
//! becomes a status and a message that says what to do.

use connector_check::{NO_GITLAB, Settings, Unavailable};
use connector_store::connections::{self, Status};
use connector_store::jobs::{self, Job};
use connector_store::{TenantId, sync};
use serde_json::Value;
use uuid::Uuid;

use super::{GitLabJobs, gitlab_retry, retry};
use crate::runner::JobError;

impl GitLabJobs {
    pub(super) async fn validate(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        {
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            connections::set_status(&mut tx, id, Status::Validating, None).await.map_err(retry)?;
            tx.commit().await.map_err(retry)?;
        }
        let settings = Settings { groups_list: &connection.groups_list, projects_list: &connection.projects_list, max_projects: None };
        let report = match self.client(&connection, token) {
            Ok(client) => connector_check::check(&client, settings).await,
            Err(error) => connector_check::refused(error),
        };
        let error = match report.map(|r| r.into_validated()) {
            Ok(Ok((validated, projects))) => {
                let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                sync::upsert_projects(&mut tx, id, &Value::Array(projects)).await.map_err(retry)?;
                connections::record_validation(&mut tx, id, &validated).await.map_err(retry)?;
                jobs::enqueue(&mut tx, Job::InstallHooks { connection: id }, std::time::Duration::ZERO).await.map_err(retry)?;
                tx.commit().await.map_err(retry)?;
                tracing::info!(connection = %id, mode = ?validated.hook_mode, projects = validated.resolved_project_ids.len(), "validated");
                return Ok(());
            }
            Ok(Err(problem)) => return self.user_problem(tenant, id, problem.verdict.status(), &problem.message).await,
            // Worth the job's retries (GitLab may be restarting, a proxy in front of it starting),
            // all under the one message, which the connection shows meanwhile.
            Err(Unavailable::NoGitLab) => JobError::Retry { reason: NO_GITLAB.to_owned(), after: None },
            Err(Unavailable::GitLab(error)) => gitlab_retry(error),
        };
        // Why validation is not done yet, shown until it is.
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        let shown = format!("will retry: {error}");
        match connections::set_status(&mut tx, id, Status::Validating, Some(&shown)).await {
            Ok(()) | Err(connector_store::Error::NotFound) => {}
            Err(e) => return Err(retry(e)),
        }
        tx.commit().await.map_err(retry)?;
        Err(error)
    }
}
