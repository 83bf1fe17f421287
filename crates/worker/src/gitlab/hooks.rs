//! Install our webhooks: a group hook where the plan allows it, else a project hook per project.
//! Idempotent: a hook already pointing at our endpoint is updated, never duplicated.

use connector_check::token_problem;
use connector_store::connections::{self, Connection, HookTarget, Status};
use connector_store::hooks::HookScope;
use connector_store::jobs::{self, Job};
use connector_store::{TenantId, hooks};
use gitlab_client::api::hooks::{Hook, HookOwner, HookSpec};
use gitlab_client::api::projects::Project;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use secrecy::SecretString;
use uuid::Uuid;

use super::disconnect::owner_of;
use super::{GitLabJobs, gitlab_retry, retry};
use crate::runner::JobError;

impl GitLabJobs {
    pub(super) async fn install_hooks(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        let client = match self.client(&connection, token) {
            Ok(client) => client,
            Err(error) => return self.gitlab_failure(tenant, id, error).await,
        };
        if !self.put_hooks(tenant, &connection, &client).await? {
            return Ok(());
        }
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        // What validation or the hooks had to say (a token expiring soon, project hooks in place
        // of a refused group hook) stays shown.
        let notice = connections::get(&mut tx, id).await.map_err(retry)?.status_message;
        connections::set_status(&mut tx, id, Status::Backfilling, notice.as_deref()).await.map_err(retry)?;
        jobs::enqueue(&mut tx, Job::Backfill { connection: id }, std::time::Duration::ZERO).await.map_err(retry)?;
        tx.commit().await.map_err(retry)?;
        tracing::info!(connection = %id, "hooks installed");
        Ok(())
    }

    /// Installs or updates a hook on every target validation chose. `Ok(false)` when GitLab
    /// refused for a reason the user must fix; the connection's status then says which.
    pub(super) async fn put_hooks(&self, tenant: &TenantId, connection: &Connection, client: &GitLabClient) -> Result<bool, JobError> {
        // Targets change when a group refuses its hook; the loop then starts over on the new ones
        // (hooks already installed are updated in place, not duplicated).
        'targets: loop {
            let targets = {
                let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                connections::hook_targets(&mut tx, connection.id).await.map_err(retry)?
            };
            for target in &targets {
                match self.put_target_hook(tenant, connection, client, target).await? {
                    Put::Installed => {}
                    Put::Stopped => return Ok(false),
                    Put::TargetsChanged => continue 'targets,
                }
            }
            return Ok(true);
        }
    }

    async fn put_target_hook(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        target: &HookTarget,
    ) -> Result<Put, JobError> {
        let id = connection.id;
        let (record, secrets) = {
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            let ensured = hooks::ensure(&mut tx, self.store.keys(), id, target.scope, target.id).await.map_err(retry)?;
            tx.commit().await.map_err(retry)?;
            ensured
        };
        let owner = owner_of(&record);
        let url = self.endpoint_url(record.id);
        let spec = hook_spec(&owner, &url, secrets.token, secrets.signing_token);
        let installed = match put_hook(client, &owner, &url, record.gitlab_hook_id, &spec).await {
            Ok(hook) => hook,
            // Validation chose a group hook only for a group the user owned: a refusal is most
            // likely the instance's (no license for group webhooks); project hooks work on every
            // tier, and one refused in turn says which role is missing.
            Err(GitLab::Forbidden { .. }) | Err(GitLab::NotFound { .. }) if target.scope == HookScope::Group => {
                return self.fall_back_to_project_hooks(tenant, connection, client, record.id, target.id).await;
            }
            Err(GitLab::Forbidden { .. }) | Err(GitLab::NotFound { .. }) => {
                let message = format!(
                    "GitLab refused to install a webhook on {} {}: the token's user needs the Maintainer role there",
                    target.scope, target.id
                );
                self.user_problem(tenant, id, Status::Invalid, &message).await?;
                return Ok(Put::Stopped);
            }
            Err(error) => {
                self.gitlab_failure(tenant, id, error).await?;
                return Ok(Put::Stopped);
            }
        };
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        let signing = installed.signing_token_present.unwrap_or(false);
        hooks::set_installed(&mut tx, record.id, installed.id as i64, signing).await.map_err(retry)?;
        tx.commit().await.map_err(retry)?;
        Ok(Put::Installed)
    }

    /// GitLab refused a group hook to the group's Owner: a self-managed EE instance without a
    /// license for group webhooks does so, and its plan (`default`) could not tell beforehand.
    /// The group's synced projects get project hooks instead, and the connection says so.
    async fn fall_back_to_project_hooks(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        refused: Uuid,
        group: i64,
    ) -> Result<Put, JobError> {
        let in_group: Vec<Project> = client.collect_all(PageRequest::group_projects(group as u64)).await.map_err(gitlab_retry)?;
        let synced = connection.resolved_project_ids.clone().unwrap_or_default();
        let projects: Vec<i64> = in_group.iter().map(|p| p.id as i64).filter(|p| synced.contains(p)).collect();
        let notice = format!(
            "GitLab refused a group webhook on group {group} (a self-managed GitLab without a license for group webhooks \
             refuses them even to the group's Owner): project webhooks are installed on its {} synced projects instead",
            projects.len()
        );
        tracing::info!(connection = %connection.id, group, projects = projects.len(), "group hook refused; falling back to project hooks");
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        connections::fall_back_to_project_hooks(&mut tx, connection.id, group, &projects, &notice).await.map_err(retry)?;
        hooks::delete(&mut tx, refused).await.map_err(retry)?;
        tx.commit().await.map_err(retry)?;
        Ok(Put::TargetsChanged)
    }

    /// `PUBLIC_URL/webhooks/gitlab/{endpoint}`.
    fn endpoint_url(&self, endpoint: Uuid) -> String {
        format!("{}/webhooks/gitlab/{endpoint}", self.settings.public_url.as_str().trim_end_matches('/'))
    }

    /// A token problem becomes the connection's status; anything else is retried.
    pub(super) async fn gitlab_failure(&self, tenant: &TenantId, id: Uuid, error: GitLab) -> Result<(), JobError> {
        match token_problem(&error) {
            Some((verdict, message)) => self.user_problem(tenant, id, verdict.status(), &message).await,
            None => Err(gitlab_retry(error)),
        }
    }
}

