//! Probes for Kubernetes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};

/// Liveness.
///
/// The process is up. Touches nothing else, so a slow database does not get the pod killed.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", responses((status = 200, description = "Up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness.
///
/// The database answers and holds every migration this build needs.
#[utoipa::path(
    get, path = "/readyz", tag = "health", operation_id = "readyz",
    responses((status = 200, description = "Ready"), (status = 503, body = crate::error::ErrorBody, description = "Not ready"))
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.store.readiness().await.map_err(|error| {
        tracing::warn!(%error, "not ready");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady, "the database is unreachable or not migrated")
    })?;
    Ok(Json(json!({"status": "ready"})))
}
