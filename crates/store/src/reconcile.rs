//! What keeps the stored history equal to GitLab's when GitLab tells us nothing: the branch
//! heads commits are discovered from, the ids a stream holds (to compare with GitLab's), and the
//! deletions that comparison finds. Every delete goes through the tables' change triggers, so
//! the tenant's change feed reports each one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{Result, TenantTx};

/// The branch heads stored for a project: name → sha.
pub async fn branch_heads(tx: &mut TenantTx, connection: Uuid, project_id: i64) -> Result<BTreeMap<String, String>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, sha FROM branch_heads WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3")
            .bind(tenant.as_str())
            .bind(connection)
            .bind(project_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Replaces a project's branch heads with `heads`, once what they point at is stored.
pub async fn set_branch_heads(tx: &mut TenantTx, connection: Uuid, project_id: i64, heads: &BTreeMap<String, String>) -> Result<()> {
    let (tenant, conn) = tx.parts();
    let names: Vec<&str> = heads.keys().map(String::as_str).collect();
    let shas: Vec<&str> = heads.values().map(String::as_str).collect();
    sqlx::query("DELETE FROM branch_heads WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND name <> ALL($4)")
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO branch_heads (tenant_id, connection_id, project_id, name, sha)
         SELECT $1, $2, $3, n, s FROM unnest($4::text[], $5::text[]) AS h(n, s)
         ON CONFLICT (tenant_id, connection_id, project_id, name) DO UPDATE SET sha = excluded.sha, updated_at = now()
         WHERE branch_heads.sha <> excluded.sha",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(&names)
    .bind(&shas)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the project has branch heads stored: a commits stream that has them finds new
/// history from them; one without (a backfill from before they existed) lists by date once.
pub async fn has_branch_heads(tx: &mut TenantTx, connection: Uuid, project_id: i64) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM branch_heads WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3)")
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .fetch_one(conn)
        .await?)
}

/// Removes the project's commits that are in neither `keep` (what GitLab lists for its refs since
/// the start date) nor any of its merge requests: history a force push or a deleted branch left
/// unreachable. Returns how many went.
pub async fn prune_commits(tx: &mut TenantTx, connection: Uuid, project_id: i64, keep: &[String]) -> Result<u64> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query(
        "DELETE FROM commits c WHERE c.tenant_id = $1 AND c.connection_id = $2 AND c.project_id = $3
             AND c.sha <> ALL($4)
             AND NOT EXISTS (SELECT 1 FROM merge_request_commits m
                             WHERE m.tenant_id = c.tenant_id AND m.connection_id = c.connection_id
                               AND m.project_id = c.project_id AND m.sha = c.sha)",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(keep)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The commits of merge requests `iids` that no other stored merge request has, with their
/// commit dates: what may have to go with them.
pub async fn commits_only_of(
    tx: &mut TenantTx,
    connection: Uuid,
    project_id: i64,
    iids: &[i64],
) -> Result<Vec<(String, Option<DateTime<Utc>>)>> {
    if iids.is_empty() {
        return Ok(Vec::new());
    }
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query_as(
        "SELECT DISTINCT c.sha, c.committed_at FROM merge_request_commits m
             JOIN commits c ON c.tenant_id = m.tenant_id AND c.connection_id = m.connection_id
                           AND c.project_id = m.project_id AND c.sha = m.sha
         WHERE m.tenant_id = $1 AND m.connection_id = $2 AND m.project_id = $3 AND m.mr_iid = ANY($4)
           AND NOT EXISTS (SELECT 1 FROM merge_request_commits o
                           WHERE o.tenant_id = m.tenant_id AND o.connection_id = m.connection_id
                             AND o.project_id = m.project_id AND o.sha = m.sha AND o.mr_iid <> ALL($4))",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(iids)
    .fetch_all(conn)
    .await?)
}

/// Deletes the commits `shas` that no stored merge request has.
pub async fn delete_commits(tx: &mut TenantTx, connection: Uuid, project_id: i64, shas: &[String]) -> Result<u64> {
    if shas.is_empty() {
        return Ok(0);
    }
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query(
        "DELETE FROM commits c WHERE c.tenant_id = $1 AND c.connection_id = $2 AND c.project_id = $3
             AND c.sha = ANY($4)
             AND NOT EXISTS (SELECT 1 FROM merge_request_commits m
                             WHERE m.tenant_id = c.tenant_id AND m.connection_id = c.connection_id
                               AND m.project_id = c.project_id AND m.sha = c.sha)",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(shas)
    .execute(conn)
    .await?
    .rows_affected())
}

/// A merge request or issue as stored: when GitLab last changed it, and how many of its notes
/// are users' (GitLab's `user_notes_count`, which a deleted comment lowers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredParent {
    pub updated_at: DateTime<Utc>,
    pub user_notes: i64,
}

