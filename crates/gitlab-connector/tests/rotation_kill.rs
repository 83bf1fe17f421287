//! The worker process killed with SIGKILL at each step of an opted-in connection's token
//! rotation, and started again: nothing of the killed worker survives but what it committed and
//! what GitLab did. Cut off before GitLab rotated, the restarted worker waits out the lease, then
//! rotates once; cut off after GitLab rotated but before its answer was read, it never sends the
//! old token again (GitLab would revoke the whole family, the lost new token included) and asks
//! the user for a new token, saying why; cut off right after the new token was stored, there is
//! nothing left to do. Each kill waits for its step in the simulator's counters and the
//! connection's row. (`crates/worker/tests/rotation.rs` cuts the job off inside one process.)

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Api, Running};
use connector_crypto::MasterKeyRing;
use connector_store::connections::{self, Connection, Status};
use connector_store::{Store, TenantId, app_connect_options};
use gitlab_sim::{Dataset, SimConfig, SimHandle, Simulator, Size, TOKEN_OWNER, Token};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

const TENANT: &str = "acme";
/// Short enough for the test to outwait, long enough for a restarted worker to be seen waiting.
const LEASE: Duration = Duration::from_secs(4);
/// Longer than any case: a request or answer held this long ends only with the killed worker.
const HELD_MS: u64 = 600_000;
/// How long a step or an outcome may take to show, the backfill before live included.
const WITHIN: Duration = Duration::from_secs(60);
const TOKEN_SELF: &str = "/api/v4/personal_access_tokens/self";

/// How the worker is started, each time under a new name, so that what each claims in the
/// database is told apart.
struct Launcher {
    database_url: String,
    master_keys: String,
    work: PathBuf,
    public_url: String,
    started: usize,
}

impl Launcher {
    fn worker(&mut self) -> (String, Running) {
        self.started += 1;
        let name = format!("worker-{}", self.started);
        let log = std::fs::File::create(self.work.join(format!("{name}.log"))).unwrap();
        let mut command =
            common::serve("worker", &self.database_url, &self.master_keys, &self.work.join("state"), "127.0.0.1:0", &self.public_url);
        // A token check a second (the scheduler ticks as often), and a killed worker's jobs
        // handed on within seconds.
        command
            .env("HOSTNAME", &name)
            .env("TOKEN_ROTATION_LEASE", format!("{}s", LEASE.as_secs()))
            .env("TOKEN_CHECK_INTERVAL", "1s")
            .env("WORKER_HEARTBEAT", "1s")
            .env("DATABASE_MAX_CONNECTIONS", "4")
            .env("RUST_LOG", "warn,connector_worker=info")
            .stderr(log);
        (name, Running(command.spawn().unwrap()))
    }
}

/// A live connection that opted in to rotation, with its own simulator, database and processes.
struct Rig {
    sim: SimHandle,
    owner: PgPool,
    store: Store,
    tenant: TenantId,
    id: Uuid,
    launcher: Launcher,
    _api: Running,
    worker: Running,
}

