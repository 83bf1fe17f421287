//! A project's events, as far as the connector reads them: the `commented` events, one per
//! comment a user wrote (doc/api/events.md, "List a project's visible events").
//!
//! What GitLab does that matters here:
//! - Only a user's comments make an event: system notes are written by
//!   `SystemNoteService`, which creates no event (app/services/event_create_service.rb
//!   `leave_note` is called from Notes::CreateService for user notes only).
//! - A note's events go with it: `Note` has `has_many :events, as: :target,
//!   dependent: :delete_all` (app/models/note.rb), so a deleted comment leaves this list.
//! - `after` and `before` are dates, both exclusive: `after=2024-01-31` starts at February 1st.
//! - `sort` orders by `created_at` (default `desc`); pages are offset pages.
//! - The event embeds the note as `API::Entities::Note` (lib/api/entities/note.rb), which
//!   exposes `commit_id` only for diff notes on merge requests: a comment on a commit says
//!   `noteable_type: "Commit"` and `noteable_id: null`, and nothing tells which commit.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{ApiResult, Ctx, page};
use crate::error::SimError;
use crate::model::Note;
use crate::pagination;
use crate::render;
use crate::state::read;
use crate::time::api;

pub fn routes() -> Router<crate::state::Simulator> {
    Router::new().route("/api/v4/projects/{id}/events", get(project_events))
}

fn date_param(ctx: &Ctx, key: &str) -> Result<Option<NaiveDate>, SimError> {
    ctx.params
        .get(key)
        .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| SimError::BadRequest(format!("{key} is invalid"))))
        .transpose()
}

async fn project_events(ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let ds = read(&ctx.sim.shared.data);
    let p = ds.visible_project(ctx.caller.user_id, &id)?;
    let after = date_param(&ctx, "after")?;
    let before = date_param(&ctx, "before")?;
    // Every event the simulator records is a comment: a filter for another action or target
    // type matches none of them.
    let action_ok = ctx.params.get("action").is_none_or(|a| a == "commented");
    let target_ok = ctx.params.get("target_type").is_none_or(|t| t.eq_ignore_ascii_case("note"));
    let mut list: Vec<&Note> = p
        .notes
        .iter()
        .filter(|n| !n.system && action_ok && target_ok)
        .filter(|n| {
            let day = n.created_at.date_naive();
            after.is_none_or(|a| day > a) && before.is_none_or(|b| day < b)
        })
        .collect();
    list.sort_by_key(|n| (n.created_at, n.id));
    if ctx.params.get("sort").unwrap_or("desc") != "asc" {
        list.reverse();
    }
    let (slice, headers) = pagination::offset(&list, &ctx.params, &ctx.origin, None)?;
    let events = slice
        .iter()
        .map(|n| {
            let mut note = render::note(&ds, p, n, &ctx.base);
            if let Some(fields) = note.as_object_mut() {
                fields.remove("commit_id");
            }
            let author = render::user_ref(&ds, Some(n.author_id), &ctx.base);
            json!({
                "id": n.id, "project_id": p.id, "action_name": "commented on",
                "target_id": n.id, "target_iid": n.id, "target_type": "Note",
                "author_id": n.author_id, "target_title": null, "created_at": api(&n.created_at),
                "note": note, "author": author,
                "author_username": author.get("username").cloned().unwrap_or(Value::Null),
                "imported": false, "imported_from": "none",
            })
        })
        .collect();
    Ok(page(events, headers))
}
