//! The worker against the GitLab simulator: connections go from `pending` to `live` by
//! themselves, and what is stored equals the simulator's ground truth, for a Premium tenant
//! (group hooks) and a Free tenant (project hooks), through crashes, faults and rate limits.

use std::time::{Duration, Instant};

use chrono::Utc;
use connector_store::TenantId;
use connector_store::connections::{self, HookMode, Status};
use connector_store::jobs::{self, Job};
use connector_worker::Jobs;
use gitlab_sim::{Dataset, HookOwner, SimHandle, Size};
use sqlx::PgPool;

mod common;

use common::*;

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn premium_and_free_tenants_reach_live_with_the_ground_truth(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let premium = env.connect("premium-co", vec![PREMIUM_GROUP], vec![]).await;
    let dataset = env.sim.sim.dataset();
    let free_projects = group_projects(&dataset, FREE_GROUP);
    let chosen: Vec<u64> = free_projects.iter().copied().take(2).collect();
    let listed = vec![chosen[0].to_string(), dataset.project(chosen[1]).unwrap().path_with_namespace.clone()];
    let free = env.connect("free-co", vec![FREE_GROUP], listed).await;

    let p = env.wait_for("premium-co", premium, Status::Live, Duration::from_secs(60)).await;
    let f = env.wait_for("free-co", free, Status::Live, Duration::from_secs(60)).await;
    assert_eq!((p.hook_mode, f.hook_mode), (Some(HookMode::Group), Some(HookMode::Project)));
    assert_eq!(p.gitlab_username.as_deref(), Some("owner"));

    let premium_projects = group_projects(&dataset, PREMIUM_GROUP);
    let mut resolved = p.resolved_project_ids.clone().unwrap();
    resolved.sort();
    assert_eq!(resolved, premium_projects.iter().map(|&p| p as i64).collect::<Vec<_>>());
    assert_same(&stored(&env.store, "premium-co", premium).await, &expected(&dataset, &premium_projects, env.start), "premium");
    assert_same(&stored(&env.store, "free-co", free).await, &expected(&dataset, &chosen, env.start), "free");

    // Hooks: one group hook for the Premium group, one project hook per listed Free project,
    // each pointing at its own endpoint with its own secret.
    let hooks = env.sim.sim.with_dataset(|d| d.hooks.clone());
    let group_hooks: Vec<_> = hooks.iter().filter(|h| h.owner == HookOwner::Group(PREMIUM_GROUP as u64)).collect();
    assert_eq!(group_hooks.len(), 1);
    let project_hooks: Vec<_> = hooks.iter().filter(|h| matches!(h.owner, HookOwner::Project(id) if chosen.contains(&id))).collect();
    assert_eq!(project_hooks.len(), 2);
    let mut secrets: Vec<_> = hooks.iter().map(|h| (h.token.clone().unwrap(), h.signing_token.clone().unwrap())).collect();
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 3, "every hook has its own secrets");
    assert!(hooks.iter().all(|h| h.url.starts_with("http://127.0.0.1:9/webhooks/gitlab/")));

    // A project with CI/CD switched off answers 403 for pipelines: recorded, not a failure.
    let ci_off: Vec<i64> = premium_projects.iter().filter(|&&id| !dataset.project(id).unwrap().jobs_enabled).map(|&id| id as i64).collect();
    let mut tx = env.store.tenant_tx(&TenantId::parse("premium-co").unwrap()).await.unwrap();
    let skipped: Vec<i64> = connector_store::sync::skipped(&mut tx, premium)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.resource == connector_store::sync::Resource::Pipelines)
        .map(|s| s.project_id)
        .collect();
    assert_eq!(skipped, ci_off);
    // Neither tenant sees a row of the other's.
    let foreign: i64 =
        sqlx::query_scalar("SELECT count(*) FROM commits WHERE connection_id = $1").bind(free).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(foreign, 0);
    drop(tx);

    // Installing again changes nothing in GitLab: hooks are updated, not duplicated.
    let jobs = env.jobs(Duration::from_secs(2));
    jobs.run(&TenantId::parse("premium-co").unwrap(), &Job::InstallHooks { connection: premium }).await.unwrap();
    assert_eq!(env.sim.sim.with_dataset(|d| d.hooks.len()), hooks.len());

    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

