//! What the demo and the benchmarks run on: the local PostgreSQL (found, or a private cluster
//! started for the run), a database made afresh, and every role of the connector in this process.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use connector_api::ApiLimits;
use connector_api::auth::{AuthConfig, issue_hs256};
use connector_crypto::MasterKeyRing;
use connector_store::{Store, TenantId};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

use crate::config::{AppEnv, Config, WorkerSettings};
use crate::pg_cluster::PgCluster;

/// PostgreSQL for a local run: the configured or local one, else a private cluster of our own
/// (stopped and removed when this is dropped).
pub(crate) struct Postgres {
    pub(crate) options: PgConnectOptions,
    pub(crate) description: String,
    _private: Option<PgCluster>,
}

impl Postgres {
    pub(crate) async fn find_or_start() -> Result<Self> {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let options = PgConnectOptions::from_str(&url).context("DATABASE_URL")?;
        let admin = options.clone().database("postgres");
        if admin.connect().await.is_ok() {
            return Ok(Self { description: format!("{}:{}", admin.get_host(), admin.get_port()), options: admin, _private: None });
        }
        println!("   no PostgreSQL answers at {}:{}; starting a private one", admin.get_host(), admin.get_port());
        let cluster = PgCluster::start("gitlab-connector-pg")?;
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(Self {
            description: format!("private cluster in {} on port {}", cluster.dir().display(), cluster.port),
            options: cluster.options(),
            _private: Some(cluster),
        })
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) async fn recreate_database(admin: &PgConnectOptions, database: &str) -> Result<()> {
    ensure!(
        !database.is_empty() && database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--database takes letters, digits and _ only"
    );
    let mut conn = admin.connect().await.context("connecting to PostgreSQL as its owner")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))).execute(&mut conn).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&mut conn).await?;
    Ok(())
}

/// The connector with every role, in this process, on a port of its own.
pub(crate) struct Connector {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    auth: AuthConfig,
    secret: SecretString,
    owner: PgConnectOptions,
    keys: MasterKeyRing,
}

impl Connector {
    /// The connector's handle for the run, and the configuration to serve it with.
    pub(crate) fn new(owner: &PgConnectOptions) -> Result<(Self, Config)> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        // The operator's keys when given, so that the database a run leaves can be opened
        // afterwards (`serve`, `connections show`); otherwise keys that live for this run only.
        let secret = SecretString::from(crate::config::var("JWT_HS256_SECRET").unwrap_or_else(|| connector_crypto::random_token(32)));
        let auth = AuthConfig {
            hs256_secret: Some(secret.clone()),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: connector_api::auth::JwksRefresh::default(),
            issuer: "coworker".into(),
            audience: "gitlab-connector".into(),
            tenant_claim: "tenant_id".into(),
        };
        let keys = MasterKeyRing::parse(&crate::config::var("MASTER_KEYS").unwrap_or_else(|| MasterKeyRing::generate_entry(1)))
            .context("MASTER_KEYS")?;
        let config = Config {
            app_env: AppEnv::Development,
            database: owner.clone(),
            database_app: None,
            database_max_connections: 16,
            migrate_on_start: false,
            listen_addr: format!("127.0.0.1:{port}"),
            public_url: base.parse()?,
            auth: auth.clone(),
            master_keys: keys.clone(),
            limits: ApiLimits::default(),
            server: crate::config::DEFAULT_SERVER_LIMITS,
            // Local only: nothing but this machine reaches the demo.
            metrics_token: None,
            gitlab_url_allowlist: "127.0.0.1/32:*".into(),
            gitlab_url_public_ports: gitlab_client::DEFAULT_PUBLIC_PORTS.to_vec(),
            cors_origins: Vec::new(),
            worker: WorkerSettings {
                concurrency: 4,
                grace: Duration::from_secs(10),
                backfill_slice: Duration::from_secs(5),
                catch_up_every: Duration::from_secs(15 * 60),
                reconcile_every: crate::config::DEFAULT_RECONCILE_INTERVAL,
                token_check_every: Duration::from_secs(24 * 3600),
                token_rotation_lease: connector_worker::DEFAULT_TOKEN_ROTATION_LEASE,
                heartbeat: Duration::from_secs(5),
                tenant_concurrency: 2,
                gitlab_max_response_bytes: gitlab_client::DEFAULT_MAX_RESPONSE_BYTES,
                outage_patience: connector_worker::DEFAULT_OUTAGE_PATIENCE,
            },
        };
        Ok((Self { base, http: reqwest::Client::new(), auth, secret, owner: owner.clone(), keys }, config))
    }

    pub(crate) async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the connector did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn token(&self, tenant: &str) -> Result<String> {
        Ok(issue_hs256(&self.secret, &self.auth, &TenantId::parse(tenant)?, Duration::from_secs(3600)))
    }

    pub(crate) async fn get(&self, path: &str, tenant: &str) -> Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(self.token(tenant)?).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        ensure!(status.is_success(), "GET {path} as {tenant}: {status} {body}");
        Ok(body)
    }

    pub(crate) async fn status_of(&self, path: &str, tenant: &str) -> Result<u16> {
        Ok(self.http.get(format!("{}{path}", self.base)).bearer_auth(self.token(tenant)?).send().await?.status().as_u16())
    }

    /// A store on the demo database, to read a tenant's data for the ground-truth check.
    pub(crate) async fn store(&self) -> Result<Store> {
        Ok(Store::connect(connector_store::app_connect_options(&self.owner), 2, Arc::new(self.keys.clone())).await?)
    }
}
