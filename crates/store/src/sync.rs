//! Writing synced GitLab objects. Each function upserts one page of GitLab's own JSON (as the
//! REST API returns it) in a single statement, keyed by GitLab's ids within the connection, so a
//! backfill page, a catch-up page and a webhook's object land on the same rows. Objects that
//! change carry GitLab's `updated_at`; an older version never overwrites a newer one.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{Result, TenantTx};

/// A per-project stream the backfill pages through and the catch-up keeps current, in the
/// order the backfill takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = json!(Resource::MergeRequests))]
pub enum Resource {
    /// Every branch's commits (merge requests' commits come with the merge requests).
    Commits,
    /// With their notes and commits.
    MergeRequests,
    /// With their notes.
    Issues,
    /// Each with its own record, which alone has the timings.
    Pipelines,
}

crate::names!(Resource { Commits => "commits", MergeRequests => "merge_requests", Issues => "issues", Pipelines => "pipelines" });

/// Runs one upsert statement whose `$1..$4` are tenant, connection, project and the JSON array.
async fn upsert(tx: &mut TenantTx, sql: &'static str, connection: Uuid, project_id: i64, items: &Value) -> Result<u64> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query(sql).bind(tenant.as_str()).bind(connection).bind(project_id).bind(items).execute(conn).await?.rows_affected())
}

/// Commits never change, but a webhook's copy has fewer fields than the API's, so later copies
/// fill what earlier ones lacked.
pub async fn upsert_commits(tx: &mut TenantTx, connection: Uuid, project_id: i64, items: &Value) -> Result<u64> {
    upsert(
        tx,
        "INSERT INTO commits AS t (tenant_id, connection_id, project_id, sha, title, message, author_name,
                author_email, authored_at, committer_name, committer_email, committed_at, parent_ids, web_url, raw)
         SELECT $1, $2, $3, e->>'id', coalesce(e->>'title', split_part(e->>'message', E'\\n', 1), ''),
                coalesce(e->>'message', ''), coalesce(e->>'author_name', e->'author'->>'name'),
                coalesce(e->>'author_email', e->'author'->>'email'),
                (e->>'authored_date')::timestamptz,
                e->>'committer_name', e->>'committer_email',
                coalesce(e->>'committed_date', e->>'timestamp')::timestamptz,
                coalesce(ARRAY(SELECT jsonb_array_elements_text(e->'parent_ids')), '{}'),
                coalesce(e->>'web_url', e->>'url'), e
         FROM jsonb_array_elements($4::jsonb) AS e
         ON CONFLICT (tenant_id, connection_id, project_id, sha) DO UPDATE SET
             -- A push payload's commit (no `authored_date`; its `timestamp` is the commit date)
             -- only fills gaps; REST's commit entity is the authority and corrects them.
             title = CASE WHEN excluded.raw ? 'authored_date' THEN excluded.title ELSE t.title END,
             message = CASE WHEN excluded.raw ? 'authored_date' THEN excluded.message ELSE t.message END,
             author_name = CASE WHEN excluded.raw ? 'authored_date' THEN coalesce(excluded.author_name, t.author_name)
                                ELSE coalesce(t.author_name, excluded.author_name) END,
             author_email = CASE WHEN excluded.raw ? 'authored_date' THEN coalesce(excluded.author_email, t.author_email)
                                 ELSE coalesce(t.author_email, excluded.author_email) END,
             authored_at = coalesce(excluded.authored_at, t.authored_at),
             committer_name = coalesce(excluded.committer_name, t.committer_name),
             committer_email = coalesce(excluded.committer_email, t.committer_email),
             committed_at = coalesce(excluded.committed_at, t.committed_at),
             parent_ids = CASE WHEN cardinality(excluded.parent_ids) > 0 THEN excluded.parent_ids ELSE t.parent_ids END,
             raw = CASE WHEN excluded.raw ? 'authored_date' THEN t.raw || excluded.raw ELSE excluded.raw || t.raw END,
             synced_at = now()",
        connection,
        project_id,
        items,
    )
    .await
}

