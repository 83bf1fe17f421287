//! The periodic catch-up of a live connection (and the last step of a backfill): fetch what
//! changed since each stream's high-water mark, the time its last read began (with overlap, for
//! clocks that differ), so that what webhooks missed (dropped over GitLab's rate limit, a push of
//! more than 3 refs, a disabled hook) and what changed while a read ran still arrive; find new
//! commits from the branch heads (`history`); compare ids with GitLab's when due (`reconcile`);
//! repair or re-create our hooks; follow projects into and out of the groups.

use chrono::{DateTime, Utc};
use connector_store::connections::{self, Connection, HookMode, Status};
use connector_store::hooks::HookStatus;
use connector_store::jobs::Job;
use connector_store::sync::Resource;
use connector_store::{TenantId, hooks, sync};
use gitlab_client::api::projects::Project;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;
use uuid::Uuid;

use super::GitLabJobs;
use super::disconnect::owner_of;
use super::locks::Locked;
use super::step::StepError;
use super::streams::{Advance, Fetched, fetch_page, first_request, store_page};
use crate::runner::JobError;

/// How far before the high-water mark each catch-up looks again.
const OVERLAP: chrono::Duration = chrono::Duration::minutes(10);

impl GitLabJobs {
    pub(super) async fn catch_up(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        if connection.status != Status::Live {
            return Ok(());
        }
        let client = match self.client(&connection, token) {
            Ok(client) => client,
            Err(error) => return self.gitlab_failure(tenant, id, error).await,
        };
        let outcome = self.with_sync_lock(tenant, id, self.catch_up_locked(tenant, &connection, &client)).await?;
        match outcome {
            Locked::ConnectionBusy | Locked::Ran(Ok(())) => Ok(()),
            Locked::TenantBusy => self.wait_turn(tenant, Job::CatchUp { connection: id }).await,
            Locked::Ran(Err(error)) => self.step_failure(tenant, id, error).await,
        }
    }

    pub(super) async fn catch_up_locked(&self, tenant: &TenantId, connection: &Connection, client: &GitLabClient) -> Result<(), StepError> {
        self.repair_hooks(tenant, connection, client).await?;
        let projects = self.follow_projects(tenant, connection, client).await?;
        for project in projects {
            self.catch_up_project(tenant, connection, client, project).await?;
        }
        let mut tx = self.store.tenant_tx(tenant).await?;
        connections::mark_live(&mut tx, connection.id, self.settings.catch_up_interval).await?;
        Ok(tx.commit().await?)
    }

    async fn catch_up_project(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
    ) -> Result<(), StepError> {
        self.catch_up_commits(tenant, connection, client, project).await?;
        self.reconcile_commit_notes(tenant, connection, client, project).await?;
        // Commits are found from the branch heads, above.
        for resource in [Resource::MergeRequests, Resource::Issues, Resource::Pipelines] {
            self.catch_up_stream(tenant, connection, client, project, resource).await?;
            self.reconcile_stream(tenant, connection, client, project, resource).await?;
        }
        Ok(())
    }

    /// Reads what changed in one stream since its mark, in an order that does not move, and
    /// moves the mark to when this read began once the read is whole.
    async fn catch_up_stream(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
        resource: Resource,
    ) -> Result<(), StepError> {
        let mark = {
            let mut tx = self.store.tenant_tx(tenant).await?;
            sync::checkpoint(&mut tx, connection.id, project, resource).await?.and_then(|c| c.high_water_mark)
        };
        let started = Utc::now();
        let mut request = first_request(project, resource, &since(mark, connection.start_date));
        loop {
            let fetched = fetch_page(client, project, resource, &mut request, true).await?;
            let next = match &fetched {
                Fetched::Page { next, .. } => next.clone(),
                Fetched::Skipped(_) => None,
            };
            let advance = next.is_none().then_some(Advance { cursor: None, mark: Some(started), counts: false, done: true });
            let mut tx = self.store.tenant_tx(tenant).await?;
            store_page(&mut tx, connection.id, project, resource, fetched, advance).await?;
            tx.commit().await?;
            match next {
                Some(next) => request = next,
                None => return Ok(()),
            }
        }
    }

