//! Benchmark 1: backfill throughput and the worker's memory as the dataset grows.
//!
//! The simulator answers at full speed (no latency, no rate limit), so the figure is the
//! connector's own cost per record: fetching, decoding, and storing each page with its
//! checkpoint. Beside it, the database's own speed: the very rows the worker wrote, exported
//! with `COPY ... TO` into files and loaded with `COPY ... FROM` into an empty copy of the same
//! tables (same indexes, same change-feed triggers) in a fresh database.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use gitlab_sim::{Dataset, Noteable, RateLimitConfig, SimConfig, SimHandle, Simulator, Size, SizeSpec};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::io::AsyncWriteExt;

use super::harness::{Service, app_store, connect_gitlab, cpu_time, database_sessions_cpu, peak_rss, wait_live};
use super::{Ctx, Section};

/// The group every benchmark connection syncs: the dataset's first top-level group, on Premium,
/// holding every project (the generator puts projects only under it when it is the only one).
pub(super) const GROUP: u64 = 1;
const TENANT: &str = "bench-backfill";
/// The tables a backfill fills, in an order their foreign keys allow.
const DATA_TABLES: [&str; 6] = ["commits", "merge_requests", "merge_request_commits", "issues", "notes", "pipelines"];
/// Flat memory: the worker's peak at the largest dataset within this factor of the smallest's.
const FLAT_MEMORY: f64 = 1.25;
const TARGET_VS_COPY: f64 = 0.5;

/// What a connection to [`GROUP`] since `start` must end up storing, and the fewest GitLab
/// requests that fetch it at the client's page size, both read off the dataset with the
/// simulator's own rules (which commits `all=true` lists, which projects answer 403).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Truth {
    pub(super) projects: u64,
    pub(super) commits: u64,
    pub(super) merge_requests: u64,
    pub(super) issues: u64,
    pub(super) notes: u64,
    pub(super) pipelines: u64,
    /// Validation (token, user, metadata; group, membership, namespace; the project list) and
    /// the hook (list, create).
    pub(super) fixed_requests: u64,
    /// The project collections' pages: commits, merge requests, issues, pipelines.
    pub(super) list_requests: u64,
    /// Notes and commits of each merge request, notes of each issue: at least one page each;
    /// and each pipeline's own record.
    pub(super) child_requests: u64,
    /// The catch-up that closes the backfill, per project.
    pub(super) catch_up_requests: u64,
}

impl Truth {
    pub(super) fn of(dataset: &Dataset, start: DateTime<Utc>) -> Self {
        let per_page = gitlab_client::PER_PAGE as u64;
        let pages = |n: usize| (n as u64).div_ceil(per_page).max(1);
        let groups: Vec<u64> = std::iter::once(GROUP).chain(dataset.descendants(GROUP)).collect();
        let projects: Vec<_> = dataset.projects.iter().filter(|p| groups.contains(&p.namespace_id)).collect();
        let mut t = Truth { projects: projects.len() as u64, ..Truth::default() };
        // Token, user, metadata; then group, membership and namespace of the one group; then the
        // group's projects; then the group hook: the list (to find ours) and the create. The
        // closing catch-up checks the hook and lists the group's projects again.
        t.fixed_requests = 3 + 3 + pages(projects.len()) + 2 + 1 + pages(projects.len());
        for p in projects {
            let s = dataset.synced_since(p.id, start).expect("listed");
            // What `all=true&since=` lists: reachable from a ref and committed since `start`.
            let repo = &p.repository;
            let listed = repo.reachable_from_refs(false).into_iter().filter(|i| repo.commits[*i].committed_date >= start).count();
            // The branch heads, read before the commits they point at.
            t.list_requests += pages(p.repository.branches.len()) + pages(listed);
            let notes_of = |target: Noteable| p.notes.iter().filter(|n| n.noteable == target).count();
            t.list_requests += pages(s.merge_requests.len());
            for mr in &s.merge_requests {
                let mr_commits = mr.commit_shas.iter().filter(|sha| p.repository.commit(sha).is_some()).count();
                t.child_requests += pages(notes_of(Noteable::MergeRequest { iid: mr.iid })) + pages(mr_commits);
            }
            // A project without issues lists none (one empty page); without CI, pipelines answer
            // 403 (one request, recorded as skipped). Each pipeline's own record has its timings.
            t.list_requests += pages(s.issues.len());
            for issue in &s.issues {
                t.child_requests += pages(notes_of(Noteable::Issue { iid: issue.iid }));
            }
            t.list_requests += pages(s.pipelines.len());
            t.child_requests += s.pipelines.len() as u64;
            // The closing catch-up: the branches (unchanged, so nothing more), the project's
            // comment events (the only list of comments on commits), one page of what changed
            // in each other stream while the backfill read.
            let comment_events = p.notes.iter().filter(|n| !n.system && n.created_at >= start).count();
            t.catch_up_requests += 1 + pages(comment_events) + 3;
            t.commits += s.commits.len() as u64;
            t.merge_requests += s.merge_requests.len() as u64;
            t.issues += s.issues.len() as u64;
            t.notes += s.notes.len() as u64;
            t.pipelines += s.pipelines.len() as u64;
        }
        t
    }