impl Rig {
    async fn live(owner: &PgPool) -> Rig {
        let sim = Simulator::new(Dataset::generate(1, Size::Small), SimConfig::default()).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
        let master_keys = MasterKeyRing::generate_entry(1);
        let keys = Arc::new(MasterKeyRing::parse(&master_keys).unwrap());
        let store = Store::connect(app_connect_options(&owner.connect_options()), 2, keys).await.unwrap();
        let work = std::env::temp_dir().join(format!("gc-rotation-kill-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&work).unwrap();
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut launcher = Launcher {
            database_url: owner.connect_options().to_url_lossy().to_string(),
            master_keys,
            work,
            public_url: format!("http://{listen}"),
            started: 0,
        };
        let log = std::fs::File::create(launcher.work.join("api.log")).unwrap();
        let api_process = common::serve(
            "api",
            &launcher.database_url,
            &launcher.master_keys,
            &launcher.work.join("state"),
            &listen,
            &launcher.public_url,
        )
        .stderr(log)
        .spawn()
        .unwrap();
        let api_process = Running(api_process);
        let (_, worker) = launcher.worker();
        let api = Api::new(launcher.public_url.clone());
        api.wait_ready(Duration::from_secs(30)).await;
        let start = Utc::now() - chrono::Duration::days(30);
        let id = api
            .connect(
                TENANT,
                json!({"access_token": TOKEN_OWNER, "groups_list": "4", "start_date": start.to_rfc3339(), "gitlab_url": sim.base_url, "rotate_token": true}),
            )
            .await;
        api.wait_live(TENANT, &id).await;
        Rig {
            sim,
            owner: owner.clone(),
            store,
            tenant: TenantId::parse(TENANT).unwrap(),
            id: id.parse().unwrap(),
            launcher,
            _api: api_process,
            worker,
        }
    }

    /// A new worker process in place of the killed one; returns its name.
    fn start_worker(&mut self) -> String {
        let (name, worker) = self.launcher.worker();
        self.worker = worker;
        name
    }

    /// Within the token check's rotation window from now on.
    fn expire_soon(&self) {
        let soon = Utc::now().date_naive() + chrono::Duration::days(5);
        self.sim.sim.with_dataset_mut(|d| d.tokens.iter_mut().find(|t| t.value == TOKEN_OWNER).unwrap().expires_at = Some(soon));
    }

    async fn connection(&self) -> Connection {
        let mut tx = self.store.tenant_tx(&self.tenant).await.unwrap();
        connections::get(&mut tx, self.id).await.unwrap()
    }

    async fn stored_token(&self) -> String {
        let mut tx = self.store.tenant_tx(&self.tenant).await.unwrap();
        connections::access_token(&mut tx, self.store.keys(), self.id).await.unwrap().expose_secret().to_owned()
    }

    fn rotations(&self) -> u64 {
        self.sim.sim.stats().token_rotations
    }

    fn token(&self, value: &str) -> Token {
        self.sim.sim.with_dataset(|d| d.tokens.iter().find(|t| t.value == value).unwrap().clone())
    }

    /// The token GitLab made when it rotated `value`.
    fn successor(&self, value: &str) -> Token {
        let old = self.token(value).id;
        self.sim.sim.with_dataset(|d| d.tokens.iter().find(|t| t.rotated_from == Some(old)).expect("GitLab rotated it").clone())
    }

    /// What GitLab answers `GET /user` with `token`.
    async fn gitlab_answers(&self, token: &str) -> u16 {
        let url = format!("{}/api/v4/user", self.sim.base_url);
        reqwest::Client::new().get(url).header("PRIVATE-TOKEN", token).send().await.unwrap().status().as_u16()
    }

    /// When `worker` first claimed a token check period.
    async fn first_token_check(&self, worker: &str) -> Option<DateTime<Utc>> {
        sqlx::query_scalar("SELECT min(claimed_at) FROM periodic_runs WHERE name = 'token_health' AND claimed_by = $1")
            .bind(worker)
            .fetch_one(&self.owner)
            .await
            .unwrap()
    }

    /// Waits for `n` more token checks that GitLab answered.
    async fn token_checks(&self, n: u64) {
        let before = self.sim.sim.stats().count(TOKEN_SELF, 200);
        until(&self.logs("token checks"), async || (self.sim.sim.stats().count(TOKEN_SELF, 200) >= before + n).then_some(())).await;
    }

    fn logs(&self, what: &str) -> String {
        format!("{what} (logs in {})", self.launcher.work.display())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.launcher.work).ok();
        }
    }
}

/// Polls `probe` until it gives a value.
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lease() -> chrono::Duration {
    chrono::Duration::from_std(LEASE).unwrap()
}

/// Killed with the rotation marked and its request on the way to GitLab (held before GitLab
/// looks at it, and ended with the worker's connection): the restarted worker leaves the mark
/// alone for the lease, since another worker could still be waiting for GitLab's answer; past
/// it, it finds the token still active and rotates it, once.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn killed_before_gitlab_rotated_the_restarted_worker_waits_out_the_lease_and_rotates_once(owner: PgPool) {
    let mut rig = Rig::live(&owner).await;
    rig.sim.sim.update_config(|c| c.faults.rotation_request_delay_ms = HELD_MS);
    rig.expire_soon();
    until(&rig.logs("the rotation request held"), async || (rig.sim.sim.stats().rotation_requests_held == 1).then_some(())).await;
    rig.worker.kill9();
    let marked = rig.connection().await.token_rotation_started_at.expect("marked before GitLab was asked");
    assert_eq!(rig.rotations(), 0, "GitLab has not rotated");
    assert!(!rig.token(TOKEN_OWNER).revoked);
    assert_eq!(rig.stored_token().await, TOKEN_OWNER);
    rig.sim.sim.update_config(|c| c.faults.rotation_request_delay_ms = 0);

    let restarted = rig.start_worker();
    let settled = until(&rig.logs("the rotation settled"), async || {
        let c = rig.connection().await;
        (rig.rotations() > 0 && c.token_rotation_started_at.is_none()).then_some(c)
    })
    .await;
    let checking = rig.first_token_check(&restarted).await.expect("the restarted worker checks tokens");
    assert!(checking + chrono::Duration::seconds(1) < marked + lease(), "checking since {checking}, well within the lease from {marked}");
    let new = rig.successor(TOKEN_OWNER);
    assert!(new.created_at >= marked + lease(), "rotated at {} before the lease from {marked} was over", new.created_at);
    assert_eq!(rig.rotations(), 1);
    assert_eq!(rig.stored_token().await, new.value);
    assert_eq!(rig.gitlab_answers(&new.value).await, 200, "the stored token works");
    assert_eq!(settled.status, Status::Live);
    assert_eq!(settled.token_expires_at, Some(Utc::now().date_naive() + chrono::Duration::days(364)));
    // Later checks find the token a year from expiry.
    rig.token_checks(2).await;
    assert_eq!(rig.rotations(), 1);
}

