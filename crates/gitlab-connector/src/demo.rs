//! `gitlab-connector demo`: the whole product on one machine. It finds PostgreSQL (or starts a
//! private cluster), starts the GitLab simulator and every role of the connector, connects two
//! tenants through the REST API as the Coworker frontend would, shows their progress, makes live
//! changes in GitLab and measures how fast they arrive, and ends with a summary and a check of
//! each tenant's data against the simulator's ground truth.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use connector_store::{Store, TenantId};
use gitlab_sim::{Dataset, Plan, SimConfig, SimHandle, Simulator, Size};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::Role;
use crate::local::{Connector, Postgres, recreate_database};

const OWNER_TOKEN: &str = "glpat-sim-owner-api-0001";
const RECORD_TYPES: [&str; 4] = ["commits", "merge_requests", "issues", "pipelines"];

/// Runs the demo in `database` (dropped and created afresh on the PostgreSQL found).
pub async fn run(small: bool, database: &str) -> Result<()> {
    let started = Instant::now();
    println!("== gitlab-connector demo{}", if small { " (small)" } else { "" });
    let postgres = Postgres::find_or_start().await?;
    let owner = postgres.options.clone().database(database);
    recreate_database(&postgres.options, database).await?;
    connector_store::migrate(&owner).await.context("migrating the demo database")?;
    println!("   PostgreSQL: {} (database {database}, fresh)", postgres.description);

    let size = if small {
        Size::Small
    } else {
        // A Premium group of a few dozen projects over nested subgroups.
        let mut spec = Size::Realistic.spec();
        spec.projects = 90;
        Size::Custom(spec)
    };
    let dataset = Dataset::generate(1, size);
    let sim = Simulator::new(dataset, SimConfig::default()).spawn(([127, 0, 0, 1], 0).into()).await?;
    println!("   GitLab simulator: {}", sim.base_url);

    let (connector, config) = Connector::new(&owner)?;
    println!("   connector (api, ingest, worker): {}", connector.base);
    // The connector runs in this task beside the demo (its future is not Send: sqlx's migration
    // types), and stops when the demo is done.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = crate::serve(config, &[Role::Api, Role::Ingest, Role::Worker], async {
        stopped.await.ok();
    });
    let demo = async {
        let outcome = demo(&connector, &sim, started, small).await;
        let _ = stop.send(());
        outcome
    };
    let (served, outcome) = tokio::join!(serve, demo);
    sim.shutdown().await;
    drop(postgres);
    served?;
    outcome
}

