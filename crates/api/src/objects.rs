//! One synced object by the GitLab key the change feed names it with:
//! `/v1/connections/{id}/projects/{project_id}` and, below it, `commits/{sha}`,
//! `merge_requests/{iid}`, `issues/{iid}`, `notes/{note_id}` and `pipelines/{pipeline_id}`; and
//! the same lookup for the feed's `include=object`.

use axum::Json;
use axum::extract::State;
use connector_store::TenantTx;
use connector_store::read::{self, ChangeEntity, ChangeKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Tenant;
use crate::data::{CommitView, IssueView, MergeRequestView, NoteView, PipelineView, ProjectView};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiPath;

/// A synced object's current state, as its own read answers it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(example = crate::examples::object)]
pub enum ObjectView {
    Project(ProjectView),
    Commit(CommitView),
    MergeRequest(MergeRequestView),
    Issue(IssueView),
    Note(NoteView),
    Pipeline(PipelineView),
}

/// The object `key` names among `connection`'s data, if it is there: none when it was deleted
/// since, and for the entities that are no stored object (events, a deleted connection).
pub(crate) async fn current(
    tx: &mut TenantTx,
    connection: Uuid,
    entity: ChangeEntity,
    key: &ChangeKey,
) -> Result<Option<ObjectView>, connector_store::Error> {
    let ChangeKey { project_id, gitlab_id, iid, sha, .. } = key;
    let found = match (entity, project_id) {
        (ChangeEntity::Project, _) => match gitlab_id {
            Some(id) => read::one::<read::Project>(tx, connection, *id).await?.map(|r| ObjectView::Project(r.into())),
            None => None,
        },
        (ChangeEntity::Commit, Some(p)) => match sha {
            Some(sha) => read::one::<read::Commit>(tx, connection, (*p, sha.clone())).await?.map(|r| ObjectView::Commit(r.into())),
            None => None,
        },
        (ChangeEntity::MergeRequest, Some(p)) => match iid {
            Some(iid) => read::one::<read::MergeRequest>(tx, connection, (*p, *iid)).await?.map(|r| ObjectView::MergeRequest(r.into())),
            None => None,
        },
        (ChangeEntity::Issue, Some(p)) => match iid {
            Some(iid) => read::one::<read::Issue>(tx, connection, (*p, *iid)).await?.map(|r| ObjectView::Issue(r.into())),
            None => None,
        },
        (ChangeEntity::Note, Some(p)) => match gitlab_id {
            Some(id) => read::one::<read::Note>(tx, connection, (*p, *id)).await?.map(|r| ObjectView::Note(r.into())),
            None => None,
        },
        (ChangeEntity::Pipeline, Some(p)) => match gitlab_id {
            Some(id) => read::one::<read::Pipeline>(tx, connection, (*p, *id)).await?.map(|r| ObjectView::Pipeline(r.into())),
            None => None,
        },
        // A project's objects are named within their project.
        (ChangeEntity::Commit | ChangeEntity::MergeRequest | ChangeEntity::Issue | ChangeEntity::Note | ChangeEntity::Pipeline, None) => {
            None
        }
        (ChangeEntity::Event | ChangeEntity::Connection, _) => None,
    };
    Ok(found)
}

/// The object, or the missing-id 404 (also for another tenant's connection, whose rows the
/// tenant's transaction does not see).
async fn one(
    state: &AppState,
    tenant: &connector_store::TenantId,
    connection: Uuid,
    entity: ChangeEntity,
    key: ChangeKey,
) -> ApiResult<Json<ObjectView>> {
    let mut tx = state.store.tenant_tx(tenant).await?;
    let found = current(&mut tx, connection, entity, &key).await?;
    tx.commit().await?;
    found.map(Json).ok_or_else(ApiError::not_found)
}

/// One project synced through a connection.
///
/// The project as its change in the feed names it (`key.gitlab_id`), as the project list shows it.
#[utoipa::path(
    get, path = "/v1/connections/{id}/projects/{project_id}", tag = "data", operation_id = "get_project",
    params(("id" = Uuid, Path, description = "The connection id"), ("project_id" = i64, Path, description = "GitLab's project id")),
    responses(
        (status = 200, body = ProjectView, description = "The project as last read from GitLab"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant, or no such project in it"),
    )
)]
pub async fn project(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath((id, project)): ApiPath<(Uuid, i64)>,
) -> ApiResult<Json<ObjectView>> {
    one(&state, &tenant, id, ChangeEntity::Project, ChangeKey { gitlab_id: Some(project), ..Default::default() }).await
}

