//! The service killed with SIGKILL at seeded random moments: the worker, and the process that
//! serves the API and the webhook endpoint, first while a connection backfills, then while
//! GitLab sends a burst of webhooks. Each victim is started again at once (the API on the same
//! port, where GitLab goes on delivering). At the end the tenant's data equals the simulator's
//! ground truth, nothing is stored twice, and every delivery we answered 2xx was applied.
//!
//! GitLab does not retry a delivery that failed (nor does the simulator): what it sent while
//! the endpoint was down reaches us through the periodic catch-up, which the test waits for.
//!
//! `KILL_POINTS` sets the kills per phase (default 20), `KILL_SEED` the seed of their moments
//! and victims (default 20261125); both are printed, with every kill.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Api, Running, SimControl};
use connector_crypto::MasterKeyRing;
use gitlab_sim::{Dataset, DeliveryConfig, SimConfig, Simulator, Size};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

const DEFAULT_SEED: u64 = 20261125;
const TENANT: &str = "acme";
const GROUP: u64 = 1;

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator: the seed alone decides every moment and victim.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// How long the victims run before the next kill: long enough to get work done, short
    /// enough that it is cut off mid-way.
    fn pause(&mut self) -> Duration {
        Duration::from_millis(300 + self.next() % 1200)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    ApiIngest,
    Worker,
}

impl Victim {
    fn roles(self) -> &'static str {
        match self {
            Victim::ApiIngest => "api,ingest",
            Victim::Worker => "worker",
        }
    }
}

/// How a process of either deployment is started.
struct Launcher {
    database_url: String,
    master_keys: String,
    work: PathBuf,
    listen: String,
    public_url: String,
    started: usize,
}

impl Launcher {
    fn spawn(&mut self, victim: Victim) -> Running {
        self.started += 1;
        let log = std::fs::File::create(self.work.join(format!("{}-{}.log", victim.roles(), self.started))).unwrap();
        // The worker's own port does not matter; the API must come back where GitLab delivers.
        let listen = if victim == Victim::ApiIngest { self.listen.as_str() } else { "127.0.0.1:0" };
        let mut command =
            common::serve(victim.roles(), &self.database_url, &self.master_keys, &self.work.join("state"), listen, &self.public_url);
        // Short slices, beats and catch-up periods put many checkpoints, job hand-overs and
        // repairs inside the seconds between kills.
        command
            .env("BACKFILL_SLICE", "300ms")
            .env("WORKER_HEARTBEAT", "1s")
            .env("CATCH_UP_INTERVAL", "2s")
            .env("DATABASE_MAX_CONNECTIONS", "4")
            .stderr(log);
        Running(command.spawn().unwrap())
    }
}

/// The two deployments, one process each.
struct Service {
    launcher: Launcher,
    api: Running,
    worker: Running,
}

impl Service {
    fn kill_and_restart(&mut self, victim: Victim) {
        let slot = match victim {
            Victim::ApiIngest => &mut self.api,
            Victim::Worker => &mut self.worker,
        };
        slot.kill9();
        *slot = self.launcher.spawn(victim);
    }
}

#[derive(Debug)]
struct Kill {
    victim: Victim,
    status: String,
}

async fn status(owner: &PgPool, connection: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM gitlab_connections WHERE id = $1").bind(connection).fetch_one(owner).await.unwrap()
}

/// Kills `points` times at seeded moments, each time one victim picked by the seed.
async fn kill_at_moments(
    service: &mut Service,
    moments: &mut Moments,
    phase: &str,
    points: usize,
    owner: &PgPool,
    connection: Uuid,
) -> Vec<Kill> {
    let mut kills = Vec::new();
    for point in 0..points {
        let after = moments.pause();
        let victim = if moments.below(2) == 0 { Victim::ApiIngest } else { Victim::Worker };
        tokio::time::sleep(after).await;
        let status = status(owner, connection).await;
        service.kill_and_restart(victim);
        println!("{phase} kill {point}: SIGKILL {} after {after:?} while {status}", victim.roles());
        kills.push(Kill { victim, status });
    }
    kills
}

fn assert_both_victims(kills: &[Kill]) {
    let api = kills.iter().filter(|k| k.victim == Victim::ApiIngest).count();
    assert!(kills.len() < 2 || (api > 0 && api < kills.len()), "the seed picked one victim only: {kills:?}");
}

fn victims(kills: &[Kill]) -> String {
    let api = kills.iter().filter(|k| k.victim == Victim::ApiIngest).count();
    format!("api+ingest {api}, worker {}", kills.len() - api)
}

