//! The operator's account-scope key: configured, found, or created at startup.

use std::fmt;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::storage;

/// The name given to account keys this module writes.
const OPERATOR_KEY_NAME: &str = "operator";

/// What [`crate::ensure_account_key`] found or did.
#[derive(Clone, PartialEq, Eq)]
pub enum AccountKey {
    /// The configured key is stored (created, or its secret updated).
    Configured,
    /// No key was configured and an account key already exists.
    Existing {
        /// The existing key's id.
        id: String,
    },
    /// No account key existed, so one was created: print it once for the operator.
    Created {
        /// The new key's id (the JWT `kid`).
        id: String,
        /// The new key's secret.
        secret: String,
    },
}

// Keeps the secret out of logs and panics.
impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountKey::Configured => f.write_str("Configured"),
            AccountKey::Existing { id } => f.debug_struct("Existing").field("id", id).finish(),
            AccountKey::Created { id, .. } => f
                .debug_struct("Created")
                .field("id", id)
                .field("secret", &"[redacted]")
                .finish(),
        }
    }
}

/// See [`crate::ensure_account_key`].
pub(crate) async fn ensure(
    pool: &PgPool,
    configured: Option<(String, String)>,
) -> anyhow::Result<AccountKey> {
    if let Some((id, secret)) = configured {
        anyhow::ensure!(
            !id.trim().is_empty(),
            "the account key id must not be empty"
        );
        anyhow::ensure!(
            !secret.trim().is_empty(),
            "the account key secret must not be empty"
        );
        let stored = storage::upsert_account_key(pool, &id, OPERATOR_KEY_NAME, &secret)
            .await
            .context("storing the configured account key")?;
        anyhow::ensure!(
            stored.is_some(),
            "the configured account key id {id} is already used by an app key"
        );
        return Ok(AccountKey::Configured);
    }

    // Replicas starting together must not each create a key: the check and the insert run
    // under one advisory lock.
    let mut tx = pool.begin().await.context("starting a transaction")?;
    storage::lock(&mut tx, "account-key")
        .await
        .context("locking the account keys")?;
    if let Some(id) = storage::first_account_key(&mut *tx)
        .await
        .context("looking up account keys")?
    {
        return Ok(AccountKey::Existing { id });
    }
    let id = domain::id::new_id();
    let secret = domain::id::new_secret(24);
    storage::upsert_account_key(&mut *tx, &id, OPERATOR_KEY_NAME, &secret)
        .await
        .context("creating an account key")?;
    tx.commit().await.context("creating an account key")?;
    tracing::info!(key_id = %id, "account key created");
    Ok(AccountKey::Created { id, secret })
}
