//! Applies stored deliveries in the background: each in its tenant's transaction, tenants in
//! parallel, one tenant's deliveries in the order they arrived. A crash between receipt and
//! apply loses nothing: the delivery stays `received` until a processor finishes it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use connector_store::deliveries::{self, Pending};
use connector_store::jobs::{self, Job};
use connector_store::{Store, TenantId, connections};
use connector_telemetry::metrics::{self, Delivery};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::apply::{self, Outcome};

#[derive(Debug, Clone, Copy)]
pub struct ProcessorConfig {
    /// How often to look for work when nothing wakes the processor (deliveries received by
    /// other pods, retries coming due).
    pub poll: Duration,
    /// Tenants processed at once.
    pub parallel_tenants: usize,
    /// Attempts before a delivery that keeps failing is marked `failed`.
    pub max_attempts: i32,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self { poll: Duration::from_millis(250), parallel_tenants: 8, max_attempts: 8 }
    }
}

pub async fn run_processor(store: Store, wake: Arc<Notify>, config: ProcessorConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        match deliveries::due(&store, 500).await {
            Ok(due) if !due.is_empty() => {
                process_batch(&store, due, config).await;
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not look for deliveries; retrying"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
}

async fn process_batch(store: &Store, due: Vec<(TenantId, i64)>, config: ProcessorConfig) {
    let mut by_tenant: BTreeMap<String, (TenantId, Vec<i64>)> = BTreeMap::new();
    for (tenant, id) in due {
        by_tenant.entry(tenant.as_str().to_owned()).or_insert_with(|| (tenant, Vec::new())).1.push(id);
    }
    let mut running = tokio::task::JoinSet::new();
    for (_, (tenant, ids)) in by_tenant {
        if running.len() >= config.parallel_tenants {
            running.join_next().await;
        }
        let store = store.clone();
        running.spawn(async move {
            for id in ids {
                // Applying a delivery is a trace of its own (it happens after GitLab got its
                // answer), linked to the trace of the request that received it.
                let span = tracing::info_span!(
                    parent: None,
                    "delivery",
                    tenant = %tenant,
                    delivery = id,
                    connection = tracing::field::Empty,
                );
                if let Err(error) = process_one(&store, &tenant, id, config).instrument(span.clone()).await {
                    tracing::warn!(parent: &span, %error, "delivery processing failed");
                }
            }
        });
    }
    while running.join_next().await.is_some() {}
}

async fn process_one(store: &Store, tenant: &TenantId, id: i64, config: ProcessorConfig) -> connector_store::Result<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    let Some(pending) = deliveries::claim(&mut tx, id).await? else { return Ok(()) };
    let span = tracing::Span::current();
    span.record("connection", tracing::field::display(pending.connection_id));
    connector_telemetry::link_to_traceparent(&span, pending.traceparent.as_deref());
    let result = apply_pending(&mut tx, &pending).await;
    match result {
        Ok(outcome) => {
            let (status, reason, result) = match &outcome {
                Outcome::Applied => ("applied", None, Delivery::Applied),
                Outcome::AppliedNeedsFetch(fetch) => {
                    // The payload lacks what Coworker needs: the one object is read back (a merge
                    // request hook has no merge or close time, nor the commits a push added), or
                    // a catch-up reads a push's commits beyond the 20 its payload carries. One
                    // waiting job per object or connection, however many deliveries ask.
                    let job = match &fetch.object {
                        Some(object) => Job::Refresh { connection: pending.connection_id, object: *object },
                        None => Job::CatchUp { connection: pending.connection_id },
                    };
                    jobs::enqueue_now_once(&mut tx, job).await?;
                    ("applied", Some(fetch.reason), Delivery::Applied)
                }
                Outcome::ReadBack(object) => {
                    let job = Job::Refresh { connection: pending.connection_id, object: *object };
                    jobs::enqueue_now_once(&mut tx, job).await?;
                    let reason = "the stored version is from the same second as this one; reading the object back from GitLab";
                    ("applied", Some(reason), Delivery::Applied)
                }
                Outcome::OutOfScope(reason) => ("out_of_scope", Some(reason.as_str()), Delivery::OutOfScope),
                Outcome::KeptAside(reason) => ("kept_aside", Some(reason.as_str()), Delivery::KeptAside),
            };
            deliveries::finish(&mut tx, id, status, reason).await?;
            tx.commit().await?;
            metrics::webhook_delivery(result);
            Ok(())
        }
        Err(error) => {
            drop(tx);
            let mut tx = store.tenant_tx(tenant).await?;
            let reason = format!("could not apply: {error}");
            if pending.attempts + 1 >= config.max_attempts {
                deliveries::finish(&mut tx, id, "failed", Some(&reason)).await?;
                tx.commit().await?;
                metrics::webhook_delivery(Delivery::Failed);
                Ok(())
            } else {
                let backoff = Duration::from_millis(200u64 << pending.attempts.clamp(0, 12));
                deliveries::retry_later(&mut tx, id, backoff, &reason).await?;
                tx.commit().await
            }
        }
    }
}

async fn apply_pending(tx: &mut connector_store::TenantTx, pending: &Pending) -> connector_store::Result<Outcome> {
    let connection = match connections::get(tx, pending.connection_id).await {
        Ok(c) => c,
        Err(connector_store::Error::NotFound) => return Ok(Outcome::KeptAside("the connection no longer exists".into())),
        Err(e) => return Err(e),
    };
    let (kind, payload) = match apply::parse_event(&pending.body, pending.event.as_deref()) {
        Ok(parsed) => parsed,
        Err(reason) => return Ok(Outcome::KeptAside(reason)),
    };
    // A database error aborts the transaction; the caller records the failure in a fresh one.
    apply::apply(tx, &connection, &kind, &payload).await
}
