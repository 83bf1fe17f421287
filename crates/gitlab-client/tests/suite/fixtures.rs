//! The typed structs parse GitLab's response shapes (fixtures under `tests/fixtures/` mirror
//! real API responses field for field).

use gitlab_client::api::commits::Commit;
use gitlab_client::api::hooks::Hook;
use gitlab_client::api::merge_requests::MergeRequest;
use gitlab_client::api::users::{Metadata, PersonalAccessToken, User};
use serde::de::DeserializeOwned;

fn parse<T: DeserializeOwned>(text: &str) -> T {
    serde_json::from_str(text).unwrap()
}

#[test]
fn token_self() {
    let token: PersonalAccessToken = parse(include_str!("../fixtures/api-personal-access-tokens-list.json"));
    assert_eq!((token.id, token.user_id), (982, 2207));
    assert!(token.revoked && !token.active);
    assert_eq!(token.scopes, ["api"]);
    assert_eq!(token.expires_at, None);
    assert!(token.last_used_at.is_some());

    let listed: Vec<PersonalAccessToken> = parse(include_str!("../fixtures/api-personal-access-tokens-list-docs.json"));
    assert_eq!(listed[0].scopes, ["read_api", "read_repository"]);
    assert_eq!(listed[0].description.as_deref(), Some("Read access for Coworker"));
}

#[test]
fn expiry_dates_parse() {
    let token: PersonalAccessToken =
        parse(r#"{"id":1,"name":"t","revoked":false,"active":true,"scopes":["read_api"],"user_id":9,"expires_at":"2026-03-31"}"#);
    assert_eq!(token.expires_at, chrono::NaiveDate::from_ymd_opt(2026, 3, 31));
}

#[test]
fn user() {
    let user: User = parse(include_str!("../fixtures/api-user-get.json"));
    assert_eq!((user.id, user.username.as_str()), (2207, "mkovac"));
    assert_eq!(user.bot, Some(false));
}

#[test]
fn metadata() {
    let metadata: Metadata = parse(include_str!("../fixtures/api-metadata.json"));
    assert!(metadata.enterprise);
    assert_eq!(metadata.version, "17.9.2-ee");
    let kas = metadata.kas.unwrap();
    assert!(!kas.enabled);
    assert!(kas.external_k8s_proxy_url.unwrap().ends_with("/k8s-proxy/"));
}

#[test]
fn commits() {
    let commit: Commit = parse(include_str!("../fixtures/api-commit-get.json"));
    assert_eq!(commit.stats.unwrap().total, 55);
    assert_eq!(commit.last_pipeline.unwrap().ref_name.as_deref(), Some("main"));
    assert_eq!(commit.project_id, Some(5120));

    let commits: Vec<Commit> = parse(include_str!("../fixtures/api-commits-list.json"));
    assert_eq!(commits.len(), 2);
    // Offsets other than UTC are normalized.
    assert_eq!(commits[0].authored_date.unwrap().to_rfc3339(), "2025-02-03T15:12:40+00:00");
    assert_eq!(commits[1].authored_date, None);
}

#[test]
fn merge_requests() {
    let mrs: Vec<MergeRequest> = parse(include_str!("../fixtures/api-merge-requests-list.json"));
    assert_eq!(mrs.iter().map(|m| m.iid).collect::<Vec<_>>(), [41, 42, 43]);
    assert!(mrs[0].is_draft() && !mrs[2].is_draft());
    assert_eq!(mrs[0].reviewers.len(), 1);
    assert!(mrs[1].reviewers.is_empty(), "reviewers may be missing");
    assert_eq!(mrs[1].milestone.as_ref().unwrap().due_date, chrono::NaiveDate::from_ymd_opt(2025, 6, 30));
    assert_eq!(mrs[2].assignees.len(), 2);
}

#[test]
fn hooks() {
    let hook: Hook = parse(include_str!("../fixtures/api-project-hook-get.json"));
    assert_eq!((hook.id, hook.project_id, hook.group_id), (4501, Some(5120), None));
    assert!(hook.push_events && hook.merge_requests_events && !hook.job_events);
    assert_eq!(hook.alert_status.as_deref(), Some("executable"));
    assert_eq!(hook.token_present, None, "older GitLab does not say");

    let hooks: Vec<Hook> = parse(include_str!("../fixtures/api-group-hooks-list.json"));
    assert_eq!(hooks[0].group_id, Some(314));
    assert_eq!((hooks[0].subgroup_events, hooks[0].member_events), (Some(true), Some(true)));
    assert_eq!(hooks[0].project_events, None);
}

#[test]
fn every_fixture_is_also_available_as_raw_json() {
    for text in [
        include_str!("../fixtures/api-commit-get.json"),
        include_str!("../fixtures/api-merge-requests-list.json"),
        include_str!("../fixtures/api-group-hooks-list.json"),
    ] {
        let raw: serde_json::Value = parse(text);
        assert!(raw.is_object() || raw.is_array());
    }
}