pub async fn upsert_merge_requests(tx: &mut TenantTx, connection: Uuid, project_id: i64, items: &Value) -> Result<u64> {
    upsert(
        tx,
        "INSERT INTO merge_requests AS t (tenant_id, connection_id, project_id, iid, gitlab_id, title, description,
                state, author_id, author_username, source_branch, target_branch, sha, merge_commit_sha, web_url,
                created_at, gitlab_updated_at, merged_at, closed_at, raw)
         SELECT $1, $2, $3, (e->>'iid')::bigint, (e->>'id')::bigint, e->>'title', e->>'description', e->>'state',
                (e->'author'->>'id')::bigint, e->'author'->>'username', e->>'source_branch', e->>'target_branch',
                e->>'sha', e->>'merge_commit_sha', e->>'web_url', (e->>'created_at')::timestamptz,
                (e->>'updated_at')::timestamptz, (e->>'merged_at')::timestamptz, (e->>'closed_at')::timestamptz, e
         FROM jsonb_array_elements($4::jsonb) AS e
         ON CONFLICT (tenant_id, connection_id, project_id, iid) DO UPDATE SET
             gitlab_id = excluded.gitlab_id, title = excluded.title, description = excluded.description,
             state = excluded.state, author_id = coalesce(excluded.author_id, t.author_id),
             author_username = coalesce(excluded.author_username, t.author_username),
             source_branch = excluded.source_branch, target_branch = excluded.target_branch,
             sha = coalesce(excluded.sha, t.sha), merge_commit_sha = coalesce(excluded.merge_commit_sha, t.merge_commit_sha),
             web_url = coalesce(excluded.web_url, t.web_url), created_at = coalesce(excluded.created_at, t.created_at),
             gitlab_updated_at = excluded.gitlab_updated_at,
             -- Webhooks carry neither time: a field the row does not carry keeps its value.
             merged_at = CASE WHEN excluded.raw ? 'merged_at' THEN excluded.merged_at ELSE t.merged_at END,
             closed_at = CASE WHEN excluded.raw ? 'closed_at' THEN excluded.closed_at ELSE t.closed_at END,
             raw = t.raw || excluded.raw, synced_at = now()
         WHERE t.gitlab_updated_at <= excluded.gitlab_updated_at",
        connection,
        project_id,
        items,
    )
    .await
}

pub async fn upsert_issues(tx: &mut TenantTx, connection: Uuid, project_id: i64, items: &Value) -> Result<u64> {
    upsert(
        tx,
        "INSERT INTO issues AS t (tenant_id, connection_id, project_id, iid, gitlab_id, issue_type, title,
                description, state, author_id, author_username, labels, confidential, web_url, created_at,
                gitlab_updated_at, closed_at, raw)
         SELECT $1, $2, $3, (e->>'iid')::bigint, (e->>'id')::bigint,
                lower(coalesce(e->>'issue_type', e->>'type', 'issue')), e->>'title', e->>'description', e->>'state',
                (e->'author'->>'id')::bigint, e->'author'->>'username',
                coalesce(ARRAY(SELECT jsonb_array_elements_text(e->'labels')), '{}'),
                coalesce((e->>'confidential')::boolean, false), e->>'web_url', (e->>'created_at')::timestamptz,
                (e->>'updated_at')::timestamptz, (e->>'closed_at')::timestamptz, e
         FROM jsonb_array_elements($4::jsonb) AS e
         ON CONFLICT (tenant_id, connection_id, project_id, iid) DO UPDATE SET
             gitlab_id = excluded.gitlab_id, issue_type = excluded.issue_type, title = excluded.title,
             description = excluded.description, state = excluded.state,
             author_id = coalesce(excluded.author_id, t.author_id),
             author_username = coalesce(excluded.author_username, t.author_username), labels = excluded.labels,
             confidential = excluded.confidential, web_url = coalesce(excluded.web_url, t.web_url),
             created_at = coalesce(excluded.created_at, t.created_at),
             gitlab_updated_at = excluded.gitlab_updated_at,
             closed_at = CASE WHEN excluded.raw ? 'closed_at' THEN excluded.closed_at ELSE t.closed_at END,
             raw = t.raw || excluded.raw,
             synced_at = now()
         WHERE t.gitlab_updated_at <= excluded.gitlab_updated_at",
        connection,
        project_id,
        items,
    )
    .await
}

