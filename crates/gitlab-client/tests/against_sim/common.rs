//! A simulator per test and clients wired to it.

use std::sync::OnceLock;
use std::time::Duration;

use futures_util::TryStreamExt;
use gitlab_client::{ClientOptions, Error, GitLabClient, PageRequest, RetryConfig, UrlPolicy};
use gitlab_sim::{Dataset, HeavyProject, SimHandle, Size};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

/// Commits of the heavy project: past GitLab's 10,000-record counting limit.
pub const HEAVY_COMMITS: usize = 10_050;

pub fn small() -> Dataset {
    Dataset::generate(7, Size::Small)
}

/// Many projects under nested subgroups and one heavy project (more than 10,000 commits,
/// hundreds of issues), so every listing spans several pages of 100. Generated once per test
/// binary: each test still gets its own simulator over a clone.
pub fn large() -> Dataset {
    static LARGE: OnceLock<Dataset> = OnceLock::new();
    LARGE
        .get_or_init(|| {
            let mut spec = Size::Small.spec();
            spec.projects = 230;
            spec.subgroup_depth = 2;
            spec.commits_per_project = 3;
            spec.merge_requests_per_project = 1;
            spec.issues_per_project = 2;
            spec.pipelines_per_project = 1;
            spec.max_notes_per_item = 1;
            spec.heavy_project = Some(HeavyProject { commits: HEAVY_COMMITS, merge_requests: 3, issues: 250, pipelines: 1 });
            Dataset::generate(11, Size::Custom(spec))
        })
        .clone()
}

/// A simulator over a dataset, on a free loopback port.
pub use connector_test_support::simulator as start;

/// Short timeouts and near-zero backoff keep failure paths fast; the retry logic is the same.
/// Requests counted one by one: without the unauthenticated GitLab check before the first
/// (`url_policy::the_token_goes_only_to_what_answered_like_gitlab` covers it).
pub fn options() -> ClientOptions {
    ClientOptions {
        verify_gitlab: false,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        retry: RetryConfig { max_attempts: 4, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) },
        ..ClientOptions::default()
    }
}

pub fn loopback() -> UrlPolicy {
    UrlPolicy::from_allowlist("127.0.0.1/32:*").unwrap()
}

pub fn client_with(sim: &SimHandle, token: &str, options: ClientOptions) -> GitLabClient {
    GitLabClient::new(&sim.base_url, SecretString::from(token.to_owned()), loopback(), options).unwrap()
}

pub fn client(sim: &SimHandle, token: &str) -> GitLabClient {
    client_with(sim, token, options())
}

/// Every item from `first` on, and how many pages that took.
pub async fn walk<T: DeserializeOwned + Send + 'static>(gitlab: &GitLabClient, first: PageRequest) -> (Vec<T>, usize) {
    let pages: Vec<_> = gitlab.pages::<T>(first).try_collect().await.unwrap();
    let count = pages.len();
    (pages.into_iter().flat_map(|p| p.items).collect(), count)
}

/// The token reaches GitLab in a header only; no error may carry it into logs or API answers.
pub fn assert_no_token(err: &Error, token: &str) {
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains(token), "token leaked: {shown}");
}
