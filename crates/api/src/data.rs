//! Reading synced data back: `/v1/connections/{id}/{projects,commits,merge_requests,issues,
//! notes,pipelines}` and the tenant's change feed, `/v1/changes`.
//!
//! Lists page by the object's key with an opaque cursor holding the last key; the store module
//! `connector_store::read` explains why that order neither repeats nor skips rows that change
//! between pages, and why the change feed is ordered as it is.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use connector_store::read::{self, ChangeEntity, ChangeKey, ChangeOp, FeedPosition, Filter, NoteParentFilter, Rows};
use connector_store::{TenantId, connections};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{ApiQuery, IdPath};
use crate::objects::{self, ObjectView};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

const MERGE_REQUEST_STATES: &[&str] = &["opened", "closed", "merged", "locked"];
const ISSUE_STATES: &[&str] = &["opened", "closed"];
const PIPELINE_STATUSES: &[&str] = &[
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
];
const NOTEABLE_TYPES: &[&str] = &["MergeRequest", "Issue", "Commit", "Snippet"];

/// Query parameters of the project and commit lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this GitLab project (its numeric id).
    #[param(value_type = Option<i64>)]
    project: Option<String>,
    /// Only objects updated at or after this time (RFC 3339, e.g. `2024-01-01T00:00:00Z`); for
    /// commits the commit time, for projects the last activity.
    #[param(value_type = Option<String>, format = DateTime)]
    updated_since: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Query parameters of the merge request list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MergeRequestParams {
    /// Only this GitLab project (its numeric id).
    #[param(value_type = Option<i64>)]
    project: Option<String>,
    /// Only merge requests updated at or after this time (RFC 3339, e.g. `2024-01-01T00:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    updated_since: Option<String>,
    /// Only merge requests in this state: `opened`, `closed`, `merged` or `locked`.
    state: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Query parameters of the issue list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IssueParams {
    /// Only this GitLab project (its numeric id).
    #[param(value_type = Option<i64>)]
    project: Option<String>,
    /// Only issues updated at or after this time (RFC 3339, e.g. `2024-01-01T00:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    updated_since: Option<String>,
    /// Only issues in this state: `opened` or `closed`.
    state: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Query parameters of the note list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NoteParams {
    /// Only this GitLab project (its numeric id).
    #[param(value_type = Option<i64>)]
    project: Option<String>,
    /// Only notes updated at or after this time (RFC 3339, e.g. `2024-01-01T00:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    updated_since: Option<String>,
    /// Only notes on this kind of object: `MergeRequest`, `Issue`, `Commit` or `Snippet`.
    noteable_type: Option<String>,
    /// Only notes on the object with this iid (needs `noteable_type` and `project`, since iids
    /// are numbered per project; not for commits).
    #[param(value_type = Option<i64>)]
    noteable_iid: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Query parameters of the pipeline list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PipelineParams {
    /// Only this GitLab project (its numeric id).
    #[param(value_type = Option<i64>)]
    project: Option<String>,
    /// Only pipelines updated at or after this time (RFC 3339, e.g. `2024-01-01T00:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    updated_since: Option<String>,
    /// Only pipelines with this `status`: `created`, `waiting_for_resource`, `preparing`,
    /// `pending`, `running`, `success`, `failed`, `canceling`, `canceled`, `skipped`, `manual`
    /// or `scheduled`.
    state: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The last `cursor` seen (an item's, or a page's `next_cursor`); omit to start at the
    /// beginning.
    after: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `object`: each change carries the current state of the object it names, as its own read
    /// answers it, so there is nothing to re-read.
    #[param(value_type = Option<Include>)]
    include: Option<String>,
}

/// What the change feed can embed.
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "snake_case")]
#[schema(example = "object")]
pub enum Include {
    Object,
}

/// A GitLab project synced through the connection.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::project)]
pub struct ProjectView {
    /// GitLab's project id.
    pub id: i64,
    #[schema(example = "my-group/my-project")]
    pub path_with_namespace: String,
    pub name: String,
    pub namespace_id: Option<i64>,
    pub default_branch: Option<String>,
    pub visibility: Option<String>,
    pub web_url: Option<String>,
    pub archived: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub last_activity_at: Option<DateTime<Utc>>,
    /// When the project was found gone from GitLab, if it was.
    pub deleted_at: Option<DateTime<Utc>>,
    /// When we last stored it.
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::commit)]
pub struct CommitView {
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

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::merge_request)]
pub struct MergeRequestView {
    pub project_id: i64,
    /// The merge request's number within its project (`!iid`).
    pub iid: i64,
    /// GitLab's global merge request id.
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    /// `opened`, `closed`, `merged` or `locked`.
    pub state: String,
    pub author_id: Option<i64>,
    pub author_username: Option<String>,
    pub source_branch: Option<String>,
    pub target_branch: Option<String>,
    /// The head commit of the source branch.
    pub sha: Option<String>,
    pub merge_commit_sha: Option<String>,
    /// The commits the merge request holds, as far as synced.
    pub commit_shas: Vec<String>,
    pub web_url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub merged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::issue)]