/// What the frontend sees while it polls the connection: answers, refusals while the API is
/// down, and server errors (there must be none).
#[derive(Debug, Default)]
struct Polls {
    answered: usize,
    down: usize,
    server_errors: Vec<u16>,
}

async fn poll_connection(base: String, id: String, stop: Arc<AtomicBool>) -> Polls {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut polls = Polls::default();
    while !stop.load(Ordering::Relaxed) {
        match http.get(format!("{base}/v1/connections/{id}")).bearer_auth(common::token(TENANT)).send().await {
            Ok(r) if r.status().is_server_error() => polls.server_errors.push(r.status().as_u16()),
            Ok(r) => {
                assert_eq!(r.status(), 200, "GET /v1/connections/{id}");
                polls.answered += 1;
            }
            Err(_) => polls.down += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    polls
}

/// Each table the connector fills, as comparable keys: ids, and the state that later events
/// change (so a lost update shows as much as a lost row).
const TABLES: [(&str, &str); 7] = [
    ("projects", "SELECT gitlab_id::text FROM projects WHERE connection_id = $1"),
    ("commits", "SELECT project_id || ':' || sha FROM commits WHERE connection_id = $1"),
    (
        "merge_requests",
        "SELECT project_id || ':' || iid || ':' || state || ':' || (extract(epoch FROM gitlab_updated_at) * 1000)::bigint
         FROM merge_requests WHERE connection_id = $1",
    ),
    ("merge_request_commits", "SELECT project_id || ':' || mr_iid || ':' || sha FROM merge_request_commits WHERE connection_id = $1"),
    (
        "issues",
        "SELECT project_id || ':' || iid || ':' || state || ':' || (extract(epoch FROM gitlab_updated_at) * 1000)::bigint
         FROM issues WHERE connection_id = $1",
    ),
    ("notes", "SELECT project_id || ':' || gitlab_id FROM notes WHERE connection_id = $1"),
    (
        "pipelines",
        "SELECT project_id || ':' || gitlab_id || ':' || status || ':' || (extract(epoch FROM gitlab_updated_at) * 1000)::bigint
         FROM pipelines WHERE connection_id = $1",
    ),
];

/// The simulator's ground truth for the group since `start`, keyed as `TABLES` reads it.
fn ground_truth(dataset: &Dataset, start: DateTime<Utc>) -> BTreeMap<&'static str, BTreeSet<String>> {
    let groups: BTreeSet<u64> = std::iter::once(GROUP).chain(dataset.descendants(GROUP)).collect();
    let mut want: BTreeMap<&'static str, BTreeSet<String>> = TABLES.iter().map(|(t, _)| (*t, BTreeSet::new())).collect();
    let mut add = |table: &'static str, key: String| {
        want.get_mut(table).unwrap().insert(key);
    };
    for p in dataset.projects.iter().filter(|p| groups.contains(&p.namespace_id)) {
        let id = p.id;
        add("projects", id.to_string());
        let t = dataset.synced_since(id, start).expect("listed");
        t.commits.iter().for_each(|c| add("commits", format!("{id}:{}", c.id)));
        for mr in &t.merge_requests {
            add("merge_requests", format!("{id}:{}:{}:{}", mr.iid, mr.state.as_str(), mr.updated_at.timestamp_millis()));
            mr.commit_shas.iter().for_each(|sha| add("merge_request_commits", format!("{id}:{}:{sha}", mr.iid)));
        }
        for i in &t.issues {
            add("issues", format!("{id}:{}:{}:{}", i.iid, i.state.as_str(), i.updated_at.timestamp_millis()));
        }
        t.notes.iter().for_each(|n| add("notes", format!("{id}:{}", n.id)));
        for pl in &t.pipelines {
            add("pipelines", format!("{id}:{}:{}:{}", pl.id, pl.status, pl.updated_at.timestamp_millis()));
        }
    }
    want
}

