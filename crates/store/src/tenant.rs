use std::fmt;
use std::ops::{Deref, DerefMut};

use sqlx::{PgConnection, Postgres, Transaction};

use crate::{Error, Result};

/// A tenant id as Coworker names it (the JWT's tenant claim): 1 to 128 characters of letters,
/// digits and `._:-`, starting with a letter or digit. The database checks the same pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self> {
        let valid = (1..=128).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidTenant("must be 1 to 128 letters, digits or ._:- and start with a letter or digit".into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transaction in which row-level security shows one tenant's rows and no one else's.
///
/// The tenant is set with `set_config(.., true)`, local to the transaction, so a pooled
/// connection never carries it into the next use. Dropping without [`TenantTx::commit`] rolls
/// back.
pub struct TenantTx {
    tenant: TenantId,
    tx: Transaction<'static, Postgres>,
}

impl TenantTx {
    pub(crate) async fn begin(pool: &sqlx::PgPool, tenant: &TenantId) -> Result<Self> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)").bind(tenant.as_str()).execute(&mut *tx).await?;
        Ok(Self { tenant: tenant.clone(), tx })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The tenant and the connection at once, for binding the tenant into a query run on it.
    pub fn parts(&mut self) -> (&TenantId, &mut PgConnection) {
        (&self.tenant, &mut self.tx)
    }

    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::TenantId;

    #[test]
    fn tenant_ids() {
        for ok in ["acme", "org_123", "a", "tenant:eu-1.prod", &"x".repeat(128)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok} refused");
        }
        for bad in ["", "-a", "a b", "a/b", "ä", "a'", &"x".repeat(129)] {
            assert!(TenantId::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
