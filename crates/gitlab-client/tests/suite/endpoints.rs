//! Each typed method calls the documented path with the documented query, and hook writes
//! send what GitLab expects.

use chrono::{TimeZone, Utc};
use futures_util::TryStreamExt;
use gitlab_client::api::hooks::{HookOwner, HookSpec};
use gitlab_client::api::issues::IssuePagination;
use gitlab_client::{Page, PageRequest};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::stub::{Seen, client, json, stub};

fn hook_json(seen: &Seen) -> Value {
    let mut hook = json!({
        "id": 12, "url": "https://connector.example/hook", "push_events": true,
        "merge_requests_events": true, "enable_ssl_verification": true,
        "created_at": "2025-05-05T10:00:00Z", "alert_status": "executable",
        "disabled_until": null, "token_present": true, "signing_token_present": false
    });
    if seen.path.starts_with("/api/v4/groups/") {
        hook["group_id"] = json!(31);
        hook["subgroup_events"] = json!(true);
    } else {
        hook["project_id"] = json!(77);
    }
    hook
}

#[tokio::test]
async fn single_resources_use_encoded_full_paths() {
    let server = stub(|seen, _| {
        let body = match seen.path.as_str() {
            "/api/v4/projects/acme%2Fplatform%2Fsync" => json!({
                "id": 77, "name": "sync", "path": "sync", "path_with_namespace": "acme/platform/sync",
                "namespace": {"id": 31, "name": "platform", "path": "platform", "kind": "group", "full_path": "acme/platform", "parent_id": 30},
                "default_branch": "main",
                "permissions": {"project_access": null, "group_access": {"access_level": 50, "notification_level": 3}}
            }),
            "/api/v4/namespaces/acme" => json!({"id": 30, "name": "Acme", "path": "acme", "kind": "group", "full_path": "acme", "parent_id": null, "plan": "premium"}),
            "/api/v4/groups/acme%2Fplatform" => json!({"id": 31, "name": "platform", "path": "platform", "full_path": "acme/platform", "parent_id": 30}),
            "/api/v4/groups/31/members/all/2207" => json!({"id": 2207, "username": "mkovac", "name": "Mira", "state": "active", "access_level": 40, "expires_at": null}),
            "/api/v4/projects/77/repository/commits/feature%2Fx" => json!({"id": "abc", "short_id": "abc", "title": "t", "parent_ids": []}),
            "/api/v4/personal_access_tokens/self" => json!({"id": 5, "name": "n", "revoked": false, "active": true, "scopes": ["api"], "user_id": 2207, "expires_at": "2026-01-01"}),
            other => panic!("unexpected path {other}"),
        };
        json(200, &body, &[])
    })
    .await;
    let gitlab = client(&server.base);
    let project = gitlab.project("acme/platform/sync").await.unwrap();
    assert_eq!(project.permissions.unwrap().effective_access_level(), Some(50));
    assert_eq!(gitlab.namespace("acme").await.unwrap().plan.as_deref(), Some("premium"));
    assert_eq!(gitlab.group("acme/platform").await.unwrap().id, 31);
    assert_eq!(gitlab.group_member(31, 2207).await.unwrap().access_level, 40);
    assert_eq!(gitlab.commit(77, "feature/x").await.unwrap().id, "abc");
    assert_eq!(gitlab.personal_access_token_self().await.unwrap().scopes, ["api"]);
}

