//! Benchmark 2: a backfill under gitlab.com's conditions, 2,000 requests a minute per token and
//! 50-150 ms a request, against the floor they set: the fewest requests the data needs, divided
//! by the rate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;
use gitlab_sim::{Dataset, Latency, RateLimitConfig, SimConfig, Size, SizeSpec, Stats};

use super::backfill::{Setup, Truth, check_complete, connect, projects_for, spec, start_date, stored, verdict};
use super::harness::wait_live;
use super::{Ctx, Section};

const TENANT: &str = "bench-gitlab-com";
const LATENCY: Latency = Latency { min_ms: 50, max_ms: 150 };
const TARGET_TIME: f64 = 1.15;
const TARGET_REQUESTS: f64 = 1.05;

/// Projects heavy in requests rather than records: many merge requests and issues (each costs its
/// own notes and commits requests), few notes each.
fn unit() -> SizeSpec {
    SizeSpec {
        users: 20,
        top_groups: 1,
        subgroups_per_group: 2,
        subgroup_depth: 1,
        projects: 0,
        commits_per_project: 150,
        merge_requests_per_project: 60,
        issues_per_project: 60,
        pipelines_per_project: 40,
        max_notes_per_item: 3,
        years: 2,
        heavy_project: None,
    }
}

pub(crate) async fn run(ctx: &Ctx) -> Result<Section> {
    let rate = RateLimitConfig::default();
    // Full: a floor of a few minutes; quick: well under one.
    let want_requests: u64 = if ctx.quick { 2_000 } else { 5_000 };
    println!(
        "-- gitlab-com: backfill at {} requests per {} s per token and {}-{} ms per request, about {want_requests} requests needed",
        rate.requests, rate.period_secs, LATENCY.min_ms, LATENCY.max_ms
    );
    let unit = unit();
    let seed = 21;
    let projects = projects_for(seed, &unit, want_requests, Truth::min_requests);
    let spec = spec(&unit, projects);
    let start = start_date(&spec);
    let dataset = Dataset::generate(seed, Size::Custom(spec));
    let want = Truth::of(&dataset, start);
    let minimum = want.min_requests();
    let floor = Duration::from_secs_f64(minimum as f64 * rate.period_secs as f64 / f64::from(rate.requests));
    println!(
        "   {} records ({}); at least {minimum} requests ({} validation and hook, {} list pages, {} notes/commits/pipeline pages, {} closing catch-up); floor {:.1}s",
        want.records(),
        want.summary(),
        want.fixed_requests,
        want.list_requests,
        want.child_requests,
        want.catch_up_requests,
        floor.as_secs_f64()
    );
    let config = SimConfig { rate_limit: rate.clone(), latency: LATENCY, ..SimConfig::default() };
    let Setup { sim, owner, store, worker } = Setup::start(ctx, "gitlab_com", dataset, config).await?;
    sim.sim.reset_stats();
    let began = Instant::now();
    let id = connect(&store, &sim, TENANT, start).await?;
    // The simulator's counters carry no times: polled often, each new 429 is dated to the poll.
    let mut limited_at: Vec<Duration> = Vec::new();
    let mut seen = 0;
    let live = wait_live(&store, TENANT, id, floor * 20 + Duration::from_secs(600));
    tokio::pin!(live);
    let outcome = loop {
        tokio::select! {
            outcome = &mut live => break outcome,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                let limited = sim.sim.stats().rate_limited;
                limited_at.extend(std::iter::repeat_n(began.elapsed(), (limited - seen) as usize));
                seen = limited;
            }
        }
    };
    outcome?;
    let took = began.elapsed();
    let stats = sim.sim.stats();
    limited_at.extend(std::iter::repeat_n(took, (stats.rate_limited - seen) as usize));
    drop(worker);
    sim.shutdown().await;
    check_complete(&want, &stored(&owner).await?)?;

    let made = stats.total_requests;
    let first_minute = limited_at.iter().filter(|t| **t <= Duration::from_secs(60)).count();
    let after = limited_at.len() - first_minute;
    println!(
        "   live after {:.1}s = {:.2}x the floor; {made} requests = {:.3}x the minimum; 429s: {first_minute} in the first minute, {after} after",
        took.as_secs_f64(),
        took.as_secs_f64() / floor.as_secs_f64(),
        made as f64 / minimum as f64,
    );
    Ok(Section {
        id: "gitlab_com",
        title: "2. Backfill under gitlab.com conditions",
        markdown: markdown(&want, &rate, floor, took, &stats, first_minute, after)?,
    })
}

