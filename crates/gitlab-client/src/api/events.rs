//! A project's activity events (doc/api/events.md).

use super::{ResourceId, Timestamp};
use crate::pagination::PageRequest;

impl PageRequest {
    /// `GET /projects/:id/events?action=commented&target_type=note&after=&sort=asc`: the comment
    /// events since `after`, oldest first. `after` is a date and exclusive, so the day before
    /// `since` is asked. Each event embeds its note, including the noteable type: the only list
    /// that tells which projects have comments on commits (there is no project-wide list of
    /// commit comments, and a commit note's event does not carry the commit's sha).
    pub fn comment_events(project: impl Into<ResourceId>, since: &Timestamp) -> PageRequest {
        let day_before = (since.date_naive() - chrono::Days::new(1)).format("%Y-%m-%d").to_string();
        PageRequest::new(format!("/projects/{}/events", project.into().segment()))
            .query("action", "commented")
            .query("target_type", "note")
            .query("after", day_before)
            .query("sort", "asc")
    }
}