    pub(super) fn records(&self) -> u64 {
        self.commits + self.merge_requests + self.issues + self.notes + self.pipelines
    }

    pub(super) fn min_requests(&self) -> u64 {
        self.fixed_requests + self.list_requests + self.child_requests + self.catch_up_requests
    }

    pub(super) fn summary(&self) -> String {
        format!(
            "{} projects: {} commits, {} merge requests, {} issues, {} notes, {} pipelines",
            self.projects, self.commits, self.merge_requests, self.issues, self.notes, self.pipelines
        )
    }
}

/// A start date before all generated history, so that everything is backfilled.
pub(super) fn start_date(spec: &SizeSpec) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(365 * (i64::from(spec.years) + 1))
}

/// Every project under the one Premium group, `projects` of them shaped like `unit`.
pub(super) fn spec(unit: &SizeSpec, projects: usize) -> SizeSpec {
    SizeSpec { projects, ..unit.clone() }
}

/// How many projects of shape `unit` make about `want` of whatever `measure` counts, measured on
/// a small generated sample rather than guessed from the spec's averages.
pub(super) fn projects_for(seed: u64, unit: &SizeSpec, want: u64, measure: impl Fn(&Truth) -> u64) -> usize {
    const SAMPLE: usize = 10;
    let sample = Dataset::generate(seed, Size::Custom(spec(unit, SAMPLE)));
    let per_project = measure(&Truth::of(&sample, start_date(unit))) as f64 / SAMPLE as f64;
    ((want as f64 / per_project).round() as usize).max(1)
}

/// The stored rows of the benchmark's one connection, counted as the database owner.
pub(super) async fn stored(owner: &PgConnectOptions) -> Result<Truth> {
    let mut conn = owner.connect().await?;
    let (projects, commits, merge_requests, issues, notes, pipelines): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM commits), (SELECT count(*) FROM merge_requests),
                (SELECT count(*) FROM issues), (SELECT count(*) FROM notes), (SELECT count(*) FROM pipelines)",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(Truth {
        projects: projects as u64,
        commits: commits as u64,
        merge_requests: merge_requests as u64,
        issues: issues as u64,
        notes: notes as u64,
        pipelines: pipelines as u64,
        ..Truth::default()
    })
}

/// Fails unless the database holds exactly the records the dataset says it must.
pub(super) fn check_complete(want: &Truth, got: &Truth) -> Result<()> {
    let same = (want.projects, want.commits, want.merge_requests, want.issues, want.notes, want.pipelines)
        == (got.projects, got.commits, got.merge_requests, got.issues, got.notes, got.pipelines);
    ensure!(same, "the backfill did not store the dataset: want {}, stored {}", want.summary(), got.summary());
    Ok(())
}

pub(super) async fn spawn_sim(dataset: Dataset, config: SimConfig) -> Result<SimHandle> {
    Ok(Simulator::new(dataset, config).spawn(([127, 0, 0, 1], 0).into()).await?)
}

/// `tenant`'s connection to [`GROUP`] of `sim` as its owner, queued for validation.
pub(super) async fn connect(store: &connector_store::Store, sim: &SimHandle, tenant: &str, start: DateTime<Utc>) -> Result<uuid::Uuid> {
    let groups = vec![GROUP as i64];
    connect_gitlab(store, tenant, &sim.base_url, gitlab_sim::TOKEN_OWNER, groups, start).await
}

/// A benchmark's simulator, its fresh database, a store on it and a worker process, up.
pub(super) struct Setup {
    pub(super) sim: SimHandle,
    pub(super) owner: PgConnectOptions,
    pub(super) store: connector_store::Store,
    pub(super) worker: Service,
}

