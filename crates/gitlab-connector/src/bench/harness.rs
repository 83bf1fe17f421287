//! The connector as a separate process of this same binary, so that its memory and CPU are its
//! own and a load generator in this process does not share its runtime.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use connector_api::auth::{AuthConfig, issue_hs256};
use connector_crypto::MasterKeyRing;
use connector_store::TenantId;
use secrecy::SecretString;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use crate::local::free_port;

/// A `gitlab-connector serve` child process, killed when dropped.
pub(crate) struct Service {
    child: Child,
    pub(crate) base: String,
    jwt_secret: SecretString,
}

impl Service {
    /// Starts `roles` (e.g. `"worker"`, `"api,ingest"`) against `owner`'s database, which must be
    /// migrated. `env` adds or overrides settings (WORKER_CONCURRENCY, BACKFILL_SLICE, ...).
    pub(crate) fn spawn(owner: &PgConnectOptions, roles: &str, master_keys: &str, env: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let jwt_secret = connector_crypto::random_token(32);
        let dev_state = std::env::temp_dir().join(format!("gitlab-connector-bench-{}-{port}", std::process::id()));
        let mut command = Command::new(std::env::current_exe().context("locating this binary")?);
        command
            .args(["serve", "--roles", roles])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", owner.to_url_lossy().to_string())
            .env("MIGRATE_ON_START", "false")
            .env("MASTER_KEYS", master_keys)
            .env("JWT_HS256_SECRET", &jwt_secret)
            .env("DEV_STATE_DIR", &dev_state)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("PUBLIC_URL", &base)
            .env("GITLAB_URL_ALLOWLIST", "127.0.0.1/32:*")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().context("starting the connector process")?;
        Ok(Self { child, base, jwt_secret: SecretString::from(jwt_secret) })
    }

    /// A fresh master key ring entry for a benchmark's service.
    pub(crate) fn new_master_keys() -> String {
        MasterKeyRing::generate_entry(1)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz` (the API role) or `/healthz` (every role answers it).
    pub(crate) async fn wait_up(&self, path: &str) -> Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http.get(format!("{}{path}", self.base)).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the connector process did not come up on {}", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A JWT for `tenant`, accepted by this service.
    pub(crate) fn token(&self, tenant: &str) -> Result<String> {
        let auth = AuthConfig {
            hs256_secret: Some(self.jwt_secret.clone()),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: connector_api::auth::JwksRefresh::default(),
            issuer: "coworker".into(),
            audience: "gitlab-connector".into(),
            tenant_claim: "tenant_id".into(),
        };
        Ok(issue_hs256(&self.jwt_secret, &auth, &TenantId::parse(tenant)?, Duration::from_secs(3600)))
    }

    /// The process's peak resident memory so far (VmHWM), in bytes.
    pub(crate) fn peak_rss(&self) -> Result<u64> {
        peak_rss(self.pid())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmHWM of a process: the most resident memory it has held since it started.
pub(crate) fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kb * 1024)
}

/// A store in this process on `owner`'s database, as the app role, reading the data of a
/// service started with `master_keys`.
pub(crate) async fn app_store(owner: &PgConnectOptions, master_keys: &str) -> Result<connector_store::Store> {
    let keys = MasterKeyRing::parse(master_keys).context("MASTER_KEYS")?;
    Ok(connector_store::Store::connect(connector_store::app_connect_options(owner), 4, std::sync::Arc::new(keys)).await?)
}

/// Creates `tenant`'s connection to the GitLab at `gitlab_url` and queues its validation, as
/// `POST /v1/connections` does, without an API process.
pub(crate) async fn connect_gitlab(
    store: &connector_store::Store,
    tenant: &str,
    gitlab_url: &str,
    token: &str,
    groups: Vec<i64>,
    start_date: chrono::DateTime<chrono::Utc>,
) -> Result<uuid::Uuid> {
    use connector_store::connections::{self, NewConnection};
    use connector_store::jobs::{self, Job};
    let mut tx = store.tenant_tx(&TenantId::parse(tenant)?).await?;
    let connection = connections::insert(
        &mut tx,
        store.keys(),
        NewConnection {
            gitlab_url: gitlab_url.to_string(),
            groups_list: groups,
            projects_list: vec![],
            start_date,
            access_token: SecretString::from(token.to_string()),
        },
    )
    .await?;
    jobs::enqueue(&mut tx, Job::Validate { connection: connection.id }, Duration::ZERO).await?;
    tx.commit().await?;
    Ok(connection.id)
}

/// Waits until the connection is `live`; fails at once if it lands in a status that needs the
/// user (with its message), or after `timeout`.
pub(crate) async fn wait_live(store: &connector_store::Store, tenant: &str, id: uuid::Uuid, timeout: Duration) -> Result<()> {
    use connector_store::connections::{self, Status};
    let tenant = TenantId::parse(tenant)?;
    let deadline = Instant::now() + timeout;
    loop {
        let connection = {
            let mut tx = store.tenant_tx(&tenant).await?;
            connections::get(&mut tx, id).await?
        };
        match connection.status {
            Status::Live => return Ok(()),
            Status::NeedsReauth | Status::Invalid | Status::Failed => {
                anyhow::bail!("connection {id} became {:?}: {}", connection.status, connection.status_message.unwrap_or_default())
            }
            _ => {}
        }
        ensure!(Instant::now() < deadline, "connection {id} not live after {timeout:?} (still {:?})", connection.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU time (user and system) a process has used so far, from /proc/PID/stat.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat.rsplit_once(')').context("no ) in /proc/PID/stat")?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).context("short /proc/PID/stat");
    // utime and stime are fields 14 and 15, i.e. 12 and 13 after the state (field 3).
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks_per_second() as f64))
}

/// USER_HZ, the unit of /proc's CPU times (100 on every common Linux build).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// CPU time used so far by the server processes of `database`'s open sessions, when PostgreSQL
/// runs on this machine (None otherwise).
pub(crate) async fn database_sessions_cpu(owner: &PgConnectOptions) -> Result<Option<Duration>> {
    if !matches!(owner.get_host(), "127.0.0.1" | "localhost" | "::1") && !owner.get_host().starts_with('/') {
        return Ok(None);
    }
    let mut conn = owner.connect().await?;
    let pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            .fetch_all(&mut conn)
            .await?;
    let mut total = Duration::ZERO;
    for pid in pids {
        match cpu_time(pid as u32) {
            Ok(t) => total += t,
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(total))
}
