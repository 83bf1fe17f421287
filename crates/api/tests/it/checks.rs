//! The preflight check against the simulated GitLab: the verdicts of the worker's validation,
//! every problem named by its field, nothing stored, bounded in time and per tenant.

use std::time::{Duration, Instant};

use connector_store::connections::{self, HookMode, Status};
use connector_store::jobs::Job;
use connector_store::{Store, TenantId};
use connector_test_support::{app_store_with, simulator};
use connector_worker::Jobs;
use gitlab_client::{ClientOptions, UrlPolicy};
use gitlab_sim::{Dataset, Latency, SimConfig, SimHandle, Size};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

const PREMIUM_GROUP: i64 = 1;
const FREE_GROUP: i64 = 4;
const OWNER: &str = "glpat-sim-owner-api-0001";

struct Env {
    app: TestApp,
    sim: SimHandle,
    /// The worker's view of the same database, to run validation as the worker does.
    worker: Store,
}

async fn env(owner: PgPool) -> Env {
    let sim = simulator(Dataset::generate(1, Size::Small), SimConfig::default()).await;
    let app = TestApp::spawn_with_gitlab_urls(owner.clone(), loopback()).await;
    let worker = app_store_with(&owner, 4, std::sync::Arc::new(app.store.keys().clone())).await;
    Env { app, sim, worker }
}

fn loopback() -> UrlPolicy {
    UrlPolicy::from_allowlist("127.0.0.1/32:*").unwrap()
}

impl Env {
    fn settings(&self, token: &str, groups: &[i64], projects: &[String]) -> Value {
        json!({
            "access_token": token,
            "groups_list": groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","),
            "projects_list": projects.join(","),
            "start_date": "2024-01-01T00:00:00Z",
            "gitlab_url": self.sim.base_url,
        })
    }

    async fn check(&self, tenant: &str, settings: &Value) -> (u16, Value) {
        self.app.call(Method::POST, "/v1/connection-checks", Some(tenant), Some(settings.clone())).await
    }

    /// Creates the connection through the API and runs its validation as the worker does.
    async fn validated(&self, tenant: &str, settings: &Value) -> connections::Connection {
        let (status, created) = self.app.call(Method::POST, "/v1/connections", Some(tenant), Some(settings.clone())).await;
        assert_eq!(status, 201, "{created}");
        let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
        let tenant = TenantId::parse(tenant).unwrap();
        let jobs = crate::common::worker_jobs(self.worker.clone(), loopback(), ClientOptions::default());
        jobs.run(&tenant, &Job::Validate { connection: id }).await.unwrap();
        let mut tx = self.worker.tenant_tx(&tenant).await.unwrap();
        connections::get(&mut tx, id).await.unwrap()
    }

    async fn stored_connections(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM gitlab_connections").fetch_one(&self.app.owner).await.unwrap()
    }
}

fn group_projects(sim: &SimHandle, group: i64) -> Vec<u64> {
    sim.sim.dataset().projects_under(group as u64)
}

