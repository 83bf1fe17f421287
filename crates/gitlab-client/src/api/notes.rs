//! Comments (notes) on merge requests and issues.

use serde::{Deserialize, Serialize};

use super::users::UserBasic;
use super::{ResourceId, Timestamp};
use crate::pagination::PageRequest;

/// An item of `GET /projects/:id/{merge_requests,issues}/:iid/notes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: u64,
    pub body: String,
    #[serde(default)]
    pub author: Option<UserBasic>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    /// True for notes GitLab writes itself ("changed the description").
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub noteable_id: Option<u64>,
    #[serde(default)]
    pub noteable_type: Option<String>,
    #[serde(default)]
    pub noteable_iid: Option<u64>,
    #[serde(default)]
    pub project_id: Option<u64>,
    #[serde(default)]
    pub resolvable: Option<bool>,
    #[serde(default)]
    pub resolved: Option<bool>,
    #[serde(default)]
    pub confidential: Option<bool>,
    #[serde(default)]
    pub internal: Option<bool>,
}

impl PageRequest {
    /// `GET /projects/:id/merge_requests/:iid/notes`, in creation order so offset pages do
    /// not shift when notes are edited (GitLab has no `updated_after` for notes).
    pub fn merge_request_notes(project: impl Into<ResourceId>, iid: u64) -> PageRequest {
        notes(project.into(), "merge_requests", iid)
    }

    /// `GET /projects/:id/issues/:iid/notes`, in creation order.
    pub fn issue_notes(project: impl Into<ResourceId>, iid: u64) -> PageRequest {
        notes(project.into(), "issues", iid)
    }
}

fn notes(project: ResourceId, parent: &str, iid: u64) -> PageRequest {
    PageRequest::new(format!("/projects/{}/{parent}/{iid}/notes", project.segment())).query("order_by", "created_at").query("sort", "asc")
}
