//! Install our webhooks: a group hook where the plan allows it, else a project hook per project.
//! Idempotent: a hook already pointing at our endpoint is updated, never duplicated.

use connector_store::connections::{self, Connection, Status};
use connector_store::jobs::{self, Job};
use connector_store::{TenantId, hooks};
use gitlab_client::api::hooks::{Hook, HookOwner, HookSpec};
use gitlab_client::{Error as GitLab, GitLabClient};
use secrecy::SecretString;
use uuid::Uuid;

use super::disconnect::owner_of;
use super::{GitLabJobs, gitlab_retry, retry, token_problem};
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
        connections::set_status(&mut tx, id, Status::Backfilling, None).await.map_err(retry)?;
        jobs::enqueue(&mut tx, Job::Backfill { connection: id }, std::time::Duration::ZERO).await.map_err(retry)?;
        tx.commit().await.map_err(retry)?;
        tracing::info!(connection = %id, "hooks installed");
        Ok(())
    }

    /// Installs or updates a hook on every target validation chose. `Ok(false)` when GitLab
    /// refused for a reason the user must fix; the connection's status then says which.
    pub(super) async fn put_hooks(&self, tenant: &TenantId, connection: &Connection, client: &GitLabClient) -> Result<bool, JobError> {
        let id = connection.id;
        let targets = {
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            connections::hook_targets(&mut tx, id).await.map_err(retry)?
        };
        for target in targets {
            let (record, secrets) = {
                let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                let ensured = hooks::ensure(&mut tx, self.store.keys(), id, &target.scope, target.id).await.map_err(retry)?;
                tx.commit().await.map_err(retry)?;
                ensured
            };
            let owner = owner_of(&record);
            let url = self.endpoint_url(record.id);
            let spec = hook_spec(&owner, &url, secrets.token, secrets.signing_token);
            let installed = match put_hook(client, &owner, &url, record.gitlab_hook_id, &spec).await {
                Ok(hook) => hook,
                Err(GitLab::Forbidden { .. }) | Err(GitLab::NotFound { .. }) => {
                    let role = if target.scope == "group" { "Owner" } else { "Maintainer" };
                    let message = format!(
                        "GitLab refused to install a webhook on {} {}: the token's user needs the {role} role there",
                        target.scope, target.id
                    );
                    self.user_problem(tenant, id, Status::Invalid, &message).await?;
                    return Ok(false);
                }
                Err(error) => {
                    self.gitlab_failure(tenant, id, error).await?;
                    return Ok(false);
                }
            };
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            let signing = installed.signing_token_present.unwrap_or(false);
            hooks::set_installed(&mut tx, record.id, installed.id as i64, signing).await.map_err(retry)?;
            tx.commit().await.map_err(retry)?;
        }
        Ok(true)
    }

    /// `PUBLIC_URL/webhooks/gitlab/{endpoint}`.
    fn endpoint_url(&self, endpoint: Uuid) -> String {
        format!("{}/webhooks/gitlab/{endpoint}", self.settings.public_url.as_str().trim_end_matches('/'))
    }

    /// A token problem becomes the connection's status; anything else is retried.
    pub(super) async fn gitlab_failure(&self, tenant: &TenantId, id: Uuid, error: GitLab) -> Result<(), JobError> {
        match token_problem(&error) {
            Some((status, message)) => self.user_problem(tenant, id, status, &message).await,
            None => Err(gitlab_retry(error)),
        }
    }
}

/// Updates the hook we installed before (by id, else by URL), or creates it.
async fn put_hook(
    client: &GitLabClient,
    owner: &HookOwner,
    url: &str,
    known_id: Option<i64>,
    spec: &HookSpec,
) -> Result<Hook, GitLab> {
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
