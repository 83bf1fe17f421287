//! Property: after any sequence of GitLab's webhook events, what is stored equals GitLab's state
//! field by field, for every type we store. Rounds of seeded random changes (merge request and
//! issue edits, state changes in the same second, merges, pushes to merge request branches and
//! to main with author dates unlike their commit dates, notes added and edited, pipelines run and
//! finished) go through the simulator's webhooks into the real binary. Once the deliveries and
//! the read-backs they ask for have settled, and before any catch-up, each object equals
//! GitLab's at the precision its hooks carry (whole seconds); after one catch-up, everything
//! equals GitLab's exactly, commits' author dates included.
//!
//! `CONVERGE_ROUNDS` (default 3) and `CONVERGE_EVENTS` (events per round, default 30) run it
//! longer; `CONVERGE_SEED` picks another sequence.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Api, Running};
use connector_crypto::MasterKeyRing;
use gitlab_sim::{Dataset, SimConfig, SimHandle, Simulator, Size};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small seeded generator (xorshift64*): the sequence of a seed is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// Times at the precision compared: whole seconds before the catch-up (hooks carry no more),
/// milliseconds after.
#[derive(Clone, Copy, PartialEq)]
enum Precision {
    Seconds,
    Millis,
}

fn at(t: Option<DateTime<Utc>>, p: Precision) -> Option<i64> {
    t.map(|t| match p {
        Precision::Seconds => t.timestamp(),
        Precision::Millis => t.timestamp_millis(),
    })
}

/// A merge request's title, state, updated, merged and closed times and merge commit.
type MergeRequestFields = (String, String, Option<i64>, Option<i64>, Option<i64>, Option<String>);
/// An issue's title, state, updated and closed times and labels.
type IssueFields = (String, String, Option<i64>, Option<i64>, Vec<String>);
/// A commit's message, committed and authored times and author.
type CommitFields = (String, Option<i64>, Option<i64>, Option<String>);

/// Every stored object of the project, field by field, in comparable form.
#[derive(Debug, PartialEq, Default)]
struct Objects {
    merge_requests: BTreeMap<i64, MergeRequestFields>,
    merge_request_commits: BTreeSet<(i64, String)>,
    issues: BTreeMap<i64, IssueFields>,
    notes: BTreeMap<i64, String>,
    pipelines: BTreeMap<i64, (String, Option<i64>)>,
    /// With author dates and authors: `None` where only a push payload was seen, until REST.
    commits: BTreeMap<String, CommitFields>,
}

fn gitlab(sim: &SimHandle, project: u64, start: DateTime<Utc>, p: Precision, with_authors: bool) -> Objects {
    let dataset = sim.sim.dataset();
    let t = dataset.synced_since(project, start).unwrap();
    let mut o = Objects::default();
    for mr in &t.merge_requests {
        o.merge_requests.insert(
            mr.iid as i64,
            (
                mr.title.clone(),
                mr.state.as_str().into(),
                at(Some(mr.updated_at), p),
                at(mr.merged_at, p),
                at(mr.closed_at, p),
                Some(mr.sha.clone()),
            ),
        );
        o.merge_request_commits.extend(mr.commit_shas.iter().map(|sha| (mr.iid as i64, sha.clone())));
    }
    for i in &t.issues {
        let mut labels = i.labels.clone();
        labels.sort();
        o.issues.insert(i.iid as i64, (i.title.clone(), i.state.as_str().into(), at(Some(i.updated_at), p), at(i.closed_at, p), labels));
    }
    o.notes.extend(t.notes.iter().map(|n| (n.id as i64, n.body.clone())));
    for pl in &t.pipelines {
        o.pipelines.insert(pl.id as i64, (pl.status.clone(), at(pl.finished_at, p)));
    }
    for c in &t.commits {
        let (authored, author) = if with_authors { (at(Some(c.authored_date), p), Some(c.author_name.clone())) } else { (None, None) };
        o.commits.insert(c.id.clone(), (c.message.clone(), at(Some(c.committed_date), p), authored, author));
    }
    o
}

