//! Setup that the integration tests of several crates share (store, worker, ingest, api,
//! gitlab-client): one copy of each step, so that what "a test store" or "a test connection" is
//! stays the same everywhere.
//!
//! Every helper panics on failure: a test whose setup fails has nothing to report but the panic.
//!
//! gitlab-sim's own tests do not use this crate: it depends on gitlab-sim, and the simulator's
//! suite starts its simulator itself (wrapped with its HTTP client), keeping gitlab-sim's tests
//! free of the database stack this crate brings.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use connector_crypto::MasterKeyRing;
use connector_store::connections::{self, NewConnection};
use connector_store::{Store, TenantId, app_connect_options};
use gitlab_sim::{Dataset, SimConfig, SimHandle, Simulator};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

/// The store as the worker and the ingest service open it (the application's role, not the
/// owner `#[sqlx::test]` hands out), over the test's database, with a master key ring of its own.
/// `max_connections` is the pool size: tests that run many jobs at once need more.
pub async fn app_store(owner: &PgPool, max_connections: u32) -> Store {
    app_store_with(owner, max_connections, fresh_keys()).await
}

/// [`app_store`] with the given key ring: for a second store over the same data (which must read
/// what the first encrypted), or for tests of key rotation.
pub async fn app_store_with(owner: &PgPool, max_connections: u32, keys: Arc<MasterKeyRing>) -> Store {
    Store::connect(app_connect_options(&owner.connect_options()), max_connections, keys).await.unwrap()
}

/// A master key ring of one newly generated key (version 1).
pub fn fresh_keys() -> Arc<MasterKeyRing> {
    Arc::new(MasterKeyRing::parse(&MasterKeyRing::generate_entry(1)).unwrap())
}

/// The tenant a test acts as when it needs only one.
pub fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// A connection's settings as the tests need them when its GitLab is never called: a GitLab URL
/// nothing answers at, a token that opens nothing, history from 2024 on. `groups_list` is given
/// because some tests match it against the data they seed.
pub fn new_connection(groups_list: Vec<i64>) -> NewConnection {
    NewConnection {
        gitlab_url: "https://gitlab.example.com".into(),
        groups_list,
        projects_list: vec![],
        start_date: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        access_token: SecretString::from("glpat-test-token-0000000"),
    }
}

/// Stores `new` as a connection of `tenant` (committed: other transactions and the workers see it)
/// and returns its id.
pub async fn insert_connection(store: &Store, tenant: &TenantId, new: NewConnection) -> Uuid {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let c = connections::insert(&mut tx, store.keys(), new).await.unwrap();
    tx.commit().await.unwrap();
    c.id
}

/// A connection of [`tenant`] to group 1 whose GitLab is never called ([`new_connection`]): what
/// queue and bookkeeping tests hang their jobs and rows on.
pub async fn connection(store: &Store) -> Uuid {
    insert_connection(store, &tenant(), new_connection(vec![1])).await
}

/// Every span this test process finishes, exported to memory as it ends. The first call installs
/// the process's global tracing subscriber, so a test binary that reads its traces is a binary of
/// its own (no other global subscriber may be set in it).
#[cfg(feature = "spans")]
pub fn spans() -> &'static opentelemetry_sdk::trace::InMemorySpanExporter {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    static EXPORTER: std::sync::OnceLock<InMemorySpanExporter> = std::sync::OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        exporter
    })
}

/// A simulator over `dataset` serving on a free loopback port; its `base_url` says where.
pub async fn simulator(dataset: Dataset, config: SimConfig) -> SimHandle {
    Simulator::new(dataset, config).spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind the simulator")
}
