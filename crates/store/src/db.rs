use std::sync::{Arc, LazyLock};
use std::time::Duration;

use connector_crypto::MasterKeyRing;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::tenant::{TenantId, TenantTx};
use crate::{Error, Result};

/// Every migration the service needs: the job queue's (apalis, in its own `apalis` schema) and
/// ours, in one history, so that a single `migrate` and every `#[sqlx::test]` database get both.
/// Ours come after the queue's and grant the service role what it needs there.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut all = apalis_postgres::PostgresStorage::migrations().migrations.into_owned();
    all.extend(OWN_MIGRATIONS.migrations.iter().cloned());
    Migrator::with_migrations(all)
});

static OWN_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations");

/// The role the worker, the operator commands and a process running every role connect as. The
/// first migration creates it (without a password, which suits trust or certificate auth;
/// production sets one and names it in `DATABASE_APP_URL`).
pub const APP_ROLE: &str = "gitlab_connector_app";

/// The login roles of the service, one per process kind (see the process_roles migration for what
/// each may do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceRole {
    /// The API and ingest pods, which face the internet: one tenant at a time, and across tenants
    /// only routing a given webhook endpoint, due deliveries and anonymous figures.
    Api,
    /// [`APP_ROLE`]: also the scheduler's and key rotation's cross-tenant functions and the
    /// whole job queue.
    App,
}

impl ServiceRole {
    pub fn name(self) -> &'static str {
        match self {
            ServiceRole::Api => "gitlab_connector_api",
            ServiceRole::App => APP_ROLE,
        }
    }

    /// The role's connection options when only the owner's URL is known: the same server and
    /// database, as this role, without a password.
    pub fn connect_options(self, owner: &PgConnectOptions) -> PgConnectOptions {
        owner.clone().username(self.name()).password("")
    }
}

/// [`ServiceRole::App`]'s connection options next to `owner`.
pub fn app_connect_options(owner: &PgConnectOptions) -> PgConnectOptions {
    ServiceRole::App.connect_options(owner)
}

/// Creates the database named in `owner` if it does not exist yet, connecting to the server's
/// `postgres` database to do so.
pub async fn ensure_database(owner: &PgConnectOptions) -> Result<()> {
    let Some(name) = owner.get_database().map(str::to_owned) else { return Ok(()) };
    match owner.connect().await {
        Ok(conn) => return Ok(conn.close().await?),
        // 3D000: invalid_catalog_name, the database does not exist.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(e.into()),
    }
    let mut admin = owner.clone().database("postgres").connect().await?;
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut admin).await {
        // 42P04: duplicate_database, another process created it meanwhile.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        Err(e) => return Err(e.into()),
        Ok(_) => tracing::info!(database = %name, "created database"),
    }
    Ok(admin.close().await?)
}

/// Applies the migrations as the owner. Concurrent callers are serialized by sqlx's advisory lock.
pub async fn migrate(owner: &PgConnectOptions) -> Result<()> {
    let mut conn = owner.connect().await?;
    MIGRATOR.run(&mut conn).await?;
    Ok(conn.close().await?)
}

/// How long PostgreSQL lets a session of ours sit idle inside a transaction before ending it.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "60s";

/// The service's handle on the database: a pool connected as an unprivileged role, and the
/// master key ring that unwraps tenant data keys.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    keys: Arc<MasterKeyRing>,
}

impl Store {
    /// Connects and refuses a role that would bypass row-level security.
    pub async fn connect(options: PgConnectOptions, max_connections: u32, keys: Arc<MasterKeyRing>) -> Result<Self> {
        // A future cancelled while its `BEGIN` is in flight (a worker shutting down, a request
        // timing out) can return its connection to the pool inside a transaction sqlx does not
        // know about; later statements on it then run in that transaction and hold their row
        // locks indefinitely (seen: the shared rate budget's row, stalling every request). The
        // server ends any session idle inside a transaction this long; nothing of ours stays
        // idle in one (no transaction of ours waits on GitLab), so only such a stray
        // session is ever ended, and the pool replaces it.
        let options = options.options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT)]);
        let pool =
            PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(5)).connect_with(options).await?;
        Self::from_pool(pool, keys).await
    }

    pub async fn from_pool(pool: PgPool, keys: Arc<MasterKeyRing>) -> Result<Self> {
        let (user, superuser, bypass, owns_tables): (String, bool, bool, bool) = sqlx::query_as(
            "SELECT current_user::text, rolsuper, rolbypassrls,
                    EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public'
                            AND tableowner = current_user AND tablename = 'gitlab_connections')
             FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await?;
        if superuser || bypass || owns_tables {
            return Err(Error::UnsafeRole(format!(
                "the service must not connect as {user:?}: superusers, BYPASSRLS roles and the \
                 tables' owner skip row-level security; connect as {APP_ROLE} (DATABASE_APP_URL)"
            )));
        }
        Ok(Self { pool, keys })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn keys(&self) -> &MasterKeyRing {
        &self.keys
    }

    pub async fn tenant_tx(&self, tenant: &TenantId) -> Result<TenantTx> {
        TenantTx::begin(&self.pool, tenant).await
    }

    /// Ready when the database answers and holds every migration this build knows.
    pub async fn readiness(&self) -> Result<()> {
        let expected = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let mut conn: sqlx::pool::PoolConnection<sqlx::Postgres> = self.pool.acquire().await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn as &mut PgConnection)
            .await?;
        match applied {
            Some(v) if v >= expected => Ok(()),
            applied => Err(Error::NotMigrated { applied: applied.unwrap_or(0), expected }),
        }
    }
}
