//! Retry policy for transient failures: exponential backoff with full jitter.

use std::time::Duration;

/// How often and how patiently transient failures (timeouts, connection errors, 500/502/503/504)
/// are retried inside the client before [`crate::Error::Transient`] is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Total attempts, the first one included. 1 disables retries.
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Backoff ceiling never exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 4, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(10) }
    }
}

impl RetryConfig {
    /// The largest delay before retry number `retry` (1-based): `min(max, base * 2^(retry-1))`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay drawn uniformly from `[0, ceiling]` ("full jitter"), so clients that failed
    /// together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Without randomness the ceiling is still a correct (if less spread) backoff.
        let random = getrandom::u64().unwrap_or(u64::MAX);
        Duration::from_nanos(random % (nanos + 1))
    }
}
