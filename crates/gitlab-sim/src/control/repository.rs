//! Control routes for the repository: pushes, branches, tags and releases.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::changes::*;
use super::{Wait, control_error, respond};
use crate::dataset::Ids;
use crate::error::SimError;
use crate::model::*;
use crate::state::{Simulator, lock, write};
use crate::time::{self};
use crate::webhook::Trigger;
use crate::webhook::payloads::{self, MrChange};

/// `push_event_hooks_limit`: a push changing more refs than this fires no webhooks at all.
const PUSH_HOOKS_REF_LIMIT: usize = 3;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RefPush {
    branch: String,
    #[serde(default = "one")]
    commits: usize,
    /// Where a new branch starts; the default branch if absent.
    from: Option<String>,
    #[serde(flatten)]
    shape: CommitShape,
}

/// What the pushed commits carry beyond the defaults, and whether the push rewrites history.
/// Git takes both dates from the pusher's machine (`GIT_AUTHOR_DATE`, `GIT_COMMITTER_DATE`,
/// git-commit(1) "DATE FORMATS"): a wrong clock, a rebase or an import gives commits dated
/// years ahead or back, and GitLab stores and lists them with those dates.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommitShape {
    /// The last commit's dates; earlier commits of the push are a second apart before it.
    committed_date: Option<String>,
    authored_date: Option<String>,
    /// The whole message of every pushed commit (the title is its first line).
    message: Option<String>,
    /// A force push: the branch is first moved `reset` commits back along first parents, so
    /// the commits it passed are reachable no more (unless another ref holds them).
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reset: usize,
}

impl CommitShape {
    fn apply(&self, commits: &mut [Commit]) -> Result<(), SimError> {
        let date = |v: &Option<String>, field: &str| {
            v.as_deref().map(|s| time::parse(s).ok_or_else(|| control_error(format!("{field} is invalid")))).transpose()
        };
        let committed = date(&self.committed_date, "committed_date")?;
        let authored = date(&self.authored_date, "authored_date")?;
        let n = commits.len();
        for (i, c) in commits.iter_mut().enumerate() {
            let back = chrono::Duration::seconds((n - 1 - i) as i64);
            if let Some(t) = committed {
                c.committed_date = t - back;
            }
            if let Some(t) = authored {
                c.authored_date = t - back;
            }
            if let Some(m) = &self.message {
                c.title = m.lines().next().unwrap_or_default().to_string();
                c.message = m.clone();
            }
        }
        Ok(())
    }
}

/// The commit `n` first parents back from `head` (or the root, when history is shorter).
fn first_parent_back(repo: &Repository, head: &str, n: usize) -> String {
    let mut at = head.to_string();
    for _ in 0..n {
        match repo.commit(&at).and_then(|c| c.parent_ids.first()) {
            Some(parent) => at = parent.clone(),
            None => break,
        }
    }
    at
}

fn one() -> usize {
    1
}

#[derive(Debug, Default, Deserialize)]
pub struct PushBody {
    branch: Option<String>,
    commits: Option<usize>,
    from: Option<String>,
    /// Several refs in one push (at most 3 fire webhooks).
    refs: Option<Vec<RefPush>>,
    user_id: Option<u64>,
    #[serde(flatten)]
    shape: CommitShape,
}

