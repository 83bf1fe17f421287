//! Reading synced data back, for the API the Coworker frontend calls: one page of one kind of
//! object of one connection, and the tenant's change feed.
//!
//! Lists are ordered by the object's own key within the connection (`gitlab_id` for projects,
//! `(project_id, sha)` for commits, `(project_id, iid)` for merge requests and issues,
//! `(project_id, gitlab_id)` for notes and pipelines) and continue strictly after the last key
//! of the previous page. A key never changes, so an object updated between two pages keeps its
//! place: paging never repeats or skips it. (Ordering by `updated_at` would move an updated
//! object behind the cursor, to be read twice, or, if the cursor were passed, missed.) The
//! filters cannot drop a row that matched on an earlier page either: `updated_since` compares
//! GitLab's `updated_at`, which an upsert only ever moves forward. An object created mid-way
//! with a key before the cursor is not on the later pages; the change feed reports it. Each
//! order is a prefix of the table's primary key after `(tenant_id, connection_id)`, so a page
//! is a range scan of that index.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Result, TenantTx};

/// Filters every list has. `updated_since` is inclusive; for commits it compares `committed_at`
/// and for projects `last_activity_at`, the nearest they have to an update time.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// GitLab project id.
    pub project: Option<i64>,
    pub updated_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Project {
    pub gitlab_id: i64,
    pub path_with_namespace: String,
    pub name: String,
    pub namespace_id: Option<i64>,
    pub default_branch: Option<String>,
    pub visibility: Option<String>,
    pub web_url: Option<String>,
    pub archived: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub last_activity_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Commit {
    pub project_id: i64,
    pub sha: String,
    pub title: String,
    pub message: String,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub authored_at: Option<DateTime<Utc>>,
    pub committer_name: Option<String>,
    pub committer_email: Option<String>,
    pub committed_at: Option<DateTime<Utc>>,
    pub parent_ids: Vec<String>,
    pub web_url: Option<String>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MergeRequest {
    pub project_id: i64,
    pub iid: i64,
    pub gitlab_id: i64,
    pub title: String,
    pub description: Option<String>,
    pub state: String,
    pub author_id: Option<i64>,
    pub author_username: Option<String>,
    pub source_branch: Option<String>,
    pub target_branch: Option<String>,
    pub sha: Option<String>,
    pub merge_commit_sha: Option<String>,
    /// The commits the merge request holds, as far as synced.
    pub commit_shas: Vec<String>,
    pub web_url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub gitlab_updated_at: DateTime<Utc>,
    pub merged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Issue {
    pub project_id: i64,
    pub iid: i64,
    pub gitlab_id: i64,
    pub issue_type: String,
    pub title: String,
    pub description: Option<String>,
    pub state: String,
    pub author_id: Option<i64>,
    pub author_username: Option<String>,
    pub labels: Vec<String>,
    pub confidential: bool,
    pub web_url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub gitlab_updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Note {
    pub project_id: i64,
    pub gitlab_id: i64,
    pub noteable_type: String,
    pub noteable_iid: Option<i64>,
    pub commit_sha: Option<String>,
    pub body: String,
    pub author_id: Option<i64>,
    pub author_username: Option<String>,
    pub system: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub gitlab_updated_at: DateTime<Utc>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Pipeline {
    pub project_id: i64,
    pub gitlab_id: i64,
    pub iid: Option<i64>,
    pub status: String,
    pub source: Option<String>,
    #[sqlx(rename = "ref")]
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub web_url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub gitlab_updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub synced_at: DateTime<Utc>,
}

/// Which notes: those of one kind of parent (`MergeRequest`, `Issue`, `Commit`, `Snippet`),
/// optionally of one parent by iid.
#[derive(Debug, Clone, Default)]
pub struct NoteParentFilter {
    pub noteable_type: String,
    pub noteable_iid: Option<i64>,
}

/// Which rows of a list to read: a page in key order, or the one row with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows<K> {
    /// Up to `limit` rows after `after` (from the start when none).
    Page {
        after: Option<K>,
        limit: i64,
    },
    Only(K),
}

/// A list's key: one column (projects) or a project and one column (the rest).
pub trait ListKey: Send {
    /// ` AND (k1, ...) <op> (v1, ...)` for the key's `columns`.
    fn compare(self, q: &mut QueryBuilder<Postgres>, columns: &[&str], op: &str);
}

impl ListKey for i64 {
    fn compare(self, q: &mut QueryBuilder<Postgres>, columns: &[&str], op: &str) {
        q.push(format!(" AND t.{} {op} ", columns[0])).push_bind(self);
    }
}

impl<B> ListKey for (i64, B)
where
    B: for<'t> sqlx::Encode<'t, Postgres> + sqlx::Type<Postgres> + Send + 'static,
{
    fn compare(self, q: &mut QueryBuilder<Postgres>, columns: &[&str], op: &str) {
        let (a, b) = self;
        q.push(format!(" AND (t.{}, t.{}) {op} (", columns[0], columns[1])).push_bind(a).push(", ").push_bind(b).push(")");
    }
}

/// One kind of synced object as the lists read it. `list` and `one` are the only readers, so
/// every list is scoped to its tenant and connection, filtered and paged the same way.
pub trait Listed: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin {
    /// The table, which also names the list (in cursors).
    const TABLE: &'static str;
    const COLUMNS: &'static str;
    /// What `Filter::project` compares.
    const PROJECT_COLUMN: &'static str = "project_id";
    /// What `Filter::updated_since` compares.
    const TIME_COLUMN: &'static str = "gitlab_updated_at";
    /// The key's columns, a prefix of the table's primary key after the connection.
    const KEY_COLUMNS: &'static [&'static str];
    type Key: ListKey;
    /// The filter only this list has, if any.
    type Narrow: Default + Sync;

    fn key(&self) -> Self::Key;

    fn narrow(_q: &mut QueryBuilder<Postgres>, _narrow: &Self::Narrow) {}
}

/// Rows of one list of a connection's objects.
pub async fn list<T: Listed>(
    tx: &mut TenantTx,
    connection: Uuid,
    filter: &Filter,
    narrow: &T::Narrow,
    rows: Rows<T::Key>,
) -> Result<Vec<T>> {
    let (tenant, conn) = tx.parts();
    let mut q = QueryBuilder::new(format!("SELECT {} FROM {} t WHERE t.tenant_id = ", T::COLUMNS, T::TABLE));
    q.push_bind(tenant.as_str().to_owned()).push(" AND t.connection_id = ").push_bind(connection);
    if let Some(project) = filter.project {
        q.push(format!(" AND t.{} = ", T::PROJECT_COLUMN)).push_bind(project);
    }
    if let Some(since) = filter.updated_since {
        q.push(format!(" AND t.{} >= ", T::TIME_COLUMN)).push_bind(since);
    }
    T::narrow(&mut q, narrow);
    match rows {
        Rows::Page { after, limit } => {
            if let Some(after) = after {
                after.compare(&mut q, T::KEY_COLUMNS, ">");
            }
            let order = T::KEY_COLUMNS.iter().map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
            q.push(format!(" ORDER BY {order} LIMIT ")).push_bind(limit);
        }
        Rows::Only(key) => key.compare(&mut q, T::KEY_COLUMNS, "="),
    }
    Ok(q.build_query_as().fetch_all(conn).await?)
}

/// The one object with `key`, if the connection has it.
pub async fn one<T: Listed>(tx: &mut TenantTx, connection: Uuid, key: T::Key) -> Result<Option<T>> {
    Ok(list::<T>(tx, connection, &Filter::default(), &T::Narrow::default(), Rows::Only(key)).await?.pop())
}

/// ` AND t.<column> = <value>` when a value is given.
fn equals(q: &mut QueryBuilder<Postgres>, column: &str, value: &Option<String>) {
    if let Some(value) = value {
        q.push(format!(" AND t.{column} = ")).push_bind(value.clone());
    }
}

impl Listed for Project {
    const TABLE: &'static str = "projects";
    const COLUMNS: &'static str = "gitlab_id, path_with_namespace, name, namespace_id, default_branch, visibility, web_url, \
         archived, created_at, last_activity_at, deleted_at, synced_at";
    const PROJECT_COLUMN: &'static str = "gitlab_id";
    const TIME_COLUMN: &'static str = "last_activity_at";
    const KEY_COLUMNS: &'static [&'static str] = &["gitlab_id"];
    type Key = i64;
    type Narrow = ();

    fn key(&self) -> i64 {
        self.gitlab_id
    }
}

impl Listed for Commit {
    const TABLE: &'static str = "commits";
    const COLUMNS: &'static str = "project_id, sha, title, message, author_name, author_email, authored_at, committer_name, \
         committer_email, committed_at, parent_ids, web_url, synced_at";
    const TIME_COLUMN: &'static str = "committed_at";
    const KEY_COLUMNS: &'static [&'static str] = &["project_id", "sha"];
    type Key = (i64, String);
    type Narrow = ();

    fn key(&self) -> (i64, String) {
        (self.project_id, self.sha.clone())
    }
}

/// Merge requests in GitLab's `state`: `opened`, `closed`, `merged` or `locked`.
#[derive(Debug, Clone, Default)]
pub struct InState(pub Option<String>);

impl Listed for MergeRequest {
    const TABLE: &'static str = "merge_requests";
    const COLUMNS: &'static str = "project_id, iid, gitlab_id, title, description, state, author_id, author_username, \
         source_branch, target_branch, sha, merge_commit_sha, web_url, created_at, gitlab_updated_at, merged_at, closed_at, \
         synced_at, ARRAY(SELECT c.sha FROM merge_request_commits c
               WHERE c.tenant_id = t.tenant_id AND c.connection_id = t.connection_id
                 AND c.project_id = t.project_id AND c.mr_iid = t.iid ORDER BY c.sha) AS commit_shas";
    const KEY_COLUMNS: &'static [&'static str] = &["project_id", "iid"];
    type Key = (i64, i64);
    type Narrow = InState;

    fn key(&self) -> (i64, i64) {
        (self.project_id, self.iid)
    }

    fn narrow(q: &mut QueryBuilder<Postgres>, state: &InState) {
        equals(q, "state", &state.0);
    }
}