fn revoke(sim: &SimHandle, value: &str) {
    sim.sim.with_dataset_mut(|d| d.tokens.iter_mut().find(|t| t.value == value).unwrap().revoked = true);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_token_revoked_mid_sync_moves_the_connection_to_needs_reauth(owner: PgPool) {
    let mut spec = Size::Small.spec();
    spec.commits_per_project = 600;
    let env = env(&owner, Dataset::generate(2, Size::Custom(spec))).await;
    // A short slice: the backfill is still running when the token goes.
    let (stop, worker) = env.start_workers(Duration::from_millis(200), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Backfilling, Duration::from_secs(30)).await;
    revoke(&env.sim, OWNER_TOKEN);
    let c = env.wait_for("acme", id, Status::NeedsReauth, Duration::from_secs(30)).await;
    assert!(c.status_message.as_deref().unwrap().contains("revoked"), "{:?}", c.status_message);
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_token_check_finds_a_revoked_or_expiring_token(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let jobs = env.jobs(Duration::from_secs(2));
    let tenant = TenantId::parse("acme").unwrap();

    // Expiring in 10 days: reported, still live.
    let soon = Utc::now().date_naive() + chrono::Duration::days(10);
    env.sim.sim.with_dataset_mut(|d| d.tokens.iter_mut().find(|t| t.value == OWNER_TOKEN).unwrap().expires_at = Some(soon));
    jobs.run(&tenant, &Job::TokenHealth { connection: id }).await.unwrap();
    let c = env.connection("acme", id).await;
    assert_eq!(c.status, Status::Live);
    assert!(c.status_message.unwrap().contains(&soon.to_string()));

    revoke(&env.sim, OWNER_TOKEN);
    jobs.run(&tenant, &Job::TokenHealth { connection: id }).await.unwrap();
    let c = env.connection("acme", id).await;
    assert_eq!(c.status, Status::NeedsReauth);
    assert!(c.status_message.unwrap().contains("revoked"));
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn catch_up_recreates_a_deleted_hook_and_picks_up_a_new_project(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let premium = env.connect("premium-co", vec![PREMIUM_GROUP], vec![]).await;
    let free = env.connect("free-co", vec![FREE_GROUP], vec![]).await;
    env.wait_for("premium-co", premium, Status::Live, Duration::from_secs(60)).await;
    let before = env.wait_for("free-co", free, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let jobs = env.jobs(Duration::from_secs(2));

    // Someone deletes our group hook in GitLab.
    env.sim.sim.with_dataset_mut(|d| d.hooks.retain(|h| h.owner != HookOwner::Group(PREMIUM_GROUP as u64)));
    jobs.run(&TenantId::parse("premium-co").unwrap(), &Job::CatchUp { connection: premium }).await.unwrap();
    let hooks = env.sim.sim.with_dataset(|d| d.hooks.clone());
    let group_hook = hooks.iter().find(|h| h.owner == HookOwner::Group(PREMIUM_GROUP as u64)).expect("the hook is back");
    let mut tx = env.store.tenant_tx(&TenantId::parse("premium-co").unwrap()).await.unwrap();
    let records = connector_store::hooks::for_connection(&mut tx, premium).await.unwrap();
    drop(tx);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].gitlab_hook_id, Some(group_hook.id as i64));
    assert_eq!(records[0].status, connector_store::hooks::HookStatus::Active);
    assert!(group_hook.url.ends_with(&records[0].id.to_string()), "the same endpoint as before");

    // A project is created in the Free group: project-hook mode has no project_create event,
    // so the catch-up finds it, syncs it and hooks it.
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/-/sim/projects", env.sim.base_url))
        .json(&serde_json::json!({"namespace_id": FREE_GROUP, "name": "new-app"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_id = created["id"].as_u64().expect("the simulator answers with the project");
    http.post(format!("{}/-/sim/projects/{new_id}/push", env.sim.base_url))
        .json(&serde_json::json!({"branch": "main", "commits": 3}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    jobs.run(&TenantId::parse("free-co").unwrap(), &Job::CatchUp { connection: free }).await.unwrap();
    let after = env.connection("free-co", free).await;
    let resolved = after.resolved_project_ids.clone().unwrap();
    assert_eq!(resolved.len(), before.resolved_project_ids.unwrap().len() + 1);
    assert!(resolved.contains(&(new_id as i64)));
    assert!(env.sim.sim.with_dataset(|d| d.hooks.iter().any(|h| h.owner == HookOwner::Project(new_id))), "the new project got a hook");
    let dataset = env.sim.sim.dataset();
    let all: Vec<u64> = resolved.iter().map(|&p| p as u64).collect();
    assert_same(&stored(&env.store, "free-co", free).await, &expected(&dataset, &all, env.start), "free after catch-up");

    // The project is deleted in GitLab: the catch-up finds it gone, it leaves the sync, and the
    // change feed says so.
    http.delete(format!("{}/-/sim/projects/{new_id}", env.sim.base_url)).send().await.unwrap().error_for_status().unwrap();
    jobs.run(&TenantId::parse("free-co").unwrap(), &Job::CatchUp { connection: free }).await.unwrap();
    let after = env.connection("free-co", free).await;
    assert!(!after.resolved_project_ids.unwrap().contains(&(new_id as i64)));
    let mut tx = env.store.tenant_tx(&TenantId::parse("free-co").unwrap()).await.unwrap();
    let deletes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM changes WHERE entity = 'project' AND op = 'delete' AND (key ->> 'gitlab_id')::bigint = $1",
    )
    .bind(new_id as i64)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(deletes, 1);
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn faults_and_rate_limits_slow_the_sync_but_it_finishes_right(owner: PgPool) {
    let env = env(&owner, Dataset::generate(3, Size::Small)).await;
    env.sim.sim.update_config(|c| {
        c.rate_limit.requests = 40;
        c.rate_limit.period_secs = 2;
        c.faults.error_every = Some(5);
        c.faults.error_statuses = vec![500, 502, 503];
        c.faults.drop_every = Some(13);
    });
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    // Another client of the same GitLab user spends the budget behind our back for a while:
    // the worker meets 429s it could not see coming, and must reschedule rather than fail.
    let storm = {
        let url = format!("{}/api/v4/user", env.sim.base_url);
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for _ in 0..300 {
                let _ = http.get(&url).header("PRIVATE-TOKEN", OWNER_TOKEN).send().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    env.wait_for("acme", id, Status::Live, Duration::from_secs(120)).await;
    storm.await.unwrap();
    let stats = env.sim.sim.stats();
    assert!(stats.injected_errors > 5 && stats.dropped_connections > 2 && stats.rate_limited > 20, "{stats:?}");
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    assert_same(&stored(&env.store, "acme", id).await, &expected(&dataset, &projects, env.start), "under faults");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// A tenant with a huge project does not hold back a small one: backfill jobs take turns.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_small_tenant_finishes_while_a_huge_one_is_still_running(owner: PgPool) {
    let mut spec = Size::Small.spec();
    spec.heavy_project = Some(gitlab_sim::HeavyProject { commits: 8000, merge_requests: 40, issues: 40, pipelines: 40 });
    let env = env(&owner, Dataset::generate(4, Size::Custom(spec))).await;
    let (stop, worker) = env.start_workers(Duration::from_millis(500), "pod");
    let dataset = env.sim.sim.dataset();
    let heavy_group = dataset.projects[0].namespace_id;
    let root = dataset.root_of(heavy_group).unwrap().id as i64;
    let other_root = if root == PREMIUM_GROUP { FREE_GROUP } else { PREMIUM_GROUP };
    let huge = env.connect("huge-co", vec![root], vec![]).await;
    env.wait_for("huge-co", huge, Status::Backfilling, Duration::from_secs(30)).await;
    let small_project = group_projects(&dataset, other_root)[0];
    let small = env.connect("small-co", vec![other_root], vec![small_project.to_string()]).await;
    env.wait_for("small-co", small, Status::Live, Duration::from_secs(60)).await;
    assert_eq!(env.connection("huge-co", huge).await.status, Status::Backfilling, "the huge tenant is still running");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// Each problem the user must fix ends validation with a status and a message saying what to do.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn validation_failures_say_what_to_do(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let jobs = env.jobs(Duration::from_secs(2));
    let tenant = TenantId::parse("acme").unwrap();
    type Case = (&'static str, Vec<i64>, Vec<String>, Status, &'static str);
    let cases: [Case; 6] = [
        ("glpat-sim-owner-read-0002", vec![PREMIUM_GROUP], vec![], Status::Invalid, "lacks scope api"),
        ("glpat-sim-expired-00003", vec![PREMIUM_GROUP], vec![], Status::NeedsReauth, "expired"),
        ("glpat-sim-revoked-00004", vec![PREMIUM_GROUP], vec![], Status::NeedsReauth, "revoked"),
        ("glpat-not-a-token-at-all-000", vec![PREMIUM_GROUP], vec![], Status::NeedsReauth, "does not accept"),
        ("glpat-sim-owner-api-0001", vec![999], vec![], Status::Invalid, "group 999 is not visible"),
        ("glpat-sim-developer-0005", vec![PREMIUM_GROUP], vec![], Status::Invalid, "would need the Owner role on group 1"),
    ];
    for (token, groups, projects, status, needle) in cases {
        let id = env.insert("acme", token, groups, projects).await;
        jobs.run(&tenant, &Job::Validate { connection: id }).await.unwrap();
        let got = env.connection("acme", id).await;
        assert_eq!(got.status, status, "{token}: {:?}", got.status_message);
        let message = got.status_message.unwrap();
        assert!(message.contains(needle), "{token}: {message}");
        assert!(!message.contains(token), "the message repeats the token");
        // GitLab 16.0 and later give every personal access token an expiry date.
        assert!(!message.contains("without an expiry"), "{token}: impossible advice: {message}");
    }

    // A project listed outside the connected groups.
    let dataset = env.sim.sim.dataset();
    let outside = group_projects(&dataset, FREE_GROUP)[0];
    let c = env.insert("acme", OWNER_TOKEN, vec![PREMIUM_GROUP], vec![outside.to_string()]).await;
    jobs.run(&tenant, &Job::Validate { connection: c }).await.unwrap();
    let got = env.connection("acme", c).await;
    assert_eq!(got.status, Status::Invalid);
    assert!(got.status_message.unwrap().contains("not in the connected groups"));
}

/// A group of more than 100 projects over nested subgroups is walked completely.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn validation_resolves_every_project_of_a_large_nested_group(owner: PgPool) {
    let mut spec = Size::Small.spec();
    spec.projects = 260;
    spec.top_groups = 2;
    spec.subgroup_depth = 3;
    spec.commits_per_project = 1;
    spec.merge_requests_per_project = 0;
    spec.issues_per_project = 0;
    spec.pipelines_per_project = 0;
    let env = env(&owner, Dataset::generate(5, Size::Custom(spec))).await;
    let dataset = env.sim.sim.dataset();
    let want = group_projects(&dataset, PREMIUM_GROUP);
    assert!(want.len() > 100, "the dataset must exceed one page: {}", want.len());
    let tenant = TenantId::parse("acme").unwrap();
    let c = env.insert("acme", OWNER_TOKEN, vec![PREMIUM_GROUP], vec![]).await;
    env.jobs(Duration::from_secs(2)).run(&tenant, &Job::Validate { connection: c }).await.unwrap();
    let got = env.connection("acme", c).await;
    assert_eq!(got.status, Status::InstallingHooks, "{:?}", got.status_message);
    let mut resolved = got.resolved_project_ids.unwrap();
    resolved.sort();
    assert_eq!(resolved, want.iter().map(|&p| p as i64).collect::<Vec<_>>());
}

/// Disconnecting removes our hooks from GitLab, then the connection and all it synced.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn disconnect_removes_hooks_then_the_data(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let free = env.connect("free-co", vec![FREE_GROUP], vec![]).await;
    env.wait_for("free-co", free, Status::Live, Duration::from_secs(60)).await;
    let premium = env.connect("premium-co", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("premium-co", premium, Status::Live, Duration::from_secs(60)).await;
    let before = env.sim.sim.with_dataset(|d| d.hooks.len());
    assert!(before > 2);

    let tenant = TenantId::parse("free-co").unwrap();
    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    connections::set_status(&mut tx, free, Status::Deleting, None).await.unwrap();
    jobs::enqueue(&mut tx, Job::Disconnect { connection: free }, Duration::ZERO).await.unwrap();
    tx.commit().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
        if matches!(connections::get(&mut tx, free).await, Err(connector_store::Error::NotFound)) {
            break;
        }
        assert!(Instant::now() < deadline, "the connection was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hooks = env.sim.sim.with_dataset(|d| d.hooks.clone());
    assert_eq!(hooks.len(), 1, "only the other tenant's group hook is left: {hooks:?}");
    assert_eq!(hooks[0].owner, HookOwner::Group(PREMIUM_GROUP as u64));
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM commits WHERE connection_id = $1) + (SELECT count(*) FROM webhook_hooks WHERE connection_id = $1)
              + (SELECT count(*) FROM sync_checkpoints WHERE connection_id = $1)",
    )
    .bind(free)
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(left, 0, "synced data, hooks and checkpoints go with the connection");
    assert_eq!(env.connection("premium-co", premium).await.status, Status::Live, "the other tenant is untouched");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// However many connections a tenant has, it runs at most `tenant_concurrency` syncs at once;
/// the others wait their turn in the queue.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_tenant_runs_no_more_syncs_at_once_than_its_cap(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    // Slow GitLab, so that the two backfills below surely overlap.
    env.sim.sim.update_config(|c| {
        c.latency.min_ms = 30;
        c.latency.max_ms = 30;
    });
    let jobs = env.jobs_with(Duration::from_secs(60), 1);
    let tenant = TenantId::parse("acme").unwrap();
    let a = env.insert("acme", OWNER_TOKEN, vec![PREMIUM_GROUP], vec![]).await;
    let b = env.insert("acme", OWNER_TOKEN, vec![FREE_GROUP], vec![]).await;
    for id in [a, b] {
        jobs.run(&tenant, &Job::Validate { connection: id }).await.unwrap();
        jobs.run(&tenant, &Job::InstallHooks { connection: id }).await.unwrap();
    }
    let queued = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' = 'backfill'",
        )
        .fetch_one(&owner)
        .await
        .unwrap()
    };
    let before = queued().await;
    let (job_a, job_b) = (Job::Backfill { connection: a }, Job::Backfill { connection: b });
    let (ra, rb) = tokio::join!(jobs.run(&tenant, &job_a), jobs.run(&tenant, &job_b));
    ra.unwrap();
    rb.unwrap();
    let statuses = [env.connection("acme", a).await.status, env.connection("acme", b).await.status];
    assert_eq!(statuses.iter().filter(|s| **s == Status::Live).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == Status::Backfilling).count(), 1, "{statuses:?}");
    assert_eq!(queued().await, before + 1, "the one that waited is queued again");
}

/// A backfill slice that finds its connection's lock held (the slice before it has queued it but
/// not yet let go, or a catch-up runs) comes back later: leaving would end the chain of slices
/// and leave the connection backfilling for good.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_backfill_that_finds_the_connection_busy_comes_back(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let jobs = env.jobs(Duration::from_secs(60));
    let tenant = TenantId::parse("acme").unwrap();
    let id = env.insert("acme", OWNER_TOKEN, vec![PREMIUM_GROUP], vec![]).await;
    jobs.run(&tenant, &Job::Validate { connection: id }).await.unwrap();
    jobs.run(&tenant, &Job::InstallHooks { connection: id }).await.unwrap();
    assert_eq!(env.connection("acme", id).await.status, Status::Backfilling);
    let queued = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM apalis.jobs WHERE convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'kind' = 'backfill'",
        )
        .fetch_one(&owner)
        .await
        .unwrap()
    };
    let before = queued().await;
    // The connection's sync lock, as another job's session holds it.
    let mut holder = owner.acquire().await.unwrap();
    let key = i64::from_be_bytes(id.as_bytes()[..8].try_into().unwrap());
    assert!(sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *holder).await.unwrap());
    jobs.run(&tenant, &Job::Backfill { connection: id }).await.unwrap();
    assert_eq!(queued().await, before + 1, "the busy slice is queued again");
    assert_eq!(env.connection("acme", id).await.status, Status::Backfilling);
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *holder).await.unwrap();
    jobs.run(&tenant, &Job::Backfill { connection: id }).await.unwrap();
    assert_eq!(env.connection("acme", id).await.status, Status::Live, "the slice that came back finishes the backfill");
}