/// The merge requests (`MergeRequest`) or issues (`Issue`) a project holds, by iid.
pub async fn stored_parents(tx: &mut TenantTx, connection: Uuid, project_id: i64, noteable: &str) -> Result<BTreeMap<i64, StoredParent>> {
    let sql = match noteable {
        "MergeRequest" => {
            "SELECT p.iid, p.gitlab_updated_at,
                    (SELECT count(*) FROM notes n WHERE n.tenant_id = p.tenant_id AND n.connection_id = p.connection_id
                         AND n.project_id = p.project_id AND n.noteable_type = $4 AND n.noteable_iid = p.iid AND NOT n.system)
             FROM merge_requests p WHERE p.tenant_id = $1 AND p.connection_id = $2 AND p.project_id = $3"
        }
        _ => {
            "SELECT p.iid, p.gitlab_updated_at,
                    (SELECT count(*) FROM notes n WHERE n.tenant_id = p.tenant_id AND n.connection_id = p.connection_id
                         AND n.project_id = p.project_id AND n.noteable_type = $4 AND n.noteable_iid = p.iid AND NOT n.system)
             FROM issues p WHERE p.tenant_id = $1 AND p.connection_id = $2 AND p.project_id = $3"
        }
    };
    let (tenant, conn) = tx.parts();
    let rows: Vec<(i64, DateTime<Utc>, i64)> =
        sqlx::query_as(sql).bind(tenant.as_str()).bind(connection).bind(project_id).bind(noteable).fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(iid, updated_at, user_notes)| (iid, StoredParent { updated_at, user_notes })).collect())
}

/// The pipeline ids a project holds.
pub async fn stored_pipelines(tx: &mut TenantTx, connection: Uuid, project_id: i64) -> Result<Vec<i64>> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query_scalar("SELECT gitlab_id FROM pipelines WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3")
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .fetch_all(conn)
        .await?)
}

/// Deletes merge requests (`MergeRequest`) or issues (`Issue`) GitLab no longer has, with their
/// notes and, for merge requests, their commit lists.
pub async fn delete_parents(tx: &mut TenantTx, connection: Uuid, project_id: i64, noteable: &str, iids: &[i64]) -> Result<u64> {
    if iids.is_empty() {
        return Ok(0);
    }
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "DELETE FROM notes WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3
             AND noteable_type = $4 AND noteable_iid = ANY($5)",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(noteable)
    .bind(iids)
    .execute(&mut *conn)
    .await?;
    let sql = if noteable == "MergeRequest" {
        sqlx::query(
            "DELETE FROM merge_request_commits WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND mr_iid = ANY($4)",
        )
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .bind(iids)
        .execute(&mut *conn)
        .await?;
        "DELETE FROM merge_requests WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND iid = ANY($4)"
    } else {
        "DELETE FROM issues WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND iid = ANY($4)"
    };
    Ok(sqlx::query(sql).bind(tenant.as_str()).bind(connection).bind(project_id).bind(iids).execute(conn).await?.rows_affected())
}

/// Deletes pipelines GitLab no longer has.
pub async fn delete_pipelines(tx: &mut TenantTx, connection: Uuid, project_id: i64, ids: &[i64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query("DELETE FROM pipelines WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND gitlab_id = ANY($4)")
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .bind(ids)
        .execute(conn)
        .await?
        .rows_affected())
}

