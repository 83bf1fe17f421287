//! Benchmark 4: fairness. Small tenants connecting while one tenant with thousands of projects
//! backfills, against the same small tenants alone.
//!
//! One simulator dataset holds a group of many projects (the large tenant's) and one small group
//! per small tenant. Each tenant is its own GitLab user with its own token, as separate customers
//! are: GitLab's rate limit and the worker's shared rate budget are per user, so no tenant spends
//! another's. GitLab answers as gitlab.com does (50-150 ms a request, 2,000 requests a minute per
//! token), so the workers' slots, not this shared machine's CPU, are what the tenants compete for.
//! The worker runs in a process of its own with its default settings. Both runs start every
//! connection at once on a fresh database and a fresh simulator; a small tenant's time to `live`
//! is from its connection's creation to the commit that made it live, as the database recorded
//! them.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use chrono::Utc;
use gitlab_sim::{Dataset, Ids, Latency, Member, MemberSource, OWNER, RateLimitConfig, SimConfig, Size, SizeSpec, Token, User};
use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use super::backfill::{mib, spawn_sim};
use super::harness::{Service, app_store, connect_gitlab};
use super::{Ctx, Section};
use crate::config::{DEFAULT_BACKFILL_SLICE, DEFAULT_TENANT_CONCURRENCY, DEFAULT_WORKER_CONCURRENCY};
use crate::demo::percentile;

const TARGET: f64 = 1.5;
const SMALL_PROJECTS: usize = 5;
const LATENCY: Latency = Latency { min_ms: 50, max_ms: 150 };
const LARGE_TENANT: &str = "fair-large";

/// Each project small (a few dozen records), so that a small tenant's backfill is tens of
/// requests and the large tenant's size is in its project count.
fn unit(projects: usize, groups: usize) -> SizeSpec {
    SizeSpec {
        users: 20,
        top_groups: groups,
        subgroups_per_group: 0,
        subgroup_depth: 0,
        projects,
        commits_per_project: 20,
        merge_requests_per_project: 2,
        issues_per_project: 3,
        pipelines_per_project: 3,
        max_notes_per_item: 2,
        years: 1,
        heavy_project: None,
    }
}

/// A tenant of the benchmark: its group and the GitLab user (and token) it connects as.
struct Tenant {
    name: String,
    group: u64,
    token: String,
    projects: BTreeSet<u64>,
}