async fn stored(owner: &PgPool, connection: Uuid, project: i64, p: Precision, with_authors: bool) -> Objects {
    type MrRow = (i64, String, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<String>);
    let mut o = Objects::default();
    let rows: Vec<MrRow> = sqlx::query_as(
        "SELECT iid, title, state, gitlab_updated_at, merged_at, closed_at, sha FROM merge_requests WHERE connection_id = $1 AND project_id = $2",
    )
    .bind(connection)
    .bind(project)
    .fetch_all(owner)
    .await
    .unwrap();
    for (iid, title, state, updated, merged, closed, sha) in rows {
        o.merge_requests.insert(iid, (title, state, at(updated, p), at(merged, p), at(closed, p), sha));
    }
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT mr_iid, sha FROM merge_request_commits WHERE connection_id = $1 AND project_id = $2")
            .bind(connection)
            .bind(project)
            .fetch_all(owner)
            .await
            .unwrap();
    o.merge_request_commits = rows.into_iter().collect();
    type IssueRow = (i64, String, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Vec<String>);
    let rows: Vec<IssueRow> = sqlx::query_as(
        "SELECT iid, title, state, gitlab_updated_at, closed_at, labels FROM issues WHERE connection_id = $1 AND project_id = $2",
    )
    .bind(connection)
    .bind(project)
    .fetch_all(owner)
    .await
    .unwrap();
    for (iid, title, state, updated, closed, mut labels) in rows {
        labels.sort();
        o.issues.insert(iid, (title, state, at(updated, p), at(closed, p), labels));
    }
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT gitlab_id, body FROM notes WHERE connection_id = $1 AND project_id = $2")
        .bind(connection)
        .bind(project)
        .fetch_all(owner)
        .await
        .unwrap();
    o.notes = rows.into_iter().collect();
    let rows: Vec<(i64, String, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT gitlab_id, status, finished_at FROM pipelines WHERE connection_id = $1 AND project_id = $2")
            .bind(connection)
            .bind(project)
            .fetch_all(owner)
            .await
            .unwrap();
    o.pipelines = rows.into_iter().map(|(id, status, finished)| (id, (status, at(finished, p)))).collect();
    type CommitRow = (String, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<String>);
    let rows: Vec<CommitRow> = sqlx::query_as(
        "SELECT sha, message, committed_at, authored_at, author_name FROM commits WHERE connection_id = $1 AND project_id = $2",
    )
    .bind(connection)
    .bind(project)
    .fetch_all(owner)
    .await
    .unwrap();
    for (sha, message, committed, authored, author) in rows {
        let (authored, author) = if with_authors { (at(authored, p), author) } else { (None, None) };
        o.commits.insert(sha, (message, at(committed, p), authored, author));
    }
    o
}

/// Differences, by type and key, for a message that says what diverged.
fn differences(got: &Objects, want: &Objects) -> Vec<String> {
    fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
        what: &str,
        got: &BTreeMap<K, V>,
        want: &BTreeMap<K, V>,
        out: &mut Vec<String>,
    ) {
        for (k, w) in want {
            match got.get(k) {
                Some(g) if g == w => {}
                Some(g) => out.push(format!("{what} {k:?}: stored {g:?}, GitLab {w:?}")),
                None => out.push(format!("{what} {k:?}: missing, GitLab {w:?}")),
            }
        }
        for k in got.keys().filter(|k| !want.contains_key(*k)) {
            out.push(format!("{what} {k:?}: stored, not in GitLab"));
        }
    }
    let mut out = Vec::new();
    diff("merge request", &got.merge_requests, &want.merge_requests, &mut out);
    diff("issue", &got.issues, &want.issues, &mut out);
    diff("note", &got.notes, &want.notes, &mut out);
    diff("pipeline", &got.pipelines, &want.pipelines, &mut out);
    diff("commit", &got.commits, &want.commits, &mut out);
    if got.merge_request_commits != want.merge_request_commits {
        out.push(format!(
            "merge request commits: stored only {:?}, GitLab only {:?}",
            got.merge_request_commits.difference(&want.merge_request_commits).collect::<Vec<_>>(),
            want.merge_request_commits.difference(&got.merge_request_commits).collect::<Vec<_>>()
        ));
    }
    out
}

