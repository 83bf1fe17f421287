//! Offset and keyset pagination, totals-free walks past 10,000 records, resuming from a
//! stored checkpoint, and refusing links that leave the instance.

use futures_util::TryStreamExt;
use gitlab_client::{Error, Page, PageRequest};
use serde_json::{Value, json};

use crate::stub::{Seen, client, json, stub};

/// Items `from..to` of a collection of `{"id": n}`.
fn items(from: usize, to: usize) -> Value {
    Value::Array((from..to).map(|id| json!({ "id": id + 1 })).collect())
}

fn page_number(seen: &Seen) -> usize {
    seen.param("page").map_or(1, |p| p.parse().unwrap())
}

/// The request's own URL with `page` replaced, as GitLab builds its links.
fn offset_link(seen: &Seen, page: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(seen.query.as_deref().unwrap_or("").as_bytes()) {
        if k != "page" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("page", &page.to_string());
    format!("{}{}?{}", seen.origin(), seen.path, query.finish())
}

/// Offset pagination over `total` items; `link` and `next_header` pick which hints to send.
/// Totals are sent only up to 10,000 records, as GitLab does.
fn offset_page(seen: &Seen, total: usize, link: bool, next_header: bool) -> axum::response::Response {
    let per_page: usize = seen.param("per_page").unwrap().parse().unwrap();
    let page = page_number(seen);
    let start = (page - 1) * per_page;
    let end = (start + per_page).min(total);
    let mut headers = vec![("x-page", page.to_string()), ("x-per-page", per_page.to_string())];
    if total <= 10_000 {
        headers.push(("x-total", total.to_string()));
        headers.push(("x-total-pages", total.div_ceil(per_page).to_string()));
    }
    let more = end < total;
    if next_header {
        headers.push(("x-next-page", if more { (page + 1).to_string() } else { String::new() }));
    }
    if link {
        let mut links = vec![format!("<{}>; rel=\"first\"", offset_link(seen, 1))];
        if more {
            links.insert(0, format!("<{}>; rel=\"next\"", offset_link(seen, page + 1)));
        }
        headers.push(("link", links.join(", ")));
    }
    json(200, &items(start.min(total), end), &headers)
}

async fn walk(gitlab: &gitlab_client::GitLabClient, first: PageRequest) -> Vec<u64> {
    let pages: Vec<Page<Value>> = gitlab.pages(first).try_collect().await.unwrap();
    pages.iter().flat_map(|p| p.items.iter().map(|i| i["id"].as_u64().unwrap())).collect()
}

#[tokio::test]
async fn offset_pages_follow_link_next() {
    let server = stub(|seen, _| offset_page(seen, 250, true, false)).await;
    let gitlab = client(&server.base);
    let ids = walk(&gitlab, PageRequest::branches(7)).await;
    assert_eq!(ids, (1..=250).collect::<Vec<_>>());
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.param("per_page").as_deref() == Some("100")));
    assert!(seen.iter().all(|s| s.path == "/api/v4/projects/7/repository/branches"));
}

#[tokio::test]
async fn offset_pages_follow_x_next_page() {
    let server = stub(|seen, _| offset_page(seen, 201, false, true)).await;
    let gitlab = client(&server.base);
    let ids = walk(&gitlab, PageRequest::pipelines(7, None)).await;
    assert_eq!(ids.len(), 201);
    let seen = server.seen();
    assert_eq!(seen.iter().map(page_number).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(seen.iter().all(|s| s.param("order_by").as_deref() == Some("id")));
}

/// Keyset: the cursor is the last id; the end is the absence of `Link`.
fn keyset_page(seen: &Seen, total: usize) -> axum::response::Response {
    assert_eq!(seen.param("pagination").as_deref(), Some("keyset"));
    assert!(seen.param("page").is_none(), "keyset requests never carry page numbers");
    let after: usize = seen.param("cursor").map_or(0, |c| c.trim_start_matches("c-").parse().unwrap());
    let end = (after + 100).min(total);
    let mut headers = vec![];
    if end < total {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(seen.query.as_deref().unwrap().as_bytes()) {
            if k != "cursor" {
                query.append_pair(&k, &v);
            }
        }
        query.append_pair("cursor", &format!("c-{end}"));
        headers.push(("link", format!("<{}{}?{}>; rel=\"next\"", seen.origin(), seen.path, query.finish())));
    }
    // A stray X-Next-Page must not make the client switch to offset pages.
    headers.push(("x-next-page", "2".into()));
    json(200, &items(after, end), &headers)
}

#[tokio::test]
async fn keyset_pages_follow_the_link_cursor_only() {
    let server = stub(|seen, _| keyset_page(seen, 230)).await;
    let gitlab = client(&server.base);
    let first = PageRequest::issues("grp/sub/proj", None, Default::default());
    let ids = walk(&gitlab, first).await;
    assert_eq!(ids, (1..=230).collect::<Vec<_>>());
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].path, "/api/v4/projects/grp%2Fsub%2Fproj/issues");
    assert_eq!(seen[2].param("cursor").as_deref(), Some("c-200"));
    assert_eq!(seen[0].param("scope").as_deref(), Some("all"));
}