/// The project's comments on commits, by id, with when each was written.
pub async fn stored_commit_notes(tx: &mut TenantTx, connection: Uuid, project_id: i64) -> Result<BTreeMap<i64, Option<DateTime<Utc>>>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT gitlab_id, created_at FROM notes
         WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND noteable_type = 'Commit'",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Deletes notes GitLab no longer has.
pub async fn delete_notes(tx: &mut TenantTx, connection: Uuid, project_id: i64, ids: &[i64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query("DELETE FROM notes WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND gitlab_id = ANY($4)")
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .bind(ids)
        .execute(conn)
        .await?
        .rows_affected())
}

/// Whether a stream's ids are due for comparison with GitLab's: never compared, or longer ago
/// than `every`.
pub async fn reconcile_due(
    tx: &mut TenantTx,
    connection: Uuid,
    project_id: i64,
    resource: crate::sync::Resource,
    every: chrono::Duration,
) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    let last: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
        "SELECT reconciled_at FROM sync_checkpoints
         WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND resource = $4",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(resource)
    .fetch_optional(conn)
    .await?;
    Ok(match last.flatten() {
        None => true,
        Some(at) => Utc::now() - at >= every,
    })
}

/// Records that a stream's ids were compared with GitLab's at `at`.
pub async fn mark_reconciled(
    tx: &mut TenantTx,
    connection: Uuid,
    project_id: i64,
    resource: crate::sync::Resource,
    at: DateTime<Utc>,
) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE sync_checkpoints SET reconciled_at = $5
         WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND resource = $4",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(resource)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the original of a record whose text PostgreSQL cannot hold (it was stored with each
/// U+0000 replaced), with the reason. `object_key` names it within the resource, e.g. a sha.
pub async fn keep_aside(
    tx: &mut TenantTx,
    connection: Uuid,
    project_id: Option<i64>,
    resource: &str,
    object_key: &str,
    reason: &str,
    original: &[u8],
) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "INSERT INTO kept_aside_records (tenant_id, connection_id, project_id, resource, object_key, reason, original)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, connection_id, resource, object_key) DO UPDATE SET
             reason = excluded.reason, original = excluded.original, recorded_at = now()",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(resource)
    .bind(object_key)
    .bind(reason)
    .bind(original)
    .execute(conn)
    .await?;
    Ok(())
}

/// A record kept aside, as the API and operators read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAside {
    pub project_id: Option<i64>,
    pub resource: String,
    pub object_key: String,
    pub reason: String,
    pub original: Vec<u8>,
}

pub async fn kept_aside(tx: &mut TenantTx, connection: Uuid) -> Result<Vec<KeptAside>> {
    let (tenant, conn) = tx.parts();
    type Row = (Option<i64>, String, String, String, Vec<u8>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT project_id, resource, object_key, reason, original FROM kept_aside_records
         WHERE tenant_id = $1 AND connection_id = $2 ORDER BY id",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(project_id, resource, object_key, reason, original)| KeptAside { project_id, resource, object_key, reason, original })
        .collect())
}

/// Replaces every U+0000 in the strings of `value` (keys included) with U+FFFD, which
/// PostgreSQL's text and jsonb can hold. Returns whether anything was replaced.
pub fn replace_nul(value: &mut Value) -> bool {
    fn fix(s: &mut String) -> bool {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{FFFD}");
            true
        } else {
            false
        }
    }
    match value {
        Value::String(s) => fix(s),
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| replace_nul(v) | changed),
        Value::Object(map) => {
            let mut changed = false;
            if map.keys().any(|k| k.contains('\0')) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (mut k, v) in entries {
                    changed |= fix(&mut k);
                    map.insert(k, v);
                }
            }
            map.values_mut().fold(changed, |changed, v| replace_nul(v) | changed)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::replace_nul;
    use serde_json::json;

    #[test]
    fn nul_is_replaced_everywhere_and_reported() {
        let mut v = json!({"title": "a\u{0}b", "nested": [{"k\u{0}": "x"}], "n": 1});
        assert!(replace_nul(&mut v));
        assert_eq!(v, json!({"title": "a\u{FFFD}b", "nested": [{"k\u{FFFD}": "x"}], "n": 1}));
        let mut clean = json!({"title": "ab"});
        assert!(!replace_nul(&mut clean));
    }
}
