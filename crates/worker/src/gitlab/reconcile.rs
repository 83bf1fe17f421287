//! Deletions GitLab tells nobody about. Deleting a merge request, an issue, a note or a pipeline
//! fires no webhook and writes no event (Issuable::DestroyService, Notes::DestroyService and
//! Ci::DestroyPipelineService only destroy; gitlab-org/gitlab#347354 asks for one), so every
//! `reconcile_interval` a catch-up lists each stream's ids since the start date and compares:
//! - stored but no longer listed: read once more by id, and deleted when GitLab answers 404 (an
//!   offset page can skip an item when another is deleted meanwhile; it is not taken for gone);
//! - listed but not stored (a page skipped it): stored, with its notes and commits;
//! - a merge request or issue whose `user_notes_count` differs from the user notes stored (a
//!   comment deleted): its notes are read again whole.
//!
//! The cost is one list request per 100 records of each stream per interval, plus one per
//! difference found.
//!
//! Comments on commits have no list of their own: the project's events (one per comment,
//! embedding it) are the only place GitLab lists them, so they are read from there at the same
//! pace, and one no longer among the events leaves our data. Those events do not name the
//! commit (GitLab's Note entity exposes `commit_id` only for merge request diff notes): a comment
//! first seen there is stored without its sha, which its webhook delivery fills in.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use connector_store::connections::Connection;
use connector_store::sync::{self, NoteParent, Resource};
use connector_store::{TenantId, reconcile};
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;

use super::GitLabJobs;
use super::step::StepError;
use super::streams::{Fetched, fetch_children_of, fetch_page, first_request, noteable, store_children, store_items};

