//! `/v1/connections`: a tenant's GitLab connections.

pub mod input;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::time::Duration;

use connector_store::connections::{self, Connection, HookMode, Status};
use connector_store::health::{self, Health, HealthState, ReasonCode};
use connector_store::hooks::{HookScope, HookStatus};
use connector_store::jobs::{self, Job};
use connector_store::sync::Resource;
use connector_store::{TenantTx, dead_letters, hooks, sync};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Tenant;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode, FieldError};
use crate::etag::{IfMatch, etag};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::idempotency::{IdempotencyKey, Idempotent};

/// A connection as the frontend sees it. The token itself is never shown, only a hint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::connection)]
pub struct ConnectionView {
    pub id: Uuid,
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
    /// The GitLab user the token belongs to, once validated.
    pub gitlab_username: Option<String>,
    /// The token's expiry date, if it has one.
    pub token_expires_at: Option<chrono::NaiveDate>,
    /// Whether the connector rotates the token itself, 14 days before it expires, through
    /// GitLab's `POST /personal_access_tokens/self/rotate` (GitLab 16.10+).
    pub rotate_token: bool,
    /// Where our webhooks are installed, once validated.
    pub hook_mode: Option<HookMode>,
    /// Number of projects being synced, once validated.
    pub project_count: Option<usize>,
    /// When the last backfill or catch-up finished.
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Whether what Coworker reads through this connection is current, and if not, why.
    pub health: HealthView,
}

/// A connection's health. `status` says where it stands; this says whether it keeps up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::health)]
pub struct HealthView {
    /// `healthy`; `warning` (current, but something needs doing soon: a token about to expire);
    /// `degraded` (not keeping up: recent changes may be missing until the reasons clear).
    pub state: HealthState,
    /// Why the state is not `healthy`, oldest first.
    pub reasons: Vec<HealthReasonView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::health_reason)]
pub struct HealthReasonView {
    /// `token_expiring` makes the state `warning`, every other code `degraded`.
    pub code: ReasonCode,
    /// For a person: what is wrong and what to do.
    pub message: String,
    /// Since when it holds.
    pub since: DateTime<Utc>,
}

impl From<Health> for HealthView {
    fn from(h: Health) -> Self {
        Self {
            state: h.state,
            reasons: h.reasons.into_iter().map(|r| HealthReasonView { code: r.code, message: r.message, since: r.since }).collect(),
        }
    }
}

/// A connection with how its sync is going: progress, hooks, what is skipped and what failed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::connection_detail)]
pub struct ConnectionDetail {
    #[serde(flatten)]
    pub connection: ConnectionView,
    pub progress: ProgressView,
    pub hooks: Vec<HookView>,
    /// Resources deliberately not synced, and why (e.g. issues switched off in a project).
    pub skipped: Vec<SkippedView>,
    /// Jobs that failed for good, newest first, with the reason.
    pub failed_jobs: Vec<FailedJobView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::progress)]
pub struct ProgressView {
    pub projects_total: usize,
    pub projects_done: i64,
    pub records: RecordCounts,
    /// Streams (one resource of one project) finished, of all there are.
    pub streams_done: i64,
    pub streams_total: usize,
    /// Estimated seconds until the backfill is complete, while it runs.
    pub estimated_seconds_left: Option<i64>,
}

/// Records stored so far, per collection the backfill reads page by page.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::record_counts)]
pub struct RecordCounts {
    #[schema(example = 1200)]
    pub commits: i64,
    #[schema(example = 80)]
    pub merge_requests: i64,
    pub issues: i64,
    pub pipelines: i64,
}

