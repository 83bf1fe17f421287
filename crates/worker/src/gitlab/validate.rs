//! Validate a connection: the token, its user, each group (visible, plan, role) and the
//! projects to sync. Every failure the user can fix becomes a status and a message that says what
//! to do.

use chrono::{NaiveDate, Utc};
use connector_store::connections::{self, Connection, HookTarget, Status, Validated};
use connector_store::hooks::HookScope;
use connector_store::jobs::{self, Job};
use connector_store::{TenantId, sync};
use gitlab_client::api::ResourceId;
use gitlab_client::api::groups::{Group, Member};
use gitlab_client::api::projects::Project;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;
use uuid::Uuid;

use super::{GitLabJobs, gitlab_retry, retry, token_problem};
use crate::runner::JobError;

/// Plans whose groups may have group webhooks (GitLab Premium and above, trials included).
const GROUP_HOOK_PLANS: &[&str] =
    &["premium", "ultimate", "premium_trial", "ultimate_trial", "ultimate_trial_paid_customer", "opensource", "silver", "gold"];

/// Why validation stopped.
enum Stop {
    /// The user must act; the connection gets this status and message.
    User(Status, String),
    Job(JobError),
}

/// What a tenant is told for every URL where no GitLab answered: nothing listening, a reset,
/// a timeout, something that is not HTTP, or an HTTP server that is not GitLab. One message for
/// all, so a tenant's URLs cannot map which ports of our network are open.
const NO_GITLAB: &str = "no GitLab answered at gitlab_url, and the token was not sent to it: check that it is the base URL of a GitLab instance this service can reach";

impl From<GitLab> for Stop {
    fn from(error: GitLab) -> Self {
        // Validation is the first contact with the URL: an answer too large to be GitLab's is
        // the tenant's to look at, not worth the job's retries.
        if let GitLab::TooLarge { .. } = error {
            return invalid(format!("{error}: check that gitlab_url is the base URL of a GitLab instance"));
        }
        // Worth the job's retries (GitLab may be restarting, a proxy in front of it starting),
        // all under the one message, which the connection shows meanwhile.
        if matches!(error, GitLab::NotGitLab { .. } | GitLab::Transient { answered: false, .. }) {
            tracing::info!(%error, "validation: no GitLab answered at the URL");
            return Stop::Job(JobError::Retry { reason: NO_GITLAB.to_owned(), after: None });
        }
        match token_problem(&error) {
            Some((status, message)) => Stop::User(status, message),
            None => Stop::Job(gitlab_retry(error)),
        }
    }
}

fn invalid(message: String) -> Stop {
    Stop::User(Status::Invalid, message)
}

impl GitLabJobs {
    pub(super) async fn validate(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        {
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            connections::set_status(&mut tx, id, Status::Validating, None).await.map_err(retry)?;
            tx.commit().await.map_err(retry)?;
        }
        let outcome = match self.client(&connection, token) {
            Ok(client) => check(&client, &connection).await,
            Err(error) => Err(Stop::from(error)),
        };
        match outcome {
            Ok((validated, projects)) => {
                let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                sync::upsert_projects(&mut tx, id, &Value::Array(projects)).await.map_err(retry)?;
                connections::record_validation(&mut tx, id, &validated).await.map_err(retry)?;
                jobs::enqueue(&mut tx, Job::InstallHooks { connection: id }, std::time::Duration::ZERO).await.map_err(retry)?;
                tx.commit().await.map_err(retry)?;
                tracing::info!(connection = %id, mode = ?validated.hook_mode, projects = validated.resolved_project_ids.len(), "validated");
                Ok(())
            }
            Err(Stop::User(status, message)) => self.user_problem(tenant, id, status, &message).await,
            Err(Stop::Job(error)) => {
                // Why validation is not done yet, shown until it is.
                let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                let shown = format!("will retry: {error}");
                match connections::set_status(&mut tx, id, Status::Validating, Some(&shown)).await {
                    Ok(()) | Err(connector_store::Error::NotFound) => {}
                    Err(e) => return Err(retry(e)),
                }
                tx.commit().await.map_err(retry)?;
                Err(error)
            }
        }
    }
}