/// What became of one target's hook.
enum Put {
    Installed,
    /// GitLab refused for a reason the user must fix, or failed; the connection says which.
    Stopped,
    /// The connection's targets changed (a group hook gave way to project hooks).
    TargetsChanged,
}

/// Updates the hook we installed before (by id, else by URL), or creates it.
async fn put_hook(client: &GitLabClient, owner: &HookOwner, url: &str, known_id: Option<i64>, spec: &HookSpec) -> Result<Hook, GitLab> {
    let existing = client.hooks(owner).await?;
    let ours = existing.iter().find(|h| Some(h.id as i64) == known_id || h.url == url);
    match ours {
        // The token is sent again on every update: GitLab resets it whenever the URL changes.
        Some(hook) => client.update_hook(owner, hook.id, spec).await,
        None => client.create_hook(owner, spec).await,
    }
}

fn hook_spec(owner: &HookOwner, url: &str, token: SecretString, signing_token: SecretString) -> HookSpec {
    let group = matches!(owner, HookOwner::Group(_));
    HookSpec {
        url: url.to_owned(),
        name: Some("Coworker".into()),
        description: Some("Sends this GitLab's activity to Coworker. Managed by the Coworker GitLab connector.".into()),
        token: Some(token),
        signing_token: Some(signing_token),
        enable_ssl_verification: Some(url.starts_with("https://")),
        push_events: Some(true),
        tag_push_events: Some(true),
        merge_requests_events: Some(true),
        issues_events: Some(true),
        confidential_issues_events: Some(true),
        note_events: Some(true),
        confidential_note_events: Some(true),
        pipeline_events: Some(true),
        job_events: Some(true),
        deployment_events: Some(true),
        releases_events: Some(true),
        subgroup_events: group.then_some(true),
        member_events: group.then_some(true),
        project_events: group.then_some(true),
    }
}