/// A GitLab that cannot be reached: validation retries, then gives up, and the connection ends
/// `failed` with what happened and what to do, instead of `validating` with no job behind it.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn an_unreachable_gitlab_ends_in_failed_with_what_to_do(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    // Nothing listens there.
    sqlx::query("UPDATE gitlab_connections SET gitlab_url = 'http://127.0.0.1:9' WHERE id = $1").bind(id).execute(&owner).await.unwrap();
    let retry = connector_worker::RetryPolicy { max_attempts: 3, base: Duration::from_millis(50), cap: Duration::from_millis(200) };
    let (stop, worker) = env.start_workers_with(env.jobs(Duration::from_secs(2)), retry, "pod");
    let failed = env.wait_for("acme", id, Status::Failed, Duration::from_secs(60)).await;
    let message = failed.status_message.unwrap();
    // The one message for every URL where no GitLab answers (see the hostile suite).
    assert!(
        message.starts_with("validating the connection to http://127.0.0.1:9 stopped after 3 attempts: no GitLab answered at gitlab_url"),
        "{message}"
    );
    assert!(message.contains(&format!("POST /v1/connections/{id}/resync")), "{message}");
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

/// A live connection whose catch-ups fail shows it in its health from the first failed attempt
/// (the job's retries may take many minutes to run out), and is healthy again once one succeeds.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn failing_catch_ups_show_in_health_until_one_succeeds(owner: PgPool) {
    use connector_store::health::{self, HealthState, ReasonCode};
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let health_now = || async {
        let tenant = TenantId::parse("acme").unwrap();
        let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
        let c = connections::get(&mut tx, id).await.unwrap();
        health::of(&mut tx, &[c], Utc::now()).await.unwrap().remove(&id).unwrap()
    };
    assert_eq!(health_now().await.state, HealthState::Healthy);

    env.sim.sim.update_config(|c| {
        c.faults.error_rate = 1.0;
        c.faults.error_statuses = vec![503];
    });
    let jobs = env.jobs(Duration::from_secs(2));
    let tenant = TenantId::parse("acme").unwrap();
    assert!(jobs.run(&tenant, &Job::CatchUp { connection: id }).await.is_err());
    let failing = health_now().await;
    assert_eq!(failing.state, HealthState::Degraded);
    assert_eq!(failing.reasons.iter().map(|r| r.code).collect::<Vec<_>>(), [ReasonCode::SyncFailing]);
    assert!(failing.reasons[0].message.contains("503"), "{:?}", failing.reasons[0]);
    assert_eq!(env.connection("acme", id).await.status, Status::Live);

    env.sim.sim.update_config(|c| c.faults = Default::default());
    jobs.run(&tenant, &Job::CatchUp { connection: id }).await.unwrap();
    assert_eq!(health_now().await.state, HealthState::Healthy);
}