/// For every settings problem the worker's validation tests cover, the check's first problem is
/// exactly what the connection shows once validated (its status and message), and good settings
/// validate with the hooks and projects the check foresaw. The check stores nothing and creates
/// no hook in GitLab.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_check_foresees_what_validation_decides(owner: PgPool) {
    let env = env(owner).await;
    let outside = group_projects(&env.sim, FREE_GROUP)[0].to_string();
    type Case = (&'static str, Vec<i64>, Vec<String>, Status, &'static str, &'static str);
    let cases: [Case; 7] = [
        ("glpat-sim-owner-read-0002", vec![PREMIUM_GROUP], vec![], Status::Invalid, "access_token", "lacks scope api"),
        ("glpat-sim-expired-00003", vec![PREMIUM_GROUP], vec![], Status::NeedsReauth, "access_token", "expired"),
        ("glpat-sim-revoked-00004", vec![PREMIUM_GROUP], vec![], Status::NeedsReauth, "access_token", "revoked"),
        ("glpat-not-a-token-at-all-000", vec![PREMIUM_GROUP], vec![], Status::NeedsReauth, "access_token", "does not accept"),
        (OWNER, vec![999], vec![], Status::Invalid, "groups_list", "group 999 is not visible"),
        ("glpat-sim-developer-0005", vec![PREMIUM_GROUP], vec![], Status::Invalid, "projects_list", "would need the Owner role on group 1"),
        (OWNER, vec![PREMIUM_GROUP], vec![outside], Status::Invalid, "projects_list", "not in the connected groups"),
    ];
    for (token, groups, projects, status, field, needle) in cases {
        let settings = env.settings(token, &groups, &projects);
        let hooks_before = env.sim.sim.with_dataset(|d| d.hooks.len());
        let (code, check) = env.check("acme", &settings).await;
        assert_eq!(code, 200, "{check}");
        assert_eq!(env.stored_connections().await, 0, "the check stored nothing");
        assert_eq!(env.sim.sim.with_dataset(|d| d.hooks.len()), hooks_before, "the check created no hook");
        assert_eq!(check["ok"], false, "{token}: {check}");
        let first = &check["problems"][0];
        assert_eq!(first["field"], field, "{token}: {check}");
        assert!(first["message"].as_str().unwrap().contains(needle), "{token}: {check}");
        assert!(!check.to_string().contains(token), "the answer repeats the token");

        let validated = env.validated("acme", &settings).await;
        assert_eq!(validated.status, status, "{token}: {:?}", validated.status_message);
        assert_eq!(first["kind"], status.as_str(), "{token}: the check's kind is the status validation gives");
        assert_eq!(validated.status_message.as_deref(), first["message"].as_str(), "{token}: the same message");
        sqlx::query("DELETE FROM gitlab_connections").execute(&env.app.owner).await.unwrap();
    }

    // Good settings on each plan: what the check foresaw is what validation records.
    for (group, mode, scope) in [(PREMIUM_GROUP, HookMode::Group, "group"), (FREE_GROUP, HookMode::Project, "project")] {
        let settings = env.settings(OWNER, &[group], &[]);
        let (code, check) = env.check("acme", &settings).await;
        assert_eq!(code, 200, "{check}");
        assert_eq!(check["ok"], true, "{check}");
        assert_eq!(check["problems"], json!([]));
        assert_eq!(check["hook_mode"], mode.as_str());
        assert_eq!(check["user"]["username"].as_str().map(str::is_empty), Some(false), "{check}");
        assert_eq!(check["token"]["scopes"], json!(["api"]), "{check}");
        let found = &check["groups"][0];
        assert_eq!((found["id"].as_i64(), found["hooks"].as_str()), (Some(group), Some(scope)), "{check}");
        assert!(found["why"].as_str().is_some_and(|w| !w.is_empty()), "{check}");
        assert_eq!(found["role"], "the Owner role", "{check}");
        let projects = group_projects(&env.sim, group);
        assert_eq!(check["projects"]["count"], projects.len(), "{check}");
        assert_eq!(check["projects"]["complete"], true);
        let named: Vec<u64> = check["projects"]["first"].as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(named, projects.iter().copied().take(20).collect::<Vec<_>>());

        let validated = env.validated("acme", &settings).await;
        assert_eq!(validated.hook_mode, Some(mode));
        let mut resolved: Vec<u64> = validated.resolved_project_ids.unwrap().iter().map(|&p| p as u64).collect();
        resolved.sort();
        assert_eq!(resolved, projects);
    }
}

/// Validation stops at the first problem; the check names every one, each with its field.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_check_names_every_problem_by_its_field(owner: PgPool) {
    let env = env(owner).await;
    // A Developer: group 999 unseen, and no project of group 1 may get a project hook.
    let settings = env.settings("glpat-sim-developer-0005", &[999, PREMIUM_GROUP], &[]);
    let (code, check) = env.check("acme", &settings).await;
    assert_eq!(code, 200, "{check}");
    let problems = check["problems"].as_array().unwrap();
    let fields: Vec<&str> = problems.iter().map(|p| p["field"].as_str().unwrap()).collect();
    let projects = group_projects(&env.sim, PREMIUM_GROUP);
    let mut want = vec!["groups_list"];
    want.extend(std::iter::repeat_n("projects_list", projects.len()));
    assert_eq!(fields, want, "{check}");
    assert!(problems.iter().all(|p| p["kind"] == "invalid"), "{check}");
    assert!(problems[0]["message"].as_str().unwrap().contains("group 999 is not visible"), "{check}");
    assert!(problems[1..].iter().all(|p| p["message"].as_str().unwrap().contains("need the Maintainer role on project")), "{check}");
    assert_eq!(check["groups"].as_array().unwrap().len(), 1, "the visible group is described: {check}");
    assert_eq!(check["groups"][0]["role"], "the Developer role", "{check}");

    // Listed projects: one unseen, one outside the groups, both named.
    let outside = group_projects(&env.sim, FREE_GROUP)[0].to_string();
    let settings = env.settings(OWNER, &[PREMIUM_GROUP], &["no/such-project".into(), outside]);
    let (_, check) = env.check("acme", &settings).await;
    let messages: Vec<&str> = check["problems"].as_array().unwrap().iter().map(|p| p["message"].as_str().unwrap()).collect();
    assert_eq!(messages.len(), 2, "{check}");
    assert!(messages[0].contains("project no/such-project is not visible"), "{check}");
    assert!(messages[1].contains("not in the connected groups"), "{check}");
    assert_eq!(check["hook_mode"], Value::Null);
}

