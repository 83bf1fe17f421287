//! The token, the user behind it, and what the instance is.

use serde::{Deserialize, Serialize};

use secrecy::SecretString;

use super::Timestamp;
use crate::client::GitLabClient;
use crate::error::{Error, Result};

/// What `POST /personal_access_tokens/self/rotate` answers: the new token, shown this once.
/// Debug prints no token.
#[derive(Debug, Clone)]
pub struct RotatedToken {
    pub id: u64,
    pub token: SecretString,
    pub expires_at: Option<chrono::NaiveDate>,
}

/// `GET /personal_access_tokens/self`: the token introspecting itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalAccessToken {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub revoked: bool,
    pub active: bool,
    pub scopes: Vec<String>,
    pub user_id: u64,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// A date (`2026-12-31`), or none for tokens that never expire.
    #[serde(default)]
    pub expires_at: Option<chrono::NaiveDate>,
}

/// `GET /user`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    #[serde(default)]
    pub bot: Option<bool>,
    #[serde(default)]
    pub public_email: Option<String>,
    /// Present only for the token's own user on some versions.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub is_admin: Option<bool>,
}

/// The short user form embedded in other resources (authors, assignees, reviewers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserBasic {
    pub id: u64,
    pub username: String,
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
}

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    pub revision: String,
}

/// `GET /metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub version: String,
    pub revision: String,
    #[serde(default)]
    pub kas: Option<Kas>,
    /// True on Enterprise Edition (licensed or not).
    #[serde(default)]
    pub enterprise: bool,
}

/// The Kubernetes agent server section of [`Metadata`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kas {
    pub enabled: bool,
    #[serde(rename = "externalUrl", default)]
    pub external_url: Option<String>,
    #[serde(rename = "externalK8sProxyUrl", default)]
    pub external_k8s_proxy_url: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

impl GitLabClient {
    /// `GET /personal_access_tokens/self` (GitLab 15.5+, personal access tokens only).
    pub async fn personal_access_token_self(&self) -> Result<PersonalAccessToken> {
        self.get("/personal_access_tokens/self").await
    }

    /// `POST /personal_access_tokens/self/rotate` (GitLab 16.10+, scope `api` or `self_rotate`):
    /// GitLab revokes this client's token and answers a new one expiring on `expires_at`.
    /// Rotating a token already rotated revokes its whole family, the new token included, so
    /// a caller must never send this twice for one token: like every POST it is not retried
    /// once it may have reached GitLab, and an answer that cannot be read loses the new token.
    /// The answer is read field by field, so no error can carry the token.
    pub async fn rotate_self(&self, expires_at: chrono::NaiveDate) -> Result<RotatedToken> {
        const PATH: &str = "/personal_access_tokens/self/rotate";
        let answer: serde_json::Value = self.post(PATH, &serde_json::json!({ "expires_at": expires_at.to_string() })).await?;
        let unreadable = |what: &str| Error::Decode { path: PATH.into(), message: format!("the rotation's answer has no {what}") };
        Ok(RotatedToken {
            id: answer.get("id").and_then(serde_json::Value::as_u64).ok_or_else(|| unreadable("id"))?,
            token: answer.get("token").and_then(serde_json::Value::as_str).map(SecretString::from).ok_or_else(|| unreadable("token"))?,
            expires_at: answer.get("expires_at").and_then(serde_json::Value::as_str).and_then(|d| d.parse().ok()),
        })
    }

    /// `GET /user`: the token's user.
    pub async fn current_user(&self) -> Result<User> {
        self.get("/user").await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version> {
        self.get("/version").await
    }

    /// `GET /metadata`.
    pub async fn metadata(&self) -> Result<Metadata> {
        self.get("/metadata").await
    }
}
