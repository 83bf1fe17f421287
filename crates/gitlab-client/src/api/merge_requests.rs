//! Merge requests.

use serde::{Deserialize, Serialize};

use super::users::UserBasic;
use serde::de::DeserializeOwned;

use super::{ResourceId, Timestamp, iso8601};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// An item of `GET /projects/:id/merge_requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRequest {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `opened`, `closed`, `locked` or `merged`.
    pub state: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub merged_at: Option<Timestamp>,
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
    pub source_branch: String,
    pub target_branch: String,
    #[serde(default)]
    pub source_project_id: Option<u64>,
    #[serde(default)]
    pub target_project_id: Option<u64>,
    #[serde(default)]
    pub author: Option<UserBasic>,
    #[serde(default)]
    pub assignees: Vec<UserBasic>,
    #[serde(default)]
    pub reviewers: Vec<UserBasic>,
    #[serde(default)]
    pub merged_by: Option<UserBasic>,
    #[serde(default)]
    pub closed_by: Option<UserBasic>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub milestone: Option<Milestone>,
    /// Newer GitLab sends `draft`; older sends `work_in_progress`.
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub work_in_progress: Option<bool>,
    #[serde(default)]
    pub detailed_merge_status: Option<String>,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub squash_commit_sha: Option<String>,
    #[serde(default)]
    pub user_notes_count: Option<u64>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
}

impl MergeRequest {
    pub fn is_draft(&self) -> bool {
        self.draft.or(self.work_in_progress).unwrap_or(false)
    }
}

/// A milestone embedded in merge requests and issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    pub id: u64,
    pub iid: u64,
    #[serde(default)]
    pub project_id: Option<u64>,
    #[serde(default)]
    pub group_id: Option<u64>,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub due_date: Option<chrono::NaiveDate>,
    #[serde(default)]
    pub start_date: Option<chrono::NaiveDate>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    #[serde(default)]
    pub web_url: Option<String>,
}

impl PageRequest {
    /// `GET /projects/:id/merge_requests`, every state and author, changed since `updated_after`,
    /// oldest first by creation. Offset-paginated (GitLab has no keyset for merge requests), so
    /// the order must not move while it is read: `updated_at` does (an edit sends an item of a
    /// page already read to the end, and the next page starts past one it never showed),
    /// `created_at` does not (doc/api/merge_requests.md; gitlab-reference "Offset pages over a
    /// moving order skip items").
    pub fn merge_requests(project: impl Into<ResourceId>, updated_after: Option<&Timestamp>) -> PageRequest {
        let request = PageRequest::new(format!("/projects/{}/merge_requests", project.into().segment()))
            .query("state", "all")
            .query("scope", "all")
            .query("order_by", "created_at")
            .query("sort", "asc");
        match updated_after {
            Some(after) => request.query("updated_after", iso8601(after)),
            None => request,
        }
    }
}

impl GitLabClient {
    /// `GET /projects/:id/merge_requests/:iid`: one merge request, e.g. one a list skipped.
    pub async fn merge_request<T: DeserializeOwned>(&self, project: impl Into<ResourceId>, iid: u64) -> Result<T> {
        self.get(&format!("/projects/{}/merge_requests/{iid}", project.into().segment())).await
    }
}