/// A self-managed EE instance reads `default` for every group's plan, so validation chooses group
/// hooks; one without a license for them refuses the group hook to its Owner. The connection then
/// falls back to a project hook per project, says so in its status, and syncs as any other.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn refused_group_hooks_on_self_managed_fall_back_to_project_hooks(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    env.sim.sim.with_dataset_mut(|d| {
        d.instance.self_managed = true;
        d.instance.license = None;
    });
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    let live = env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(live.hook_mode, Some(HookMode::Project));
    let message = live.status_message.unwrap_or_default();
    assert!(message.contains("refused a group webhook on group 1"), "{message}");
    assert!(message.contains("project webhooks"), "{message}");

    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    let hooks = env.sim.sim.with_dataset(|d| d.hooks.clone());
    assert!(hooks.iter().all(|h| !matches!(h.owner, HookOwner::Group(_))), "no group hook left");
    let mut hooked: Vec<u64> = hooks
        .iter()
        .filter_map(|h| match h.owner {
            HookOwner::Project(p) => Some(p),
            _ => None,
        })
        .collect();
    hooked.sort();
    assert_eq!(hooked, projects, "one project hook per project");
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    let ours = connector_store::hooks::for_connection(&mut tx, id).await.unwrap();
    assert!(
        ours.iter()
            .all(|h| h.scope == connector_store::hooks::HookScope::Project && h.status == connector_store::hooks::HookStatus::Active),
        "{ours:?}"
    );
    assert_eq!(ours.len(), projects.len());
    drop(tx);
    assert_same(&stored(&env.store, "acme", id).await, &expected(&dataset, &projects, env.start), "self-managed");
}

