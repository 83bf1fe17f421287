//! Bearer JWT authentication: which tenant is calling.
//!
//! HS256 with a shared secret, and RS256/ES256 with public keys from a JWKS file or URL. The
//! algorithm a token names must be one a configured key is for: an HS256 token is only checked
//! against the shared secret and an RS/ES token only against a JWKS key of the same algorithm,
//! so a public key can never be used as an HMAC secret (the HS/RS confusion attack), and
//! `alg: none` is not an algorithm jsonwebtoken accepts at all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use connector_store::TenantId;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::AppState;
use crate::error::ApiError;
use crate::rate_limit::Standing;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// An unknown `kid` refetches the JWKS URL at most this often.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// A JWKS answer larger than this is refused: real key sets are a few kB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How the key set follows the issuer's.
#[derive(Debug, Clone, Copy)]
pub struct JwksRefresh {
    /// The JWKS file and URL are read again this often; the keys they hold then replace ours.
    pub every: Duration,
    /// A key gone from the issuer's set still verifies for this long after we see it gone, for
    /// tokens it signed just before the issuer rotated. Zero drops it at once.
    pub overlap: Duration,
}

impl Default for JwksRefresh {
    fn default() -> Self {
        Self { every: Duration::from_secs(5 * 60), overlap: Duration::from_secs(2 * 60) }
    }
}

#[derive(Clone)]
pub struct AuthConfig {
    pub hs256_secret: Option<SecretString>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<url::Url>,
    pub jwks_refresh: JwksRefresh,
    pub issuer: String,
    pub audience: String,
    pub tenant_claim: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("no JWT verification key: set JWT_HS256_SECRET, JWT_JWKS_FILE or JWT_JWKS_URL")]
    NoKeys,
    #[error("JWKS {0}: {1}")]
    Jwks(String, String),
}

type KeySet = HashMap<String, (Algorithm, DecodingKey)>;

/// RS256 and ES256 keys by `kid`: the issuer's set as last read, and the keys it has dropped
/// since, each with when we saw it go.
#[derive(Default)]
struct PublicKeys {
    keys: KeySet,
    retiring: HashMap<String, ((Algorithm, DecodingKey), Instant)>,
    fetched_at: Option<Instant>,
}

impl PublicKeys {
    fn replace(&mut self, keys: KeySet, overlap: Duration) {
        let now = Instant::now();
        let old = std::mem::replace(&mut self.keys, keys);
        for (kid, key) in old {
            if !self.keys.contains_key(&kid) {
                self.retiring.entry(kid).or_insert((key, now));
            }
        }
        self.retiring.retain(|kid, (_, gone)| !self.keys.contains_key(kid) && gone.elapsed() < overlap);
        self.fetched_at = Some(now);
    }

    fn get(&self, kid: &str, alg: Algorithm, overlap: Duration) -> Option<DecodingKey> {
        let retiring = self.retiring.get(kid).filter(|(_, gone)| gone.elapsed() < overlap).map(|(key, _)| key);
        self.keys.get(kid).or(retiring).filter(|(a, _)| *a == alg).map(|(_, k)| k.clone())
    }
}

