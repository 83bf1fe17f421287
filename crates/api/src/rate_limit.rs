//! Each tenant's request budget in this process: `requests_per_second` sustained, bursts up to
//! `request_burst`, as a GCRA (governor's keyed limiter). Every `/v1` answer says where the
//! tenant stands (`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, the draft IETF
//! header fields); past the budget a 429 says when to come back (`Retry-After`). The budget is
//! per process: with N API pods a tenant may make N times as many requests in all, and no pod is
//! swamped by one tenant.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connector_store::TenantId;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::ApiLimits;
use crate::error::{ApiError, ErrorCode};

/// How the refusal is documented on every `/v1` operation's 429.
pub const REFUSAL: &str =
    "`rate_limited`: the tenant's requests exceed its budget (`API_RATE_LIMIT`, `API_RATE_BURST`); retry after `Retry-After` seconds";

/// Tenants tracked before the idle ones (whose budget is full again) are forgotten.
const TRACKED_TENANTS: usize = 10_000;

static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

type Limiter = RateLimiter<TenantId, DefaultKeyedStateStore<TenantId>, DefaultClock, StateInformationMiddleware>;

pub struct Budgets {
    limiter: Limiter,
    burst: u32,
    /// Time for one request's worth of budget to come back.
    refill: Duration,
}

/// Where a tenant stands after asking for one more request.
pub enum Standing {
    /// Answered, with this many requests left now and the budget full again after `full_in`.
    Allowed { remaining: u32, full_in: Duration },
    /// Refused until `retry_after` has passed.
    Limited { retry_after: Duration },
}

impl Budgets {
    pub fn new(limits: &ApiLimits) -> Self {
        let per_second = NonZeroU32::new(limits.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.request_burst).unwrap_or(NonZeroU32::MIN);
        let limiter =
            RateLimiter::dashmap(Quota::per_second(per_second).allow_burst(burst)).with_middleware::<StateInformationMiddleware>();
        Self { limiter, burst: burst.get(), refill: Duration::from_secs(1) / per_second.get() }
    }

    /// Spends one request of `tenant`'s budget, if it has one left.
    pub fn take(&self, tenant: &TenantId) -> Standing {
        let standing = match self.limiter.check_key(tenant) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Standing::Allowed { remaining, full_in: self.refill * (self.burst - remaining) }
            }
            Err(not_until) => Standing::Limited { retry_after: not_until.wait_time_from(DefaultClock::default().now()) },
        };
        if self.limiter.len() > TRACKED_TENANTS {
            self.limiter.retain_recent();
        }
        standing
    }

    /// The `RateLimit-*` fields of an answered request.
    pub fn describe(&self, headers: &mut HeaderMap, remaining: u32, full_in: Duration) {
        headers.insert(LIMIT.clone(), HeaderValue::from(self.burst));
        headers.insert(REMAINING.clone(), HeaderValue::from(remaining));
        headers.insert(RESET.clone(), HeaderValue::from(whole_seconds(full_in)));
    }

    /// The 429 of a refused one.
    pub fn refuse(&self, retry_after: Duration) -> Response {
        let seconds = whole_seconds(retry_after);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many requests for this tenant; retry in {seconds} s"),
        )
        .into_response();
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        headers.insert(LIMIT.clone(), HeaderValue::from(self.burst));
        headers.insert(REMAINING.clone(), HeaderValue::from(0));
        headers.insert(RESET.clone(), HeaderValue::from(seconds));
        response
    }
}

/// Seconds, rounded up: waiting the rounded-down figure would be refused again.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