pub struct IssueView {
    pub project_id: i64,
    /// The issue's number within its project (`#iid`).
    pub iid: i64,
    /// GitLab's global issue id.
    pub id: i64,
    /// `issue`, `incident`, `test_case` or `task`.
    pub issue_type: String,
    pub title: String,
    pub description: Option<String>,
    /// `opened` or `closed`.
    pub state: String,
    pub author_id: Option<i64>,
    pub author_username: Option<String>,
    pub labels: Vec<String>,
    pub confidential: bool,
    pub web_url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::note)]
pub struct NoteView {
    pub project_id: i64,
    /// GitLab's note id.
    pub id: i64,
    /// `MergeRequest`, `Issue`, `Commit` or `Snippet`.
    pub noteable_type: String,
    /// The parent's iid (merge requests, issues, snippets).
    pub noteable_iid: Option<i64>,
    /// The parent commit (commit notes).
    pub commit_sha: Option<String>,
    pub body: String,
    pub author_id: Option<i64>,
    pub author_username: Option<String>,
    /// Written by GitLab itself (e.g. "changed the description").
    pub system: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub synced_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::pipeline)]
pub struct PipelineView {
    pub project_id: i64,
    /// GitLab's pipeline id.
    pub id: i64,
    /// The pipeline's number within its project.
    pub iid: Option<i64>,
    /// e.g. `running`, `success`, `failed`.
    pub status: String,
    /// What started it, e.g. `push`, `merge_request_event`, `schedule`.
    pub source: Option<String>,
    /// The branch or tag.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub web_url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub synced_at: DateTime<Utc>,
}

/// One change of synced data.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::change)]
pub struct ChangeView {
    /// This change's place in the feed; pass it as `after` to read what follows.
    pub cursor: String,
    pub connection_id: Uuid,
    pub entity: ChangeEntity,
    pub op: ChangeOp,
    pub key: ChangeKey,
    pub changed_at: DateTime<Utc>,
    /// With `include=object`, the object's state now (it may have changed again since, which a
    /// later change tells): `null` once it is deleted, and for `event` and `connection` changes.
    /// `null` without `include=object`.
    pub object: Option<ObjectView>,
}

macro_rules! page_type {
    ($name:ident, $item:ty, $example:path) => {
        #[derive(Debug, Serialize, Deserialize, ToSchema)]
        #[schema(example = $example)]
        pub struct $name {
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; `null` on the last page.
            pub next_cursor: Option<String>,
        }
    };
}

page_type!(ProjectList, ProjectView, crate::examples::project_list);
page_type!(CommitList, CommitView, crate::examples::commit_list);
page_type!(MergeRequestList, MergeRequestView, crate::examples::merge_request_list);
page_type!(IssueList, IssueView, crate::examples::issue_list);
page_type!(NoteList, NoteView, crate::examples::note_list);
page_type!(PipelineList, PipelineView, crate::examples::pipeline_list);

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::change_list)]
pub struct ChangeList {
    /// Oldest first.
    pub items: Vec<ChangeView>,
    /// Always present: the last item's cursor, or the `after` given when nothing new is there
    /// yet. Poll with it as `after`.
    pub next_cursor: String,
}