impl From<&[(Resource, i64)]> for RecordCounts {
    fn from(per_resource: &[(Resource, i64)]) -> Self {
        let count = |wanted: Resource| per_resource.iter().filter(|(resource, _)| *resource == wanted).map(|(_, n)| n).sum();
        Self {
            commits: count(Resource::Commits),
            merge_requests: count(Resource::MergeRequests),
            issues: count(Resource::Issues),
            pipelines: count(Resource::Pipelines),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::hook)]
pub struct HookView {
    /// Our endpoint id for the hook (in the URL GitLab calls).
    pub id: Uuid,
    pub scope: HookScope,
    /// The GitLab group or project id.
    pub target_id: i64,
    pub gitlab_hook_id: Option<i64>,
    pub status: HookStatus,
    pub status_message: Option<String>,
    pub signed: bool,
    pub last_delivery_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::skipped)]
pub struct SkippedView {
    pub project_id: i64,
    pub resource: Resource,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::failed_job)]
pub struct FailedJobView {
    pub job: String,
    pub attempts: i32,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// Streams per project: commits, merge requests, issues, pipelines.
const RESOURCES_PER_PROJECT: i64 = Resource::ALL.len() as i64;

impl ConnectionView {
    fn new(c: Connection, health: Health) -> Self {
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
            gitlab_username: c.gitlab_username,
            token_expires_at: c.token_expires_at,
            rotate_token: c.rotate_token,
            hook_mode: c.hook_mode,
            project_count: c.resolved_project_ids.as_ref().map(Vec::len),
            last_synced_at: c.last_synced_at,
            health: health.into(),
        }
    }
}

/// The connections as shown, each with its health as of now.
async fn views(tx: &mut TenantTx, connections: Vec<Connection>) -> connector_store::Result<Vec<ConnectionView>> {
    let mut health = health::of(tx, &connections, Utc::now()).await?;
    Ok(connections
        .into_iter()
        .map(|c| {
            let h = health.remove(&c.id).unwrap_or(Health { state: HealthState::Healthy, reasons: Vec::new() });
            ConnectionView::new(c, h)
        })
        .collect())
}

async fn view(tx: &mut TenantTx, connection: Connection) -> connector_store::Result<ConnectionView> {
    Ok(views(tx, vec![connection]).await?.remove(0))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::examples::connection_list)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

