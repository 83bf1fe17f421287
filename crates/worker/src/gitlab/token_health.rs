//! The periodic token check: a token GitLab no longer accepts moves the connection to
//! `needs_reauth` with the reason; one that expires soon is rotated when the connection opted
//! in, else reported while it still works.

use chrono::Utc;
use connector_store::TenantId;
use connector_store::connections::{self, Status};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{GitLabJobs, retry};
use crate::runner::JobError;

impl GitLabJobs {
    pub(super) async fn token_health(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let Some((connection, token)) = self.load(tenant, id).await? else { return Ok(()) };
        if matches!(connection.status, Status::Deleting | Status::Invalid | Status::NeedsReauth) {
            return Ok(());
        }
        let client = match self.client(&connection, token.clone()) {
            Ok(client) => client,
            Err(error) => return self.gitlab_failure(tenant, id, error).await,
        };
        // A rotation found marked is finished first: its token says what GitLab did.
        if connection.token_rotation_started_at.is_some() {
            return self.rotate_token(tenant, &connection, &token).await;
        }
        let pat = match client.personal_access_token_self().await {
            Ok(pat) => pat,
            Err(error) if error.is_token_problem() && self.token_replaced(tenant, id, &token).await? => return Ok(()),
            Err(error) => return self.gitlab_failure(tenant, id, error).await,
        };
        let today = Utc::now().date_naive();
        if pat.revoked || !pat.active || pat.expires_at.is_some_and(|d| d < today) {
            let message = match pat.expires_at {
                Some(d) if d < today => connections::expired_advice(Some(d)),
                _ => "the access token is no longer active: create a new one".to_owned(),
            };
            return self.user_problem(tenant, id, Status::NeedsReauth, &message).await;
        }
        if connection.rotate_token && pat.expires_at.is_some_and(|d| (d - today).num_days() <= super::rotation::ROTATE_AHEAD_DAYS) {
            return self.rotate_token(tenant, &connection, &token).await;
        }
        if let Some(date) = pat.expires_at.filter(|d| (*d - today).num_days() <= connections::EXPIRY_WARNING_DAYS) {
            let message = connections::expiring_advice(date);
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            connections::set_status(&mut tx, id, connection.status, Some(&message)).await.map_err(retry)?;
            tx.commit().await.map_err(retry)?;
        }
        Ok(())
    }

    /// Whether the token this job loaded was replaced since (rotated by another worker, or set
    /// by the user), or is being rotated: then its refusal says nothing of the connection's.
    async fn token_replaced(&self, tenant: &TenantId, id: Uuid, loaded: &SecretString) -> Result<bool, JobError> {
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        let rotating = connections::get(&mut tx, id).await.map_err(retry)?.token_rotation_started_at.is_some();
        let now = connections::access_token(&mut tx, self.store.keys(), id).await.map_err(retry)?;
        Ok(rotating || now.expose_secret() != loaded.expose_secret())
    }
}
