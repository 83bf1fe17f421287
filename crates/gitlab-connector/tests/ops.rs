//! Operator commands against a real database, each scoped to the tenant it names.

use std::process::Command;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use connector_crypto::MasterKeyRing;
use connector_store::connections::{self, NewConnection};
use connector_store::deliveries::{self, NewDelivery};
use connector_store::jobs::{Envelope, Job};
use connector_store::{Store, TenantId, app_connect_options, dead_letters, hooks};
use secrecy::SecretString;
use sqlx::{ConnectOptions, PgPool};

fn run(owner: &PgPool, keys: &str, args: &[&str]) -> (bool, String) {
    let dev_state = std::env::temp_dir().join(format!("gc-ops-{}", uuid::Uuid::new_v4()));
    let out = Command::new(env!("CARGO_BIN_EXE_gitlab-connector"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", owner.connect_options().to_url_lossy().to_string())
        .env("MASTER_KEYS", keys)
        .env("DEV_STATE_DIR", &dev_state)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dev_state).ok();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn failed_jobs_and_kept_aside_deliveries_go_back_to_work(owner: PgPool) {
    let entry = MasterKeyRing::generate_entry(1);
    let store =
        Store::connect(app_connect_options(&owner.connect_options()), 2, Arc::new(MasterKeyRing::parse(&entry).unwrap())).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    let c = connections::insert(
        &mut tx,
        store.keys(),
        NewConnection {
            gitlab_url: "https://gitlab.example.test".into(),
            groups_list: vec![1],
            projects_list: vec![],
            start_date: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            access_token: SecretString::from("glpat-ops-test-0000000000"),
        },
    )
    .await
    .unwrap();
    let envelope = Envelope { tenant: "acme".into(), job: Job::Validate { connection: c.id }, attempt: 7, traceparent: None };
    dead_letters::insert(&mut tx, &envelope, "GitLab answered 503 eight times").await.unwrap();
    let (hook, _) = hooks::ensure(&mut tx, store.keys(), c.id, connector_store::hooks::HookScope::Project, 7).await.unwrap();
    deliveries::insert(
        &mut tx,
        &NewDelivery {
            connection_id: c.id,
            hook_id: hook.id,
            dedup_key: "k1",
            event: Some("Wiki Page Hook"),
            headers: serde_json::json!({}),
            body: br#"{"object_kind":"wiki_page"}"#,
            kept_aside: Some("wiki_page events are not part of what Coworker reads"),
            traceparent: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let (ok, out) = run(&owner, &entry, &["jobs", "failed", "--tenant", "acme"]);
    assert!(ok && out.contains("GitLab answered 503 eight times") && out.contains("validate"), "{out}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    // Another tenant sees nothing of it and cannot retry it.
    let (ok, out) = run(&owner, &entry, &["jobs", "failed", "--tenant", "globex"]);
    assert!(ok && out.contains("no failed jobs"), "{out}");
    let (ok, _) = run(&owner, &entry, &["jobs", "retry", "--tenant", "globex", "--id", &id]);
    assert!(!ok, "another tenant retried acme's job");

    let (ok, out) = run(&owner, &entry, &["jobs", "retry", "--tenant", "acme", "--id", &id]);
    assert!(ok && out.contains("queued again: validate"), "{out}");
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' = 'validate'")
            .fetch_one(&owner)
            .await
            .unwrap();
    assert_eq!(queued, 1);
    let (ok, _) = run(&owner, &entry, &["jobs", "retry", "--tenant", "acme", "--id", &id]);
    assert!(!ok, "a letter is retried once");

    let (ok, out) = run(&owner, &entry, &["deliveries", "list", "--tenant", "acme"]);
    assert!(ok && out.contains("Wiki Page Hook") && out.contains("not part of what Coworker reads"), "{out}");
    let delivery = out.split_whitespace().next().unwrap().to_owned();
    let (ok, out) = run(&owner, &entry, &["deliveries", "replay", "--tenant", "acme", "--id", &delivery]);
    assert!(ok, "{out}");
    let status: String = sqlx::query_scalar("SELECT status FROM webhook_deliveries").fetch_one(&owner).await.unwrap();
    assert_eq!(status, "received");

    let (ok, out) = run(&owner, &entry, &["connections", "show", "--tenant", "acme", "--id", &c.id.to_string()]);
    assert!(ok && out.contains("status pending") && out.contains(&format!("hook {}", hook.id)), "{out}");
    let (ok, _) = run(&owner, &entry, &["connections", "show", "--tenant", "globex", "--id", &c.id.to_string()]);
    assert!(!ok, "another tenant can read acme's connection");
}