/// Connect a GitLab.
///
/// Stores the connection as `pending` (the token sealed, never shown again) and starts its
/// validation, hook installation and backfill in the background; `GET /v1/connections/{id}` shows
/// how far it got. Send an `Idempotency-Key`, so that a double click or a retry creates one
/// connection.
#[utoipa::path(
    post, path = "/v1/connections", tag = "connections", operation_id = "create_connection",
    request_body = input::CreateConnectionRequest,
    params(IdempotencyKey),
    responses(
        (status = 201, body = ConnectionView, description = "Created; validation and sync start in the background. A request repeated with its `Idempotency-Key` gets this same answer again, with `Idempotent-Replayed: true`, and creates nothing",
            headers(
                ("Location" = String, description = "The connection's URL, `/v1/connections/{id}`"),
                ("ETag" = String, description = "The connection's revision, for `If-Match` (absent on a replayed answer)"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the kept answer to an earlier request with the same key"),
            )),
        (status = 400, body = ErrorBody, description = "The body is not JSON, or the `Idempotency-Key` is not 1 to 255 printable ASCII characters"),
        (status = 409, body = ErrorBody, description = "`limit_reached`: the tenant has as many connections as it may (`TENANT_MAX_CONNECTIONS`)"),
        (status = 413, body = ErrorBody, description = "The body is too large"),
        (status = 415, body = ErrorBody, description = "The body is not sent as application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or wrong (`validation_failed`; `details` names each), or `idempotency_key_reused`: the key was sent with another request in the last 24 hours"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<input::CreateConnectionRequest>,
) -> ApiResult<Response> {
    let request = Idempotent::new(key, "POST /v1/connections", &body);
    // A repeat is answered before its input is judged again (DNS may answer otherwise now).
    if let Some(replay) = request.answered(&mut state.store.tenant_tx(&tenant).await?).await? {
        return Ok(replay);
    }
    let input::Create { connection: new, rotate_token } = input::parse_create(&body, Utc::now()).map_err(ApiError::invalid)?;
    refuse_unreachable(&state.gitlab_urls, &new.gitlab_url).await.map_err(|e| ApiError::invalid(vec![e]))?;
    let mut tx = state.store.tenant_tx(&tenant).await?;
    if let Some(replay) = request.claim(&mut tx).await? {
        return Ok(replay);
    }
    connections::ensure_room(&mut tx, state.limits.max_connections_per_tenant).await?;
    let mut connection = connections::insert(&mut tx, state.store.keys(), new).await?;
    if rotate_token {
        connections::set_token_rotation(&mut tx, connection.id, true).await?;
        connection = connections::get(&mut tx, connection.id).await?;
    }
    jobs::enqueue(&mut tx, Job::Validate { connection: connection.id }, Duration::ZERO).await?;
    let (id, revision) = (connection.id, connection.revision);
    let shown = view(&mut tx, connection).await?;
    let mut response = request.answer(&mut tx, id, StatusCode::CREATED, &shown, Some(format!("/v1/connections/{id}"))).await?;
    tx.commit().await?;
    response.headers_mut().insert(header::ETAG, etag(revision));
    tracing::info!(tenant = %tenant, connection = %id, "connection created");
    Ok(response)
}

/// How long creation waits for DNS before leaving the decision to the worker.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuses at once a `gitlab_url` the GitLab client would never connect to: a non-public
/// address, a cloud metadata host, plain http to anything not allowlisted, or a name whose DNS
/// answer holds no permitted address. This is the early, readable refusal only: DNS may answer
/// differently later (rebinding), so the client vets the address of every connection it opens,
/// and a lookup that fails or stalls here is left to it.
pub(crate) async fn refuse_unreachable(policy: &gitlab_client::UrlPolicy, gitlab_url: &str) -> Result<(), FieldError> {
    let refuse = |e: gitlab_client::Error| match e {
        gitlab_client::Error::Blocked { reason } => FieldError::new(
            "gitlab_url",
            format!(
                "is not an address this service may connect to ({reason}); use the public https URL of your GitLab, or ask the operator to allowlist it"
            ),
        ),
        other => FieldError::new("gitlab_url", other.to_string()),
    };
    let url = url::Url::parse(gitlab_url).map_err(|_| FieldError::new("gitlab_url", "is not a URL"))?;
    policy.check_url(&url).map_err(refuse)?;
    if let Some(url::Host::Domain(name)) = url.host()
        && let Ok(Err(e)) = tokio::time::timeout(LOOKUP_TIMEOUT, policy.resolver_for(&url).resolve_host(name)).await
        && e.kind() == gitlab_client::ErrorKind::Blocked
    {
        return Err(refuse(e));
    }
    Ok(())
}

/// The tenant's connections.
///
/// Every connection of the tenant, oldest first, with its status and health; page with `cursor`.
#[utoipa::path(
    get, path = "/v1/connections", tag = "connections", operation_id = "list_connections",
    params(ListParams),
    responses(
        (status = 200, body = ConnectionList, description = "One page of the tenant's connections, oldest first"),
        (status = 422, body = ErrorBody, description = "`limit` or `cursor` is not valid"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ConnectionList>> {
    let limit =
        match params.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(raw) => raw.parse::<i64>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::invalid(vec![FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))])
            })?,
        };
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            Uuid::parse_str(raw).map_err(|_| ApiError::invalid(vec![FieldError::new("cursor", "is not a cursor this API returned")]))?,
        ),
    };
    let mut tx = state.store.tenant_tx(&tenant).await?;
    // One more than asked tells whether another page follows.
    let mut page = connections::list(&mut tx, after, limit + 1).await?;
    let next_cursor = (page.len() as i64 > limit).then(|| {
        page.truncate(limit as usize);
        page.last().map(|c| c.id.to_string()).unwrap_or_default()
    });
    let items = views(&mut tx, page).await?;
    tx.commit().await?;
    Ok(Json(ConnectionList { items, next_cursor }))
}

