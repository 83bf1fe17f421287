//! Counters about the simulator's own traffic, for tests and benchmarks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Route template (e.g. `/api/v4/projects/{id}`) -> status code -> count.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    pub total_requests: u64,
    pub rate_limited: u64,
    pub injected_errors: u64,
    pub injected_slow: u64,
    pub dropped_connections: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    /// Deliveries skipped: hook disabled, group hooks unlicensed, or a push over the ref limit.
    pub webhooks_suppressed: u64,
    /// Items edited by the churn setting while a client paged their list.
    #[serde(default)]
    pub churned: u64,
    /// Tokens rotated (`POST /personal_access_tokens/self/rotate` answered 200).
    #[serde(default)]
    pub token_rotations: u64,
    /// Rotation requests held by the `rotation_request_delay_ms` fault, counted as the hold
    /// begins: a client cut off after this has sent its request, and GitLab has not rotated.
    #[serde(default)]
    pub rotation_requests_held: u64,
}

impl Stats {
    pub fn record(&mut self, route: &str, status: u16) {
        self.total_requests += 1;
        *self.requests.entry(route.to_string()).or_default().entry(status).or_default() += 1;
    }

    pub fn count(&self, route: &str, status: u16) -> u64 {
        self.requests.get(route).and_then(|m| m.get(&status)).copied().unwrap_or(0)
    }
}
