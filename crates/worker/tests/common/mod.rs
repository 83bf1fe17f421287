//! What the worker's integration tests share: a store and a simulator per test, connections
//! created as the API creates them, and the simulator's ground truth next to what was stored.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use connector_store::connections::{self, Connection, NewConnection, Status};
use connector_store::jobs::{self, Job};
use connector_store::{Store, TenantId};
use connector_test_support::{app_store, simulator};
use connector_worker::{GitLabJobs, RetryPolicy, SyncSettings, WorkerConfig, run_workers};
use gitlab_client::{ClientOptions, RetryConfig, UrlPolicy};
use gitlab_sim::{Dataset, SimConfig, SimHandle};
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const OWNER_TOKEN: &str = "glpat-sim-owner-api-0001";
pub const PREMIUM_GROUP: i64 = 1;
pub const FREE_GROUP: i64 = 4;

pub struct Env {
    pub store: Store,
    pub sim: SimHandle,
    pub start: DateTime<Utc>,
}

pub async fn env(owner: &PgPool, dataset: Dataset) -> Env {
    let store = app_store(owner, 16).await;
    let sim = simulator(dataset, SimConfig::default()).await;
    // A year back: older history exists in the dataset and must not be synced.
    Env { store, sim, start: Utc::now() - chrono::Duration::days(365) }
}

impl Env {
    pub fn jobs(&self, slice: Duration) -> GitLabJobs {
        self.jobs_with(slice, 2)
    }

    pub fn jobs_with(&self, slice: Duration, tenant_concurrency: usize) -> GitLabJobs {
        let options = ClientOptions {
            retry: RetryConfig { max_attempts: 6, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(200) },
            ..Default::default()
        };
        self.jobs_with_client(slice, tenant_concurrency, options)
    }

    pub fn jobs_with_client(&self, slice: Duration, tenant_concurrency: usize, options: ClientOptions) -> GitLabJobs {
        GitLabJobs::new(
            self.store.clone(),
            UrlPolicy::from_allowlist("127.0.0.1/32:*").unwrap(),
            options,
            SyncSettings {
                // Nothing listens there: deliveries fail, which the backfill does not care about.
                public_url: "http://127.0.0.1:9".parse().unwrap(),
                backfill_slice: slice,
                catch_up_interval: chrono::Duration::hours(1),
                // Every catch-up compares ids: deletions are found at once.
                reconcile_interval: chrono::Duration::zero(),
                tenant_concurrency,
                outage_patience: connector_worker::DEFAULT_OUTAGE_PATIENCE,
                // A rotation cut off by a test is looked into three seconds later.
                token_rotation_lease: Duration::from_secs(3),
            },
        )
    }

