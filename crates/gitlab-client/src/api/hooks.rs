//! Project and group webhooks.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::{ResourceId, Timestamp};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// A project or group hook as GitLab returns it. Secrets are never returned; newer GitLab
/// (19.0+) says whether they are set through `token_present` / `signing_token_present`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub id: u64,
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub project_id: Option<u64>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub push_events: bool,
    #[serde(default)]
    pub push_events_branch_filter: Option<String>,
    #[serde(default)]
    pub branch_filter_strategy: Option<String>,
    #[serde(default)]
    pub tag_push_events: bool,
    #[serde(default)]
    pub merge_requests_events: bool,
    #[serde(default)]
    pub issues_events: bool,
    #[serde(default)]
    pub confidential_issues_events: bool,
    #[serde(default)]
    pub note_events: bool,
    #[serde(default)]
    pub confidential_note_events: bool,
    #[serde(default)]
    pub pipeline_events: bool,
    #[serde(default)]
    pub job_events: bool,
    #[serde(default)]
    pub deployment_events: bool,
    #[serde(default)]
    pub releases_events: bool,
    /// Group hooks only.
    #[serde(default)]
    pub subgroup_events: Option<bool>,
    #[serde(default)]
    pub member_events: Option<bool>,
    #[serde(default)]
    pub project_events: Option<bool>,
    #[serde(default)]
    pub enable_ssl_verification: bool,
    /// `executable`, `temporarily_disabled` or `disabled`.
    #[serde(default)]
    pub alert_status: Option<String>,
    #[serde(default)]
    pub disabled_until: Option<Timestamp>,
    #[serde(default)]
    pub token_present: Option<bool>,
    #[serde(default)]
    pub signing_token_present: Option<bool>,
}

/// The body of a hook create or update. Unset fields are left out, so GitLab applies its
/// defaults on create and keeps current values on update — except the secret `token`, which
/// GitLab resets whenever `url` changes, so send it on every update.
#[derive(Debug, Default, Serialize)]
pub struct HookSpec {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Sent back as `X-Gitlab-Token` on deliveries.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_secret")]
    pub token: Option<SecretString>,
    /// `whsec_...` HMAC signing key (GitLab 19.0+; older versions ignore it).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_secret")]
    pub signing_token: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_ssl_verification: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_push_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_requests_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issues_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidential_issues_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidential_note_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releases_events: Option<bool>,
    /// Group hooks only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgroup_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_events: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_events: Option<bool>,
}

fn expose_secret<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => s.serialize_str(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

/// Whose hooks: a project's or a group's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HookOwner {
    Project(ResourceId),
    Group(ResourceId),
}

impl HookOwner {
    fn hooks_path(&self) -> String {
        match self {
            HookOwner::Project(id) => format!("/projects/{}/hooks", id.segment()),
            HookOwner::Group(id) => format!("/groups/{}/hooks", id.segment()),
        }
    }
}

impl PageRequest {
    /// `GET /projects/:id/hooks` or `GET /groups/:id/hooks`.
    pub fn hooks(owner: &HookOwner) -> PageRequest {
        PageRequest::new(owner.hooks_path())
    }
}

impl GitLabClient {
    /// All hooks of a project or group (at most 100 per project and 50 per group on
    /// GitLab.com, so collecting them is fine).
    pub async fn hooks(&self, owner: &HookOwner) -> Result<Vec<Hook>> {
        self.collect_all(PageRequest::hooks(owner)).await
    }

    pub async fn hook(&self, owner: &HookOwner, hook_id: u64) -> Result<Hook> {
        self.get(&format!("{}/{hook_id}", owner.hooks_path())).await
    }

    /// Creates a hook. Not retried once the request may have reached GitLab (see
    /// [`crate::Error::Transient`]); on `Transient`, list the hooks before trying again.
    pub async fn create_hook(&self, owner: &HookOwner, spec: &HookSpec) -> Result<Hook> {
        self.post(&owner.hooks_path(), spec).await
    }

    pub async fn update_hook(&self, owner: &HookOwner, hook_id: u64, spec: &HookSpec) -> Result<Hook> {
        self.put(&format!("{}/{hook_id}", owner.hooks_path()), spec).await
    }

    /// Deletes a hook. A retried delete that already succeeded returns `NotFound`.
    pub async fn delete_hook(&self, owner: &HookOwner, hook_id: u64) -> Result<()> {
        self.delete(&format!("{}/{hook_id}", owner.hooks_path())).await
    }
}
