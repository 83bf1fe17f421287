//! New commits found from the repository, not from commit dates. A commit's dates come from the
//! committer's machine: one dated in the future would hide every later push from a `since` query,
//! and rebased, cherry-picked or imported commits carry old dates. So a catch-up lists the
//! project's branches, compares their heads with the ones stored, and reads `old..new` for each
//! head that moved (for a new branch, the default branch's known head `..new`): `git log`'s
//! range, which follows the graph whatever the dates. A moved head none of whose new commits
//! has the old head as a parent was rewritten (a force push); then, as after a deleted branch, the
//! project's commits are listed again whole and what no ref reaches any more (and no merge
//! request holds) leaves our data. `start_date` stays the filter on what is stored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use connector_store::connections::Connection;
use connector_store::sync::Resource;
use connector_store::{TenantId, reconcile};
use gitlab_client::api::projects::Branch;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;

use super::GitLabJobs;
use super::step::StepError;
use super::streams::store_items;

/// The project's branches and their heads, as GitLab lists them now.
pub(super) async fn branch_heads(client: &GitLabClient, project: i64) -> Result<BTreeMap<String, String>, GitLab> {
    let branches: Vec<Branch> = match client.collect_all(PageRequest::branches(project as u64)).await {
        // No repository (or no access to it): no heads; the commits stream records why.
        Err(GitLab::Forbidden { .. } | GitLab::NotFound { .. }) => return Ok(BTreeMap::new()),
        other => other?,
    };
    Ok(branches.into_iter().filter_map(|b| Some((b.name, b.commit?.id))).collect())
}

/// The project's default branch, whose known head a new branch's commits are read from.
async fn default_branch(client: &GitLabClient, project: i64) -> Result<Option<String>, GitLab> {
    match client.project(project as u64).await {
        Ok(p) => Ok(p.default_branch),
        Err(GitLab::Forbidden { .. } | GitLab::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn committed_at(commit: &Value) -> Option<DateTime<Utc>> {
    let raw = commit.get("committed_date").and_then(Value::as_str)?;
    DateTime::parse_from_rfc3339(raw).ok().map(|d| d.with_timezone(&Utc))
}

impl GitLabJobs {
    /// Reads the commits a project's branches gained since their heads were stored, whatever
    /// their dates, and follows rewrites and deletions; then stores the new heads.
    pub(super) async fn catch_up_commits(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
    ) -> Result<(), StepError> {
        let stored = {
            let mut tx = self.store.tenant_tx(tenant).await?;
            reconcile::branch_heads(&mut tx, connection.id, project).await?
        };
        let current = branch_heads(client, project).await?;
        if stored == current {
            return Ok(());
        }
        let mut relist = stored.is_empty() && !current.is_empty();
        let base = match default_branch(client, project).await? {
            Some(name) => stored.get(&name).cloned(),
            None => None,
        };
        if !relist {
            for (name, head) in &current {
                let old = stored.get(name);
                if old == Some(head) {
                    continue;
                }
                let range = match (old, &base) {
                    (Some(old), _) => format!("{old}..{head}"),
                    (None, Some(base)) => format!("{base}..{head}"),
                    (None, None) => {
                        relist = true;
                        break;
                    }
                };
                let parents_old = self.store_range(tenant, connection, client, project, &range, old.map(String::as_str)).await?;
                if old.is_some() && !parents_old {
                    tracing::info!(connection = %connection.id, project, branch = %name, "branch rewritten (force push): its commits are listed again");
                    relist = true;
                }
            }
        }
        let deleted = stored.keys().any(|name| !current.contains_key(name));
        let keep = if relist || deleted { Some(self.relist_commits(tenant, connection, client, project).await?) } else { None };
        let mut tx = self.store.tenant_tx(tenant).await?;
        if let Some(keep) = keep {
            let pruned = reconcile::prune_commits(&mut tx, connection.id, project, &keep).await?;
            if pruned > 0 {
                tracing::info!(connection = %connection.id, project, pruned, "commits no ref reaches any more left the sync");
            }
        }
        reconcile::set_branch_heads(&mut tx, connection.id, project, &current).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores the commits of a range since the start date; returns whether one of them has `old`
    /// as a parent, which tells a fast-forward from a rewrite.
    async fn store_range(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
        range: &str,
        old: Option<&str>,
    ) -> Result<bool, StepError> {
        let mut parents_old = false;
        let mut request = Some(PageRequest::commits_of(project as u64, range));
        while let Some(current) = request {
            let page = client.page::<Value>(&current).await?;
            request = page.next;
            parents_old |= old.is_some_and(|old| {
                page.items
                    .iter()
                    .any(|c| c.get("parent_ids").and_then(Value::as_array).is_some_and(|ps| ps.iter().any(|p| p.as_str() == Some(old))))
            });
            let items: Vec<Value> =
                page.items.into_iter().filter(|c| committed_at(c).is_some_and(|at| at >= connection.start_date)).collect();
            let mut tx = self.store.tenant_tx(tenant).await?;
            store_items(&mut tx, connection.id, project, Resource::Commits, items).await?;
            tx.commit().await?;
        }
        Ok(parents_old)
    }

    /// Lists and stores every commit GitLab's refs reach since the start date; returns their shas.
    async fn relist_commits(
        &self,
        tenant: &TenantId,
        connection: &Connection,
        client: &GitLabClient,
        project: i64,
    ) -> Result<Vec<String>, StepError> {
        let mut shas = Vec::new();
        let mut request = Some(PageRequest::commits(project as u64, Some(&connection.start_date)));
        while let Some(current) = request {
            let page = match client.page::<Value>(&current).await {
                // The repository is gone or closed to this token: GitLab shows no commits.
                Err(GitLab::Forbidden { .. } | GitLab::NotFound { .. }) => break,
                other => other?,
            };
            request = page.next;
            shas.extend(page.items.iter().filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned)));
            let mut tx = self.store.tenant_tx(tenant).await?;
            store_items(&mut tx, connection.id, project, Resource::Commits, page.items).await?;
            tx.commit().await?;
        }
        Ok(shas)
    }
}
