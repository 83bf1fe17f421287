//! One page of a project's stream (commits, merge requests, issues, pipelines): fetching it with
//! what hangs off each item, and storing it. Backfill, catch-up and reconciliation all go through
//! here, so each stores a page the same way.

use chrono::{DateTime, Utc};
use connector_store::sync::{self, NoteParent, Resource};
use connector_store::{TenantTx, reconcile};
use futures_util::{StreamExt, TryStreamExt, stream};
use gitlab_client::api::issues::IssuePagination;
use gitlab_client::{Error as GitLab, GitLabClient, PageRequest};
use serde_json::Value;
use uuid::Uuid;

/// The first page of a resource, changed since `since`, in an order that does not move while it
/// is read (see the page requests' docs).
pub(super) fn first_request(project: i64, resource: Resource, since: &DateTime<Utc>) -> PageRequest {
    let project = project as u64;
    match resource {
        Resource::Commits => PageRequest::commits(project, Some(since)),
        Resource::MergeRequests => PageRequest::merge_requests(project, Some(since)),
        Resource::Issues => PageRequest::issues(project, Some(since), IssuePagination::Keyset),
        Resource::Pipelines => PageRequest::pipelines(project, Some(since)),
    }
}

/// A page of one resource, with what hangs off each item (notes, merge request commits).
pub(super) enum Fetched {
    Page { items: Vec<Value>, children: Vec<Children>, next: Option<PageRequest> },
    Skipped(String),
}

pub(super) struct Children {
    pub iid: i64,
    pub notes: Vec<Value>,
    pub commits: Vec<Value>,
    /// When the note list was asked for: a note stored after that (by a webhook) cannot be in
    /// it, and is not taken for deleted.
    pub read_at: DateTime<Utc>,
}

/// Fetches a page, with its children if asked (see `fetch_items`). A 403 or 404 means the
/// resource is switched off or gone: recorded as skipped, never a failure. `request` becomes
/// the request actually made, which differs when GitLab refuses keyset pagination on issues
/// (before 18.3) and offset pages are read instead.
pub(super) async fn fetch_page(
    client: &GitLabClient,
    project: i64,
    resource: Resource,
    request: &mut PageRequest,
    children: bool,
) -> Result<Fetched, GitLab> {
    let fetched = match fetch_items(client, project, resource, request, children).await {
        Err(GitLab::Other { status: 405, .. }) if resource == Resource::Issues && request.is_keyset() => {
            tracing::info!(project, "GitLab has no keyset pagination for issues here; reading offset pages by creation");
            *request = offset_issues(request);
            fetch_items(client, project, resource, request, children).await
        }
        other => other,
    };
    match fetched {
        Err(GitLab::Forbidden { message }) => {
            Ok(Fetched::Skipped(format!("GitLab answered 403 ({message}): {resource} is probably switched off in this project")))
        }
        Err(GitLab::NotFound { message }) => {
            Ok(Fetched::Skipped(format!("GitLab answered 404 ({message}): the project or its {resource} are no longer visible")))
        }
        other => other,
    }
}

/// The same issues request without keyset pagination.
fn offset_issues(keyset: &PageRequest) -> PageRequest {
    let mut offset = PageRequest::new(keyset.path());
    for (key, value) in keyset.query_pairs() {
        if !matches!(key.as_str(), "pagination" | "cursor" | "id_after") {
            offset = offset.query(&key, value);
        }
    }
    offset
}

/// Fetches a page; with `children`, also each item's notes and commits (merge requests,
/// issues) and each pipeline's own record, which alone has its timings.
async fn fetch_items(
    client: &GitLabClient,
    project: i64,
    resource: Resource,
    request: &PageRequest,
    children: bool,
) -> Result<Fetched, GitLab> {
    let mut page = client.page::<Value>(request).await?;
    if !children {
        return Ok(Fetched::Page { items: page.items, children: Vec::new(), next: page.next });
    }
    if resource == Resource::Pipelines {
        // The list has no `started_at`, `finished_at` or `duration` (GitLab's PipelineBasic
        // entity): one request per pipeline, at most CHILD_FETCHES at once.
        let ids: Vec<u64> = page.items.iter().filter_map(|item| item.get("id").and_then(Value::as_u64)).collect();
        page.items = stream::iter(ids).map(|id| client.pipeline::<Value>(project as u64, id)).buffered(CHILD_FETCHES).try_collect().await?;
        return Ok(Fetched::Page { items: page.items, children: Vec::new(), next: page.next });
    }
    let iids: Vec<u64> = match resource {
        Resource::MergeRequests | Resource::Issues => {
            page.items.iter().filter_map(|item| item.get("iid").and_then(Value::as_u64)).collect()
        }
        Resource::Commits | Resource::Pipelines => Vec::new(),
    };
    let children = fetch_children_of(client, project, resource, iids).await?;
    Ok(Fetched::Page { items: page.items, children, next: page.next })
}

/// Notes (and merge request commits) of several merge requests or issues, in their order.
pub(super) async fn fetch_children_of(
    client: &GitLabClient,
    project: i64,
    resource: Resource,
    iids: Vec<u64>,
) -> Result<Vec<Children>, GitLab> {
    // A page holds up to 100 merge requests or issues, each with lists of its own: fetched one
    // after another, the round trips and not GitLab's rate limit would set the pace. The rate
    // budget still spaces the requests out; `buffered` keeps the page's order.
    stream::iter(iids).map(|iid| fetch_children(client, project as u64, resource, iid)).buffered(CHILD_FETCHES).try_collect().await
}

/// Merge requests or issues whose notes and commits are fetched at once.
const CHILD_FETCHES: usize = 8;