fn markdown(
    want: &Truth,
    rate: &RateLimitConfig,
    floor: Duration,
    took: Duration,
    stats: &Stats,
    first_minute: usize,
    after: usize,
) -> Result<String> {
    let minimum = want.min_requests();
    let made = stats.total_requests;
    let time_ratio = took.as_secs_f64() / floor.as_secs_f64();
    let request_ratio = made as f64 / minimum as f64;
    let achieved = made as f64 / took.as_secs_f64() * 60.0;
    let mut md = String::new();
    writeln!(
        md,
        "The simulator with gitlab.com's authenticated API limit ({} requests per {} s per token, fixed windows) and \
         {}-{} ms added to every response; the worker in a process of its own with default settings; one connection to a Premium group, \
         from `validating` to `live` ({}, {} records, checked equal to the rows stored). The minimum is counted off the \
         dataset at the client's page size ({} per page, at least one request per collection): {} for validation and \
         the hook, {} pages of project collections (with each project's branches), {} pages of merge requests' and \
         issues' notes and commits and one request per pipeline (its timings), {} for the catch-up that closes the \
         backfill (branches, comment events, one page per stream). The \
         floor is that minimum divided by the rate. GitLab's windows are fixed minutes, so a run that starts late in \
         one window gets that window's full allowance early, and can finish a little under the floor.\n",
        rate.requests,
        rate.period_secs,
        LATENCY.min_ms,
        LATENCY.max_ms,
        want.summary(),
        want.records(),
        gitlab_client::PER_PAGE,
        want.fixed_requests,
        want.list_requests,
        want.child_requests,
        want.catch_up_requests,
    )?;
    writeln!(md, "| figure | measured | limit | ratio | target | verdict |")?;
    writeln!(md, "|---|---:|---:|---:|---|---|")?;
    writeln!(
        md,
        "| time to live | {:.1} s | floor {:.1} s | {time_ratio:.2} | <= {TARGET_TIME} | {} |",
        took.as_secs_f64(),
        floor.as_secs_f64(),
        verdict(time_ratio <= TARGET_TIME)
    )?;
    writeln!(
        md,
        "| GitLab requests | {made} | minimum {minimum} | {request_ratio:.3} | <= {TARGET_REQUESTS} | {} |",
        verdict(request_ratio <= TARGET_REQUESTS)
    )?;
    // What completeness costs: every stored record (commit comments and pipeline timings
    // included) against the requests made, the figure issue-level plans compare.
    writeln!(
        md,
        "| GitLab requests per stored record | {:.3} | minimum {:.3} | | | |",
        made as f64 / want.records() as f64,
        minimum as f64 / want.records() as f64,
    )?;
    writeln!(md, "| 429s in the first minute | {first_minute} | | | (allowed) | |")?;
    writeln!(md, "| 429s after the first minute | {after} | 0 | | none | {} |", verdict(after == 0))?;
    writeln!(
        md,
        "| request rate achieved | {achieved:.0} / min | {} / min | {:.2} | | |",
        rate.requests,
        achieved / f64::from(rate.requests)
    )?;

    // Where the requests beyond the minimum went: every answer that was not a success.
    let failures: BTreeMap<(&str, u16), u64> = stats
        .requests
        .iter()
        .flat_map(|(route, by_status)| {
            by_status.iter().filter(|(s, _)| !(200..300).contains(*s)).map(move |(s, n)| ((route.as_str(), *s), *n))
        })
        .collect();
    if !failures.is_empty() {
        writeln!(
            md,
            "\nAnswers other than 2xx, by route (a 403 on pipelines is a project without CI: one request, counted in the minimum): {}.",
            failures.iter().map(|((r, s), n)| format!("`{r}` {s} x{n}")).collect::<Vec<_>>().join(", ")
        )?;
    }
    let mut why = Vec::new();
    if time_ratio > TARGET_TIME {
        let per_request = took.as_secs_f64() * 1000.0 / made as f64;
        let budget = rate.period_secs as f64 * 1000.0 / f64::from(rate.requests);
        why.push(if achieved < f64::from(rate.requests) * 0.9 {
            format!(
                "time: the backfill made {achieved:.0} requests a minute, {:.0}% of what the limit allows: one request \
                 every {per_request:.0} ms, while the limit allows one every {budget:.0} ms. A connection's backfill \
                 sends one request at a time (each page, then each merge request's notes and commits, each issue's \
                 notes, in turn), so with {}-{} ms per request it is bound by latency, not by the rate. What would close \
                 it: fetch the children of a page (and the next page) concurrently, a few requests in flight, so that \
                 the shared rate budget rather than the round trip sets the pace",
                achieved / f64::from(rate.requests) * 100.0,
                LATENCY.min_ms,
                LATENCY.max_ms
            )
        } else {
            format!(
                "time: the backfill ran at {achieved:.0} requests a minute, near the limit, and still took {time_ratio:.2}x \
                 the floor: the waits after 429s and the pacing's slow-down near the end of each window cost the rest"
            )
        });
    }
    if request_ratio > TARGET_REQUESTS {
        why.push(format!(
            "requests: {} more than the minimum; the answers other than 2xx above are the repeated requests (a 429 fails \
             the page and the job repeats it from its checkpoint)",
            made.saturating_sub(minimum)
        ));
    }
    if after > 0 {
        why.push(format!(
            "429s: {after} after the first minute: the pacing (`gitlab_rate_budgets`, from the RateLimit-* headers) let \
             requests through past the window's end"
        ));
    }
    if !why.is_empty() {
        writeln!(md, "\nWhy targets are missed:\n")?;
        for w in why {
            writeln!(md, "- {w}.")?;
        }
    }
    Ok(md)
}
