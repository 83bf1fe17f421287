//! GitLab connections: what a tenant asked us to sync, and the sealed token that does it.

use chrono::{DateTime, Utc};
use connector_crypto::Binding;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, Result, TenantTx, tenants};
use connector_crypto::MasterKeyRing;

/// Where a connection stands. The worker moves it along; the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Validating,
    InstallingHooks,
    Backfilling,
    Live,
    NeedsReauth,
    Invalid,
    Failed,
    Deleting,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Validating => "validating",
            Status::InstallingHooks => "installing_hooks",
            Status::Backfilling => "backfilling",
            Status::Live => "live",
            Status::NeedsReauth => "needs_reauth",
            Status::Invalid => "invalid",
            Status::Failed => "failed",
            Status::Deleting => "deleting",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned()))
            .map_err(|e| Error::Database(sqlx::Error::Decode(e.into())))
    }
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub id: Uuid,
    pub gitlab_url: String,
    pub groups_list: Vec<i64>,
    pub projects_list: Vec<String>,
    pub start_date: DateTime<Utc>,
    pub token_hint: String,
    pub status: Status,
    pub status_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type Row = (Uuid, String, Vec<i64>, Vec<String>, DateTime<Utc>, String, String, Option<String>, DateTime<Utc>, DateTime<Utc>);

const COLUMNS: &str = "id, gitlab_url, groups_list, projects_list, start_date, token_hint, status, \
                       status_message, created_at, updated_at";

fn from_row(row: Row) -> Result<Connection> {
    let (id, gitlab_url, groups_list, projects_list, start_date, token_hint, status, status_message, created_at, updated_at) = row;
    Ok(Connection {
        id,
        gitlab_url,
        groups_list,
        projects_list,
        start_date,
        token_hint,
        status: Status::parse(&status)?,
        status_message,
        created_at,
        updated_at,
    })
}

#[derive(Debug)]
pub struct NewConnection {
    pub gitlab_url: String,
    pub groups_list: Vec<i64>,
    pub projects_list: Vec<String>,
    pub start_date: DateTime<Utc>,
    pub access_token: SecretString,
}

/// Changes asked for by a PATCH; `None` leaves a field as it is.
/// Debug prints no token: SecretString redacts itself.
#[derive(Debug, Default)]
pub struct ConnectionChanges {
    pub groups_list: Option<Vec<i64>>,
    pub projects_list: Option<Vec<String>>,
    pub start_date: Option<DateTime<Utc>>,
    pub access_token: Option<SecretString>,
}

impl ConnectionChanges {
    pub fn is_empty(&self) -> bool {
        self.groups_list.is_none()
            && self.projects_list.is_none()
            && self.start_date.is_none()
            && self.access_token.is_none()
    }
}

const TOKEN_FIELD: &str = "access_token";

fn token_binding<'a>(tenant: &'a str, id: &'a str) -> Binding<'a> {
    Binding { tenant, object: id, field: TOKEN_FIELD }
}

/// The last four characters, enough for a person to tell tokens apart; none for a token so short
/// that four characters would be a good part of it.
pub fn token_hint(token: &SecretString) -> String {
    let token = token.expose_secret();
    let chars: Vec<char> = token.chars().collect();
    if chars.len() < 16 {
        return String::new();
    }
    chars[chars.len() - 4..].iter().collect()
}

pub async fn insert(tx: &mut TenantTx, keys: &MasterKeyRing, new: NewConnection) -> Result<Connection> {
    let data_key = tenants::data_key(tx, keys).await?;
    let id = Uuid::now_v7();
    let tenant = tx.tenant().clone();
    let sealed = data_key.seal_str(
        token_binding(tenant.as_str(), &id.to_string()),
        new.access_token.expose_secret(),
    );
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO gitlab_connections
             (tenant_id, id, gitlab_url, groups_list, projects_list, start_date, token_ciphertext, token_hint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING {COLUMNS}"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .bind(&new.gitlab_url)
    .bind(&new.groups_list)
    .bind(&new.projects_list)
    .bind(new.start_date)
    .bind(&sealed)
    .bind(token_hint(&new.access_token))
    .fetch_one(&mut **tx)
    .await?;
    from_row(row)
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Connection> {
    let (tenant, conn) = tx.parts();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM gitlab_connections WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(from_row).ok_or(Error::NotFound)?
}

/// One page in creation order (ids are UUIDv7, so id order is creation order), after `after`.
pub async fn list(tx: &mut TenantTx, after: Option<Uuid>, limit: i64) -> Result<Vec<Connection>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM gitlab_connections
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(tenant.as_str())
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(from_row).collect()
}

/// Applies `changes`. Any change to what is synced or with which token sends the connection
/// back to `pending`, to be validated again.
pub async fn update(
    tx: &mut TenantTx,
    keys: &MasterKeyRing,
    id: Uuid,
    changes: ConnectionChanges,
) -> Result<Connection> {
    let tenant = tx.tenant().clone();
    let sealed = match &changes.access_token {
        Some(token) => {
            let data_key = tenants::data_key(tx, keys).await?;
            let id = id.to_string();
            Some((data_key.seal_str(token_binding(tenant.as_str(), &id), token.expose_secret()), token_hint(token)))
        }
        None => None,
    };
    let (ciphertext, hint) = sealed.unzip();
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE gitlab_connections SET
             groups_list = COALESCE($3, groups_list),
             projects_list = COALESCE($4, projects_list),
             start_date = COALESCE($5, start_date),
             token_ciphertext = COALESCE($6, token_ciphertext),
             token_hint = COALESCE($7, token_hint),
             status = 'pending',
             status_message = NULL,
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .bind(changes.groups_list)
    .bind(changes.projects_list)
    .bind(changes.start_date)
    .bind(ciphertext)
    .bind(hint)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(from_row).ok_or(Error::NotFound)?
}

/// Deletes the connection with its sealed token and, by cascade, all data synced through it.
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let (tenant, conn) = tx.parts();
    let deleted = sqlx::query("DELETE FROM gitlab_connections WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    if deleted == 0 { Err(Error::NotFound) } else { Ok(()) }
}

/// The connection's GitLab token, decrypted into a type that never prints.
pub async fn access_token(tx: &mut TenantTx, keys: &MasterKeyRing, id: Uuid) -> Result<SecretString> {
    let (tenant, conn) = tx.parts();
    let sealed: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT token_ciphertext FROM gitlab_connections WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let sealed = sealed.ok_or(Error::NotFound)?;
    let data_key = tenants::data_key(tx, keys).await?;
    let tenant = tx.tenant().clone();
    Ok(data_key.open_string(token_binding(tenant.as_str(), &id.to_string()), &sealed)?)
}
