//! Namespaces, groups, their subgroups and projects, and membership.

use serde::{Deserialize, Serialize};

use super::{ResourceId, Timestamp};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// `GET /namespaces/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    pub id: u64,
    pub name: String,
    pub path: String,
    /// `group` or `user`.
    pub kind: String,
    pub full_path: String,
    #[serde(default)]
    pub parent_id: Option<u64>,
    #[serde(default)]
    pub web_url: Option<String>,
    /// The GitLab.com plan (`free`, `premium`, `ultimate`, ...; `default` on self-managed).
    /// GitLab shows it to group owners only.
    #[serde(default)]
    pub plan: Option<String>,
}

/// `GET /groups/:id` and the items of group lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub full_path: String,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub parent_id: Option<u64>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

/// `GET /groups/:id/members/all/:user_id`: a member, including inherited membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    /// 10 guest, 15 planner, 20 reporter, 30 developer, 40 maintainer, 50 owner.
    pub access_level: u32,
    #[serde(default)]
    pub expires_at: Option<chrono::NaiveDate>,
}

impl Member {
    pub const OWNER: u32 = 50;
    pub const MAINTAINER: u32 = 40;
}

impl PageRequest {
    /// `GET /groups/:id/descendant_groups`: all subgroups at any depth.
    pub fn descendant_groups(group: impl Into<ResourceId>) -> PageRequest {
        PageRequest::new(format!("/groups/{}/descendant_groups", group.into().segment())).query("order_by", "id").query("sort", "asc")
    }

    /// `GET /groups/:id/projects` over the group and all its subgroups, without projects
    /// merely shared with it, ordered by id so offset pages stay stable while projects change.
    pub fn group_projects(group: impl Into<ResourceId>) -> PageRequest {
        PageRequest::new(format!("/groups/{}/projects", group.into().segment()))
            .query("include_subgroups", "true")
            .query("with_shared", "false")
            .query("order_by", "id")
            .query("sort", "asc")
    }
}

impl GitLabClient {
    /// `GET /namespaces/:id`.
    pub async fn namespace(&self, namespace: impl Into<ResourceId>) -> Result<Namespace> {
        self.get(&format!("/namespaces/{}", namespace.into().segment())).await
    }

    /// `GET /groups/:id` (without the deprecated embedded project list).
    pub async fn group(&self, group: impl Into<ResourceId>) -> Result<Group> {
        self.get(&format!("/groups/{}?with_projects=false", group.into().segment())).await
    }

    /// `GET /groups/:id/members/all/:user_id`: the user's effective membership.
    pub async fn group_member(&self, group: impl Into<ResourceId>, user_id: u64) -> Result<Member> {
        self.get(&format!("/groups/{}/members/all/{user_id}", group.into().segment())).await
    }
}
