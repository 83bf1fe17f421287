//! Every way a bearer token can be wrong is a 401 in the error shape, never a 5xx.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{HS256_SECRET, TestApp, assert_error, fixture};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims() -> Value {
    json!({"iss": "coworker", "aud": "gitlab-connector", "exp": now() + 600, "nbf": now() - 10, "tenant_id": "acme"})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256-test-key.pem")).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn es256(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&std::fs::read(fixture("es256-test-key.pem")).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A hand-built token with any header, signature or none.
fn raw_token(header: Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

async fn status_with(app: &TestApp, authorization: &str) -> (u16, Value) {
    let resp = app.http.get(app.url("/v1/connections")).header("authorization", authorization).send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    if status == 401 {
        assert_eq!(www.as_deref(), Some("Bearer"));
    }
    (status, body)
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn good_tokens_of_each_algorithm_pass(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    for token in
        [hs(Algorithm::HS256, HS256_SECRET.as_bytes(), &claims()), rs256(Some("rsa-test-1"), &claims()), es256("ec-test-1", &claims())]
    {
        let (status, body) = status_with(&app, &format!("Bearer {token}")).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// A token signed with the shared secret whose header and payload are taken as written.
fn signed_raw(header: &str, payload: &str) -> String {
    let message = format!("{}.{}", B64.encode(header), B64.encode(payload));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(HS256_SECRET.as_bytes()), Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn every_bad_token_is_401(owner: PgPool) {
    let app = TestApp::spawn(owner).await;
    let secret = HS256_SECRET.as_bytes();
    let rsa_public_pem = std::fs::read(fixture("rs256-test-key.pub.pem")).unwrap();
    let cases: Vec<(&str, String)> = vec![
        ("no scheme", hs(Algorithm::HS256, secret, &claims())),
        ("empty bearer", "Bearer ".into()),
        ("garbage", "Bearer not.a.jwt".into()),
        ("basic auth", "Basic dXNlcjpwYXNz".into()),
        ("alg none", format!("Bearer {}", raw_token(json!({"alg": "none", "typ": "JWT"}), &claims(), ""))),
        ("alg None", format!("Bearer {}", raw_token(json!({"alg": "None"}), &claims(), ""))),
        ("wrong secret", format!("Bearer {}", hs(Algorithm::HS256, b"another-secret-of-enough-length-0000000", &claims()))),
        ("HS384 with the right secret", format!("Bearer {}", hs(Algorithm::HS384, secret, &claims()))),
        ("HS/RS confusion: HS256 signed with the RSA public key", format!("Bearer {}", hs(Algorithm::HS256, &rsa_public_pem, &claims()))),
        ("RS256 with an unknown kid", format!("Bearer {}", rs256(Some("someone-else"), &claims()))),
        ("RS256 without a kid", format!("Bearer {}", rs256(None, &claims()))),
        ("RS256 under the EC key's kid", format!("Bearer {}", rs256(Some("ec-test-1"), &claims()))),
        ("expired", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "exp", json!(now() - 120))))),
        ("not yet valid", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "nbf", json!(now() + 3600))))),
        ("wrong issuer", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "iss", json!("evil"))))),
        ("wrong audience", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "aud", json!("other-service"))))),
        ("no exp", format!("Bearer {}", hs(Algorithm::HS256, secret, &without(claims(), "exp")))),
        ("no iss", format!("Bearer {}", hs(Algorithm::HS256, secret, &without(claims(), "iss")))),
        ("no aud", format!("Bearer {}", hs(Algorithm::HS256, secret, &without(claims(), "aud")))),
        ("no tenant claim", format!("Bearer {}", hs(Algorithm::HS256, secret, &without(claims(), "tenant_id")))),
        ("invalid tenant", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "tenant_id", json!("a/b"))))),
        ("tenant as object", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "tenant_id", json!({"id": 1}))))),
        ("oversized", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "pad", json!("x".repeat(20_000)))))),
        // Decided strictly, each one way: a token means one thing.
        ("issuer as an array", format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "iss", json!(["coworker"]))))),
        (
            "issued ten years ahead",
            format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "iat", json!(now() + 10 * 365 * 86_400)))),
        ),
        (
            "numeric tenant claim (42 and \"42\" would be one tenant)",
            format!("Bearer {}", hs(Algorithm::HS256, secret, &with(claims(), "tenant_id", json!(42)))),
        ),
        (
            "an unknown critical header (RFC 7515 4.1.11)",
            format!("Bearer {}", signed_raw(r#"{"alg":"HS256","typ":"JWT","crit":["exp-v2"],"exp-v2":1}"#, &claims().to_string())),
        ),
        ("a claim given twice", {
            let payload =
                format!(r#"{{"iss":"coworker","aud":"gitlab-connector","exp":{},"tenant_id":"acme","tenant_id":"victim"}}"#, now() + 600);
            format!("Bearer {}", signed_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &payload))
        }),
        ("tampered payload", {
            let token = hs(Algorithm::HS256, secret, &claims());
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = B64.encode(with(claims(), "tenant_id", json!("victim")).to_string());
            format!("Bearer {}", parts.join("."))
        }),
    ];
    let tried = cases.len() + 1;
    for (name, authorization) in cases {
        let (status, body) = status_with(&app, &authorization).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_error(&body, "unauthorized");
    }
    let resp = app.http.get(app.url("/v1/connections")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no Authorization header");
    println!("jwt attacks: {tried} bad Authorization headers tried, {tried} answered 401 unauthorized, 0 a 5xx or a success");
}

/// Keys from a JWKS URL verify tokens; unknown `kid`s do not make us hammer the issuer.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn jwks_url_keys_verify_and_unknown_kids_do_not_storm_the_issuer(owner: PgPool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let hits = Arc::new(AtomicUsize::new(0));
    let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    let counter = hits.clone();
    let issuer = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = jwks.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, issuer).await });

    let mut config = crate::common::auth_config();
    config.hs256_secret = None;
    config.jwks_file = None;
    config.jwks_url = Some(jwks_url.parse().unwrap());
    let app = TestApp::spawn_with_auth(owner, config).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once at start");

    assert_eq!(status_with(&app, &format!("Bearer {}", rs256(Some("rsa-test-1"), &claims()))).await.0, 200);
    for _ in 0..5 {
        assert_eq!(status_with(&app, &format!("Bearer {}", rs256(Some("rotated-away"), &claims()))).await.0, 401);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "unknown kids within the refetch interval fetch nothing");
    // With only a JWKS configured, an HS256 token has no key at all.
    assert_eq!(status_with(&app, &format!("Bearer {}", hs(Algorithm::HS256, HS256_SECRET.as_bytes(), &claims()))).await.0, 401);
}

