//! Every error class, produced from GitLab's real error bodies.

use std::time::Duration;

use gitlab_client::{Error, ErrorKind};
use serde_json::json;

use crate::stub::{TOKEN, client, json, stub};

async fn error_for(status: u16, body: serde_json::Value) -> Error {
    let server = stub(move |_, _| json(status, &body, &[])).await;
    client(&server.base).current_user().await.expect_err("the stub only returns errors")
}

fn assert_no_token(err: &Error) {
    assert!(!err.to_string().contains(TOKEN), "{err}");
    assert!(!format!("{err:?}").contains(TOKEN), "{err:?}");
}

#[tokio::test]
async fn unknown_token_is_invalid() {
    let err = error_for(401, json!({"message": "401 Unauthorized"})).await;
    assert!(matches!(err, Error::TokenInvalid), "{err:?}");
    assert!(err.is_token_problem());
    assert_no_token(&err);
}

#[tokio::test]
async fn expired_token() {
    let err = error_for(
        401,
        json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."}),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::TokenExpired);
    assert_no_token(&err);
}

#[tokio::test]
async fn revoked_token() {
    let err = error_for(
        401,
        json!({"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."}),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::TokenRevoked);
}

#[tokio::test]
async fn insufficient_scope_names_the_required_scope() {
    let err = error_for(
        403,
        json!({
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": "api read_api"
        }),
    )
    .await;
    match &err {
        Error::InsufficientScope { required } => assert_eq!(required, "api read_api"),
        other => panic!("expected InsufficientScope, got {other:?}"),
    }
    assert!(err.is_token_problem());
}

#[tokio::test]
async fn other_403_is_forbidden() {
    let err = error_for(403, json!({"message": "403 Forbidden"})).await;
    match &err {
        Error::Forbidden { message } => assert_eq!(message, "403 Forbidden"),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert!(!err.is_token_problem());
}

#[tokio::test]
async fn not_found_keeps_gitlabs_message() {
    let err = error_for(404, json!({"message": "404 Project Not Found"})).await;
    match err {
        Error::NotFound { message } => assert_eq!(message, "404 Project Not Found"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = error_for(404, json!({"error": "404 Not Found"})).await;
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn validation_errors_are_other_with_a_snippet() {
    let err = error_for(400, json!({"message": {"url": ["is blocked: Requests to localhost are not allowed"]}})).await;
    match &err {
        Error::Other { status, message } => {
            assert_eq!(*status, 400);
            assert!(message.contains("is blocked"), "{message}");
        }
        other => panic!("expected Other, got {other:?}"),
    }
    let long = "x".repeat(5_000);
    let err = error_for(422, json!({ "message": long })).await;
    match err {
        Error::Other { status: 422, message } => assert!(message.chars().count() <= 201),
        other => panic!("expected Other 422, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limited_is_not_retried() {
    let server = stub(|_, _| json(429, &json!({"message": "Retry later"}), &[("retry-after", "7".into())])).await;
    let gitlab = client(&server.base);
    let err = gitlab.version().await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { retry_after } if retry_after == Duration::from_secs(7)));
    assert_eq!(server.count(), 1);
    assert_eq!(gitlab.stats().rate_limited_responses, 1);
}

#[tokio::test]
async fn wrong_shape_is_a_decode_error() {
    let server = stub(|_, _| json(200, &json!({"version": 18}), &[])).await;
    let err = client(&server.base).version().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err:?}");
}

#[tokio::test]
async fn the_token_is_sent_as_private_token_and_never_shown() {
    let server = stub(|_, _| json(500, &json!({"message": "500 Internal Server Error"}), &[])).await;
    let gitlab = client(&server.base);
    let err = gitlab.version().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(server.seen().iter().all(|s| s.token.as_deref() == Some(TOKEN)));
    assert_no_token(&err);
    assert!(!format!("{gitlab:?}").contains(TOKEN));
}

#[tokio::test]
async fn an_echoed_token_is_redacted_from_every_error() {
    // A hostile or broken server echoing the request header back into each kind of body.
    let server = stub(|seen, index| {
        let token = seen.token.clone().unwrap_or_default();
        match index {
            0 => json(403, &json!({"message": format!("403 Forbidden for {token}")}), &[]),
            1 => json(404, &json!({"message": format!("404 {token} Not Found")}), &[]),
            2 => json(418, &json!({"message": token}), &[]),
            3 => json(403, &json!({"error": "insufficient_scope", "scope": token}), &[]),
            4 => json(200, &json!({"id": token}), &[]),
            _ => json(502, &json!({"message": format!("upstream saw {token}")}), &[]),
        }
    })
    .await;
    let gitlab = client(&server.base);
    let mut errors = Vec::new();
    for _ in 0..4 {
        errors.push(gitlab.current_user().await.unwrap_err());
    }
    errors.push(gitlab.current_user().await.unwrap_err());
    errors.push(gitlab.version().await.unwrap_err());
    let kinds: Vec<ErrorKind> = errors.iter().map(Error::kind).collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Other,
            ErrorKind::InsufficientScope,
            ErrorKind::Decode,
            ErrorKind::Transient,
        ]
    );
    for err in &errors {
        assert_no_token(err);
    }
}

/// An answer over the cap fails its request at once, whether it says its length or streams
/// without one, and is not asked for again; one at the cap is read.
#[tokio::test]
async fn an_answer_over_the_cap_is_too_large_and_not_retried() {
    use axum::body::{Body, Bytes};
    use axum::response::Response;
    let cap = 64 * 1024;
    let options = || gitlab_client::ClientOptions { max_response_bytes: cap, ..crate::stub::fast_options() };
    // A version answer of exactly `n` bytes.
    let padded = |n: usize| format!("{{\"version\":\"19.1.0\",\"revision\":\"{}\"}}", "a".repeat(n - 34));
    let exactly = stub(move |_, _| json(200, &serde_json::from_str(&padded(cap)).unwrap(), &[])).await;
    let read = crate::stub::client_with(&exactly.base, options()).version().await;
    assert!(read.is_ok(), "an answer of exactly the cap is read");

    let declared = stub(move |_, _| json(200, &serde_json::from_str(&padded(cap + 1)).unwrap(), &[])).await;
    let streamed = stub(move |_, _| {
        let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 4096])));
        Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
    })
    .await;
    for server in [&declared, &streamed] {
        let Err(err) = crate::stub::client_with(&server.base, options()).version().await else { panic!("an answer over the cap was read") };
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
        assert!(err.to_string().contains("/api/v4/version"), "{err}");
        assert_eq!(server.count(), 1, "the same request would get the same answer");
    }
}
