//! The rate budget shared through PostgreSQL spaces requests from every pod together.

use std::time::Duration;

use chrono::Utc;
use connector_worker::SharedRateBudget;
use gitlab_client::RateLimitObservation;
use sqlx::PgPool;

async fn app_pool(owner: &PgPool) -> PgPool {
    PgPool::connect_with(connector_store::app_connect_options(&owner.connect_options())).await.unwrap()
}

#[sqlx::test(migrator = "connector_store::MIGRATOR")]
async fn two_pods_draw_on_one_window(owner: PgPool) {
    let pool = app_pool(&owner).await;
    let pod_a = SharedRateBudget::new(pool.clone(), "https://gitlab.example#user:7".into());
    let pod_b = SharedRateBudget::new(pool.clone(), "https://gitlab.example#user:7".into());
    let other_user = SharedRateBudget::new(pool.clone(), "https://gitlab.example#user:8".into());

    // Nothing known yet: no waiting.
    assert_eq!(pod_a.reserve().await.unwrap(), Duration::ZERO);

    // Plenty left: no waiting either.
    let reset = Utc::now().timestamp() + 20;
    pod_a.record(RateLimitObservation { limit: Some(2000), remaining: Some(1500), reset_unix: Some(reset) }).await.unwrap();
    assert_eq!(pod_b.reserve().await.unwrap(), Duration::ZERO);

    // Five left of 2,000 with 20 s to go: each reservation, from either pod, starts about
    // 20 s / remaining after the previous one.
    pod_b.record(RateLimitObservation { limit: Some(2000), remaining: Some(5), reset_unix: Some(reset) }).await.unwrap();
    let mut waits = Vec::new();
    for i in 0..4 {
        let pod = if i % 2 == 0 { &pod_a } else { &pod_b };
        waits.push(pod.reserve().await.unwrap());
    }
    assert!(waits[0] < Duration::from_millis(500), "{waits:?}");
    for pair in waits.windows(2) {
        assert!(pair[1] > pair[0] + Duration::from_secs(2), "requests are not spaced across pods: {waits:?}");
    }
    // Another GitLab user has its own budget.
    assert_eq!(other_user.reserve().await.unwrap(), Duration::ZERO);

    // An out-of-order response from the same window cannot raise what is left...
    pod_a.record(RateLimitObservation { limit: Some(2000), remaining: Some(1900), reset_unix: Some(reset) }).await.unwrap();
    let remaining: i32 = sqlx::query_scalar("SELECT remaining FROM gitlab_rate_budgets WHERE budget_key = $1")
        .bind("https://gitlab.example#user:7")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(remaining, 1, "five observed, four reserved");
    // ...while a new window starts afresh.
    pod_a.record(RateLimitObservation { limit: Some(2000), remaining: Some(1999), reset_unix: Some(reset + 60) }).await.unwrap();
    assert_eq!(pod_b.reserve().await.unwrap(), Duration::ZERO);
}
