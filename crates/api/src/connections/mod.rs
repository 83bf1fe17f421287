//! `/v1/connections`: a tenant's GitLab connections.

pub mod input;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use connector_store::connections::{self, Connection, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{ApiJson, IdPath};

/// A connection as the frontend sees it. The token itself is never shown, only a hint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    #[schema(value_type = String, example = "pending")]
    pub status: Status,
    /// Why the connection is in its status, and what to do about it, when that needs saying.
    pub status_message: Option<String>,
    #[schema(example = "https://gitlab.com")]
    pub gitlab_url: String,
    #[schema(example = json!([123, 456]))]
    pub groups_list: Vec<i64>,
    /// Project ids or full paths; empty means every project in the groups.
    #[schema(example = json!(["12", "my-group/my-project"]))]
    pub projects_list: Vec<String>,
    pub start_date: DateTime<Utc>,
    /// The token's last four characters (empty for very short tokens).
    #[schema(example = "x7Qz")]
    pub token_hint: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        Self {
            id: c.id,
            status: c.status,
            status_message: c.status_message,
            gitlab_url: c.gitlab_url,
            groups_list: c.groups_list,
            projects_list: c.projects_list,
            start_date: c.start_date,
            token_hint: c.token_hint,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

#[utoipa::path(
    post, path = "/v1/connections", tag = "connections", operation_id = "create_connection",
    request_body = input::CreateConnectionRequest,
    responses(
        (status = 201, body = ConnectionView, description = "Created; validation and sync start in the background"),
        (status = 400, body = ErrorBody, description = "The body is not JSON"),
        (status = 401, body = ErrorBody, description = "Missing or invalid bearer token"),
        (status = 413, body = ErrorBody, description = "The body is too large"),
        (status = 415, body = ErrorBody, description = "The body is not sent as application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or wrong; `details` names each"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<input::CreateConnectionRequest>,
) -> ApiResult<impl IntoResponse> {
    let new = input::parse_create(&body, Utc::now()).map_err(ApiError::invalid)?;
    let mut tx = state.store.tenant_tx(&tenant).await?;
    let connection = connections::insert(&mut tx, state.store.keys(), new).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, connection = %connection.id, "connection created");
    Ok((StatusCode::CREATED, Json(ConnectionView::from(connection))))
}

#[utoipa::path(
    get, path = "/v1/connections", tag = "connections", operation_id = "list_connections",
    params(ListParams),
    responses(
        (status = 200, body = ConnectionList, description = "One page of the tenant's connections, oldest first"),
        (status = 401, body = ErrorBody, description = "Missing or invalid bearer token"),
        (status = 422, body = ErrorBody, description = "`limit` or `cursor` is not valid"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<ConnectionList>> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::invalid(vec![FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))]))?,
    };
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::invalid(vec![FieldError::new("cursor", "is not a cursor this API returned")]))?,
        ),
    };
    let mut tx = state.store.tenant_tx(&tenant).await?;
    // One more than asked tells whether another page follows.
    let mut page = connections::list(&mut tx, after, limit + 1).await?;
    tx.commit().await?;
    let next_cursor = (page.len() as i64 > limit).then(|| {
        page.truncate(limit as usize);
        page.last().map(|c| c.id.to_string()).unwrap_or_default()
    });
    Ok(Json(ConnectionList { items: page.into_iter().map(Into::into).collect(), next_cursor }))
}

#[utoipa::path(
    get, path = "/v1/connections/{id}", tag = "connections", operation_id = "get_connection",
    params(("id" = Uuid, Path, description = "The connection id")),
    responses(
        (status = 200, body = ConnectionView, description = "The connection"),
        (status = 401, body = ErrorBody, description = "Missing or invalid bearer token"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
    ),
    security(("bearer" = []))
)]
pub async fn get(State(state): State<AppState>, Tenant(tenant): Tenant, IdPath(id): IdPath) -> ApiResult<Json<ConnectionView>> {
    let mut tx = state.store.tenant_tx(&tenant).await?;
    let connection = connections::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(connection.into()))
}

#[utoipa::path(
    patch, path = "/v1/connections/{id}", tag = "connections", operation_id = "update_connection",
    params(("id" = Uuid, Path, description = "The connection id")),
    request_body = input::UpdateConnectionRequest,
    responses(
        (status = 200, body = ConnectionView, description = "The updated connection, back to `pending`"),
        (status = 400, body = ErrorBody, description = "The body is not JSON"),
        (status = 401, body = ErrorBody, description = "Missing or invalid bearer token"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
        (status = 413, body = ErrorBody, description = "The body is too large"),
        (status = 415, body = ErrorBody, description = "The body is not sent as application/json"),
        (status = 422, body = ErrorBody, description = "A field is wrong, or nothing to change; `details` names each"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<input::UpdateConnectionRequest>,
) -> ApiResult<Json<ConnectionView>> {
    let changes = input::parse_update(&body, Utc::now()).map_err(ApiError::invalid)?;
    let mut tx = state.store.tenant_tx(&tenant).await?;
    let connection = connections::update(&mut tx, state.store.keys(), id, changes).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, connection = %id, "connection updated");
    Ok(Json(connection.into()))
}

#[utoipa::path(
    delete, path = "/v1/connections/{id}", tag = "connections", operation_id = "delete_connection",
    params(("id" = Uuid, Path, description = "The connection id")),
    responses(
        (status = 204, description = "Deleted, with its stored credentials and synced data"),
        (status = 401, body = ErrorBody, description = "Missing or invalid bearer token"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(State(state): State<AppState>, Tenant(tenant): Tenant, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    let mut tx = state.store.tenant_tx(&tenant).await?;
    connections::delete(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, connection = %id, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}