/// Compares every table with the ground truth; returns the rows compared, or what differs.
async fn compare(owner: &PgPool, connection: Uuid, truth: &BTreeMap<&'static str, BTreeSet<String>>) -> Result<(usize, String), String> {
    let mut problems = Vec::new();
    let mut figures = Vec::new();
    let mut compared = 0;
    for (table, query) in TABLES {
        let rows: Vec<String> = sqlx::query_scalar(query).bind(connection).fetch_all(owner).await.unwrap();
        let want = &truth[table];
        let got: BTreeSet<&String> = rows.iter().collect();
        let mut seen = BTreeSet::new();
        let twice: Vec<&String> = rows.iter().filter(|r| !seen.insert(*r)).collect();
        let lost: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<&String> = got.iter().copied().filter(|r| !want.contains(*r)).collect();
        if !(twice.is_empty() && lost.is_empty() && extra.is_empty()) {
            problems.push(format!(
                "{table}: {} lost (e.g. {:?}), {} stored twice (e.g. {:?}), {} not in GitLab or stale (e.g. {:?})",
                lost.len(),
                &lost[..lost.len().min(3)],
                twice.len(),
                &twice[..twice.len().min(3)],
                extra.len(),
                &extra[..extra.len().min(3)]
            ));
        }
        assert!(!want.is_empty() || table == "merge_request_commits", "{table}: an empty ground truth proves nothing");
        compared += want.len();
        figures.push(format!("{table} {}", want.len()));
    }
    if problems.is_empty() { Ok((compared, figures.join(", "))) } else { Err(problems.join("\n")) }
}

/// A project of the group that the burst changes.
#[derive(Clone)]
struct Target {
    id: u64,
    branch: String,
    issues: bool,
    jobs: bool,
}

/// Merge requests or issues the burst opened: all of them, to comment on, and those still open,
/// to close.
struct Opened {
    what: &'static str,
    noteable_type: &'static str,
    path: &'static str,
    all: Vec<(u64, u64)>,
    open: Vec<(u64, u64)>,
}

impl Opened {
    fn new(what: &'static str, noteable_type: &'static str, path: &'static str) -> Self {
        Self { what, noteable_type, path, all: Vec::new(), open: Vec::new() }
    }
}

