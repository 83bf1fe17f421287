//! GitLab connections: what a tenant asked us to sync, and the sealed token that does it.

use chrono::{DateTime, Utc};
use connector_crypto::Binding;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hooks::HookScope;
use crate::jobs::Job;
use crate::{Error, Result, TenantTx, tenants};
use connector_crypto::MasterKeyRing;

/// Where a connection stands. The worker moves it along; the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(example = json!(Status::Live))]
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
    /// The user paused it: no job reads GitLab for it until it is resumed.
    Paused,
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
            Status::Paused => "paused",
        }
    }

    /// The states a job moves along (each has one queued or running), as opposed to the final
    /// ones, where the connection stays until something happens: `live` (kept current by
    /// webhooks and periodic catch-ups) and the three that need the user, each with its message.
    pub const MOVING: [Status; 5] = [Status::Pending, Status::Validating, Status::InstallingHooks, Status::Backfilling, Status::Deleting];

    /// The job that moves a connection on from this state, if it is a moving one.
    pub fn next_job(self, connection: Uuid) -> Option<Job> {
        match self {
            Status::Pending | Status::Validating => Some(Job::Validate { connection }),
            Status::InstallingHooks => Some(Job::InstallHooks { connection }),
            Status::Backfilling => Some(Job::Backfill { connection }),
            Status::Deleting => Some(Job::Disconnect { connection }),
            Status::Live | Status::NeedsReauth | Status::Invalid | Status::Failed | Status::Paused => None,
        }
    }
}

impl TryFrom<String> for Status {
    type Error = serde_json::Error;

    fn try_from(raw: String) -> std::result::Result<Self, Self::Error> {
        serde_json::from_value(serde_json::Value::String(raw))
    }
}

/// Where a connection's webhooks are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = json!(HookMode::Group))]
pub enum HookMode {
    /// A hook per group.
    Group,
    /// A hook per project (the groups' plan has no group hooks, or the token may not add them).
    Project,
    /// Group hooks where allowed, project hooks elsewhere.
    Mixed,
}

crate::names!(HookMode { Group => "group", Project => "project", Mixed => "mixed" });

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Connection {
    pub id: Uuid,
    pub gitlab_url: String,
    pub groups_list: Vec<i64>,
    pub projects_list: Vec<String>,
    pub start_date: DateTime<Utc>,
    pub token_hint: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub status_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What validation learned.
    pub gitlab_username: Option<String>,
    pub gitlab_user_id: Option<i64>,
    pub token_expires_at: Option<chrono::NaiveDate>,
    /// Where our webhooks are installed, once validated.
    pub hook_mode: Option<HookMode>,
    pub resolved_project_ids: Option<Vec<i64>>,
    pub last_synced_at: Option<DateTime<Utc>>,
    /// When the next catch-up is due, once live.
    pub next_catch_up_at: Option<DateTime<Utc>>,
    /// Since when the backfill's or catch-up's attempts have failed, and the last reason.
    pub sync_failing_since: Option<DateTime<Utc>>,
    pub sync_failure: Option<String>,
    /// Raised by each change of what the user set (see the connection_revision migration).
    pub revision: i64,
    /// The user opted in to the connector rotating the token before it expires.
    pub rotate_token: bool,
    /// A rotation asked of GitLab and not yet stored (see [`begin_rotation`]).
    pub token_rotation_started_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, gitlab_url, groups_list, projects_list, start_date, token_hint, status, \
                       status_message, created_at, updated_at, gitlab_username, gitlab_user_id, token_expires_at, \
                       hook_mode, resolved_project_ids, last_synced_at, next_catch_up_at, \
                       sync_failing_since, sync_failure, revision, rotate_token, token_rotation_started_at";

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
        self.groups_list.is_none() && self.projects_list.is_none() && self.start_date.is_none() && self.access_token.is_none()
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

/// Refuses a new connection when the tenant already has `limit` (counting those being deleted,
/// whose jobs still run). Holds a per-tenant lock until the transaction ends, so concurrent
/// creations are counted one after another and none slips past the limit.
pub async fn ensure_room(tx: &mut TenantTx, limit: usize) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('gitlab_connections:' || $1, 0))")
        .bind(tenant.as_str())
        .execute(&mut *conn)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM gitlab_connections WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_one(&mut *conn)
        .await?;
    if count >= limit as i64 {
        return Err(crate::Error::LimitReached(format!(
            "this tenant has {count} connections, the most it may have; delete one first or ask the operator to raise TENANT_MAX_CONNECTIONS ({limit})"
        )));
    }
    Ok(())
}

