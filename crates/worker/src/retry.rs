//! Retry policy. apalis' PostgreSQL backend re-runs a failed task at once, with no backoff, and
//! has no notion of "GitLab said come back in 40 s"; so every stored task runs once and a failure
//! that deserves another try schedules a new task with `run_after` set here.

use std::time::Duration;

/// How failures are retried before a job is dead-lettered.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, base: Duration::from_secs(2), cap: Duration::from_secs(15 * 60) }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: uniformly random in [0, min(cap, base * 2^attempt)],
    /// so that jobs failing together (a GitLab outage) do not come back together.
    pub fn backoff(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(if millis == 0 { 0 } else { random % (millis + 1) })
    }

    /// The delay before attempt `attempt + 1`, or `None` when the job has had its attempts. A
    /// delay GitLab asked for (Retry-After) is honoured as a floor.
    pub fn next_delay(&self, attempt: u32, asked: Option<Duration>) -> Option<Duration> {
        if attempt + 1 >= self.max_attempts {
            return None;
        }
        let backoff = self.backoff(attempt, random_u64());
        Some(match asked {
            // GitLab said when; a little jitter keeps jobs held by one limit from returning as one.
            Some(asked) => asked + backoff.min(Duration::from_secs(5)),
            None => backoff,
        })
    }
}

pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy { max_attempts: 10, base: Duration::from_secs(1), cap: Duration::from_secs(60) };
        assert_eq!(p.backoff(0, u64::MAX), Duration::from_millis(u64::MAX % 1001));
        for attempt in 0..40 {
            let ceiling = Duration::from_secs(1u64.checked_shl(attempt).unwrap_or(u64::MAX).min(60));
            for r in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
                assert!(p.backoff(attempt, r) <= ceiling, "attempt {attempt}");
            }
        }
        // Full jitter: the same attempt spreads over its range.
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(5, random_u64())).collect();
        assert!(spread.len() > 40, "backoff has no jitter: {spread:?}");
        assert_eq!(p.backoff(3, 0), Duration::ZERO);
    }

    #[test]
    fn attempts_run_out_and_retry_after_is_a_floor() {
        let p = RetryPolicy { max_attempts: 3, base: Duration::from_millis(10), cap: Duration::from_millis(20) };
        assert!(p.next_delay(0, None).is_some());
        assert!(p.next_delay(1, None).is_some());
        assert_eq!(p.next_delay(2, None), None);
        let asked = Duration::from_secs(40);
        let delay = p.next_delay(0, Some(asked)).unwrap();
        assert!(delay >= asked && delay <= asked + Duration::from_secs(5), "{delay:?}");
    }
}