/// The user replaces an expiring token (PATCH `access_token`, as the API does it) and then revokes
/// the old one: the connection validates again with the new token and is live again with the
/// same hooks in GitLab (none added, none removed) and the same data, nothing fetched twice.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn replacing_the_token_keeps_the_hooks_and_the_data(owner: PgPool) {
    const NEW_TOKEN: &str = "glpat-sim-owner-renewed-07";
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP, FREE_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    let sim_hooks = || {
        let mut hooks: Vec<(u64, String)> = env.sim.sim.with_dataset(|d| d.hooks.iter().map(|h| (h.id, h.url.clone())).collect());
        hooks.sort();
        hooks
    };
    let tenant = TenantId::parse("acme").unwrap();
    let our_hooks = async || {
        let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
        let mut hooks: Vec<_> =
            connector_store::hooks::for_connection(&mut tx, id).await.unwrap().into_iter().map(|h| (h.id, h.gitlab_hook_id)).collect();
        hooks.sort();
        hooks
    };
    let (hooks_before, ours_before) = (sim_hooks(), our_hooks().await);
    assert!(hooks_before.len() > 1, "a group hook and project hooks: {hooks_before:?}");
    let dataset = env.sim.sim.dataset();
    let mut projects = group_projects(&dataset, PREMIUM_GROUP);
    projects.extend(group_projects(&dataset, FREE_GROUP));
    let want = expected(&dataset, &projects, env.start);
    assert_same(&stored(&env.store, "acme", id).await, &want, "before");

    // The old token expires in a week; the user makes a new one for the same account.
    env.sim.sim.with_dataset_mut(|d| {
        let old = d.tokens.iter_mut().find(|t| t.value == OWNER_TOKEN).unwrap();
        old.expires_at = Some(Utc::now().date_naive() + chrono::Duration::days(7));
        let mut renewed = old.clone();
        renewed.id = d.tokens.iter().map(|t| t.id).max().unwrap() + 1;
        renewed.value = NEW_TOKEN.into();
        renewed.expires_at = Some(Utc::now().date_naive() + chrono::Duration::days(365));
        d.tokens.push(renewed);
    });
    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    let changes = connections::ConnectionChanges { access_token: Some(NEW_TOKEN.into()), ..Default::default() };
    connections::update(&mut tx, env.store.keys(), id, changes).await.unwrap();
    jobs::enqueue(&mut tx, Job::Validate { connection: id }, Duration::ZERO).await.unwrap();
    tx.commit().await.unwrap();
    revoke(&env.sim, OWNER_TOKEN);
    let routes_before = env.sim.sim.stats().requests;

    let live = env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(live.token_expires_at, Some(Utc::now().date_naive() + chrono::Duration::days(365)), "the new token's expiry");
    assert_eq!(sim_hooks(), hooks_before, "the same hooks in GitLab");
    assert_eq!(our_hooks().await, ours_before, "the same hooks on our side");
    assert_same(&stored(&env.store, "acme", id).await, &want, "after");
    // Validation, the hook check and a catch-up; no stream is backfilled again.
    let after = env.sim.sim.stats();
    for route in [
        "/api/v4/projects/{id}/repository/commits",
        "/api/v4/projects/{id}/merge_requests/{iid}/commits",
        "/api/v4/projects/{id}/merge_requests/{iid}/notes",
        "/api/v4/projects/{id}/issues/{iid}/notes",
        "/api/v4/projects/{id}/pipelines/{pipeline_id}",
    ] {
        let count = |stats: &std::collections::BTreeMap<String, std::collections::BTreeMap<u16, u64>>| {
            stats.get(route).map_or(0, |codes| codes.values().sum::<u64>())
        };
        assert!(count(&routes_before) > 0, "{route} is not what the backfill asks: {:?}", routes_before.keys());
        assert_eq!(count(&after.requests), count(&routes_before), "{route} asked again after the token was replaced");
    }
}

