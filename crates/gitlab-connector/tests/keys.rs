//! The master key ring across pods: a pod whose ring cannot open what others wrote does not
//! serve, a pod with a newer key wraps nothing under it before every pod has it, and `keys
//! rotate` waits for them.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Running};
use connector_crypto::MasterKeyRing;
use serde_json::json;
use sqlx::{ConnectOptions, PgPool};

struct Pod {
    api: Api,
    process: Running,
}

async fn start(owner: &PgPool, keys: &str) -> Pod {
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev_state = std::env::temp_dir().join(format!("gc-keys-{}", uuid::Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
    let process = Running(common::serve("api", &database_url, keys, &dev_state, &format!("127.0.0.1:{port}"), &base).spawn().unwrap());
    let api = Api::new(base);
    api.wait_ready(Duration::from_secs(30)).await;
    Pod { api, process }
}

/// Runs `gitlab-connector <args>` with `keys`; its success and what it said.
async fn run(owner: &PgPool, keys: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(common::BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", owner.connect_options().to_url_lossy().to_string())
        .env("MIGRATE_ON_START", "false")
        .env("MASTER_KEYS", keys)
        .env("JWT_HS256_SECRET", common::JWT_SECRET)
        .env("DEV_STATE_DIR", std::env::temp_dir().join(format!("gc-keys-{}", uuid::Uuid::new_v4())))
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", common::free_port()))
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn body() -> serde_json::Value {
    json!({"access_token": "glpat-keys-test-0000000001", "groups_list": "1", "start_date": "2024-01-01T00:00:00Z", "gitlab_url": "http://127.0.0.1:9"})
}

async fn versions(owner: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT id, data_key_version FROM tenants ORDER BY id").fetch_all(owner).await.unwrap()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn every_pod_can_open_every_data_key(owner: PgPool) {
    let v1 = MasterKeyRing::generate_entry(1);
    let v2 = MasterKeyRing::generate_entry(2);
    let a = start(&owner, &v1).await;
    a.api.connect("first", body()).await;

    // The same version with other key material: the pod refuses to start, so it can neither
    // fail on what exists nor write what the others cannot open.
    let wrong = MasterKeyRing::generate_entry(1);
    let started = Instant::now();
    let (ok, said) = run(&owner, &wrong, &["serve", "--roles", "api"]).await;
    println!("keys: a pod with another key under version 1 exited after {:.1?}: {said:?}", started.elapsed());
    assert!(!ok, "{said}");
    assert!(said.contains("MASTER_KEYS") && said.contains("version 1"), "{said}");

    // A pod given version 2 before the others: it keeps wrapping under version 1.
    let b = start(&owner, &format!("{v1},{v2}")).await;
    b.api.connect("second", body()).await;
    let (status, list) = a.api.call(reqwest::Method::GET, "/v1/connections", "second", None).await;
    println!("keys: tenants' key versions with a pod ahead: {:?}; the other pod reads the new tenant: {status}", versions(&owner).await);
    assert_eq!(status, 200, "{list}");
    assert_eq!(versions(&owner).await, [("first".to_owned(), 1), ("second".to_owned(), 1)]);

    // Rotation waits for every live pod to have version 2.
    let (ok, said) = run(&owner, &format!("{v1},{v2}"), &["keys", "rotate"]).await;
    println!("keys: rotate with a pod lacking version 2: {said:?}");
    assert!(!ok, "{said}");
    assert!(said.contains("version 2"), "{said}");
    assert_eq!(versions(&owner).await, [("first".to_owned(), 1), ("second".to_owned(), 1)]);

    // Once it has gone (a graceful stop takes it off the list), rotation proceeds, and new
    // tenants get version 2 from then on.
    let mut old = a;
    let pid = old.process.0.id();
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let _ = old.process.0.wait();
    let (ok, said) = run(&owner, &format!("{v1},{v2}"), &["keys", "rotate"]).await;
    println!("keys: rotate once every pod has version 2: {said:?}");
    assert!(ok, "{said}");
    b.api.connect("third", body()).await;
    assert_eq!(versions(&owner).await, [("first".to_owned(), 2), ("second".to_owned(), 2), ("third".to_owned(), 2)]);
    for tenant in ["first", "second", "third"] {
        assert_eq!(b.api.call(reqwest::Method::GET, "/v1/connections", tenant, None).await.0, 200);
    }
    // A pod that lacks the version in use now cannot start.
    let (ok, said) = run(&owner, &v1, &["serve", "--roles", "api"]).await;
    assert!(!ok && said.contains("version 2"), "{said}");
    drop(b);
}
