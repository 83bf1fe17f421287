//! The records the simulated instance holds. They serialize as the dataset's JSON (ground
//! truth), not as GitLab's API shapes: `render` and `webhook::payloads` produce those.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::time::Ts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    Ee,
    Ce,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub edition: Edition,
    pub version: String,
    pub revision: String,
    /// A self-managed instance rather than GitLab.com. Its namespaces' `plan` reads `default`
    /// (`EE::Plan`; `GET /namespaces/:id`, doc/api/namespaces.md), whatever the license, so the
    /// API does not tell a non-admin whether group webhooks are available (only the admin-only
    /// `GET /license` does).
    #[serde(default)]
    pub self_managed: bool,
    /// A self-managed EE instance's license tier; `None` for no license, which has no group
    /// webhooks (doc/api/group_webhooks.md: Premium, Ultimate).
    #[serde(default)]
    pub license: Option<Plan>,
}

impl Instance {
    /// Whether this is GitLab `major.minor` or later; a version that does not parse (it is
    /// set through the control API) counts as the newest.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self.version.split(['.', '-']).map(|part| part.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(a), Some(b)) => (a, b) >= (major, minor),
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Premium,
    Ultimate,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Premium => "premium",
            Plan::Ultimate => "ultimate",
        }
    }

    pub fn has_group_webhooks(self) -> bool {
        !matches!(self, Plan::Free)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Internal,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }

    /// The numeric `visibility_level` hooks carry.
    pub fn level(self) -> u8 {
        match self {
            Visibility::Private => 0,
            Visibility::Internal => 10,
            Visibility::Public => 20,
        }
    }
}

pub const GUEST: u8 = 10;
pub const REPORTER: u8 = 20;
pub const DEVELOPER: u8 = 30;
pub const MAINTAINER: u8 = 40;
pub const OWNER: u8 = 50;

