//! CI pipelines.

use serde::{Deserialize, Serialize};

use serde::de::DeserializeOwned;

use super::{ResourceId, Timestamp, iso8601};
use crate::client::GitLabClient;
use crate::error::Result;
use crate::pagination::PageRequest;

/// An item of `GET /projects/:id/pipelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: u64,
    #[serde(default)]
    pub iid: Option<u64>,
    pub project_id: u64,
    pub sha: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub status: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub updated_at: Option<Timestamp>,
    #[serde(default)]
    pub web_url: Option<String>,
}

impl PageRequest {
    /// `GET /projects/:id/pipelines`, changed since `updated_after`, by id: running pipelines
    /// change every few seconds, and an `updated_at` order would move under offset pages.
    /// List items lack `started_at`, `finished_at` and `duration`; [`GitLabClient::pipeline`]
    /// has them.
    pub fn pipelines(project: impl Into<ResourceId>, updated_after: Option<&Timestamp>) -> PageRequest {
        let request =
            PageRequest::new(format!("/projects/{}/pipelines", project.into().segment())).query("order_by", "id").query("sort", "asc");
        match updated_after {
            Some(after) => request.query("updated_after", iso8601(after)),
            None => request,
        }
    }
}

impl GitLabClient {
    /// `GET /projects/:id/pipelines/:pipeline_id`: with its timings, which the list lacks.
    pub async fn pipeline<T: DeserializeOwned>(&self, project: impl Into<ResourceId>, id: u64) -> Result<T> {
        self.get(&format!("/projects/{}/pipelines/{id}", project.into().segment())).await
    }
}
