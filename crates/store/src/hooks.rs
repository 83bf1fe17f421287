//! The webhooks we install in GitLab: one row per hook, whose id is the endpoint id in the URL
//! GitLab calls, and whose secrets are sealed with the tenant's data key.

use chrono::{DateTime, Utc};
use connector_crypto::{Binding, MasterKeyRing};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{Result, TenantTx, tenants};

/// Where a hook is installed: a group hook (Premium, Ultimate, self-managed EE) covers every
/// project of the group, a project hook one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = json!(HookScope::Group))]
pub enum HookScope {
    Group,
    Project,
}

crate::names!(HookScope { Group => "group", Project => "project" });

/// A hook as we last saw it in GitLab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = json!(HookStatus::Active))]
pub enum HookStatus {
    /// Not installed in GitLab yet.
    Pending,
    /// Installed and delivering.
    Active,
    /// GitLab paused it after failed deliveries (it resumes by itself, or we ask it to).
    Failing,
    /// GitLab disabled it for good after repeated failed deliveries.
    Disabled,
    /// Deleted on the GitLab side; the catch-up re-creates it.
    Missing,
}

crate::names!(HookStatus { Pending => "pending", Active => "active", Failing => "failing", Disabled => "disabled", Missing => "missing" });

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HookRecord {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub scope: HookScope,
    pub gitlab_target_id: i64,
    pub gitlab_hook_id: Option<i64>,
    pub status: HookStatus,
    pub status_message: Option<String>,
    pub last_delivery_at: Option<DateTime<Utc>>,
    pub signing_enabled: bool,
}

/// The hook's secrets, opened. Debug shows neither: SecretString redacts itself.
#[derive(Debug)]
pub struct HookSecrets {
    pub token: SecretString,
    pub signing_token: SecretString,
}

const COLUMNS: &str = "id, connection_id, scope, gitlab_target_id, gitlab_hook_id, status, status_message, \
                       last_delivery_at, signing_enabled";

fn binding<'a>(tenant: &'a str, id: &'a str, field: &'a str) -> Binding<'a> {
    Binding { tenant, object: id, field }
}

/// The hook row for this target, created with fresh secrets the first time, so a retried
/// install reuses the same endpoint and secrets instead of making new ones.
pub async fn ensure(
    tx: &mut TenantTx,
    keys: &MasterKeyRing,
    connection: Uuid,
    scope: HookScope,
    target: i64,
) -> Result<(HookRecord, HookSecrets)> {
    let data_key = tenants::data_key(tx, keys).await?;
    let tenant = tx.tenant().as_str().to_owned();
    let id = Uuid::now_v7();
    let id_text = id.to_string();
    let token = connector_crypto::random_token(32);
    let signing = connector_crypto::random_signing_secret();
    let sealed_token = data_key.seal_str(binding(&tenant, &id_text, "webhook_token"), &token);
    let sealed_signing = data_key.seal_str(binding(&tenant, &id_text, "webhook_signing_token"), &signing);
    let (tenant_id, conn) = tx.parts();
    sqlx::query(
        "INSERT INTO webhook_hooks (tenant_id, connection_id, id, scope, gitlab_target_id, secret_ciphertext, signing_ciphertext)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, connection_id, scope, gitlab_target_id) DO NOTHING",
    )
    .bind(tenant_id.as_str())
    .bind(connection)
    .bind(id)
    .bind(scope)
    .bind(target)
    .bind(&sealed_token)
    .bind(&sealed_signing)
    .execute(&mut *conn)
    .await?;
    // Ours, or the one an earlier attempt made: either way its own secrets.
    let existing: Uuid = sqlx::query_scalar(
        "SELECT id FROM webhook_hooks WHERE tenant_id = $1 AND connection_id = $2 AND scope = $3 AND gitlab_target_id = $4",
    )
    .bind(tenant_id.as_str())
    .bind(connection)
    .bind(scope)
    .bind(target)
    .fetch_one(conn)
    .await?;
    secrets(tx, keys, existing).await
}

