//! A worker process killed with SIGKILL at random moments of a backfill, and started again:
//! nothing is lost and nothing is stored twice.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use connector_crypto::MasterKeyRing;
use connector_store::connections::{self, NewConnection, Status};
use connector_store::jobs::{self, Job};
use connector_store::{Store, TenantId, app_connect_options};
use gitlab_sim::{Dataset, SimConfig, Simulator, Size};
use secrecy::SecretString;
use sqlx::{ConnectOptions, PgPool};

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-connector");
/// Kill points; the seed makes the moments reproducible, and each is printed.
const KILLS: usize = 8;
const SEED: u64 = 20261125;

/// A small deterministic generator for the kill moments.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state >> 33
}

fn worker(owner_url: &str, keys: &str, dev_state: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["serve", "--roles", "worker"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", owner_url)
        .env("MIGRATE_ON_START", "false")
        .env("MASTER_KEYS", keys)
        .env("DEV_STATE_DIR", dev_state)
        .env("GITLAB_URL_ALLOWLIST", "127.0.0.1/32")
        .env("PUBLIC_URL", "http://127.0.0.1:9")
        .env("BACKFILL_SLICE", "300ms")
        .env("WORKER_HEARTBEAT", "1s")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_killed_worker_resumes_from_its_checkpoint(owner: PgPool) {
    let entry = MasterKeyRing::generate_entry(1);
    let keys = Arc::new(MasterKeyRing::parse(&entry).unwrap());
    let store = Store::connect(app_connect_options(&owner.connect_options()), 4, keys).await.unwrap();
    let mut spec = Size::Small.spec();
    spec.commits_per_project = 500;
    spec.merge_requests_per_project = 30;
    let sim = Simulator::new(Dataset::generate(9, Size::Custom(spec)), SimConfig::default())
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let start = Utc::now() - chrono::Duration::days(3 * 365);
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    let c = connections::insert(
        &mut tx,
        store.keys(),
        NewConnection {
            gitlab_url: sim.base_url.clone(),
            groups_list: vec![1],
            projects_list: vec![],
            start_date: start,
            access_token: SecretString::from("glpat-sim-owner-api-0001"),
        },
    )
    .await
    .unwrap();
    jobs::enqueue(&mut tx, Job::Validate { connection: c.id }, Duration::ZERO).await.unwrap();
    tx.commit().await.unwrap();

    let owner_url = owner.connect_options().to_url_lossy().to_string();
    let dev_state = std::env::temp_dir().join(format!("gc-kill-{}", uuid::Uuid::new_v4()));
    let status = |store: Store| async move {
        let mut tx = store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
        connections::get(&mut tx, c.id).await.unwrap().status
    };
    let mut rng = SEED;
    let mut killed_while = Vec::new();
    for kill in 0..KILLS {
        let mut child = worker(&owner_url, &entry, &dev_state);
        let after = Duration::from_millis(300 + next(&mut rng) % 1200);
        tokio::time::sleep(after).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let state = status(store.clone()).await;
        println!("kill {kill}: SIGKILL after {after:?} while {state:?}");
        killed_while.push(state);
        if state == Status::Live {
            break;
        }
    }
    assert!(
        killed_while.iter().filter(|s| **s == Status::Backfilling).count() >= 3,
        "too few kills landed mid-backfill to prove anything: {killed_while:?}"
    );

    let mut child = worker(&owner_url, &entry, &dev_state);
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(store.clone()).await != Status::Live {
        assert!(Instant::now() < deadline, "never went live after the kills");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dev_state).ok();

    // Everything since the start date is there, once: row counts equal the ground truth's
    // (primary keys make a duplicate row impossible, so equality of counts and sets is the test).
    let dataset = sim.sim.dataset();
    let projects: Vec<_> = {
        let groups: Vec<u64> = std::iter::once(1).chain(dataset.descendants(1)).collect();
        dataset.projects.iter().filter(|p| groups.contains(&p.namespace_id)).collect()
    };
    let mut want_commits = std::collections::BTreeSet::new();
    let mut want_mrs = 0;
    for p in &projects {
        for commit in p.repository.commits.iter().filter(|c| c.committed_date >= start) {
            want_commits.insert((p.id as i64, commit.id.clone()));
        }
        for mr in p.merge_requests.iter().filter(|m| m.updated_at >= start) {
            want_mrs += 1;
            want_commits.extend(mr.commit_shas.iter().map(|s| (p.id as i64, s.clone())));
        }
    }
    let mut tx = store.tenant_tx(&tenant).await.unwrap();
    let got: Vec<(i64, String)> = sqlx::query_as("SELECT project_id, sha FROM commits").fetch_all(&mut *tx).await.unwrap();
    let got_set: std::collections::BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len());
    assert_eq!(got_set, want_commits, "commits after {} kills", killed_while.len());
    let mrs: i64 = sqlx::query_scalar("SELECT count(*) FROM merge_requests").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(mrs, want_mrs);
    // Each page's checkpoint was written with the page: the counted records are the stored ones.
    let counted: i64 = sqlx::query_scalar("SELECT sum(records)::bigint FROM sync_checkpoints WHERE resource = 'merge_requests'")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(counted, want_mrs, "a page was counted twice or not at all");
    // Kills during hook installation did not leave a second hook behind.
    assert_eq!(sim.sim.with_dataset(|d| d.hooks.len()), 1, "one group hook, however often the install was cut short");
}