impl Setup {
    pub(super) async fn start(ctx: &Ctx, database: &str, dataset: Dataset, config: SimConfig) -> Result<Self> {
        let sim = spawn_sim(dataset, config).await?;
        let owner = ctx.fresh_database(database).await?;
        let keys = Service::new_master_keys();
        let store = app_store(&owner, &keys).await?;
        // One connection alone: the slice only takes turns with other connections' work (that is
        // benchmark 4). Each slice's end also risks a lost continuation (the next job can find the
        // connection's lock still held and leave), which would stall the run, so none ends here.
        let worker = Service::spawn(&owner, "worker", &keys, &[])?;
        worker.wait_up("/healthz").await?;
        Ok(Self { sim, owner, store, worker })
    }
}

/// The shape of each project: a few hundred commits, tens of merge requests and issues with a
/// handful of notes each, about a hundred pipelines (about 750 records a project).
fn unit() -> SizeSpec {
    SizeSpec {
        users: 30,
        top_groups: 1,
        subgroups_per_group: 2,
        subgroup_depth: 1,
        projects: 0,
        commits_per_project: 300,
        merge_requests_per_project: 40,
        issues_per_project: 60,
        pipelines_per_project: 100,
        max_notes_per_item: 6,
        years: 3,
        heavy_project: None,
    }
}

struct Run {
    want: Truth,
    generate: Duration,
    bench_rss_after_generate: u64,
    backfill: Duration,
    worker_peak: u64,
    copy: Duration,
    copy_rows: u64,
    requests: u64,
    cpu: Cpu,
}

/// CPU time spent during a backfill, by whom.
#[derive(Clone, Copy)]
pub(super) struct Cpu {
    pub(super) worker: Duration,
    /// The worker's PostgreSQL sessions, when the server is on this machine.
    pub(super) database: Option<Duration>,
    /// This process: the simulator answering.
    pub(super) simulator: Duration,
}

impl Cpu {
    pub(super) fn describe(&self, wall: Duration) -> String {
        let share = |d: Duration| d.as_secs_f64() / wall.as_secs_f64() * 100.0;
        let database = match self.database {
            Some(d) => format!("its PostgreSQL sessions {:.1} s ({:.0}%)", d.as_secs_f64(), share(d)),
            None => "its PostgreSQL sessions not measured (server not on this machine)".into(),
        };
        format!(
            "worker {:.1} s ({:.0}% of the wall time), {database}, simulator {:.1} s ({:.0}%)",
            self.worker.as_secs_f64(),
            share(self.worker),
            self.simulator.as_secs_f64(),
            share(self.simulator)
        )
    }
}

pub(crate) async fn run(ctx: &Ctx) -> Result<Section> {
    let sizes: &[u64] = if ctx.quick { &[10_000, 30_000] } else { &[10_000, 100_000, 1_000_000] };
    println!("-- backfill: records/s into PostgreSQL and the worker's peak memory at {sizes:?} records, against COPY");
    let mut runs = Vec::new();
    for &size in sizes {
        let run = measure(ctx, size).await.with_context(|| format!("backfill of about {size} records"))?;
        println!(
            "   {} records ({}): backfill {:.1}s = {:.0} records/s, {} GitLab requests; worker peak RSS {}; COPY {:.1}s = {:.0} records/s; ratio {:.2}",
            run.want.records(),
            run.want.summary(),
            run.backfill.as_secs_f64(),
            per_sec(run.want.records(), run.backfill),
            run.requests,
            mib(run.worker_peak),
            run.copy.as_secs_f64(),
            per_sec(run.want.records(), run.copy),
            per_sec(run.want.records(), run.backfill) / per_sec(run.want.records(), run.copy),
        );
        runs.push(run);
    }
    Ok(Section { id: "backfill", title: "1. Backfill throughput and memory", markdown: markdown(&runs)? })
}

