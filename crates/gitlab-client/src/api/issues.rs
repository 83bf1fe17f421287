//! Issues.

use serde::{Deserialize, Serialize};

use super::merge_requests::Milestone;
use super::users::UserBasic;
use serde::de::DeserializeOwned;

use super::{ResourceId, Timestamp, iso8601};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// An item of `GET /projects/:id/issues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub iid: u64,
    pub project_id: u64,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `opened` or `closed`.
    pub state: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default)]
    pub closed_at: Option<Timestamp>,
    #[serde(default)]
    pub closed_by: Option<UserBasic>,
    #[serde(default)]
    pub author: Option<UserBasic>,
    #[serde(default)]
    pub assignees: Vec<UserBasic>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub milestone: Option<Milestone>,
    #[serde(default)]
    pub confidential: Option<bool>,
    /// `issue`, `incident`, `test_case`, `task`.
    #[serde(default)]
    pub issue_type: Option<String>,
    #[serde(default)]
    pub user_notes_count: Option<u64>,
    #[serde(default)]
    pub web_url: Option<String>,
}

/// How to page through issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssuePagination {
    /// Keyset (GitLab 18.3+): a cursor of values, so edits while reading skip nothing.
    #[default]
    Keyset,
    /// Offset pages, for older instances that refuse keyset on issues.
    Offset,
}

impl PageRequest {
    /// `GET /projects/:id/issues`, every author, changed since `updated_after`, oldest first by
    /// creation: an order that edits made while reading do not move, which offset pages need.
    pub fn issues(project: impl Into<ResourceId>, updated_after: Option<&Timestamp>, pagination: IssuePagination) -> PageRequest {
        let mut request = PageRequest::new(format!("/projects/{}/issues", project.into().segment()));
        if pagination == IssuePagination::Keyset {
            request = request.query("pagination", "keyset");
        }
        request = request.query("scope", "all").query("order_by", "created_at").query("sort", "asc");
        match updated_after {
            Some(after) => request.query("updated_after", iso8601(after)),
            None => request,
        }
    }
}

impl GitLabClient {
    /// `GET /projects/:id/issues/:iid`: one issue, e.g. one a list skipped.
    pub async fn issue<T: DeserializeOwned>(&self, project: impl Into<ResourceId>, iid: u64) -> Result<T> {
        self.get(&format!("/projects/{}/issues/{iid}", project.into().segment())).await
    }
}