/// Paused mid-backfill, a connection reads nothing more from GitLab once the running slice ends,
/// and no job that ends later undoes the pause; resumed, it goes on to live with the ground truth.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_paused_connection_reads_nothing_from_gitlab_until_resumed(owner: PgPool) {
    let mut spec = Size::Small.spec();
    spec.commits_per_project = 600;
    let env = env(&owner, Dataset::generate(2, Size::Custom(spec))).await;
    let (stop, worker) = env.start_workers(Duration::from_millis(200), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Backfilling, Duration::from_secs(30)).await;
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    assert!(connections::pause(&mut tx, id).await.unwrap());
    tx.commit().await.unwrap();

    // The slice that was running ends within its 200 ms (plus a page); then nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = env.sim.sim.stats().total_requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.sim.sim.stats().total_requests, requests, "GitLab was read while paused");
    let paused = env.connection("acme", id).await;
    assert_eq!(paused.status, Status::Paused, "{:?}", paused.status_message);
    assert!(paused.status_message.unwrap().contains("resume it"));
    // Every kind of job that reads GitLab, run for the paused connection (a webhook's read-back,
    // the token check, a validation queued before the pause...), ends without a request.
    let jobs = env.jobs(Duration::from_secs(2));
    let project = group_projects(&env.sim.sim.dataset(), PREMIUM_GROUP)[0] as i64;
    for job in [
        Job::Validate { connection: id },
        Job::InstallHooks { connection: id },
        Job::Backfill { connection: id },
        Job::CatchUp { connection: id },
        Job::TokenHealth { connection: id },
        Job::Refresh { connection: id, object: connector_store::jobs::ObjectRef::Issue { project, iid: 1 } },
    ] {
        jobs.run(&tenant, &job).await.unwrap();
        assert_eq!(env.sim.sim.stats().total_requests, requests, "{job:?} read GitLab while paused");
        assert_eq!(env.connection("acme", id).await.status, Status::Paused, "{job:?}");
    }

    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    assert!(connections::resume(&mut tx, id).await.unwrap());
    jobs::enqueue_now_once(&mut tx, Job::Validate { connection: id }).await.unwrap();
    tx.commit().await.unwrap();
    env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let dataset = env.sim.sim.dataset();
    assert_same(&stored(&env.store, "acme", id).await, &expected(&dataset, &group_projects(&dataset, PREMIUM_GROUP), env.start), "resumed");
}

