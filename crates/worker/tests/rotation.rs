//! The connector rotating an opted-in connection's token before it expires, against the
//! simulator's `POST /personal_access_tokens/self/rotate` (which revokes a whole token family
//! when a rotated token is rotated again), with the worker cut off at every step.

mod common;

use std::time::Duration;

use chrono::Utc;
use connector_store::TenantId;
use connector_store::connections::{self, Status};
use connector_store::jobs::Job;
use connector_worker::{JobError, Jobs};
use gitlab_sim::{Dataset, Size};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use common::*;

/// Longer than the test workers' rotation lease (`common`).
const LEASE_PASSED: Duration = Duration::from_millis(3100);

/// A live connection that opted in, its token expiring in five days.
async fn expiring(owner: &PgPool) -> (Env, Uuid) {
    let env = env(owner, Dataset::generate(1, Size::Small)).await;
    let (stop, worker) = env.start_workers(Duration::from_secs(2), "pod");
    let id = env.connect("acme", vec![FREE_GROUP], vec![]).await;
    env.wait_for("acme", id, Status::Live, Duration::from_secs(60)).await;
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let mut tx = env.store.tenant_tx(&tenant()).await.unwrap();
    connections::set_token_rotation(&mut tx, id, true).await.unwrap();
    tx.commit().await.unwrap();
    let soon = Utc::now().date_naive() + chrono::Duration::days(5);
    env.sim.sim.with_dataset_mut(|d| d.tokens.iter_mut().find(|t| t.value == OWNER_TOKEN).unwrap().expires_at = Some(soon));
    (env, id)
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn rotations(env: &Env) -> u64 {
    env.sim.sim.stats().token_rotations
}

/// What GitLab answers the stored token's `GET /user`.
async fn stored_token_status(env: &Env, id: Uuid) -> u16 {
    let mut tx = env.store.tenant_tx(&tenant()).await.unwrap();
    let token = connections::access_token(&mut tx, env.store.keys(), id).await.unwrap();
    let url = format!("{}/api/v4/user", env.sim.base_url);
    reqwest::Client::new().get(url).header("PRIVATE-TOKEN", token.expose_secret()).send().await.unwrap().status().as_u16()
}

/// How many of the owner's tokens GitLab still accepts.
fn active_owner_tokens(env: &Env) -> usize {
    env.sim.sim.with_dataset(|d| d.tokens.iter().filter(|t| t.user_id == gitlab_sim::OWNER_USER && !t.revoked).count())
}

async fn token_check(env: &Env, id: Uuid) -> Result<(), JobError> {
    env.jobs(Duration::from_secs(2)).run(&tenant(), &Job::TokenHealth { connection: id }).await
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn an_opted_in_token_is_rotated_once_before_it_expires(owner: PgPool) {
    let (env, id) = expiring(&owner).await;
    let active_before = active_owner_tokens(&env);
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1);
    let c = env.connection("acme", id).await;
    assert_eq!(c.status, Status::Live);
    assert_eq!(c.token_expires_at, Some(Utc::now().date_naive() + chrono::Duration::days(364)));
    assert_eq!(c.token_rotation_started_at, None);
    assert_eq!(stored_token_status(&env, id).await, 200, "the new token is stored and works");
    assert_eq!(active_owner_tokens(&env), active_before, "the old token revoked, the new one active");
    // The next check finds a token a year from expiry: nothing to do.
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1);

    // Not opted in: reported, never rotated.
    let mut tx = env.store.tenant_tx(&tenant()).await.unwrap();
    connections::set_token_rotation(&mut tx, id, false).await.unwrap();
    tx.commit().await.unwrap();
    let soon = Utc::now().date_naive() + chrono::Duration::days(5);
    env.sim.sim.with_dataset_mut(|d| {
        d.tokens.iter_mut().rev().find(|t| !t.revoked && t.user_id == gitlab_sim::OWNER_USER).unwrap().expires_at = Some(soon)
    });
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1);
    assert!(env.connection("acme", id).await.status_message.unwrap().contains(&soon.to_string()));
}

