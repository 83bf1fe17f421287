//! Applying a delivery is a trace of its own, linked to the trace of the request that received
//! it. (Its own test binary: it installs a global tracing subscriber.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_ingest::{IngestState, ProcessorConfig, router, run_processor};
use connector_store::{connections, hooks};
use connector_test_support::{app_store, new_connection, spans, tenant};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::Notify;

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn processing_links_to_the_receiving_request(owner: PgPool) {
    spans();
    let store = app_store(&owner, 4).await;
    let mut tx = store.tenant_tx(&tenant()).await.unwrap();
    let c = connections::insert(&mut tx, store.keys(), new_connection(vec![201])).await.unwrap();
    let (hook, secrets) = hooks::ensure(&mut tx, store.keys(), c.id, connector_store::hooks::HookScope::Project, 101).await.unwrap();
    tx.commit().await.unwrap();

    let wake = Arc::new(Notify::new());
    let app = router(IngestState::new(store.clone(), wake.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/gitlab/{}", listener.local_addr().unwrap(), hook.id);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tokio::spawn(run_processor(
        store.clone(),
        wake,
        ProcessorConfig { poll: Duration::from_millis(50), ..Default::default() },
        std::future::pending(),
    ));

    let body = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhook-issue.json")).unwrap();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("x-gitlab-token", secrets.token.expose_secret())
        .header("x-gitlab-event", "Issue Hook")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    let (webhook, delivery) = loop {
        let finished = spans().get_finished_spans().unwrap();
        let webhook = finished.iter().find(|s| s.name.starts_with("POST /webhooks/gitlab")).cloned();
        let delivery = finished.iter().find(|s| s.name == "delivery").cloned();
        if let (Some(w), Some(d)) = (webhook, delivery) {
            break (w, d);
        }
        assert!(Instant::now() < deadline, "spans: {:?}", finished.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(delivery.span_context.trace_id(), webhook.span_context.trace_id(), "processing is a trace of its own");
    let linked: Vec<_> = delivery.links.iter().map(|l| l.span_context.trace_id()).collect();
    assert_eq!(linked, vec![webhook.span_context.trace_id()], "processing links to the receipt");
}
