//! `gitlab-connector`: one binary, several roles and operator commands.

mod bench;
mod config;
mod demo;
mod http;
mod local;
// Stop, restart and url serve the tests that include this file; the demo only starts a cluster.
mod ops;
#[allow(dead_code)]
mod pg_cluster;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use connector_api::AppState;
use connector_api::auth::Authenticator;
use connector_store::{ServiceRole, Store, TenantId, tenants};
use tokio::net::TcpListener;

use crate::config::Config;

#[derive(Parser)]
#[command(name = "gitlab-connector", version, about = "Connects tenants' GitLab to Coworker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: the roles given, or all of them.
    Serve {
        /// Comma-separated roles to run in this process.
        #[arg(long, value_delimiter = ',', default_value = "api,ingest,worker")]
        roles: Vec<Role>,
    },
    /// Create the database if missing and apply the migrations, as the owner (DATABASE_URL).
    Migrate,
    /// Print a JWT for a tenant, signed with the configured HS256 key, to call the API locally.
    DevToken {
        #[arg(long)]
        tenant: String,
        /// How long the token is valid, e.g. 1h, 30m.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Master key operations.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Tenant operations.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Failed (dead-lettered) jobs: list and retry.
    Jobs {
        #[command(subcommand)]
        command: ops::JobsCommand,
    },
    /// Webhook deliveries kept aside or failed: list and replay.
    Deliveries {
        #[command(subcommand)]
        command: ops::DeliveriesCommand,
    },
    /// A connection's sync state.
    Connections {
        #[command(subcommand)]
        command: ops::ConnectionsCommand,
    },
    /// Print the OpenAPI document (the committed openapi.yaml).
    Openapi,
    /// Watch the whole product work: a local PostgreSQL (found or started), the GitLab simulator,
    /// every role, two tenants connecting, backfilling and receiving live changes, and a summary
    /// with a check against the simulator's ground truth.
    Demo {
        /// A small dataset: finishes in under a minute.
        #[arg(long)]
        small: bool,
        /// The database the demo drops and creates afresh.
        #[arg(long, default_value = "gitlab_connector_demo")]
        database: String,
    },
    /// Measure throughput, memory, latency, fairness and scale against limits measured in the same
    /// run, and write them to BENCHMARKS.md. Quote figures from a release build.
    Bench(bench::BenchArgs),
    /// Run the GitLab simulator: GitLab's REST API and webhooks over a generated dataset.
    Sim {
        /// The dataset's seed: the same seed gives the same data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: std::net::SocketAddr,
        /// A small dataset that syncs in seconds, instead of a realistic one.
        #[arg(long)]
        small: bool,
        /// Serve this saved dataset (JSON) instead of generating one.
        #[arg(long, conflicts_with_all = ["seed", "small"])]
        dataset: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-wrap every tenant's data key under the newest master key, while the service runs.
    Rotate,
    /// Print a new random master key entry, VERSION:BASE64, to append to the key ring.
    Generate {
        #[arg(long)]
        version: u32,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Delete a tenant: its connections, synced data and data key.
    Delete {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// The REST API for the Coworker frontend.
    Api,
    /// The webhook endpoint GitLab delivers to, and the processor that applies deliveries.
    Ingest,
    /// The job-queue worker and the periodic scheduler.
    Worker,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            print!("{}", connector_api::openapi::yaml());
            Ok(())
        }
        Command::Keys { command: KeysCommand::Generate { version } } => {
            println!("{}", connector_crypto::MasterKeyRing::generate_entry(version));
            Ok(())
        }
        // Migrations run as a one-off job with the owner's credentials only.
        Command::Migrate => {
            let owner = init(config::owner_database)?;
            connector_store::ensure_database(&owner).await?;
            connector_store::migrate(&owner).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Demo { small, database } => {
            // The demo prints its own story; the service's logs only when asked (RUST_LOG).
            init_logs("warn", || Ok(()))?;
            demo::run(small, &database).await
        }
        Command::Bench(args) => {
            init_logs("warn", || Ok(()))?;
            bench::run(args).await
        }
        Command::Sim { seed, listen, small, dataset } => {
            init(|| Ok(()))?;
            sim(seed, listen, small, dataset).await
        }
        command => {
            let config = init(Config::from_env)?;
            run(command, config).await
        }
    }
}

/// Sets up logging before reading the configuration, so that the development-mode warning the
/// configuration gives is seen.
fn init<T>(load: impl FnOnce() -> Result<T>) -> Result<T> {
    init_logs("info,sqlx=warn,tower_http=info", load)
}

/// As [`init`], with `default_filter` when `RUST_LOG` is unset.
fn init_logs<T>(default_filter: &str, load: impl FnOnce() -> Result<T>) -> Result<T> {
    connector_telemetry::init(default_filter)?;
    load()
}

async fn run(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Serve { roles } => {
            let served = serve(config, &roles, shutdown_signal()).await;
            // Spans of the last seconds are still buffered; the exporter flushes them on its own
            // thread, which this waits for.
            let _ = tokio::task::spawn_blocking(connector_telemetry::shutdown).await;
            served
        }
        Command::DevToken { tenant, ttl } => {
            let tenant = TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let Some(secret) = &config.auth.hs256_secret else {
                bail!("dev-token signs HS256 tokens: set JWT_HS256_SECRET (or unset every JWT_* key to use the development key)")
            };
            println!("{}", connector_api::auth::issue_hs256(secret, &config.auth, &tenant, ttl));
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rotate } => {
            let store = connect(&config).await?;
            let report = tenants::rotate_keys(&store).await.context("keys rotate")?;
            println!(
                "re-wrapped {} tenant data keys under master key version {}; {} were already current",
                report.rewrapped,
                config.master_keys.newest_version(),
                report.already_current
            );
            Ok(())
        }
        Command::Jobs { command } => ops::jobs(&connect(&config).await?, command).await,
        Command::Deliveries { command } => ops::deliveries(&connect(&config).await?, command).await,
        Command::Connections { command } => ops::connections(&connect(&config).await?, command).await,
        Command::Tenants { command: TenantsCommand::Delete { tenant } } => {
            let tenant = TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let store = connect(&config).await?;
            let jobs = gitlab_jobs(&config, &store)?;
            ops::delete_tenant(&store, &jobs, &tenant).await
        }
        Command::Openapi
        | Command::Migrate
        | Command::Keys { command: KeysCommand::Generate { .. } }
        | Command::Sim { .. }
        | Command::Demo { .. }
        | Command::Bench(_) => {
            unreachable!("handled before configuration")
        }
    }
}

/// The GitLab jobs as configured: what the worker runs, and what the operator's tenant deletion
/// calls to remove hooks.
fn gitlab_jobs(config: &Config, store: &Store) -> Result<connector_worker::GitLabJobs> {
    let policy = config.gitlab_url_policy()?;
    let settings = connector_worker::SyncSettings {
        public_url: config.public_url.clone(),
        backfill_slice: config.worker.backfill_slice,
        catch_up_interval: chrono::Duration::from_std(config.worker.catch_up_every)?,
        reconcile_interval: chrono::Duration::from_std(config.worker.reconcile_every)?,
        tenant_concurrency: config.worker.tenant_concurrency,
        outage_patience: config.worker.outage_patience,
        token_rotation_lease: config.worker.token_rotation_lease,
    };
    Ok(connector_worker::GitLabJobs::new(store.clone(), policy, config.gitlab_client_options(), settings))
}

/// Connects as the operator commands' and the worker's role.
async fn connect(config: &Config) -> Result<Store> {
    connect_as(config, ServiceRole::App).await
}

async fn connect_as(config: &Config, role: ServiceRole) -> Result<Store> {
    Store::connect(config.service_database(role), config.database_max_connections, Arc::new(config.master_keys.clone()))
        .await
        .with_context(|| format!("connecting to PostgreSQL as the service role (DATABASE_APP_URL, by default {})", role.name()))
}

/// Runs `roles` until `shutdown` resolves, then lets each drain.
pub(crate) async fn serve(config: Config, roles: &[Role], shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    if config.migrate_on_start {
        connector_store::ensure_database(&config.database).await.context("creating the database (DATABASE_URL)")?;
        connector_store::migrate(&config.database).await.context("applying migrations (DATABASE_URL)")?;
    }
    // A process serving only the internet-facing roles logs in with the narrower credential.
    let role = if roles.contains(&Role::Worker) { ServiceRole::App } else { ServiceRole::Api };
    let store = connect_as(&config, role).await?;
    // A ring that cannot open what other pods wrote must not serve (see connector_store::keys).
    let pod = format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "pod".into()), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    connector_store::keys::check_ring(&store, &pod).await.context("checking MASTER_KEYS against the database")?;
    let ring_store = store.clone();
    let heartbeat = {
        let (store, pod) = (store.clone(), pod.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(connector_store::keys::POD_HEARTBEAT).await;
                if let Err(error) = connector_store::keys::heartbeat(&store, &pod).await {
                    tracing::warn!(%error, "could not record this pod's key ring");
                }
            }
        })
    };
    tracing::info!(public_url = %config.public_url, ?roles, env = ?config.app_env, "starting");
    // One signal fans out to every role, each of which drains in its own way.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    // The API and the webhook endpoint share one listener when both run here.
    let mut http: Option<axum::Router> = None;
    if roles.contains(&Role::Api) {
        let auth = Arc::new(Authenticator::new(config.auth.clone()).await?);
        auth.spawn_refresh();
        let gitlab_urls = config.gitlab_url_policy()?;
        let budgets = Arc::new(connector_api::rate_limit::Budgets::new(&config.limits));
        let checks = Arc::new(connector_api::checks::Checks::new(config.gitlab_client_options()));
        let state = AppState {
            store: store.clone(),
            auth,
            limits: config.limits,
            budgets,
            cors_origins: config.cors_origins.clone(),
            gitlab_urls,
            checks,
        };
        http = Some(connector_api::router(state));
    }
    if roles.contains(&Role::Ingest) {
        let wake = Arc::new(tokio::sync::Notify::new());
        let ingest = connector_ingest::router(connector_ingest::IngestState::new(store.clone(), wake.clone()));
        http = Some(match http {
            Some(api) => ingest.merge(api),
            None => ingest,
        });
        let shutdown = until_stopped();
        let processor_store = store.clone();
        tasks.spawn(async move {
            connector_ingest::run_processor(processor_store, wake, connector_ingest::ProcessorConfig::default(), shutdown).await;
            Ok(())
        });
    }
    // Every process listens: a worker alone serves liveness and its metrics (its job and GitLab
    // counters exist only in its own memory). For a worker alone the port is not essential: when
    // it is taken (another role of a local setup on the default address), the worker still works.
    let serves_traffic = http.is_some();
    let router = http
        .unwrap_or_else(connector_api::liveness_router)
        .merge(connector_api::metrics::router(store.clone(), config.metrics_token.clone()));
    match TcpListener::bind(config.listen_addr.clone()).await {
        Ok(listener) => {
            tracing::info!(addr = %listener.local_addr()?, "serving");
            let shutdown = until_stopped();
            let limits = config.server;
            tasks.spawn(async move { http::serve(listener, router, limits, shutdown).await.context("HTTP server") });
        }
        Err(error) if !serves_traffic => {
            tracing::error!(addr = %config.listen_addr, %error, "cannot listen: this worker serves no liveness or metrics (set LISTEN_ADDR)");
        }
        Err(error) => return Err(error).with_context(|| format!("binding {}", config.listen_addr)),
    }
    if roles.contains(&Role::Worker) {
        let jobs = gitlab_jobs(&config, &store)?;
        let name = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        let worker_config = connector_worker::WorkerConfig {
            name: name.clone(),
            concurrency: config.worker.concurrency,
            grace: config.worker.grace,
            heartbeat: config.worker.heartbeat,
            ..Default::default()
        };
        let shutdown = until_stopped();
        let worker_store = store.clone();
        tasks.spawn(async move { connector_worker::run_workers(worker_store, jobs, worker_config, shutdown).await.context("worker") });
        let schedule = connector_worker::ScheduleConfig {
            catch_up_every: config.worker.catch_up_every,
            token_check_every: config.worker.token_check_every,
            // A period shorter than the tick would run only once a tick.
            tick: config.worker.catch_up_every.min(config.worker.token_check_every).min(Duration::from_secs(30)),
        };
        let shutdown = until_stopped();
        tasks.spawn(async move {
            connector_worker::run_scheduler(store, schedule, name, shutdown).await;
            Ok(())
        });
    }
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    heartbeat.abort();
    if let Err(error) = connector_store::keys::leave(&ring_store, &pod).await {
        tracing::warn!(%error, "could not take this pod off the key ring list");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves the simulator until a signal, printing what a newcomer needs to query it.
async fn sim(seed: u64, listen: std::net::SocketAddr, small: bool, dataset: Option<std::path::PathBuf>) -> Result<()> {
    let dataset = match dataset {
        Some(path) => gitlab_sim::Dataset::load(&path).with_context(|| format!("loading {}", path.display()))?,
        None => gitlab_sim::Dataset::generate(seed, if small { gitlab_sim::Size::Small } else { gitlab_sim::Size::Realistic }),
    };
    let simulator = gitlab_sim::Simulator::new(dataset, gitlab_sim::SimConfig::default());
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("GitLab simulator on {url} (API {url}/api/v4, control {url}/-/sim/)");
    println!("Personal access tokens it accepts:");
    for t in simulator.token_summary() {
        let state = if t.usable {
            "usable"
        } else if t.revoked {
            "revoked"
        } else {
            "expired"
        };
        let expiry = t.expires_at.map(|d| format!("expires {d}")).unwrap_or_else(|| "no expiry".into());
        println!("  {:<28} user {:<11} scopes {:<9} {expiry}, {state}", t.value, t.username, t.scopes.join(","));
    }
    gitlab_sim::serve(listener, simulator, shutdown_signal()).await?;
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async { tokio::signal::ctrl_c().await.ok() };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => s.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<Option<()>>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining in-flight requests");
}