impl From<read::Project> for ProjectView {
    fn from(r: read::Project) -> Self {
        Self {
            id: r.gitlab_id,
            path_with_namespace: r.path_with_namespace,
            name: r.name,
            namespace_id: r.namespace_id,
            default_branch: r.default_branch,
            visibility: r.visibility,
            web_url: r.web_url,
            archived: r.archived,
            created_at: r.created_at,
            last_activity_at: r.last_activity_at,
            deleted_at: r.deleted_at,
            synced_at: r.synced_at,
        }
    }
}

impl From<read::Commit> for CommitView {
    fn from(r: read::Commit) -> Self {
        Self {
            project_id: r.project_id,
            sha: r.sha,
            title: r.title,
            message: r.message,
            author_name: r.author_name,
            author_email: r.author_email,
            authored_at: r.authored_at,
            committer_name: r.committer_name,
            committer_email: r.committer_email,
            committed_at: r.committed_at,
            parent_ids: r.parent_ids,
            web_url: r.web_url,
            synced_at: r.synced_at,
        }
    }
}

impl From<read::MergeRequest> for MergeRequestView {
    fn from(r: read::MergeRequest) -> Self {
        Self {
            project_id: r.project_id,
            iid: r.iid,
            id: r.gitlab_id,
            title: r.title,
            description: r.description,
            state: r.state,
            author_id: r.author_id,
            author_username: r.author_username,
            source_branch: r.source_branch,
            target_branch: r.target_branch,
            sha: r.sha,
            merge_commit_sha: r.merge_commit_sha,
            commit_shas: r.commit_shas,
            web_url: r.web_url,
            created_at: r.created_at,
            updated_at: r.gitlab_updated_at,
            merged_at: r.merged_at,
            closed_at: r.closed_at,
            synced_at: r.synced_at,
        }
    }
}

impl From<read::Issue> for IssueView {
    fn from(r: read::Issue) -> Self {
        Self {
            project_id: r.project_id,
            iid: r.iid,
            id: r.gitlab_id,
            issue_type: r.issue_type,
            title: r.title,
            description: r.description,
            state: r.state,
            author_id: r.author_id,
            author_username: r.author_username,
            labels: r.labels,
            confidential: r.confidential,
            web_url: r.web_url,
            created_at: r.created_at,
            updated_at: r.gitlab_updated_at,
            closed_at: r.closed_at,
            synced_at: r.synced_at,
        }
    }
}

impl From<read::Note> for NoteView {
    fn from(r: read::Note) -> Self {
        Self {
            project_id: r.project_id,
            id: r.gitlab_id,
            noteable_type: r.noteable_type,
            noteable_iid: r.noteable_iid,
            commit_sha: r.commit_sha,
            body: r.body,
            author_id: r.author_id,
            author_username: r.author_username,
            system: r.system,
            created_at: r.created_at,
            updated_at: r.gitlab_updated_at,
            synced_at: r.synced_at,
        }
    }
}

impl From<read::Pipeline> for PipelineView {
    fn from(r: read::Pipeline) -> Self {
        Self {
            project_id: r.project_id,
            id: r.gitlab_id,
            iid: r.iid,
            status: r.status,
            source: r.source,
            git_ref: r.git_ref,
            sha: r.sha,
            web_url: r.web_url,
            created_at: r.created_at,
            updated_at: r.gitlab_updated_at,
            finished_at: r.finished_at,
            duration_seconds: r.duration_seconds,
            synced_at: r.synced_at,
        }
    }
}

/// Gathers every bad field of a request, so one 422 names them all. A value that failed to
/// parse is replaced by its default, which [`Checks::finish`] keeps from ever being used.
#[derive(Default)]
struct Checks(Vec<FieldError>);

impl Checks {
    fn take<T: Default>(&mut self, parsed: Result<T, FieldError>) -> T {
        parsed.unwrap_or_else(|e| {
            self.0.push(e);
            T::default()
        })
    }

    fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::invalid(self.0)) }
    }
}

fn parse_limit(raw: Option<&str>) -> Result<i64, FieldError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
    }
}