/// The dataset: group 1 holds `large` projects, then one group of [`SMALL_PROJECTS`] per small
/// tenant. The generator spreads projects over groups at random, so they are moved into place
/// afterwards; each tenant gets a user of its own, Owner of its group, with an `api` token.
fn dataset(large: usize, small: usize) -> Result<(Dataset, Tenant, Vec<Tenant>)> {
    let mut ds = Dataset::generate(4, Size::Custom(unit(large + small * SMALL_PROJECTS, 1 + small)));
    let tops: Vec<u64> = ds.groups.iter().filter(|g| g.parent_id.is_none()).map(|g| g.id).collect();
    ensure!(tops.len() == 1 + small, "the generator made {} top-level groups, not {}", tops.len(), 1 + small);
    let groups: HashMap<u64, (String, String)> = ds.groups.iter().map(|g| (g.id, (g.full_path.clone(), g.full_name.clone()))).collect();
    for (i, project) in ds.projects.iter_mut().enumerate() {
        let group = if i < large { tops[0] } else { tops[1 + (i - large) / SMALL_PROJECTS] };
        let (path, name) = &groups[&group];
        project.namespace_id = group;
        project.path_with_namespace = format!("{path}/{}", project.path);
        project.name_with_namespace = format!("{name} / {}", project.name);
    }
    let now = Utc::now();
    let mut tenants = Vec::new();
    for (k, &group) in tops.iter().enumerate() {
        let name = if k == 0 { LARGE_TENANT.to_string() } else { format!("fair-small-{k:03}") };
        let user = Ids::next(&mut ds.ids.user);
        ds.users.push(User {
            id: user,
            username: name.clone(),
            name: format!("Tenant {name}"),
            email: format!("{name}@example.com"),
            created_at: now - chrono::Duration::days(400),
        });
        let token = format!("glpat-bench-fairness-{k:05}");
        ds.tokens.push(Token {
            id: Ids::next(&mut ds.ids.token),
            name: format!("{name}-api"),
            value: token.clone(),
            user_id: user,
            scopes: vec!["api".into()],
            created_at: now - chrono::Duration::days(10),
            expires_at: Some(now.date_naive() + chrono::Duration::days(365)),
            revoked: false,
            description: format!("the benchmark tenant {name}"),
            rotated_from: None,
        });
        ds.members.push(Member {
            source: MemberSource::Group(group),
            user_id: user,
            access_level: OWNER,
            created_at: now - chrono::Duration::days(300),
            expires_at: None,
        });
        let projects = ds.projects.iter().filter(|p| p.namespace_id == group).map(|p| p.id).collect();
        tenants.push(Tenant { name, group, token, projects });
    }
    let mut tenants = tenants.into_iter();
    let large_tenant = tenants.next().context("no large tenant")?;
    let small_tenants: Vec<Tenant> = tenants.collect();
    ensure!(large_tenant.projects.len() == large, "the large group holds {} projects, not {large}", large_tenant.projects.len());
    for t in &small_tenants {
        ensure!(t.projects.len() == SMALL_PROJECTS, "{}'s group holds {} projects, not {SMALL_PROJECTS}", t.name, t.projects.len());
    }
    Ok((ds, large_tenant, small_tenants))
}

/// What one run measured.
struct Run {
    /// Each small tenant's time from its connection's creation to `live`.
    to_live: Vec<Duration>,
    /// Each small tenant's time until it was first seen backfilling (queued, validated, hooks
    /// installed), to within the polling interval.
    to_backfill: Vec<Duration>,
    /// The rest: from then to `live`.
    backfilling: Vec<Duration>,
    /// From the first connection's creation to the last small tenant's `live`.
    wall: Duration,
    requests: u64,
    rate_limited: u64,
    worker_peak: u64,
    large: Option<LargeProgress>,
}

impl Run {
    /// In seconds: time to live p50 and max, until backfilling p50, backfilling p50.
    fn times(&self) -> [f64; 4] {
        [
            secs(percentile(&self.to_live, 50)),
            secs(percentile(&self.to_live, 100)),
            secs(percentile(&self.to_backfill, 50)),
            secs(percentile(&self.backfilling, 50)),
        ]
    }
}

/// Where the large tenant stood when the last small tenant went live.
struct LargeProgress {
    status: String,
    records: i64,
    projects_done: i64,
    projects: usize,
}

pub(crate) async fn run(ctx: &Ctx) -> Result<Section> {
    let (large, small) = if ctx.quick { (300, 10) } else { (2_000, 50) };
    println!(
        "-- fairness: {small} tenants of {SMALL_PROJECTS} projects alone, then beside one tenant of {large} projects; \
         GitLab at {}-{} ms a request, each tenant its own user and token",
        LATENCY.min_ms, LATENCY.max_ms
    );
    let began = Instant::now();
    let (dataset, large_tenant, small_tenants) = dataset(large, small)?;
    println!(
        "   dataset of {} projects in {} groups generated in {:.1}s",
        dataset.projects.len(),
        1 + small,
        began.elapsed().as_secs_f64()
    );
    let alone = measure(ctx, &dataset, None, &small_tenants).await.context("the small tenants alone")?;
    print_run("alone", &alone);
    let beside = measure(ctx, &dataset, Some(&large_tenant), &small_tenants).await.context("the small tenants beside the large one")?;
    print_run("beside the large tenant", &beside);
    let p50 = ratio(&beside.to_live, &alone.to_live, 50);
    let max = ratio(&beside.to_live, &alone.to_live, 100);
    println!("   ratio beside/alone: p50 {p50:.2}, max {max:.2} (target within {TARGET})");
    Ok(Section { id: "fairness", title: "4. Fairness", markdown: markdown(large, small, &alone, &beside)? })
}