    /// Checks each of our hooks in GitLab: one deleted there is installed again; one GitLab
    /// disabled for failing is marked so the API shows it (and updated, which GitLab may accept
    /// as a reason to try it again).
    async fn repair_hooks(&self, tenant: &TenantId, connection: &Connection, client: &GitLabClient) -> Result<(), StepError> {
        let records = hooks::for_connection(&mut self.store.tenant_tx(tenant).await?, connection.id).await?;
        let mut reinstall = false;
        for record in records {
            let Some(gitlab_id) = record.gitlab_hook_id else {
                reinstall = true;
                continue;
            };
            let state = match client.hook(&owner_of(&record), gitlab_id as u64).await {
                Ok(hook) => Some(hook.alert_status.unwrap_or_else(|| "executable".into())),
                Err(GitLab::NotFound { .. }) => {
                    tracing::warn!(connection = %connection.id, hook = %record.id, "our hook is gone from GitLab; re-creating");
                    reinstall = true;
                    None
                }
                Err(e) => return Err(e.into()),
            };
            // GitLab's alert_status: executable, temporarily_disabled or permanently_disabled
            // (an unknown newer value is taken as the worst).
            let (status, message) = match state.as_deref() {
                Some("executable") => (HookStatus::Active, None),
                None => (HookStatus::Missing, Some("deleted on the GitLab side; being re-created")),
                Some("temporarily_disabled") => (HookStatus::Failing, Some("GitLab paused this hook after failed deliveries")),
                Some(_) => (HookStatus::Disabled, Some("GitLab disabled this hook after repeated failed deliveries")),
            };
            if status != HookStatus::Active {
                reinstall = true;
            }
            let mut tx = self.store.tenant_tx(tenant).await?;
            hooks::set_status(&mut tx, record.id, status, message).await?;
            tx.commit().await?;
        }
        if reinstall {
            self.put_hooks(tenant, connection, client).await?;
        }
        Ok(())
    }

    /// The projects now in the connection's groups. Those gone (deleted, or moved out of the
    /// groups) leave the sync with their data, whether the connection lists its projects or not;
    /// without a `projects_list`, new ones join (and get a hook where hooks are per project).
    async fn follow_projects(&self, tenant: &TenantId, connection: &Connection, client: &GitLabClient) -> Result<Vec<i64>, StepError> {
        let known = connection.resolved_project_ids.clone().unwrap_or_default();
        let mut all: Vec<Project> = Vec::new();
        for &group in &connection.groups_list {
            let projects: Vec<Project> = client.collect_all(PageRequest::group_projects(group as u64)).await?;
            for project in projects {
                if !all.iter().any(|q| q.id == project.id) {
                    all.push(project);
                }
            }
        }
        // Projects gone from the groups (deleted, or moved out) leave the sync; the change feed
        // reports them deleted.
        let gone: Vec<i64> = known.iter().copied().filter(|id| !all.iter().any(|p| p.id as i64 == *id)).collect();
        if !gone.is_empty() {
            tracing::info!(connection = %connection.id, gone = gone.len(), "projects no longer in the groups leave the sync");
            let mut tx = self.store.tenant_tx(tenant).await?;
            for &project in &gone {
                sync::delete_project(&mut tx, connection.id, project).await?;
            }
            tx.commit().await?;
        }
        let known: Vec<i64> = known.into_iter().filter(|id| !gone.contains(id)).collect();
        let new: Vec<&Project> = all.iter().filter(|p| !known.contains(&(p.id as i64))).collect();
        if new.is_empty() || !connection.projects_list.is_empty() {
            return Ok(known);
        }
        let ids: Vec<i64> = all.iter().map(|p| p.id as i64).collect();
        tracing::info!(connection = %connection.id, new = new.len(), "new projects in the groups join the sync");
        let raw = Value::Array(new.iter().map(|p| serde_json::to_value(p).expect("a project serializes")).collect());
        let project_hooks = connection.hook_mode != Some(HookMode::Group);
        let mut tx = self.store.tenant_tx(tenant).await?;
        sync::upsert_projects(&mut tx, connection.id, &raw).await?;
        let new_ids: Vec<i64> = new.iter().map(|p| p.id as i64).collect();
        connections::add_projects(&mut tx, connection.id, &ids, if project_hooks { &new_ids } else { &[] }).await?;
        tx.commit().await?;
        if project_hooks {
            let refreshed = connections::get(&mut self.store.tenant_tx(tenant).await?, connection.id).await?;
            self.put_hooks(tenant, &refreshed, client).await?;
        }
        Ok(ids)
    }
}

fn since(mark: Option<DateTime<Utc>>, start: DateTime<Utc>) -> DateTime<Utc> {
    mark.map_or(start, |m| (m - OVERLAP).max(start))
}
