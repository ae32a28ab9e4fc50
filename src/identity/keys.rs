//! Warden's ES256 signing keys (CONTRACT §5: JWKS).
//!
//! Keys live in the database so that every replica signs and verifies with
//! the same set and they survive restarts on both backends. The newest key
//! whose signing period has begun signs. Rotation adds a key and retires the
//! others; it may publish first (`publish_lead`): the new key is in the JWKS
//! at once but signs only after the lead, so relying parties that cache the
//! JWKS know it before they meet it. A retired key stays published (and
//! trusted) until the longest token it can have signed has expired, plus
//! leeway. Each process re-reads the set every
//! [`REFRESH_INTERVAL`], and at once (at most every [`MIN_REREAD`]) when it
//! meets a `kid` it does not know, so a rotation on one replica is honoured
//! by the others.

use crate::audit::{Actor, AuditEvent};
use crate::store::identity::StoredKey;
use crate::store::{now_millis, Store, StoreError};
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a process re-reads the key set from the database.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Least time between two re-reads caused by unknown `kid`s.
pub const MIN_REREAD: Duration = Duration::from_secs(1);

/// One signing key, ready to sign (when live) and verify.
pub struct SigningKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public JWK as published.
    pub public_jwk: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it starts signing.
    pub signs_from: i64,
    /// When it stops signing.
    pub retired_at: Option<i64>,
}

impl SigningKey {
    /// Whether this key signs at `now` (Unix milliseconds).
    fn signs_at(&self, now: i64) -> bool {
        self.signs_from <= now && self.retired_at.is_none_or(|r| r > now)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made or read.
fn key_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Query(format!("signing key: {what}: {e}"))
}

/// A new P-256 key: its kid, PKCS#8 PEM private key and public JWK.
pub fn generate() -> Result<StoredKey, StoreError> {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error("encode", e))?;
    let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| key_error("load", e))?;
    let mut jwk =
        Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|e| key_error("jwk", e))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| key_error("thumbprint", e))?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let public_jwk = serde_json::to_string(&jwk).map_err(|e| key_error("jwk", e))?;
    let now = now_millis();
    Ok(StoredKey {
        kid,
        private_key: pem.to_string(),
        public_jwk,
        created_at: now,
        signs_from: now,
        retired_at: None,
    })
}

fn load(stored: &StoredKey) -> Result<SigningKey, StoreError> {
    let encoding = EncodingKey::from_ec_pem(stored.private_key.as_bytes())
        .map_err(|e| key_error(&stored.kid, e))?;
    let jwk: Jwk =
        serde_json::from_str(&stored.public_jwk).map_err(|e| key_error(&stored.kid, e))?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| key_error(&stored.kid, e))?;
    let public_jwk =
        serde_json::from_str(&stored.public_jwk).map_err(|e| key_error(&stored.kid, e))?;
    Ok(SigningKey {
        kid: stored.kid.clone(),
        encoding,
        decoding,
        public_jwk,
        created_at: stored.created_at,
        signs_from: stored.signs_from,
        retired_at: stored.retired_at,
    })
}

/// The published keys, newest first, shared by every request.
pub struct KeyRing {
    store: Store,
    keys: ArcSwap<Vec<Arc<SigningKey>>>,
    last_read: std::sync::Mutex<Instant>,
    reread: tokio::sync::Mutex<()>,
    /// How long a retired key stays published: the longest token lifetime
    /// plus leeway.
    publish_after_retire: Duration,
}

impl KeyRing {
    /// Reads the published keys, creating the first one when there is none.
    pub async fn load(store: Store, token_ttl: Duration) -> Result<Self, StoreError> {
        if store
            .published_keys()
            .await?
            .iter()
            .all(|k| k.retired_at.is_some())
        {
            let key = generate()?;
            store.add_first_signing_key(&key).await?;
        }
        let ring = KeyRing {
            store,
            keys: ArcSwap::from_pointee(Vec::new()),
            last_read: std::sync::Mutex::new(Instant::now()),
            reread: tokio::sync::Mutex::new(()),
            publish_after_retire: token_ttl + Duration::from_secs(super::LEEWAY_SECS * 2),
        };
        ring.reread().await?;
        Ok(ring)
    }

