//! Configuration from environment variables, each with a documented default (README.md's
//! configuration table lists the same names). With nothing set, the binary runs on a developer's
//! machine: development keys are generated once and kept under `DEV_STATE_DIR`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use connector_api::ApiLimits;
use connector_api::auth::{AuthConfig, JwksRefresh};
use connector_crypto::MasterKeyRing;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/gitlab_connector";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

pub struct Config {
    pub app_env: AppEnv,
    /// The schema owner: migrations and database creation.
    pub database: PgConnectOptions,
    /// The role this process logs in as (`DATABASE_APP_URL`); without it, the process kind's own
    /// role next to the owner (see [`Config::service_database`]).
    pub database_app: Option<PgConnectOptions>,
    pub database_max_connections: u32,
    pub migrate_on_start: bool,
    pub listen_addr: String,
    pub public_url: url::Url,
    pub auth: AuthConfig,
    pub master_keys: MasterKeyRing,
    pub limits: ApiLimits,
    pub server: crate::http::ServerLimits,
    /// Hosts and CIDR ranges a tenant's `gitlab_url` may point at although they are private
    /// (plain http allowed for them): the simulator, an internal GitLab.
    pub gitlab_url_allowlist: String,
    /// `METRICS_TOKEN`: the bearer token `/metrics` answers to; unset, it is open (development only).
    pub metrics_token: Option<SecretString>,
    /// `GITLAB_URL_PUBLIC_PORTS`: the ports a public GitLab URL may name.
    pub gitlab_url_public_ports: Vec<u16>,
    /// `CORS_ALLOWED_ORIGINS`: the browser origins that may call the API.
    pub cors_origins: Vec<axum::http::HeaderValue>,
    pub worker: WorkerSettings,
}

pub struct WorkerSettings {
    pub concurrency: usize,
    pub grace: Duration,
    pub backfill_slice: Duration,
    pub catch_up_every: Duration,
    /// How often a catch-up compares ids with GitLab's to find deletions GitLab sends nothing for.
    pub reconcile_every: Duration,
    pub token_check_every: Duration,
    /// How old a mark of a token rotation must be before a worker takes it for one cut off and
    /// settles it: younger, another worker may still be waiting for GitLab's answer.
    pub token_rotation_lease: Duration,
    pub heartbeat: Duration,
    pub tenant_concurrency: usize,
    /// The most of one GitLab response a worker reads.
    pub gitlab_max_response_bytes: usize,
    /// How long a sync that gets nowhere keeps retrying before its attempts count.
    pub outage_patience: Duration,
}

/// Defaults of the worker settings that decide how tenants share the workers.
pub(crate) const DEFAULT_WORKER_CONCURRENCY: usize = 4;
pub(crate) const DEFAULT_TENANT_CONCURRENCY: usize = 2;
pub(crate) const DEFAULT_BACKFILL_SLICE: Duration = Duration::from_secs(20);
/// Deleted merge requests, issues, notes and pipelines leave our data within this plus
/// CATCH_UP_INTERVAL: GitLab sends no webhook for those deletions.
pub(crate) const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(3600);

pub(crate) const DEFAULT_SERVER_LIMITS: crate::http::ServerLimits =
    crate::http::ServerLimits { max_connections: 1024, header_read_timeout: Duration::from_secs(10) };

/// Reads one variable, treating an empty value as unset.
pub(crate) fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_var<T: FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e| anyhow::anyhow!("{name}={raw:?}: {e}")),
    }
}

fn parse_duration(name: &str, default: Duration) -> Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(&raw).with_context(|| format!("{name}={raw:?} is not a duration like 30s")),
    }
}

/// Development keys, generated on first use and kept so that `serve` and `dev-token` agree.
#[derive(Serialize, Deserialize)]
struct DevKeys {
    jwt_hs256_secret: String,
    master_keys: String,
}

fn dev_state_dir() -> PathBuf {
    if let Some(dir) = var("DEV_STATE_DIR") {
        return dir.into();
    }
    match var("HOME") {
        Some(home) => Path::new(&home).join(".local/share/gitlab-connector"),
        None => PathBuf::from(".gitlab-connector"),
    }
}

fn load_or_create_dev_keys(dir: &Path) -> Result<DevKeys> {
    let path = dir.join("dev-keys.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).with_context(|| format!("{} is not a dev keys file", path.display()));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    use base64::Engine as _;
    let keys = DevKeys {
        jwt_hs256_secret: base64::engine::general_purpose::STANDARD.encode(secret),
        master_keys: MasterKeyRing::generate_entry(1),
    };
    write_private(&path, &serde_json::to_string_pretty(&keys)?)?;
    Ok(keys)
}

/// Creates the file readable by its owner only, and does not overwrite one a concurrent first
/// run already wrote.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The schema owner's connection (`DATABASE_URL`), all that `migrate` needs.
pub fn owner_database() -> Result<PgConnectOptions> {
    let url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    PgConnectOptions::from_str(&url).context("DATABASE_URL is not a PostgreSQL URL")
}

/// Comma-separated origins, each exactly `scheme://host[:port]` as a browser sends it.
fn cors_origins(list: &str) -> Result<Vec<axum::http::HeaderValue>> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let parsed = url::Url::parse(origin).ok().map(|u| u.origin().ascii_serialization());
            if parsed.as_deref() != Some(origin) {
                bail!("CORS_ALLOWED_ORIGINS: {origin:?} is not an origin like https://app.example.com (no path, no trailing slash)");
            }
            Ok(axum::http::HeaderValue::from_str(origin)?)
        })
        .collect()
}