#[tokio::test]
async fn more_than_ten_thousand_records_without_totals() {
    const TOTAL: usize = 10_050;
    let server = stub(|seen, _| offset_page(seen, TOTAL, true, true)).await;
    let gitlab = client(&server.base);
    let mut pages = std::pin::pin!(gitlab.pages::<Value>(PageRequest::merge_requests(3, None)));
    let (mut count, mut last_id, mut largest_page) = (0usize, 0u64, 0usize);
    while let Some(page) = pages.try_next().await.unwrap() {
        largest_page = largest_page.max(page.items.len());
        for item in &page.items {
            let id = item["id"].as_u64().unwrap();
            assert_eq!(id, last_id + 1, "items arrive in order, none skipped or repeated");
            last_id = id;
        }
        count += page.items.len();
    }
    assert_eq!(count, TOTAL);
    assert_eq!(largest_page, 100, "only one page of at most 100 items is held at a time");
    assert_eq!(server.count(), 101);
}

#[tokio::test]
async fn a_serialized_checkpoint_resumes_after_a_restart() {
    let server = stub(|seen, _| keyset_page(seen, 250)).await;
    let first = PageRequest::issues(42, None, Default::default());

    let before_crash = client(&server.base);
    let page: Page<Value> = before_crash.page(&first).await.unwrap();
    assert_eq!(page.items.len(), 100);
    let checkpoint = serde_json::to_string(&page.next.unwrap()).unwrap();
    assert!(!checkpoint.contains("127.0.0.1"), "checkpoints hold no host: {checkpoint}");
    drop(before_crash);

    let after_restart = client(&server.base);
    let resumed: PageRequest = serde_json::from_str(&checkpoint).unwrap();
    let ids = walk(&after_restart, resumed).await;
    assert_eq!(ids, (101..=250).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_link_to_another_host_is_refused() {
    let server = stub(|seen, _| {
        let next = format!("http://127.0.0.2:{}{}?page=2", seen.host.rsplit(':').next().unwrap(), seen.path);
        json(200, &items(0, 3), &[("link", format!("<{next}>; rel=\"next\""))])
    })
    .await;
    let err = client(&server.base).page::<Value>(&PageRequest::branches(1)).await.unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err:?}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_link_outside_the_api_prefix_is_refused() {
    let server = stub(|seen, _| {
        let next = format!("{}/gitlab/api/v4/../../admin?page=2", seen.origin());
        json(200, &items(0, 3), &[("link", format!("<{next}>; rel=\"next\""))])
    })
    .await;
    let gitlab = client(&format!("{}/gitlab", server.base));
    let err = gitlab.page::<Value>(&PageRequest::branches(1)).await.unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err:?}");
    assert_eq!(server.seen()[0].path, "/gitlab/api/v4/projects/1/repository/branches");
}

#[tokio::test]
async fn a_tampered_checkpoint_cannot_leave_the_instance() {
    let server = stub(|_, _| json(200, &json!([]), &[])).await;
    let gitlab = client(&server.base);
    for path in ["//evil.example/api/v4/x", "/../../x", "https://evil.example/x", "/x#y"] {
        let tampered: PageRequest = serde_json::from_value(json!({ "path": path })).unwrap();
        let err = gitlab.page::<Value>(&tampered).await.unwrap_err();
        assert!(matches!(err, Error::Blocked { .. }), "{path}: {err:?}");
    }
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn instance_under_a_path_prefix_paginates() {
    let server = stub(|seen, _| offset_page(seen, 150, true, false)).await;
    let gitlab = client(&format!("{}/gitlab/", server.base));
    let ids = walk(&gitlab, PageRequest::group_projects("top/sub")).await;
    assert_eq!(ids.len(), 150);
    let seen = server.seen();
    assert_eq!(seen[1].path, "/gitlab/api/v4/groups/top%2Fsub/projects");
    assert_eq!(seen[1].param("include_subgroups").as_deref(), Some("true"));
    assert_eq!(seen[1].param("with_shared").as_deref(), Some("false"));
}