/// One connection with its sync progress.
///
/// The connection, its status and health, the progress of its backfill (records per collection,
/// streams done, an estimate of the time left), its webhooks as last seen in GitLab, what is
/// deliberately skipped and which jobs failed for good.
#[utoipa::path(
    get, path = "/v1/connections/{id}", tag = "connections", operation_id = "get_connection",
    params(("id" = Uuid, Path, description = "The connection id")),
    responses(
        (status = 200, body = ConnectionDetail, description = "The connection, its progress, hooks, skipped resources and failed jobs",
            headers(("ETag" = String, description = "The revision of what the user set on the connection: send it as `If-Match` with a PATCH or DELETE"))),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
    )
)]
pub async fn get(State(state): State<AppState>, Tenant(tenant): Tenant, IdPath(id): IdPath) -> ApiResult<impl IntoResponse> {
    let mut tx = state.store.tenant_tx(&tenant).await?;
    let connection = connections::get(&mut tx, id).await?;
    let tag = etag(connection.revision);
    let progress = sync::progress(&mut tx, id, RESOURCES_PER_PROJECT).await?;
    let hooks = hooks::for_connection(&mut tx, id).await?;
    let skipped = sync::skipped(&mut tx, id).await?;
    let failed = dead_letters::for_connection(&mut tx, id, 20).await?;
    let status = connection.status;
    let projects_total = connection.resolved_project_ids.as_ref().map_or(0, Vec::len);
    let connection = view(&mut tx, connection).await?;
    tx.commit().await?;
    let streams_total = projects_total * RESOURCES_PER_PROJECT as usize;
    let estimated_seconds_left =
        (status == Status::Backfilling && progress.streams_done > 0).then_some(progress.started_at).flatten().map(|started| {
            let elapsed = (Utc::now() - started).num_seconds().max(1);
            let left = streams_total as i64 - progress.streams_done;
            elapsed * left.max(0) / progress.streams_done
        });
    Ok((
        [(header::ETAG, tag)],
        Json(ConnectionDetail {
            connection,
            progress: ProgressView {
                projects_total,
                projects_done: progress.projects_done,
                records: RecordCounts::from(&progress.records[..]),
                streams_done: progress.streams_done,
                streams_total,
                estimated_seconds_left,
            },
            hooks: hooks
                .into_iter()
                .map(|h| HookView {
                    id: h.id,
                    scope: h.scope,
                    target_id: h.gitlab_target_id,
                    gitlab_hook_id: h.gitlab_hook_id,
                    status: h.status,
                    status_message: h.status_message,
                    signed: h.signing_enabled,
                    last_delivery_at: h.last_delivery_at,
                })
                .collect(),
            skipped: skipped
                .into_iter()
                .map(|s| SkippedView { project_id: s.project_id, resource: s.resource, reason: s.reason, recorded_at: s.recorded_at })
                .collect(),
            failed_jobs: failed
                .into_iter()
                .map(|f| FailedJobView { job: f.job_kind, attempts: f.attempts, reason: f.reason, failed_at: f.created_at })
                .collect(),
        }),
    ))
}

