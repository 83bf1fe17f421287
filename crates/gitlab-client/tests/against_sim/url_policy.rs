//! The SSRF policy in front of a real server on a loopback address.

use gitlab_client::{ErrorKind, GitLabClient, UrlPolicy};
use gitlab_sim::{SimConfig, TOKEN_OWNER};
use secrecy::SecretString;

use crate::common::{assert_no_token, options, small, start};

fn connect(base: &str, policy: UrlPolicy) -> gitlab_client::Result<GitLabClient> {
    GitLabClient::new(base, SecretString::from(TOKEN_OWNER), policy, options())
}

#[tokio::test]
async fn loopback_is_refused_unless_allowlisted() {
    let sim = start(small(), SimConfig::default()).await;

    for policy in [UrlPolicy::default(), UrlPolicy::from_allowlist("10.0.0.0/8,gitlab.internal.example").unwrap()] {
        let err = connect(&sim.base_url, policy).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Blocked, "{err:?}");
        assert_no_token(&err, TOKEN_OWNER);
    }

    // A name passes the up-front check when ranges are allowlisted; the resolver then
    // refuses its loopback answer, before any connection.
    let by_name = format!("http://localhost:{}", sim.addr.port());
    let gitlab = connect(&by_name, UrlPolicy::from_allowlist("10.0.0.0/8:*").unwrap()).unwrap();
    let err = gitlab.version().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Blocked, "{err:?}");
    assert_no_token(&err, TOKEN_OWNER);
    assert_eq!(sim.sim.stats().total_requests, 0, "nothing reached the simulator");

    let gitlab = connect(&sim.base_url, UrlPolicy::from_allowlist("127.0.0.1/32:*").unwrap()).unwrap();
    let expected = sim.sim.with_dataset(|ds| ds.instance.version.clone());
    assert_eq!(gitlab.version().await.unwrap().version, expected);
    assert_eq!(sim.sim.stats().total_requests, 1);
}