async fn fetch_children(client: &GitLabClient, project: u64, resource: Resource, iid: u64) -> Result<Children, GitLab> {
    let read_at = Utc::now();
    let (notes, commits) = if resource == Resource::MergeRequests {
        tokio::try_join!(
            client.collect_all(PageRequest::merge_request_notes(project, iid)),
            client.collect_all(PageRequest::merge_request_commits(project, iid)),
        )?
    } else {
        (client.collect_all(PageRequest::issue_notes(project, iid)).await?, Vec::new())
    };
    Ok(Children { iid: iid as i64, notes, commits, read_at })
}

/// The noteable type of a resource's notes; only merge requests and issues have notes of their
/// own, and only their streams ask.
pub(super) fn noteable(resource: Resource) -> &'static str {
    match resource {
        Resource::MergeRequests => "MergeRequest",
        Resource::Issues => "Issue",
        Resource::Commits | Resource::Pipelines => unreachable!("{resource} have no notes of their own"),
    }
}

/// Where a page moves its stream's checkpoint.
pub(super) struct Advance {
    /// Where a backfill resumes (`None` at the end, and always for other reads).
    pub cursor: Option<Value>,
    /// The new high-water mark: when the read this page belongs to started. Catch-ups ask for
    /// what changed since then, so nothing that changed while the read ran is missed.
    pub mark: Option<DateTime<Utc>>,
    /// Records the page adds to the stream's progress.
    pub counts: bool,
    pub done: bool,
}

/// Stores a page (and its children) in the caller's transaction and, when given, advances the
/// stream's checkpoint. Text PostgreSQL cannot hold is replaced and its record's original kept
/// aside (see `store_items`).
pub(super) async fn store_page(
    tx: &mut TenantTx,
    connection: Uuid,
    project: i64,
    resource: Resource,
    fetched: Fetched,
    advance: Option<Advance>,
) -> connector_store::Result<()> {
    let (items, children) = match fetched {
        Fetched::Skipped(reason) => {
            tracing::info!(project, %resource, %reason, "resource skipped");
            sync::record_skipped(tx, connection, project, resource, &reason).await?;
            let mark = advance.and_then(|a| a.mark);
            sync::advance(
                tx,
                connection,
                sync::PageProgress { project_id: project, resource, cursor: None, seen_up_to: mark, records: 0, done: true },
            )
            .await?;
            return Ok(());
        }
        Fetched::Page { items, children, .. } => (items, children),
    };
    let count = items.len() as i64;
    store_items(tx, connection, project, resource, items).await?;
    for child in children {
        store_children(tx, connection, project, resource, child).await?;
    }
    if let Some(a) = advance {
        let records = if a.counts { count } else { 0 };
        sync::advance(
            tx,
            connection,
            sync::PageProgress { project_id: project, resource, cursor: a.cursor.as_ref(), seen_up_to: a.mark, records, done: a.done },
        )
        .await?;
    }
    Ok(())
}

/// The whole lists of one parent's notes and commits, as GitLab has them now.
pub(super) async fn store_children(
    tx: &mut TenantTx,
    connection: Uuid,
    project: i64,
    resource: Resource,
    child: Children,
) -> connector_store::Result<()> {
    let noteable = noteable(resource);
    let notes = clean(tx, connection, project, "notes", child.notes).await?;
    sync::replace_notes(tx, connection, project, noteable, NoteParent::Iid(child.iid), &Value::Array(notes), child.read_at).await?;
    if resource == Resource::MergeRequests {
        let commits = clean(tx, connection, project, "commits", child.commits).await?;
        let shas: Vec<String> = commits.iter().filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned)).collect();
        sync::upsert_commits(tx, connection, project, &Value::Array(commits)).await?;
        sync::set_merge_request_commits(tx, connection, project, child.iid, &shas).await?;
    }
    Ok(())
}

/// Upserts items of a resource as GitLab's REST API returned them.
pub(super) async fn store_items(
    tx: &mut TenantTx,
    connection: Uuid,
    project: i64,
    resource: Resource,
    items: Vec<Value>,
) -> connector_store::Result<()> {
    let items = Value::Array(clean(tx, connection, project, resource.as_str(), items).await?);
    match resource {
        Resource::Commits => sync::upsert_commits(tx, connection, project, &items).await?,
        Resource::MergeRequests => sync::upsert_merge_requests(tx, connection, project, &items).await?,
        Resource::Issues => sync::upsert_issues(tx, connection, project, &items).await?,
        Resource::Pipelines => sync::upsert_pipelines(tx, connection, project, &items).await?,
    };
    Ok(())
}

/// PostgreSQL's text and jsonb cannot hold U+0000, which git commit messages and names (and so
/// GitLab's text) can. Such a record is stored with U+FFFD in each NUL's place, so the rest of
/// its page and stream go on and Coworker still sees it, and its original JSON is kept aside
/// byte for byte with the reason.
pub(super) async fn clean(
    tx: &mut TenantTx,
    connection: Uuid,
    project: i64,
    resource: &str,
    mut items: Vec<Value>,
) -> connector_store::Result<Vec<Value>> {
    for item in &mut items {
        let original = serde_json::to_vec(item).expect("JSON serializes");
        if reconcile::replace_nul(item) {
            let key = item.get("id").map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned)).unwrap_or_default();
            tracing::warn!(project, resource, key, "record holds U+0000: stored with U+FFFD, original kept aside");
            let reason = "its text holds U+0000, which PostgreSQL cannot store: stored with U+FFFD in its place";
            reconcile::keep_aside(tx, connection, Some(project), resource, &key, reason, &original).await?;
        }
    }
    Ok(items)
}