impl GitLabJobs {
    /// Compares one stream's ids with GitLab's when due, and applies what differs.
    pub(super) async fn reconcile_stream(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
        resource: Resource,
    ) -> Result<(), StepError> {
        let started = Utc::now();
        let (stored_parents, stored_pipelines) = {
            let mut tx = self.store.tenant_tx(tenant).await?;
            if !reconcile::reconcile_due(&mut tx, connection.id, project, resource, self.settings.reconcile_interval).await? {
                return Ok(());
            }
            if resource == Resource::Pipelines {
                (Default::default(), reconcile::stored_pipelines(&mut tx, connection.id, project).await?.into_iter().collect())
            } else {
                (reconcile::stored_parents(&mut tx, connection.id, project, noteable(resource)).await?, BTreeSet::new())
            }
        };
        let key = if resource == Resource::Pipelines { "id" } else { "iid" };
        let mut seen = BTreeSet::new();
        let mut request = Some(first_request(project, resource, &connection.start_date));
        while let Some(mut current) = request {
            // Switched off or gone (skipped): the stream itself records that; nothing to compare.
            let Fetched::Page { items, next, .. } = fetch_page(client, project, resource, &mut current, false).await? else {
                return Ok(());
            };
            request = next;
            let mut missing = Vec::new();
            let mut renote = Vec::new();
            for item in items {
                let Some(id) = item.get(key).and_then(Value::as_i64) else { continue };
                seen.insert(id);
                if resource == Resource::Pipelines {
                    if !stored_pipelines.contains(&id) {
                        missing.push(item);
                    }
                    continue;
                }
                match stored_parents.get(&id) {
                    None => missing.push(item),
                    Some(stored) => {
                        let notes = item.get("user_notes_count").and_then(Value::as_i64);
                        if notes.is_some_and(|n| n != stored.user_notes) {
                            renote.push(id as u64);
                        }
                    }
                }
            }
            self.store_missing(tenant, connection, client, project, resource, missing, renote).await?;
        }
        let candidates: Vec<i64> = if resource == Resource::Pipelines {
            stored_pipelines.iter().copied().filter(|id| !seen.contains(id)).collect()
        } else {
            stored_parents.keys().copied().filter(|id| !seen.contains(id)).collect()
        };
        let mut gone = Vec::new();
        for id in candidates {
            let found = match resource {
                Resource::MergeRequests => client.merge_request::<Value>(project as u64, id as u64).await,
                Resource::Issues => client.issue::<Value>(project as u64, id as u64).await,
                Resource::Pipelines => client.pipeline::<Value>(project as u64, id as u64).await,
                // Commits are compared by reachability from the refs, not by id.
                Resource::Commits => unreachable!("commits are not reconciled by id"),
            };
            match found {
                Err(GitLab::NotFound { .. }) => gone.push(id),
                Ok(item) => self.store_missing(tenant, connection, client, project, resource, vec![item], Vec::new()).await?,
                Err(e) => return Err(e.into()),
            }
        }
        let unreachable = if resource == Resource::MergeRequests {
            self.commits_leaving_with(tenant, connection, client, project, &gone).await?
        } else {
            Vec::new()
        };
        let mut tx = self.store.tenant_tx(tenant).await?;
        let deleted = if resource == Resource::Pipelines {
            reconcile::delete_pipelines(&mut tx, connection.id, project, &gone).await?
        } else {
            reconcile::delete_parents(&mut tx, connection.id, project, noteable(resource), &gone).await?
        };
        reconcile::delete_commits(&mut tx, connection.id, project, &unreachable).await?;
        if deleted > 0 {
            tracing::info!(connection = %connection.id, project, %resource, deleted, "deleted in GitLab: removed");
        }
        reconcile::mark_reconciled(&mut tx, connection.id, project, resource, started).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The commits stored only for the deleted merge requests `gone` that a fresh sync would
    /// not store: those dated before the start date, and those no branch or tag reaches any
    /// more (the merge request's source branch was deleted, or rewritten). One request per
    /// commit dated since the start date; deletions are rare.
    async fn commits_leaving_with(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
        gone: &[i64],
    ) -> Result<Vec<String>, StepError> {
        let candidates = {
            let mut tx = self.store.tenant_tx(tenant).await?;
            reconcile::commits_only_of(&mut tx, connection.id, project, gone).await?
        };
        let mut leaving = Vec::new();
        for (sha, committed) in candidates {
            if committed.is_none_or(|at| at < connection.start_date) {
                leaving.push(sha);
                continue;
            }
            match client.page::<Value>(&PageRequest::commit_refs(project as u64, &sha)).await {
                Ok(refs) if refs.items.is_empty() => leaving.push(sha),
                Ok(_) => {}
                Err(GitLab::NotFound { .. }) => leaving.push(sha),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(leaving)
    }

    /// Reads the project's comments on commits from its events when due, storing new ones and
    /// removing those GitLab no longer lists.
    pub(super) async fn reconcile_commit_notes(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
    ) -> Result<(), StepError> {
        let started = Utc::now();
        let stored = {
            let mut tx = self.store.tenant_tx(tenant).await?;
            if !reconcile::reconcile_due(&mut tx, connection.id, project, Resource::Commits, self.settings.reconcile_interval).await? {
                return Ok(());
            }
            reconcile::stored_commit_notes(&mut tx, connection.id, project).await?
        };
        let events: Vec<Value> = match client.collect_all(PageRequest::comment_events(project as u64, &connection.start_date)).await {
            Err(GitLab::Forbidden { .. } | GitLab::NotFound { .. }) => return Ok(()),
            other => other?,
        };
        let created = |n: &Value| n.get("created_at").and_then(Value::as_str).and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let notes: Vec<Value> = events
            .into_iter()
            .filter_map(|mut e| e.get_mut("note").map(Value::take))
            .filter(|n| n.get("noteable_type").and_then(Value::as_str) == Some("Commit"))
            .filter(|n| created(n).is_some_and(|at| at >= connection.start_date))
            .collect();
        let listed: BTreeSet<i64> = notes.iter().filter_map(|n| n.get("id").and_then(Value::as_i64)).collect();
        // GitLab removes events after some years (3 in current docs): older comments are not
        // taken for deleted because their events went.
        let retained = started - chrono::Duration::days(2 * 365);
        let gone: Vec<i64> =
            stored.iter().filter(|(id, at)| !listed.contains(id) && at.is_some_and(|at| at > retained)).map(|(id, _)| *id).collect();
        let new: Vec<Value> =
            notes.into_iter().filter(|n| n.get("id").and_then(Value::as_i64).is_some_and(|id| !stored.contains_key(&id))).collect();
        let mut tx = self.store.tenant_tx(tenant).await?;
        let notes = super::streams::clean(&mut tx, connection.id, project, "notes", new).await?;
        sync::upsert_notes(&mut tx, connection.id, project, "Commit", NoteParent::UnnamedCommit, &Value::Array(notes)).await?;
        reconcile::delete_notes(&mut tx, connection.id, project, &gone).await?;
        reconcile::mark_reconciled(&mut tx, connection.id, project, Resource::Commits, started).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores items a list showed but we lacked, with their children, and reads again the notes
    /// of `renote`.
    #[allow(clippy::too_many_arguments)]
    async fn store_missing(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
        resource: Resource,
        missing: Vec<Value>,
        renote: Vec<u64>,
    ) -> Result<(), StepError> {
        if missing.is_empty() && renote.is_empty() {
            return Ok(());
        }
        if resource == Resource::Pipelines {
            let mut detailed = Vec::new();
            for item in missing {
                let Some(id) = item.get("id").and_then(Value::as_u64) else { continue };
                detailed.push(client.pipeline::<Value>(project as u64, id).await?);
            }
            let mut tx = self.store.tenant_tx(tenant).await?;
            store_items(&mut tx, connection.id, project, resource, detailed).await?;
            tx.commit().await?;
            return Ok(());
        }
        let mut iids: Vec<u64> = missing.iter().filter_map(|i| i.get("iid").and_then(Value::as_u64)).collect();
        iids.extend(renote);
        let children = fetch_children_of(client, project, resource, iids).await?;
        let mut tx = self.store.tenant_tx(tenant).await?;
        store_items(&mut tx, connection.id, project, resource, missing).await?;
        for child in children {
            store_children(&mut tx, connection.id, project, resource, child).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
