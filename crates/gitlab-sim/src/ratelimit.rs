//! Rack::Attack-style fixed-window throttle per token, with GitLab's RateLimit-* headers.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::RateLimitConfig;

#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: HashMap<u64, (u64, u32)>,
}

/// The outcome for one request.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub observed: u32,
    pub reset_at: u64,
    pub now: u64,
}

impl RateLimiter {
    pub fn check(&mut self, key: u64, config: &RateLimitConfig, now: u64) -> Option<Verdict> {
        if !config.enabled {
            return None;
        }
        let period = config.period_secs.max(1);
        let window = now - now % period;
        let entry = self.windows.entry(key).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        Some(Verdict { allowed: entry.1 <= config.requests, limit: config.requests, observed: entry.1, reset_at: window + period, now })
    }
}

fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

impl Verdict {
    pub fn apply(&self, headers: &mut HeaderMap) {
        put(headers, "ratelimit-name", "throttle_authenticated_api".into());
        put(headers, "ratelimit-limit", self.limit.to_string());
        put(headers, "ratelimit-observed", self.observed.to_string());
        put(headers, "ratelimit-remaining", self.limit.saturating_sub(self.observed).to_string());
        put(headers, "ratelimit-reset", self.reset_at.to_string());
        if !self.allowed {
            put(headers, "retry-after", self.reset_at.saturating_sub(self.now).max(1).to_string());
            let reset = chrono::DateTime::from_timestamp(self.reset_at as i64, 0).unwrap_or_default();
            put(headers, "ratelimit-resettime", reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_then_resets() {
        let config = RateLimitConfig { enabled: true, requests: 2, period_secs: 60 };
        let mut rl = RateLimiter::default();
        assert!(rl.check(1, &config, 120).unwrap().allowed);
        assert!(rl.check(1, &config, 130).unwrap().allowed);
        let third = rl.check(1, &config, 150).unwrap();
        assert!(!third.allowed);
        assert_eq!(third.reset_at, 180);
        assert!(rl.check(2, &config, 150).unwrap().allowed, "limits are per token");
        assert!(rl.check(1, &config, 181).unwrap().allowed, "a new window starts over");
        let mut h = HeaderMap::new();
        third.apply(&mut h);
        assert_eq!(h["retry-after"], "30");
        assert_eq!(h["ratelimit-remaining"], "0");
    }
}
