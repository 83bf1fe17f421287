//! Every input `scripts/fuzz` found to break a promise, reduced to what broke it and fed to the
//! same function the fuzz target calls. The original inputs are in fuzz/regressions/, which
//! every fuzz run replays.

use std::path::PathBuf;

use axum::http::{HeaderMap, HeaderValue};
use connector_ingest::apply::{Route, Scope, parse_event, route};
use connector_ingest::{MAX_DEDUP_KEY_LEN, parse_delivery};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// fuzz/regressions/delivery/crash-abf354…: an empty Idempotency-Key became the dedup key, so every
/// later delivery with an empty key would have been dropped as a duplicate of the first.
#[test]
fn a_blank_idempotency_key_is_no_key() {
    let body = br#"{"object_kind":"push"}"#;
    for blank in ["", " ", "\t"] {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_str(blank).unwrap());
        let parsed = parse_delivery(&headers, body);
        assert!(parsed.dedup_key.starts_with("sha256:"), "{blank:?} gave {:?}", parsed.dedup_key);
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        assert_eq!(parse_delivery(&headers, body).dedup_key, "msg_1", "the next header stands in for a blank key");
    }
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", HeaderValue::from_str(&"k".repeat(MAX_DEDUP_KEY_LEN + 1)).unwrap());
    let long = parse_delivery(&headers, body).dedup_key;
    assert!(long.starts_with("sha256:") && long.len() <= MAX_DEDUP_KEY_LEN, "{long}");
}

/// fuzz/regressions/delivery/crash-69cc78…: a merge request event whose project id is missing
/// fell back to its target project without the projects_list check, so a connection syncing only
/// other projects got the merge request.
#[test]
fn a_merge_request_without_project_id_is_scoped_by_its_target_project() {
    let mut payload = fixture("webhook-merge_request.json");
    payload["project"].as_object_mut().unwrap().remove("id");
    let target = payload["object_attributes"]["target_project_id"].as_i64().unwrap();
    let body = serde_json::to_vec(&payload).unwrap();
    let (kind, payload) = parse_event(&body, Some("Merge Request Hook")).unwrap();
    let other = target + 1;
    let listed_elsewhere = route(Scope::Projects(&[other]), &kind, &payload);
    assert!(matches!(listed_elsewhere, Route::OutOfScope(ref why) if why.contains(&target.to_string())), "{listed_elsewhere:?}");
    assert!(matches!(route(Scope::Projects(&[]), &kind, &payload), Route::OutOfScope(_)));
    let listed = route(Scope::Projects(&[target]), &kind, &payload);
    assert!(matches!(listed, Route::MergeRequest { project, .. } if project == target), "{listed:?}");
    assert!(matches!(route(Scope::Groups, &kind, &payload), Route::MergeRequest { project, .. } if project == target));
}
