//! What a connection's settings amount to in GitLab: the token and its user, each group's plan and
//! the user's role in it, the projects to sync and the hooks to install, and every problem the
//! user must fix, each with the field it concerns and what to do.
//!
//! The worker's validation and the API's preflight check both ask [`check`], so the form's check
//! and the connection's validation cannot come to different verdicts: validation stops at the
//! first problem, the preflight shows them all.

use chrono::{NaiveDate, Utc};
use connector_store::connections::{self, HookTarget, Status, Validated};
use connector_store::hooks::HookScope;
use futures_util::TryStreamExt;
use gitlab_client::api::ResourceId;
use gitlab_client::api::groups::{Group, Member};
use gitlab_client::api::projects::Project;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;

/// Plans whose groups may have group webhooks (GitLab Premium and above, trials included).
const GROUP_HOOK_PLANS: &[&str] =
    &["premium", "ultimate", "premium_trial", "ultimate_trial", "ultimate_trial_paid_customer", "opensource", "silver", "gold"];

/// What a tenant is told for every URL where no GitLab answered: nothing listening, a reset,
/// a timeout, something that is not HTTP, or an HTTP server that is not GitLab. One message for
/// all, so a tenant's URLs cannot map which ports of our network are open.
pub const NO_GITLAB: &str = "no GitLab answered at gitlab_url, and the token was not sent to it: check that it is the base URL of a GitLab instance this service can reach";

/// The settings a connection asks GitLab about.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub groups_list: &'a [i64],
    pub projects_list: &'a [String],
    /// The most projects resolved from the groups; `None` resolves every one (validation). The
    /// preflight bounds it to answer within seconds, and says when it stopped short.
    pub max_projects: Option<usize>,
}

/// The connection field a problem concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    AccessToken,
    GroupsList,
    ProjectsList,
    GitlabUrl,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::AccessToken => "access_token",
            Field::GroupsList => "groups_list",
            Field::ProjectsList => "projects_list",
            Field::GitlabUrl => "gitlab_url",
        }
    }
}

/// What a problem leaves a connection needing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Settings to change (`invalid`).
    Invalid,
    /// A new token (`needs_reauth`).
    NeedsReauth,
}

impl Verdict {
    /// The status a connection with the problem is left in.
    pub fn status(self) -> Status {
        match self {
            Verdict::Invalid => Status::Invalid,
            Verdict::NeedsReauth => Status::NeedsReauth,
        }
    }
}

/// Something only the user can fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: Field,
    pub verdict: Verdict,
    pub message: String,
}

impl Problem {
    fn invalid(field: Field, message: String) -> Self {
        Problem { field, verdict: Verdict::Invalid, message }
    }
}

/// Why the check could not finish, when it is nothing the user did: worth asking again.
#[derive(Debug)]
pub enum Unavailable {
    /// No GitLab answered at the URL ([`NO_GITLAB`]).
    NoGitLab,
    /// GitLab answered with an error or too slowly, or limited our rate.
    GitLab(GitLab),
}

/// The token as GitLab describes it.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub scopes: Vec<String>,
    pub expires_at: Option<NaiveDate>,
}

/// The user the token acts as.
#[derive(Debug, Clone)]
pub struct UserFacts {
    pub id: u64,
    pub username: String,
}

/// One group of `groups_list` that the token can see.
#[derive(Debug, Clone)]
pub struct GroupFacts {
    pub id: i64,
    pub full_path: String,
    /// GitLab's plan name (`free`, `premium`, `ultimate`; `default` on self-managed), when GitLab
    /// tells it.
    pub plan: Option<String>,
    pub access_level: u32,
    /// The name of the user's role in the group.
    pub role: &'static str,
    /// Whether the group gets one group webhook or its projects one project webhook each.
    pub hooks: HookScope,
    /// Why that scope, in a sentence.
    pub why: String,
}

/// Everything the check found, up to where it had to stop.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub token: Option<TokenFacts>,
    pub user: Option<UserFacts>,
    pub groups: Vec<GroupFacts>,
    /// The projects to sync, as GitLab describes them.
    pub projects: Vec<Project>,
    /// False when `max_projects` stopped the listing short: there are more.
    pub projects_complete: bool,
    pub hook_targets: Vec<HookTarget>,
    /// A warning worth showing even if nothing is wrong (the token expires soon).
    pub notice: Option<String>,
    /// In the order they were found: validation shows the first.
    pub problems: Vec<Problem>,
}

impl Report {
    /// The connection's validation, or the first problem.
    pub fn into_validated(self) -> Result<(Validated, Vec<Value>), Problem> {
        if let Some(first) = self.problems.into_iter().next() {
            return Err(first);
        }
        let user = self.user.expect("a check without problems knows its user");
        let raw = self.projects.iter().map(|p| serde_json::to_value(p).expect("a project serializes")).collect();
        Ok((
            Validated {
                gitlab_user_id: user.id as i64,
                gitlab_username: user.username,
                token_expires_at: self.token.and_then(|t| t.expires_at),
                hook_mode: connections::hook_mode(&self.hook_targets),
                resolved_project_ids: self.projects.iter().map(|p| p.id as i64).collect(),
                hook_targets: self.hook_targets,
                notice: self.notice,
            },
            raw,
        ))
    }
}