/// Notes of one parent: `noteable_type` is `MergeRequest`, `Issue`, `Commit` or `Snippet`; the
/// parent is named by iid, or by sha for commits.
pub async fn upsert_notes(
    tx: &mut TenantTx,
    connection: Uuid,
    project_id: i64,
    noteable_type: &str,
    parent: NoteParent<'_>,
    items: &Value,
) -> Result<u64> {
    let (iid, sha) = match parent {
        NoteParent::Iid(iid) => (Some(iid), None),
        NoteParent::Commit(sha) => (None, Some(sha)),
        NoteParent::UnnamedCommit => (None, None),
    };
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query(
        "INSERT INTO notes AS t (tenant_id, connection_id, project_id, gitlab_id, noteable_type, noteable_iid,
                commit_sha, body, author_id, author_username, system, created_at, gitlab_updated_at, raw)
         SELECT $1, $2, $3, (e->>'id')::bigint, $5, $6, $7, coalesce(e->>'body', e->>'note', ''),
                (e->'author'->>'id')::bigint, e->'author'->>'username', coalesce((e->>'system')::boolean, false),
                (e->>'created_at')::timestamptz, coalesce(e->>'updated_at', e->>'created_at')::timestamptz, e
         FROM jsonb_array_elements($4::jsonb) AS e
         ON CONFLICT (tenant_id, connection_id, project_id, gitlab_id) DO UPDATE SET
             commit_sha = coalesce(excluded.commit_sha, t.commit_sha),
             body = excluded.body, author_id = coalesce(excluded.author_id, t.author_id),
             author_username = coalesce(excluded.author_username, t.author_username),
             system = excluded.system, gitlab_updated_at = excluded.gitlab_updated_at, raw = t.raw || excluded.raw,
             synced_at = now()
         WHERE t.gitlab_updated_at <= excluded.gitlab_updated_at",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(items)
    .bind(noteable_type)
    .bind(iid)
    .bind(sha)
    .execute(conn)
    .await?
    .rows_affected())
}

#[derive(Debug, Clone, Copy)]
pub enum NoteParent<'a> {
    Iid(i64),
    Commit(&'a str),
    /// A comment on a commit GitLab did not name: the project's events list commit comments
    /// without the commit's sha. A webhook's copy fills it in.
    UnnamedCommit,
}

pub async fn upsert_pipelines(tx: &mut TenantTx, connection: Uuid, project_id: i64, items: &Value) -> Result<u64> {
    upsert(
        tx,
        "INSERT INTO pipelines AS t (tenant_id, connection_id, project_id, gitlab_id, iid, status, source, ref,
                sha, web_url, created_at, gitlab_updated_at, finished_at, duration_seconds, raw)
         SELECT $1, $2, $3, (e->>'id')::bigint, (e->>'iid')::bigint, e->>'status', e->>'source', e->>'ref',
                e->>'sha', e->>'web_url', (e->>'created_at')::timestamptz,
                coalesce(e->>'updated_at', e->>'created_at')::timestamptz, (e->>'finished_at')::timestamptz,
                (e->>'duration')::double precision, e
         FROM jsonb_array_elements($4::jsonb) AS e
         ON CONFLICT (tenant_id, connection_id, project_id, gitlab_id) DO UPDATE SET
             iid = excluded.iid, status = excluded.status, source = excluded.source, ref = excluded.ref,
             sha = excluded.sha, web_url = excluded.web_url, created_at = excluded.created_at,
             gitlab_updated_at = excluded.gitlab_updated_at,
             finished_at = coalesce(excluded.finished_at, t.finished_at),
             duration_seconds = coalesce(excluded.duration_seconds, t.duration_seconds),
             raw = t.raw || excluded.raw, synced_at = now()
         WHERE t.gitlab_updated_at <= excluded.gitlab_updated_at",
        connection,
        project_id,
        items,
    )
    .await
}

