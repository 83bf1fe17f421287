//! SSRF protection: URL shape, IP literals, DNS answers, allowlists and rebinding.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use gitlab_client::{Error, GitLabClient, Lookup, UrlPolicy, is_non_public};
use reqwest::dns::Resolve;
use secrecy::SecretString;
use serde_json::json;
use url::Url;

use crate::stub::{TOKEN, fast_options, json, loopback_policy, stub};

fn check(policy: &UrlPolicy, url: &str) -> Result<(), Error> {
    policy.check_url(&Url::parse(url).unwrap())
}

fn blocked(result: Result<(), Error>) -> bool {
    matches!(result, Err(Error::Blocked { .. }))
}

/// DNS answers scripted per call: the n-th lookup returns `answers[n]` (the last one repeats).
struct Scripted {
    answers: Vec<Vec<IpAddr>>,
    calls: Mutex<usize>,
}

impl Scripted {
    fn new(answers: &[&[&str]]) -> Arc<Self> {
        Arc::new(Scripted {
            answers: answers.iter().map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect()).collect(),
            calls: Mutex::new(0),
        })
    }
}

impl Lookup for Scripted {
    fn lookup<'a>(&'a self, _host: &'a str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>> {
        let mut calls = self.calls.lock().unwrap();
        let answer = self.answers[(*calls).min(self.answers.len() - 1)].clone();
        *calls += 1;
        Box::pin(async move { Ok(answer) })
    }
}

#[test]
fn https_is_required_for_public_hosts() {
    let policy = UrlPolicy::default();
    assert!(check(&policy, "https://gitlab.com").is_ok());
    assert!(check(&policy, "https://example.com/gitlab").is_ok());
    assert!(blocked(check(&policy, "http://gitlab.com")));
    assert!(blocked(check(&policy, "ftp://gitlab.com")));
    assert!(blocked(check(&policy, "https://user:pw@gitlab.com")));
}

#[test]
fn http_is_allowed_for_allowlisted_hosts() {
    let policy = UrlPolicy::from_allowlist("gitlab.internal.example, localhost:8080").unwrap();
    assert!(check(&policy, "http://gitlab.internal.example").is_ok());
    assert!(check(&policy, "http://GitLab.Internal.Example./gitlab").is_ok());
    assert!(check(&policy, "http://localhost:8080").is_ok());
    assert!(blocked(check(&policy, "http://gitlab.com")));
}

#[test]
fn non_public_ip_literals_are_refused() {
    let policy = UrlPolicy::default();
    for url in [
        "https://10.0.0.5",
        "https://172.16.3.4",
        "https://192.168.1.1",
        "https://127.0.0.1",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1",
        "https://0.0.0.0",
        "https://255.255.255.255",
        "https://224.0.0.1",
        "https://[::1]",
        "https://[::]",
        "https://[fe80::1]",
        "https://[fc00::1]",
        "https://[fd00:ec2::254]",
        "https://[::ffff:127.0.0.1]",
        "https://[::ffff:169.254.169.254]",
        "https://[::ffff:10.1.2.3]",
        "https://[64:ff9b::a9fe:a9fe]",
        "https://[2002:0a00:0001::]",
        "https://metadata.google.internal",
    ] {
        assert!(blocked(check(&policy, url)), "{url} must be refused");
    }
    assert!(check(&policy, "https://93.184.215.14").is_ok());
    assert!(check(&policy, "https://[2606:4700::6810:84e5]").is_ok());
}

#[test]
fn cidr_allowlist_allows_ranges_including_mapped_forms() {
    let policy = UrlPolicy::from_allowlist("127.0.0.0/8:8080, 10.1.0.0/16, [::1/128]:3000").unwrap();
    assert!(check(&policy, "http://127.0.0.1:8080").is_ok());
    assert!(check(&policy, "https://10.1.44.2").is_ok());
    assert!(check(&policy, "http://[::1]:3000").is_ok());
    assert!(check(&policy, "https://[::ffff:127.0.0.1]:8080").is_ok());
    assert!(blocked(check(&policy, "https://10.2.0.1")));
    assert!(blocked(check(&policy, "https://169.254.169.254")));
    assert!(policy.ip_allowed("10.1.255.255".parse().unwrap()));
    assert!(!policy.ip_allowed("10.0.0.1".parse().unwrap()));
}