async fn measure(ctx: &Ctx, size: u64) -> Result<Run> {
    let unit = unit();
    let seed = 8;
    let projects = projects_for(seed, &unit, size, Truth::records);
    let spec = spec(&unit, projects);
    let start = start_date(&spec);
    let began = Instant::now();
    let dataset = Dataset::generate(seed, Size::Custom(spec));
    let generate = began.elapsed();
    let bench_rss_after_generate = peak_rss(std::process::id())?;
    let want = Truth::of(&dataset, start);
    println!("   generated {} records in {:.1}s ({})", want.records(), generate.as_secs_f64(), want.summary());
    let config = SimConfig { rate_limit: RateLimitConfig { enabled: false, ..RateLimitConfig::default() }, ..SimConfig::default() };
    let Setup { sim, owner, store, worker } = Setup::start(ctx, "backfill", dataset, config).await?;
    let simulator_cpu = cpu_time(std::process::id())?;
    let began = Instant::now();
    let id = connect(&store, &sim, TENANT, start).await?;
    wait_live(&store, TENANT, id, Duration::from_secs(600 + want.records() / 200)).await?;
    let backfill = began.elapsed();
    let worker_peak = worker.peak_rss()?;
    let cpu = Cpu {
        worker: cpu_time(worker.pid())?,
        database: database_sessions_cpu(&owner).await?,
        simulator: cpu_time(std::process::id())? - simulator_cpu,
    };
    drop(worker);
    let requests = sim.sim.stats().total_requests;
    sim.shutdown().await;
    check_complete(&want, &stored(&owner).await?)?;
    store.pool().close().await;

    let (copy, copy_rows) = copy_limit(ctx, &owner).await?;
    Ok(Run { want, generate, bench_rss_after_generate, backfill, worker_peak, copy, copy_rows, requests, cpu })
}

/// Loads the rows the worker wrote, from files, into the same tables of a fresh database with
/// one `COPY ... FROM` per table in one transaction: the time of that transaction.
async fn copy_limit(ctx: &Ctx, source: &PgConnectOptions) -> Result<(Duration, u64)> {
    let dir = std::env::temp_dir().join(format!("gitlab-connector-bench-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = copy_via(ctx, source, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn copy_via(ctx: &Ctx, source: &PgConnectOptions, dir: &std::path::Path) -> Result<(Duration, u64)> {
    let mut from = source.connect().await?;
    // The tenant and its connection row, for the foreign keys: kept in memory, not in a file,
    // since the connection row holds the (encrypted) token.
    let mut parents = Vec::new();
    for table in ["tenants", "gitlab_connections"] {
        let mut data = Vec::new();
        let mut stream = from.copy_out_raw(&format!("COPY {table} TO STDOUT (FORMAT binary)")).await?;
        while let Some(chunk) = stream.try_next().await? {
            data.extend_from_slice(&chunk);
        }
        drop(stream);
        parents.push((table, data));
    }
    let mut exported = 0u64;
    for table in DATA_TABLES {
        let mut file = tokio::fs::File::create(dir.join(table)).await?;
        let mut stream = from.copy_out_raw(&format!("COPY {table} TO STDOUT (FORMAT binary)")).await?;
        while let Some(chunk) = stream.try_next().await? {
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
    }
    for table in DATA_TABLES {
        exported +=
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut from).await? as u64;
    }
    from.close().await?;

    let target = ctx.fresh_database("backfill_copy").await?;
    let mut to = target.connect().await?;
    for (table, data) in parents {
        let mut copy = to.copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT binary)")).await?;
        copy.send(data).await?;
        copy.finish().await?;
    }
    let began = Instant::now();
    let mut tx = to.begin().await?;
    let mut loaded = 0u64;
    for table in DATA_TABLES {
        let file = tokio::fs::File::open(dir.join(table)).await?;
        let mut copy = tx.copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT binary)")).await?;
        copy.read_from(file).await?;
        loaded += copy.finish().await?;
    }
    tx.commit().await?;
    let took = began.elapsed();
    ensure!(loaded == exported, "COPY loaded {loaded} rows of the {exported} exported");
    Ok((took, loaded))
}

