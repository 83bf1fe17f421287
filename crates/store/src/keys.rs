//! What every pod's master key ring must agree on, checked at start and by `keys rotate`.
//!
//! Data keys are wrapped under one master key version at a time (`master_key_state`), and each
//! version's key is pinned by a canary the first pod holding it wrote. So a pod started with a
//! wrong key, or without a version in use, refuses to serve before it can fail a tenant's
//! request or write a data key the others cannot open; and a pod given a new version first keeps
//! wrapping under the old one until `keys rotate` has seen every live pod hold the new one.

use std::time::Duration;

use connector_crypto::{DataKey, WrappedKey};

use crate::{Error, Result, Store};

/// The tenant name canaries are bound to; tenant ids cannot contain `:`.
const CANARY: &str = "master-key:canary";
/// A pod that has not said it is alive for this long no longer counts for `keys rotate`.
pub const POD_SILENT_AFTER: Duration = Duration::from_secs(180);
/// How often a serving pod says it is alive.
pub const POD_HEARTBEAT: Duration = Duration::from_secs(60);

/// Checks the ring against the database and registers the pod as holding it. Refuses (with
/// what to do) when a version's key differs from the one the first pod with it used, when a
/// version that tenants' data keys or new data keys are wrapped under is missing from the ring.
pub async fn check_ring(store: &Store, pod: &str) -> Result<()> {
    let keys = store.keys();
    let pool = store.pool();
    for version in keys.versions() {
        let fresh = keys.wrap_with(version, CANARY, &DataKey::generate())?;
        sqlx::query("INSERT INTO master_key_canaries (version, canary) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING")
            .bind(version as i32)
            .bind(&fresh.bytes)
            .execute(pool)
            .await?;
        if canary_opens(store, version).await? == Some(false) {
            return Err(Error::KeyRing(format!(
                "MASTER_KEYS holds another key under version {version} than the pods before it used; \
                 give every pod the same entry for version {version}"
            )));
        }
    }
    let in_use: Vec<i32> = sqlx::query_scalar("SELECT system_data_key_versions()").fetch_all(pool).await?;
    // A database from before this check wraps under what its tenants use; a new one under the
    // newest version of the first pod.
    let initial = in_use.iter().copied().max().unwrap_or(keys.newest_version() as i32);
    sqlx::query("INSERT INTO master_key_state (wrap_version) VALUES ($1) ON CONFLICT (singleton) DO NOTHING")
        .bind(initial)
        .execute(pool)
        .await?;
    let wrap = wrap_version(store).await?;
    let held: Vec<i32> = keys.versions().map(|v| v as i32).collect();
    if let Some(missing) = in_use.iter().chain(std::iter::once(&(wrap as i32))).find(|v| !held.contains(v)) {
        return Err(Error::KeyRing(format!(
            "MASTER_KEYS lacks version {missing}, which data keys are wrapped under; add that entry (the ring holds {held:?})"
        )));
    }
    heartbeat(store, pod).await
}

/// Says the pod is alive, holding its ring's versions.
pub async fn heartbeat(store: &Store, pod: &str) -> Result<()> {
    let held: Vec<i32> = store.keys().versions().map(|v| v as i32).collect();
    sqlx::query(
        "INSERT INTO key_ring_pods (pod, versions, seen_at) VALUES ($1, $2, now())
         ON CONFLICT (pod) DO UPDATE SET versions = EXCLUDED.versions, seen_at = now()",
    )
    .bind(pod)
    .bind(&held)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Takes a stopping pod off the list.
pub async fn leave(store: &Store, pod: &str) -> Result<()> {
    sqlx::query("DELETE FROM key_ring_pods WHERE pod = $1").bind(pod).execute(store.pool()).await?;
    Ok(())
}

/// The version new data keys are wrapped under.
pub async fn wrap_version(store: &Store) -> Result<u32> {
    let version: i32 = sqlx::query_scalar("SELECT wrap_version FROM master_key_state").fetch_one(store.pool()).await?;
    Ok(version as u32)
}

/// Makes the ring's newest version the one data keys are wrapped under, once every pod alive
/// holds it (a pod killed without stopping counts until it has been silent for
/// [`POD_SILENT_AFTER`]).
pub async fn adopt_newest(store: &Store) -> Result<u32> {
    check_ring_versions(store).await?;
    let newest = store.keys().newest_version();
    let lacking: Vec<(String, String)> = sqlx::query_as(
        "SELECT pod, to_char(seen_at, 'YYYY-MM-DD\"T\"HH24:MI:SSOF') FROM key_ring_pods
         WHERE seen_at > now() - make_interval(secs => $2) AND NOT ($1 = ANY (versions))
         ORDER BY pod",
    )
    .bind(newest as i32)
    .bind(POD_SILENT_AFTER.as_secs_f64())
    .fetch_all(store.pool())
    .await?;
    if !lacking.is_empty() {
        let pods: Vec<String> = lacking.iter().map(|(pod, seen)| format!("{pod} (seen {seen})")).collect();
        return Err(Error::KeyRing(format!(
            "{} live pod(s) lack master key version {newest}: {}; give every pod the new entry first (a pod killed without \
             stopping stops counting {} s after it was last seen)",
            pods.len(),
            pods.join(", "),
            POD_SILENT_AFTER.as_secs()
        )));
    }
    sqlx::query("UPDATE master_key_state SET wrap_version = $1, updated_at = now()").bind(newest as i32).execute(store.pool()).await?;
    Ok(newest)
}

/// The canaries alone: the ring of the process rotating must hold the same keys as the pods.
async fn check_ring_versions(store: &Store) -> Result<()> {
    for version in store.keys().versions() {
        match canary_opens(store, version).await? {
            Some(true) => {}
            None => {
                return Err(Error::KeyRing(format!(
                    "no pod has served with master key version {version} yet; give the pods the new entry first"
                )));
            }
            Some(false) => return Err(Error::KeyRing(format!("MASTER_KEYS holds another key under version {version} than the pods use"))),
        }
    }
    Ok(())
}

/// Whether this ring's key under `version` opens that version's canary; `None` when no pod has
/// written one yet.
async fn canary_opens(store: &Store, version: u32) -> Result<Option<bool>> {
    let canary: Option<Vec<u8>> = sqlx::query_scalar("SELECT canary FROM master_key_canaries WHERE version = $1")
        .bind(version as i32)
        .fetch_optional(store.pool())
        .await?;
    Ok(canary.map(|bytes| store.keys().unwrap(CANARY, &WrappedKey { version, bytes }).is_ok()))
}