/// An allowlisted host or range admits 443 and 80 unless the entry names its ports, and a
/// public URL only 443: allowlisting an internal host does not open its database's port.
#[test]
fn ports_are_allowed_explicitly() {
    let policy = UrlPolicy::from_allowlist("127.0.0.1/32, 10.0.0.0/8:8443, gitlab.internal.example:8080, [fd00::/8]:*, ::1").unwrap();
    assert!(check(&policy, "http://127.0.0.1").is_ok());
    assert!(check(&policy, "https://127.0.0.1").is_ok());
    for refused in [
        "http://127.0.0.1:5432",
        "http://127.0.0.1:8080",
        "https://10.1.2.3",
        "http://gitlab.internal.example",
        "https://gitlab.internal.example:8443",
        "https://93.184.215.14:8443",
        "http://[::1]:6379",
    ] {
        let outcome = check(&policy, refused);
        let said = format!("{outcome:?}");
        assert!(blocked(outcome) && said.contains("port"), "{refused}: {said}");
    }
    for allowed in [
        "https://10.1.2.3:8443",
        "http://gitlab.internal.example:8080",
        "http://[fd00::1]:6000",
        "https://[::1]",
        "https://93.184.215.14",
        "https://gitlab.example.com:443",
    ] {
        assert!(check(&policy, allowed).is_ok(), "{allowed}");
    }
    // A name that is not allowlisted may use an allowlisted range's port; the resolver then
    // insists on an address in that range.
    assert!(check(&policy, "https://gitlab.example.com:8443").is_ok());
    let narrow = UrlPolicy::from_allowlist("10.0.0.0/8:8443").unwrap();
    assert!(blocked(check(&narrow, "https://gitlab.example.com:22")));
    assert!(blocked(check(&UrlPolicy::default(), "https://gitlab.example.com:8443")));
    for bad in ["127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]8080", "host:65536"] {
        assert!(matches!(UrlPolicy::from_allowlist(bad), Err(Error::Config { .. })), "{bad}");
    }
}

#[test]
fn malformed_allowlist_entries_are_rejected() {
    assert!(matches!(UrlPolicy::from_allowlist("10.0.0.0/33"), Err(Error::Config { .. })));
    assert!(matches!(UrlPolicy::from_allowlist("https://x.example"), Err(Error::Config { .. })));
    assert!(UrlPolicy::from_allowlist(" , ").is_ok());
}