/// Issues in GitLab's `state`: `opened` or `closed`.
impl Listed for Issue {
    const TABLE: &'static str = "issues";
    const COLUMNS: &'static str = "project_id, iid, gitlab_id, issue_type, title, description, state, author_id, \
         author_username, labels, confidential, web_url, created_at, gitlab_updated_at, closed_at, synced_at";
    const KEY_COLUMNS: &'static [&'static str] = &["project_id", "iid"];
    type Key = (i64, i64);
    type Narrow = InState;

    fn key(&self) -> (i64, i64) {
        (self.project_id, self.iid)
    }

    fn narrow(q: &mut QueryBuilder<Postgres>, state: &InState) {
        equals(q, "state", &state.0);
    }
}

impl Listed for Note {
    const TABLE: &'static str = "notes";
    const COLUMNS: &'static str = "project_id, gitlab_id, noteable_type, noteable_iid, commit_sha, body, author_id, \
         author_username, system, created_at, gitlab_updated_at, synced_at";
    const KEY_COLUMNS: &'static [&'static str] = &["project_id", "gitlab_id"];
    type Key = (i64, i64);
    type Narrow = Option<NoteParentFilter>;

    fn key(&self) -> (i64, i64) {
        (self.project_id, self.gitlab_id)
    }

    fn narrow(q: &mut QueryBuilder<Postgres>, parent: &Option<NoteParentFilter>) {
        if let Some(parent) = parent {
            q.push(" AND t.noteable_type = ").push_bind(parent.noteable_type.clone());
            if let Some(iid) = parent.noteable_iid {
                q.push(" AND t.noteable_iid = ").push_bind(iid);
            }
        }
    }
}