/// A key the issuer drops from its JWKS stops verifying once the refresh has seen it gone and the
/// overlap has passed, without a restart; a key the issuer adds verifies from the next refresh.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_key_dropped_from_the_jwks_stops_verifying_within_refresh_and_overlap(owner: PgPool) {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let full: Value = serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).unwrap()).unwrap();
    let served = Arc::new(Mutex::new(full.clone()));
    let current = served.clone();
    let issuer = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let body = current.lock().unwrap().to_string();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, issuer).await });

    let refresh = connector_api::auth::JwksRefresh { every: Duration::from_millis(300), overlap: Duration::from_millis(700) };
    let mut config = crate::common::auth_config();
    config.hs256_secret = None;
    config.jwks_file = None;
    config.jwks_url = Some(jwks_url.parse().unwrap());
    config.jwks_refresh = refresh;
    let app = TestApp::spawn_with_auth(owner, config).await;
    let rsa = format!("Bearer {}", rs256(Some("rsa-test-1"), &claims()));
    assert_eq!(status_with(&app, &rsa).await.0, 200);

    // The issuer rotates: the RSA key goes, the EC key stays.
    let mut rotated = full.clone();
    rotated["keys"].as_array_mut().unwrap().retain(|k| k["kid"] != "rsa-test-1");
    *served.lock().unwrap() = rotated.clone();
    let dropped = Instant::now();
    let mut accepted_after = Duration::ZERO;
    loop {
        match status_with(&app, &rsa).await.0 {
            200 => accepted_after = dropped.elapsed(),
            401 => break,
            other => panic!("a token of a dropped key got {other}"),
        }
        assert!(dropped.elapsed() < Duration::from_secs(10), "a dropped key still verifies after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_after = dropped.elapsed();
    println!(
        "jwks: a dropped key verified for {accepted_after:.1?} and was refused from {refused_after:.1?} \
         (refresh every {:?}, overlap {:?})",
        refresh.every, refresh.overlap
    );
    assert!(refused_after >= refresh.overlap, "the overlap was not kept: refused after {refused_after:?}");
    assert!(refused_after <= refresh.every + refresh.overlap + Duration::from_secs(1));
    assert_eq!(status_with(&app, &format!("Bearer {}", es256("ec-test-1", &claims()))).await.0, 200, "the kept key verifies");

    // Stays refused: a later refresh does not bring a retired key back.
    tokio::time::sleep(refresh.every * 2).await;
    assert_eq!(status_with(&app, &rsa).await.0, 401);

    // The issuer publishes the RSA key under a new kid: it verifies from the next refresh on.
    let mut renamed = full["keys"][0].clone();
    renamed["kid"] = json!("rsa-test-2");
    rotated["keys"].as_array_mut().unwrap().push(renamed);
    *served.lock().unwrap() = rotated;
    tokio::time::sleep(refresh.every * 2).await;
    assert_eq!(status_with(&app, &format!("Bearer {}", rs256(Some("rsa-test-2"), &claims()))).await.0, 200);
    assert_eq!(status_with(&app, &rsa).await.0, 401, "only the new kid names the key");
}
