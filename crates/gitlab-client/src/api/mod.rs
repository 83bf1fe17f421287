//! Typed GitLab endpoints. Each module holds the serde types for one area plus the client
//! methods and [`crate::PageRequest`] constructors that return them.
//!
//! The types keep the fields the connector uses; everything else GitLab sends is ignored, and
//! fields that differ between GitLab versions or roles are optional. For the full raw JSON,
//! call the same endpoints with `serde_json::Value` as the item type.

pub mod commits;
pub mod events;
pub mod groups;
pub mod hooks;
pub mod issues;
pub mod merge_requests;
pub mod notes;
pub mod pipelines;
pub mod projects;
pub mod users;

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Timestamps as GitLab sends them (ISO 8601, any offset), normalized to UTC.
pub type Timestamp = DateTime<Utc>;

/// Everything except RFC 3986 unreserved characters is encoded, so `/` in a full path
/// becomes `%2F` as GitLab requires for `:id` segments.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A project, group or namespace, by numeric id or by full path (`group/sub/project`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceId {
    Id(u64),
    Path(String),
}

impl ResourceId {
    /// The URL path segment: the id, or the percent-encoded full path.
    pub fn segment(&self) -> String {
        match self {
            ResourceId::Id(id) => id.to_string(),
            ResourceId::Path(path) => encode_segment(path),
        }
    }
}

impl From<u64> for ResourceId {
    fn from(id: u64) -> Self {
        ResourceId::Id(id)
    }
}

impl From<&str> for ResourceId {
    fn from(path: &str) -> Self {
        ResourceId::Path(path.to_owned())
    }
}

impl From<String> for ResourceId {
    fn from(path: String) -> Self {
        ResourceId::Path(path)
    }
}

impl From<&ResourceId> for ResourceId {
    fn from(id: &ResourceId) -> Self {
        id.clone()
    }
}

pub(crate) fn encode_segment(raw: &str) -> String {
    utf8_percent_encode(raw, SEGMENT).to_string()
}

/// GitLab's ISO 8601 query parameter form.
pub(crate) fn iso8601(at: &Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