/// Pipelines with GitLab's pipeline `status`, e.g. `running` or `success` (the list's `state`).
impl Listed for Pipeline {
    const TABLE: &'static str = "pipelines";
    const COLUMNS: &'static str = "project_id, gitlab_id, iid, status, source, ref, sha, web_url, created_at, \
         gitlab_updated_at, finished_at, duration_seconds, synced_at";
    const KEY_COLUMNS: &'static [&'static str] = &["project_id", "gitlab_id"];
    type Key = (i64, i64);
    type Narrow = InState;

    fn key(&self) -> (i64, i64) {
        (self.project_id, self.gitlab_id)
    }

    fn narrow(q: &mut QueryBuilder<Postgres>, status: &InState) {
        equals(q, "status", &status.0);
    }
}

/// A place in the change feed: the writing transaction's id and the row's `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedPosition {
    pub xid: u64,
    pub seq: i64,
}

/// What kind of object a change is about (the changes migration's triggers name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = json!(ChangeEntity::MergeRequest))]
pub enum ChangeEntity {
    Project,
    Commit,
    MergeRequest,
    Issue,
    Note,
    Pipeline,
    /// A webhook event kept as GitLab sent it (tags, jobs, releases, deployments, members, subgroups).
    Event,
    /// The connection and everything synced through it was deleted.
    Connection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = json!(ChangeOp::Update))]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
}