impl Config {
    /// Which GitLab URLs tenants may name and the worker may reach.
    pub fn gitlab_url_policy(&self) -> Result<gitlab_client::UrlPolicy> {
        Ok(gitlab_client::UrlPolicy::from_allowlist(&self.gitlab_url_allowlist)
            .context("GITLAB_URL_ALLOWLIST")?
            .with_public_ports(&self.gitlab_url_public_ports))
    }

    /// How every GitLab client of this process (the worker's jobs, the API's checks) starts.
    pub fn gitlab_client_options(&self) -> gitlab_client::ClientOptions {
        gitlab_client::ClientOptions { max_response_bytes: self.worker.gitlab_max_response_bytes, ..Default::default() }
    }

    /// How this process connects as `role`: `DATABASE_APP_URL` when given (production gives each
    /// deployment its own), else that role next to the owner without a password.
    pub fn service_database(&self, role: connector_store::ServiceRole) -> PgConnectOptions {
        self.database_app.clone().unwrap_or_else(|| role.connect_options(&self.database))
    }

    pub fn from_env() -> Result<Self> {
        let app_env = match var("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => bail!("APP_ENV={other:?}: expected development or production"),
        };
        let production = app_env == AppEnv::Production;

        let database = owner_database()?;
        let database_app = match var("DATABASE_APP_URL") {
            Some(url) => Some(PgConnectOptions::from_str(&url).context("DATABASE_APP_URL is not a PostgreSQL URL")?),
            None if production => bail!("APP_ENV=production needs DATABASE_APP_URL: the service's own role, with its password"),
            None => None,
        };

        let master_keys_spec = match (var("MASTER_KEYS"), var("MASTER_KEYS_FILE")) {
            (Some(_), Some(_)) => bail!("set MASTER_KEYS or MASTER_KEYS_FILE, not both"),
            (Some(spec), None) => Some(spec),
            (None, Some(path)) => Some(std::fs::read_to_string(&path).with_context(|| format!("reading MASTER_KEYS_FILE {path}"))?),
            (None, None) => None,
        };
        let hs256_secret = var("JWT_HS256_SECRET");
        let jwks_file = var("JWT_JWKS_FILE").map(PathBuf::from);
        let jwks_url = var("JWT_JWKS_URL").map(|u| url::Url::parse(&u)).transpose().context("JWT_JWKS_URL")?;
        let no_jwt_keys = hs256_secret.is_none() && jwks_file.is_none() && jwks_url.is_none();

        let (master_keys_spec, hs256_secret) = if production {
            let Some(spec) = master_keys_spec else { bail!("APP_ENV=production refuses to start without MASTER_KEYS or MASTER_KEYS_FILE") };
            if no_jwt_keys {
                bail!("APP_ENV=production refuses to start without JWT_HS256_SECRET, JWT_JWKS_FILE or JWT_JWKS_URL");
            }
            if hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
                bail!("JWT_HS256_SECRET must be at least 32 characters in production");
            }
            (spec, hs256_secret)
        } else if master_keys_spec.is_none() || no_jwt_keys {
            let dir = dev_state_dir();
            let dev = load_or_create_dev_keys(&dir)?;
            tracing::warn!(
                keys = %dir.join("dev-keys.json").display(),
                "DEVELOPMENT MODE: using locally generated development keys; never run this way in production (set APP_ENV=production)"
            );
            (master_keys_spec.unwrap_or(dev.master_keys), hs256_secret.or(if no_jwt_keys { Some(dev.jwt_hs256_secret) } else { None }))
        } else {
            (master_keys_spec.expect("checked above"), hs256_secret)
        };
        let master_keys = MasterKeyRing::parse(&master_keys_spec).context("master key ring")?;