/// Change a connection.
///
/// Replaces any of `access_token`, `groups_list`, `projects_list` and `start_date`; the connection
/// goes back to `pending` and is validated again, keeping what is already stored and its hooks
/// (a new token for the same GitLab account replaces an expiring one without losing anything).
/// A paused connection stays paused until resumed. `gitlab_url` cannot change.
#[utoipa::path(
    patch, path = "/v1/connections/{id}", tag = "connections", operation_id = "update_connection",
    params(("id" = Uuid, Path, description = "The connection id"), IfMatch),
    request_body = input::UpdateConnectionRequest,
    responses(
        (status = 200, body = ConnectionView, description = "The updated connection, back to `pending`",
            headers(("ETag" = String, description = "The connection's new revision"))),
        (status = 400, body = ErrorBody, description = "The body is not JSON"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
        (status = 409, body = ErrorBody, description = "The connection is being deleted"),
        (status = 412, body = ErrorBody, description = "`precondition_failed`: `If-Match` names an older revision; nothing was changed"),
        (status = 413, body = ErrorBody, description = "The body is too large"),
        (status = 415, body = ErrorBody, description = "The body is not sent as application/json"),
        (status = 422, body = ErrorBody, description = "A field is wrong, or nothing to change; `details` names each"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    if_match: IfMatch,
    ApiJson(body): ApiJson<input::UpdateConnectionRequest>,
) -> ApiResult<impl IntoResponse> {
    let input::Update { changes, rotate_token } = input::parse_update(&body, Utc::now()).map_err(ApiError::invalid)?;
    let mut tx = state.store.tenant_tx(&tenant).await?;
    let current = connections::lock(&mut tx, id).await?;
    if_match.check(current.revision)?;
    if current.status == Status::Deleting {
        return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, "the connection is being deleted"));
    }
    if let Some(on) = rotate_token {
        connections::set_token_rotation(&mut tx, id, on).await?;
    }
    // The rotation setting alone changes nothing that is synced: no revalidation.
    let connection = if changes.is_empty() {
        connections::get(&mut tx, id).await?
    } else {
        let connection = connections::update(&mut tx, state.store.keys(), id, changes).await?;
        // A paused connection stays paused; resuming validates what changed.
        if connection.status != Status::Paused {
            jobs::enqueue(&mut tx, Job::Validate { connection: id }, Duration::ZERO).await?;
        }
        connection
    };
    let tag = etag(connection.revision);
    let shown = view(&mut tx, connection).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, connection = %id, "connection updated");
    Ok(([(header::ETAG, tag)], Json(shown)))
}