/// A change in GitLab through the simulator's control API, answered once its webhooks are
/// delivered. A change the object's state does not allow (closing a merged merge request) is
/// refused by the simulator and skipped.
async fn change(http: &reqwest::Client, sim: &str, method: reqwest::Method, path: &str, body: Value) -> bool {
    let response = http.request(method, format!("{sim}/-/sim/{path}?wait=true")).json(&body).send().await.unwrap();
    response.status().is_success()
}

/// One random change to the project; returns what it was, for the failure message.
async fn random_change(rng: &mut Rng, http: &reqwest::Client, sim: &SimHandle, project: u64, n: usize) -> String {
    let base = &sim.base_url;
    let p = sim.sim.dataset().project(project).unwrap().clone();
    let mrs: Vec<u64> = p.merge_requests.iter().rev().take(12).map(|m| m.iid).collect();
    let issues: Vec<u64> = p.issues.iter().rev().take(12).map(|i| i.iid).collect();
    let notes: Vec<u64> = p.notes.iter().filter(|n| !n.system).rev().take(12).map(|n| n.id).collect();
    let mr = mrs[rng.below(mrs.len())];
    let issue = issues[rng.below(issues.len())];
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    let (method, path, body) = match rng.below(12) {
        0 => (put, format!("projects/{project}/merge_requests/{mr}"), json!({"title": format!("MR title {n}")})),
        1 => (post, format!("projects/{project}/merge_requests/{mr}/close"), json!({})),
        2 => (post, format!("projects/{project}/merge_requests/{mr}/reopen"), json!({})),
        3 => (post, format!("projects/{project}/merge_requests/{mr}/merge"), json!({})),
        4 => (post, format!("projects/{project}/merge_requests/{mr}/commits"), json!({"count": 1 + rng.below(2)})),
        5 => (
            put,
            format!("projects/{project}/issues/{issue}"),
            json!({"title": format!("Issue title {n}"), "labels": [format!("l{}", rng.below(3))]}),
        ),
        6 => (post, format!("projects/{project}/issues/{issue}/close"), json!({})),
        7 => (post, format!("projects/{project}/issues/{issue}/reopen"), json!({})),
        8 => {
            let (kind, iid) = if rng.below(2) == 0 { ("MergeRequest", mr) } else { ("Issue", issue) };
            (post, format!("projects/{project}/notes"), json!({"noteable_type": kind, "iid": iid, "body": format!("note {n}")}))
        }
        9 if !notes.is_empty() => {
            let note = notes[rng.below(notes.len())];
            (put, format!("projects/{project}/notes/{note}"), json!({"body": format!("edited {n}")}))
        }
        10 => {
            // Authored months before it was committed, as a rebase or a cherry-pick leaves it.
            let committed = Utc::now();
            let authored = committed - chrono::Duration::days(40 + rng.below(100) as i64);
            let body = json!({"branch": p.default_branch, "commits": 1 + rng.below(3), "authored_date": authored.to_rfc3339(), "committed_date": committed.to_rfc3339()});
            (post, format!("projects/{project}/push"), body)
        }
        _ => {
            // A pipeline that runs, and sometimes finishes within the same second.
            let pipeline =
                sim.sim.dataset().project(project).unwrap().pipelines.iter().rev().find(|pl| pl.status == "running").map(|pl| pl.id);
            match pipeline {
                Some(id) if rng.below(2) == 0 => {
                    let status = ["success", "failed"][rng.below(2)];
                    (put, format!("projects/{project}/pipelines/{id}"), json!({"status": status}))
                }
                _ => (post, format!("projects/{project}/pipelines"), json!({"ref": p.default_branch, "status": "running"})),
            }
        }
    };
    let done = change(http, base, method.clone(), &path, body.clone()).await;
    format!("{method} {path} {body}{}", if done { "" } else { " (refused)" })
}