fn print_run(label: &str, r: &Run) {
    let [p50, max, wait, work] = r.times();
    println!(
        "   {label}: {} small tenants live, time to live p50 {p50:.1}s max {max:.1}s (until backfilling p50 {wait:.1}s, backfilling p50 {work:.1}s); {} GitLab requests, {} 429s{}",
        r.to_live.len(),
        r.requests,
        r.rate_limited,
        r.large.as_ref().map_or(String::new(), |l| format!(
            "; the large tenant meanwhile: {}, {} of {} projects done, {} records",
            l.status, l.projects_done, l.projects, l.records
        )),
    );
}

async fn measure(ctx: &Ctx, dataset: &Dataset, large: Option<&Tenant>, small: &[Tenant]) -> Result<Run> {
    let config = SimConfig { latency: LATENCY, rate_limit: RateLimitConfig::default(), ..SimConfig::default() };
    let sim = spawn_sim(dataset.clone(), config).await?;
    let owner = ctx.fresh_database("fairness").await?;
    let keys = Service::new_master_keys();
    let store = app_store(&owner, &keys).await?;
    let worker = Service::spawn(&owner, "worker", &keys, &[])?;
    worker.wait_up("/healthz").await?;
    // Everything the generator made is older than this, so every record is backfilled.
    let start = Utc::now() - chrono::Duration::days(2 * 365);

    let began = Instant::now();
    let large_connection = match large {
        Some(t) => Some(connect_gitlab(&store, &t.name, &sim.base_url, &t.token, vec![t.group as i64], start).await?),
        None => None,
    };
    let mut connections = Vec::new();
    for t in small {
        connections.push(connect_gitlab(&store, &t.name, &sim.base_url, &t.token, vec![t.group as i64], start).await?);
    }
    let to_backfill = watch(&owner, &connections, if ctx.quick { 600 } else { 3_600 }).await?;
    let wall = began.elapsed();
    let worker_peak = worker.peak_rss()?;
    let large = match (large, large_connection) {
        (Some(t), Some(id)) => Some(large_progress(&owner, id, t.projects.len()).await?),
        _ => None,
    };
    drop(worker);
    let stats = sim.sim.stats();
    sim.shutdown().await;
    store.pool().close().await;

    let mut conn = owner.connect().await?;
    let rows: Vec<(Uuid, String, f64)> = sqlx::query_as(
        "SELECT id, tenant_id, extract(epoch FROM last_synced_at - created_at)::float8 FROM gitlab_connections WHERE id = ANY($1)",
    )
    .bind(&connections)
    .fetch_all(&mut conn)
    .await?;
    let live: HashMap<Uuid, (String, Duration)> =
        rows.into_iter().map(|(id, t, s)| (id, (t, Duration::from_secs_f64(s.max(0.0))))).collect();
    let mut run = Run {
        to_live: Vec::new(),
        to_backfill: Vec::new(),
        backfilling: Vec::new(),
        wall,
        requests: stats.total_requests,
        rate_limited: stats.rate_limited,
        worker_peak,
        large,
    };
    for (tenant, id) in small.iter().zip(&connections) {
        let (_, to_live) = live.get(id).with_context(|| format!("{}'s connection is gone", tenant.name))?;
        // Its synced projects must be exactly its group's: the time is for the whole job done.
        let stored: Vec<i64> = sqlx::query_scalar("SELECT gitlab_id FROM projects WHERE connection_id = $1 ORDER BY gitlab_id")
            .bind(id)
            .fetch_all(&mut conn)
            .await?;
        let want: Vec<i64> = tenant.projects.iter().map(|&p| p as i64).collect();
        ensure!(stored == want, "{} stored projects {stored:?}, its group holds {want:?}", tenant.name);
        let records: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM commits WHERE connection_id = $1) + (SELECT count(*) FROM issues WHERE connection_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut conn)
        .await?;
        ensure!(records > 0, "{} went live without storing a commit or an issue", tenant.name);
        let seen = to_backfill.get(id).copied().unwrap_or(*to_live).min(*to_live);
        run.to_live.push(*to_live);
        run.to_backfill.push(seen);
        run.backfilling.push(to_live.saturating_sub(seen));
    }
    Ok(run)
}

