//! App credentials. A key is shown once, when created; only its SHA-256 is
//! stored (CONTRACT §1.5). Keys look like `wdn_<id>_<secret>`.

use super::{now_millis, opt_text, text, Store, StoreError};
use crate::audit::{Actor, AuditEvent};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// A key in clear, as handed to its owner once. `Debug` prints no secret.
#[derive(Clone)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// The key text, to show the caller once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// A stored key, without its hash.
#[derive(Clone, Debug, Serialize)]
pub struct ApiKey {
    /// Public id (also inside the key text).
    pub id: String,
    /// What the key is for.
    pub name: String,
    /// `check`, `admin`.
    pub scopes: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, when revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// The scopes a key may carry.
pub const SCOPES: &[&str] = &["check", "admin"];

/// SHA-256 of a presented key, hex.
pub fn hash_key(presented: &str) -> String {
    hex::encode(Sha256::digest(presented.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn row_to_key(row: &sqlx::any::AnyRow) -> Result<ApiKey, StoreError> {
    use sqlx::Row;
    let scopes = text(row, "scopes")?;
    Ok(ApiKey {
        id: text(row, "id")?,
        name: text(row, "name")?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        created_at: row
            .try_get::<i64, _>("created_at")
            .map_err(|e| StoreError::Query(format!("column created_at: {e}")))?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(|e| StoreError::Query(format!("column revoked_at: {e}")))?,
    })
}

/// A new key id and key text: `wdn_<id>_<64 hex digits>` (256 random bits).
pub fn generate_key() -> (String, ApiKeySecret) {
    let id = random_hex(8);
    let secret = ApiKeySecret(format!("wdn_{id}_{}", random_hex(32)));
    (id, secret)
}

impl Store {
    /// Creates a key with `scopes` (already checked against [`SCOPES`]).
    pub async fn create_api_key(
        &self,
        name: &str,
        scopes: &[String],
        actor: Actor,
        request_id: Option<String>,
    ) -> Result<(ApiKey, ApiKeySecret), StoreError> {
        let (id, secret) = generate_key();
        let key = self
            .store_api_key(&id, &secret, name, scopes, actor, request_id)
            .await?;
        Ok((key, secret))
    }

    /// Stores the key `secret` made by [`generate_key`] under `id`.
    pub async fn store_api_key(
        &self,
        id: &str,
        secret: &ApiKeySecret,
        name: &str,
        scopes: &[String],
        actor: Actor,
        request_id: Option<String>,
    ) -> Result<ApiKey, StoreError> {
        let id = id.to_string();
        let key = ApiKey {
            id: id.clone(),
            name: name.to_string(),
            scopes: scopes.to_vec(),
            created_at: now_millis(),
            revoked_at: None,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(hash_key(secret.expose()))
        .bind(key.scopes.join(","))
        .bind(key.created_at)
        .execute(tx.conn())
        .await?;
        // No cached answer knows a key that did not exist.
        tx.changed_only([]);
        tx.commit(AuditEvent {
            actor,
            action: "api_key.create",
            target_type: "api_key",
            target_id: id,
            before: None,
            after: Some(serde_json::json!({"name": key.name, "scopes": key.scopes})),
            request_id,
        })
        .await?;
        Ok(key)
    }

    /// The live (not revoked) key whose hash is `key_hash`.
    pub async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let query = || async {
            let row = sqlx::query(
                "SELECT id, name, scopes, created_at, revoked_at FROM api_keys \
                 WHERE key_hash = $1 AND revoked_at IS NULL",
            )
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await?;
            row.as_ref().map(row_to_key).transpose()
        };
        self.read_again_if_lost(query).await
    }

    /// Every key, newest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at DESC, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row_to_key).collect()
    }

    /// Revokes key `id`. Returns false when there is no live key with that id.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        actor: Actor,
        request_id: Option<String>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_millis())
                .bind(id)
                .execute(tx.conn())
                .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Every replica drops its verified copy of the key when it hears of this.
        tx.changed_only([super::revision::api_key(id)]);
        tx.commit(AuditEvent {
            actor,
            action: "api_key.revoke",
            target_type: "api_key",
            target_id: id.to_string(),
            before: Some(serde_json::json!({"revoked": false})),
            after: Some(serde_json::json!({"revoked": true})),
            request_id,
        })
        .await?;
        Ok(true)
    }

    /// True when a live key with the admin scope exists.
    pub async fn has_admin_key(&self) -> Result<bool, StoreError> {
        let rows = sqlx::query("SELECT scopes FROM api_keys WHERE revoked_at IS NULL")
            .fetch_all(self.pool())
            .await?;
        for row in &rows {
            if opt_text(row, "scopes")?.is_some_and(|s| s.split(',').any(|x| x == "admin")) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
