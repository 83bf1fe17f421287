//! Repository commits.

use serde::{Deserialize, Serialize};

use super::{ResourceId, Timestamp, encode_segment, iso8601};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// A commit from `GET /projects/:id/repository/commits[/:sha]` or a merge request's commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub id: String,
    pub short_id: String,
    pub title: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub author_name: Option<String>,
    #[serde(default)]
    pub author_email: Option<String>,
    #[serde(default)]
    pub authored_date: Option<Timestamp>,
    #[serde(default)]
    pub committer_name: Option<String>,
    #[serde(default)]
    pub committer_email: Option<String>,
    #[serde(default)]
    pub committed_date: Option<Timestamp>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub parent_ids: Vec<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    /// Only on single-commit responses (or lists with `with_stats=true`).
    #[serde(default)]
    pub stats: Option<CommitStats>,
    /// Single-commit responses: status of the last pipeline.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub last_pipeline: Option<CommitPipeline>,
    #[serde(default)]
    pub project_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStats {
    pub additions: u64,
    pub deletions: u64,
    pub total: u64,
}

/// The pipeline summary embedded in a single [`Commit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitPipeline {
    pub id: u64,
    #[serde(rename = "ref", default)]
    pub ref_name: Option<String>,
    pub sha: String,
    pub status: String,
    #[serde(default)]
    pub web_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
}

impl PageRequest {
    /// `GET /projects/:id/repository/commits?all=true[&since=]`: commits of every branch,
    /// not only the default one.
    pub fn commits(project: impl Into<ResourceId>, since: Option<&Timestamp>) -> PageRequest {
        let request = PageRequest::new(format!("/projects/{}/repository/commits", project.into().segment())).query("all", "true");
        match since {
            Some(since) => request.query("since", iso8601(since)),
            None => request,
        }
    }

    /// `GET /projects/:id/repository/commits?ref_name=`: the commits of a branch, tag or
    /// revision range (`old..new`: reachable from `new` and not from `old`, as `git log`), found
    /// from the repository's graph whatever dates the commits carry (doc/api/commits.md).
    pub fn commits_of(project: impl Into<ResourceId>, ref_name: &str) -> PageRequest {
        PageRequest::new(format!("/projects/{}/repository/commits", project.into().segment())).query("ref_name", ref_name)
    }

    /// `GET /projects/:id/repository/commits/:sha/comments` (doc/api/commits.md).
    pub fn commit_comments(project: impl Into<ResourceId>, sha: &str) -> PageRequest {
        PageRequest::new(format!("/projects/{}/repository/commits/{}/comments", project.into().segment(), encode_segment(sha)))
    }

    /// `GET /projects/:id/repository/commits/:sha/refs?type=all`: the branches and tags a
    /// commit is reachable from (doc/api/commits.md, "Get references a commit is pushed to");
    /// none for a commit that only a deleted branch or a rewritten history held.
    pub fn commit_refs(project: impl Into<ResourceId>, sha: &str) -> PageRequest {
        PageRequest::new(format!("/projects/{}/repository/commits/{}/refs", project.into().segment(), encode_segment(sha)))
            .query("type", "all")
    }

    /// `GET /projects/:id/merge_requests/:iid/commits`.
    pub fn merge_request_commits(project: impl Into<ResourceId>, iid: u64) -> PageRequest {
        PageRequest::new(format!("/projects/{}/merge_requests/{iid}/commits", project.into().segment()))
    }
}

impl GitLabClient {
    /// `GET /projects/:id/repository/commits/:sha`.
    pub async fn commit(&self, project: impl Into<ResourceId>, sha: &str) -> Result<Commit> {
        self.get(&format!("/projects/{}/repository/commits/{}", project.into().segment(), encode_segment(sha))).await
    }
}
