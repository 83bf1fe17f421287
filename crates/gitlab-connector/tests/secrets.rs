//! After a full demo run, no credential can be read where it does not belong: not in a
//! `pg_dump` of the demo's database, not in the demo's or the service's logs at debug level,
//! not in any answer of the API's read endpoints, not in a panic message. The needles are the
//! simulator's access tokens, every webhook secret and signing token of the installed hooks,
//! the JWT signing secret and the master key, each in plain, base64 and hex forms.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use connector_crypto::MasterKeyRing;
use connector_store::{Store, TenantId, app_connect_options, connections, hooks};
use gitlab_sim::{Dataset, Size};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-connector");
const TENANTS: [&str; 2] = ["premium-co", "free-co"];
/// What the demo connects both tenants with.
const DEMO_TOKEN: &str = "glpat-sim-owner-api-0001";

/// Drops the demo database however the test ends: the dump holds nothing worth keeping.
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql").arg(admin_url()).args(["-qc", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0)]).status();
    }
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn database_url(database: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).unwrap();
    url.set_path(database);
    url.to_string()
}

/// A secret and the name it is reported by.
struct Needle {
    what: String,
    value: String,
}

impl Needle {
    fn new(what: impl Into<String>, value: impl Into<String>) -> Self {
        Self { what: what.into(), value: value.into() }
    }

    /// The forms a careless encoder would leave it in: a `bytea` column dumps as hex, a JSON
    /// blob or a header may carry it in base64.
    fn forms(&self) -> Vec<(&'static str, String)> {
        let bytes = self.value.as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        vec![
            ("plain", self.value.clone()),
            ("base64", base64::engine::general_purpose::STANDARD.encode(bytes)),
            ("base64url", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)),
            ("hex", hex.clone()),
            ("HEX", hex.to_uppercase()),
        ]
    }
}

/// Where each found needle was, as `what (form) in place`.
fn scan(needles: &[Needle], places: &[(&str, &[u8])]) -> Vec<String> {
    let mut found = Vec::new();
    for needle in needles {
        for (form, text) in needle.forms() {
            for (place, haystack) in places {
                if haystack.windows(text.len()).any(|w| w == text.as_bytes()) {
                    found.push(format!("{} ({form}) in {place}", needle.what));
                }
            }
        }
    }
    found
}

/// Bearer tokens in a log: `eyJ…` header, `.`, `eyJ…` claims. A logged JWT is a credential.
fn jwts_in(text: &str) -> usize {
    text.match_indices("eyJ")
        .filter(|&(i, _)| {
            let rest = &text[i..];
            let header = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
            rest[header..].starts_with(".eyJ")
        })
        .count()
}

fn token(secret: &str, tenant: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "coworker", "aud": "gitlab-connector", "exp": now + 600, "tenant_id": tenant});
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A GET of the committed `openapi.yaml`: its path, and the query parameters that page it.
struct ReadEndpoint {
    path: String,
    pager: Option<String>,
    limit: bool,
}

/// Every GET of the spec, so that a read endpoint added later is scanned without anyone
/// remembering this test.
fn read_endpoints() -> Vec<ReadEndpoint> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    let spec: Value = yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(path, item)| {
            let query: Vec<&str> = item.get("get")?["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let pager = query.iter().find(|n| ["cursor", "after"].contains(n)).map(|n| (*n).to_owned());
            Some(ReadEndpoint { path: path.clone(), pager, limit: query.contains(&"limit") })
        })
        .collect()
}

/// Reads API answers as the tenants would, keeping every body.
struct Reader {
    http: reqwest::Client,
    base: String,
    jwt_secret: String,
    bodies: Vec<Vec<u8>>,
}

impl Reader {
    async fn get(&mut self, path: &str, tenant: &str) -> Value {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(token(&self.jwt_secret, tenant)).send().await.unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap().to_vec();
        assert!(status.is_success(), "GET {path} as {tenant}: {status} {}", String::from_utf8_lossy(&bytes));
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.bodies.push(bytes);
        body
    }