/// GitLab's identity of the changed object within its connection: `gitlab_id` for projects;
/// `project_id` with `sha` (commits), `iid` (merge requests, issues) or `gitlab_id` (notes,
/// pipelines); `kind`, `object_key`, `project_id` and `action` for events; `connection_id` for
/// a deleted connection. Fields an entity does not have are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!(ChangeKey { project_id: Some(4567), iid: Some(17), ..ChangeKey::default() }))]
pub struct ChangeKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 7)]
    pub project_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 3)]
    pub iid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// An event's kind as GitLab names its hook (e.g. `tag_push`, `build`, `release`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// An event's object within its kind (e.g. the tag's ref, the job's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    /// An event's action as GitLab gave it (e.g. `create`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub position: FeedPosition,
    pub connection_id: Uuid,
    pub entity: ChangeEntity,
    pub op: ChangeOp,
    pub key: ChangeKey,
    pub changed_at: DateTime<Utc>,
}

/// The tenant's changes after `after`, oldest first, only from transactions that have finished
/// and behind which nothing can still appear.
///
/// Why not simply `ORDER BY seq` with `xid < xmin`: `pg_snapshot_xmin(pg_current_snapshot())`
/// is the oldest transaction id still running (in the whole cluster); every transaction with a
/// lower id has committed, and its rows are visible to this statement, or rolled back. Holding
/// back rows with `xid >= xmin` therefore hides everything a running transaction wrote and
/// everything that committed behind it. But a transaction gets its id at its first write, not
/// when it draws its `seq`: transaction A can take its id first (say by upserting a page), B
/// take a higher id and draw seq 10, A draw seq 11 and commit while B still runs. Then
/// `xid(A) < xmin = xid(B)`, A's seq 11 is returned, a client's cursor passes 10, and B's row
/// 10, visible once B commits, is never read. `seq` alone cannot tell that a lower number is
/// still in flight.
///
/// So the feed is ordered by `(xid, seq)` and read only below `xmin`: any row that becomes
/// visible later belongs to a transaction running now or starting later, whose id is at least
/// today's `xmin` and so above every position already returned. The order is gap-free and never
/// repeats; within one transaction it is `seq` order, i.e. the order of the writes; between
/// transactions it is the order they took their ids, which is commit order except for
/// overlapping transactions (those can only conflict on one row by one waiting for the other,
/// so a client that reads the object's current state on each change ends up right).
///
/// A long transaction anywhere in the cluster holds the feed back until it ends, which is what
/// makes it gap-free; sync transactions are one page each. xid8 ids never wrap (they carry the
/// epoch) and fit `u64`; they travel as text because sqlx has no xid8 type.
pub async fn changes(tx: &mut TenantTx, after: FeedPosition, limit: i64) -> Result<Vec<Change>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT xid::text AS xid, seq, connection_id, entity, op, key, changed_at FROM changes
         WHERE tenant_id = $1
           AND (xid, seq) > ($2::text::xid8, $3)
           AND xid < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY xid, seq
         LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(after.xid.to_string())
    .bind(after.seq)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let xid = r.xid.parse().map_err(|e: std::num::ParseIntError| crate::Error::Database(sqlx::Error::Decode(e.into())))?;
            Ok(Change {
                position: FeedPosition { xid, seq: r.seq },
                connection_id: r.connection_id,
                entity: r.entity,
                op: r.op,
                key: r.key.0,
                changed_at: r.changed_at,
            })
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    xid: String,
    seq: i64,
    connection_id: Uuid,
    entity: ChangeEntity,
    op: ChangeOp,
    key: sqlx::types::Json<ChangeKey>,
    changed_at: DateTime<Utc>,
}
