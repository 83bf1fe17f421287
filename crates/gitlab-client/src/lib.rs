//! A typed async client for the GitLab REST API v4, built for backfilling and syncing a
//! tenant's GitLab data from a job-queue worker.
//!
//! - [`GitLabClient`]: one instance and one token; typed endpoint methods live in [`api`].
//! - [`PageRequest`] / [`Page`]: resumable pagination; a `PageRequest` is the checkpoint.
//! - [`RateBudget`]: pluggable pacing against `RateLimit-*` headers.
//! - [`UrlPolicy`]: SSRF protection for tenant-supplied self-managed URLs.
//! - [`Error`]: one error type; [`Error::kind`] classifies it.
//!
//! ```no_run
//! use futures_util::TryStreamExt;
//! use gitlab_client::api::merge_requests::MergeRequest;
//! use gitlab_client::{ClientOptions, GitLabClient, PageRequest, UrlPolicy};
//! use secrecy::SecretString;
//!
//! # async fn run(token: SecretString, checkpoint: Option<String>) -> anyhow::Result<()> {
//! let policy = UrlPolicy::from_allowlist("gitlab.internal.example,10.1.0.0/16")?;
//! let gitlab = GitLabClient::new("https://gitlab.com", token, policy, ClientOptions::default())?;
//! let first = match checkpoint {
//!     Some(stored) => serde_json::from_str(&stored)?,
//!     None => PageRequest::merge_requests("acme/app", None),
//! };
//! let mut pages = std::pin::pin!(gitlab.pages::<serde_json::Value>(first));
//! while let Some(page) = pages.try_next().await? {
//!     for raw in &page.items {
//!         let typed: MergeRequest = serde_json::from_value(raw.clone())?;
//!         // store `raw` and `typed` ...
//!         # drop(typed);
//!     }
//!     // ... and, in the same transaction, the checkpoint:
//!     let checkpoint = serde_json::to_string(&page.next)?;
//!     # drop(checkpoint);
//! }
//! # Ok(())
//! # }
//! ```

pub mod api;
mod client;
mod error;
mod pagination;
mod rate_limit;
mod retry;
mod stats;
mod url_policy;

pub use client::{ClientOptions, DEFAULT_MAX_RESPONSE_BYTES, GitLabClient, ReadError, read_capped};
pub use error::{Error, ErrorKind, Result};
pub use pagination::{PER_PAGE, Page, PageRequest};
pub use rate_limit::{LocalRateBudget, PacingConfig, RateBudget, RateLimitObservation, pacing_delay};
pub use retry::RetryConfig;
pub use stats::{Observer, StatsSnapshot};
pub use url_policy::{DEFAULT_PUBLIC_PORTS, Lookup, PolicyResolver, SystemLookup, UrlPolicy, is_non_public};
