//! What the content-changing control routes share: body parsing, lookups, new commits and
//! push events.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::response::Response;
use chrono::Duration;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::control_error;
use crate::dataset::Dataset;
use crate::error::SimError;
use crate::generate::OWNER_USER;
use crate::model::*;
use crate::rng::Rng;
use crate::time::Ts;
use crate::webhook::payloads::{self, PushInfo};
use crate::webhook::{Event, Trigger};
use crate::words::{OBJECTS, VERBS};

pub(super) type Res = Result<Response, SimError>;

pub(super) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Optional JSON bodies: empty means all defaults.
pub(super) fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, SimError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| control_error(format!("invalid body: {e}")))
}

pub(super) fn project_mut(ds: &mut Dataset, id: u64) -> Result<&mut Project, SimError> {
    ds.project_mut(id).ok_or(SimError::NotFound("Project"))
}

pub(super) fn actor(ds: &Dataset, user_id: Option<u64>) -> Result<User, SimError> {
    ds.user(user_id.unwrap_or(OWNER_USER)).cloned().ok_or_else(|| control_error("no such user"))
}

pub(super) fn project_event(trigger: Trigger, project_id: u64, payload: Value) -> Event {
    Event { trigger, payload, project_id: Some(project_id), group_id: None, branch: None }
}

/// `n` new commits on top of `parent`, ending at `now`, one second apart.
pub(super) fn new_commits(rng: &mut Rng, author: &User, parent: &str, n: usize, now: Ts) -> Vec<Commit> {
    let mut parent = parent.to_string();
    (0..n)
        .map(|i| {
            let at = now - Duration::seconds((n - 1 - i) as i64);
            let title = format!("{} {}", rng.pick(VERBS), rng.pick(OBJECTS));
            let c = Commit {
                id: rng.sha(),
                parent_ids: vec![parent.clone()],
                message: format!("{title}\n"),
                title,
                author_name: author.name.clone(),
                author_email: author.email.clone(),
                committer_name: author.name.clone(),
                committer_email: author.email.clone(),
                authored_date: at,
                committed_date: at,
                added: vec![],
                modified: vec!["src/lib.rs".into()],
            };
            parent = c.id.clone();
            c
        })
        .collect()
}

/// Commits reachable from `new` but not from `old`, oldest first.
pub(super) fn new_since(repo: &Repository, old: Option<&str>, new: &str) -> Vec<String> {
    let seen: HashSet<usize> = old.map(|o| repo.reachable(&[o.to_string()], false).into_iter().collect()).unwrap_or_default();
    let mut out: Vec<usize> = repo.reachable(&[new.to_string()], false).into_iter().filter(|i| !seen.contains(i)).collect();
    out.reverse();
    out.into_iter().map(|i| repo.commits[i].id.clone()).collect()
}

/// A ref moving from `before` to `after` (zeros for creation or deletion).
pub(super) struct RefMove<'a> {
    pub before: &'a str,
    pub after: &'a str,
    pub reference: String,
    pub shas: &'a [String],
}

pub(super) fn push_event(ds: &Dataset, p: &Project, user: &User, m: RefMove, base: &str) -> Event {
    let RefMove { before, after, reference, shas } = m;
    let commits = shas.iter().filter_map(|s| p.repository.commit(s)).collect();
    let tag = reference.starts_with("refs/tags/");
    let branch = reference.strip_prefix("refs/heads/").map(str::to_string);
    let info = PushInfo { before: before.into(), after: after.into(), reference, commits };
    Event {
        trigger: if tag { Trigger::TagPush } else { Trigger::Push },
        payload: payloads::push(ds, p, user, &info, base),
        project_id: Some(p.id),
        group_id: None,
        branch,
    }
}