fn parse_id(field: &str, raw: Option<&str>) -> Result<Option<i64>, FieldError> {
    raw.map(|raw| raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| FieldError::new(field, "must be a positive whole number")))
        .transpose()
}

fn parse_time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, FieldError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            // A `+` left unencoded in a query string arrives as a space.
            FieldError::new(field, "must be an RFC 3339 time such as 2024-01-01T00:00:00Z (encode `+` as %2B)")
        })
    })
    .transpose()
}

/// The list's `state` filter, one of `allowed`.
fn in_state(checks: &mut Checks, raw: Option<&str>, allowed: &[&str]) -> read::InState {
    read::InState(checks.take(parse_choice("state", raw, allowed)).map(str::to_owned))
}

fn parse_choice<'a>(field: &str, raw: Option<&'a str>, allowed: &[&str]) -> Result<Option<&'a str>, FieldError> {
    match raw {
        Some(value) if !allowed.contains(&value) => Err(FieldError::new(field, format!("must be one of {}", allowed.join(", ")))),
        other => Ok(other),
    }
}

fn filter(checks: &mut Checks, project: Option<&str>, updated_since: Option<&str>) -> Filter {
    Filter { project: checks.take(parse_id("project", project)), updated_since: checks.take(parse_time("updated_since", updated_since)) }
}

/// A cursor is the last key of a page with the name of its list, so a cursor from one list is
/// refused by another instead of silently starting somewhere arbitrary. Base64 keeps clients
/// from building or editing them.
pub(crate) fn encode_cursor(list: &str, key: impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&(list, key)).expect("cursor keys serialize"))
}

fn decode_cursor<K: DeserializeOwned>(field: &str, list: &str, raw: Option<&str>) -> Result<Option<K>, FieldError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<(String, K)>(&bytes).ok())
        .filter(|(name, _)| name == list)
        .map(|(_, key)| Some(key))
        .ok_or_else(|| FieldError::new(field, "is not a cursor this list returned"))
}

/// Cuts the one extra row a list fetched (which tells that another page follows) and names the
/// last key of the page as the next cursor.
fn paginate<R: read::Listed>(mut rows: Vec<R>, limit: i64) -> (Vec<R>, Option<String>)
where
    R::Key: Serialize,
{
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|r| encode_cursor(R::TABLE, r.key()))).flatten();
    (rows, next)
}

/// The query parameters every list takes.
struct PageQuery<'a> {
    project: Option<&'a str>,
    updated_since: Option<&'a str>,
    limit: Option<&'a str>,
    cursor: Option<&'a str>,
}

macro_rules! page_query {
    ($($params:ty),*) => {$(
        impl $params {
            fn page_query(&self) -> PageQuery<'_> {
                PageQuery {
                    project: self.project.as_deref(),
                    updated_since: self.updated_since.as_deref(),
                    limit: self.limit.as_deref(),
                    cursor: self.cursor.as_deref(),
                }
            }
        }
    )*};
}

page_query!(ListParams, MergeRequestParams, IssueParams, NoteParams, PipelineParams);

/// One page of one of a connection's lists, as every list handler answers it: the parameters
/// checked (every bad one named in one 422, in the order the list takes them: the common
/// filters, the list's own (`narrow`), the page), then the connection looked up (so another
/// tenant's is the missing-id 404), then the rows after the cursor in key order.
async fn page<R, V>(
    state: &AppState,
    tenant: &TenantId,
    connection: Uuid,
    query: PageQuery<'_>,
    narrow: impl FnOnce(&mut Checks, &Filter) -> R::Narrow,
) -> ApiResult<(Vec<V>, Option<String>)>
where
    R: read::Listed,
    R::Key: Serialize + DeserializeOwned,
    V: From<R>,
{
    let mut checks = Checks::default();
    let filter = filter(&mut checks, query.project, query.updated_since);
    let narrow = narrow(&mut checks, &filter);
    let limit = checks.take(parse_limit(query.limit));
    let after = checks.take(decode_cursor("cursor", R::TABLE, query.cursor));
    checks.finish()?;
    let mut tx = state.store.tenant_tx(tenant).await?;
    connections::get(&mut tx, connection).await?;
    let rows = read::list::<R>(&mut tx, connection, &filter, &narrow, Rows::Page { after, limit: limit + 1 }).await?;
    tx.commit().await?;
    let (rows, next_cursor) = paginate(rows, limit);
    Ok((rows.into_iter().map(V::from).collect(), next_cursor))
}