#[tokio::test]
async fn list_requests_carry_the_backfill_filters() {
    let since = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
    let check = |request: PageRequest, path: &str, params: &[(&str, &str)]| {
        let url = url::Url::parse(&format!("http://h{}", request.path_and_query())).unwrap();
        assert_eq!(url.path(), path);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        for (k, v) in params {
            assert!(pairs.contains(&(k.to_string(), v.to_string())), "{path}: {k}={v} missing in {pairs:?}");
        }
    };
    let at = "2025-01-02T03:04:05.000Z";
    check(PageRequest::commits(7, Some(&since)), "/projects/7/repository/commits", &[("all", "true"), ("since", at)]);
    check(
        PageRequest::merge_requests(7, Some(&since)),
        "/projects/7/merge_requests",
        &[("updated_after", at), ("order_by", "created_at"), ("sort", "asc"), ("state", "all"), ("scope", "all")],
    );
    check(
        PageRequest::issues(7, Some(&since), IssuePagination::Keyset),
        "/projects/7/issues",
        &[("pagination", "keyset"), ("updated_after", at), ("order_by", "created_at"), ("sort", "asc"), ("scope", "all")],
    );
    assert!(!PageRequest::issues(7, None, IssuePagination::Offset).is_keyset());
    check(PageRequest::pipelines(7, Some(&since)), "/projects/7/pipelines", &[("updated_after", at), ("order_by", "id"), ("sort", "asc")]);
    check(PageRequest::commits_of(7, "abc..def"), "/projects/7/repository/commits", &[("ref_name", "abc..def")]);
    check(PageRequest::commit_comments(7, "abc"), "/projects/7/repository/commits/abc/comments", &[]);
    check(PageRequest::commit_refs(7, "abc"), "/projects/7/repository/commits/abc/refs", &[("type", "all")]);
    check(
        PageRequest::comment_events(7, &since),
        "/projects/7/events",
        &[("action", "commented"), ("target_type", "note"), ("after", "2025-01-01"), ("sort", "asc")],
    );
    check(PageRequest::merge_request_notes(7, 3), "/projects/7/merge_requests/3/notes", &[("sort", "asc")]);
    check(PageRequest::issue_notes(7, 4), "/projects/7/issues/4/notes", &[("sort", "asc")]);
    check(PageRequest::merge_request_commits(7, 3), "/projects/7/merge_requests/3/commits", &[]);
    check(PageRequest::descendant_groups("a/b"), "/groups/a%2Fb/descendant_groups", &[]);
    check(PageRequest::group_projects(9), "/groups/9/projects", &[("include_subgroups", "true"), ("with_shared", "false")]);
}

#[tokio::test]
async fn typed_and_raw_pages_of_the_same_collection() {
    let server = stub(|_, _| {
        json(
            200,
            &json!([{
                "id": 1, "body": "LGTM", "created_at": "2025-01-01T00:00:00Z", "system": false,
                "noteable_type": "MergeRequest", "noteable_iid": 3, "extra_field": {"kept": "in raw"}
            }]),
            &[],
        )
    })
    .await;
    let gitlab = client(&server.base);
    let request = PageRequest::merge_request_notes(7, 3);
    let typed: Page<gitlab_client::api::notes::Note> = gitlab.page(&request).await.unwrap();
    assert_eq!(typed.items[0].body, "LGTM");
    assert!(typed.next.is_none());
    let raw: Vec<Page<Value>> = gitlab.pages(request).try_collect().await.unwrap();
    assert_eq!(raw[0].items[0]["extra_field"]["kept"], "in raw");
}

#[tokio::test]
async fn hook_crud_for_projects_and_groups() {
    let server = stub(|seen, _| match seen.method {
        Method::DELETE => json(204, &Value::Null, &[]),
        Method::POST => json(201, &hook_json(seen), &[]),
        _ if seen.path.ends_with("/hooks") => json(200, &json!([hook_json(seen)]), &[]),
        _ => json(200, &hook_json(seen), &[]),
    })
    .await;
    let gitlab = client(&server.base);
    let project = HookOwner::Project("acme/sync".into());
    let group = HookOwner::Group(31.into());
    let spec = HookSpec {
        url: "https://connector.example/hook".into(),
        name: Some("Coworker".into()),
        token: Some(SecretString::from("hook-secret-1")),
        signing_token: Some(SecretString::from("whsec_c2VjcmV0")),
        push_events: Some(true),
        merge_requests_events: Some(true),
        subgroup_events: Some(true),
        ..HookSpec::default()
    };
    assert!(!format!("{spec:?}").contains("hook-secret-1"), "secrets stay out of Debug");

    let created = gitlab.create_hook(&project, &spec).await.unwrap();
    assert_eq!((created.id, created.token_present, created.signing_token_present), (12, Some(true), Some(false)));
    assert_eq!(gitlab.hooks(&project).await.unwrap().len(), 1);
    assert_eq!(gitlab.hook(&group, 12).await.unwrap().subgroup_events, Some(true));
    gitlab.update_hook(&group, 12, &spec).await.unwrap();
    gitlab.delete_hook(&project, 12).await.unwrap();

    let seen = server.seen();
    let calls: Vec<(Method, &str)> = seen.iter().map(|s| (s.method.clone(), s.path.as_str())).collect();
    assert_eq!(
        calls,
        [
            (Method::POST, "/api/v4/projects/acme%2Fsync/hooks"),
            (Method::GET, "/api/v4/projects/acme%2Fsync/hooks"),
            (Method::GET, "/api/v4/groups/31/hooks/12"),
            (Method::PUT, "/api/v4/groups/31/hooks/12"),
            (Method::DELETE, "/api/v4/projects/acme%2Fsync/hooks/12"),
        ]
    );
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["token"], "hook-secret-1");
    assert_eq!(body["signing_token"], "whsec_c2VjcmV0");
    assert_eq!(body["push_events"], true);
    assert!(body.get("issues_events").is_none(), "unset events are left to GitLab");
}
