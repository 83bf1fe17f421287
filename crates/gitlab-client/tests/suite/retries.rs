//! Retries of transient failures, their bound, and the rule that a POST is not repeated once
//! GitLab may have processed it.

use std::time::Duration;

use gitlab_client::api::hooks::{HookOwner, HookSpec};
use gitlab_client::{ClientOptions, Error, RetryConfig};
use serde_json::json;

use crate::stub::{Raw, client, client_with, fast_options, json, raw_server, stub};

const VERSION: &str = r#"{"version":"18.4.0-ee","revision":"0a1b2c3d"}"#;

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = stub(|_, index| match index {
        0 => json(503, &json!({"message": "503 Service Unavailable"}), &[]),
        1 => json(500, &json!({"message": "500 Internal Server Error"}), &[]),
        _ => json(200, &json!({"version": "18.4.0-ee", "revision": "0a1b2c3d"}), &[]),
    })
    .await;
    let gitlab = client(&server.base);
    let version = gitlab.version().await.unwrap();
    assert_eq!(version.version, "18.4.0-ee");
    let stats = gitlab.stats();
    assert_eq!((stats.requests, stats.retries), (3, 2));
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = stub(|_, _| json(504, &json!({"message": "504 Gateway Timeout"}), &[])).await;
    let gitlab = client(&server.base);
    let err = gitlab.version().await.unwrap_err();
    assert!(matches!(err, Error::Transient { attempts: 4, .. }), "{err:?}");
    assert_eq!(server.count(), 4);
    assert_eq!(gitlab.stats().retries, 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = stub(|_, _| json(404, &json!({"message": "404 Project Not Found"}), &[])).await;
    client(&server.base).project(9).await.unwrap_err();
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_get() {
    let server = raw_server(|index| if index == 0 { Raw::Drop } else { Raw::Ok(VERSION) }).await;
    let gitlab = client(&server.base);
    assert_eq!(gitlab.version().await.unwrap().revision, "0a1b2c3d");
    assert_eq!(server.connections(), 2);
    assert_eq!(gitlab.stats().retries, 1);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported_as_transient() {
    let server = raw_server(|_| Raw::Hang).await;
    let options = ClientOptions {
        request_timeout: Duration::from_millis(150),
        retry: RetryConfig { max_attempts: 3, ..fast_options().retry },
        ..fast_options()
    };
    let err = client_with(&server.base, options).version().await.unwrap_err();
    assert!(matches!(err, Error::Transient { attempts: 3, .. }), "{err:?}");
    assert_eq!(server.connections(), 3);
}

fn hook_spec() -> HookSpec {
    HookSpec { url: "https://connector.example/webhooks/gitlab".into(), push_events: Some(true), ..HookSpec::default() }
}

#[tokio::test]
async fn a_post_is_not_retried_after_a_502() {
    let server = stub(|_, _| json(502, &json!({"message": "502 Bad Gateway"}), &[])).await;
    let err = client(&server.base).create_hook(&HookOwner::Project(5.into()), &hook_spec()).await.unwrap_err();
    assert!(matches!(err, Error::Transient { attempts: 1, .. }), "{err:?}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_post_is_not_retried_after_the_connection_drops() {
    let server = raw_server(|_| Raw::Drop).await;
    let err = client(&server.base).create_hook(&HookOwner::Project(5.into()), &hook_spec()).await.unwrap_err();
    assert!(matches!(err, Error::Transient { attempts: 1, .. }), "{err:?}");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_post_is_retried_when_the_connection_cannot_be_established() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gitlab = client(&format!("http://127.0.0.1:{port}"));
    let err = gitlab.create_hook(&HookOwner::Project(5.into()), &hook_spec()).await.unwrap_err();
    assert!(matches!(err, Error::Transient { attempts: 4, .. }), "{err:?}");
    assert_eq!(gitlab.stats().requests, 4);
}

#[tokio::test]
async fn backoff_has_full_jitter_under_a_growing_capped_ceiling() {
    let retry = RetryConfig::default();
    assert_eq!(retry.backoff_ceiling(1), Duration::from_millis(200));
    assert_eq!(retry.backoff_ceiling(2), Duration::from_millis(400));
    assert_eq!(retry.backoff_ceiling(3), Duration::from_millis(800));
    assert_eq!(retry.backoff_ceiling(20), Duration::from_secs(10));
    let draws: Vec<Duration> = (0..200).map(|_| retry.backoff(3)).collect();
    assert!(draws.iter().all(|d| *d <= Duration::from_millis(800)));
    assert!(draws.iter().any(|d| *d < Duration::from_millis(400)), "draws spread below the ceiling");
}