/// Changes one lane of projects in GitLab until told to stop, each change answered only after
/// its webhooks were delivered or failed; returns how many of each kind it made.
async fn drive(gitlab: SimControl, lane: usize, targets: Vec<Target>, mut pick: Moments, stop: Arc<AtomicBool>) -> BTreeMap<String, usize> {
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds = [Opened::new("merge_request", "MergeRequest", "merge_requests"), Opened::new("issue", "Issue", "issues")];
    let mut running = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let t = targets[pick.below(targets.len())].clone();
        let p = t.id;
        let is_mr = pick.below(2) == 0;
        let kind = &mut kinds[usize::from(!is_mr)];
        let change = match pick.below(7) {
            0 if is_mr || t.issues => {
                let title = format!("Burst {lane}.{n}");
                // A merge request brings its source branch and commits with it.
                let body = if is_mr {
                    json!({"source_branch": format!("burst-{lane}-{n}"), "title": title, "commits": 1 + pick.below(2)})
                } else {
                    json!({"title": title})
                };
                let iid = gitlab.post(&format!("projects/{p}/{}", kind.path), body).await["iid"].as_u64().unwrap();
                kind.all.push((p, iid));
                kind.open.push((p, iid));
                format!("{} opened", kind.what)
            }
            1 if !kind.all.is_empty() => {
                let (p, iid) = kind.all[pick.below(kind.all.len())];
                gitlab
                    .post(
                        &format!("projects/{p}/notes"),
                        json!({"noteable_type": kind.noteable_type, "iid": iid, "body": format!("note {n}")}),
                    )
                    .await;
                format!("{} note", kind.what)
            }
            2 if !kind.open.is_empty() => {
                let (p, iid) = kind.open.swap_remove(pick.below(kind.open.len()));
                let action = if is_mr && pick.below(2) == 0 { "merge" } else { "close" };
                gitlab.post(&format!("projects/{p}/{}/{iid}/{action}", kind.path), json!({})).await;
                format!("{} {action}", kind.what)
            }
            3 if t.jobs => {
                if running.is_empty() || pick.below(2) == 0 {
                    let id = gitlab.post(&format!("projects/{p}/pipelines"), json!({"ref": t.branch, "status": "running"})).await["id"]
                        .as_u64()
                        .unwrap();
                    running.push((p, id));
                    "pipeline started".to_owned()
                } else {
                    let (p, id) = running.swap_remove(pick.below(running.len()));
                    let status = if pick.below(2) == 0 { "success" } else { "failed" };
                    gitlab.send(reqwest::Method::PUT, &format!("projects/{p}/pipelines/{id}"), json!({"status": status})).await;
                    "pipeline finished".to_owned()
                }
            }
            _ => {
                gitlab.post(&format!("projects/{p}/push"), json!({"branch": t.branch, "commits": 1 + pick.below(3)})).await;
                "push".to_owned()
            }
        };
        *made.entry(change).or_default() += 1;
    }
    made
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn killed_processes_lose_nothing_and_store_nothing_twice(owner: PgPool) {
    let points: usize = env_or("KILL_POINTS", 20);
    let seed: u64 = env_or("KILL_SEED", DEFAULT_SEED);
    println!("kill: seed {seed} (KILL_SEED), {points} kill points per phase (KILL_POINTS)");
    let mut moments = Moments(seed);

    // The history grows with the kill points, so that the backfill outlasts them: at 100 commits
    // per point a quiet machine went live after 14 of 20 kills.
    let mut spec = Size::Small.spec();
    spec.commits_per_project = 300 * points;
    spec.merge_requests_per_project = 30;
    // A self-managed GitLab's default: failing hooks are not disabled, so deliveries go on
    // arriving between the kills (GitLab.com pauses them; the catch-up covers that case).
    let config = SimConfig { delivery: DeliveryConfig { auto_disable: false, ..Default::default() }, ..Default::default() };
    let sim = Simulator::new(Dataset::generate(9, Size::Custom(spec)), config).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();

    let work = std::env::temp_dir().join(format!("gc-kill-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();
    let port = common::free_port();
    let mut launcher = Launcher {
        database_url: owner.connect_options().to_url_lossy().to_string(),
        master_keys: MasterKeyRing::generate_entry(1),
        work: work.clone(),
        listen: format!("127.0.0.1:{port}"),
        public_url: format!("http://127.0.0.1:{port}"),
        started: 0,
    };
    let api_process = launcher.spawn(Victim::ApiIngest);
    let worker_process = launcher.spawn(Victim::Worker);
    let api = Api::new(launcher.public_url.clone());
    let mut service = Service { launcher, api: api_process, worker: worker_process };
    api.wait_ready(Duration::from_secs(30)).await;

    let start = Utc::now() - chrono::Duration::days(3 * 365);
    let id = api
        .connect(
            TENANT,
            json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": GROUP.to_string(), "start_date": start.to_rfc3339(), "gitlab_url": sim.base_url}),
        )
        .await;
    let connection: Uuid = id.parse().unwrap();
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_connection(api.base.clone(), id.clone(), stop_polling.clone()));

    // Phase 1: kills while the connection validates, installs its hook and backfills.
    let started = Instant::now();
    let backfill_kills = kill_at_moments(&mut service, &mut moments, "backfill", points, &owner, connection).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while status(&owner, connection).await != "live" {
        assert!(Instant::now() < deadline, "never went live after the kills; logs in {}", work.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mid_sync = backfill_kills.iter().filter(|k| k.status != "live").count();
    println!("backfill: live {:?} after the kills began; {mid_sync} of {points} kills landed before live", started.elapsed());
    assert!(mid_sync * 4 >= points * 3, "too few kills landed mid-sync to prove anything: {backfill_kills:?}");
    assert_both_victims(&backfill_kills);
    let truth = ground_truth(&sim.sim.dataset(), start);
    let (backfilled, figures) = compare(&owner, connection, &truth).await.unwrap_or_else(|e| panic!("after the backfill kills:\n{e}"));
    println!("backfill: {backfilled} rows equal to the ground truth ({figures})");
    // Kills during hook installation did not leave a second hook behind.
    assert_eq!(sim.sim.with_dataset(|d| d.hooks.len()), 1, "one group hook, however often the install was cut short");

    // Phase 2: a burst of changes in GitLab, delivered as webhooks, while the kills go on.
    let dataset = sim.sim.dataset();
    let groups: BTreeSet<u64> = std::iter::once(GROUP).chain(dataset.descendants(GROUP)).collect();
    let targets: Vec<Target> = dataset
        .projects
        .iter()
        .filter(|p| groups.contains(&p.namespace_id) && !p.archived)
        .map(|p| Target { id: p.id, branch: p.default_branch.clone(), issues: p.issues_enabled, jobs: p.jobs_enabled })
        .collect();
    assert!(targets.iter().any(|t| t.issues) && targets.iter().any(|t| t.jobs), "the burst needs projects with issues and CI");
    // Lanes of their own projects run side by side, so deliveries overlap as in a busy GitLab.
    let lanes = 3.min(targets.len());
    let stop_burst = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = (0..lanes)
        .map(|lane| {
            let mine: Vec<Target> = targets.iter().skip(lane).step_by(lanes).cloned().collect();
            tokio::spawn(drive(SimControl::new(&sim.base_url), lane, mine, Moments(seed ^ (lane as u64 + 1)), stop_burst.clone()))
        })
        .collect();
    let burst_kills = kill_at_moments(&mut service, &mut moments, "burst", points, &owner, connection).await;
    stop_burst.store(true, Ordering::Relaxed);
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    for driver in drivers {
        for (kind, n) in driver.await.unwrap() {
            *made.entry(kind).or_default() += n;
        }
    }
    let changes: usize = made.values().sum();
    println!("burst: {changes} changes in GitLab ({made:?}) during {points} kills ({})", victims(&burst_kills));
    assert_both_victims(&burst_kills);

    // Settled: every stored delivery processed, and two catch-ups finished after the last change,
    // the second begun after it, so what the kills kept from arriving has been fetched.
    let burst_end = Utc::now();
    api.wait_ready(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut catch_ups = BTreeSet::new();
    loop {
        let synced: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT last_synced_at FROM gitlab_connections WHERE id = $1")
            .bind(connection)
            .fetch_one(&owner)
            .await
            .unwrap();
        catch_ups.extend(synced.filter(|s| *s > burst_end));
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'received'").fetch_one(&owner).await.unwrap();
        if catch_ups.len() >= 2 && waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {} catch-ups since the burst, {waiting} deliveries waiting; logs in {}",
            catch_ups.len(),
            work.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_polling.store(true, Ordering::Relaxed);
    let polls = poller.await.unwrap();

    let truth = ground_truth(&sim.sim.dataset(), start);
    let (compared, figures) = compare(&owner, connection, &truth).await.unwrap_or_else(|e| panic!("after the burst kills:\n{e}"));
    println!("burst: {compared} rows equal to the ground truth ({figures})");

    // Nothing twice in the change feed either: each object inserted once, none deleted.
    let repeated: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT entity, key::text, count(*) FROM changes WHERE connection_id = $1 AND op = 'insert' GROUP BY 1, 2 HAVING count(*) > 1 LIMIT 5",
    )
    .bind(connection)
    .fetch_all(&owner)
    .await
    .unwrap();
    assert!(repeated.is_empty(), "inserted more than once: {repeated:?}");
    let deletes: i64 = sqlx::query_scalar("SELECT count(*) FROM changes WHERE connection_id = $1 AND op = 'delete'")
        .bind(connection)
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(deletes, 0, "nothing was deleted in GitLab");

    // Every delivery GitLab saw answered 2xx is in the inbox and applied.
    let sent: Vec<Value> = reqwest::get(format!("{}/-/sim/deliveries", sim.base_url)).await.unwrap().json().await.unwrap();
    let inbox: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT dedup_key, status FROM webhook_deliveries WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&owner)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let acknowledged: Vec<&Value> =
        sent.iter().filter(|d| d["response_status"].as_u64().is_some_and(|s| (200..300).contains(&s))).collect();
    let not_applied: Vec<String> = acknowledged
        .iter()
        .filter_map(|d| {
            let key = d["idempotency_key"].as_str().unwrap();
            let status = inbox.get(key).map_or("missing", String::as_str);
            (status != "applied").then(|| format!("{} {key}: {status}", d["event"]))
        })
        .collect();
    assert!(
        not_applied.is_empty(),
        "{} acknowledged deliveries not applied: {:?}",
        not_applied.len(),
        &not_applied[..not_applied.len().min(5)]
    );
    assert!(
        acknowledged.len() >= changes / 2,
        "too few deliveries got through to prove anything: {} of {}",
        acknowledged.len(),
        sent.len()
    );
    let failed = sent.len() - acknowledged.len();
    let acknowledged_keys: BTreeSet<&str> = acknowledged.iter().map(|d| d["idempotency_key"].as_str().unwrap()).collect();
    let unacknowledged_kept = inbox.keys().filter(|k| !acknowledged_keys.contains(k.as_str())).count();
    assert!(polls.server_errors.is_empty(), "the API answered 5xx while polled: {:?}", polls.server_errors);
    println!(
        "burst: {} deliveries sent, {} answered 2xx and all applied, {failed} failed while the endpoint was down or cut off, \
         {unacknowledged_kept} stored though the 2xx never reached GitLab; the frontend's polls: {} answered, {} refused while the API was down, 0 5xx",
        sent.len(),
        acknowledged.len(),
        polls.answered,
        polls.down
    );

    println!(
        "kill: seed {seed}, {} points (backfill: {}; burst: {}), {} rows compared with the ground truth: 0 lost, 0 duplicated",
        backfill_kills.len() + burst_kills.len(),
        victims(&backfill_kills),
        victims(&burst_kills),
        backfilled + compared
    );
    drop(service);
    std::fs::remove_dir_all(&work).ok();
}
