//! A long storm at GitLab: 5xx, timeouts, dropped connections and 429s (another client spending
//! the same user's budget) for minutes, in the middle of a backfill. The sync slows down while it
//! lasts, never gives up on the connection, and once the storm is over finishes with exactly the
//! ground truth.
//!
//! `STORM_SECS` sets the storm's length (default 60; `STORM_SECS=600` for ten minutes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use connector_store::TenantId;
use connector_store::connections::Status;
use connector_worker::RetryPolicy;
use gitlab_client::ClientOptions;
use gitlab_sim::{Dataset, Size, Stats};
use sqlx::PgPool;

mod common;

use common::*;

/// The route the other client hammers; requests to it are not ours.
const HOG_ROUTE: &str = "/api/v4/user";
const CALM: Duration = Duration::from_secs(5);

/// Our requests (the other client's left out), by status.
fn ours(stats: &Stats) -> BTreeMap<u16, u64> {
    let mut by_status = BTreeMap::new();
    for (_, statuses) in stats.requests.iter().filter(|(route, _)| route.as_str() != HOG_ROUTE) {
        for (status, n) in statuses {
            *by_status.entry(*status).or_default() += n;
        }
    }
    by_status
}

fn total(by_status: &BTreeMap<u16, u64>) -> u64 {
    by_status.values().sum()
}

