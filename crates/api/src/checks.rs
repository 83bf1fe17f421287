//! The preflight the connection form calls before saving: what the settings amount to in GitLab
//! and every problem with them, asked through [`connector_check`] as the worker's validation asks,
//! answered within seconds, nothing stored and nothing created in GitLab.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use connector_check::{Field, Settings, Unavailable, Verdict};
use connector_store::TenantId;
use connector_store::connections::{self, HookMode};
use connector_store::hooks::HookScope;
use gitlab_client::{ClientOptions, GitLabClient, RetryConfig};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Tenant;
use crate::connections::input;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::extract::ApiJson;

/// The whole check, every GitLab request included, ends within this: the form waits for it.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(10);
/// Projects listed from the groups at most (five of GitLab's pages), for the count and the role
/// check; validation later resolves every one.
pub const MAX_CHECKED_PROJECTS: usize = 500;
/// Projects the answer names.
const FIRST_PROJECTS: usize = 20;
/// Checks one tenant may have running at once in this process: each costs GitLab requests and a
/// task held for seconds, and one tenant's form must not starve another's.
pub const CHECKS_PER_TENANT: usize = 2;

/// What the checks of this process share: the GitLab client's options and each tenant's count of
/// checks running.
pub struct Checks {
    client: ClientOptions,
    running: Mutex<HashMap<TenantId, usize>>,
}

impl Checks {
    /// `client` as the worker's GitLab client has it; a check's requests are held to seconds
    /// and retried once, since a person is waiting.
    pub fn new(client: ClientOptions) -> Self {
        let client = ClientOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            retry: RetryConfig { max_attempts: 2, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(1) },
            ..client
        };
        Self { client, running: Mutex::new(HashMap::new()) }
    }

    /// A place among the tenant's running checks, given back on drop; none when it has its share.
    fn enter(self: &Arc<Self>, tenant: &TenantId) -> Option<Running> {
        let mut running = self.running.lock().expect("no check panics holding the lock");
        let count = running.entry(tenant.clone()).or_default();
        if *count >= CHECKS_PER_TENANT {
            return None;
        }
        *count += 1;
        Some(Running { checks: self.clone(), tenant: tenant.clone() })
    }
}

struct Running {
    checks: Arc<Checks>,
    tenant: TenantId,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.checks.running.lock().expect("no check panics holding the lock");
        if let Some(count) = running.get_mut(&self.tenant) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

/// The preflight's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::connection_check)]
pub struct ConnectionCheck {
    /// True when creating a connection with these settings would validate: `problems` is empty.
    pub ok: bool,
    /// The token as GitLab describes it; null when GitLab did not accept it.
    pub token: Option<TokenView>,
    /// The GitLab user the token acts as; null when it was not reached.
    pub user: Option<UserView>,
    /// Each group of `groups_list` the token can see, in the order given.
    pub groups: Vec<GroupView>,
    /// Which webhooks the connection would install; null while there are problems.
    pub hook_mode: Option<HookMode>,
    pub projects: ProjectsView,
    /// A warning that does not stop the connection (the token expires soon).
    pub notice: Option<String>,
    /// Everything to fix, in the order validation would find it: the first is what the
    /// connection would show.
    pub problems: Vec<ProblemView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::token)]
pub struct TokenView {
    #[schema(example = json!(["api"]))]
    pub scopes: Vec<String>,
    /// The day GitLab stops accepting it; null for a token without an expiry.
    pub expires_at: Option<NaiveDate>,
    /// True from `connections::EXPIRY_WARNING_DAYS` (14) days before `expires_at`.
    pub expires_soon: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::user)]
pub struct UserView {
    pub id: u64,
    #[schema(example = "jdoe")]
    pub username: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::group)]
pub struct GroupView {
    pub id: i64,
    #[schema(example = "acme/platform")]
    pub full_path: String,
    /// GitLab's plan name (`free`, `premium`, `ultimate`; `default` on self-managed); null when
    /// GitLab does not tell.
    pub plan: Option<String>,
    /// The user's role in the group.
    #[schema(example = "the Owner role")]
    pub role: String,
    /// Whether the group gets one group webhook or its projects one project webhook each.
    pub hooks: HookScope,
    /// Why, in a sentence.
    pub why: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::projects_found)]
pub struct ProjectsView {
    /// Projects found; a lower bound when `complete` is false.
    pub count: usize,
    /// False when the groups hold more than the check lists (500): validation resolves them all.
    pub complete: bool,
    /// The first projects, at most 20.
    pub first: Vec<ProjectRef>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::project_ref)]
pub struct ProjectRef {
    pub id: u64,
    #[schema(example = "acme/platform/backend")]
    pub path_with_namespace: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::examples::problem)]
pub struct ProblemView {
    /// The setting to change.
    pub field: ProblemField,
    pub kind: ProblemKind,
    /// What is wrong and what to do.
    pub message: String,
}

/// The form's fields a problem can concern.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = json!(ProblemField::GroupsList))]
pub enum ProblemField {
    AccessToken,
    GroupsList,
    ProjectsList,
    GitlabUrl,
}

impl From<Field> for ProblemField {
    fn from(field: Field) -> Self {
        match field {
            Field::AccessToken => ProblemField::AccessToken,
            Field::GroupsList => ProblemField::GroupsList,
            Field::ProjectsList => ProblemField::ProjectsList,
            Field::GitlabUrl => ProblemField::GitlabUrl,
        }
    }
}

