//! Disconnect: remove our hooks from GitLab, then delete the connection with its sealed token
//! and everything synced through it.

use connector_store::hooks::{self, HookRecord, HookScope};
use connector_store::{TenantId, connections};
use gitlab_client::api::ResourceId;
use gitlab_client::api::hooks::HookOwner;
use gitlab_client::{Error as GitLab, ErrorKind};
use uuid::Uuid;

use super::{GitLabJobs, gitlab_retry, retry};
use crate::runner::JobError;

/// What a disconnection did in GitLab.
#[derive(Debug, Default)]
pub struct Disconnected {
    /// Our hooks it removed (or found already gone).
    pub hooks_removed: usize,
    /// Each hook it could not remove, and why (the token can no longer act, GitLab refused).
    /// Such a hook fails its deliveries (an unknown endpoint) until GitLab disables it.
    pub left_behind: Vec<String>,
}

impl GitLabJobs {
    pub(super) async fn disconnect(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        self.disconnect_now(tenant, id).await.map(|_| ())
    }

    /// Removes our hooks from GitLab, then deletes the connection with everything stored of it
    /// ([`connections::delete`]). A connection already gone is `Ok` with nothing done. The
    /// operator's tenant deletion calls this directly, to report what it did.
    pub async fn disconnect_now(&self, tenant: &TenantId, id: Uuid) -> Result<Disconnected, JobError> {
        let Some((connection, token)) = self.load_any(tenant, id).await? else { return Ok(Disconnected::default()) };
        let installed: Vec<HookRecord> = {
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            hooks::for_connection(&mut tx, id).await.map_err(retry)?
        };
        let mut left_behind = Vec::new();
        let mut hooks_removed = 0;
        match self.client(&connection, token) {
            Ok(client) => {
                for hook in installed.iter().filter(|h| h.gitlab_hook_id.is_some()) {
                    let owner = owner_of(hook);
                    let gitlab_id = hook.gitlab_hook_id.expect("filtered") as u64;
                    match client.delete_hook(&owner, gitlab_id).await {
                        // Already gone (a retried delete, or removed by hand): done either way.
                        Ok(()) | Err(GitLab::NotFound { .. }) => hooks_removed += 1,
                        // The token can no longer act: removing the hook is clearly impossible for
                        // us; it will fail its deliveries (unknown endpoint) and GitLab disables it.
                        Err(e) if e.is_token_problem() || e.kind() == ErrorKind::Forbidden || e.kind() == ErrorKind::Blocked => {
                            left_behind.push(format!("{} {} hook {gitlab_id}: {e}", hook.scope, hook.gitlab_target_id));
                        }
                        Err(e) => return Err(gitlab_retry(e)),
                    }
                }
            }
            Err(e) => left_behind.push(format!("all hooks: {e}")),
        }
        if !left_behind.is_empty() {
            tracing::warn!(connection = %id, hooks = ?left_behind, "could not remove some hooks from GitLab");
        }
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        match connections::delete(&mut tx, id).await {
            Ok(()) | Err(connector_store::Error::NotFound) => {}
            Err(e) => return Err(retry(e)),
        }
        tx.commit().await.map_err(retry)?;
        tracing::info!(connection = %id, hooks_removed, "disconnected");
        Ok(Disconnected { hooks_removed, left_behind })
    }
}

pub(super) fn owner_of(hook: &HookRecord) -> HookOwner {
    let id = ResourceId::Id(hook.gitlab_target_id as u64);
    match hook.scope {
        HookScope::Group => HookOwner::Group(id),
        HookScope::Project => HookOwner::Project(id),
    }
}