fn markdown(runs: &[Run]) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "The simulator in the benchmark process with no latency and no rate limit; the worker (`serve --roles worker`, \
         default settings) in a process of its own; one connection to a Premium group, from `validating` to `live`. \
         Records are the commits, merge requests, issues, notes and pipelines stored, counted from the dataset and \
         checked equal to the rows in the database. The limit beside it: the same rows (exported from the worker's \
         tables with `COPY ... TO`) loaded from files with one `COPY ... FROM` per table in one transaction into an \
         empty copy of the same tables (same indexes and change-feed triggers) in a fresh database.\n"
    )?;
    writeln!(
        md,
        "| records | projects | GitLab requests | backfill | records/s | COPY | COPY records/s | ratio | worker peak RSS | dataset generation (bench process peak RSS) |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in runs {
        let rate = per_sec(r.want.records(), r.backfill);
        let copy_rate = per_sec(r.want.records(), r.copy);
        writeln!(
            md,
            "| {} | {} | {} | {:.1} s | {:.0} | {:.2} s ({} rows, with merge request links) | {:.0} | {:.2} | {} | {:.1} s ({}) |",
            r.want.records(),
            r.want.projects,
            r.requests,
            r.backfill.as_secs_f64(),
            rate,
            r.copy.as_secs_f64(),
            r.copy_rows,
            copy_rate,
            rate / copy_rate,
            mib(r.worker_peak),
            r.generate.as_secs_f64(),
            mib(r.bench_rss_after_generate),
        )?;
    }
    let (first, last) = (runs.first().context("no runs")?, runs.last().context("no runs")?);
    let worst = runs
        .iter()
        .map(|r| (r, per_sec(r.want.records(), r.backfill) / per_sec(r.want.records(), r.copy)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .context("no runs")?;
    let memory = last.worker_peak as f64 / first.worker_peak as f64;
    writeln!(md, "\n| target | measured | verdict |")?;
    writeln!(md, "|---|---|---|")?;
    writeln!(
        md,
        "| throughput at least {TARGET_VS_COPY} of COPY's, at every size | lowest ratio {:.2} (at {} records) | {} |",
        worst.1,
        worst.0.want.records(),
        verdict(worst.1 >= TARGET_VS_COPY)
    )?;
    writeln!(
        md,
        "| memory flat: worker peak RSS at the largest size within {FLAT_MEMORY}x the smallest's | {} at {} records vs {} at {} records: {:.2}x | {} |",
        mib(last.worker_peak),
        last.want.records(),
        mib(first.worker_peak),
        first.want.records(),
        memory,
        verdict(memory <= FLAT_MEMORY)
    )?;
    writeln!(md, "\nCPU used during each backfill, of its wall time:\n")?;
    for r in runs {
        writeln!(md, "- {} records, {:.1} s: {}.", r.want.records(), r.backfill.as_secs_f64(), r.cpu.describe(r.backfill))?;
    }
    if worst.1 < TARGET_VS_COPY {
        let r = worst.0;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let busy = (r.cpu.worker + r.cpu.database.unwrap_or_default() + r.cpu.simulator).as_secs_f64() / r.backfill.as_secs_f64();
        let database_share = r.cpu.database.map_or(0.0, |d| d.as_secs_f64() / r.backfill.as_secs_f64());
        let bound = if busy < 0.75 * cores {
            format!(
                "together the worker, its PostgreSQL sessions and the simulator used {busy:.2} of the {cores} cores \
                 (the largest share, {:.0}% of the wall time, in PostgreSQL), so none of them is saturated: the time \
                 goes to steps taken in series, and to whatever else the machine was running",
                database_share * 100.0
            )
        } else {
            format!("together they used {busy:.2} of the {cores} cores: the run is bound by CPU, shared as above")
        };
        writeln!(
            md,
            "\nWhy the throughput target is missed: a connection's backfill works through its projects' collections \
             one page at a time: it fetches a page, then the notes and commits of its merge requests or the notes of \
             its issues (several at once), then stores the page and each of those child lists with a statement of \
             its own and commits, and only then asks for the next page. At {} records it made {:.0} GitLab requests per \
             second, one per {:.1} records stored; {bound}. COPY loads the same rows with no round trips and one \
             statement per table. What would close it: fetch the next page while the current one is stored, store all \
             the children of a page in one statement per table (fewer statements and round trips per record), and \
             backfill several projects of a connection at once.",
            r.want.records(),
            r.requests as f64 / r.backfill.as_secs_f64(),
            r.want.records() as f64 / r.requests as f64,
        )?;
    }
    if memory > FLAT_MEMORY {
        writeln!(
            md,
            "\nWhy the memory target is missed: the worker's peak grew {memory:.2}x from {} to {} records. A page and its \
             children are the most the backfill holds at once, so growth points at something that scales with the \
             connection (e.g. the resolved project list, or a collection buffered whole): profile the worker with \
             `heaptrack` at the largest size.",
            first.want.records(),
            last.want.records(),
        )?;
    }
    Ok(md)
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**MISSED**" }
}

pub(super) fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}
