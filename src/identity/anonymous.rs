//! Warden's anonymous tokens: ES256 JWTs whose `sub` is the canonical user
//! id (CONTRACT §5). Every token carries a random `jti`; the store keeps the
//! `jti` and the SHA-256 of the token last issued to each user, so refresh
//! accepts only that token, and signing up kills it.

use super::{validation, TokenError};
use crate::store::now_millis;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The claims of an anonymous token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnonymousClaims {
    /// Issuer: Warden's public URL.
    pub iss: String,
    /// Canonical user id.
    pub sub: String,
    /// Audience (default `convex`).
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Expires, Unix seconds.
    pub exp: u64,
    /// Random token id.
    pub jti: String,
    /// Always `anonymous`, for the relying party's rules.
    pub kind: String,
}

/// A freshly signed token and what the store keeps of it.
pub struct MintedToken {
    /// The token text, handed to the client once.
    pub token: String,
    /// Its id.
    pub jti: String,
    /// SHA-256 of the token text, hex.
    pub hash: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("jti", &self.jti)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a token's text, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Signs a token for `user_id` with key `kid`.
pub fn mint(
    user_id: &str,
    (kid, key): (&str, &EncodingKey),
    issuer: &str,
    audience: &str,
    ttl: Duration,
) -> Result<MintedToken, jsonwebtoken::errors::Error> {
    let now = u64::try_from(now_millis() / 1000).unwrap_or_default();
    let claims = AnonymousClaims {
        iss: issuer.to_string(),
        sub: user_id.to_string(),
        aud: audience.to_string(),
        iat: now,
        nbf: now,
        exp: now + ttl.as_secs(),
        jti: uuid::Uuid::new_v4().simple().to_string(),
        kind: "anonymous".into(),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    let token = jsonwebtoken::encode(&header, &claims, key)?;
    Ok(MintedToken {
        hash: hash_token(&token),
        token,
        jti: claims.jti,
        expires_at: claims.exp,
    })
}

/// Verifies signature and claims of one of Warden's tokens with `key`.
pub fn verify(
    token: &str,
    key: &DecodingKey,
    issuer: &str,
    audience: &str,
) -> Result<AnonymousClaims, TokenError> {
    let mut v = validation(Algorithm::ES256, issuer);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims: AnonymousClaims = super::decode(token, key, &v, issuer, audience)?;
    if claims.jti.is_empty() {
        return Err(TokenError::Claim("jti".into()));
    }
    if claims.kind != "anonymous" {
        return Err(TokenError::Claim("kind".into()));
    }
    Ok(claims)
}