#[test]
fn classification_of_addresses() {
    for ip in ["10.0.0.1", "127.1.2.3", "169.254.0.1", "100.127.255.255", "::ffff:192.168.0.1", "fe80::abcd", "ff02::1"] {
        assert!(is_non_public(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["8.8.8.8", "100.128.0.1", "2a00:1450:4001::1"] {
        assert!(!is_non_public(ip.parse().unwrap()), "{ip}");
    }
}

fn resolver(policy: UrlPolicy, base: &str) -> gitlab_client::PolicyResolver {
    policy.resolver_for(&Url::parse(base).unwrap())
}

#[tokio::test]
async fn resolved_private_addresses_are_refused_and_mixed_answers_filtered() {
    let lookup = Scripted::new(&[&["10.0.0.7"], &["93.184.215.14", "169.254.169.254"]]);
    let resolver = resolver(UrlPolicy::default().with_lookup(lookup), "https://git.tenant.example");
    assert!(matches!(resolver.resolve_host("git.tenant.example").await, Err(Error::Blocked { .. })));
    let ips = resolver.resolve_host("git.tenant.example").await.unwrap();
    assert_eq!(ips, vec!["93.184.215.14".parse::<IpAddr>().unwrap()]);
}

#[tokio::test]
async fn dns_rebinding_to_a_private_address_is_refused() {
    let lookup = Scripted::new(&[&["93.184.215.14"], &["127.0.0.1"]]);
    let resolver = resolver(UrlPolicy::default().with_lookup(lookup), "https://rebind.example");
    let name: reqwest::dns::Name = "rebind.example".parse().unwrap();
    let first: Vec<_> = resolver.resolve(name).await.unwrap().collect();
    assert_eq!(first[0].ip(), "93.184.215.14".parse::<IpAddr>().unwrap());
    let name: reqwest::dns::Name = "rebind.example".parse().unwrap();
    let err = resolver.resolve(name).await.err().expect("second lookup must be refused");
    assert!(matches!(err.downcast_ref::<Error>(), Some(Error::Blocked { .. })), "{err}");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_never_gets_a_connection() {
    let server = stub(|_, _| json(200, &json!({"version": "1", "revision": "x"}), &[])).await;
    let port = server.base.rsplit(':').next().unwrap();
    // https, and a range allowing any port, so the up-front check passes; the resolver is what
    // must stop it.
    let policy = UrlPolicy::from_allowlist("10.0.0.0/8:*").unwrap().with_lookup(Scripted::new(&[&["127.0.0.1"]]));
    let gitlab = GitLabClient::new(&format!("https://sneaky.example:{port}"), SecretString::from(TOKEN), policy, fast_options()).unwrap();
    let err = gitlab.version().await.unwrap_err();
    assert!(matches!(err, Error::Blocked { .. }), "{err:?}");
    assert_eq!(gitlab.stats().retries, 0, "a policy refusal is final");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn an_allowlisted_name_connects_through_the_resolver() {
    let server = stub(|_, _| json(200, &json!({"version": "18.0.0", "revision": "x"}), &[])).await;
    let port = server.base.rsplit(':').next().unwrap();
    let policy = UrlPolicy::from_allowlist("gitlab.internal.example:*").unwrap().with_lookup(Scripted::new(&[&["127.0.0.1"]]));
    let gitlab =
        GitLabClient::new(&format!("http://gitlab.internal.example:{port}"), SecretString::from(TOKEN), policy, fast_options()).unwrap();
    assert_eq!(gitlab.version().await.unwrap().version, "18.0.0");
}

#[tokio::test]
async fn plain_http_names_must_resolve_into_an_allowlisted_range() {
    let policy = UrlPolicy::from_allowlist("10.1.0.0/16").unwrap().with_lookup(Scripted::new(&[&["10.1.2.3"], &["93.184.215.14"]]));
    let resolver = resolver(policy, "http://git.corp.example");
    assert!(resolver.resolve_host("git.corp.example").await.is_ok());
    assert!(matches!(resolver.resolve_host("git.corp.example").await, Err(Error::Blocked { .. })));
}

#[test]
fn the_client_refuses_a_blocked_base_url_up_front() {
    for base in ["http://gitlab.com", "https://192.168.0.10", "https://[::ffff:127.0.0.1]"] {
        let err = GitLabClient::new(base, SecretString::from(TOKEN), UrlPolicy::default(), fast_options()).unwrap_err();
        assert!(matches!(err, Error::Blocked { .. }), "{base}: {err:?}");
    }
}

/// Before the token goes to a base URL, what answers there must answer like GitLab does without
/// one: a server that answers 200 with anything else, or 404, never sees the token.
#[tokio::test]
async fn the_token_goes_only_to_what_answered_like_gitlab() {
    for (what, answer) in [("200 with no version", json!({"ok": true})), ("an HTML page", json!("<html>"))] {
        let server = stub(move |_, _| json(200, &answer, &[])).await;
        let options = gitlab_client::ClientOptions { verify_gitlab: true, ..fast_options() };
        let gitlab = GitLabClient::new(&server.base, SecretString::from(TOKEN), loopback_policy(), options).unwrap();
        let err = gitlab.current_user().await.unwrap_err();
        assert!(matches!(err, Error::NotGitLab { status: 200 }), "{what}: {err:?}");
        let seen = server.seen();
        assert_eq!(seen.len(), 1, "{what}: only the check was sent");
        assert_eq!(seen[0].path, "/api/v4/version");
        assert_eq!(seen[0].token, None, "{what}: the check carries no token");
    }
    // GitLab's answer without a token: 401 with its message; then the token is sent.
    let server = stub(|seen, _| match seen.token {
        None => json(401, &json!({"message": "401 Unauthorized"}), &[]),
        Some(_) => json(200, &json!({"id": 1, "username": "root", "name": "Root", "state": "active"}), &[]),
    })
    .await;
    let options = gitlab_client::ClientOptions { verify_gitlab: true, ..fast_options() };
    let gitlab = GitLabClient::new(&server.base, SecretString::from(TOKEN), loopback_policy(), options).unwrap();
    gitlab.current_user().await.unwrap();
    gitlab.current_user().await.unwrap();
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| (s.path.as_str(), s.token.is_some())).collect::<Vec<_>>(),
        [("/api/v4/version", false), ("/api/v4/user", true), ("/api/v4/user", true)],
        "checked once, then trusted"
    );
}