/// Everything validation asks GitLab, in order; the first problem stops it.
async fn check(client: &GitLabClient, connection: &Connection) -> Result<(Validated, Vec<Value>), Stop> {
    let token = client.personal_access_token_self().await?;
    let today = Utc::now().date_naive();
    if token.revoked || !token.active {
        return Err(match token.expires_at {
            Some(date) if date < today => expired(date),
            _ => Stop::User(Status::NeedsReauth, "the access token is no longer active: create a new one".into()),
        });
    }
    if let Some(date) = token.expires_at
        && date < today
    {
        return Err(expired(date));
    }
    if !token.scopes.iter().any(|s| s == "api") {
        return Err(invalid(format!(
            "the access token lacks scope api (it has: {}): create a token with scope api; read_api cannot install webhooks",
            token.scopes.join(", ")
        )));
    }
    let notice = token.expires_at.filter(|d| (*d - today).num_days() <= connections::EXPIRY_WARNING_DAYS).map(connections::expiring_advice);
    let user = client.current_user().await?;
    let enterprise = client.metadata().await?.enterprise;

    let mut groups = Vec::new();
    let mut targets = Vec::new();
    for &group_id in &connection.groups_list {
        let group = match client.group(group_id as u64).await {
            Ok(group) => group,
            Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => {
                return Err(invalid(format!(
                    "group {group_id} is not visible to this token: check the id, and that {} is a member of it",
                    user.username
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let access = match client.group_member(group_id as u64, user.id).await {
            Ok(member) => member.access_level,
            Err(GitLab::NotFound { .. }) => 0,
            Err(e) => return Err(e.into()),
        };
        let plan = match client.namespace(group_id as u64).await {
            Ok(ns) => ns.plan,
            Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let group_hooks = enterprise
            && match plan.as_deref() {
                // Self-managed EE reports `default`: its license decides, which the API does not tell.
                Some("default") => true,
                Some(plan) => GROUP_HOOK_PLANS.contains(&plan),
                None => false,
            };
        if group_hooks {
            if access < Member::OWNER {
                return Err(invalid(format!(
                    "group hooks need the Owner role on group {group_id} ({}); {} has {}",
                    group.full_path,
                    user.username,
                    role_name(access)
                )));
            }
            targets.push(HookTarget { scope: HookScope::Group, id: group_id });
        }
        // Why this group's projects get project hooks, for the message if even that fails.
        let fallback = match plan.as_deref() {
            None if enterprise => {
                format!("group hooks, on Premium and above, would need the Owner role on group {group_id}, {}", group.full_path)
            }
            _ => format!("group {} is on a plan without group hooks", group.full_path),
        };
        groups.push((group, access, group_hooks, fallback));
    }

    let projects = resolve_projects(client, connection, &groups).await?;
    for (project, group_index) in &projects {
        let (_, access, group_hooks, fallback) = &groups[*group_index];
        if *group_hooks {
            continue;
        }
        let level = project.permissions.as_ref().and_then(|p| p.effective_access_level()).unwrap_or(*access).max(*access);
        if level < Member::MAINTAINER {
            return Err(invalid(format!(
                "project hooks need the Maintainer role on project {}, and {} has {} ({fallback})",
                project.path_with_namespace,
                user.username,
                role_name(level)
            )));
        }
        targets.push(HookTarget { scope: HookScope::Project, id: project.id as i64 });
    }
    let hook_mode = connections::hook_mode(&targets);
    let raw = projects.iter().map(|(p, _)| serde_json::to_value(p).expect("a project serializes")).collect();
    Ok((
        Validated {
            gitlab_user_id: user.id as i64,
            gitlab_username: user.username,
            token_expires_at: token.expires_at,
            hook_mode,
            hook_targets: targets,
            resolved_project_ids: projects.iter().map(|(p, _)| p.id as i64).collect(),
            notice,
        },
        raw,
    ))
}

fn expired(date: NaiveDate) -> Stop {
    Stop::User(Status::NeedsReauth, connections::expired_advice(Some(date)))
}

fn role_name(level: u32) -> &'static str {
    match level {
        0 => "no role",
        1..=14 => "the Guest role",
        15..=19 => "the Planner role",
        20..=29 => "the Reporter role",
        30..=39 => "the Developer role",
        40..=49 => "the Maintainer role",
        _ => "the Owner role",
    }
}

/// The projects to sync, each with the index of the group it lies in: the ones listed, which
/// must lie in the groups, or every project of the groups and their subgroups.
async fn resolve_projects(
    client: &GitLabClient,
    connection: &Connection,
    groups: &[(Group, u32, bool, String)],
) -> Result<Vec<(Project, usize)>, Stop> {
    let mut projects: Vec<(Project, usize)> = Vec::new();
    if connection.projects_list.is_empty() {
        for (index, (group, ..)) in groups.iter().enumerate() {
            let all: Vec<Project> = client.collect_all(PageRequest::group_projects(group.id)).await?;
            for project in all {
                if !projects.iter().any(|(p, _)| p.id == project.id) {
                    projects.push((project, index));
                }
            }
        }
        return Ok(projects);
    }
    for wanted in &connection.projects_list {
        let id = match wanted.parse::<u64>() {
            Ok(n) => ResourceId::Id(n),
            Err(_) => ResourceId::Path(wanted.clone()),
        };
        let project = match client.project(id).await {
            Ok(p) => p,
            Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => {
                return Err(invalid(format!("project {wanted} is not visible to this token: check the id or path")));
            }
            Err(e) => return Err(e.into()),
        };
        let namespace = project.namespace.as_ref().map(|n| n.full_path.clone()).unwrap_or_default();
        let Some(index) = groups.iter().position(|(g, ..)| namespace == g.full_path || namespace.starts_with(&format!("{}/", g.full_path)))
        else {
            let names: Vec<_> = groups.iter().map(|(g, ..)| g.full_path.as_str()).collect();
            return Err(invalid(format!(
                "project {} is not in the connected groups ({}): add its group to groups_list or remove it from projects_list",
                project.path_with_namespace,
                names.join(", ")
            )));
        };
        if !projects.iter().any(|(p, _)| p.id == project.id) {
            projects.push((project, index));
        }
    }
    Ok(projects)
}