    pub fn start_workers(&self, slice: Duration, name: &str) -> (oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
        let retry = RetryPolicy { max_attempts: 10, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        self.start_workers_with(self.jobs(slice), retry, name)
    }

    pub fn start_workers_with(
        &self,
        jobs: GitLabJobs,
        retry: RetryPolicy,
        name: &str,
    ) -> (oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
        let (stop, stopped) = oneshot::channel();
        let config = WorkerConfig {
            name: name.into(),
            concurrency: 2,
            retry,
            grace: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            heartbeat: Duration::from_secs(1),
            missed_heartbeats: 2,
        };
        let handle = tokio::spawn(run_workers(self.store.clone(), jobs, config, async {
            stopped.await.ok();
        }));
        (stop, handle)
    }

    /// A connection as the API creates it, with its validation queued.
    pub async fn connect(&self, tenant: &str, groups: Vec<i64>, projects: Vec<String>) -> Uuid {
        let id = self.insert(tenant, OWNER_TOKEN, groups, projects).await;
        let mut tx = self.store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
        jobs::enqueue(&mut tx, Job::Validate { connection: id }, Duration::ZERO).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// A connection row alone, for tests that run its jobs themselves.
    pub async fn insert(&self, tenant: &str, token: &str, groups: Vec<i64>, projects: Vec<String>) -> Uuid {
        let mut tx = self.store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
        let c = connections::insert(
            &mut tx,
            self.store.keys(),
            NewConnection {
                gitlab_url: self.sim.base_url.clone(),
                groups_list: groups,
                projects_list: projects,
                start_date: self.start,
                access_token: SecretString::from(token),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        c.id
    }

    pub async fn connection(&self, tenant: &str, id: Uuid) -> Connection {
        let mut tx = self.store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
        connections::get(&mut tx, id).await.unwrap()
    }

    pub async fn wait_for(&self, tenant: &str, id: Uuid, status: Status, within: Duration) -> Connection {
        let deadline = Instant::now() + within;
        loop {
            let c = self.connection(tenant, id).await;
            if c.status == status {
                return c;
            }
            assert!(
                Instant::now() < deadline && !matches!(c.status, Status::Invalid | Status::NeedsReauth | Status::Failed),
                "{tenant}: {:?} ({:?}) instead of {status:?}",
                c.status,
                c.status_message
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a connection should hold, in comparable form.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Records {
    pub commits: BTreeSet<(i64, String)>,
    pub merge_requests: BTreeMap<(i64, i64), (String, String, i64)>,
    pub merge_request_commits: BTreeSet<(i64, i64, String)>,
    pub issues: BTreeMap<(i64, i64), (String, String, i64)>,
    pub notes: BTreeMap<(i64, i64), String>,
    pub pipelines: BTreeMap<(i64, i64), (String, String, i64)>,
}

/// The simulator's ground truth for these projects since `start`.
pub fn expected(dataset: &Dataset, projects: &[u64], start: DateTime<Utc>) -> Records {
    let mut r = Records::default();
    for &pid in projects {
        let t = dataset.synced_since(pid, start).unwrap();
        let id = pid as i64;
        r.commits.extend(t.commits.iter().map(|c| (id, c.id.clone())));
        for mr in &t.merge_requests {
            r.merge_requests.insert((id, mr.iid as i64), (mr.title.clone(), mr.state.as_str().into(), mr.updated_at.timestamp_millis()));
            r.merge_request_commits.extend(mr.commit_shas.iter().map(|sha| (id, mr.iid as i64, sha.clone())));
        }
        for i in &t.issues {
            r.issues.insert((id, i.iid as i64), (i.title.clone(), i.state.as_str().into(), i.updated_at.timestamp_millis()));
        }
        r.notes.extend(t.notes.iter().map(|n| ((id, n.id as i64), n.body.clone())));
        for pl in &t.pipelines {
            r.pipelines.insert((id, pl.id as i64), (pl.status.clone(), pl.sha.clone(), pl.updated_at.timestamp_millis()));
        }
    }
    r
}

/// What the connection holds, read as its tenant.
pub async fn stored(store: &Store, tenant: &str, connection: Uuid) -> Records {
    let mut tx = store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
    let mut r = Records::default();
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT project_id, sha FROM commits WHERE connection_id = $1").bind(connection).fetch_all(&mut *tx).await.unwrap();
    r.commits = rows.into_iter().collect();
    let rows: Vec<(i64, i64, String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT project_id, iid, title, state, gitlab_updated_at FROM merge_requests WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    r.merge_requests = rows.into_iter().map(|(p, i, t, s, u)| ((p, i), (t, s, u.timestamp_millis()))).collect();
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT project_id, mr_iid, sha FROM merge_request_commits WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    r.merge_request_commits = rows.into_iter().collect();
    let rows: Vec<(i64, i64, String, String, DateTime<Utc>)> =
        sqlx::query_as("SELECT project_id, iid, title, state, gitlab_updated_at FROM issues WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    r.issues = rows.into_iter().map(|(p, i, t, s, u)| ((p, i), (t, s, u.timestamp_millis()))).collect();
    let rows: Vec<(i64, i64, String)> = sqlx::query_as("SELECT project_id, gitlab_id, body FROM notes WHERE connection_id = $1")
        .bind(connection)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    r.notes = rows.into_iter().map(|(p, i, b)| ((p, i), b)).collect();
    type PipelineRow = (i64, i64, String, Option<String>, DateTime<Utc>);
    let rows: Vec<PipelineRow> =
        sqlx::query_as("SELECT project_id, gitlab_id, status, sha, gitlab_updated_at FROM pipelines WHERE connection_id = $1")
            .bind(connection)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    r.pipelines = rows.into_iter().map(|(p, i, s, sha, u)| ((p, i), (s, sha.unwrap_or_default(), u.timestamp_millis()))).collect();
    r
}

pub fn assert_same(got: &Records, want: &Records, who: &str) {
    assert!(
        !want.commits.is_empty() && !want.merge_requests.is_empty() && !want.notes.is_empty(),
        "{who}: an empty expectation proves nothing"
    );
    let extra: Vec<_> = got.commits.difference(&want.commits).collect();
    let missing: Vec<_> = want.commits.difference(&got.commits).collect();
    assert_eq!(
        got.commits.len(),
        want.commits.len(),
        "{who}: commits (stored but not GitLab's: {extra:?}; GitLab's but not stored: {missing:?})"
    );
    assert_eq!(got.commits, want.commits, "{who}: commits");
    assert_eq!(got.merge_requests, want.merge_requests, "{who}: merge requests");
    assert_eq!(got.merge_request_commits, want.merge_request_commits, "{who}: merge request commits");
    assert_eq!(got.issues, want.issues, "{who}: issues");
    assert_eq!(got.notes, want.notes, "{who}: notes");
    assert_eq!(got.pipelines, want.pipelines, "{who}: pipelines");
}

/// Every project of a group and its subgroups, per the ground truth.
pub fn group_projects(dataset: &Dataset, group: i64) -> Vec<u64> {
    dataset.projects_under(group as u64)
}