/// `invalid` and `needs_reauth`: the status a connection with these settings would end in;
/// `unavailable`: GitLab could not be asked just now (down, slow, or limiting this token's
/// rate), so check again.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = json!(ProblemKind::Invalid))]
pub enum ProblemKind {
    Invalid,
    NeedsReauth,
    Unavailable,
}

/// Check connection settings before saving them.
///
/// Asks GitLab what validation of a connection with these settings would ask (the token's scopes
/// and expiry, its user, each group's plan and the user's role in it, the projects and the
/// role in each where project hooks are needed) and answers what it found and every problem,
/// each with the field to change and what to do. Takes the body `POST /v1/connections` takes;
/// answers within 10 seconds; stores nothing and creates nothing in GitLab, so it needs no
/// `Idempotency-Key`. A tenant runs at most two at once.
#[utoipa::path(
    post, path = "/v1/connection-checks", tag = "connections", operation_id = "check_connection",
    request_body = input::CreateConnectionRequest,
    responses(
        (status = 200, body = ConnectionCheck, description = "What GitLab said; `ok` is false when there is something to fix, each in `problems`"),
        (status = 400, body = ErrorBody, description = "The body is not JSON"),
        (status = 413, body = ErrorBody, description = "The body is too large"),
        (status = 415, body = ErrorBody, description = "The body is not sent as application/json"),
        (status = 422, body = ErrorBody, description = "A field is missing or wrong before GitLab is asked (`validation_failed`; `details` names each), as `POST /v1/connections` answers"),
        (status = 429, body = ErrorBody, description = "`rate_limited`: two of the tenant's checks are running; `Retry-After` says when to try again"),
    )
)]
pub async fn check(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<input::CreateConnectionRequest>,
) -> ApiResult<Response> {
    let settings = input::parse_create(&body, Utc::now()).map_err(ApiError::invalid)?.connection;
    crate::connections::refuse_unreachable(&state.gitlab_urls, &settings.gitlab_url).await.map_err(|e| ApiError::invalid(vec![e]))?;
    let Some(_running) = state.checks.enter(&tenant) else {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("{CHECKS_PER_TENANT} connection checks of this tenant are running; retry when one has answered"),
        )
        .into_response();
        refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        return Ok(refused);
    };
    let wanted =
        Settings { groups_list: &settings.groups_list, projects_list: &settings.projects_list, max_projects: Some(MAX_CHECKED_PROJECTS) };
    let asked = async {
        match GitLabClient::new(&settings.gitlab_url, settings.access_token, state.gitlab_urls.clone(), state.checks.client.clone()) {
            Ok(client) => connector_check::check(&client, wanted).await,
            Err(error) => connector_check::refused(error),
        }
    };
    let answer = match tokio::time::timeout(CHECK_DEADLINE, asked).await {
        Ok(Ok(report)) => view(report),
        Ok(Err(why)) => unavailable(&why),
        Err(_) => unavailable_because(format!(
            "GitLab did not answer the check within {} s: check again, or save the connection and let its validation take its time",
            CHECK_DEADLINE.as_secs()
        )),
    };
    tracing::info!(tenant = %tenant, ok = answer.ok, problems = answer.problems.len(), "connection settings checked");
    Ok(Json(answer).into_response())
}

fn view(report: connector_check::Report) -> ConnectionCheck {
    let today = Utc::now().date_naive();
    let ok = report.problems.is_empty();
    ConnectionCheck {
        ok,
        token: report.token.map(|t| TokenView {
            expires_soon: t.expires_at.is_some_and(|d| (d - today).num_days() <= connections::EXPIRY_WARNING_DAYS),
            scopes: t.scopes,
            expires_at: t.expires_at,
        }),
        user: report.user.map(|u| UserView { id: u.id, username: u.username }),
        groups: report
            .groups
            .into_iter()
            .map(|g| GroupView { id: g.id, full_path: g.full_path, plan: g.plan, role: g.role.to_owned(), hooks: g.hooks, why: g.why })
            .collect(),
        hook_mode: ok.then(|| connections::hook_mode(&report.hook_targets)),
        projects: ProjectsView {
            count: report.projects.len(),
            complete: report.projects_complete,
            first: report
                .projects
                .iter()
                .take(FIRST_PROJECTS)
                .map(|p| ProjectRef { id: p.id, path_with_namespace: p.path_with_namespace.clone() })
                .collect(),
        },
        notice: report.notice,
        problems: report
            .problems
            .into_iter()
            .map(|p| ProblemView {
                field: p.field.into(),
                kind: match p.verdict {
                    Verdict::Invalid => ProblemKind::Invalid,
                    Verdict::NeedsReauth => ProblemKind::NeedsReauth,
                },
                message: p.message,
            })
            .collect(),
    }
}

fn unavailable(why: &Unavailable) -> ConnectionCheck {
    unavailable_because(match why {
        Unavailable::NoGitLab => connector_check::NO_GITLAB.to_owned(),
        Unavailable::GitLab(gitlab_client::Error::RateLimited { retry_after }) => {
            format!("GitLab is limiting this token's requests: check again in {} s", retry_after.as_secs().max(1))
        }
        Unavailable::GitLab(error) => format!("GitLab could not answer the check ({error}): check again in a moment"),
    })
}

fn unavailable_because(message: String) -> ConnectionCheck {
    ConnectionCheck {
        ok: false,
        token: None,
        user: None,
        groups: Vec::new(),
        hook_mode: None,
        projects: ProjectsView { count: 0, complete: false, first: Vec::new() },
        notice: None,
        problems: vec![ProblemView { field: ProblemField::GitlabUrl, kind: ProblemKind::Unavailable, message }],
    }
}