/// A list's handler with its documentation: what differs between the lists is their text, their
/// parameters and answer, the row they read and the filter only they have (`narrow`, given the
/// request's checks so far, the common filter and the parameters); the rest is [`page`].
macro_rules! list_handler {
    (
        $(#[doc = $doc:literal])*
        $name:ident: GET $path:literal as $operation:literal, $params:ident -> $list:ident of $row:ty, $ordered:literal,
        $narrow:expr
    ) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            get, path = $path, tag = "data", operation_id = $operation,
            params(("id" = Uuid, Path, description = "The connection id"), $params),
            responses(
                (status = 200, body = $list, description = $ordered),
                (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
                (status = 422, body = ErrorBody, description = "A query parameter is not valid; `details` names each"),
            )
        )]
        pub async fn $name(
            State(state): State<AppState>,
            Tenant(tenant): Tenant,
            IdPath(id): IdPath,
            ApiQuery(p): ApiQuery<$params>,
        ) -> ApiResult<Json<$list>> {
            let narrow: fn(&mut Checks, &Filter, &$params) -> <$row as read::Listed>::Narrow = $narrow;
            let narrowed = |checks: &mut Checks, filter: &Filter| narrow(checks, filter, &p);
            let (items, next_cursor) = page::<$row, _>(&state, &tenant, id, p.page_query(), narrowed).await?;
            Ok(Json($list { items, next_cursor }))
        }
    };
}

list_handler! {
    /// The projects synced through a connection.
    ///
    /// Each GitLab project of the connection's groups (or of its `projects_list`), as last read from
    /// GitLab, newest activity last; filter by `project` or `updated_since`, page with `cursor`.
    projects: GET "/v1/connections/{id}/projects" as "list_projects",
    ListParams -> ProjectList of read::Project,
    "One page of the connection's projects, by project id",
    |_, _, _| ()
}

list_handler! {
    /// The commits synced through a connection.
    ///
    /// Commits of every branch since `start_date`, with their author and committer times as GitLab
    /// reports them (which the committer's clock sets, so they may lie); filter by `project` or
    /// `updated_since` (the commit time), page with `cursor`.
    commits: GET "/v1/connections/{id}/commits" as "list_commits",
    ListParams -> CommitList of read::Commit,
    "One page of the connection's commits, by project and sha",
    |_, _, _| ()
}

list_handler! {
    /// The merge requests synced through a connection.
    ///
    /// Each merge request updated since `start_date`, with the commits it holds; filter by `project`,
    /// `state` or `updated_since`, page with `cursor`.
    merge_requests: GET "/v1/connections/{id}/merge_requests" as "list_merge_requests",
    MergeRequestParams -> MergeRequestList of read::MergeRequest,
    "One page of the connection's merge requests, by project and iid",
    |checks, _, p| in_state(checks, p.state.as_deref(), MERGE_REQUEST_STATES)
}

list_handler! {
    /// The issues synced through a connection.
    ///
    /// Each issue updated since `start_date`; filter by `project`, `state` or `updated_since`, page
    /// with `cursor`.
    issues: GET "/v1/connections/{id}/issues" as "list_issues",
    IssueParams -> IssueList of read::Issue,
    "One page of the connection's issues, by project and iid",
    |checks, _, p| in_state(checks, p.state.as_deref(), ISSUE_STATES)
}

list_handler! {
    /// The notes synced through a connection.
    ///
    /// Comments on merge requests, issues, commits and snippets (system notes included, marked); filter
    /// by `project`, by `noteable_type` with `noteable_iid`, or by `updated_since`, page with `cursor`.
    notes: GET "/v1/connections/{id}/notes" as "list_notes",
    NoteParams -> NoteList of read::Note,
    "One page of the connection's notes (comments), by project and note id",
    |checks, filter, p| {
        let noteable_type = checks.take(parse_choice("noteable_type", p.noteable_type.as_deref(), NOTEABLE_TYPES));
        let noteable_iid = checks.take(parse_id("noteable_iid", p.noteable_iid.as_deref()));
        checks.take(note_parent(p.noteable_type.is_some(), noteable_type, noteable_iid, filter.project.is_some()))
    }
}

