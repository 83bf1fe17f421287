//! Projects and their branches.

use serde::{Deserialize, Serialize};

use super::{ResourceId, Timestamp};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// `GET /projects/:id` and the items of project lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub path_with_namespace: String,
    #[serde(default)]
    pub namespace: Option<ProjectNamespace>,
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub empty_repo: Option<bool>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub last_activity_at: Option<Timestamp>,
    /// The token user's access; only on single-project responses.
    #[serde(default)]
    pub permissions: Option<Permissions>,
}

/// The namespace embedded in a [`Project`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectNamespace {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub kind: String,
    pub full_path: String,
    #[serde(default)]
    pub parent_id: Option<u64>,
}

/// `permissions` of a [`Project`]: direct project access and access through the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub project_access: Option<Access>,
    #[serde(default)]
    pub group_access: Option<Access>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Access {
    pub access_level: u32,
    #[serde(default)]
    pub notification_level: Option<u32>,
}

impl Permissions {
    /// The higher of project and group access, if any.
    pub fn effective_access_level(&self) -> Option<u32> {
        let project = self.project_access.as_ref().map(|a| a.access_level);
        let group = self.group_access.as_ref().map(|a| a.access_level);
        project.max(group)
    }
}

/// An item of `GET /projects/:id/repository/branches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub protected: Option<bool>,
    #[serde(default)]
    pub default: Option<bool>,
    #[serde(default)]
    pub web_url: Option<String>,
    #[serde(default)]
    pub commit: Option<BranchCommit>,
}

/// The head commit embedded in a [`Branch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchCommit {
    pub id: String,
    #[serde(default)]
    pub committed_date: Option<Timestamp>,
}

impl PageRequest {
    /// `GET /projects/:id/repository/branches`.
    pub fn branches(project: impl Into<ResourceId>) -> PageRequest {
        PageRequest::new(format!("/projects/{}/repository/branches", project.into().segment()))
    }
}

impl GitLabClient {
    /// `GET /projects/:id` by id or full path.
    pub async fn project(&self, project: impl Into<ResourceId>) -> Result<Project> {
        self.get(&format!("/projects/{}", project.into().segment())).await
    }
}
