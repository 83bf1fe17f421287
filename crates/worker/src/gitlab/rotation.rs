//! The connector rotating a connection's token itself before it expires (opt-in per
//! connection), through GitLab's `POST /personal_access_tokens/self/rotate`.
//!
//! GitLab revokes the old token when it rotates, and answers the new one once. Rotating a token
//! that was already rotated revokes its whole family, the new token included. So a token is
//! never sent for rotation twice:
//! 1. the rotation is marked on the connection's row (locked while looked at) before GitLab is
//!    asked: of two workers only one begins, and one that finds the mark younger than
//!    `token_rotation_lease` waits;
//! 2. the new token is stored in place of the old one, and the mark cleared, in one
//!    transaction as soon as GitLab answers;
//! 3. a mark found older than the lease is a rotation whose end no one saw (a worker killed
//!    after asking, an answer lost): the stored token tells what GitLab did. Still active, GitLab
//!    never rotated it, and it is rotated now; revoked, GitLab made a new token that is lost, and
//!    the connection needs a new token from the user, told why. The old token is never sent to
//!    the rotation again.

use chrono::{Duration, Utc};
use connector_store::TenantId;
use connector_store::connections::{self, Connection, RotationStart, Status};
use gitlab_client::Error as GitLab;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{GitLabJobs, gitlab_retry, retry};
use crate::runner::JobError;

/// A token is rotated once it expires within this many days.
pub const ROTATE_AHEAD_DAYS: i64 = 14;
/// The new token's lifetime: GitLab's default maximum is 365 days (an instance may allow less,
/// which GitLab answers with a 400 and the connection shows).
const NEW_LIFETIME_DAYS: i64 = 364;
/// How often storing the new token is tried before giving up: GitLab has revoked the old one,
/// so the new one in memory is all the connection has.
const STORE_ATTEMPTS: u32 = 5;

const LOST: &str = "the connector's automatic rotation of the access token was cut off after GitLab made the new token, which was never received: create a new token with scope api and set it on the connection";

impl GitLabJobs {
    /// Rotates the connection's token (`loaded`, as this job found it), or finishes a rotation
    /// found interrupted. The token is read again under the row's lock: another worker may
    /// have rotated it since this job loaded it, and then there is nothing to do.
    pub(super) async fn rotate_token(&self, tenant: &TenantId, connection: &Connection, loaded: &SecretString) -> Result<(), JobError> {
        let id = connection.id;
        let lease = Duration::from_std(self.settings.token_rotation_lease).unwrap_or(Duration::MAX);
        let in_flight =
            || JobError::Retry { reason: "a rotation of the token is under way".into(), after: Some(self.settings.token_rotation_lease) };
        let (start, token) = {
            let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
            let start = connections::begin_rotation(&mut tx, id, lease).await.map_err(retry)?;
            let token = connections::access_token(&mut tx, self.store.keys(), id).await.map_err(retry)?;
            if start == RotationStart::Begun && token.expose_secret() != loaded.expose_secret() {
                // Replaced meanwhile (rotated by another worker, or set by the user).
                connections::end_rotation(&mut tx, id).await.map_err(retry)?;
                tx.commit().await.map_err(retry)?;
                return Ok(());
            }
            tx.commit().await.map_err(retry)?;
            (start, token)
        };
        let client = match self.client(connection, token) {
            Ok(client) => client,
            Err(error) => {
                self.end_rotation(tenant, id).await?;
                return self.gitlab_failure(tenant, id, error).await;
            }
        };
        match start {
            RotationStart::Begun => {}
            RotationStart::InFlight => return Err(in_flight()),
            RotationStart::Interrupted { since } => match client.personal_access_token_self().await {
                // GitLab never rotated it: ask again, unless another worker took over first
                // (its request would meet this one's at GitLab).
                Ok(pat) if pat.active && !pat.revoked => {
                    let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                    let taken = connections::restart_rotation(&mut tx, id, since).await.map_err(retry)?;
                    tx.commit().await.map_err(retry)?;
                    if !taken {
                        return Err(in_flight());
                    }
                }
                Ok(_) | Err(GitLab::TokenRevoked | GitLab::TokenExpired | GitLab::TokenInvalid) => {
                    tracing::warn!(connection = %id, "token rotation interrupted after GitLab rotated: the new token is lost");
                    self.end_rotation(tenant, id).await?;
                    return self.user_problem(tenant, id, Status::NeedsReauth, LOST).await;
                }
                // Unknown still: the mark stays, and the next try asks again.
                Err(error) => return Err(gitlab_retry(error)),
            },
        }
        let expires_at = Utc::now().date_naive() + Duration::days(NEW_LIFETIME_DAYS);
        match client.rotate_self(expires_at).await {
            Ok(rotated) => {
                let mut last = None;
                for attempt in 0..STORE_ATTEMPTS {
                    if attempt > 0 {
                        tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
                    }
                    let stored = async {
                        let mut tx = self.store.tenant_tx(tenant).await?;
                        connections::store_rotated_token(&mut tx, self.store.keys(), id, &rotated.token, rotated.expires_at).await?;
                        tx.commit().await
                    };
                    match stored.await {
                        Ok(()) => {
                            tracing::info!(connection = %id, expires_at = ?rotated.expires_at, "token rotated");
                            return Ok(());
                        }
                        Err(e) => last = Some(e),
                    }
                }
                // The mark stays: the next check finds the old token revoked and says so.
                Err(JobError::Retry {
                    reason: format!("storing the rotated token: {}", last.map(|e| e.to_string()).unwrap_or_default()),
                    after: None,
                })
            }
            // Answered without rotating: nothing happened in GitLab.
            Err(
                error
                @ (GitLab::Forbidden { .. } | GitLab::InsufficientScope { .. } | GitLab::NotFound { .. } | GitLab::RateLimited { .. }),
            )
            | Err(error @ GitLab::Other { .. }) => {
                self.end_rotation(tenant, id).await?;
                match error {
                    GitLab::RateLimited { .. } => Err(gitlab_retry(error)),
                    refused => {
                        let message = format!(
                            "GitLab refused to rotate the access token ({refused}): replace it before it expires on {}",
                            connection.token_expires_at.map_or_else(|| "its expiry date".to_owned(), |d| d.to_string())
                        );
                        tracing::info!(connection = %id, %message, "token rotation refused");
                        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
                        connections::set_status(&mut tx, id, connection.status, Some(&message)).await.map_err(retry)?;
                        tx.commit().await.map_err(retry)
                    }
                }
            }
            Err(error @ (GitLab::TokenRevoked | GitLab::TokenExpired | GitLab::TokenInvalid)) => {
                self.end_rotation(tenant, id).await?;
                self.gitlab_failure(tenant, id, error).await
            }
            // Perhaps rotated, perhaps not (a timeout, a dropped connection, a 5xx): the mark
            // stays until the lease has passed, then the token tells.
            Err(error) => {
                Err(JobError::Retry { reason: format!("token rotation: {error}"), after: Some(self.settings.token_rotation_lease) })
            }
        }
    }

    async fn end_rotation(&self, tenant: &TenantId, id: Uuid) -> Result<(), JobError> {
        let mut tx = self.store.tenant_tx(tenant).await.map_err(retry)?;
        connections::end_rotation(&mut tx, id).await.map_err(retry)?;
        tx.commit().await.map_err(retry)
    }
}