    /// Re-reads the published keys from the database.
    pub async fn reread(&self) -> Result<(), StoreError> {
        let stored = self.store.published_keys().await?;
        let mut keys = Vec::with_capacity(stored.len());
        for key in &stored {
            keys.push(Arc::new(load(key)?));
        }
        self.keys.store(Arc::new(keys));
        if let Ok(mut last) = self.last_read.lock() {
            *last = Instant::now();
        }
        Ok(())
    }

    fn since_last_read(&self) -> Duration {
        self.last_read
            .lock()
            .map(|l| l.elapsed())
            .unwrap_or(Duration::ZERO)
    }

    /// Re-reads when the set is older than [`REFRESH_INTERVAL`], or when
    /// `kid` is unknown and the last read is older than [`MIN_REREAD`].
    async fn fresh(&self, kid: Option<&str>) {
        let known =
            |keys: &Vec<Arc<SigningKey>>| kid.is_none_or(|k| keys.iter().any(|x| x.kid == k));
        let age = self.since_last_read();
        if age < REFRESH_INTERVAL && (known(&self.keys.load()) || age < MIN_REREAD) {
            return;
        }
        let _one_at_a_time = self.reread.lock().await;
        let age = self.since_last_read();
        if age < REFRESH_INTERVAL && (known(&self.keys.load()) || age < MIN_REREAD) {
            return;
        }
        if let Err(e) = self.reread().await {
            tracing::warn!(error = %e, "cannot re-read the signing keys; keeping the ones loaded");
        }
    }

    /// Whether `kid` is one of Warden's published keys.
    pub async fn knows(&self, kid: &str) -> bool {
        self.fresh(Some(kid)).await;
        self.keys.load().iter().any(|k| k.kid == kid)
    }

    /// The verification key of published key `kid`.
    pub async fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        self.fresh(Some(kid)).await;
        self.keys
            .load()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.decoding.clone())
    }

    /// The key that signs now (the newest whose signing period has
    /// begun): its kid and key.
    pub async fn signer(&self) -> Result<(String, EncodingKey), StoreError> {
        self.fresh(None).await;
        let now = now_millis();
        self.keys
            .load()
            .iter()
            .filter(|k| k.signs_at(now))
            .max_by_key(|k| (k.signs_from, k.created_at))
            .map(|k| (k.kid.clone(), k.encoding.clone()))
            .ok_or_else(|| {
                StoreError::Query("no live signing key; run `warden keys rotate`".into())
            })
    }

    /// The JWKS document: every published key.
    pub async fn jwks(&self) -> serde_json::Value {
        self.fresh(None).await;
        let keys: Vec<serde_json::Value> = self
            .keys
            .load()
            .iter()
            .map(|k| k.public_jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Rotates: a new key is published at once and signs after
    /// `publish_lead` (zero: at once); the others retire then and stay
    /// published until their last token has expired. Returns the new key.
    pub async fn rotate(
        &self,
        publish_lead: Duration,
        actor: Actor,
        request_id: Option<String>,
    ) -> Result<StoredKey, StoreError> {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let mut key = generate()?;
        key.signs_from = key.created_at + millis(publish_lead);
        let published_until = key.signs_from + millis(self.publish_after_retire);
        self.store
            .rotate_signing_key(
                &key,
                published_until,
                AuditEvent {
                    actor,
                    action: "signing_key.rotate",
                    target_type: "signing_key",
                    target_id: key.kid.clone(),
                    before: None,
                    after: Some(serde_json::json!({
                        "kid": key.kid,
                        "signs_from": key.signs_from,
                        "retired_keys_published_until": published_until,
                    })),
                    request_id,
                },
            )
            .await?;
        self.reread().await?;
        tracing::info!(kid = %key.kid, signs_from = key.signs_from, "signing key rotated");
        Ok(key)
    }
}