/// Pushes commits to one or more branches; open MRs from those branches get them too.
/// Like GitLab, the MR's `updated_at` does not move when its source branch is pushed to.
pub async fn push(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: PushBody = body(&bytes)?;
    let refs = match (b.refs, b.branch) {
        (Some(refs), _) => refs,
        (None, Some(branch)) => vec![RefPush { branch, commits: b.commits.unwrap_or(1), from: b.from, shape: b.shape }],
        (None, None) => return Err(control_error("give `branch` or `refs`")),
    };
    let base = sim.base_url();
    let now = time::now();
    let mut events = Vec::new();
    let mut out = Vec::new();
    {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        for r in &refs {
            let p = project_mut(&mut ds, id)?;
            let existing = p.repository.branch(&r.branch).map(|b| b.commit.clone());
            let parent = match &existing {
                Some(head) if r.shape.force => first_parent_back(&p.repository, head, r.shape.reset),
                Some(head) => head.clone(),
                None => {
                    let from = r.from.clone().unwrap_or_else(|| p.default_branch.clone());
                    p.repository.resolve(&from).ok_or_else(|| control_error(format!("unknown ref {from}")))?
                }
            };
            let mut commits = new_commits(&mut lock(&sim.shared.rng), &user, &parent, r.commits, now);
            r.shape.apply(&mut commits)?;
            let shas: Vec<String> = commits.iter().map(|c| c.id.clone()).collect();
            let after = shas.last().cloned().unwrap_or_else(|| parent.clone());
            for c in commits {
                p.repository.push(c);
            }
            match p.repository.branches.iter_mut().find(|x| x.name == r.branch) {
                Some(branch) => branch.commit = after.clone(),
                None => p.repository.branches.push(Branch { name: r.branch.clone(), commit: after.clone(), protected: false }),
            }
            p.last_activity_at = now;
            let mut refreshed = Vec::new();
            for mr in p.merge_requests.iter_mut().filter(|m| m.state == MrState::Opened && m.source_branch == r.branch) {
                let oldrev = std::mem::replace(&mut mr.sha, after.clone());
                if r.shape.force {
                    // A force push recomputes the merge request's diff: its commits are
                    // those of the new head not on the target branch.
                    let target = p.repository.resolve(&mr.target_branch);
                    mr.commit_shas = new_since(&p.repository, target.as_deref(), &after);
                } else {
                    mr.commit_shas.extend(shas.iter().cloned());
                }
                refreshed.push((mr.iid, oldrev));
            }
            let before = existing.unwrap_or_else(|| ZERO_SHA.to_string());
            let p = ds.project(id).expect("exists");
            events.push(push_event(
                &ds,
                p,
                &user,
                RefMove { before: &before, after: &after, reference: format!("refs/heads/{}", r.branch), shas: &shas },
                &base,
            ));
            for (iid, oldrev) in refreshed {
                let mr = p.merge_request(iid).expect("exists");
                let change = MrChange { action: "update", changes: &Vec::new(), oldrev: Some(&oldrev) };
                let payload = payloads::merge_request(&ds, p, mr, &user, &change, &base);
                events.push(project_event(Trigger::MergeRequest, id, payload));
            }
            out.push(json!({"branch": r.branch, "before": before, "after": after, "commits": shas}));
        }
    }
    let fired = refs.len() <= PUSH_HOOKS_REF_LIMIT;
    if !fired {
        lock(&sim.shared.stats).webhooks_suppressed += events.len() as u64;
        events.clear();
    }
    respond(&sim, w, events, json!({"refs": out, "webhooks": fired})).await
}

#[derive(Debug, Default, Deserialize)]
pub struct RefBody {
    name: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    message: Option<String>,
    user_id: Option<u64>,
}

pub async fn create_branch(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: RefBody = body(&bytes)?;
    let base = sim.base_url();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let p = project_mut(&mut ds, id)?;
        if p.repository.branch(&b.name).is_some() {
            return Err(control_error("branch exists"));
        }
        let from = b.reference.clone().unwrap_or_else(|| p.default_branch.clone());
        let sha = p.repository.resolve(&from).ok_or_else(|| control_error(format!("unknown ref {from}")))?;
        p.repository.branches.push(Branch { name: b.name.clone(), commit: sha.clone(), protected: false });
        p.last_activity_at = time::now();
        let p = ds.project(id).expect("exists");
        push_event(&ds, p, &user, RefMove { before: ZERO_SHA, after: &sha, reference: format!("refs/heads/{}", b.name), shas: &[] }, &base)
    };
    respond(&sim, w, vec![event], json!({"name": b.name})).await
}

pub async fn delete_branch(State(sim): State<Simulator>, Path((id, name)): Path<(u64, String)>, Query(w): Query<Wait>) -> Res {
    let base = sim.base_url();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, None)?;
        let p = project_mut(&mut ds, id)?;
        if name == p.default_branch {
            return Err(control_error("the default branch cannot be deleted"));
        }
        let i = p.repository.branches.iter().position(|b| b.name == name).ok_or(SimError::NotFound("Branch"))?;
        let old = p.repository.branches.remove(i).commit;
        p.last_activity_at = time::now();
        let p = ds.project(id).expect("exists");
        push_event(&ds, p, &user, RefMove { before: &old, after: ZERO_SHA, reference: format!("refs/heads/{name}"), shas: &[] }, &base)
    };
    respond(&sim, w, vec![event], json!({"deleted": name})).await
}

