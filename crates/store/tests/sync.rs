//! Upserts of GitLab's JSON: idempotent, order-safe, and resumable by checkpoint.

use chrono::{TimeZone, Utc};
use connector_store::connections;
use connector_store::{Store, TenantId, sync};
use connector_test_support::{app_store, connection, tenant};
use serde_json::json;
use sqlx::PgPool;

/// A store and the shared test connection of the shared tenant, whose rows the tests upsert.
async fn setup(owner: &PgPool) -> (Store, TenantId, uuid::Uuid) {
    let store = app_store(owner, 2).await;
    let conn = connection(&store).await;
    (store, tenant(), conn)
}

fn mr(title: &str, updated_at: &str) -> serde_json::Value {
    json!({"id": 900, "iid": 7, "project_id": 5, "title": title, "description": "d", "state": "opened",
           "author": {"id": 3, "username": "ana"}, "source_branch": "feat", "target_branch": "main",
           "created_at": "2024-02-01T00:00:00.000Z", "updated_at": updated_at, "web_url": "https://x/7"})
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn an_older_version_never_overwrites_a_newer_one(owner: PgPool) {
    let (store, tenant, conn) = setup(&owner).await;
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    assert_eq!(sync::upsert_merge_requests(&mut tx, conn, 5, &json!([mr("new", "2024-03-02T00:00:00.000Z")])).await.unwrap(), 1);
    // The same version again, and an older one: nothing changes.
    sync::upsert_merge_requests(&mut tx, conn, 5, &json!([mr("new", "2024-03-02T00:00:00.000Z")])).await.unwrap();
    assert_eq!(sync::upsert_merge_requests(&mut tx, conn, 5, &json!([mr("old", "2024-03-01T00:00:00.000Z")])).await.unwrap(), 0);
    let (title, count): (String, i64) =
        sqlx::query_as("SELECT max(title), count(*) FROM merge_requests").fetch_one(&mut *tx).await.unwrap();
    assert_eq!((title.as_str(), count), ("new", 1));
    // A newer one wins.
    sync::upsert_merge_requests(&mut tx, conn, 5, &json!([mr("newer", "2024-03-03T00:00:00.000Z")])).await.unwrap();
    let title: String = sqlx::query_scalar("SELECT title FROM merge_requests").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(title, "newer");
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_webhook_commit_is_completed_by_the_api_copy(owner: PgPool) {
    let (store, tenant, conn) = setup(&owner).await;
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    let from_hook = json!([{"id": "abc123", "message": "Fix the thing\n\nlong body", "title": "Fix the thing",
        "timestamp": "2024-05-01T10:00:00+02:00", "url": "https://x/c/abc123", "author": {"name": "Ana", "email": "ana@x"}}]);
    sync::upsert_commits(&mut tx, conn, 5, &from_hook).await.unwrap();
    let from_api = json!([{"id": "abc123", "short_id": "abc", "title": "Fix the thing", "message": "Fix the thing\n\nlong body",
        "author_name": "Ana", "author_email": "ana@x", "authored_date": "2024-05-01T08:00:00.000Z",
        "committer_name": "Bo", "committer_email": "bo@x", "committed_date": "2024-05-01T08:05:00.000Z",
        "parent_ids": ["p1"], "web_url": "https://x/c/abc123"}]);
    sync::upsert_commits(&mut tx, conn, 5, &from_api).await.unwrap();
    sync::upsert_commits(&mut tx, conn, 5, &from_hook).await.unwrap();
    let row: (String, Option<String>, Vec<String>, i64) =
        sqlx::query_as("SELECT author_name, committer_name, parent_ids, (SELECT count(*) FROM commits) FROM commits")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(row, ("Ana".into(), Some("Bo".into()), vec!["p1".into()], 1));
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn checkpoints_accumulate_and_resume(owner: PgPool) {
    let (store, tenant, conn) = setup(&owner).await;
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    assert_eq!(sync::checkpoint(&mut tx, conn, 5, sync::Resource::Issues).await.unwrap(), None);
    let t1 = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
    let t0 = Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap();
    let cursor = json!({"path": "/api/v4/projects/5/issues?cursor=abc"});
    let page = |cursor, seen_up_to, records, done| sync::PageProgress {
        project_id: 5,
        resource: sync::Resource::Issues,
        cursor,
        seen_up_to,
        records,
        done,
    };
    sync::advance(&mut tx, conn, page(Some(&cursor), Some(t1), 100, false)).await.unwrap();
    sync::advance(&mut tx, conn, page(None, Some(t0), 40, true)).await.unwrap();
    let cp = sync::checkpoint(&mut tx, conn, 5, sync::Resource::Issues).await.unwrap().unwrap();
    assert_eq!(cp, sync::Checkpoint { cursor: None, high_water_mark: Some(t1), records: 140, done: true });
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_new_start_date_restarts_the_backfill(owner: PgPool) {
    let (store, tenant, conn) = setup(&owner).await;
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    let page =
        sync::PageProgress { project_id: 5, resource: sync::Resource::Issues, cursor: None, seen_up_to: None, records: 10, done: true };
    sync::advance(&mut tx, conn, page).await.unwrap();
    // The same date again changes nothing...
    let same = connector_store::connections::ConnectionChanges {
        start_date: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
        ..Default::default()
    };
    connections::update(&mut tx, store.keys(), conn, same).await.unwrap();
    assert!(sync::checkpoint(&mut tx, conn, 5, sync::Resource::Issues).await.unwrap().is_some());
    // ...an earlier one sends every stream back to the start.
    let earlier = connector_store::connections::ConnectionChanges {
        start_date: Some(Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap()),
        ..Default::default()
    };
    connections::update(&mut tx, store.keys(), conn, earlier).await.unwrap();
    assert!(sync::checkpoint(&mut tx, conn, 5, sync::Resource::Issues).await.unwrap().is_none());
}