/// Disconnect a GitLab.
///
/// Marks the connection `deleting`; the worker removes our webhooks from GitLab, then the
/// connection and everything synced through it. It disappears once done (`GET` answers 404),
/// leaving one `connection` `delete` change in the feed.
#[utoipa::path(
    delete, path = "/v1/connections/{id}", tag = "connections", operation_id = "delete_connection",
    params(("id" = Uuid, Path, description = "The connection id"), IfMatch),
    responses(
        (status = 202, body = ConnectionView, description = "Disconnecting: our hooks are being removed from GitLab; then the connection, its stored credentials and its synced data are deleted and it answers 404"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
        (status = 412, body = ErrorBody, description = "`precondition_failed`: `If-Match` names an older revision; nothing was changed"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    if_match: IfMatch,
) -> ApiResult<impl IntoResponse> {
    let mut tx = state.store.tenant_tx(&tenant).await?;
    if_match.check(connections::lock(&mut tx, id).await?.revision)?;
    connections::set_status(&mut tx, id, Status::Deleting, None).await?;
    jobs::enqueue(&mut tx, Job::Disconnect { connection: id }, Duration::ZERO).await?;
    let connection = connections::get(&mut tx, id).await?;
    let shown = view(&mut tx, connection).await?;
    tx.commit().await?;
    tracing::info!(tenant = %tenant, connection = %id, "connection disconnecting");
    Ok((StatusCode::ACCEPTED, Json(shown)))
}

/// What a resync reads again.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = crate::examples::resync_request)]
pub struct ResyncRequest {
    /// Read these streams again from GitLab, from `start_date`: one project's (`project_id`),
    /// one resource of every project (`resource`), one resource of one project (both), or every
    /// stream (neither). Without it, the sync goes on from where it stood.
    pub refetch: Option<RefetchScope>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = crate::examples::refetch_scope)]
pub struct RefetchScope {
    /// A GitLab project id of the connection.
    pub project_id: Option<i64>,
    pub resource: Option<Resource>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: serde_json::Map<String, serde_json::Value>,
}

/// Validate and sync a connection again.
///
/// Sends the connection back to `pending`: validation runs again, then the hooks are checked and
/// the sync goes on from where it stood, or, with `refetch`, reads the streams it names again
/// from `start_date` (what is stored stays until they overwrite it). What a `failed`
/// connection's message asks for once its cause is fixed; a `paused` one is resumed instead.
#[utoipa::path(
    post, path = "/v1/connections/{id}/resync", tag = "connections", operation_id = "resync_connection",
    params(("id" = Uuid, Path, description = "The connection id"), IdempotencyKey),
    request_body(content = Option<ResyncRequest>, description = "Optional: what to read again"),
    responses(
        (status = 202, body = ConnectionView, description = "Validation starts again, then the hooks are checked and the sync goes on from where it stood (or reads again what `refetch` names); what is already stored is kept. Repeating it while validation waits to start changes nothing; repeated with its `Idempotency-Key`, it gets this same answer again with `Idempotent-Replayed: true`",
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the kept answer to an earlier request with the same key"))),
        (status = 400, body = ErrorBody, description = "The body is not JSON, or the `Idempotency-Key` is not 1 to 255 printable ASCII characters"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
        (status = 409, body = ErrorBody, description = "The connection is being deleted, or paused (resume it instead)"),
        (status = 415, body = ErrorBody, description = "A body is sent, but not as application/json"),
        (status = 422, body = ErrorBody, description = "`refetch` names a project the connection does not sync or an unknown field (`validation_failed`; `details` names each), or `idempotency_key_reused`: the key was sent with another request in the last 24 hours"),
    )
)]
pub async fn resync(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    key: IdempotencyKey,
    body: Option<ApiJson<ResyncRequest>>,
) -> ApiResult<Response> {
    let body = body.map(|ApiJson(b)| b).unwrap_or_default();
    let mut problems = input::unknown_fields(&body.unknown, "refetch");
    if let Some(scope) = &body.refetch {
        problems.extend(input::unknown_fields(&scope.unknown, "project_id, resource").into_iter().map(|mut e| {
            e.field = format!("refetch.{}", e.field);
            e
        }));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let request = Idempotent::new(key, &format!("POST /v1/connections/{id}/resync"), &body);
    let mut tx = state.store.tenant_tx(&tenant).await?;
    if let Some(replay) = request.claim(&mut tx).await? {
        return Ok(replay);
    }
    let current = connections::lock(&mut tx, id).await?;
    match current.status {
        Status::Deleting => return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, "the connection is being deleted")),
        Status::Paused => {
            return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, "the connection is paused: resume it to sync again"));
        }
        Status::Pending
        | Status::Validating
        | Status::InstallingHooks
        | Status::Backfilling
        | Status::Live
        | Status::NeedsReauth
        | Status::Invalid
        | Status::Failed => {}
    }
    if let Some(scope) = &body.refetch {
        if let Some(project) = scope.project_id
            && !current.resolved_project_ids.as_ref().is_some_and(|ids| ids.contains(&project))
        {
            return Err(ApiError::invalid(vec![FieldError::new(
                "refetch.project_id",
                format!("project {project} is not one this connection syncs"),
            )]));
        }
        sync::reset_streams(&mut tx, id, scope.project_id, scope.resource).await?;
    }
    connections::set_status(&mut tx, id, Status::Pending, None).await?;
    dead_letters::settle(&mut tx, id).await?;
    jobs::enqueue_now_once(&mut tx, Job::Validate { connection: id }).await?;
    let response = answer_now(tx, &request, id, StatusCode::ACCEPTED).await?;
    tracing::info!(tenant = %tenant, connection = %id, refetch = body.refetch.is_some(), "connection resync asked for");
    Ok(response)
}

/// The connection as it now stands, kept as the answer to `request` and sent, once the
/// transaction that changed it commits.
async fn answer_now(mut tx: TenantTx, request: &Idempotent, id: Uuid, status: StatusCode) -> ApiResult<Response> {
    let connection = connections::get(&mut tx, id).await?;
    let shown = view(&mut tx, connection).await?;
    let response = request.answer(&mut tx, id, status, &shown, None).await?;
    tx.commit().await?;
    Ok(response)
}