/// One commit synced through a connection.
///
/// The commit its change names (`key.project_id`, `key.sha`), as the commit list shows it.
#[utoipa::path(
    get, path = "/v1/connections/{id}/projects/{project_id}/commits/{sha}", tag = "data", operation_id = "get_commit",
    params(
        ("id" = Uuid, Path, description = "The connection id"),
        ("project_id" = i64, Path, description = "GitLab's project id"),
        ("sha" = String, Path, description = "The commit's full sha"),
    ),
    responses(
        (status = 200, body = CommitView, description = "The commit"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant, or no such commit in it"),
    )
)]
pub async fn commit(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath((id, project, sha)): ApiPath<(Uuid, i64, String)>,
) -> ApiResult<Json<ObjectView>> {
    one(&state, &tenant, id, ChangeEntity::Commit, ChangeKey { project_id: Some(project), sha: Some(sha), ..Default::default() }).await
}

/// One merge request synced through a connection.
///
/// The merge request its change names (`key.project_id`, `key.iid`), as the merge request list shows it.
#[utoipa::path(
    get, path = "/v1/connections/{id}/projects/{project_id}/merge_requests/{iid}", tag = "data", operation_id = "get_merge_request",
    params(
        ("id" = Uuid, Path, description = "The connection id"),
        ("project_id" = i64, Path, description = "GitLab's project id"),
        ("iid" = i64, Path, description = "The merge request's number within its project (`!iid`)"),
    ),
    responses(
        (status = 200, body = MergeRequestView, description = "The merge request with the commits it holds"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant, or no such merge request in it"),
    )
)]
pub async fn merge_request(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath((id, project, iid)): ApiPath<(Uuid, i64, i64)>,
) -> ApiResult<Json<ObjectView>> {
    one(&state, &tenant, id, ChangeEntity::MergeRequest, ChangeKey { project_id: Some(project), iid: Some(iid), ..Default::default() })
        .await
}

/// One issue synced through a connection.
///
/// The issue its change names (`key.project_id`, `key.iid`), as the issue list shows it.
#[utoipa::path(
    get, path = "/v1/connections/{id}/projects/{project_id}/issues/{iid}", tag = "data", operation_id = "get_issue",
    params(
        ("id" = Uuid, Path, description = "The connection id"),
        ("project_id" = i64, Path, description = "GitLab's project id"),
        ("iid" = i64, Path, description = "The issue's number within its project (`#iid`)"),
    ),
    responses(
        (status = 200, body = IssueView, description = "The issue"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant, or no such issue in it"),
    )
)]
pub async fn issue(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath((id, project, iid)): ApiPath<(Uuid, i64, i64)>,
) -> ApiResult<Json<ObjectView>> {
    one(&state, &tenant, id, ChangeEntity::Issue, ChangeKey { project_id: Some(project), iid: Some(iid), ..Default::default() }).await
}

/// One note (comment) synced through a connection.
///
/// The note its change names (`key.project_id`, `key.gitlab_id`), as the note list shows it.
#[utoipa::path(
    get, path = "/v1/connections/{id}/projects/{project_id}/notes/{note_id}", tag = "data", operation_id = "get_note",
    params(
        ("id" = Uuid, Path, description = "The connection id"),
        ("project_id" = i64, Path, description = "GitLab's project id"),
        ("note_id" = i64, Path, description = "GitLab's note id"),
    ),
    responses(
        (status = 200, body = NoteView, description = "The note"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant, or no such note in it"),
    )
)]
pub async fn note(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath((id, project, note)): ApiPath<(Uuid, i64, i64)>,
) -> ApiResult<Json<ObjectView>> {
    one(&state, &tenant, id, ChangeEntity::Note, ChangeKey { project_id: Some(project), gitlab_id: Some(note), ..Default::default() }).await
}

/// One CI pipeline synced through a connection.
///
/// The pipeline its change names (`key.project_id`, `key.gitlab_id`), as the pipeline list shows it.
#[utoipa::path(
    get, path = "/v1/connections/{id}/projects/{project_id}/pipelines/{pipeline_id}", tag = "data", operation_id = "get_pipeline",
    params(
        ("id" = Uuid, Path, description = "The connection id"),
        ("project_id" = i64, Path, description = "GitLab's project id"),
        ("pipeline_id" = i64, Path, description = "GitLab's pipeline id"),
    ),
    responses(
        (status = 200, body = PipelineView, description = "The pipeline with its status and timings"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant, or no such pipeline in it"),
    )
)]
pub async fn pipeline(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiPath((id, project, pipeline)): ApiPath<(Uuid, i64, i64)>,
) -> ApiResult<Json<ObjectView>> {
    one(
        &state,
        &tenant,
        id,
        ChangeEntity::Pipeline,
        ChangeKey { project_id: Some(project), gitlab_id: Some(pipeline), ..Default::default() },
    )
    .await
}