/// Polls until every connection is live; fails at once on a status that needs the user. Returns
/// when each was first seen backfilling (or live), from its creation.
async fn watch(owner: &PgConnectOptions, connections: &[Uuid], timeout_secs: u64) -> Result<HashMap<Uuid, Duration>> {
    let mut conn = owner.connect().await?;
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut seen = HashMap::new();
    loop {
        let rows: Vec<(Uuid, String, Option<String>, f64)> = sqlx::query_as(
            "SELECT id, status, status_message, extract(epoch FROM clock_timestamp() - created_at)::float8
             FROM gitlab_connections WHERE id = ANY($1)",
        )
        .bind(connections)
        .fetch_all(&mut conn)
        .await?;
        ensure!(rows.len() == connections.len(), "{} of {} connections found", rows.len(), connections.len());
        let mut live = 0;
        for (id, status, message, age) in rows {
            match status.as_str() {
                "live" => live += 1,
                "needs_reauth" | "invalid" | "failed" => bail!("connection {id} became {status}: {}", message.unwrap_or_default()),
                _ => {}
            }
            if matches!(status.as_str(), "backfilling" | "live") {
                seen.entry(id).or_insert(Duration::from_secs_f64(age.max(0.0)));
            }
        }
        if live == connections.len() {
            return Ok(seen);
        }
        ensure!(Instant::now() < deadline, "{live} of {} small tenants live after {timeout_secs}s", connections.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn large_progress(owner: &PgConnectOptions, id: Uuid, projects: usize) -> Result<LargeProgress> {
    let mut conn = owner.connect().await?;
    let (status, records, projects_done): (String, i64, i64) = sqlx::query_as(
        "SELECT status,
                (SELECT count(*) FROM commits WHERE connection_id = $1) + (SELECT count(*) FROM merge_requests WHERE connection_id = $1)
                  + (SELECT count(*) FROM issues WHERE connection_id = $1) + (SELECT count(*) FROM notes WHERE connection_id = $1)
                  + (SELECT count(*) FROM pipelines WHERE connection_id = $1),
                (SELECT count(*) FROM (SELECT project_id FROM sync_checkpoints WHERE connection_id = $1 GROUP BY project_id
                                       HAVING bool_and(done)
                                          AND count(*) = (SELECT count(DISTINCT resource) FROM sync_checkpoints)) d)
         FROM gitlab_connections WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut conn)
    .await?;
    Ok(LargeProgress { status, records, projects_done, projects })
}

fn ratio(beside: &[Duration], alone: &[Duration], p: usize) -> f64 {
    secs(percentile(beside, p)) / secs(percentile(alone, p)).max(1e-9)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn markdown(large: usize, small: usize, alone: &Run, beside: &Run) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "{small} tenants with a group of {SMALL_PROJECTS} projects each connect at once, first alone, then right after one \
         tenant with a group of {large} projects (its connection created first), each run on a fresh database and a fresh \
         simulator. GitLab answers in {}-{} ms with gitlab.com's limit of {} requests per {} s per token; every tenant is its \
         own GitLab user with its own token, so none spends another's rate budget. The worker (`serve --roles worker`) runs \
         in its own process with its defaults: WORKER_CONCURRENCY={DEFAULT_WORKER_CONCURRENCY} jobs at once per queue, \
         TENANT_CONCURRENCY={DEFAULT_TENANT_CONCURRENCY}, BACKFILL_SLICE={}s. A small tenant's time to `live` runs from its \
         connection's creation to the commit that made it live (both database timestamps); each small tenant's synced \
         projects were checked to be exactly its group's.\n",
        LATENCY.min_ms,
        LATENCY.max_ms,
        RateLimitConfig::default().requests,
        RateLimitConfig::default().period_secs,
        DEFAULT_BACKFILL_SLICE.as_secs(),
    )?;
    writeln!(
        md,
        "| run | small tenants live | time to live p50 | time to live max | until backfilling p50 | backfilling p50 | last live after | GitLab requests (all tenants) | 429s | worker peak RSS |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (label, r) in [("alone (the limit)", alone), (&format!("beside a tenant of {large} projects") as &str, beside)] {
        let [p50, max, wait, work] = r.times();
        writeln!(
            md,
            "| {label} | {} | {p50:.1} s | {max:.1} s | {wait:.1} s | {work:.1} s | {:.1} s | {} | {} | {} |",
            r.to_live.len(),
            r.wall.as_secs_f64(),
            r.requests,
            r.rate_limited,
            mib(r.worker_peak),
        )?;
    }
    let p50 = ratio(&beside.to_live, &alone.to_live, 50);
    let max = ratio(&beside.to_live, &alone.to_live, 100);
    writeln!(
        md,
        "| ratio beside / alone | | **{p50:.2}** | **{max:.2}** | {:.2} | {:.2} | {:.2} | | | |",
        ratio(&beside.to_backfill, &alone.to_backfill, 50),
        ratio(&beside.backfilling, &alone.backfilling, 50),
        beside.wall.as_secs_f64() / alone.wall.as_secs_f64().max(1e-9),
    )?;
    if let Some(l) = &beside.large {
        writeln!(
            md,
            "\nThe large tenant was competing throughout: when the last small tenant went live it was `{}`, with {} of its {} \
             projects fully backfilled and {} records stored.",
            l.status, l.projects_done, l.projects, l.records
        )?;
    }
    let verdict = |met: bool| if met { "met" } else { "**MISSED**" };
    writeln!(md, "\n| target | measured | verdict |")?;
    writeln!(md, "|---|---|---|")?;
    writeln!(
        md,
        "| small tenants' time to live beside the large tenant within {TARGET}x of alone (p50) | {p50:.2}x | {} |",
        verdict(p50 <= TARGET)
    )?;
    writeln!(md, "| the same for the slowest small tenant (max) | {max:.2}x | {} |", verdict(max <= TARGET))?;
    if p50 > TARGET || max > TARGET {
        let wait = ratio(&beside.to_backfill, &alone.to_backfill, 50);
        let work = ratio(&beside.backfilling, &alone.backfilling, 50);
        let stage = if wait >= work {
            format!(
                "the time grew most before the backfill started ({wait:.2}x at p50: the validation and hook jobs waited in the \
                 connections queue, where the large tenant's validation, which lists and stores all its projects, holds a slot)"
            )
        } else {
            format!(
                "the time grew most during the backfill ({work:.2}x at p50: the small tenants' backfill jobs shared the \
                 {DEFAULT_WORKER_CONCURRENCY} backfill slots with the large tenant's, which takes one slot for a whole \
                 {}s slice and then queues its continuation behind whatever is waiting)",
                DEFAULT_BACKFILL_SLICE.as_secs()
            )
        };
        writeln!(
            md,
            "\nWhy the target is missed: {stage}. What would close it: take the next job by tenant in turn rather than in \
             queue order (a per-tenant round robin when claiming jobs), so a tenant with a long backlog never has more than \
             its share of slots while others wait, and shorten the slice of a tenant that has been running long."
        )?;
    }
    Ok(md)
}
