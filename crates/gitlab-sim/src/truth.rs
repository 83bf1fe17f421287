//! What a complete sync of a project since a start date holds: the ground truth every test,
//! the demo and the benchmarks compare the connector's data with, in one place.

use std::collections::BTreeSet;

use crate::dataset::Dataset;
use crate::model::{Commit, Issue, MergeRequest, Note, Noteable, Pipeline, Project};
use crate::time::Ts;

/// A project's records a sync since `start` must hold, as GitLab's REST API shows them.
#[derive(Debug)]
pub struct Synced<'a> {
    pub project: &'a Project,
    /// The commits GitLab lists for the project's refs (`all=true`: reachable from a branch or a
    /// tag, so what a force push left behind is not among them) committed since `start`, and
    /// every commit of the merge requests below, whatever its date; each once.
    pub commits: Vec<&'a Commit>,
    /// Merge requests, issues and pipelines updated since `start`. Issues and pipelines only
    /// where the project has them switched on (else GitLab lists none, or answers 403).
    pub merge_requests: Vec<&'a MergeRequest>,
    pub issues: Vec<&'a Issue>,
    pub pipelines: Vec<&'a Pipeline>,
    /// The notes of those merge requests and issues, and the comments on commits written since
    /// `start` (the project's events list those).
    pub notes: Vec<&'a Note>,
}

impl Dataset {
    /// What a sync of project `id` since `start` holds; `None` for a project that is not there.
    pub fn synced_since(&self, id: u64, start: Ts) -> Option<Synced<'_>> {
        let p = self.project(id)?;
        let repo = &p.repository;
        let merge_requests: Vec<&MergeRequest> = p.merge_requests.iter().filter(|m| m.updated_at >= start).collect();
        let mut seen = BTreeSet::new();
        let commits = repo
            .reachable_from_refs(false)
            .into_iter()
            .map(|i| &repo.commits[i])
            .filter(|c| c.committed_date >= start)
            .chain(merge_requests.iter().flat_map(|m| m.commit_shas.iter().filter_map(|s| repo.commit(s))))
            .filter(|c| seen.insert(c.id.as_str()))
            .collect();
        let issues: Vec<&Issue> = if p.issues_enabled { p.issues.iter().filter(|i| i.updated_at >= start).collect() } else { Vec::new() };
        let pipelines = if p.jobs_enabled { p.pipelines.iter().filter(|pl| pl.updated_at >= start).collect() } else { Vec::new() };
        let mr_iids: BTreeSet<u64> = merge_requests.iter().map(|m| m.iid).collect();
        let issue_iids: BTreeSet<u64> = issues.iter().map(|i| i.iid).collect();
        let notes = p
            .notes
            .iter()
            .filter(|n| match &n.noteable {
                Noteable::MergeRequest { iid } => mr_iids.contains(iid),
                Noteable::Issue { iid } => issue_iids.contains(iid),
                Noteable::Commit { .. } => n.created_at >= start,
            })
            .collect();
        Some(Synced { project: p, commits, merge_requests, issues, pipelines, notes })
    }
}
