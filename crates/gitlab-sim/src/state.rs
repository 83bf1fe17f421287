//! The shared state behind the HTTP server, the control API and webhook delivery.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

use crate::config::SimConfig;
use crate::dataset::Dataset;
use crate::ratelimit::RateLimiter;
use crate::rng::Rng;
use crate::stats::Stats;
use crate::webhook::DeliveryLog;

pub(crate) struct Shared {
    pub data: RwLock<Dataset>,
    pub config: RwLock<SimConfig>,
    pub stats: Mutex<Stats>,
    pub limiter: Mutex<RateLimiter>,
    pub base_url: RwLock<String>,
    /// Runtime randomness (faults, latency); seeded from the dataset for repeatable runs.
    pub rng: Mutex<Rng>,
    pub request_count: AtomicU64,
    pub deliveries: Mutex<DeliveryLog>,
    pub http: reqwest::Client,
}

/// Poisoning only follows a panic elsewhere; the data is still consistent enough to serve.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A simulated GitLab instance. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) shared: Arc<Shared>,
}

/// A token the instance accepts, for printing at start.
#[derive(Debug, Clone, Serialize)]
pub struct TokenSummary {
    pub name: String,
    pub value: String,
    pub user_id: u64,
    pub username: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<chrono::NaiveDate>,
    pub revoked: bool,
    /// False for expired or revoked tokens.
    pub usable: bool,
}

impl Simulator {
    pub fn new(dataset: Dataset, config: SimConfig) -> Simulator {
        let base_url = config.base_url.clone().unwrap_or_else(|| "http://127.0.0.1".into());
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client builds without TLS roots");
        Simulator {
            shared: Arc::new(Shared {
                rng: Mutex::new(Rng::new(dataset.seed ^ 0xFA17)),
                data: RwLock::new(dataset),
                config: RwLock::new(config),
                stats: Mutex::new(Stats::default()),
                limiter: Mutex::new(RateLimiter::default()),
                base_url: RwLock::new(base_url.trim_end_matches('/').to_string()),
                request_count: AtomicU64::new(0),
                deliveries: Mutex::new(DeliveryLog::default()),
                http,
            }),
        }
    }

    pub fn base_url(&self) -> String {
        read(&self.shared.base_url).clone()
    }

    pub(crate) fn set_base_url_if_unset(&self, url: String) {
        if read(&self.shared.config).base_url.is_none() {
            *write(&self.shared.base_url) = url;
        }
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    pub fn config(&self) -> SimConfig {
        read(&self.shared.config).clone()
    }

    /// Replaces the run-time settings (faults, latency, rate limit, delivery knobs).
    pub fn update_config(&self, f: impl FnOnce(&mut SimConfig)) {
        f(&mut write(&self.shared.config));
    }

    /// Reads the current state without copying it.
    pub fn with_dataset<R>(&self, f: impl FnOnce(&Dataset) -> R) -> R {
        f(&read(&self.shared.data))
    }

    /// Changes the state directly, without firing webhooks (the control API fires them).
    pub fn with_dataset_mut<R>(&self, f: impl FnOnce(&mut Dataset) -> R) -> R {
        f(&mut write(&self.shared.data))
    }

    pub fn dataset(&self) -> Dataset {
        read(&self.shared.data).clone()
    }

    pub fn token_summary(&self) -> Vec<TokenSummary> {
        let today = chrono::Utc::now().date_naive();
        self.with_dataset(|ds| {
            ds.tokens
                .iter()
                .map(|t| TokenSummary {
                    name: t.name.clone(),
                    value: t.value.clone(),
                    user_id: t.user_id,
                    username: ds.user(t.user_id).map(|u| u.username.clone()).unwrap_or_default(),
                    scopes: t.scopes.clone(),
                    expires_at: t.expires_at,
                    revoked: t.revoked,
                    usable: !t.revoked && t.expires_at.is_none_or(|d| d > today),
                })
                .collect()
        })
    }
}