pub async fn insert(tx: &mut TenantTx, keys: &MasterKeyRing, new: NewConnection) -> Result<Connection> {
    let data_key = tenants::data_key(tx, keys).await?;
    let id = Uuid::now_v7();
    let tenant = tx.tenant().clone();
    let sealed = data_key.seal_str(token_binding(tenant.as_str(), &id.to_string()), new.access_token.expose_secret());
    let connection: Connection = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
    Ok(connection)
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Connection> {
    let (tenant, conn) = tx.parts();
    let row: Option<Connection> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM gitlab_connections WHERE tenant_id = $1 AND id = $2")))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.ok_or(Error::NotFound)
}

/// The connection, its row locked until the transaction ends: for checking a precondition
/// (its revision, its status) that the change made next in the transaction relies on.
pub async fn lock(tx: &mut TenantTx, id: Uuid) -> Result<Connection> {
    let (tenant, conn) = tx.parts();
    let row: Option<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM gitlab_connections WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.ok_or(Error::NotFound)
}

/// One page in creation order (ids are UUIDv7, so id order is creation order), after `after`.
pub async fn list(tx: &mut TenantTx, after: Option<Uuid>, limit: i64) -> Result<Vec<Connection>> {
    let (tenant, conn) = tx.parts();
    let rows: Vec<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM gitlab_connections
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(tenant.as_str())
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// The token sealed under the tenant's data key, bound to its connection, and its hint.
async fn seal(tx: &mut TenantTx, keys: &MasterKeyRing, id: Uuid, token: &SecretString) -> Result<(Vec<u8>, String)> {
    let tenant = tx.tenant().clone();
    let data_key = tenants::data_key(tx, keys).await?;
    Ok((data_key.seal_str(token_binding(tenant.as_str(), &id.to_string()), token.expose_secret()), token_hint(token)))
}

/// Opts the connection in to (or out of) its token being rotated by the connector before it
/// expires. Changes nothing that is synced: no revalidation.
pub async fn set_token_rotation(tx: &mut TenantTx, id: Uuid, on: bool) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET rotate_token = $3, revision = revision + 1, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND rotate_token <> $3",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(on)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where a token rotation stands when a job comes to rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStart {
    /// None was under way: this job's is now marked, and it may ask GitLab.
    Begun,
    /// One was marked less than the lease ago: another worker may be asking GitLab now.
    InFlight,
    /// One was marked (at `since`) longer ago and never finished: GitLab may or may not have
    /// rotated.
    Interrupted { since: DateTime<Utc> },
}

/// Marks a rotation of the connection's token as asked, unless one is: the row is locked
/// while it is looked at, so of two workers only one can begin.
pub async fn begin_rotation(tx: &mut TenantTx, id: Uuid, lease: chrono::Duration) -> Result<RotationStart> {
    let (tenant, conn) = tx.parts();
    let marked: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT token_rotation_started_at FROM gitlab_connections WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    match marked.ok_or(Error::NotFound)? {
        Some(at) if Utc::now() - at < lease => Ok(RotationStart::InFlight),
        Some(since) => Ok(RotationStart::Interrupted { since }),
        None => {
            sqlx::query("UPDATE gitlab_connections SET token_rotation_started_at = now() WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .execute(conn)
                .await?;
            Ok(RotationStart::Begun)
        }
    }
}

/// Takes over an interrupted rotation, found still marked at `since`, to ask GitLab again:
/// false when another worker took it over first (and may be asking now).
pub async fn restart_rotation(tx: &mut TenantTx, id: Uuid, since: DateTime<Utc>) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    let taken = sqlx::query(
        "UPDATE gitlab_connections SET token_rotation_started_at = now()
         WHERE tenant_id = $1 AND id = $2 AND token_rotation_started_at = $3",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(since)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

/// Ends a rotation that did not produce a token (GitLab refused it, or it never happened).
pub async fn end_rotation(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query("UPDATE gitlab_connections SET token_rotation_started_at = NULL WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores the token a rotation produced in place of the old one, and ends the rotation. A live
/// connection's message (the expiry notice) goes with the old token.
pub async fn store_rotated_token(
    tx: &mut TenantTx,
    keys: &MasterKeyRing,
    id: Uuid,
    token: &SecretString,
    expires_at: Option<chrono::NaiveDate>,
) -> Result<()> {
    let (ciphertext, hint) = seal(tx, keys, id, token).await?;
    let (tenant, conn) = tx.parts();
    let updated = sqlx::query(
        "UPDATE gitlab_connections SET token_ciphertext = $3, token_hint = $4, token_expires_at = $5,
                token_rotation_started_at = NULL,
                status_message = CASE status WHEN 'live' THEN NULL ELSE status_message END, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(ciphertext)
    .bind(hint)
    .bind(expires_at)
    .execute(conn)
    .await?
    .rows_affected();
    if updated == 0 { Err(Error::NotFound) } else { Ok(()) }
}

/// Applies `changes`. Any change to what is synced or with which token sends the connection
/// back to `pending`, to be validated again.
pub async fn update(tx: &mut TenantTx, keys: &MasterKeyRing, id: Uuid, changes: ConnectionChanges) -> Result<Connection> {
    let tenant = tx.tenant().clone();
    let sealed = match &changes.access_token {
        Some(token) => Some(seal(tx, keys, id, token).await?),
        None => None,
    };
    let (ciphertext, hint) = sealed.unzip();
    if let Some(start) = changes.start_date {
        // A new start date means a new backfill: the streams start again from it (pages already
        // stored upsert as no-ops). Rows older than a later start date stay until deleted.
        let (tenant, conn) = tx.parts();
        sqlx::query(
            "DELETE FROM sync_checkpoints WHERE tenant_id = $1 AND connection_id = $2
               AND EXISTS (SELECT 1 FROM gitlab_connections WHERE tenant_id = $1 AND id = $2 AND start_date <> $3)",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(start)
        .execute(conn)
        .await?;
    }
    let row: Option<Connection> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE gitlab_connections SET
             groups_list = COALESCE($3, groups_list),
             projects_list = COALESCE($4, projects_list),
             start_date = COALESCE($5, start_date),
             token_ciphertext = COALESCE($6, token_ciphertext),
             token_hint = COALESCE($7, token_hint),
             -- A paused connection stays paused: resuming validates what was changed.
             status = CASE status WHEN 'paused' THEN 'paused' ELSE 'pending' END,
             status_message = CASE status WHEN 'paused' THEN status_message END,
             revision = revision + 1,
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
    row.ok_or(Error::NotFound)
}

/// Deletes the connection with everything stored of it: its synced data and hooks (by cascade),
/// its earlier change-feed rows, the kept answers about it, its queued jobs and its rate budget. What remains is one
/// `connection` `delete` row in the feed (for Coworker, to drop what it read) and the row of the
/// job running this, which apalis marks done.
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let (tenant, conn) = tx.parts();
    // While the connection still names the tenant, which the function checks.
    sqlx::query("SELECT system_forget_connection_budget($1)").bind(id).execute(&mut *conn).await?;
    // One feed row for the whole connection, not one per deleted row.
    sqlx::query("SELECT set_config('app.suppress_changes', 'on', true)").execute(&mut *conn).await?;
    let deleted = sqlx::query("DELETE FROM gitlab_connections WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query("SELECT set_config('app.suppress_changes', 'off', true)").execute(&mut *conn).await?;
    if deleted == 0 {
        return Err(Error::NotFound);
    }
    sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND connection_id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM changes WHERE tenant_id = $1 AND connection_id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO changes (tenant_id, connection_id, entity, op, key)
         VALUES ($1, $2, 'connection', 'delete', jsonb_build_object('connection_id', $2::text))",
    )
    .bind(tenant.as_str())
    .bind(id)
    .execute(&mut *conn)
    .await?;
    crate::jobs::delete_waiting(tx, Some(id)).await?;
    Ok(())
}

/// The connection's GitLab token, decrypted into a type that never prints.
pub async fn access_token(tx: &mut TenantTx, keys: &MasterKeyRing, id: Uuid) -> Result<SecretString> {
    let (tenant, conn) = tx.parts();
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT token_ciphertext FROM gitlab_connections WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(conn)
        .await?;
    let sealed = sealed.ok_or(Error::NotFound)?;
    let data_key = tenants::data_key(tx, keys).await?;
    let tenant = tx.tenant().clone();
    Ok(data_key.open_string(token_binding(tenant.as_str(), &id.to_string()), &sealed)?)
}

/// Moves the connection to `status`, with a message for the user (or none).
/// Moves the connection to `status`. A paused one moves only to `deleting` (and by [`resume`]):
/// a job that was running when it was paused cannot undo the pause; for it, the connection is
/// not there ([`Error::NotFound`]).
pub async fn set_status(tx: &mut TenantTx, id: Uuid, status: Status, message: Option<&str>) -> Result<()> {
    let (tenant, conn) = tx.parts();
    let updated = sqlx::query(
        "UPDATE gitlab_connections SET status = $3, status_message = $4, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND (status <> 'paused' OR $3 = 'deleting')",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(status.as_str())
    .bind(message)
    .execute(conn)
    .await?
    .rows_affected();
    if updated == 0 { Err(Error::NotFound) } else { Ok(()) }
}

/// Pauses the connection (not one being deleted): from now on its jobs read nothing from GitLab
/// and end; one running finishes its slice. Pausing a paused one changes nothing. Returns
/// whether it is paused.
pub async fn pause(tx: &mut TenantTx, id: Uuid) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    let paused = sqlx::query(
        "UPDATE gitlab_connections SET status = 'paused',
                status_message = CASE status WHEN 'paused' THEN status_message
                    ELSE 'paused since ' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ': resume it to sync again' END,
                updated_at = CASE status WHEN 'paused' THEN updated_at ELSE now() END
         WHERE tenant_id = $1 AND id = $2 AND status <> 'deleting'",
    )
    .bind(tenant.as_str())
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(paused == 1)
}

/// Sends a paused connection back to `pending`, to be validated again and go on from where it
/// stood. Returns whether it was paused.
pub async fn resume(tx: &mut TenantTx, id: Uuid) -> Result<bool> {
    let (tenant, conn) = tx.parts();
    let resumed = sqlx::query(
        "UPDATE gitlab_connections SET status = 'pending', status_message = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND status = 'paused'",
    )
    .bind(tenant.as_str())
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(resumed == 1)
}

/// A group or project that gets one of our hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTarget {
    pub scope: HookScope,
    pub id: i64,
}

/// The hook targets validation chose for the connection.
pub async fn hook_targets(tx: &mut TenantTx, id: Uuid) -> Result<Vec<HookTarget>> {
    let (tenant, conn) = tx.parts();
    let targets: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT hook_targets FROM gitlab_connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or(Error::NotFound)?;
    Ok(targets.map(serde_json::from_value).transpose().map_err(|e| Error::Database(sqlx::Error::Decode(e.into())))?.unwrap_or_default())
}

/// What a successful validation learned about the token and the groups.
#[derive(Debug, Clone)]
pub struct Validated {
    pub gitlab_user_id: i64,
    pub gitlab_username: String,
    pub token_expires_at: Option<chrono::NaiveDate>,
    pub hook_mode: HookMode,
    pub hook_targets: Vec<HookTarget>,
    pub resolved_project_ids: Vec<i64>,
    /// A warning worth showing even though validation passed (e.g. the token expires soon).
    pub notice: Option<String>,
}

pub async fn record_validation(tx: &mut TenantTx, id: Uuid, v: &Validated) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET gitlab_user_id = $3, gitlab_username = $4, token_expires_at = $5,
                hook_mode = $6, resolved_project_ids = $7, status = 'installing_hooks', status_message = $8,
                hook_targets = $9,
                updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND status <> 'paused'",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(v.gitlab_user_id)
    .bind(&v.gitlab_username)
    .bind(v.token_expires_at)
    .bind(v.hook_mode)
    .bind(&v.resolved_project_ids)
    .bind(v.notice.as_deref())
    .bind(serde_json::to_value(&v.hook_targets).expect("hook targets serialize"))
    .execute(conn)
    .await?;
    Ok(())
}

/// The backfill is complete: the connection is live and due for its first catch-up after
/// `catch_up_in`.
pub async fn mark_live(tx: &mut TenantTx, id: Uuid, catch_up_in: chrono::Duration) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET status = 'live', last_synced_at = now(), next_catch_up_at = now() + $3,
                sync_failing_since = NULL, sync_failure = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2 AND status <> 'paused'",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(catch_up_in)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where hooks on these targets are.
pub fn hook_mode(targets: &[HookTarget]) -> HookMode {
    let groups = targets.iter().filter(|t| t.scope == HookScope::Group).count();
    match (groups, targets.len() - groups) {
        (_, 0) => HookMode::Group,
        (0, _) => HookMode::Project,
        _ => HookMode::Mixed,
    }
}

/// GitLab refused a group hook on `group` to its Owner (a self-managed instance without a license
/// for group webhooks does, while its plan reads `default`): the group's `projects` get project
/// hooks instead, the hook mode follows, and the connection's message says so.
pub async fn fall_back_to_project_hooks(tx: &mut TenantTx, id: Uuid, group: i64, projects: &[i64], notice: &str) -> Result<()> {
    let mut targets = hook_targets(tx, id).await?;
    targets.retain(|t| !(t.scope == HookScope::Group && t.id == group));
    for &project in projects {
        if !targets.iter().any(|t| t.scope == HookScope::Project && t.id == project) {
            targets.push(HookTarget { scope: HookScope::Project, id: project });
        }
    }
    let mode = hook_mode(&targets);
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET hook_targets = $3, hook_mode = $4, status_message = $5, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(serde_json::to_value(&targets).expect("hook targets serialize"))
    .bind(mode)
    .bind(notice)
    .execute(conn)
    .await?;
    Ok(())
}

/// Saves the connection's current project list, adding a project hook target for each of
/// `hook_projects` (new projects where hooks are per project).
pub async fn add_projects(tx: &mut TenantTx, id: Uuid, all: &[i64], hook_projects: &[i64]) -> Result<()> {
    let targets: Vec<HookTarget> = hook_projects.iter().map(|&p| HookTarget { scope: HookScope::Project, id: p }).collect();
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET resolved_project_ids = $3,
                hook_targets = coalesce(hook_targets, '[]'::jsonb) || $4, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(all)
    .bind(serde_json::to_value(&targets).expect("hook targets serialize"))
    .execute(conn)
    .await?;
    Ok(())
}

/// Across tenants, by the system role's function: how many connections are live, and how far
/// past due the most overdue catch-up is (zero if none is).
pub async fn liveness(store: &crate::Store) -> Result<(i64, std::time::Duration)> {
    let (live, overdue): (i64, f64) = sqlx::query_as("SELECT live, overdue_seconds FROM system_liveness()").fetch_one(store.pool()).await?;
    Ok((live, std::time::Duration::from_secs_f64(overdue.max(0.0))))
}

/// Across tenants, by the system role's function: each live connection's sync lag, the time
/// since its last backfill or catch-up finished, without saying whose.
pub async fn sync_lags(store: &crate::Store) -> Result<Vec<std::time::Duration>> {
    let rows: Vec<f64> = sqlx::query_scalar("SELECT system_sync_lags()").fetch_all(store.pool()).await?;
    Ok(rows.into_iter().map(std::time::Duration::from_secs_f64).collect())
}

/// The warning window before a token's expiry.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

const RENEW_TOKEN: &str = "create a new personal access token with scope api and give it to this connection \
                           (PATCH its access_token)";

/// What to do about an expired token. GitLab 16.0 and later give every personal access token an
/// expiry date (at most a year on gitlab.com; self-managed administrators set the limit), so
/// the advice is a new token given to the connection, never one without an expiry date.
pub fn expired_advice(on: Option<chrono::NaiveDate>) -> String {
    let when = on.map_or_else(|| "has expired".to_owned(), |d| format!("expired on {d}"));
    format!("the access token {when}: {RENEW_TOKEN}")
}

/// The warning shown ahead of a token's expiry.
pub fn expiring_advice(on: chrono::NaiveDate) -> String {
    format!("the access token expires on {on}: before then, {RENEW_TOKEN}")
}

/// What the user can do about a step that stopped trying.
pub fn resync_advice(id: Uuid) -> String {
    format!("once that is fixed, resync the connection (POST /v1/connections/{id}/resync) to try again")
}

/// A job ran out of attempts. If it was the job moving the connection along (validation, hook
/// installation, backfill, disconnection), nothing else will: the connection stops as `failed`
/// with what went wrong and what to do, rather than showing a step in progress that no job is
/// doing. A catch-up or token check that gives up leaves a live connection live, with its health
/// saying so (`record_sync_failure`).
pub async fn give_up(tx: &mut TenantTx, job: &Job, attempts: u32, reason: &str) -> Result<()> {
    let id = job.connection();
    let connection = match get(tx, id).await {
        Ok(c) => c,
        Err(Error::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if connection.status.next_job(id).as_ref().is_none_or(|next| next.kind() != job.kind()) {
        return Ok(());
    }
    let step = match job {
        Job::Validate { .. } => format!("validating the connection to {}", connection.gitlab_url),
        Job::InstallHooks { .. } => "installing the webhooks".to_owned(),
        Job::Backfill { .. } => "the backfill".to_owned(),
        Job::Disconnect { .. } => "removing our webhooks from GitLab".to_owned(),
        Job::CatchUp { .. } | Job::TokenHealth { .. } | Job::Refresh { .. } => return Ok(()),
    };
    let what_now = match job {
        Job::Disconnect { .. } => "once that is fixed, delete the connection again".to_owned(),
        _ => resync_advice(id),
    };
    let message = format!("{step} stopped after {attempts} attempts: {reason}; {what_now}");
    set_status(tx, id, Status::Failed, Some(&message)).await
}

/// A backfill or catch-up attempt failed: the connection's health shows it from the first
/// failure on, with the latest reason, until one succeeds.
pub async fn record_sync_failure(tx: &mut TenantTx, id: Uuid, reason: &str) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET sync_failing_since = coalesce(sync_failing_since, now()), sync_failure = $3
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// A backfill slice or catch-up succeeded.
pub async fn clear_sync_failure(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE gitlab_connections SET sync_failing_since = NULL, sync_failure = NULL
         WHERE tenant_id = $1 AND id = $2 AND sync_failing_since IS NOT NULL",
    )
    .bind(tenant.as_str())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Across tenants, as the system role: connections in a moving state, unchanged for `quiet`,
/// that no job in the queue (waiting, taken or running) is for. Such a connection would wait for
/// good; the scheduler queues its step again.
pub async fn stalled(store: &crate::Store, quiet: std::time::Duration) -> Result<Vec<(crate::TenantId, Uuid, Status)>> {
    let moving: Vec<&str> = Status::MOVING.iter().map(|s| s.as_str()).collect();
    let candidates: Vec<(String, Uuid, String)> = sqlx::query_as("SELECT tenant_id, id, status FROM system_quiet_connections($1, $2)")
        .bind(&moving)
        .bind(quiet.as_secs_f64())
        .fetch_all(store.pool())
        .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = candidates.iter().map(|(_, id, _)| *id).collect();
    let busy: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT (convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'connection')::uuid FROM apalis.jobs
         WHERE status IN ('Pending', 'Queued', 'Running')
           AND (convert_from(job, 'UTF8')::jsonb -> 'job' ->> 'connection')::uuid = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(store.pool())
    .await?;
    candidates
        .into_iter()
        .filter(|(_, id, _)| !busy.contains(id))
        .map(|(tenant, id, status)| {
            let status = Status::try_from(status).map_err(|e| Error::Database(sqlx::Error::Decode(e.into())))?;
            Ok((crate::TenantId::parse(&tenant)?, id, status))
        })
        .collect()
}
