//! Deterministic dataset generation: the same seed and size always give the same dataset.

use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Ids};
use crate::model::*;
use crate::rng::Rng;
use crate::time::Ts;
use crate::words::*;

/// How much to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Size {
    /// Syncs in seconds: 2 top-level groups, 4 subgroups, 8 projects, tens of records each.
    Small,
    /// A few dozen projects under several levels of subgroups, hundreds of records each.
    Realistic,
    Custom(SizeSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeSpec {
    pub users: usize,
    pub top_groups: usize,
    /// Children of each group, at every level down to `subgroup_depth`.
    pub subgroups_per_group: usize,
    pub subgroup_depth: usize,
    pub projects: usize,
    /// Commits on each project's default branch (MR branches add more).
    pub commits_per_project: usize,
    pub merge_requests_per_project: usize,
    pub issues_per_project: usize,
    pub pipelines_per_project: usize,
    pub max_notes_per_item: usize,
    /// How far back history goes.
    pub years: u32,
    /// Replaces the per-project counts for the first project, for volume tests.
    pub heavy_project: Option<HeavyProject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeavyProject {
    pub commits: usize,
    pub merge_requests: usize,
    pub issues: usize,
    pub pipelines: usize,
}

impl Size {
    pub fn spec(&self) -> SizeSpec {
        match self {
            Size::Small => SizeSpec {
                users: 12,
                top_groups: 2,
                subgroups_per_group: 2,
                subgroup_depth: 1,
                projects: 8,
                commits_per_project: 30,
                merge_requests_per_project: 8,
                issues_per_project: 12,
                pipelines_per_project: 8,
                max_notes_per_item: 3,
                years: 3,
                heavy_project: None,
            },
            Size::Realistic => SizeSpec {
                users: 40,
                top_groups: 3,
                subgroups_per_group: 2,
                subgroup_depth: 3,
                projects: 40,
                commits_per_project: 200,
                merge_requests_per_project: 40,
                issues_per_project: 60,
                pipelines_per_project: 40,
                max_notes_per_item: 5,
                years: 5,
                heavy_project: None,
            },
            Size::Custom(spec) => spec.clone(),
        }
    }
}

/// Well-known tokens every generated dataset accepts, whatever the seed.
pub const TOKEN_OWNER: &str = "glpat-sim-owner-api-0001";
pub const TOKEN_OWNER_READ: &str = "glpat-sim-owner-read-0002";
pub const TOKEN_EXPIRED: &str = "glpat-sim-expired-00003";
pub const TOKEN_REVOKED: &str = "glpat-sim-revoked-00004";
pub const TOKEN_DEVELOPER: &str = "glpat-sim-developer-0005";
pub const TOKEN_MAINTAINER: &str = "glpat-sim-maintainer-006";

/// User ids of the well-known users.
pub const OWNER_USER: u64 = 1;
pub const DEVELOPER_USER: u64 = 2;
pub const MAINTAINER_USER: u64 = 3;

impl Dataset {
    /// Generates history ending at the start of the current UTC day, so that two runs on the
    /// same day agree byte for byte; use [`Dataset::generate_until`] to pin the end.
    pub fn generate(seed: u64, size: Size) -> Dataset {
        let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        Dataset::generate_until(seed, size, today)
    }

    pub fn generate_until(seed: u64, size: Size, now: Ts) -> Dataset {
        Generator::new(seed, size.spec(), now).run()
    }
}

struct Generator {
    rng: Rng,
    spec: SizeSpec,
    now: Ts,
    start: Ts,
    ds: Dataset,
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn ascii_fold(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase()
}

impl Generator {
    fn new(seed: u64, spec: SizeSpec, now: Ts) -> Self {
        let start = now - Duration::days(365 * i64::from(spec.years.max(1)));
        let ds = Dataset {
            seed,
            instance: Instance {
                edition: Edition::Ee,
                version: "19.1.0-ee".into(),
                revision: format!("{:011x}", seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 20),
                self_managed: false,
                license: None,
            },
            users: Vec::new(),
            groups: Vec::new(),
            projects: Vec::new(),
            members: Vec::new(),
            tokens: Vec::new(),
            hooks: Vec::new(),
            ids: Ids::default(),
        };
        Generator { rng: Rng::new(seed), spec, now, start, ds }
    }

    fn run(mut self) -> Dataset {
        self.users();
        self.groups();
        self.projects();
        self.memberships();
        self.tokens();
        self.ds
    }

    /// A time uniformly between `from` and `to`, at millisecond precision.
    fn between(&mut self, from: Ts, to: Ts) -> Ts {
        let span = (to - from).num_milliseconds().max(1) as u64;
        from + Duration::milliseconds(self.rng.range(0, span - 1) as i64)
    }

    fn users(&mut self) {
        let fixed = [("owner", "Olivia Øvergaard"), ("developer", "Dmitri Dévéloppé"), ("maintainer", "María José Núñez")];
        for i in 0..self.spec.users.max(fixed.len()) {
            let (username, name) = match fixed.get(i) {
                Some((u, n)) => (u.to_string(), n.to_string()),
                None => {
                    let first = *self.rng.pick(FIRST_NAMES);
                    let last = *self.rng.pick(LAST_NAMES);
                    (format!("{}.{}{}", ascii_fold(first), ascii_fold(last), i), format!("{first} {last}"))
                }
            };
            let created_at = self.between(self.start - Duration::days(400), self.start);
            self.ds.users.push(User {
                id: Ids::next(&mut self.ds.ids.user),
                email: format!("{username}@example.com"),
                username,
                name,
                created_at,
            });
        }
    }

    fn groups(&mut self) {
        let plans = [Plan::Premium, Plan::Free, Plan::Ultimate];
        for i in 0..self.spec.top_groups {
            let base = GROUP_NAMES[i % GROUP_NAMES.len()];
            let name = if i < GROUP_NAMES.len() { base.to_string() } else { format!("{base} {i}") };
            let id = self.add_group(&name, None, plans[i % plans.len()]);
            self.subgroups(id, 1);
        }
    }

    fn subgroups(&mut self, parent: u64, depth: usize) {
        if depth > self.spec.subgroup_depth {
            return;
        }
        for _ in 0..self.spec.subgroups_per_group {
            let mut name = self.rng.pick(SUBGROUP_NAMES).to_string();
            while self.ds.groups.iter().any(|g| g.parent_id == Some(parent) && g.name == name) {
                name.push_str(" II");
            }
            let plan = self.ds.group(parent).map_or(Plan::Free, |g| g.plan);
            let id = self.add_group(&name, Some(parent), plan);
            self.subgroups(id, depth + 1);
        }
    }

    fn add_group(&mut self, name: &str, parent: Option<u64>, plan: Plan) -> u64 {
        let path = slug(name);
        let (full_path, full_name) = match parent.and_then(|p| self.ds.group(p)) {
            Some(p) => (format!("{}/{path}", p.full_path), format!("{} / {name}", p.full_name)),
            None => (path.clone(), name.to_string()),
        };
        let created_at = self.between(self.start, self.start + Duration::days(60));
        let id = Ids::next(&mut self.ds.ids.group);
        self.ds.groups.push(Group {
            id,
            name: name.to_string(),
            path,
            full_path,
            full_name,
            parent_id: parent,
            description: format!("{name} — generated by the GitLab simulator"),
            visibility: if self.rng.chance(0.15) { Visibility::Internal } else { Visibility::Private },
            plan,
            created_at,
        });
        id
    }

    fn projects(&mut self) {
        let tops: Vec<u64> = self.ds.groups.iter().filter(|g| g.parent_id.is_none()).map(|g| g.id).collect();
        let all: Vec<u64> = self.ds.groups.iter().map(|g| g.id).collect();
        for i in 0..self.spec.projects {
            let namespace = match tops.get(i) {
                Some(g) => *g,
                None => *self.rng.pick(&all),
            };
            let mut rng = self.rng.fork(i as u64);
            let counts = match (&self.spec.heavy_project, i) {
                (Some(h), 0) => (h.commits, h.merge_requests, h.issues, h.pipelines),
                _ => (
                    self.spec.commits_per_project,
                    self.spec.merge_requests_per_project,
                    self.spec.issues_per_project,
                    self.spec.pipelines_per_project,
                ),
            };
            // Fixed positions, so every dataset has a project of each kind.
            let issues_enabled = i % 5 != 2;
            let jobs_enabled = i % 6 != 3;
            let archived = i % 11 == 7;
            let project = ProjectGen { g: self, rng: &mut rng }.build(namespace, i, counts, issues_enabled, jobs_enabled, archived);
            self.ds.projects.push(project);
        }
    }

    fn memberships(&mut self) {
        let created_at = self.start;
        let tops: Vec<u64> = self.ds.groups.iter().filter(|g| g.parent_id.is_none()).map(|g| g.id).collect();
        for g in &tops {
            self.ds.members.push(Member {
                source: MemberSource::Group(*g),
                user_id: OWNER_USER,
                access_level: OWNER,
                created_at,
                expires_at: None,
            });
        }
        if let Some(g) = tops.first() {
            self.ds.members.push(Member {
                source: MemberSource::Group(*g),
                user_id: DEVELOPER_USER,
                access_level: DEVELOPER,
                created_at,
                expires_at: None,
            });
        }
        if let Some(p) = self.ds.projects.first() {
            let source = MemberSource::Project(p.id);
            self.ds.members.push(Member { source, user_id: MAINTAINER_USER, access_level: MAINTAINER, created_at, expires_at: None });
        }
        let levels = [GUEST, REPORTER, DEVELOPER, DEVELOPER, MAINTAINER];
        let groups: Vec<u64> = self.ds.groups.iter().map(|g| g.id).collect();
        for user_id in 4..=self.ds.users.len() as u64 {
            for _ in 0..self.rng.range(1, 2) {
                let g = *self.rng.pick(&groups);
                let access_level = *self.rng.pick(&levels);
                let created_at = self.between(self.start, self.now);
                if !self.ds.members.iter().any(|m| m.user_id == user_id && m.source == MemberSource::Group(g)) {
                    self.ds.members.push(Member { source: MemberSource::Group(g), user_id, access_level, created_at, expires_at: None });
                }
            }
        }
    }

    fn tokens(&mut self) {
        let today = self.now.date_naive();
        let year = today + Duration::days(365);
        let specs: [TokenSpec; 6] = [
            ("sim-owner-api", TOKEN_OWNER, OWNER_USER, &["api"], Some(year), false),
            ("sim-owner-read", TOKEN_OWNER_READ, OWNER_USER, &["read_api"], Some(year), false),
            ("sim-expired", TOKEN_EXPIRED, OWNER_USER, &["api"], Some(today - Duration::days(30)), false),
            ("sim-revoked", TOKEN_REVOKED, OWNER_USER, &["api"], Some(year), true),
            ("sim-developer", TOKEN_DEVELOPER, DEVELOPER_USER, &["api"], Some(year), false),
            ("sim-maintainer", TOKEN_MAINTAINER, MAINTAINER_USER, &["api"], None, false),
        ];
        for (name, value, user_id, scopes, expires_at, revoked) in specs {
            let created_at = self.between(self.now - Duration::days(200), self.now - Duration::days(40));
            self.ds.tokens.push(Token {
                id: Ids::next(&mut self.ds.ids.token),
                name: name.into(),
                value: value.into(),
                user_id,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                created_at,
                expires_at,
                revoked,
                description: format!("Generated token {name}"),
                rotated_from: None,
            });
        }
    }
}

/// name, value, user, scopes, expires_at, revoked.
type TokenSpec = (&'static str, &'static str, u64, &'static [&'static str], Option<NaiveDate>, bool);

/// Builds one project's repository and activity.
struct ProjectGen<'a> {
    g: &'a mut Generator,
    rng: &'a mut Rng,
}

impl ProjectGen<'_> {
    fn build(
        mut self,
        namespace_id: u64,
        index: usize,
        (commits, mrs, issues, pipelines): (usize, usize, usize, usize),
        issues_enabled: bool,
        jobs_enabled: bool,
        archived: bool,
    ) -> Project {
        let ns = self.g.ds.group(namespace_id).cloned().expect("namespace exists");
        let mut path = PROJECT_NAMES[index % PROJECT_NAMES.len()].to_string();
        if index >= PROJECT_NAMES.len() {
            path = format!("{path}-{}", index / PROJECT_NAMES.len() + 1);
        }
        let created_at = self.between(self.g.start, self.g.start + Duration::days(120));
        let id = Ids::next(&mut self.g.ds.ids.project);
        let default_branch = if self.rng.chance(0.2) { "master" } else { "main" }.to_string();
        let mut project = Project {
            id,
            name: path.clone(),
            path: path.clone(),
            namespace_id,
            path_with_namespace: format!("{}/{path}", ns.full_path),
            name_with_namespace: format!("{} / {path}", ns.full_name),
            description: format!("The {path} service. {}", self.rng.pick(PARAGRAPHS)),
            visibility: if self.rng.chance(0.1) { Visibility::Internal } else { Visibility::Private },
            default_branch,
            archived,
            issues_enabled,
            jobs_enabled,
            created_at,
            last_activity_at: created_at,
            creator_id: OWNER_USER,
            repository: Repository::default(),
            labels: Vec::new(),
            merge_requests: Vec::new(),
            issues: Vec::new(),
            notes: Vec::new(),
            pipelines: Vec::new(),
            releases: Vec::new(),
            deployments: Vec::new(),
        };
        for (title, color) in LABELS {
            project.labels.push(Label {
                id: Ids::next(&mut self.g.ds.ids.label),
                title: title.to_string(),
                color: color.to_string(),
                description: format!("Issues about {title}"),
                created_at,
            });
        }
        self.history(&mut project, commits, mrs);
        if issues_enabled {
            self.issues(&mut project, issues);
        }
        self.notes(&mut project);
        if jobs_enabled {
            self.pipelines(&mut project, pipelines);
        }
        project.last_activity_at = project
            .repository
            .commits
            .iter()
            .map(|c| c.committed_date)
            .chain(project.merge_requests.iter().map(|m| m.updated_at))
            .chain(project.issues.iter().map(|i| i.updated_at))
            .max()
            .unwrap_or(created_at);
        project
    }

    fn between(&mut self, from: Ts, to: Ts) -> Ts {
        let span = (to - from).num_milliseconds().max(1) as u64;
        from + Duration::milliseconds(self.rng.range(0, span - 1) as i64)
    }

    fn user(&mut self) -> &User {
        let i = self.rng.below(self.g.ds.users.len());
        &self.g.ds.users[i]
    }

    fn message(&mut self) -> (String, String) {
        let title = format!("{} {}", self.rng.pick(VERBS), self.rng.pick(OBJECTS));
        let message = match self.rng.below(10) {
            0..=5 => title.clone(),
            6..=8 => format!("{title}\n\n{}\n", self.rng.pick(PARAGRAPHS)),
            // Sometimes very long, as real commit messages occasionally are.
            _ => {
                let body: Vec<&str> = (0..30).map(|_| *self.rng.pick(PARAGRAPHS)).collect();
                format!("{title}\n\n{}\n\nSigned-off-by: Sim Bot <bot@example.com>\n", body.join("\n\n"))
            }
        };
        (title, message)
    }

    fn commit(&mut self, parents: Vec<String>, at: Ts, message: Option<(String, String)>) -> Commit {
        let author = self.user().clone();
        let (title, message) = message.unwrap_or_else(|| self.message());
        let file = self.rng.pick(FILES).to_string();
        let added = if self.rng.chance(0.2) { vec![format!("docs/notes-{}.md", self.rng.below(1000))] } else { vec![] };
        Commit {
            id: self.rng.sha(),
            parent_ids: parents,
            title,
            message,
            author_name: author.name.clone(),
            author_email: author.email.clone(),
            committer_name: author.name,
            committer_email: author.email,
            authored_date: at - Duration::minutes(self.rng.range(0, 90) as i64),
            committed_date: at,
            added,
            modified: vec![file],
        }
    }

    /// Walks time forward on the default branch, branching off MRs along the way.
    fn history(&mut self, p: &mut Project, commits: usize, mrs: usize) {
        let end = self.g.now - Duration::hours(1);
        let commits = commits.max(1);
        let step = (end - p.created_at).num_milliseconds().max(1000) / commits as i64;
        let mr_every = commits.checked_div(mrs).map_or(usize::MAX, |n| n.max(1));
        let mut clock = p.created_at;
        let first = self.commit(vec![], clock, Some(("Initial commit".into(), "Initial commit\n".into())));
        let mut head = first.id.clone();
        p.repository.push(first);
        let mut tagged = 0;
        for i in 1..commits {
            clock += Duration::milliseconds(step / 2 + self.rng.range(0, step as u64) as i64);
            clock = clock.min(end);
            if i % mr_every == 0 && p.merge_requests.len() < mrs {
                head = self.merge_request(p, head, clock, end);
                // A merge can land hours later; the default branch continues after it.
                clock = clock.max(p.repository.commit(&head).map_or(clock, |c| c.committed_date));
                continue;
            }
            let c = self.commit(vec![head.clone()], clock, None);
            head = c.id.clone();
            p.repository.push(c);
            if i % 50 == 25 {
                tagged += 1;
                p.repository.tags.push(Tag {
                    name: format!("v1.{tagged}.0"),
                    commit: head.clone(),
                    message: format!("Release 1.{tagged}"),
                });
            }
        }
        // MRs still missing (few commits, many MRs) start from the head.
        while p.merge_requests.len() < mrs {
            head = self.merge_request(p, head, clock, end);
        }
        p.repository.branches.insert(0, Branch { name: p.default_branch.clone(), commit: head.clone(), protected: true });
        let base = p.repository.commits[p.repository.commits.len() / 2].id.clone();
        p.repository.branches.push(Branch { name: "release/1.x".into(), commit: base, protected: true });
    }

    /// Creates an MR branched from `head`; returns the new default-branch head.
    fn merge_request(&mut self, p: &mut Project, head: String, at: Ts, end: Ts) -> String {
        let iid = p.merge_requests.len() as u64 + 1;
        let (title, _) = self.message();
        let branch = format!("feature/{}-{iid}", slug(&title).chars().take(24).collect::<String>().trim_end_matches('-'));
        let mut tip = head.clone();
        let mut shas = Vec::new();
        let mut t = at;
        for _ in 0..self.rng.range(1, 4) {
            t += Duration::minutes(self.rng.range(5, 240) as i64);
            let c = self.commit(vec![tip.clone()], t.min(end), None);
            tip = c.id.clone();
            shas.push(tip.clone());
            p.repository.push(c);
        }
        let author = self.user().id;
        let created_at = (t + Duration::minutes(5)).min(end);
        let recent = (end - at) < Duration::days(30);
        let fate = self.rng.below(100);
        let state = if recent && fate < 60 || fate < 20 {
            MrState::Opened
        } else if fate < 35 {
            MrState::Closed
        } else {
            MrState::Merged
        };
        let finished = (created_at + Duration::hours(self.rng.range(1, 72) as i64)).min(end);
        let mut mr = MergeRequest {
            id: Ids::next(&mut self.g.ds.ids.merge_request),
            iid,
            title: if self.rng.chance(0.1) { format!("Draft: {title}") } else { title.clone() },
            description: format!("{}\n\nCloses #{}", self.rng.pick(PARAGRAPHS), self.rng.range(1, 20)),
            state,
            author_id: author,
            assignee_ids: vec![author],
            reviewer_ids: vec![self.user().id],
            source_branch: branch.clone(),
            target_branch: p.default_branch.clone(),
            sha: tip.clone(),
            merge_commit_sha: None,
            commit_shas: shas,
            labels: vec![LABELS[self.rng.below(LABELS.len())].0.to_string()],
            draft: false,
            created_at,
            updated_at: created_at,
            merged_at: None,
            closed_at: None,
            merged_by_id: None,
            closed_by_id: None,
        };
        mr.draft = mr.title.starts_with("Draft:");
        let mut new_head = head.clone();
        match state {
            MrState::Merged => {
                let msg = format!(
                    "Merge branch '{branch}' into '{}'\n\n{title}\n\nSee merge request {}!{iid}",
                    p.default_branch, p.path_with_namespace
                );
                let merge = self.commit(
                    vec![head, tip.clone()],
                    finished,
                    Some((format!("Merge branch '{branch}' into '{}'", p.default_branch), msg)),
                );
                new_head = merge.id.clone();
                mr.merge_commit_sha = Some(merge.id.clone());
                p.repository.push(merge);
                mr.merged_at = Some(finished);
                mr.merged_by_id = Some(OWNER_USER);
                mr.updated_at = finished;
            }
            MrState::Closed => {
                mr.closed_at = Some(finished);
                mr.closed_by_id = Some(author);
                mr.updated_at = finished;
                if self.rng.chance(0.5) {
                    p.repository.branches.push(Branch { name: branch, commit: tip, protected: false });
                }
            }
            MrState::Opened => {
                mr.updated_at = (created_at + Duration::minutes(self.rng.range(0, 600) as i64)).min(end).max(created_at);
                p.repository.branches.push(Branch { name: branch, commit: tip, protected: false });
            }
        }
        p.merge_requests.push(mr);
        new_head
    }

    fn issues(&mut self, p: &mut Project, count: usize) {
        let end = self.g.now - Duration::hours(1);
        let mut times: Vec<Ts> = (0..count).map(|_| self.between(p.created_at, end)).collect();
        times.sort();
        for (i, created_at) in times.into_iter().enumerate() {
            let author = self.user().id;
            let (title, _) = self.message();
            let closed = self.rng.chance(0.5);
            let finished = (created_at + Duration::hours(self.rng.range(1, 24 * 30) as i64)).min(end);
            let labels = (0..self.rng.range(0, 2)).map(|_| LABELS[self.rng.below(LABELS.len())].0.to_string()).collect::<Vec<_>>();
            let mut labels_dedup = labels;
            labels_dedup.dedup();
            p.issues.push(Issue {
                id: Ids::next(&mut self.g.ds.ids.issue),
                iid: i as u64 + 1,
                title,
                description: self.rng.pick(PARAGRAPHS).to_string(),
                state: if closed { IssueState::Closed } else { IssueState::Opened },
                author_id: author,
                assignee_ids: if self.rng.chance(0.6) { vec![self.user().id] } else { vec![] },
                labels: labels_dedup,
                confidential: self.rng.chance(0.1),
                created_at,
                updated_at: if closed { finished } else { (created_at + Duration::hours(self.rng.range(0, 48) as i64)).min(end) },
                closed_at: closed.then_some(finished),
                closed_by_id: closed.then_some(author),
                updated_by_id: Some(author),
            });
        }
    }

    /// Notes fall inside their parent's lifetime, so the parent's `updated_at` stays the latest.
    fn notes(&mut self, p: &mut Project) {
        let max = self.g.spec.max_notes_per_item as u64;
        let mut targets: Vec<(Noteable, Ts, Ts)> = Vec::new();
        for mr in &p.merge_requests {
            targets.push((Noteable::MergeRequest { iid: mr.iid }, mr.created_at, mr.updated_at));
        }
        for issue in &p.issues {
            targets.push((Noteable::Issue { iid: issue.iid }, issue.created_at, issue.updated_at));
        }
        let commits = &p.repository.commits;
        for c in commits.iter().step_by(7) {
            targets.push((Noteable::Commit { sha: c.id.clone() }, c.committed_date, c.committed_date + Duration::hours(2)));
        }
        for (noteable, from, to) in targets {
            let n = self.rng.range(0, max);
            let mut times: Vec<Ts> = (0..n).map(|_| self.between(from, to.max(from + Duration::seconds(1)))).collect();
            times.sort();
            for created_at in times {
                let system = !matches!(noteable, Noteable::Commit { .. }) && self.rng.chance(0.3);
                let author = self.user().clone();
                let body = if system {
                    self.rng.pick(SYSTEM_NOTES).replace("{user}", &author.username).replace("{sha}", &p.repository.commits[0].id[..8])
                } else {
                    self.rng.pick(COMMENTS).to_string()
                };
                p.notes.push(Note {
                    id: Ids::next(&mut self.g.ds.ids.note),
                    body,
                    author_id: author.id,
                    system,
                    noteable: noteable.clone(),
                    created_at,
                    updated_at: created_at,
                });
            }
        }
        p.notes.sort_by_key(|n| n.id);
    }

    fn pipelines(&mut self, p: &mut Project, count: usize) {
        let end = self.g.now - Duration::minutes(10);
        let mut picks: Vec<usize> = (0..count).map(|_| self.rng.below(p.repository.commits.len())).collect();
        picks.sort();
        let statuses = ["success", "success", "success", "failed", "canceled", "skipped"];
        for (n, i) in picks.into_iter().enumerate() {
            let commit = &p.repository.commits[i];
            let created_at = (commit.committed_date + Duration::seconds(self.rng.range(5, 300) as i64)).min(end);
            let last = n + 1 == count;
            let status = if last { "running" } else { *self.rng.pick(&statuses) };
            let finished_at = (status != "running").then(|| created_at + Duration::seconds(self.rng.range(60, 1800) as i64));
            let ref_name =
                p.merge_requests.iter().find(|m| m.sha == commit.id).map_or(p.default_branch.clone(), |m| m.source_branch.clone());
            let user_id = self.user().id;
            let mut jobs = Vec::new();
            for (stage, name) in [("build", "compile"), ("test", "unit-tests"), ("deploy", "deploy-staging")] {
                jobs.push(Job {
                    id: Ids::next(&mut self.g.ds.ids.job),
                    name: name.into(),
                    stage: stage.into(),
                    status: if status == "running" && stage != "build" { "pending".into() } else { status.into() },
                    created_at,
                    started_at: Some(created_at + Duration::seconds(3)),
                    finished_at,
                });
            }
            let id = Ids::next(&mut self.g.ds.ids.pipeline);
            p.pipelines.push(Pipeline {
                id,
                iid: n as u64 + 1,
                ref_name,
                sha: commit.id.clone(),
                before_sha: commit.parent_ids.first().cloned().unwrap_or_else(|| "0".repeat(40)),
                tag: false,
                status: status.into(),
                source: "push".into(),
                user_id,
                created_at,
                updated_at: finished_at.unwrap_or(created_at),
                started_at: Some(created_at + Duration::seconds(3)),
                finished_at,
                jobs,
            });
        }
    }
}