pub struct Authenticator {
    config: AuthConfig,
    hs256: Option<DecodingKey>,
    public: RwLock<PublicKeys>,
    refreshing: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl Authenticator {
    pub async fn new(config: AuthConfig) -> Result<Self, AuthSetupError> {
        if config.hs256_secret.is_none() && config.jwks_file.is_none() && config.jwks_url.is_none() {
            return Err(AuthSetupError::NoKeys);
        }
        let hs256 = config.hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()));
        let authenticator = Self {
            config,
            hs256,
            public: RwLock::new(PublicKeys::default()),
            refreshing: tokio::sync::Mutex::new(()),
            http: reqwest::Client::new(),
        };
        let keys = authenticator.read_key_sets().await?;
        authenticator.public.write().await.replace(keys, Duration::ZERO);
        Ok(authenticator)
    }

    /// Reads the JWKS file and URL again every `jwks_refresh.every` while the authenticator is in
    /// use. A failed read keeps the keys we have (an issuer's outage must not lock every tenant
    /// out) and is logged.
    pub fn spawn_refresh(self: &Arc<Self>) {
        if self.config.jwks_file.is_none() && self.config.jwks_url.is_none() {
            return;
        }
        let this = Arc::downgrade(self);
        let every = self.config.jwks_refresh.every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(this) = this.upgrade() else { return };
                if let Err(error) = this.refresh(Duration::ZERO).await {
                    tracing::warn!(%error, "JWKS refresh failed; keeping the keys we have");
                }
            }
        });
    }

    /// Reads the key sets again unless another caller did within `unless_within` (checked once
    /// this caller's turn comes, so a burst of unknown `kid`s fetches once).
    async fn refresh(&self, unless_within: Duration) -> Result<(), AuthSetupError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.public.read().await.fetched_at.is_some_and(|t| t.elapsed() < unless_within) {
            return Ok(());
        }
        let keys = self.read_key_sets().await?;
        self.public.write().await.replace(keys, self.config.jwks_refresh.overlap);
        Ok(())
    }

    /// The keys of the JWKS file and URL, whichever are configured.
    async fn read_key_sets(&self) -> Result<KeySet, AuthSetupError> {
        let mut keys = KeySet::new();
        if let Some(path) = &self.config.jwks_file {
            let failed = |e: String| AuthSetupError::Jwks(path.display().to_string(), e);
            let text = tokio::fs::read(path).await.map_err(|e| failed(e.to_string()))?;
            let set: JwkSet = serde_json::from_slice(&text).map_err(|e| failed(e.to_string()))?;
            keys.extend(usable_keys(&set));
        }
        if let Some(url) = &self.config.jwks_url {
            let set = self.fetch_jwks(url).await.map_err(|e| AuthSetupError::Jwks(url.to_string(), e))?;
            keys.extend(usable_keys(&set));
        }
        Ok(keys)
    }

    pub fn tenant_claim(&self) -> &str {
        &self.config.tenant_claim
    }

    async fn fetch_jwks(&self, url: &url::Url) -> Result<JwkSet, String> {
        let response = self
            .http
            .get(url.clone())
            .timeout(JWKS_FETCH_TIMEOUT)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?;
        let body = gitlab_client::read_capped(response, MAX_JWKS_BYTES).await.map_err(|e| match e {
            gitlab_client::ReadError::TooLarge => format!("the key set is larger than {} KiB", MAX_JWKS_BYTES / 1024),
            gitlab_client::ReadError::Transport(e) => e.to_string(),
        })?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// The key for a token's algorithm and `kid`, refetching the JWKS URL once for an unknown
    /// `kid` (keys rotate on the issuer's side), but never more often than the refetch interval.
    async fn public_key(&self, alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
        let kid = kid?;
        let overlap = self.config.jwks_refresh.overlap;
        if let Some(key) = self.public.read().await.get(kid, alg, overlap) {
            return Some(key);
        }
        self.config.jwks_url.as_ref()?;
        if let Err(error) = self.refresh(JWKS_REFETCH_INTERVAL).await {
            tracing::warn!(%error, "JWKS refetch failed");
        }
        self.public.read().await.get(kid, alg, overlap)
    }

    /// Verifies a bearer token and returns the tenant it speaks for.
    pub async fn verify(&self, token: &str) -> Result<TenantId, ApiError> {
        let invalid = || ApiError::unauthorized("invalid bearer token");
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        strict_segments(token).ok_or_else(invalid)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.clone(),
            Algorithm::RS256 | Algorithm::ES256 => self.public_key(header.alg, header.kid.as_deref()).await,
            _ => None,
        }
        .ok_or_else(invalid)?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => ApiError::unauthorized("bearer token expired"),
                _ => invalid(),
            })?
            .claims;
        // jsonwebtoken takes an issuer given as an array of names; one name is what we accept.
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(invalid());
        }
        // Issued in the future (beyond the clock skew allowed) is no token anyone issued yet.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if let Some(iat) = claims.get("iat")
            && iat.as_u64().is_none_or(|iat| iat > now + LEEWAY_SECONDS)
        {
            return Err(invalid());
        }
        // A string only: were 123 and "123" both accepted, two spellings would name one tenant.
        let tenant = match claims.get(&self.config.tenant_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::unauthorized("invalid tenant claim")),
            None => return Err(ApiError::unauthorized("bearer token has no tenant claim")),
        };
        TenantId::parse(&tenant).map_err(|_| ApiError::unauthorized("invalid tenant claim"))
    }

    /// Signs an HS256 token for `tenant`, as `gitlab-connector dev-token` and the tests do.
    pub fn issue_hs256(&self, tenant: &TenantId, ttl: Duration) -> Option<String> {
        let secret = self.config.hs256_secret.as_ref()?;
        Some(issue_hs256(secret, &self.config, tenant, ttl))
    }
}