        let listen_addr = var("LISTEN_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let public_url = var("PUBLIC_URL").unwrap_or_else(|| format!("http://{listen_addr}"));
        let public_url = url::Url::parse(&public_url).context("PUBLIC_URL is not a URL")?;
        let metrics_token = var("METRICS_TOKEN");
        match &metrics_token {
            None if production => {
                bail!("APP_ENV=production refuses to start without METRICS_TOKEN: /metrics would be open to anyone who reaches the port")
            }
            Some(token) if production && token.len() < 32 => bail!("METRICS_TOKEN must be at least 32 characters in production"),
            _ => {}
        }

        Ok(Self {
            app_env,
            database,
            database_app,
            database_max_connections: parse_var("DATABASE_MAX_CONNECTIONS", 10)?,
            migrate_on_start: parse_var("MIGRATE_ON_START", !production)?,
            listen_addr,
            public_url,
            auth: AuthConfig {
                hs256_secret: hs256_secret.map(SecretString::from),
                jwks_file,
                jwks_url,
                jwks_refresh: JwksRefresh {
                    every: parse_duration("JWT_JWKS_REFRESH", JwksRefresh::default().every)?,
                    overlap: parse_duration("JWT_JWKS_OVERLAP", JwksRefresh::default().overlap)?,
                },
                issuer: var("JWT_ISSUER").unwrap_or_else(|| "coworker".to_owned()),
                audience: var("JWT_AUDIENCE").unwrap_or_else(|| "gitlab-connector".to_owned()),
                tenant_claim: var("JWT_TENANT_CLAIM").unwrap_or_else(|| "tenant_id".to_owned()),
            },
            master_keys,
            metrics_token: metrics_token.map(SecretString::from),
            gitlab_url_allowlist: var("GITLAB_URL_ALLOWLIST").unwrap_or_default(),
            gitlab_url_public_ports: match var("GITLAB_URL_PUBLIC_PORTS") {
                None => gitlab_client::DEFAULT_PUBLIC_PORTS.to_vec(),
                Some(list) => list
                    .split(',')
                    .map(|p| p.trim().parse::<u16>().ok().filter(|&p| p != 0))
                    .collect::<Option<Vec<u16>>>()
                    .context("GITLAB_URL_PUBLIC_PORTS must be a comma-separated list of ports")?,
            },
            cors_origins: cors_origins(var("CORS_ALLOWED_ORIGINS").as_deref().unwrap_or_default())?,
            worker: WorkerSettings {
                concurrency: parse_var("WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY)?,
                grace: parse_duration("SHUTDOWN_GRACE", Duration::from_secs(30))?,
                backfill_slice: parse_duration("BACKFILL_SLICE", DEFAULT_BACKFILL_SLICE)?,
                catch_up_every: parse_duration("CATCH_UP_INTERVAL", Duration::from_secs(15 * 60))?,
                reconcile_every: parse_duration("RECONCILE_INTERVAL", DEFAULT_RECONCILE_INTERVAL)?,
                token_check_every: parse_duration("TOKEN_CHECK_INTERVAL", Duration::from_secs(24 * 3600))?,
                token_rotation_lease: parse_duration("TOKEN_ROTATION_LEASE", connector_worker::DEFAULT_TOKEN_ROTATION_LEASE)?,
                heartbeat: parse_duration("WORKER_HEARTBEAT", Duration::from_secs(10))?,
                tenant_concurrency: parse_var("TENANT_CONCURRENCY", DEFAULT_TENANT_CONCURRENCY)?,
                gitlab_max_response_bytes: parse_var("GITLAB_MAX_RESPONSE_BYTES", gitlab_client::DEFAULT_MAX_RESPONSE_BYTES)?,
                outage_patience: parse_duration("SYNC_OUTAGE_PATIENCE", connector_worker::DEFAULT_OUTAGE_PATIENCE)?,
            },
            limits: ApiLimits {
                body_limit_bytes: parse_var("BODY_LIMIT_BYTES", ApiLimits::default().body_limit_bytes)?,
                request_timeout: parse_duration("REQUEST_TIMEOUT", ApiLimits::default().request_timeout)?,
                max_connections_per_tenant: parse_var("TENANT_MAX_CONNECTIONS", ApiLimits::default().max_connections_per_tenant)?,
                requests_per_second: parse_var("API_RATE_LIMIT", ApiLimits::default().requests_per_second)?,
                request_burst: parse_var("API_RATE_BURST", ApiLimits::default().request_burst)?,
            },
            server: crate::http::ServerLimits {
                max_connections: parse_var("MAX_CONNECTIONS", DEFAULT_SERVER_LIMITS.max_connections)?,
                header_read_timeout: parse_duration("HEADER_READ_TIMEOUT", DEFAULT_SERVER_LIMITS.header_read_timeout)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::cors_origins;

    #[test]
    fn cors_origins_are_exact_origins() {
        let parsed = cors_origins(" https://app.coworker.example, http://localhost:3000 ,").unwrap();
        assert_eq!(parsed, ["https://app.coworker.example", "http://localhost:3000"]);
        assert!(cors_origins("").unwrap().is_empty());
        for bad in ["https://app.example.com/", "https://app.example.com/page", "app.example.com", "*"] {
            let error = cors_origins(bad).unwrap_err().to_string();
            assert!(error.contains("CORS_ALLOWED_ORIGINS"), "{bad}: {error}");
        }
    }
}
