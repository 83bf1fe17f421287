//! A GitLab simulator: GitLab's REST API v4 and webhooks over a generated, deterministic
//! dataset, plus a control API under `/-/sim/` to change it and fire the matching webhooks.
#![recursion_limit = "256"]

mod api;
mod auth;
mod config;
mod control;
mod dataset;
mod error;
mod faults;
mod generate;
mod model;
mod pagination;
mod ratelimit;
mod render;
mod rng;
mod server;
mod state;
mod stats;
mod time;
mod truth;
mod webhook;
mod words;

pub use config::{Churn, DeliveryConfig, Faults, Latency, RateLimitConfig, SimConfig};
pub use dataset::{Dataset, Ids};
pub use error::{Result, SimError};
pub use generate::*;
pub use model::*;
pub use server::{SimHandle, serve};
pub use state::{Simulator, TokenSummary};
pub use stats::Stats;
pub use truth::Synced;
pub use webhook::signing::sign as sign_webhook;
pub use webhook::{Delivery, Trigger};