/// An HS256 token with the claims [`Authenticator::verify`] requires.
pub fn issue_hs256(secret: &SecretString, config: &AuthConfig, tenant: &TenantId, ttl: Duration) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    claims.insert("iss".into(), config.issuer.clone().into());
    claims.insert("aud".into(), config.audience.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs() as i64).into());
    claims.insert(config.tenant_claim.clone(), tenant.as_str().into());
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("HS256 signing cannot fail")
}

fn usable_keys(set: &JwkSet) -> impl Iterator<Item = (String, (Algorithm, DecodingKey))> + '_ {
    set.keys.iter().filter_map(|jwk| {
        let kid = jwk.common.key_id.clone()?;
        let alg = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(p) if p.curve == jsonwebtoken::jwk::EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some((kid, (alg, key)))
    })
}

/// What the 401 of a `/v1` operation means, for its documentation.
pub const REFUSAL: &str = "Missing or invalid bearer token";

/// The calling tenant, taken from a verified bearer token. A handler that takes this cannot run
/// for an unauthenticated request.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

/// The tenant [`authenticate`] established for this request.
impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Every route with a Tenant is behind `authenticate`; one that is not is a wiring bug.
        parts.extensions.get::<Tenant>().cloned().ok_or_else(ApiError::internal)
    }
}

/// Verifies the bearer JWT and spends one request of its tenant's budget before the handler
/// runs (a 401 or a 429 otherwise), and tells the caller where its budget stands.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let tenant = match bearer(request.headers()) {
        Ok(token) => state.auth.verify(token).await,
        Err(refusal) => Err(refusal),
    };
    let tenant = match tenant {
        Ok(tenant) => tenant,
        Err(refusal) => return refusal.into_response(),
    };
    tracing::Span::current().record("tenant", tracing::field::display(&tenant));
    let (remaining, full_in) = match state.budgets.take(&tenant) {
        Standing::Allowed { remaining, full_in } => (remaining, full_in),
        Standing::Limited { retry_after } => {
            tracing::info!(%tenant, retry_after_ms = retry_after.as_millis() as u64, "tenant over its request budget");
            return state.budgets.refuse(retry_after);
        }
    };
    request.extensions_mut().insert(Tenant(tenant));
    let mut response = next.run(request).await;
    state.budgets.describe(response.headers_mut(), remaining, full_in);
    response
}

fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers.get(AUTHORIZATION).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

pub type SharedAuthenticator = Arc<Authenticator>;

/// What jsonwebtoken lets through and a token must not carry: a `crit` header (RFC 7515 4.1.11:
/// a recipient must refuse critical extensions it does not understand, and we understand none),
/// and a key given twice in the header or the claims (serde keeps the last, so a token could
/// mean one thing to us and another to a reader that keeps the first). `None` when either holds.
fn strict_segments(token: &str) -> Option<()> {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let (header, payload) = (parts.next()?, parts.next()?);
    let decode = |segment: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok();
    let header = decode(header)?;
    let keys = serde_json::from_slice::<UniqueKeys>(&header).ok()?;
    if keys.0.contains("crit") {
        return None;
    }
    serde_json::from_slice::<UniqueKeys>(&decode(payload)?).ok()?;
    Some(())
}

/// A JSON object's keys, refused if one repeats.
struct UniqueKeys(std::collections::HashSet<String>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
                let mut keys = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if !keys.insert(key) {
                        return Err(serde::de::Error::custom("a key is given twice"));
                    }
                }
                Ok(UniqueKeys(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}