/// Requests to GitLab the shared rate budget has held back in this process so far.
fn paced() -> u64 {
    connector_telemetry::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix("gitlab_connector_gitlab_rate_limit_waits_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_long_storm_slows_the_backfill_which_then_finishes_right(owner: PgPool) {
    let storm = Duration::from_secs(std::env::var("STORM_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60));
    // Enough history that the backfill outlasts the calm start and the storm: the per-MR and
    // per-issue requests (notes, commits) are what makes a backfill long.
    let mut spec = Size::Small.spec();
    // Sized for notes and commits fetched 8 at a time on a quiet machine, where 120 of each
    // finished within the calm start.
    spec.merge_requests_per_project = 600 + storm.as_secs() as usize / 2;
    spec.issues_per_project = 600 + storm.as_secs() as usize / 2;
    let mut env = env(&owner, Dataset::generate(11, Size::Custom(spec))).await;
    env.start = chrono::Utc::now() - chrono::Duration::days(4 * 365);

    // Production's client (retries, timeouts scaled to the simulator's 3 s slow answers) and
    // production's number of job attempts with shorter delays: attempts run out sooner than in
    // production, so a storm that survives here survives there.
    let client = ClientOptions { request_timeout: Duration::from_secs(2), ..Default::default() };
    let retry = RetryPolicy { base: Duration::from_millis(500), cap: Duration::from_secs(10), ..Default::default() };
    let (stop, worker) = env.start_workers_with(env.jobs_with_client(Duration::from_secs(2), 2, client), retry, "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Backfilling, Duration::from_secs(30)).await;

    // The unthrottled pace, measured on the same backfill.
    let before = ours(&env.sim.sim.stats());
    tokio::time::sleep(CALM).await;
    let calm_requests = total(&ours(&env.sim.sim.stats())) - total(&before);
    let calm_rate = calm_requests as f64 / CALM.as_secs_f64();
    assert_eq!(env.connection("acme", id).await.status, Status::Backfilling, "the backfill ended before the storm: make it longer");

    env.sim.sim.reset_stats();
    env.sim.sim.update_config(|c| {
        c.faults.error_rate = 0.5;
        c.faults.error_statuses = vec![500, 502, 503, 504];
        c.faults.slow_rate = 0.05;
        c.faults.slow_ms = 3_000;
        c.faults.drop_rate = 0.02;
        c.rate_limit.requests = 60;
        c.rate_limit.period_secs = 3;
    });
    // The other client asks 50 times a second, unaware of us and of the limit: every 3 s window
    // runs out before it ends, for it and for us.
    let hog = {
        let url = format!("{}{HOG_ROUTE}", env.sim.base_url);
        let until = Instant::now() + storm;
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut sent = tokio::task::JoinSet::new();
            while Instant::now() < until {
                tick.tick().await;
                let request = http.get(&url).header("PRIVATE-TOKEN", OWNER_TOKEN).timeout(Duration::from_secs(1));
                sent.spawn(async move { request.send().await.is_ok() });
            }
            sent.join_all().await;
        })
    };
    let paced_before = paced();
    let storm_began = Instant::now();
    let mut statuses = BTreeMap::<&str, u32>::new();
    while storm_began.elapsed() < storm {
        let connection = env.connection("acme", id).await;
        let status = connection.status;
        assert!(
            matches!(status, Status::Backfilling | Status::Live),
            "the storm moved the connection to {status:?}: {:?}",
            connection.status_message
        );
        *statuses.entry(status.as_str()).or_default() += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    hog.await.unwrap();
    let during = env.sim.sim.stats();
    env.sim.sim.update_config(|c| {
        c.faults = Default::default();
        c.rate_limit = Default::default();
    });
    let storm_secs = storm_began.elapsed().as_secs_f64();
    let still_backfilling = env.connection("acme", id).await.status == Status::Backfilling;

    let ended = Instant::now();
    let live = env.wait_for("acme", id, Status::Live, Duration::from_secs(180) + storm / 2).await;
    let finish = ended.elapsed();
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();

    // The storm was one: GitLab failed in every way, many times, and our requests met it.
    let ours_during = ours(&during);
    let server_errors: u64 = [500, 502, 503, 504].iter().map(|s| ours_during.get(s).copied().unwrap_or(0)).sum();
    let throttled = ours_during.get(&429).copied().unwrap_or(0);
    // The limit met us either as 429s or, since the shared budget spaces our requests by the
    // RateLimit headers GitLab sends, as requests it held back until the window reset.
    let held_back = paced() - paced_before;
    assert!(
        during.injected_errors >= 50
            && during.rate_limited >= 50
            && during.injected_slow >= 3
            && server_errors >= 1
            && throttled + held_back >= 1,
        "a storm too mild to prove anything: ours {ours_during:?} ({held_back} held back by the rate budget), all {during:?}; calm {calm_rate:.1} requests/s"
    );
    assert!(still_backfilling, "the backfill finished during the storm: make it longer than STORM_SECS");
    // Backoff works: while GitLab failed, we asked far less often than when it answered.
    let storm_rate = total(&ours_during) as f64 / storm_secs;
    assert!(storm_rate < calm_rate / 3.0, "{storm_rate:.1} requests/s in the storm against {calm_rate:.1} in calm");

    // Nothing given up, nothing wrong, nothing twice.
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    let dead = connector_store::dead_letters::for_connection(&mut tx, id, 100).await.unwrap();
    assert!(dead.is_empty(), "jobs given up during the storm: {dead:?}");
    assert_eq!(live.status_message, None);
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    let want = expected(&dataset, &projects, env.start);
    assert_same(&stored(&env.store, "acme", id).await, &want, "after the storm");
    // Each page is counted with its checkpoint: a page stored twice would be counted twice.
    let counted: Vec<(String, i64)> = sqlx::query_as(
        "SELECT resource, sum(records)::bigint FROM sync_checkpoints WHERE connection_id = $1 AND resource <> 'commits' GROUP BY 1 ORDER BY 1",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let rows = [("issues", want.issues.len()), ("merge_requests", want.merge_requests.len()), ("pipelines", want.pipelines.len())];
    assert_eq!(counted, rows.map(|(r, n)| (r.to_owned(), n as i64)).to_vec(), "records counted by the checkpoints");

    let records = want.commits.len() + want.merge_requests.len() + want.issues.len() + want.notes.len() + want.pipelines.len();
    println!(
        "storm: {storm_secs:.0} s of GitLab failing ({} 5xx, {} 429, {} timeouts, {} dropped connections in all; \
         {server_errors} 5xx and {throttled} 429 of them to us, {held_back} of our requests held back by the rate budget); our pace {calm_rate:.1} requests/s calm, {storm_rate:.1} in the storm; connection {statuses:?} \
         by the second, live {finish:.1?} after the storm with {records} records equal to the ground truth, 0 duplicated, \
         0 jobs given up, 0 wrongly failed",
        during.injected_errors, during.rate_limited, during.injected_slow, during.dropped_connections,
    );
}