/// A project as `GET /projects/:id` or a group's project list returns it.
pub async fn upsert_projects(tx: &mut TenantTx, connection: Uuid, items: &Value) -> Result<u64> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query(
        "INSERT INTO projects AS t (tenant_id, connection_id, gitlab_id, path_with_namespace, name, namespace_id,
                default_branch, visibility, web_url, archived, created_at, last_activity_at, raw)
         SELECT $1, $2, (e->>'id')::bigint, e->>'path_with_namespace', e->>'name', (e->'namespace'->>'id')::bigint,
                e->>'default_branch', e->>'visibility', e->>'web_url', coalesce((e->>'archived')::boolean, false),
                (e->>'created_at')::timestamptz, (e->>'last_activity_at')::timestamptz, e
         FROM jsonb_array_elements($3::jsonb) AS e
         ON CONFLICT (tenant_id, connection_id, gitlab_id) DO UPDATE SET
             path_with_namespace = excluded.path_with_namespace, name = excluded.name,
             namespace_id = excluded.namespace_id, default_branch = excluded.default_branch,
             visibility = excluded.visibility, web_url = excluded.web_url, archived = excluded.archived,
             created_at = excluded.created_at, last_activity_at = excluded.last_activity_at, raw = excluded.raw,
             synced_at = now(), deleted_at = NULL",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(items)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The commits a merge request holds, as GitLab listed them whole (a push to its branch does not
