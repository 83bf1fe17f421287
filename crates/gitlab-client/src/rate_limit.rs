//! Pacing requests against GitLab's `RateLimit-*` headers so the client slows down before it
//! runs out instead of bursting into a 429.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// What one response said about the caller's rate-limit window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitObservation {
    /// `RateLimit-Limit`: requests allowed per window.
    pub limit: Option<u64>,
    /// `RateLimit-Remaining`: requests left in the current window.
    pub remaining: Option<u64>,
    /// `RateLimit-Reset`: when the window resets, as Unix seconds.
    pub reset_unix: Option<i64>,
}

impl RateLimitObservation {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let number = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
        RateLimitObservation {
            limit: number("ratelimit-limit").and_then(|n| u64::try_from(n).ok()),
            remaining: number("ratelimit-remaining").and_then(|n| u64::try_from(n).ok()),
            reset_unix: number("ratelimit-reset"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset_unix.is_none()
    }
}

/// Decides how long to wait before each request. The in-process default is
/// [`LocalRateBudget`]; a budget shared by all pods (e.g. through PostgreSQL) implements the
/// same trait.
pub trait RateBudget: Send + Sync + 'static {
    /// Waits until the next request may go out and returns how long it waited
    /// (zero when it did not), which the client adds to its stats.
    fn before_request(&self) -> Pin<Box<dyn Future<Output = Duration> + Send + '_>>;

    /// Records the headers of a response (called for every response that carried any).
    fn observe(&self, observation: RateLimitObservation);
}

/// When pacing starts and how hard it may brake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingConfig {
    /// Pacing starts once remaining drops to this fraction of the limit (in percent)...
    pub low_water_percent: u64,
    /// ...or to this many requests, whichever is larger.
    pub low_water_min: u64,
    /// Upper bound on one wait; GitLab windows are a minute long, so waits beyond that only
    /// mean the headers were stale.
    pub max_delay: Duration,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig { low_water_percent: 10, low_water_min: 20, max_delay: Duration::from_secs(60) }
    }
}

/// The spacing between requests given what is left: none while `remaining` is above the low
/// water mark, then the time to reset spread evenly over the remaining requests, and the whole
/// time to reset once nothing is left.
pub fn pacing_delay(config: &PacingConfig, limit: Option<u64>, remaining: u64, until_reset: Duration) -> Duration {
    let low_water = limit.map(|l| l.saturating_mul(config.low_water_percent) / 100).unwrap_or(0).max(config.low_water_min);
    let delay = if remaining > low_water {
        Duration::ZERO
    } else if remaining == 0 {
        until_reset
    } else {
        until_reset / u32::try_from(remaining).unwrap_or(u32::MAX)
    };
    delay.min(config.max_delay)
}

#[derive(Debug, Default)]
struct Window {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_at: Option<Instant>,
    /// The earliest moment the next request may start; reservations push it forward so
    /// concurrent callers are spaced out rather than all sleeping the same delay.
    next_slot: Option<Instant>,
}

/// In-process [`RateBudget`]: remembers the last observed window and spaces requests out once
/// the remaining budget runs low.
#[derive(Debug, Default)]
pub struct LocalRateBudget {
    config: PacingConfig,
    window: Mutex<Window>,
}

impl LocalRateBudget {
    pub fn new(config: PacingConfig) -> Self {
        LocalRateBudget { config, window: Mutex::default() }
    }

    /// [`RateBudget::observe`] with the clocks passed in, for deterministic tests.
    pub fn observe_at(&self, observation: RateLimitObservation, now: Instant, unix_now: i64) {
        let mut window = self.lock();
        if observation.limit.is_some() {
            window.limit = observation.limit;
        }
        if let Some(remaining) = observation.remaining {
            window.remaining = Some(remaining);
        }
        if let Some(reset) = observation.reset_unix {
            let secs = u64::try_from(reset.saturating_sub(unix_now)).unwrap_or(0);
            window.reset_at = Some(now + Duration::from_secs(secs));
        }
    }

    /// Reserves the next request slot at `now` and returns how long to wait for it.
    pub fn reserve_at(&self, now: Instant) -> Duration {
        let mut window = self.lock();
        if window.reset_at.is_some_and(|reset| reset <= now) {
            // The window the headers described is over; wait for fresh headers.
            window.remaining = None;
            window.reset_at = None;
        }
        let mut slot = window.next_slot.map_or(now, |s| s.max(now));
        match (window.remaining, window.reset_at) {
            (Some(0), Some(reset_at)) => {
                // Nothing left: this request itself waits for the reset.
                slot = slot.max(reset_at.min(now + self.config.max_delay));
                window.next_slot = Some(slot);
            }
            (Some(remaining), Some(reset_at)) => {
                let interval = pacing_delay(&self.config, window.limit, remaining, reset_at - now);
                window.next_slot = Some(slot + interval);
                // Count this request against the window so callers between two responses
                // still see the budget shrink.
                window.remaining = Some(remaining - 1);
            }
            _ => window.next_slot = Some(slot),
        }
        slot - now
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // The window is plain data; a panic elsewhere cannot leave it inconsistent.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RateBudget for LocalRateBudget {
    fn before_request(&self) -> Pin<Box<dyn Future<Output = Duration> + Send + '_>> {
        let wait = self.reserve_at(Instant::now());
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            wait
        })
    }

    fn observe(&self, observation: RateLimitObservation) {
        self.observe_at(observation, Instant::now(), unix_now());
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
