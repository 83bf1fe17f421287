//! Complete history against a GitLab that does what GitLab does: lists that reorder while they
//! are paged, commit dates that lie, force pushes, deletions GitLab sends nothing for, and text
//! PostgreSQL cannot hold. After a backfill or one catch-up, what is stored equals what the
//! simulator holds.

use std::collections::BTreeSet;
use std::time::Duration;

use connector_store::TenantId;
use connector_store::connections::Status;
use connector_store::jobs::Job;
use connector_worker::Jobs;
use gitlab_sim::{Dataset, Size};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

mod common;

use common::*;

/// Lists of more than one page in every project: the reorders happen between pages.
fn paged_dataset(seed: u64) -> Dataset {
    let mut spec = Size::Small.spec();
    spec.merge_requests_per_project = 110;
    spec.issues_per_project = 110;
    spec.pipelines_per_project = 110;
    spec.max_notes_per_item = 1;
    spec.years = 1;
    Dataset::generate(seed, Size::Custom(spec))
}

async fn control(env: &Env, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new().request(method, format!("{}/-/sim/{path}", env.sim.base_url)).json(&body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// How many non-first pages a backfill of these projects reads from reordering lists (merge
/// requests, issues, pipelines): each is one edit of the simulator's churn.
fn later_pages(dataset: &Dataset, projects: &[u64], start: chrono::DateTime<chrono::Utc>) -> u64 {
    projects
        .iter()
        .map(|&id| {
            let p = dataset.project(id).unwrap();
            let mrs = p.merge_requests.iter().filter(|m| m.updated_at >= start).count();
            let issues = if p.issues_enabled { p.issues.iter().filter(|i| i.updated_at >= start).count() } else { 0 };
            let pipelines = if p.jobs_enabled { p.pipelines.iter().filter(|pl| pl.updated_at >= start).count() } else { 0 };
            [mrs, issues, pipelines].iter().map(|&n| n.div_ceil(100).saturating_sub(1) as u64).sum::<u64>()
        })
        .sum()
}

async fn churned(env: &Env) -> u64 {
    control(env, reqwest::Method::GET, "stats", Value::Null).await["churned"].as_u64().unwrap()
}

/// A Premium tenant (every project of its group) and then a Free tenant (two listed projects)
/// backfill while each list they page through changes under them: one item of an already read
/// page is edited before every later page, as busy projects do. What each stores equals the
/// ground truth when it shows `live`.
async fn backfill_under_reordering(owner: PgPool, version: &str) {
    let env = env(&owner, paged_dataset(12)).await;
    control(&env, reqwest::Method::PUT, "rate_limit", json!({"enabled": false})).await;
    control(&env, reqwest::Method::PUT, "instance", json!({"edition": "ee", "version": version})).await;
    let dataset = env.sim.sim.dataset();
    let premium_projects = group_projects(&dataset, PREMIUM_GROUP);
    let free_projects: Vec<u64> = group_projects(&dataset, FREE_GROUP).into_iter().take(2).collect();
    let (stop, worker) = env.start_workers(Duration::from_secs(30), "pod");

    let mut before = 0;
    for (tenant, group, projects, listed) in [
        ("premium-co", PREMIUM_GROUP, &premium_projects, vec![]),
        ("free-co", FREE_GROUP, &free_projects, free_projects.iter().map(u64::to_string).collect()),
    ] {
        // Exactly as many edits as the backfill reads later pages: all of them land while it
        // pages, none after it is live.
        let edits = later_pages(&dataset, projects, env.start);
        assert!(edits >= 3, "{tenant}: the dataset must page for the test to mean anything ({edits})");
        control(&env, reqwest::Method::PUT, "churn", json!({"enabled": true, "budget": edits})).await;
        let id = env.connect(tenant, vec![group], listed).await;
        env.wait_for(tenant, id, Status::Live, Duration::from_secs(240)).await;
        let after = churned(&env).await;
        assert_eq!(after - before, edits, "{tenant}: every edit happened while the backfill paged");
        before = after;
        let truth = env.sim.sim.dataset();
        assert_same(&stored(&env.store, tenant, id).await, &expected(&truth, projects, env.start), tenant);
        println!("{tenant} on GitLab {version}: {edits} items edited while paged, stored data equals the ground truth");
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_backfill_while_lists_reorder_stores_the_ground_truth(owner: PgPool) {
    backfill_under_reordering(owner, "19.1.0").await;
}

/// GitLab before 18.3 refuses keyset pagination on issues: offset pages by creation instead.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_backfill_while_lists_reorder_stores_the_ground_truth_without_issue_keyset(owner: PgPool) {
    backfill_under_reordering(owner, "17.9.0").await;
}

/// A live connection, synced by its own jobs, and a job runner for its catch-ups.
async fn live(env: &Env, tenant: &str, group: i64) -> (Uuid, connector_worker::GitLabJobs) {
    let (stop, worker) = env.start_workers(Duration::from_secs(30), "pod");
    let id = env.connect(tenant, vec![group], vec![]).await;
    env.wait_for(tenant, id, Status::Live, Duration::from_secs(120)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    (id, env.jobs(Duration::from_secs(30)))
}

async fn catch_up(jobs: &connector_worker::GitLabJobs, tenant: &str, id: Uuid) {
    jobs.run(&TenantId::parse(tenant).unwrap(), &Job::CatchUp { connection: id }).await.unwrap();
}

/// Commits are found from the branches, whatever their dates: one dated years ahead no longer
/// hides the pushes after it, commits dated months back (rebased, imported) arrive, commits
/// dated before the start date stay out, a push of four refs (which fires no webhook) is read
/// whole, and a force push's rewritten commits leave our data.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn one_catch_up_stores_the_commits_gitlab_has_whatever_their_dates(owner: PgPool) {
    let env = env(&owner, Dataset::generate(3, Size::Small)).await;
    let (id, jobs) = live(&env, "acme", PREMIUM_GROUP).await;
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    let project = projects[0];
    let default = dataset.project(project).unwrap().default_branch.clone();
    let future = "2031-06-01T12:00:00Z";
    let months_back = (chrono::Utc::now() - chrono::Duration::days(120)).to_rfc3339();
    let years_back = "2019-03-01T09:00:00Z";
    let push_path = format!("projects/{project}/push?wait=true");
    let push = |body: Value| control(&env, reqwest::Method::POST, &push_path, body);

    push(json!({"branch": default, "commits": 1, "committed_date": future, "authored_date": future})).await;
    catch_up(&jobs, "acme", id).await;
    push(json!({"refs": [
        {"branch": default, "commits": 3},
        {"branch": "topic-a", "commits": 2},
        {"branch": "topic-b", "commits": 2, "committed_date": months_back, "authored_date": months_back},
        {"branch": "topic-c", "commits": 1},
    ]}))
    .await;
    push(json!({"branch": "imported", "commits": 2, "committed_date": years_back, "authored_date": years_back})).await;
    push(json!({"branch": default, "commits": 25})).await;
    push(json!({"branch": "topic-a", "commits": 2, "force": true, "reset": 2})).await;
    catch_up(&jobs, "acme", id).await;

    let truth = env.sim.sim.dataset();
    let want = expected(&truth, &projects, env.start);
    let got = stored(&env.store, "acme", id).await;
    let repo = &truth.project(project).unwrap().repository;
    let future_commit = repo.commits.iter().find(|c| c.committed_date.to_rfc3339().starts_with("2031")).unwrap();
    assert!(got.commits.contains(&(project as i64, future_commit.id.clone())));
    let old: Vec<_> = repo.commits.iter().filter(|c| c.committed_date.to_rfc3339().starts_with("2019-03-01")).collect();
    assert_eq!(old.len(), 2);
    assert!(old.iter().all(|c| !got.commits.contains(&(project as i64, c.id.clone()))), "dated before the start date: not stored");
    let rewritten: BTreeSet<_> =
        repo.commits.iter().map(|c| (project as i64, c.id.clone())).filter(|k| !want.commits.contains(k)).collect();
    assert!(rewritten.iter().all(|k| !got.commits.contains(k)), "commits a force push left unreachable are gone");
    assert_same(&got, &want, "acme");
    println!(
        "after a future-dated commit, a 4-ref push, months- and years-old dates and a force push: {} commits equal GitLab's",
        got.commits.len()
    );
}

async fn feed_deletes(env: &Env, tenant: &str, entity: &str) -> Vec<Value> {
    let mut tx = env.store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
    sqlx::query_scalar("SELECT key FROM changes WHERE entity = $1 AND op = 'delete' ORDER BY seq")
        .bind(entity)
        .fetch_all(&mut *tx)
        .await
        .unwrap()
}

/// GitLab sends nothing when a merge request, an issue, a note or a pipeline is deleted, and a
/// group hook (not delivered here) is all that tells of a deleted project. One catch-up (with
/// RECONCILE_INTERVAL elapsed) removes each, and a project moved out of the group, with all
/// they held; the change feed shows every delete.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn deletions_leave_our_data_and_the_feed_reports_them(owner: PgPool) {
    let env = env(&owner, Dataset::generate(4, Size::Small)).await;
    let (id, jobs) = live(&env, "acme", PREMIUM_GROUP).await;
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    // A project with a merge request, an issue and a pipeline in the window, and a user's
    // comment on another of its merge requests (so the comment's parent stays).
    let (kept, mr, issue, pipeline, note, note_parent) = projects
        .iter()
        .filter_map(|&id| dataset.project(id))
        .filter(|p| p.issues_enabled && p.jobs_enabled)
        .find_map(|p| {
            let mr = p.merge_requests.iter().find(|m| m.updated_at >= env.start)?.iid;
            let issue = p.issues.iter().find(|i| i.updated_at >= env.start)?.iid;
            let pipeline = p.pipelines.iter().find(|pl| pl.updated_at >= env.start)?.id;
            let (note, parent) = p.notes.iter().filter(|n| !n.system).find_map(|n| match n.noteable {
                gitlab_sim::Noteable::MergeRequest { iid }
                    if iid != mr && p.merge_request(iid).is_some_and(|m| m.updated_at >= env.start) =>
                {
                    Some((n.id, iid))
                }
                _ => None,
            })?;
            Some((p.id, mr, issue, pipeline, note, parent))
        })
        .expect("a project with everything");
    let others: Vec<u64> = projects.iter().copied().filter(|&id| id != kept).collect();
    let (deleted_project, moved_project) = (others[0], others[1]);
    let other_group = FREE_GROUP;

    control(&env, reqwest::Method::DELETE, &format!("projects/{kept}/merge_requests/{mr}"), Value::Null).await;
    control(&env, reqwest::Method::DELETE, &format!("projects/{kept}/issues/{issue}"), Value::Null).await;
    control(&env, reqwest::Method::DELETE, &format!("projects/{kept}/notes/{note}"), Value::Null).await;
    control(&env, reqwest::Method::DELETE, &format!("projects/{kept}/pipelines/{pipeline}"), Value::Null).await;
    control(&env, reqwest::Method::DELETE, &format!("projects/{deleted_project}"), Value::Null).await;
    control(&env, reqwest::Method::POST, &format!("projects/{moved_project}/transfer"), json!({"namespace_id": other_group})).await;
    catch_up(&jobs, "acme", id).await;

    let truth = env.sim.sim.dataset();
    let remaining = group_projects(&truth, PREMIUM_GROUP);
    assert!(!remaining.contains(&deleted_project) && !remaining.contains(&moved_project));
    let got = stored(&env.store, "acme", id).await;
    assert_same(&got, &expected(&truth, &remaining, env.start), "acme");
    for gone in [deleted_project, moved_project] {
        assert!(got.commits.iter().all(|(p, _)| *p != gone as i64), "project {gone}: its commits are gone");
        assert!(got.merge_requests.keys().all(|(p, _)| *p != gone as i64));
        assert!(got.notes.keys().all(|(p, _)| *p != gone as i64));
    }
    let has = |deletes: &[Value], key: Value| deletes.contains(&key);
    let k = kept as i64;
    assert!(has(&feed_deletes(&env, "acme", "merge_request").await, json!({"project_id": k, "iid": mr})));
    assert!(has(&feed_deletes(&env, "acme", "issue").await, json!({"project_id": k, "iid": issue})));
    assert!(has(&feed_deletes(&env, "acme", "note").await, json!({"project_id": k, "gitlab_id": note})));
    assert!(has(&feed_deletes(&env, "acme", "pipeline").await, json!({"project_id": k, "gitlab_id": pipeline})));
    let projects_deleted = feed_deletes(&env, "acme", "project").await;
    for gone in [deleted_project, moved_project] {
        assert!(has(&projects_deleted, json!({"gitlab_id": gone})), "project {gone} deleted in the feed");
        let commits = feed_deletes(&env, "acme", "commit").await;
        assert!(commits.iter().any(|k| k["project_id"] == json!(gone)), "project {gone}: its commits' deletes are in the feed");
    }
    assert!(got.notes.keys().any(|(p, _)| *p == k) && !got.notes.contains_key(&(k, note as i64)), "note {note} of !{note_parent} gone");
    println!(
        "deleted: a merge request, an issue, a note, a pipeline, a project and a project moved out; all gone after one catch-up, each in the feed"
    );
}

/// U+0000 in a commit message, an issue title and a note body (PostgreSQL's text cannot hold
/// it): each record is stored with U+FFFD and its original kept aside, and the rest of the
/// streams and later catch-ups go on.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_nul_in_text_never_stops_a_stream(owner: PgPool) {
    let env = env(&owner, Dataset::generate(5, Size::Small)).await;
    let (id, jobs) = live(&env, "acme", PREMIUM_GROUP).await;
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    let project = *projects.iter().find(|&&p| dataset.project(p).unwrap().issues_enabled).unwrap();
    let branch = dataset.project(project).unwrap().default_branch.clone();
    control(
        &env,
        reqwest::Method::POST,
        &format!("projects/{project}/push?wait=true"),
        json!({"branch": branch, "commits": 1, "message": "fix\u{0}parser\n\nbody"}),
    )
    .await;
    let issue = control(&env, reqwest::Method::POST, &format!("projects/{project}/issues"), json!({"title": "crash on \u{0} input"})).await;
    let iid = issue["iid"].as_u64().expect("the control API answers the issue");
    control(
        &env,
        reqwest::Method::POST,
        &format!("projects/{project}/notes"),
        json!({"noteable_type": "Issue", "iid": iid, "body": "nul \u{0} here"}),
    )
    .await;
    catch_up(&jobs, "acme", id).await;
    // And once more: nothing is stuck at that page.
    control(&env, reqwest::Method::POST, &format!("projects/{project}/push?wait=true"), json!({"branch": branch, "commits": 2})).await;
    catch_up(&jobs, "acme", id).await;

    let mut tx = env.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    let kept = connector_store::reconcile::kept_aside(&mut tx, id).await.unwrap();
    let resources: BTreeSet<&str> = kept.iter().map(|k| k.resource.as_str()).collect();
    assert_eq!(resources, BTreeSet::from(["commits", "issues", "notes"]), "{kept:?}");
    for k in &kept {
        assert!(String::from_utf8_lossy(&k.original).contains("\\u0000"), "the original keeps its NUL: {k:?}");
        assert!(k.reason.contains("U+0000"));
    }
    let title: String = sqlx::query_scalar("SELECT title FROM issues WHERE connection_id = $1 AND project_id = $2 AND iid = $3")
        .bind(id)
        .bind(project as i64)
        .bind(iid as i64)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(title, "crash on \u{FFFD} input");
    drop(tx);
    let truth = env.sim.sim.dataset();
    let mut want = expected(&truth, &projects, env.start);
    for text in want.notes.values_mut() {
        *text = text.replace('\0', "\u{FFFD}");
    }
    for (title, ..) in want.issues.values_mut() {
        *title = title.replace('\0', "\u{FFFD}");
    }
    assert_same(&stored(&env.store, "acme", id).await, &want, "acme");
}

/// The backfill stores pipelines with their timings (the list has none), equal to GitLab's.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn backfilled_pipelines_have_their_timings(owner: PgPool) {
    let env = env(&owner, Dataset::generate(6, Size::Small)).await;
    let (id, _) = live(&env, "acme", PREMIUM_GROUP).await;
    let truth = env.sim.sim.dataset();
    let projects = group_projects(&truth, PREMIUM_GROUP);
    let mut want = BTreeSet::new();
    for &pid in &projects {
        let p = truth.project(pid).unwrap();
        if !p.jobs_enabled {
            continue;
        }
        for pl in p.pipelines.iter().filter(|pl| pl.updated_at >= env.start) {
            let duration = pl.finished_at.zip(pl.started_at).map(|(f, s)| (f - s).num_seconds());
            want.insert((
                pid as i64,
                pl.id as i64,
                pl.started_at.map(|t| t.timestamp_millis()),
                pl.finished_at.map(|t| t.timestamp_millis()),
                duration,
            ));
        }
    }
    assert!(want.iter().any(|(_, _, s, f, d)| s.is_some() && f.is_some() && d.is_some()), "the dataset has finished pipelines");
    let mut tx = env.store.tenant_tx(&TenantId::parse("acme").unwrap()).await.unwrap();
    type Timing = (i64, i64, Option<chrono::DateTime<chrono::Utc>>, Option<chrono::DateTime<chrono::Utc>>, Option<f64>);
    let rows: Vec<Timing> = sqlx::query_as(
        "SELECT project_id, gitlab_id, (raw->>'started_at')::timestamptz, finished_at, duration_seconds FROM pipelines WHERE connection_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let got: BTreeSet<_> = rows
        .into_iter()
        .map(|(p, i, s, f, d)| (p, i, s.map(|t| t.timestamp_millis()), f.map(|t| t.timestamp_millis()), d.map(|d| d as i64)))
        .collect();
    assert_eq!(got, want);
}

/// What a merge request's hook cannot carry, a read-back of that one object brings: the merge
/// time after a merge, the commit list after a push to its branch, with its notes.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_read_back_brings_what_the_hook_lacks(owner: PgPool) {
    let mut spec = Size::Small.spec();
    spec.merge_requests_per_project = 30;
    let env = env(&owner, Dataset::generate(5, Size::Custom(spec))).await;
    let (id, jobs) = live(&env, "acme", PREMIUM_GROUP).await;
    let dataset = env.sim.sim.dataset();
    let projects = group_projects(&dataset, PREMIUM_GROUP);
    let (project, merged, pushed) = projects
        .iter()
        .filter_map(|&p| dataset.project(p))
        .find_map(|p| {
            let mut open = p.merge_requests.iter().filter(|m| m.state.as_str() == "opened" && m.updated_at >= env.start);
            Some((p.id, open.next()?.iid, open.next()?.iid))
        })
        .expect("a project with two open merge requests");
    control(&env, reqwest::Method::POST, &format!("projects/{project}/merge_requests/{merged}/merge"), json!({})).await;
    control(&env, reqwest::Method::POST, &format!("projects/{project}/merge_requests/{pushed}/commits"), json!({"count": 2})).await;
    let tenant = TenantId::parse("acme").unwrap();
    for iid in [merged, pushed] {
        let object = connector_store::jobs::ObjectRef::MergeRequest { project: project as i64, iid: iid as i64 };
        jobs.run(&tenant, &Job::Refresh { connection: id, object }).await.unwrap();
    }
    let dataset = env.sim.sim.dataset();
    let truth = dataset.project(project).unwrap().merge_request(merged).unwrap().clone();
    let mut tx = env.store.tenant_tx(&tenant).await.unwrap();
    let (state, merged_at): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT state, merged_at FROM merge_requests WHERE connection_id = $1 AND project_id = $2 AND iid = $3")
            .bind(id)
            .bind(project as i64)
            .bind(merged as i64)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    drop(tx);
    assert_eq!(state, "merged");
    assert_eq!(merged_at.map(|t| t.timestamp_millis()), truth.merged_at.map(|t| t.timestamp_millis()));
    let want = expected(&dataset, &projects, env.start);
    let got = stored(&env.store, "acme", id).await;
    let of = |r: &std::collections::BTreeSet<(i64, i64, String)>| -> BTreeSet<String> {
        r.iter().filter(|(p, i, _)| *p == project as i64 && *i == pushed as i64).map(|(_, _, sha)| sha.clone()).collect()
    };
    assert_eq!(of(&got.merge_request_commits), of(&want.merge_request_commits), "the pushed merge request's commits");
    assert_eq!(of(&want.merge_request_commits).len(), dataset.project(project).unwrap().merge_request(pushed).unwrap().commit_shas.len());
    assert_eq!(got.merge_requests.get(&(project as i64, merged as i64)), want.merge_requests.get(&(project as i64, merged as i64)));
}
