//! Read one object back from GitLab, for what a webhook could not tell: a merge request's merge
//! or close time (its hook carries neither), its commits after a push (the hook lists none),
//! or which of two versions from the same second is the later (hooks give whole seconds). The
//! object lands through the same upserts as a backfill page, so REST's fuller and more precise
//! version wins, and reading it twice changes nothing.

use connector_store::TenantId;
use connector_store::connections::Status;
use connector_store::jobs::ObjectRef;
use connector_store::sync::Resource;
use gitlab_client::Error as GitLab;
use serde_json::Value;
use uuid::Uuid;

use super::streams::{fetch_children_of, store_children, store_items};
use super::{GitLabJobs, retry};
use crate::runner::JobError;

impl GitLabJobs {
    pub(super) async fn refresh(&self, tenant: &TenantId, id: Uuid, object: &ObjectRef) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        // A connection that is not syncing (needs the user, or is going away) reads nothing;
        // a later backfill or catch-up reads the object anyway.
        if !matches!(connection.status, Status::Backfilling | Status::Live) {
            return Ok(());
        }
        let client = match self.client(&connection, token) {
            Ok(client) => client,
            Err(error) => return self.gitlab_failure(tenant, id, error).await,
        };
        let (project, resource, fetched) = match *object {
            ObjectRef::MergeRequest { project, iid } => {
                (project, Resource::MergeRequests, client.merge_request::<Value>(project as u64, iid as u64).await)
            }
            ObjectRef::Issue { project, iid } => (project, Resource::Issues, client.issue::<Value>(project as u64, iid as u64).await),
            ObjectRef::Pipeline { project, id } => {
                (project, Resource::Pipelines, client.pipeline::<Value>(project as u64, id as u64).await)
            }
        };
        let item = match fetched {
            Ok(item) => item,
            // Gone, or no longer visible: the id comparison of the next catch-up decides whether
            // it is deleted, as for anything GitLab deletes without telling.
            Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => return Ok(()),
            Err(error) => return self.gitlab_failure(tenant, id, error).await,
        };
        let children = match object {
            ObjectRef::MergeRequest { iid, .. } | ObjectRef::Issue { iid, .. } => {
                match fetch_children_of(&client, project, resource, vec![*iid as u64]).await {
                    Ok(children) => children,
                    Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => Vec::new(),
                    Err(error) => return self.gitlab_failure(tenant, id, error).await,
                }
            }
            ObjectRef::Pipeline { .. } => Vec::new(),
        };
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        store_items(&mut tx, id, project, resource, vec![item]).await.map_err(retry)?;
        for child in children {
            store_children(&mut tx, id, project, resource, child).await.map_err(retry)?;
        }
        tx.commit().await.map_err(retry)
    }
}