/// move its `updated_at`; a force push replaces them): others it held before go.
pub async fn set_merge_request_commits(tx: &mut TenantTx, connection: Uuid, project_id: i64, mr_iid: i64, shas: &[String]) -> Result<u64> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "DELETE FROM merge_request_commits WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3
             AND mr_iid = $4 AND sha <> ALL($5)",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(mr_iid)
    .bind(shas)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query(
        "INSERT INTO merge_request_commits (tenant_id, connection_id, project_id, mr_iid, sha)
         SELECT $1, $2, $3, $4, unnest($5::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(mr_iid)
    .bind(shas)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Stores the whole list of a parent's notes as GitLab returned it, asked for at `read_at`:
/// notes it no longer lists were deleted there (GitLab sends no webhook for that) and go here
/// too, except those stored since the list was asked for (a webhook's, newer than the list).
/// `read_at` is our clock and `synced_at` the database's: the query moves `read_at` onto the
/// database's clock by the difference it measures (`clock_timestamp()` against our clock just
/// before sending), off by the time the query takes to arrive.
pub async fn replace_notes(
    tx: &mut TenantTx,
    connection: Uuid,
    project_id: i64,
    noteable_type: &str,
    parent: NoteParent<'_>,
    items: &Value,
    read_at: DateTime<Utc>,
) -> Result<u64> {
    let ids: Vec<i64> =
        items.as_array().map(|a| a.iter().filter_map(|n| n.get("id").and_then(Value::as_i64)).collect()).unwrap_or_default();
    let (iid, sha) = match parent {
        NoteParent::Iid(iid) => (Some(iid), None),
        NoteParent::Commit(sha) => (None, Some(sha)),
        NoteParent::UnnamedCommit => (None, None),
    };
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "DELETE FROM notes WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND noteable_type = $4
             AND noteable_iid IS NOT DISTINCT FROM $5 AND commit_sha IS NOT DISTINCT FROM $6 AND gitlab_id <> ALL($7)
             AND synced_at < $8::timestamptz + (clock_timestamp() - $9::timestamptz)",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(noteable_type)
    .bind(iid)
    .bind(sha)
    .bind(&ids)
    .bind(read_at)
    .bind(Utc::now())
    .execute(conn)
    .await?;
    upsert_notes(tx, connection, project_id, noteable_type, parent, items).await
}

/// Where one stream (a project's resource) stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub cursor: Option<Value>,
    pub high_water_mark: Option<DateTime<Utc>>,
    pub records: i64,
    pub done: bool,
}

pub async fn checkpoint(tx: &mut TenantTx, connection: Uuid, project_id: i64, resource: Resource) -> Result<Option<Checkpoint>> {
    let (tenant, conn) = tx.parts();
    type Row = (Option<Value>, Option<DateTime<Utc>>, i64, bool);
    let row: Option<Row> = sqlx::query_as(
        "SELECT cursor, high_water_mark, records, done FROM sync_checkpoints
         WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND resource = $4",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(resource)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(cursor, high_water_mark, records, done)| Checkpoint { cursor, high_water_mark, records, done }))
}

/// One page's progress through one stream of one project.
#[derive(Debug, Clone, Copy)]
pub struct PageProgress<'a> {
    pub project_id: i64,
    pub resource: Resource,
    /// Where to resume; `None` once the stream is done.
    pub cursor: Option<&'a Value>,
    /// The newest `updated_at` the page held.
    pub seen_up_to: Option<DateTime<Utc>>,
    /// How many records the page stored.
    pub records: i64,
    pub done: bool,
}

/// Records progress after a page, in the page's own transaction: where to resume, the newest
/// `updated_at` seen, and how many records the page stored.
pub async fn advance(tx: &mut TenantTx, connection: Uuid, step: PageProgress<'_>) -> Result<()> {
    let PageProgress { project_id, resource, cursor, seen_up_to, records, done } = step;
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "INSERT INTO sync_checkpoints AS t (tenant_id, connection_id, project_id, resource, cursor, high_water_mark, records, done)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, connection_id, project_id, resource) DO UPDATE SET
             cursor = excluded.cursor,
             high_water_mark = greatest(t.high_water_mark, excluded.high_water_mark),
             records = t.records + excluded.records,
             done = excluded.done,
             updated_at = now()",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(resource)
    .bind(cursor)
    .bind(seen_up_to)
    .bind(records)
    .bind(done)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores an event that carries no object of the tables above (a tag, a job, a release, ...):
/// the latest payload per object.
pub async fn upsert_event(
    tx: &mut TenantTx,
    connection: Uuid,
    kind: &str,
    object_key: &str,
    project_id: Option<i64>,
    action: Option<&str>,
    payload: &Value,
) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "INSERT INTO gitlab_events (tenant_id, connection_id, kind, object_key, project_id, action, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, connection_id, kind, object_key) DO UPDATE SET
             project_id = excluded.project_id, action = excluded.action, payload = excluded.payload, synced_at = now()",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(kind)
    .bind(object_key)
    .bind(project_id)
    .bind(action)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(())
}

/// A project GitLab deleted, or one that left the connection's groups: it leaves the sync with
/// everything synced from it, each row's delete reported by the change feed.
pub async fn delete_project(tx: &mut TenantTx, connection: Uuid, project_id: i64) -> Result<()> {
    let (tenant, conn) = tx.parts();
    for sql in [
        "DELETE FROM notes WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM merge_request_commits WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM merge_requests WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM issues WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM pipelines WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM commits WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM branch_heads WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM sync_checkpoints WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM sync_ledger WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM kept_aside_records WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
        "DELETE FROM gitlab_events WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3",
    ] {
        sqlx::query(sql).bind(tenant.as_str()).bind(connection).bind(project_id).execute(&mut *conn).await?;
    }
    sqlx::query("DELETE FROM projects WHERE tenant_id = $1 AND connection_id = $2 AND gitlab_id = $3")
        .bind(tenant.as_str())
        .bind(connection)
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE gitlab_connections SET resolved_project_ids = array_remove(resolved_project_ids, $3), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that a resource is deliberately not synced for a project, e.g. issues switched off.
pub async fn record_skipped(tx: &mut TenantTx, connection: Uuid, project_id: i64, resource: Resource, reason: &str) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "INSERT INTO sync_ledger (tenant_id, connection_id, project_id, resource, reason) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, connection_id, project_id, resource) DO UPDATE SET reason = excluded.reason, recorded_at = now()",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(resource)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets where the streams in scope stood (one project's, one resource's of every project,
/// or, with neither, all of them) and that any was skipped, so the next backfill reads them
/// again from `start_date`. What is stored stays until the new reads overwrite it.
pub async fn reset_streams(tx: &mut TenantTx, connection: Uuid, project_id: Option<i64>, resource: Option<Resource>) -> Result<()> {
    let (tenant, conn) = tx.parts();
    let scope = "tenant_id = $1 AND connection_id = $2 AND ($3::bigint IS NULL OR project_id = $3) AND ($4::text IS NULL OR resource = $4)";
    for table in ["sync_checkpoints", "sync_ledger"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE {scope}")))
            .bind(tenant.as_str())
            .bind(connection)
            .bind(project_id)
            .bind(resource)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// How far a connection's sync has come.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Records stored per resource.
    pub records: Vec<(Resource, i64)>,
    /// Streams (a project's resource) finished, and in all.
    pub streams_done: i64,
    pub streams_started: i64,
    /// Projects whose every resource is finished.
    pub projects_done: i64,
    /// When the first stream started.
    pub started_at: Option<DateTime<Utc>>,
}

pub async fn progress(tx: &mut TenantTx, connection: Uuid, resources_per_project: i64) -> Result<Progress> {
    let (tenant, conn) = tx.parts();
    let records: Vec<(Resource, i64)> = sqlx::query_as(
        "SELECT resource, sum(records)::bigint FROM sync_checkpoints
         WHERE tenant_id = $1 AND connection_id = $2 GROUP BY resource ORDER BY resource",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .fetch_all(&mut *conn)
    .await?;
    let (streams_done, streams_started, projects_done, started_at): (i64, i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE done), count(*),
                (SELECT count(*) FROM (SELECT project_id FROM sync_checkpoints
                    WHERE tenant_id = $1 AND connection_id = $2 AND done
                    GROUP BY project_id HAVING count(*) >= $3) finished),
                min(updated_at)
         FROM sync_checkpoints WHERE tenant_id = $1 AND connection_id = $2",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .bind(resources_per_project)
    .fetch_one(conn)
    .await?;
    Ok(Progress { records, streams_done, streams_started, projects_done, started_at })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub project_id: i64,
    pub resource: Resource,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
}

/// The connection's ledger of resources deliberately not synced.
pub async fn skipped(tx: &mut TenantTx, connection: Uuid) -> Result<Vec<Skipped>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<(i64, Resource, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT project_id, resource, reason, recorded_at FROM sync_ledger
         WHERE tenant_id = $1 AND connection_id = $2 ORDER BY project_id, resource",
    )
    .bind(tenant.as_str())
    .bind(connection)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(project_id, resource, reason, recorded_at)| Skipped { project_id, resource, reason, recorded_at }).collect())
}

/// When any of the connection's streams last moved on (a page stored with its checkpoint): a job
/// that fails after this moved got somewhere.
pub async fn last_progress(tx: &mut TenantTx, connection: Uuid) -> Result<Option<DateTime<Utc>>> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query_scalar("SELECT max(updated_at) FROM sync_checkpoints WHERE tenant_id = $1 AND connection_id = $2")
        .bind(tenant.as_str())
        .bind(connection)
        .fetch_one(conn)
        .await?)
}