async fn demo(connector: &Connector, sim: &SimHandle, started: Instant, small: bool) -> Result<()> {
    connector.wait_ready().await?;

    let truth = sim.sim.dataset();
    let premium_group = top_group(&truth, |p| matches!(p, Plan::Premium | Plan::Ultimate)).context("no Premium group in the dataset")?;
    let free_group = top_group(&truth, |p| matches!(p, Plan::Free)).context("no Free group in the dataset")?;
    let free_projects: Vec<u64> = projects_of(&truth, free_group).into_iter().take(2).collect();
    ensure!(free_projects.len() == 2, "the Free group needs two projects");
    let free_list = format!("{},{}", free_projects[0], truth.project(free_projects[1]).unwrap().path_with_namespace);
    let start_date = "2024-01-01T00:00:00Z";
    let tenants = [
        Tenant::connect(connector, "premium-co", json!({"access_token": OWNER_TOKEN, "groups_list": premium_group.to_string(), "start_date": start_date, "gitlab_url": sim.base_url})).await?,
        Tenant::connect(connector, "free-co", json!({"access_token": OWNER_TOKEN, "groups_list": free_group.to_string(), "projects_list": free_list, "start_date": start_date, "gitlab_url": sim.base_url})).await?,
    ];
    println!("   tenant premium-co: group {premium_group} (Premium: one group hook), every project");
    println!("   tenant free-co: group {free_group} (Free: project hooks), projects_list {free_list}");

    let backfill_started = Instant::now();
    show_progress(connector, &tenants, if small { 120 } else { 900 }).await?;
    let backfill_time = backfill_started.elapsed();

    println!("== live changes in GitLab, arriving through webhooks");
    let latencies = live_changes(connector, sim, &tenants, &truth, premium_group, &free_projects, if small { 6 } else { 20 }).await?;

    println!("== summary");
    let store = connector.store().await?;
    let truth = sim.sim.dataset();
    let mut ok = true;
    for tenant in &tenants {
        let detail = connector.get(&format!("/v1/connections/{}", tenant.connection), &tenant.name).await?;
        let records = &detail["progress"]["records"];
        println!(
            "   {:<11} status {:<5} projects {:>3}  backfilled: commits {:>6}  merge requests {:>5}  issues {:>5}  pipelines {:>5}  hooks {} ({})",
            tenant.name,
            detail["status"].as_str().unwrap_or("?"),
            detail["project_count"],
            records["commits"].as_i64().unwrap_or(0),
            records["merge_requests"].as_i64().unwrap_or(0),
            records["issues"].as_i64().unwrap_or(0),
            records["pipelines"].as_i64().unwrap_or(0),
            detail["hooks"].as_array().map_or(0, Vec::len),
            detail["hook_mode"].as_str().unwrap_or("?"),
        );
        // The premium tenant syncs its whole group (including projects the live changes touched),
        // the free one its projects_list.
        let projects = if tenant.name == "premium-co" { projects_of(&truth, premium_group) } else { free_projects.clone() };
        match check_ground_truth(&store, tenant, &truth, &projects).await? {
            Ok(summary) => println!("      ground truth: equal ({summary})"),
            Err(problem) => {
                ok = false;
                println!("      ground truth: DIFFERENT: {problem}");
            }
        }
    }
    match check_isolation(connector, &tenants).await? {
        Ok(()) => println!(
            "   isolation: each tenant's API answers 404 for the other's connection and its feed holds none of the other's projects"
        ),
        Err(problem) => {
            ok = false;
            println!("   isolation: BROKEN: {problem}");
        }
    }
    let stats = sim.sim.stats();
    println!(
        "   GitLab requests {} (429s {}), webhooks sent {} (failed {}), backfill {:.1?}, total {:.1?}",
        stats.total_requests,
        stats.rate_limited,
        stats.webhooks_sent,
        stats.webhooks_failed,
        backfill_time,
        started.elapsed()
    );
    println!(
        "   webhook-to-visible latency over {} changes: p50 {:.0?}, p99 {:.0?}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99)
    );
    if !ok {
        bail!("the demo found differences (above)");
    }
    println!("== demo OK");
    Ok(())
}

struct Tenant {
    name: String,
    connection: String,
    /// The tenant's change feed position before the live changes.
    cursor: String,
}

impl Tenant {
    async fn connect(connector: &Connector, name: &str, body: Value) -> Result<Self> {
        let resp = connector
            .http
            .post(format!("{}/v1/connections", connector.base))
            .bearer_auth(connector.token(name)?)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let created: Value = resp.json().await?;
        ensure!(status.as_u16() == 201, "creating {name}'s connection: {status} {created}");
        Ok(Self { name: name.into(), connection: created["id"].as_str().unwrap_or_default().into(), cursor: String::new() })
    }
}

