//! PostgreSQL storage for the connector: the migrations, tenant-scoped transactions that row-level
//! security enforces, and the repositories. Every repository function takes a [`TenantTx`] first,
//! which carries the tenant both into its `WHERE` clauses and into the session setting the RLS
//! policies read, so a query that forgot the tenant filter still sees only that tenant's rows.

/// The text a closed set's variants are stored and shown as (`as_str`, `Display`), spelled as
/// its serde and sqlx names are (`snake_case`); a test compares them.
macro_rules! names {
    ($set:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $set {
            pub const ALL: &'static [$set] = &[$($set::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($set::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $set {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use names;

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

#[cfg(test)]
mod names_tests {
    use crate::connections::HookMode;
    use crate::hooks::{HookScope, HookStatus};

    /// Each closed set's `as_str` is its serde name (which the API shows and the sqlx name the
    /// database stores follows by the same `snake_case` rule).
    #[test]
    fn names_are_the_serde_names() {
        fn check<T: serde::Serialize + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(v.to_string()));
            }
        }
        check(HookScope::ALL);
        check(HookStatus::ALL);
        check(HookMode::ALL);
        check(crate::sync::Resource::ALL);
    }
}