/// A stored table whose rows a webhook may update, with the key a delivery names its row by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioned {
    MergeRequests,
    Issues,
    /// By GitLab id.
    Notes,
    Pipelines,
}

/// How a delivery's version of an object stands against the stored one. Webhooks give whole
/// seconds, REST gives milliseconds: within one second the order cannot be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    /// Nothing stored yet.
    New,
    /// From a later second than the stored version.
    Newer,
    /// From an earlier second.
    Older,
    /// From the stored version's second: either may be the later one.
    SameSecond,
}

/// Compares `updated_at` (as the delivery gives it) with the stored row's, at second precision.
pub async fn version_order(
    tx: &mut TenantTx,
    table: Versioned,
    connection: Uuid,
    project_id: i64,
    key: i64,
    updated_at: &str,
) -> Result<VersionOrder> {
    let (table, key_column) = match table {
        Versioned::MergeRequests => ("merge_requests", "iid"),
        Versioned::Issues => ("issues", "iid"),
        Versioned::Notes => ("notes", "gitlab_id"),
        Versioned::Pipelines => ("pipelines", "gitlab_id"),
    };
    let (tenant, conn) = tx.parts();
    let order: Option<Option<i32>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT sign(extract(epoch FROM date_trunc('second', $5::timestamptz) - date_trunc('second', gitlab_updated_at)))::int
         FROM {table} WHERE tenant_id = $1 AND connection_id = $2 AND project_id = $3 AND {key_column} = $4"
    )))
    .bind(tenant.as_str())
    .bind(connection)
    .bind(project_id)
    .bind(key)
    .bind(updated_at)
    .fetch_optional(conn)
    .await?;
    Ok(match order {
        None => VersionOrder::New,
        // A stored row without a version loses to any.
        Some(None) | Some(Some(1)) => VersionOrder::Newer,
        Some(Some(-1)) => VersionOrder::Older,
        Some(Some(_)) => VersionOrder::SameSecond,
    })
}