/// One bar per tenant, until both are live.
async fn show_progress(connector: &Connector, tenants: &[Tenant; 2], timeout_secs: u64) -> Result<()> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("   {prefix:<11} [{bar:30}] {pos}/{len} streams  {msg}")?.progress_chars("=> ");
    let bar: Vec<ProgressBar> = tenants
        .iter()
        .map(|t| {
            let b = bars.add(ProgressBar::new(1));
            b.set_style(style.clone());
            b.set_prefix(t.name.clone());
            b
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let mut live = 0;
        for (tenant, bar) in tenants.iter().zip(&bar) {
            let d = connector.get(&format!("/v1/connections/{}", tenant.connection), &tenant.name).await?;
            let status = d["status"].as_str().unwrap_or("?");
            if matches!(status, "invalid" | "needs_reauth" | "failed") {
                bail!("{} is {status}: {}", tenant.name, d["status_message"]);
            }
            bar.set_length(d["progress"]["streams_total"].as_u64().unwrap_or(0).max(1));
            bar.set_position(d["progress"]["streams_done"].as_u64().unwrap_or(0));
            let records: Vec<String> = RECORD_TYPES
                .iter()
                .map(|r| format!("{} {}", r.replace('_', " "), d["progress"]["records"][r].as_i64().unwrap_or(0)))
                .collect();
            let eta = d["progress"]["estimated_seconds_left"].as_i64().map(|s| format!(", ~{s}s left")).unwrap_or_default();
            bar.set_message(format!("{status}: {}{eta}", records.join(", ")));
            if status == "live" {
                live += 1;
                bar.finish();
            }
        }
        if live == tenants.len() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the backfill did not finish in {timeout_secs}s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Makes `count` changes in GitLab, alternating tenants and kinds, and measures for each how long
/// after GitLab delivered its webhook it is visible in the tenant's change feed.
async fn live_changes(
    connector: &Connector,
    sim: &SimHandle,
    tenants: &[Tenant; 2],
    truth: &Dataset,
    premium_group: u64,
    free_projects: &[u64],
    count: usize,
) -> Result<Vec<Duration>> {
    let mut cursors = Vec::new();
    for tenant in tenants {
        cursors.push(feed_end(connector, tenant).await?);
    }
    let premium_projects = projects_of(truth, premium_group);
    let control = reqwest::Client::new();
    let mut latencies = Vec::new();
    for i in 0..count {
        let which = i % 2;
        let tenant = &tenants[which];
        let kind = i / 2 % 3;
        // Only projects with the feature switched on can have issues or pipelines.
        let candidates: Vec<u64> = (if which == 0 { &premium_projects[..] } else { free_projects })
            .iter()
            .copied()
            .filter(|&p| {
                let project = truth.project(p).expect("in the dataset");
                match kind {
                    1 => project.issues_enabled,
                    2 => project.jobs_enabled,
                    _ => true,
                }
            })
            .collect();
        let Some(&project) = candidates.get(i / 6 % candidates.len().max(1)) else { continue };
        let branch = truth.project(project).expect("in the dataset").default_branch.clone();
        let (path, body, entity, what) = match kind {
            0 => (format!("projects/{project}/push"), json!({"branch": branch, "commits": 2}), "commit", "push of 2 commits"),
            1 => (format!("projects/{project}/issues"), json!({"title": format!("Demo issue {i}")}), "issue", "new issue"),
            _ => (format!("projects/{project}/pipelines"), json!({"ref": branch}), "pipeline", "pipeline run"),
        };
        // `wait=true`: the simulator answers once it has delivered the webhook.
        control
            .post(format!("{}/-/sim/{path}?wait=true", sim.base_url))
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("simulator control {path}"))?;
        let delivered = Instant::now();
        loop {
            let feed = connector.get(&format!("/v1/changes?after={}&limit=100", cursors[which]), &tenant.name).await?;
            let items = feed["items"].as_array().cloned().unwrap_or_default();
            cursors[which] = feed["next_cursor"].as_str().unwrap_or_default().to_owned();
            if items.iter().any(|c| c["entity"] == entity && c["key"]["project_id"] == project) {
                let latency = delivered.elapsed();
                println!("   {:<11} {what:<18} in project {project:<4} visible after {latency:.0?}", tenant.name);
                latencies.push(latency);
                break;
            }
            ensure!(delivered.elapsed() < Duration::from_secs(30), "{what} in project {project} never arrived for {}", tenant.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(latencies)
}

/// The cursor after the last change the tenant's feed holds now.
async fn feed_end(connector: &Connector, tenant: &Tenant) -> Result<String> {
    let mut cursor = tenant.cursor.clone();
    loop {
        let page = connector.get(&format!("/v1/changes?after={cursor}&limit=100"), &tenant.name).await?;
        let next = page["next_cursor"].as_str().unwrap_or_default().to_owned();
        if page["items"].as_array().is_none_or(Vec::is_empty) {
            return Ok(next);
        }
        cursor = next;
    }
}

fn top_group(truth: &Dataset, plan: impl Fn(&Plan) -> bool) -> Option<u64> {
    truth.groups.iter().find(|g| g.parent_id.is_none() && plan(&g.plan)).map(|g| g.id)
}

fn projects_of(truth: &Dataset, group: u64) -> Vec<u64> {
    let groups: BTreeSet<u64> = std::iter::once(group).chain(truth.descendants(group)).collect();
    truth.projects.iter().filter(|p| groups.contains(&p.namespace_id)).map(|p| p.id).collect()
}

pub(crate) fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    // Nearest rank: the smallest value at or above p percent of the samples.
    let rank = (p * sorted.len()).div_ceil(100);
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or_default()
}

/// Compares what the tenant holds with the simulator's ground truth (`Dataset::synced_since`).
async fn check_ground_truth(store: &Store, tenant: &Tenant, truth: &Dataset, projects: &[u64]) -> Result<Result<String, String>> {
    let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")?.with_timezone(&chrono::Utc);
    let mut want_commits = BTreeSet::new();
    let mut want_mrs = BTreeSet::new();
    let mut want_issues = BTreeSet::new();
    let mut want_pipelines = BTreeSet::new();
    let mut want_notes = BTreeSet::new();
    for &pid in projects {
        let Some(t) = truth.synced_since(pid, start) else { continue };
        let id = pid as i64;
        want_commits.extend(t.commits.iter().map(|c| (id, c.id.clone())));
        want_mrs.extend(t.merge_requests.iter().map(|mr| (id, mr.iid as i64, mr.state.as_str().to_owned())));
        want_issues.extend(t.issues.iter().map(|i| (id, i.iid as i64, i.state.as_str().to_owned())));
        want_notes.extend(t.notes.iter().map(|n| (id, n.id as i64)));
        want_pipelines.extend(t.pipelines.iter().map(|pl| (id, pl.id as i64, pl.status.clone())));
    }
    let connection: uuid::Uuid = tenant.connection.parse()?;
    let mut tx = store.tenant_tx(&TenantId::parse(&tenant.name)?).await?;
    let got_commits: BTreeSet<(i64, String)> = sqlx::query_as("SELECT project_id, sha FROM commits WHERE connection_id = $1")
        .bind(connection)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let got_mrs: BTreeSet<(i64, i64, String)> =
        sqlx::query_as("SELECT project_id, iid, state FROM merge_requests WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let got_issues: BTreeSet<(i64, i64, String)> = sqlx::query_as("SELECT project_id, iid, state FROM issues WHERE connection_id = $1")
        .bind(connection)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let got_pipelines: BTreeSet<(i64, i64, String)> =
        sqlx::query_as("SELECT project_id, gitlab_id, status FROM pipelines WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let got_notes: BTreeSet<(i64, i64)> = sqlx::query_as("SELECT project_id, gitlab_id FROM notes WHERE connection_id = $1")
        .bind(connection)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let mut problems = Vec::new();
    let mut compare = |what: &str, got: usize, want: usize, equal: bool| {
        if !equal {
            problems.push(format!("{what}: {got} stored, {want} in GitLab"));
        }
    };
    compare("commits", got_commits.len(), want_commits.len(), got_commits == want_commits);
    compare("merge requests", got_mrs.len(), want_mrs.len(), got_mrs == want_mrs);
    compare("issues", got_issues.len(), want_issues.len(), got_issues == want_issues);
    compare("pipelines", got_pipelines.len(), want_pipelines.len(), got_pipelines == want_pipelines);
    compare("notes", got_notes.len(), want_notes.len(), got_notes == want_notes);
    Ok(if problems.is_empty() {
        Ok(format!(
            "{} commits, {} merge requests, {} issues, {} pipelines, {} notes",
            want_commits.len(),
            want_mrs.len(),
            want_issues.len(),
            want_pipelines.len(),
            want_notes.len()
        ))
    } else {
        Err(problems.join("; "))
    })
}

/// Each tenant's token gets 404 for the other's connection, and each tenant's change feed holds
/// changes of its own connection only.
async fn check_isolation(connector: &Connector, tenants: &[Tenant; 2]) -> Result<Result<(), String>> {
    for (me, other) in [(&tenants[0], &tenants[1]), (&tenants[1], &tenants[0])] {
        for suffix in ["", "/commits", "/merge_requests", "/issues", "/notes", "/pipelines", "/projects"] {
            let status = connector.status_of(&format!("/v1/connections/{}{suffix}", other.connection), &me.name).await?;
            if status != 404 {
                return Ok(Err(format!("{} got {status} for {}'s connection{suffix}", me.name, other.name)));
            }
        }
        let mut cursor = String::new();
        loop {
            let page = connector.get(&format!("/v1/changes?after={cursor}&limit=100"), &me.name).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if let Some(foreign) = items.iter().find(|c| c["connection_id"] != me.connection.as_str()) {
                return Ok(Err(format!("{}'s feed holds {foreign}", me.name)));
            }
            if items.is_empty() {
                break;
            }
            cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
        }
    }
    Ok(Ok(()))
}
