//! Settings of the simulator itself (not of the simulated GitLab), changeable at run time.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Public base URL for `web_url`, links and `X-Gitlab-Instance`; the listen address if unset.
    pub base_url: Option<String>,
    pub rate_limit: RateLimitConfig,
    pub latency: Latency,
    pub faults: Faults,
    pub delivery: DeliveryConfig,
    /// Edits made while a client pages a list; off by default.
    #[serde(default)]
    pub churn: Churn,
}

/// Lists that reorder while a client pages them, as on a busy instance: before each later page
/// of a project's merge requests, issues or pipelines, one item of an earlier page is edited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Churn {
    pub enabled: bool,
    /// Edits left; none are made at 0. `None` (absent) means no limit.
    pub budget: Option<u64>,
}

/// `throttle_authenticated_api`: requests per token per period.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub requests: u32,
    pub period_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { enabled: true, requests: 2_000, period_secs: 60 }
    }
}

/// Added to every API response; a random value in `min_ms..=max_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub min_ms: u64,
    pub max_ms: u64,
}

/// Failures injected into API responses. Rates are probabilities in 0..=1; `*_every` = N
/// hits every Nth API request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub error_rate: f64,
    pub error_every: Option<u64>,
    /// Picked from at random for each injected error.
    pub error_statuses: Vec<u16>,
    pub slow_rate: f64,
    pub slow_every: Option<u64>,
    pub slow_ms: u64,
    pub drop_rate: f64,
    pub drop_every: Option<u64>,
    /// How long a token rotation request is held before anything is done, as if still on its
    /// way to GitLab: a client that gives up or dies meanwhile has rotated nothing, since the
    /// held request ends with its connection.
    pub rotation_request_delay_ms: u64,
    /// How long a token rotation waits, once done, before it answers: a client that gives up
    /// or dies meanwhile has lost the new token while GitLab has revoked the old one.
    pub rotation_answer_delay_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            error_every: None,
            error_statuses: vec![500, 502, 503],
            slow_rate: 0.0,
            slow_every: None,
            slow_ms: 5_000,
            drop_rate: 0.0,
            drop_every: None,
            rotation_request_delay_ms: 0,
            rotation_answer_delay_ms: 0,
        }
    }
}

/// Webhook delivery knobs for testing receivers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    pub timeout_ms: u64,
    /// Send every event twice (same Idempotency-Key), as after a timeout.
    pub duplicate: bool,
    /// Wait this long before each delivery.
    pub delay_ms: u64,
    /// Deliver each hook's request after a random delay in `0..=out_of_order_ms`, so events
    /// can arrive out of order.
    pub out_of_order_ms: u64,
    /// GitLab disables hooks after repeated failures; self-managed can switch that off.
    pub auto_disable: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { timeout_ms: 10_000, duplicate: false, delay_ms: 0, out_of_order_ms: 0, auto_disable: true }
    }
}