/// Cut off after marking the rotation, before GitLab did anything (the request is still on its
/// way): once the lease has passed, the token is found active and rotated, once.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn cut_off_before_gitlab_rotated_it_is_rotated_once_later(owner: PgPool) {
    let (env, id) = expiring(&owner).await;
    env.sim.sim.update_config(|c| c.latency = gitlab_sim::Latency { min_ms: 1500, max_ms: 1500 });
    assert!(tokio::time::timeout(Duration::from_millis(2000), token_check(&env, id)).await.is_err(), "cut off in flight");
    assert_eq!(rotations(&env), 0, "GitLab has not rotated");
    assert!(env.connection("acme", id).await.token_rotation_started_at.is_some(), "the rotation is marked");
    env.sim.sim.update_config(|c| c.latency = Default::default());

    // Within the lease another worker's rotation may be in flight: wait.
    let waited = token_check(&env, id).await;
    assert!(matches!(waited, Err(JobError::Retry { after: Some(_), .. })), "{waited:?}");
    assert_eq!(rotations(&env), 0);
    tokio::time::sleep(LEASE_PASSED).await;
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1);
    assert_eq!(stored_token_status(&env, id).await, 200);
    assert_eq!(env.connection("acme", id).await.status, Status::Live);
}

/// Cut off after GitLab rotated, before its answer arrived: the new token is lost. The next check
/// finds the stored token revoked and asks the user for a new one, saying why, and never sends
/// the old token to the rotation again (which would revoke the family, the lost token included).
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn cut_off_after_gitlab_rotated_it_asks_for_a_new_token_without_rotating_again(owner: PgPool) {
    let (env, id) = expiring(&owner).await;
    env.sim.sim.update_config(|c| c.faults.rotation_answer_delay_ms = 2000);
    assert!(tokio::time::timeout(Duration::from_millis(1000), token_check(&env, id)).await.is_err(), "cut off awaiting the answer");
    assert_eq!(rotations(&env), 1, "GitLab rotated");
    let family_alive = active_owner_tokens(&env);
    tokio::time::sleep(LEASE_PASSED).await;
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1, "no second rotation");
    assert_eq!(active_owner_tokens(&env), family_alive, "the family was not revoked");
    let c = env.connection("acme", id).await;
    assert_eq!(c.status, Status::NeedsReauth);
    assert!(c.status_message.unwrap().contains("automatic rotation"), "says why");
    assert_eq!(c.token_rotation_started_at, None);
    // Asked again, nothing more happens in GitLab.
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1);
}

/// Cut off right after the new token was stored: nothing left to do, nothing done twice. And
/// two workers checking at once rotate once between them.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn two_workers_at_once_rotate_once(owner: PgPool) {
    let (env, id) = expiring(&owner).await;
    let (a, b) = tokio::join!(token_check(&env, id), token_check(&env, id));
    assert_eq!(rotations(&env), 1, "{a:?} {b:?}");
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    assert_eq!(stored_token_status(&env, id).await, 200);
    tokio::time::sleep(LEASE_PASSED).await;
    token_check(&env, id).await.unwrap();
    assert_eq!(rotations(&env), 1);
    assert_eq!(env.connection("acme", id).await.status, Status::Live);
}

/// Two workers coming upon the same interrupted rotation at once: one takes it over and
/// rotates, the other waits, and GitLab sees one rotation.
#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn two_workers_settling_an_interrupted_rotation_rotate_once(owner: PgPool) {
    let (env, id) = expiring(&owner).await;
    env.sim.sim.update_config(|c| c.latency = gitlab_sim::Latency { min_ms: 1500, max_ms: 1500 });
    assert!(tokio::time::timeout(Duration::from_millis(2000), token_check(&env, id)).await.is_err(), "cut off in flight");
    env.sim.sim.update_config(|c| c.latency = gitlab_sim::Latency { min_ms: 100, max_ms: 100 });
    tokio::time::sleep(LEASE_PASSED).await;
    let (a, b) = tokio::join!(token_check(&env, id), token_check(&env, id));
    assert_eq!(rotations(&env), 1, "{a:?} {b:?}");
    assert!(a.is_ok() || b.is_ok(), "{a:?} {b:?}");
    assert_eq!(stored_token_status(&env, id).await, 200);
    assert_eq!(env.connection("acme", id).await.status, Status::Live);
}