/// Why a step stopped the check.
enum Stop {
    /// Nothing after it can be asked (the token does not work): the report ends with it.
    User(Problem),
    Unavailable(Unavailable),
}

impl From<GitLab> for Stop {
    fn from(error: GitLab) -> Self {
        // The first contact with the URL: an answer too large to be GitLab's is the tenant's to
        // look at.
        if let GitLab::TooLarge { .. } = error {
            return Stop::User(Problem::invalid(
                Field::GitlabUrl,
                format!("{error}: check that gitlab_url is the base URL of a GitLab instance"),
            ));
        }
        if matches!(error, GitLab::NotGitLab { .. } | GitLab::Transient { answered: false, .. }) {
            tracing::info!(%error, "check: no GitLab answered at the URL");
            return Stop::Unavailable(Unavailable::NoGitLab);
        }
        match token_problem(&error) {
            Some((verdict, message)) => {
                let field = if matches!(error, GitLab::Blocked { .. }) { Field::GitlabUrl } else { Field::AccessToken };
                Stop::User(Problem { field, verdict, message })
            }
            None => Stop::Unavailable(Unavailable::GitLab(error)),
        }
    }
}

/// The message a token failure shows the user, if it is one.
pub fn token_problem(error: &GitLab) -> Option<(Verdict, String)> {
    use gitlab_client::Error as E;
    Some(match error {
        E::TokenInvalid => {
            (Verdict::NeedsReauth, "GitLab does not accept this access token: check that it was copied whole, or create a new one".into())
        }
        E::TokenExpired => (Verdict::NeedsReauth, connections::expired_advice(None)),
        E::TokenRevoked => (Verdict::NeedsReauth, "the access token was revoked: create a new one".into()),
        E::InsufficientScope { .. } => {
            (Verdict::Invalid, "the access token lacks scope api: create a token with scope api (read_api cannot install webhooks)".into())
        }
        E::Blocked { reason } => (Verdict::Invalid, format!("the GitLab URL is not allowed: {reason}")),
        _ => return None,
    })
}

/// Asks GitLab everything a connection with these settings needs, in the order validation always
/// has: the token, its user, each group (visible, the user's role, the plan), the projects, each
/// project's role where project hooks are needed. A problem with one group or project does not
/// stop the others from being looked at; one with the token ends the report.
pub async fn check(client: &GitLabClient, settings: Settings<'_>) -> Result<Report, Unavailable> {
    let mut report = Report::default();
    let outcome = inspect(client, settings, &mut report).await;
    finish(report, outcome)
}

/// The report of a check that could not start: the client refused the URL or its options.
pub fn refused(error: GitLab) -> Result<Report, Unavailable> {
    finish(Report::default(), Err(error.into()))
}

fn finish(mut report: Report, outcome: Result<(), Stop>) -> Result<Report, Unavailable> {
    match outcome {
        Ok(()) => Ok(report),
        Err(Stop::User(problem)) => {
            report.problems.push(problem);
            Ok(report)
        }
        Err(Stop::Unavailable(why)) => Err(why),
    }
}

