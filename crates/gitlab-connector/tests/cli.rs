//! The binary as operators and developers run it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-connector");

/// The binary with an empty environment but for what each test gives it.
fn connector(dev_state: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("DEV_STATE_DIR", dev_state);
    cmd
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gc-cli-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn decode_hs256(token: &str, secret: &[u8]) -> serde_json::Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["gitlab-connector"]);
    validation.set_issuer(&["coworker"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &jsonwebtoken::DecodingKey::from_secret(secret), &validation)
        .expect("the token verifies with the key")
        .claims
}

#[test]
fn production_refuses_to_start_without_real_keys() {
    let dir = temp_dir("prod");
    let base = [("APP_ENV", "production"), ("DATABASE_APP_URL", "postgres://gitlab_connector_app:pw@127.0.0.1/gitlab_connector")];
    let keys = ("MASTER_KEYS", "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let jwt = ("JWT_HS256_SECRET", "a-production-secret-of-more-than-32-chars");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("APP_ENV", "production")], "DATABASE_APP_URL"),
        (&base, "MASTER_KEYS"),
        (&[base[0], base[1], keys], "JWT_"),
        (&[base[0], base[1], keys, ("JWT_HS256_SECRET", "short")], "at least 32"),
        (&[base[0], base[1], keys, jwt], "METRICS_TOKEN"),
        (&[base[0], base[1], keys, jwt, ("METRICS_TOKEN", "REPLACE_ME")], "at least 32"),
    ];
    for (env, needle) in cases {
        let out = connector(&dir).envs(env.iter().copied()).args(["dev-token", "--tenant", "acme"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started");
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(!dir.join("dev-keys.json").exists(), "production never generates development keys");

    // With real keys it runs, and the token verifies with the configured secret.
    let secret = "a-production-secret-of-more-than-32-chars";
    let out = connector(&dir)
        .envs(base)
        .env("MASTER_KEYS", "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .env("JWT_HS256_SECRET", secret)
        .env("METRICS_TOKEN", "a-production-metrics-token-of-32-chars-or-more")
        .args(["dev-token", "--tenant", "acme", "--ttl", "5m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let claims = decode_hs256(String::from_utf8(out.stdout).unwrap().trim(), secret.as_bytes());
    assert_eq!(claims["tenant_id"], "acme");
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 300);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn development_keys_are_generated_once_and_shared() {
    let dir = temp_dir("dev");
    let token = |tenant: &str| {
        let out = connector(&dir).args(["dev-token", "--tenant", tenant]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains("DEVELOPMENT MODE"), "development mode must say so loudly: {stderr}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first = token("acme");
    let keys_path = dir.join("dev-keys.json");
    let keys: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&keys_path).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&keys_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let second = token("globex");
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&keys_path).unwrap()).unwrap();
    assert_eq!(keys, after, "the keys are kept, not regenerated");
    let secret = keys["jwt_hs256_secret"].as_str().unwrap().as_bytes();
    assert_eq!(decode_hs256(&first, secret)["tenant_id"], "acme");
    assert_eq!(decode_hs256(&second, secret)["tenant_id"], "globex");

    let out = connector(&dir).args(["dev-token", "--tenant", "bad tenant"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keys_generate_prints_a_usable_entry() {
    let out = Command::new(BIN).args(["keys", "generate", "--version", "3"]).output().unwrap();
    assert!(out.status.success());
    let entry = String::from_utf8(out.stdout).unwrap();
    let ring = connector_crypto::MasterKeyRing::parse(entry.trim()).unwrap();
    assert_eq!(ring.newest_version(), 3);
}

/// `serve` with no keys configured: creates its database, migrates, answers, and stops cleanly
/// on SIGTERM.
#[tokio::test]
async fn serve_creates_migrates_serves_and_drains_on_sigterm() {
    let base = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database = format!("gc_cli_{}", uuid::Uuid::new_v4().simple());
    let owner = PgConnectOptions::from_str(&base).unwrap().database(&database);
    let url = owner.to_url_lossy().to_string();
    let dir = temp_dir("serve");

    let mut child = connector(&dir)
        .env("DATABASE_URL", &url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .arg("serve")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(&line).ok()?;
            (v["fields"]["message"] == "serving").then(|| v["fields"]["addr"].as_str().unwrap().to_owned())
        })
        .expect("the server logs its address");
    let http = reqwest::Client::new();
    let ready = http.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        (child.wait().unwrap(), rest)
    });
    let (status, rest) = tokio::time::timeout(Duration::from_secs(20), status).await.unwrap().unwrap();
    assert!(status.success(), "exit {status:?}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    let mut admin = PgConnectOptions::from_str(&base).unwrap().connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{database}\" WITH (FORCE)"))).execute(&mut admin).await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