pub async fn create_tag(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: RefBody = body(&bytes)?;
    let base = sim.base_url();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let p = project_mut(&mut ds, id)?;
        if p.repository.tags.iter().any(|t| t.name == b.name) {
            return Err(control_error("tag exists"));
        }
        let from = b.reference.clone().unwrap_or_else(|| p.default_branch.clone());
        let sha = p.repository.resolve(&from).ok_or_else(|| control_error(format!("unknown ref {from}")))?;
        p.repository.tags.push(Tag { name: b.name.clone(), commit: sha.clone(), message: b.message.clone().unwrap_or_default() });
        let p = ds.project(id).expect("exists");
        push_event(
            &ds,
            p,
            &user,
            RefMove { before: ZERO_SHA, after: &sha, reference: format!("refs/tags/{}", b.name), shas: std::slice::from_ref(&sha) },
            &base,
        )
    };
    respond(&sim, w, vec![event], json!({"name": b.name})).await
}

pub async fn delete_tag(State(sim): State<Simulator>, Path((id, name)): Path<(u64, String)>, Query(w): Query<Wait>) -> Res {
    let base = sim.base_url();
    let event = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, None)?;
        let p = project_mut(&mut ds, id)?;
        let i = p.repository.tags.iter().position(|t| t.name == name).ok_or(SimError::NotFound("Tag"))?;
        let old = p.repository.tags.remove(i).commit;
        let p = ds.project(id).expect("exists");
        push_event(&ds, p, &user, RefMove { before: &old, after: ZERO_SHA, reference: format!("refs/tags/{name}"), shas: &[] }, &base)
    };
    respond(&sim, w, vec![event], json!({"deleted": name})).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ReleaseBody {
    tag_name: Option<String>,
    name: Option<String>,
    description: Option<String>,
    /// Where to create the tag if it does not exist (default branch if absent).
    #[serde(rename = "ref")]
    reference: Option<String>,
    user_id: Option<u64>,
}

/// Creates a release, and its tag (with a Tag Push Hook) when the tag is new.
pub async fn create_release(State(sim): State<Simulator>, Path(id): Path<u64>, Query(w): Query<Wait>, bytes: Bytes) -> Res {
    let b: ReleaseBody = body(&bytes)?;
    let tag = b.tag_name.clone().ok_or_else(|| control_error("tag_name is required"))?;
    let base = sim.base_url();
    let now = time::now();
    let (events, release_id) = {
        let mut ds = write(&sim.shared.data);
        let user = actor(&ds, b.user_id)?;
        let release_id = Ids::next(&mut ds.ids.release);
        let p = project_mut(&mut ds, id)?;
        if p.releases.iter().any(|r| r.tag == tag) {
            return Err(control_error("a release for that tag exists"));
        }
        let new_tag = if p.repository.tags.iter().any(|t| t.name == tag) {
            None
        } else {
            let from = b.reference.clone().unwrap_or_else(|| p.default_branch.clone());
            let sha = p.repository.resolve(&from).ok_or_else(|| control_error(format!("unknown ref {from}")))?;
            p.repository.tags.push(Tag { name: tag.clone(), commit: sha.clone(), message: String::new() });
            Some(sha)
        };
        p.releases.push(Release {
            id: release_id,
            tag: tag.clone(),
            name: b.name.clone().unwrap_or_else(|| tag.clone()),
            description: b.description.clone().unwrap_or_default(),
            author_id: user.id,
            created_at: now,
            released_at: now,
        });
        let p = ds.project(id).expect("exists");
        let mut events = Vec::new();
        if let Some(sha) = new_tag {
            let shas = std::slice::from_ref(&sha);
            let reference = format!("refs/tags/{tag}");
            events.push(push_event(&ds, p, &user, RefMove { before: ZERO_SHA, after: &sha, reference, shas }, &base));
        }
        let r = p.releases.last().expect("just added");
        events.push(project_event(Trigger::Release, id, payloads::release(&ds, p, r, "create", &base)));
        (events, release_id)
    };
    respond(&sim, w, events, json!({"id": release_id, "tag_name": tag})).await
}