list_handler! {
    /// The CI pipelines synced through a connection.
    ///
    /// Each pipeline updated since `start_date`, with its status and timings; filter by `project`,
    /// `state` or `updated_since`, page with `cursor`.
    pipelines: GET "/v1/connections/{id}/pipelines" as "list_pipelines",
    PipelineParams -> PipelineList of read::Pipeline,
    "One page of the connection's pipelines, by project and pipeline id",
    |checks, _, p| in_state(checks, p.state.as_deref(), PIPELINE_STATUSES)
}

/// An iid names a parent only together with its kind and its project; commits are named by sha.
/// `type_given` tells a missing `noteable_type` from a bad one (already reported).
fn note_parent(
    type_given: bool,
    noteable_type: Option<&str>,
    noteable_iid: Option<i64>,
    project_given: bool,
) -> Result<Option<NoteParentFilter>, FieldError> {
    let need = |message: &str| Err(FieldError::new("noteable_iid", message));
    match (noteable_type, noteable_iid) {
        (_, Some(_)) if !type_given => need("needs `noteable_type` too"),
        (_, Some(_)) if !project_given => need("needs `project` too: iids are numbered per project"),
        (Some("Commit"), Some(_)) => need("does not apply to commits, which are named by sha"),
        (Some(t), iid) => Ok(Some(NoteParentFilter { noteable_type: t.to_owned(), noteable_iid: iid })),
        (None, _) => Ok(None),
    }
}

const FEED: &str = "changes";

pub(crate) fn feed_cursor(position: FeedPosition) -> String {
    encode_cursor(FEED, (position.xid, position.seq))
}

/// The tenant's change feed.
///
/// Every insert, update and delete of synced data across the tenant's connections, in commit order,
/// for following changes incrementally: poll with the last `next_cursor` as `after`, and re-read
/// the object a change names by its `key`. A deleted connection leaves one `connection` `delete`
/// change.
#[utoipa::path(
    get, path = "/v1/changes", tag = "data", operation_id = "list_changes",
    params(ChangesParams),
    responses(
        (status = 200, body = ChangeList, description = "The tenant's next changes of synced data, oldest first, gap-free: a change appears only once nothing can still appear before it"),
        (status = 422, body = ErrorBody, description = "`after` or `limit` is not valid"),
    )
)]
pub async fn changes(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiQuery(p): ApiQuery<ChangesParams>,
) -> ApiResult<Json<ChangeList>> {
    let mut checks = Checks::default();
    let after: Option<(u64, i64)> = checks.take(decode_cursor("after", FEED, p.after.as_deref()));
    let limit = checks.take(parse_limit(p.limit.as_deref()));
    let include_object = checks.take(parse_choice("include", p.include.as_deref(), &["object"])).is_some();
    checks.finish()?;
    let after = after.map(|(xid, seq)| FeedPosition { xid, seq }).unwrap_or_default();
    let mut tx = state.store.tenant_tx(&tenant).await?;
    let rows = read::changes(&mut tx, after, limit).await?;
    let next_cursor = feed_cursor(rows.last().map_or(after, |c| c.position));
    let mut items = Vec::with_capacity(rows.len());
    for c in rows {
        // In the feed's own transaction: an object deleted by a change already in the feed
        // reads as gone, never as a state older than the feed shows.
        let object = match (include_object, c.op) {
            (true, ChangeOp::Insert | ChangeOp::Update) => objects::current(&mut tx, c.connection_id, c.entity, &c.key).await?,
            (true, ChangeOp::Delete) | (false, _) => None,
        };
        items.push(ChangeView {
            cursor: feed_cursor(c.position),
            connection_id: c.connection_id,
            entity: c.entity,
            op: c.op,
            key: c.key,
            changed_at: c.changed_at,
            object,
        });
    }
    tx.commit().await?;
    Ok(Json(ChangeList { items, next_cursor }))
}