/// Where no GitLab answers, the check says so within its deadline, as a problem to check again;
/// bad input is refused as creation refuses it.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_check_answers_in_time_when_gitlab_does_not(owner: PgPool) {
    let env = env(owner).await;
    let mut settings = env.settings(OWNER, &[PREMIUM_GROUP], &[]);
    settings["gitlab_url"] = json!("http://127.0.0.1:9");
    let started = Instant::now();
    let (code, check) = env.check("acme", &settings).await;
    assert_eq!(code, 200, "{check}");
    assert!(started.elapsed() <= connector_api::checks::CHECK_DEADLINE + Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(check["ok"], false);
    assert_eq!(check["problems"][0]["field"], "gitlab_url", "{check}");
    assert_eq!(check["problems"][0]["kind"], "unavailable", "{check}");

    // A GitLab that answers each request after 4 s: the check gives up at its deadline.
    env.sim.sim.update_config(|c| c.latency = Latency { min_ms: 4000, max_ms: 4000 });
    let settings = env.settings(OWNER, &[PREMIUM_GROUP], &[]);
    let started = Instant::now();
    let (code, check) = env.check("acme", &settings).await;
    let took = started.elapsed();
    assert_eq!(code, 200, "{check}");
    assert!(
        took >= connector_api::checks::CHECK_DEADLINE && took <= connector_api::checks::CHECK_DEADLINE + Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(check["problems"][0]["kind"], "unavailable", "{check}");
    assert!(check["problems"][0]["message"].as_str().unwrap().contains("within 10 s"), "{check}");

    let (code, refused) =
        env.check("acme", &json!({"access_token": OWNER, "groups_list": "x", "start_date": "2024-01-01T00:00:00Z"})).await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(refused["error"]["details"][0]["field"], "groups_list", "{refused}");
}

/// The check refuses what creation refuses, field by field, the rotation setting included (a
/// check that said `ok` to settings creation then refuses would mislead the form).
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn the_check_refuses_what_creation_refuses(owner: PgPool) {
    let env = env(owner).await;
    for (field, wrong) in [
        ("rotate_token", json!({})),
        ("rotate_token", json!("yes")),
        ("access_token", json!(7)),
        ("projects_list", json!({})),
        ("gitlab_url", json!("ftp://gitlab.example.com")),
        ("start_date", json!("yesterday")),
        ("surprise", json!(1)),
    ] {
        let mut settings = env.settings(OWNER, &[PREMIUM_GROUP], &[]);
        settings[field] = wrong;
        let (code, refused) = env.check("acme", &settings).await;
        assert_eq!(code, 422, "{field}: {refused}");
        assert_eq!(refused["error"]["details"][0]["field"], field, "{refused}");
        let (code, not_created) = env.app.call(Method::POST, "/v1/connections", Some("acme"), Some(settings.clone())).await;
        assert_eq!(code, 422, "{field}: {not_created}");
        assert_eq!(not_created["error"]["details"], refused["error"]["details"], "creation and the check name the same problems");
    }
    assert_eq!(env.stored_connections().await, 0);
}

/// A tenant has at most its share of checks running; another tenant's check is not held up.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn a_tenant_runs_at_most_its_share_of_checks(owner: PgPool) {
    let env = env(owner).await;
    // Each GitLab request takes 300 ms: a check takes seconds.
    env.sim.sim.update_config(|c| c.latency = Latency { min_ms: 300, max_ms: 300 });
    let settings = env.settings(OWNER, &[FREE_GROUP], &[]);
    let running = connector_api::checks::CHECKS_PER_TENANT;
    let asked = futures_util::future::join_all((0..running + 1).map(|i| {
        let settings = settings.clone();
        let env = &env;
        async move {
            // The extra one is sent once the others have started.
            if i == running {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (code, body, headers) =
                    env.app.call_with(Method::POST, "/v1/connection-checks", Some("acme"), Some(settings.clone()), &[]).await;
                let other = env.check("globex", &settings).await;
                return vec![(code, body, headers.get("retry-after").cloned()), (other.0, other.1, None)];
            }
            let (code, body) = env.check("acme", &settings).await;
            vec![(code, body, None)]
        }
    }))
    .await;
    let answers: Vec<_> = asked.into_iter().flatten().collect();
    let refused: Vec<_> = answers.iter().filter(|(code, ..)| *code == 429).collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert_eq!(refused[0].1["error"]["code"], "rate_limited");
    assert!(refused[0].2.is_some(), "Retry-After");
    // The tenant's first checks and the other tenant's, run meanwhile, all answered.
    assert_eq!(answers.iter().filter(|(code, body, _)| *code == 200 && body["ok"] == true).count(), running + 1, "{answers:?}");
    // Once they have answered, the tenant checks again.
    assert_eq!(env.check("acme", &settings).await.0, 200);
}