/// Killed with GitLab having rotated and its answer, the one copy of the new token, unread: the
/// old token is revoked, and sending it to the rotation again would revoke the new one too. The
/// restarted worker, past the lease, finds the stored token revoked and asks the user for a new
/// token, saying why; GitLab sees no second rotation.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn killed_after_gitlab_rotated_the_restarted_worker_asks_for_a_new_token_and_never_rotates_again(owner: PgPool) {
    let mut rig = Rig::live(&owner).await;
    rig.sim.sim.update_config(|c| c.faults.rotation_answer_delay_ms = HELD_MS);
    rig.expire_soon();
    until(&rig.logs("GitLab rotating"), async || (rig.rotations() == 1).then_some(())).await;
    rig.worker.kill9();
    let marked = rig.connection().await.token_rotation_started_at.expect("still marked: the answer never arrived");
    assert_eq!(rig.stored_token().await, TOKEN_OWNER, "the old token is all the connector has");
    let lost = rig.successor(TOKEN_OWNER);
    assert!(rig.token(TOKEN_OWNER).revoked && !lost.revoked, "GitLab rotated");
    rig.sim.sim.update_config(|c| c.faults.rotation_answer_delay_ms = 0);

    rig.start_worker();
    let settled = until(&rig.logs("needs_reauth"), async || {
        let c = rig.connection().await;
        (c.status != Status::Live).then_some(c)
    })
    .await;
    assert_eq!(settled.status, Status::NeedsReauth, "{settled:?}");
    assert!(settled.status_message.as_deref().is_some_and(|m| m.contains("automatic rotation")), "says why: {settled:?}");
    assert!(settled.updated_at >= marked + lease(), "settled at {} within the lease from {marked}", settled.updated_at);
    assert_eq!(settled.token_rotation_started_at, None);
    // The checks that found the mark within the lease come back a lease later, with up to 5 s
    // of the runner's jitter: by then every one of them has run, and none rotated.
    let retried = marked + lease() * 2 + chrono::Duration::seconds(5);
    tokio::time::sleep((retried - Utc::now()).to_std().unwrap_or_default()).await;
    assert_eq!(rig.rotations(), 1, "no second rotation");
    assert_eq!(rig.gitlab_answers(&lost.value).await, 200, "the family was not revoked");
    assert_eq!(rig.connection().await.status, Status::NeedsReauth);
}

/// Killed right after the new token was stored, in the transaction that cleared the mark: the
/// restarted worker's checks find a token a year from expiry, and nothing is rotated again.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn killed_after_the_new_token_was_stored_nothing_is_rotated_again(owner: PgPool) {
    let mut rig = Rig::live(&owner).await;
    rig.expire_soon();
    until(&rig.logs("the rotated token stored"), async || {
        (rig.rotations() == 1 && rig.connection().await.token_rotation_started_at.is_none()).then_some(())
    })
    .await;
    rig.worker.kill9();
    let new = rig.successor(TOKEN_OWNER);
    assert_eq!(rig.stored_token().await, new.value, "stored as the mark was cleared");

    rig.start_worker();
    rig.token_checks(3).await;
    assert_eq!(rig.rotations(), 1, "no second rotation");
    assert_eq!(rig.stored_token().await, new.value);
    assert_eq!(rig.gitlab_answers(&new.value).await, 200, "the stored token works");
    let c = rig.connection().await;
    assert_eq!((c.status, c.token_rotation_started_at), (Status::Live, None), "{c:?}");
}