/// Pause a connection.
///
/// Stops reading GitLab for the connection: its backfill and catch-ups end (one running finishes
/// its slice, seconds) and nothing is scheduled for it; webhooks are still received and applied,
/// and what is stored stays readable. The status is `paused` until `resume`. Pausing a paused
/// connection changes nothing.
#[utoipa::path(
    post, path = "/v1/connections/{id}/pause", tag = "connections", operation_id = "pause_connection",
    params(("id" = Uuid, Path, description = "The connection id"), IdempotencyKey),
    responses(
        (status = 200, body = ConnectionView, description = "The connection, `paused`. Repeated with its `Idempotency-Key`, this same answer again with `Idempotent-Replayed: true`",
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the kept answer to an earlier request with the same key"))),
        (status = 400, body = ErrorBody, description = "The `Idempotency-Key` is not 1 to 255 printable ASCII characters"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
        (status = 409, body = ErrorBody, description = "The connection is being deleted"),
        (status = 422, body = ErrorBody, description = "`idempotency_key_reused`: the key was sent with another request in the last 24 hours"),
    )
)]
pub async fn pause(State(state): State<AppState>, Tenant(tenant): Tenant, IdPath(id): IdPath, key: IdempotencyKey) -> ApiResult<Response> {
    let request = Idempotent::new(key, &format!("POST /v1/connections/{id}/pause"), &());
    let mut tx = state.store.tenant_tx(&tenant).await?;
    if let Some(replay) = request.claim(&mut tx).await? {
        return Ok(replay);
    }
    connections::lock(&mut tx, id).await?;
    if !connections::pause(&mut tx, id).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, "the connection is being deleted"));
    }
    let response = answer_now(tx, &request, id, StatusCode::OK).await?;
    tracing::info!(tenant = %tenant, connection = %id, "connection paused");
    Ok(response)
}

/// Resume a paused connection.
///
/// Sends it back to `pending`: validation runs again (with whatever was changed while it was
/// paused), the hooks are checked, the sync goes on from where it stood, and the first catch-up
/// brings in what changed meanwhile.
#[utoipa::path(
    post, path = "/v1/connections/{id}/resume", tag = "connections", operation_id = "resume_connection",
    params(("id" = Uuid, Path, description = "The connection id"), IdempotencyKey),
    responses(
        (status = 202, body = ConnectionView, description = "The connection, `pending` again. Repeated with its `Idempotency-Key`, this same answer again with `Idempotent-Replayed: true`",
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the kept answer to an earlier request with the same key"))),
        (status = 400, body = ErrorBody, description = "The `Idempotency-Key` is not 1 to 255 printable ASCII characters"),
        (status = 404, body = ErrorBody, description = "No such connection for this tenant"),
        (status = 409, body = ErrorBody, description = "The connection is not paused; nothing was changed"),
        (status = 422, body = ErrorBody, description = "`idempotency_key_reused`: the key was sent with another request in the last 24 hours"),
    )
)]
pub async fn resume(State(state): State<AppState>, Tenant(tenant): Tenant, IdPath(id): IdPath, key: IdempotencyKey) -> ApiResult<Response> {
    let request = Idempotent::new(key, &format!("POST /v1/connections/{id}/resume"), &());
    let mut tx = state.store.tenant_tx(&tenant).await?;
    if let Some(replay) = request.claim(&mut tx).await? {
        return Ok(replay);
    }
    connections::lock(&mut tx, id).await?;
    if !connections::resume(&mut tx, id).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, "the connection is not paused"));
    }
    dead_letters::settle(&mut tx, id).await?;
    jobs::enqueue_now_once(&mut tx, Job::Validate { connection: id }).await?;
    let response = answer_now(tx, &request, id, StatusCode::ACCEPTED).await?;
    tracing::info!(tenant = %tenant, connection = %id, "connection resumed");
    Ok(response)
}