/// Waits until every delivery is applied and no read-back or catch-up waits or runs.
async fn settle(owner: &PgPool, connection: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (received, jobs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM webhook_deliveries WHERE connection_id = $1 AND status = 'received'),
                    (SELECT count(*) FROM apalis.jobs WHERE status IN ('Pending', 'Queued', 'Running')
                       AND convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' IN ('refresh', 'catch_up'))",
        )
        .bind(connection)
        .fetch_one(owner)
        .await
        .unwrap();
        if received == 0 && jobs == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{received} deliveries and {jobs} read-backs still waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn after_any_webhook_events_stored_objects_equal_gitlabs(owner: PgPool) {
    let (rounds, events, seed) = (knob("CONVERGE_ROUNDS", 3), knob("CONVERGE_EVENTS", 30) as usize, knob("CONVERGE_SEED", 7));
    let sim = Simulator::new(Dataset::generate(3, Size::Small), SimConfig::default()).spawn(([127, 0, 0, 1], 0).into()).await.unwrap();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev_state = std::env::temp_dir().join(format!("gc-converge-{}", Uuid::new_v4()));
    let database_url = owner.connect_options().to_url_lossy().to_string();
    let mut serve = common::serve(
        "api,ingest,worker",
        &database_url,
        &MasterKeyRing::generate_entry(1),
        &dev_state,
        &format!("127.0.0.1:{port}"),
        &base,
    );
    // No catch-up but the one this test asks for: before it, only webhooks and read-backs.
    let _server = Running(serve.env("BACKFILL_SLICE", "2s").env("CATCH_UP_INTERVAL", "24h").spawn().unwrap());
    let api = Api::new(base);
    api.wait_ready(Duration::from_secs(30)).await;
    let start = "2024-01-01T00:00:00Z";
    let id = api
        .connect(
            "acme",
            json!({"access_token": "glpat-sim-owner-api-0001", "groups_list": "1", "start_date": start, "gitlab_url": sim.base_url}),
        )
        .await;
    api.wait_live("acme", &id).await;
    let connection: Uuid = id.parse().unwrap();
    let start: DateTime<Utc> = start.parse().unwrap();
    let dataset = sim.sim.dataset();
    let project = dataset
        .projects
        .iter()
        .filter(|p| p.issues_enabled && p.jobs_enabled && dataset.root_of(p.namespace_id).is_some_and(|g| g.id == 1))
        .max_by_key(|p| p.merge_requests.len())
        .unwrap()
        .id;
    assert_eq!(
        differences(
            &stored(&owner, connection, project as i64, Precision::Millis, true).await,
            &gitlab(&sim, project, start, Precision::Millis, true)
        ),
        Vec::<String>::new(),
        "after the backfill"
    );

    let http = reqwest::Client::new();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut applied = Vec::new();
    for round in 0..rounds {
        for n in 0..events {
            applied.push(random_change(&mut rng, &http, &sim, project, round as usize * events + n).await);
        }
        settle(&owner, connection).await;
        let got = stored(&owner, connection, project as i64, Precision::Seconds, false).await;
        let want = gitlab(&sim, project, start, Precision::Seconds, false);
        let diff = differences(&got, &want);
        assert!(diff.is_empty(), "round {round}, before any catch-up, after:\n{}\n\ndiffers:\n{}", applied.join("\n"), diff.join("\n"));
    }

    // One catch-up (a resync validates, finds the backfill done, and catches up): now exactly.
    let asked = Utc::now();
    let (status, body) = api.call(reqwest::Method::POST, &format!("/v1/connections/{id}/resync"), "acme", None).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let c = api.get(&format!("/v1/connections/{id}"), "acme").await;
        let synced = c["last_synced_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok());
        if c["status"] == "live" && synced.is_some_and(|t| t > asked) {
            break;
        }
        assert!(Instant::now() < deadline, "no catch-up finished: {c}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settle(&owner, connection).await;
    let diff = differences(
        &stored(&owner, connection, project as i64, Precision::Millis, true).await,
        &gitlab(&sim, project, start, Precision::Millis, true),
    );
    assert!(diff.is_empty(), "after one catch-up, after:\n{}\n\ndiffers:\n{}", applied.join("\n"), diff.join("\n"));
    let (deliveries, read_backs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE connection_id = $1),
                (SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' = 'refresh')",
    )
    .bind(connection)
    .fetch_one(&owner)
    .await
    .unwrap();
    assert!(read_backs > 0, "no delivery needed a read-back: the sequence proves little");
    println!(
        "converge: {} changes in {rounds} rounds, {deliveries} deliveries, {read_backs} read-backs; every object equal to GitLab's \
         before and after the catch-up",
        applied.len()
    );
}