#[derive(sqlx::FromRow)]
struct HookRow {
    #[sqlx(flatten)]
    record: HookRecord,
    secret_ciphertext: Vec<u8>,
    signing_ciphertext: Option<Vec<u8>>,
}

/// Records the GitLab hook id once GitLab has the hook, and whether GitLab will sign deliveries
/// (older versions ignore the signing token; then only `X-Gitlab-Token` proves origin).
pub async fn set_installed(tx: &mut TenantTx, id: Uuid, gitlab_hook_id: i64, signing_enabled: bool) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE webhook_hooks SET gitlab_hook_id = $3, signing_enabled = $4, status = 'active',
                status_since = CASE WHEN status = 'active' THEN status_since ELSE now() END,
                status_message = NULL, updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(gitlab_hook_id)
    .bind(signing_enabled)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_status(tx: &mut TenantTx, id: Uuid, status: HookStatus, message: Option<&str>) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE webhook_hooks SET status = $3, status_message = $4, updated_at = now(),
                status_since = CASE WHEN status = $3 THEN status_since ELSE now() END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(status)
    .bind(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a hook row (one GitLab never accepted), with its secrets.
pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query("DELETE FROM webhook_hooks WHERE tenant_id = $1 AND id = $2").bind(tenant.as_str()).bind(id).execute(conn).await?;
    Ok(())
}

/// A delivery to this hook failed verification. Kept until one passes (`deliveries::insert`),
/// so the connection's health shows since when GitLab's events are being refused; written at
/// most once a second per hook, however many arrive.
pub async fn record_refusal(tx: &mut TenantTx, id: Uuid, reason: &str) -> Result<()> {
    let (tenant, conn) = tx.parts();
    sqlx::query(
        "UPDATE webhook_hooks SET refused_since = coalesce(refused_since, now()), last_refused_at = now(), last_refusal = $3
         WHERE tenant_id = $1 AND id = $2 AND (last_refused_at IS NULL OR last_refused_at < now() - interval '1 second')",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant and connection an endpoint id belongs to, looked up across tenants (by the system
/// role's function, which answers for the one endpoint asked).
pub async fn route(store: &crate::Store, endpoint: Uuid) -> Result<Option<(crate::TenantId, Uuid)>> {
    let row: Option<(String, Uuid)> = sqlx::query_as("SELECT tenant_id, connection_id FROM system_route_endpoint($1)")
        .bind(endpoint)
        .fetch_optional(store.pool())
        .await?;
    row.map(|(tenant, connection)| Ok((crate::TenantId::parse(&tenant)?, connection))).transpose()
}

/// The hook's opened secrets and whether GitLab signs its deliveries.
pub async fn secrets(tx: &mut TenantTx, keys: &MasterKeyRing, id: Uuid) -> Result<(HookRecord, HookSecrets)> {
    let data_key = tenants::data_key(tx, keys).await?;
    let (tenant, conn) = tx.parts();
    let row: HookRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, secret_ciphertext, signing_ciphertext FROM webhook_hooks WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(crate::Error::NotFound)?;
    let tenant = tenant.as_str().to_owned();
    let id_text = id.to_string();
    let secrets = HookSecrets {
        token: data_key.open_string(binding(&tenant, &id_text, "webhook_token"), &row.secret_ciphertext)?,
        signing_token: data_key
            .open_string(binding(&tenant, &id_text, "webhook_signing_token"), &row.signing_ciphertext.unwrap_or_default())?,
    };
    Ok((row.record, secrets))
}

pub async fn for_connection(tx: &mut TenantTx, connection: Uuid) -> Result<Vec<HookRecord>> {
    let (tenant, conn) = tx.parts();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_hooks WHERE tenant_id = $1 AND connection_id = $2 ORDER BY id"
    )))
    .bind(tenant.as_str())
    .bind(connection)
    .fetch_all(conn)
    .await?)
}