/// A resync that names what to read again (as the API's `refetch` does it: the scope's streams
/// reset, the connection back to `pending`) reads exactly that again: commits lost from two
/// projects come back for the one named, then, asked for every project's commits, for both,
/// and the connection ends live with the ground truth. (The catch-up never reads unchanged
/// commits again, so only the refetch can bring these back.)
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_refetch_reads_again_what_it_names(owner: PgPool) {
    let env = env(&owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![PREMIUM_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    let want = expected(&dataset, &projects, env.start);
    let with_commits: Vec<i64> = projects.iter().map(|&p| p as i64).filter(|p| want.commits.iter().any(|(q, _)| q == p)).collect();
    let (p, q) = (with_commits[0], with_commits[1]);
    let commits_of = |records: &Records, project: i64| records.commits.iter().filter(|(x, _)| *x == project).count();
    sqlx::query("DELETE FROM commits WHERE connection_id = $1 AND project_id = ANY($2)")
        .bind(id)
        .bind(vec![p, q])
        .execute(&owner)
        .await
        .unwrap();

    let tenant = TenantId::parse("acme").unwrap();
    let refetch = async |project: Option<i64>, resource: Option<connector_store::sync::Resource>| {
        let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
        connector_store::sync::reset_streams(&mut tx, id, project, resource).await.unwrap();
        connections::set_status(&mut tx, id, Status::Pending, None).await.unwrap();
        jobs::enqueue_now_once(&mut tx, Job::Validate { connection: id }).await.unwrap();
        tx.commit().await.unwrap();
        env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    };
    refetch(Some(p), Some(connector_store::sync::Resource::Commits)).await;
    let got = stored(&env.store, "acme", id).await;
    assert_eq!(commits_of(&got, p), commits_of(&want, p), "the named project's commits are back");
    assert_eq!(commits_of(&got, q), 0, "the other project's are not read again");

    refetch(None, Some(connector_store::sync::Resource::Commits)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    assert_same(&stored(&env.store, "acme", id).await, &want, "after refetching every project's commits");
}
