//! PostgreSQL storage for the connector: the migrations, tenant-scoped transactions that row-level
//! security enforces, and the repositories. Every repository function takes a [`TenantTx`] first,
//! which carries the tenant both into its `WHERE` clauses and into the session setting the RLS
//! policies read, so a query that forgot the tenant filter still sees only that tenant's rows.

pub mod connections;
mod db;
pub mod dead_letters;
pub mod deliveries;
pub mod health;
pub mod hooks;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod read;
pub mod reconcile;
pub mod sync;
mod tenant;
pub mod tenants;

pub use db::{APP_ROLE, MIGRATOR, ServiceRole, Store, app_connect_options, ensure_database, migrate};
pub use tenant::{TenantId, TenantTx};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("invalid tenant id: {0}")]
    InvalidTenant(String),
    #[error("database schema is at migration {applied}, this build needs {expected}")]
    NotMigrated { applied: i64, expected: i64 },
    #[error("unsafe database role: {0}")]
    UnsafeRole(String),
    #[error(transparent)]
    Crypto(#[from] connector_crypto::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job queue: {0}")]
    Queue(String),
    /// The master key ring disagrees with what the database holds; the message says how.
    #[error("{0}")]
    KeyRing(String),
    /// A per-tenant limit would be exceeded; the message says which and what to do.
    #[error("{0}")]
    LimitReached(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