async fn inspect(client: &GitLabClient, settings: Settings<'_>, report: &mut Report) -> Result<(), Stop> {
    let token = client.personal_access_token_self().await?;
    report.token = Some(TokenFacts { scopes: token.scopes.clone(), expires_at: token.expires_at });
    let today = Utc::now().date_naive();
    let needs_reauth = |message| Stop::User(Problem { field: Field::AccessToken, verdict: Verdict::NeedsReauth, message });
    if token.revoked || !token.active {
        return Err(match token.expires_at {
            Some(date) if date < today => needs_reauth(connections::expired_advice(Some(date))),
            _ => needs_reauth("the access token is no longer active: create a new one".into()),
        });
    }
    if let Some(date) = token.expires_at
        && date < today
    {
        return Err(needs_reauth(connections::expired_advice(Some(date))));
    }
    if !token.scopes.iter().any(|s| s == "api") {
        return Err(Stop::User(Problem::invalid(
            Field::AccessToken,
            format!(
                "the access token lacks scope api (it has: {}): create a token with scope api; read_api cannot install webhooks",
                token.scopes.join(", ")
            ),
        )));
    }
    report.notice =
        token.expires_at.filter(|d| (*d - today).num_days() <= connections::EXPIRY_WARNING_DAYS).map(connections::expiring_advice);
    let user = client.current_user().await?;
    report.user = Some(UserFacts { id: user.id, username: user.username.clone() });
    let enterprise = client.metadata().await?.enterprise;

    // Each visible group with the user's level in it and why its projects get project hooks.
    let mut groups: Vec<(Group, u32, String)> = Vec::new();
    let mut every_group_seen = true;
    for &group_id in settings.groups_list {
        let group = match client.group(group_id as u64).await {
            Ok(group) => group,
            Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => {
                every_group_seen = false;
                report.problems.push(Problem::invalid(
                    Field::GroupsList,
                    format!("group {group_id} is not visible to this token: check the id, and that {} is a member of it", user.username),
                ));
                continue;
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
        let role = role_name(access);
        let (hooks, why) = if group_hooks {
            if access < Member::OWNER {
                report.problems.push(Problem::invalid(
                    Field::GroupsList,
                    format!("group hooks need the Owner role on group {group_id} ({}); {} has {role}", group.full_path, user.username),
                ));
            } else {
                report.hook_targets.push(HookTarget { scope: HookScope::Group, id: group_id });
            }
            let plan = plan.as_deref().unwrap_or_default();
            (HookScope::Group, format!("group {} is on a plan with group webhooks ({plan}), which need the Owner role", group.full_path))
        } else {
            let why = match plan.as_deref() {
                None if enterprise => {
                    format!("group hooks, on Premium and above, would need the Owner role on group {group_id}, {}", group.full_path)
                }
                _ => format!("group {} is on a plan without group hooks", group.full_path),
            };
            (HookScope::Project, why)
        };
        report.groups.push(GroupFacts {
            id: group_id,
            full_path: group.full_path.clone(),
            plan: plan.clone(),
            access_level: access,
            role,
            hooks,
            why: why.clone(),
        });
        groups.push((group, access, why));
    }

    let (projects, complete) = resolve_projects(client, settings, &groups, every_group_seen, report).await?;
    report.projects_complete = complete;
    for (project, group_index) in &projects {
        let (_, access, why) = &groups[*group_index];
        if report.groups[*group_index].hooks == HookScope::Group {
            continue;
        }
        let level = project.permissions.as_ref().and_then(|p| p.effective_access_level()).unwrap_or(*access).max(*access);
        if level < Member::MAINTAINER {
            report.problems.push(Problem::invalid(
                Field::ProjectsList,
                format!(
                    "project hooks need the Maintainer role on project {}, and {} has {} ({why})",
                    project.path_with_namespace,
                    user.username,
                    role_name(level)
                ),
            ));
        } else {
            report.hook_targets.push(HookTarget { scope: HookScope::Project, id: project.id as i64 });
        }
    }
    report.projects = projects.into_iter().map(|(p, _)| p).collect();
    Ok(())
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
/// must lie in the groups, or every project of the groups and their subgroups (at most
/// `max_projects`; the flag says whether that was all of them). A listed project outside the
/// visible groups is only a problem when every group could be seen: it may lie in the one that
/// could not.
async fn resolve_projects(
    client: &GitLabClient,
    settings: Settings<'_>,
    groups: &[(Group, u32, String)],
    every_group_seen: bool,
    report: &mut Report,
) -> Result<(Vec<(Project, usize)>, bool), Stop> {
    let mut projects: Vec<(Project, usize)> = Vec::new();
    let max = settings.max_projects.unwrap_or(usize::MAX);
    if settings.projects_list.is_empty() {
        for (index, (group, ..)) in groups.iter().enumerate() {
            let mut pages = std::pin::pin!(client.pages::<Project>(PageRequest::group_projects(group.id)));
            while let Some(page) = pages.try_next().await? {
                for project in page.items {
                    if projects.len() == max {
                        return Ok((projects, false));
                    }
                    if !projects.iter().any(|(p, _)| p.id == project.id) {
                        projects.push((project, index));
                    }
                }
            }
        }
        return Ok((projects, true));
    }
    for wanted in settings.projects_list {
        let id = match wanted.parse::<u64>() {
            Ok(n) => ResourceId::Id(n),
            Err(_) => ResourceId::Path(wanted.clone()),
        };
        let project = match client.project(id).await {
            Ok(p) => p,
            Err(GitLab::NotFound { .. }) | Err(GitLab::Forbidden { .. }) => {
                report.problems.push(Problem::invalid(
                    Field::ProjectsList,
                    format!("project {wanted} is not visible to this token: check the id or path"),
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let namespace = project.namespace.as_ref().map(|n| n.full_path.clone()).unwrap_or_default();
        let Some(index) = groups.iter().position(|(g, ..)| namespace == g.full_path || namespace.starts_with(&format!("{}/", g.full_path)))
        else {
            if every_group_seen {
                let names: Vec<_> = groups.iter().map(|(g, ..)| g.full_path.as_str()).collect();
                report.problems.push(Problem::invalid(
                    Field::ProjectsList,
                    format!(
                        "project {} is not in the connected groups ({}): add its group to groups_list or remove it from projects_list",
                        project.path_with_namespace,
                        names.join(", ")
                    ),
                ));
            }
            continue;
        };
        if !projects.iter().any(|(p, _)| p.id == project.id) {
            projects.push((project, index));
        }
    }
    Ok((projects, true))
}