pub fn access_name(level: u8) -> &'static str {
    match level {
        50.. => "Owner",
        40..=49 => "Maintainer",
        30..=39 => "Developer",
        20..=29 => "Reporter",
        _ => "Guest",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub name: String,
    pub email: String,
    pub created_at: Ts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub full_path: String,
    pub full_name: String,
    pub parent_id: Option<u64>,
    pub description: String,
    pub visibility: Visibility,
    /// Only meaningful on top-level groups; subgroups inherit the root's plan.
    pub plan: Plan,
    pub created_at: Ts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum MemberSource {
    Group(u64),
    Project(u64),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub source: MemberSource,
    pub user_id: u64,
    pub access_level: u8,
    pub created_at: Ts,
    pub expires_at: Option<chrono::NaiveDate>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub id: u64,
    pub name: String,
    pub value: String,
    pub user_id: u64,
    pub scopes: Vec<String>,
    pub created_at: Ts,
    pub expires_at: Option<chrono::NaiveDate>,
    pub revoked: bool,
    pub description: String,
    /// The token this one was rotated from: tokens linked so form one family, all of which
    /// GitLab revokes when a revoked member is presented for rotation.
    #[serde(default)]
    pub rotated_from: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub id: String,
    pub parent_ids: Vec<String>,
    pub title: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    pub committer_name: String,
    pub committer_email: String,
    pub authored_date: Ts,
    pub committed_date: Ts,
    pub added: Vec<String>,
    pub modified: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    pub commit: String,
    pub protected: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    pub commit: String,
    pub message: String,
}

/// Deserializing goes through [`StoredRepository`] so that the sha index always exists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "StoredRepository")]
pub struct Repository {
    /// In creation order.
    pub commits: Vec<Commit>,
    pub branches: Vec<Branch>,
    pub tags: Vec<Tag>,
    #[serde(skip)]
    pub index: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct StoredRepository {
    commits: Vec<Commit>,
    branches: Vec<Branch>,
    tags: Vec<Tag>,
}

impl From<StoredRepository> for Repository {
    fn from(s: StoredRepository) -> Repository {
        let mut repo = Repository { commits: s.commits, branches: s.branches, tags: s.tags, index: HashMap::new() };
        repo.reindex();
        repo
    }
}

impl Repository {
    pub fn reindex(&mut self) {
        self.index = self.commits.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
    }

    pub fn commit(&self, sha: &str) -> Option<&Commit> {
        self.index.get(sha).map(|&i| &self.commits[i])
    }

    /// A commit by full id or unique prefix (GitLab accepts short ids).
    pub fn find_commit(&self, sha: &str) -> Option<&Commit> {
        if let Some(c) = self.commit(sha) {
            return Some(c);
        }
        if sha.len() < 7 {
            return None;
        }
        let mut hits = self.commits.iter().filter(|c| c.id.starts_with(sha));
        let first = hits.next()?;
        hits.next().is_none().then_some(first)
    }

    pub fn push(&mut self, commit: Commit) {
        self.index.insert(commit.id.clone(), self.commits.len());
        self.commits.push(commit);
    }

    pub fn branch(&self, name: &str) -> Option<&Branch> {
        self.branches.iter().find(|b| b.name == name)
    }

    /// Indices of the commits a branch or tag reaches (what `all=true` lists), newest first.
    pub fn reachable_from_refs(&self, first_parent: bool) -> Vec<usize> {
        let heads: Vec<String> = self.branches.iter().map(|b| b.commit.clone()).chain(self.tags.iter().map(|t| t.commit.clone())).collect();
        self.reachable(&heads, first_parent)
    }

    /// The head sha of a branch or tag name, or the sha itself.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        if let Some(b) = self.branch(reference) {
            return Some(b.commit.clone());
        }
        if let Some(t) = self.tags.iter().find(|t| t.name == reference) {
            return Some(t.commit.clone());
        }
        self.find_commit(reference).map(|c| c.id.clone())
    }

    /// Indices of the commits reachable from `heads`, newest first.
    pub fn reachable(&self, heads: &[String], first_parent: bool) -> Vec<usize> {
        let mut seen = vec![false; self.commits.len()];
        let mut stack: Vec<usize> = heads.iter().filter_map(|h| self.index.get(h).copied()).collect();
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            out.push(i);
            let parents = &self.commits[i].parent_ids;
            let take = if first_parent { parents.len().min(1) } else { parents.len() };
            stack.extend(parents[..take].iter().filter_map(|p| self.index.get(p).copied()));
        }
        out.sort_unstable_by(|a, b| {
            let (ca, cb) = (&self.commits[*a], &self.commits[*b]);
            cb.committed_date.cmp(&ca.committed_date).then(b.cmp(a))
        });
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MrState {
    Opened,
    Closed,
    Merged,
}

impl MrState {
    pub fn as_str(self) -> &'static str {
        match self {
            MrState::Opened => "opened",
            MrState::Closed => "closed",
            MrState::Merged => "merged",
        }
    }

    /// `state_id` as GitLab stores it.
    pub fn id(self) -> u8 {
        match self {
            MrState::Opened => 1,
            MrState::Closed => 2,
            MrState::Merged => 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Label {
    pub id: u64,
    pub title: String,
    pub color: String,
    pub description: String,
    pub created_at: Ts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeRequest {
    pub id: u64,
    pub iid: u64,
    pub title: String,
    pub description: String,
    pub state: MrState,
    pub author_id: u64,
    pub assignee_ids: Vec<u64>,
    pub reviewer_ids: Vec<u64>,
    pub source_branch: String,
    pub target_branch: String,
    /// Head of the source branch.
    pub sha: String,
    pub merge_commit_sha: Option<String>,
    /// Commits of the MR, oldest first.
    pub commit_shas: Vec<String>,
    pub labels: Vec<String>,
    pub draft: bool,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub merged_at: Option<Ts>,
    pub closed_at: Option<Ts>,
    pub merged_by_id: Option<u64>,
    pub closed_by_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    Opened,
    Closed,
}

impl IssueState {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueState::Opened => "opened",
            IssueState::Closed => "closed",
        }
    }

    pub fn id(self) -> u8 {
        match self {
            IssueState::Opened => 1,
            IssueState::Closed => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub iid: u64,
    pub title: String,
    pub description: String,
    pub state: IssueState,
    pub author_id: u64,
    pub assignee_ids: Vec<u64>,
    pub labels: Vec<String>,
    pub confidential: bool,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub closed_at: Option<Ts>,
    pub closed_by_id: Option<u64>,
    pub updated_by_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Noteable {
    MergeRequest { iid: u64 },
    Issue { iid: u64 },
    Commit { sha: String },
}

impl Noteable {
    pub fn type_name(&self) -> &'static str {
        match self {
            Noteable::MergeRequest { .. } => "MergeRequest",
            Noteable::Issue { .. } => "Issue",
            Noteable::Commit { .. } => "Commit",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note {
    pub id: u64,
    pub body: String,
    pub author_id: u64,
    pub system: bool,
    pub noteable: Noteable,
    pub created_at: Ts,
    pub updated_at: Ts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub name: String,
    pub stage: String,
    pub status: String,
    pub created_at: Ts,
    pub started_at: Option<Ts>,
    pub finished_at: Option<Ts>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: u64,
    pub iid: u64,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    pub before_sha: String,
    pub tag: bool,
    pub status: String,
    pub source: String,
    pub user_id: u64,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub started_at: Option<Ts>,
    pub finished_at: Option<Ts>,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    pub id: u64,
    pub tag: String,
    pub name: String,
    pub description: String,
    pub author_id: u64,
    pub created_at: Ts,
    pub released_at: Ts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    pub id: u64,
    pub environment: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    pub status: String,
    /// The job that deployed.
    pub deployable_id: u64,
    pub user_id: u64,
    pub created_at: Ts,
    pub updated_at: Ts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub namespace_id: u64,
    pub path_with_namespace: String,
    pub name_with_namespace: String,
    pub description: String,
    pub visibility: Visibility,
    pub default_branch: String,
    pub archived: bool,
    pub issues_enabled: bool,
    pub jobs_enabled: bool,
    pub created_at: Ts,
    pub last_activity_at: Ts,
    pub creator_id: u64,
    pub repository: Repository,
    pub labels: Vec<Label>,
    /// By iid, ascending.
    pub merge_requests: Vec<MergeRequest>,
    /// By iid, ascending.
    pub issues: Vec<Issue>,
    pub notes: Vec<Note>,
    /// By id, ascending.
    pub pipelines: Vec<Pipeline>,
    #[serde(default)]
    pub releases: Vec<Release>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
}

impl Project {
    pub fn merge_request(&self, iid: u64) -> Option<&MergeRequest> {
        self.merge_requests.iter().find(|m| m.iid == iid)
    }

    pub fn issue(&self, iid: u64) -> Option<&Issue> {
        self.issues.iter().find(|i| i.iid == iid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum HookOwner {
    Project(u64),
    Group(u64),
}

/// The event switches a hook can have. Group-only ones are ignored on project hooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookEvents {
    pub push_events: bool,
    pub tag_push_events: bool,
    pub issues_events: bool,
    pub confidential_issues_events: bool,
    pub merge_requests_events: bool,
    pub note_events: bool,
    pub confidential_note_events: bool,
    pub job_events: bool,
    pub pipeline_events: bool,
    pub wiki_page_events: bool,
    pub deployment_events: bool,
    pub releases_events: bool,
    pub feature_flag_events: bool,
    pub emoji_events: bool,
    pub resource_access_token_events: bool,
    pub subgroup_events: bool,
    pub member_events: bool,
    pub project_events: bool,
}

impl Default for HookEvents {
    /// GitLab's defaults: only push events are on.
    fn default() -> Self {
        HookEvents {
            push_events: true,
            tag_push_events: false,
            issues_events: false,
            confidential_issues_events: false,
            merge_requests_events: false,
            note_events: false,
            confidential_note_events: false,
            job_events: false,
            pipeline_events: false,
            wiki_page_events: false,
            deployment_events: false,
            releases_events: false,
            feature_flag_events: false,
            emoji_events: false,
            resource_access_token_events: false,
            subgroup_events: false,
            member_events: false,
            project_events: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hook {
    pub id: u64,
    pub owner: HookOwner,
    pub url: String,
    pub name: String,
    pub description: String,
    pub token: Option<String>,
    pub signing_token: Option<String>,
    pub events: HookEvents,
    pub push_events_branch_filter: Option<String>,
    pub branch_filter_strategy: String,
    pub enable_ssl_verification: bool,
    pub custom_headers: Vec<(String, String)>,
    pub created_at: Ts,
    /// Consecutive failures, as GitLab's `recent_failures`.
    pub recent_failures: u32,
    /// How many times the hook was temporarily disabled in a row (drives the doubling).
    pub backoff_count: u32,
    pub disabled_until: Option<Ts>,
    pub permanently_disabled: bool,
}

impl Hook {
    pub fn alert_status(&self, now: Ts) -> &'static str {
        if self.permanently_disabled {
            "disabled"
        } else if self.disabled_until.is_some_and(|t| t > now) {
            "temporarily_disabled"
        } else {
            "executable"
        }
    }
}