    /// A single-object path with the key of the first object its list holds:
    /// `.../projects/{project_id}` and `.../projects/{project_id}/<list>/{key}`.
    async fn fill_object_key(&mut self, path: &str, tenant: &str) -> String {
        let Some((connection, rest)) = path.split_once("/projects/{project_id}") else { return path.to_owned() };
        let list = match rest.trim_start_matches('/').split_once('/') {
            Some((list, _)) => list.to_owned(),
            None => "projects".to_owned(),
        };
        let page = self.get(&format!("{connection}/{list}?limit=1"), tenant).await;
        let first = &page["items"][0];
        assert!(first.is_object(), "{list} of {connection} is empty: nothing to read alone");
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let project = if list == "projects" { text(&first["id"]) } else { text(&first["project_id"]) };
        let key = match list.as_str() {
            "commits" => text(&first["sha"]),
            "merge_requests" | "issues" => text(&first["iid"]),
            _ => text(&first["id"]),
        };
        let filled = path.replace("{project_id}", &project);
        ["{sha}", "{iid}", "{note_id}", "{pipeline_id}"].iter().fold(filled, |p, name| p.replace(name, &key))
    }

    /// Every page of every read endpoint, as each tenant, for its connection; small pages so
    /// that paging is walked too.
    async fn walk(&mut self, endpoints: &[ReadEndpoint]) {
        for tenant in TENANTS {
            let connections = self.get("/v1/connections", tenant).await;
            let ids: Vec<String> = connections["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
            assert_eq!(ids.len(), 1, "{tenant} has one connection: {connections}");
            for endpoint in endpoints {
                let path = self.fill_object_key(&endpoint.path.replace("{id}", &ids[0]), tenant).await;
                assert!(!path.contains('{'), "{}: a path parameter this walk does not know", endpoint.path);
                let mut cursor = String::new();
                loop {
                    let mut query = Vec::new();
                    if endpoint.limit {
                        query.push("limit=25".to_owned());
                    }
                    if let Some(name) = endpoint.pager.as_ref().filter(|_| !cursor.is_empty()) {
                        query.push(format!("{name}={cursor}"));
                    }
                    let page = self.get(&format!("{path}?{}", query.join("&")), tenant).await;
                    let next = page.get("next_cursor").and_then(Value::as_str).unwrap_or_default();
                    let more = page.get("items").and_then(Value::as_array).is_some_and(|i| !i.is_empty());
                    if endpoint.pager.is_none() || !more || next.is_empty() || next == cursor {
                        break;
                    }
                    cursor = next.to_owned();
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_dump_the_logs_or_the_responses_after_a_demo() {
    let database = Database(format!("gc_secrets_test_{}", std::process::id()));
    let jwt_secret = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    let master_keys = MasterKeyRing::generate_entry(1);
    let dev_state = std::env::temp_dir().join(format!("gc-secrets-{}", uuid::Uuid::new_v4()));
    let log_filter = std::env::var("SECRETS_SCAN_LOG").unwrap_or_else(|_| "debug".into());
    // CI scans the small demo; SECRETS_SCAN_DEMO=full scans the full one (minutes, more data).
    let full = std::env::var("SECRETS_SCAN_DEMO").is_ok_and(|v| v == "full");

    let demo = Command::new(BIN)
        .args(["demo", "--database", &database.0])
        .args(if full { None } else { Some("--small") })
        .env("RUST_LOG", &log_filter)
        .env("MASTER_KEYS", &master_keys)
        .env("JWT_HS256_SECRET", &jwt_secret)
        .output()
        .unwrap();
    let demo_stdout = String::from_utf8_lossy(&demo.stdout).into_owned();
    assert!(demo.status.success(), "{demo_stdout}\n{}", String::from_utf8_lossy(&demo.stderr));
    assert!(demo_stdout.trim_end().ends_with("== demo OK"), "{demo_stdout}");

    // The service again on the demo's database, API only (the simulator is gone), to read back
    // everything the demo left through every read endpoint.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let serve_log = dev_state.join("serve.log");
    std::fs::create_dir_all(&dev_state).unwrap();
    let log = std::fs::File::create(&serve_log).unwrap();
    let mut server = tokio::process::Command::new(BIN)
        .args(["serve", "--roles", "api"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url(&database.0))
        .env("MIGRATE_ON_START", "false")
        .env("MASTER_KEYS", &master_keys)
        .env("JWT_HS256_SECRET", &jwt_secret)
        .env("DEV_STATE_DIR", &dev_state)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", &log_filter)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(Instant::now() < deadline, "the server never became ready: {}", std::fs::read_to_string(&serve_log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoints = read_endpoints();
    let mut reader = Reader { http, base, jwt_secret: jwt_secret.clone(), bodies: Vec::new() };
    reader.walk(&endpoints).await;
    let responses = reader.bodies;
    let endpoints = endpoints.len();
    server.kill().await.unwrap();
    let serve_output = std::fs::read(&serve_log).unwrap();

    let dump = Command::new("pg_dump").arg(database_url(&database.0)).output().expect("pg_dump runs");
    assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));

    // The needles: the demo's simulator is seeded 1, and its tokens are the same for every size;
    // the hooks' secrets are opened from the database's ciphertexts with the demo's master key.
    // They are the ones the simulator holds: its deliveries passed verification against them.
    let mut needles: Vec<Needle> =
        Dataset::generate(1, Size::Small).tokens.iter().map(|t| Needle::new(format!("simulator token {}", t.name), &t.value)).collect();
    assert!(needles.iter().any(|n| n.value == DEMO_TOKEN), "the demo's token is among the simulator's");
    let keys = MasterKeyRing::parse(&master_keys).unwrap();
    let owner: PgConnectOptions = database_url(&database.0).parse().unwrap();
    let store = Store::connect(app_connect_options(&owner), 2, Arc::new(keys.clone())).await.unwrap();
    let (mut hook_count, mut signing_count) = (0, 0);
    for tenant in TENANTS {
        let mut tx = store.tenant_tx(&TenantId::parse(tenant).unwrap()).await.unwrap();
        for connection in connections::list(&mut tx, None, 100).await.unwrap() {
            // The sealed token opens to what the demo sent: the key and the needles are right.
            let sealed = connections::access_token(&mut tx, store.keys(), connection.id).await.unwrap();
            assert_eq!(sealed.expose_secret(), DEMO_TOKEN);
            for hook in hooks::for_connection(&mut tx, connection.id).await.unwrap() {
                let (_, secrets) = hooks::secrets(&mut tx, store.keys(), hook.id).await.unwrap();
                hook_count += 1;
                needles.push(Needle::new(format!("{tenant} webhook secret {}", hook.id), secrets.token.expose_secret()));
                if !secrets.signing_token.expose_secret().is_empty() {
                    signing_count += 1;
                    needles.push(Needle::new(format!("{tenant} signing token {}", hook.id), secrets.signing_token.expose_secret()));
                }
            }
        }
    }
    drop(store);
    // One group hook for the Premium tenant, a project hook per listed project for the Free one.
    assert_eq!(hook_count, 3, "hooks installed by the demo");
    needles.push(Needle::new("JWT signing secret", &jwt_secret));
    let master_key = master_keys.split_once(':').unwrap().1.to_owned();
    needles.push(Needle::new("master key", master_key.clone()));

    // A panic message formats what it is given with Debug: the types holding configuration
    // secrets must not print them that way.
    let debug_forms = format!("{keys:?} {:?}", SecretString::from(jwt_secret.clone()));
    assert!(!debug_forms.contains(&master_key) && !debug_forms.contains(&jwt_secret), "{debug_forms}");

    let responses_bytes: usize = responses.iter().map(Vec::len).sum();
    let responses_joined = responses.concat();
    let logs = [demo.stdout.as_slice(), demo.stderr.as_slice(), serve_output.as_slice()].concat();
    let log_text = String::from_utf8_lossy(&logs);
    let found = scan(
        &needles,
        &[("pg_dump", &dump.stdout), ("logs", &logs), ("API responses", &responses_joined), ("debug forms", debug_forms.as_bytes())],
    );
    let panics = log_text.matches("panicked").count();
    let jwts = jwts_in(&log_text);
    println!(
        "secrets: {} needles ({} simulator tokens, {hook_count} webhook secrets, {signing_count} signing tokens, the JWT secret, the master key) \
         x 5 forms looked for in a {}-byte pg_dump, {} bytes of logs at RUST_LOG={log_filter} ({} lines), {} API responses \
         ({responses_bytes} bytes) from {endpoints} read endpoints x {} tenants, after the {} demo: {} found; {jwts} bearer tokens and {panics} panics in the logs",
        needles.len(),
        needles.len() - hook_count - signing_count - 2,
        dump.stdout.len(),
        logs.len(),
        log_text.lines().count(),
        responses.len(),
        TENANTS.len(),
        if full { "full" } else { "small" },
        found.len(),
    );
    assert!(found.is_empty(), "secrets found: {found:#?}");
    assert_eq!(jwts, 0, "a bearer token was logged");
    assert_eq!(panics, 0, "a panic message in the logs:\n{log_text}");
    // The scan saw real material: data in the dump, the service's debug logs, pages of data.
    assert!(String::from_utf8_lossy(&dump.stdout).contains("COPY public.commits"), "the dump holds the synced data");
    assert!(log_text.contains("DEBUG"), "the logs are at debug level");
    assert!(responses.len() > (endpoints + 1) * TENANTS.len(), "the walk read more than one page somewhere");
    let _ = std::fs::remove_dir_all(&dev_state);
}
