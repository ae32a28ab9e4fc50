//! Identity: who is calling, established only from verified sources
//! (CONTRACT §1.3, §4, §5).
//!
//! - [`keys`]: Warden's ES256 signing keys, kept in the database, published
//!   as a JWKS, rotated.
//! - [`anonymous`]: minting and verifying Warden's own anonymous tokens.
//! - [`oidc`]: verifying the identity provider's tokens against its JWKS.
//! - [`idp`]: telling the provider the canonical user id (`external_id`).
//! - [`unverified`]: the one place a token is read before verification.
//!
//! Linking, upgrading and refresh bookkeeping are transactions in
//! `store::identity`; this module decides whether a token is genuine.

pub mod anonymous;
pub mod idp;
pub mod keys;
pub mod oidc;
pub mod unverified;

use crate::decision::Authn;
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::time::Duration;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Why a token was refused. Every variant is a 401 except
/// [`TokenError::ProviderUnavailable`] (503) and [`TokenError::Store`].
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Over [`unverified::MAX_TOKEN_BYTES`].
    #[error(
        "the token is over {} bytes; real tokens are far smaller",
        unverified::MAX_TOKEN_BYTES
    )]
    TooLarge,
    /// Not a compact JWS.
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    /// An algorithm outside the pinned ones.
    #[error("the token's algorithm {0:?} is not accepted: Warden's tokens are ES256, the identity provider's RS256 or ES256")]
    Algorithm(String),
    /// A `crit` header.
    #[error("the token carries a `crit` header naming extensions Warden does not implement")]
    Critical,
    /// No `kid`.
    #[error("the token header has no `kid`, so no published key can be chosen to verify it")]
    MissingKid,
    /// The `kid` names no trusted key.
    #[error("no trusted key has kid {0:?} (unknown, or retired and its tokens expired)")]
    UnknownKid(String),
    /// The signature does not verify with the key.
    #[error("the token's signature does not verify")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `iss` is wrong.
    #[error("the token's issuer (iss) is not {0:?}")]
    Issuer(String),
    /// `aud` is wrong.
    #[error("the token's audience (aud) is not {0:?}")]
    Audience(String),
    /// `azp` is not allowed.
    #[error("the token's authorized party (azp) is not one this server accepts")]
    AuthorizedParty,
    /// A required claim is missing or of the wrong type.
    #[error("the token's claim {0} is missing or invalid")]
    Claim(String),
    /// An anonymous token that is no longer the live one of its user.
    #[error("this anonymous token is no longer valid: it was replaced by a refresh, or its user has signed in")]
    Revoked,
    /// A provider token whose subject has no Warden user yet.
    #[error("this identity has no Warden user yet; call POST /api/auth/resolve-user first")]
    Unlinked,
    /// No identity provider is configured.
    #[error("no identity provider is configured on this server (--oidc-issuer), so its tokens cannot be verified")]
    NoProvider,
    /// The provider's keys cannot be fetched and none are cached.
    #[error("the identity provider's keys cannot be fetched right now: {0}")]
    ProviderUnavailable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TokenError {
    /// Maps a `jsonwebtoken` failure (after Warden's own checks).
    fn from_jwt(e: jsonwebtoken::errors::Error, issuer: &str, audience: &str) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer(issuer.to_string()),
            ErrorKind::InvalidAudience => TokenError::Audience(audience.to_string()),
            ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                TokenError::Claim(c.clone())
            }
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::Algorithm("(does not match the key)".into())
            }
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                TokenError::Malformed("a segment does not decode".into())
            }
            ErrorKind::Json(_) => {
                TokenError::Malformed("the claims are not a valid JSON object".into())
            }
            _ => TokenError::Signature,
        }
    }
}

/// Verifies `token` with `key` under `v` and reads its claims as `T`. The
/// claims are first read as plain JSON so that a missing required claim is
/// reported as such by the validation, then typed, naming a bad claim.
fn decode<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    v: &jsonwebtoken::Validation,
    issuer: &str,
    audience: &str,
) -> Result<T, TokenError> {
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, key, v)
        .map_err(|e| TokenError::from_jwt(e, issuer, audience))?
        .claims;
    serde_path_to_error::deserialize(claims).map_err(|e| {
        let path = e.path().to_string();
        TokenError::Claim(if path == "." { "(claims)".into() } else { path })
    })
}

/// Base validation shared by both token kinds: algorithm pinned, `exp`,
/// `nbf`, `iss` and `sub` required and checked with [`LEEWAY_SECS`].
fn validation(alg: jsonwebtoken::Algorithm, issuer: &str) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(alg);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    v
}

/// Settings of the identity layer.
#[derive(Clone, Debug)]
pub struct IdentitySettings {
    /// `iss` of Warden's tokens: the public URL, without a trailing slash.
    pub issuer: String,
    /// `aud` of Warden's anonymous tokens.
    pub audience: String,
    /// Lifetime of an anonymous token.
    pub token_ttl: Duration,
    /// The identity provider, when configured.
    pub oidc: Option<oidc::OidcSettings>,
    /// The provider's admin API, when configured.
    pub idp_admin: Option<idp::IdpAdminSettings>,
}

/// How long a verified token is remembered for decisions (never past its
/// `exp`).
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

fn now_secs() -> u64 {
    u64::try_from(crate::store::now_millis() / 1000).unwrap_or_default()
}

/// A token whose signature and claims verified.
#[derive(Clone, Debug)]
enum Verified {
    Anonymous(anonymous::AnonymousClaims),
    Provider(oidc::OidcClaims),
}

/// A principal established from a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPrincipal {
    /// Canonical user id.
    pub user_id: String,
    /// How.
    pub authn: Authn,
}

/// The identity layer: Warden's keys, the provider's verifier, settings.
pub struct Identity {
    /// Warden's signing keys.
    pub keys: keys::KeyRing,
    /// The identity provider's verifier.
    pub oidc: Option<oidc::OidcVerifier>,
    /// The provider's admin API.
    pub idp: Option<std::sync::Arc<idp::IdpAdmin>>,
    /// Settings.
    pub settings: IdentitySettings,
    store: Store,
    verified: moka::sync::Cache<String, (Verified, u64)>,
}

impl Identity {
    /// Loads (or on first start creates) the signing key and sets up the
    /// provider's verifier.
    pub async fn start(store: Store, settings: IdentitySettings) -> Result<Self, StoreError> {
        let keys = keys::KeyRing::load(store.clone(), settings.token_ttl).await?;
        let oidc = settings.oidc.clone().map(oidc::OidcVerifier::new);
        let idp = settings
            .idp_admin
            .clone()
            .map(|s| std::sync::Arc::new(idp::IdpAdmin::new(s)));
        Ok(Identity {
            keys,
            oidc,
            idp,
            settings,
            store,
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
        })
    }

    /// The provider's id in the identity table: its issuer URL.
    pub fn provider(&self) -> Option<&str> {
        self.settings.oidc.as_ref().map(|o| o.issuer.as_str())
    }

    /// The users behind end-user `tokens` (Warden's anonymous tokens or the
    /// provider's), each verified, in one database query per token kind.
    /// An anonymous token must be the live one of a user who has not signed
    /// in; a provider token names its user by `external_id`, else by the
    /// linked subject. Fails on the first bad token, with its index.
    pub async fn principals(
        &self,
        tokens: &[&str],
    ) -> Result<HashMap<String, TokenPrincipal>, (usize, TokenError)> {
        let mut anonymous: HashMap<&str, (usize, anonymous::AnonymousClaims)> = HashMap::new();
        let mut provider: HashMap<&str, (usize, oidc::OidcClaims)> = HashMap::new();
        for (index, token) in tokens.iter().enumerate() {
            if anonymous.contains_key(token) || provider.contains_key(token) {
                continue;
            }
            match self.verify_cached(token).await.map_err(|e| (index, e))? {
                Verified::Anonymous(claims) => {
                    anonymous.insert(token, (index, claims));
                }
                Verified::Provider(claims) => {
                    provider.insert(token, (index, claims));
                }
            }
        }
        let mut out = HashMap::new();
        if !anonymous.is_empty() {
            let users: Vec<&str> = anonymous.values().map(|(_, c)| c.sub.as_str()).collect();
            let live = self
                .store
                .live_anonymous_tokens(&users)
                .await
                .map_err(|e| (0, e.into()))?;
            for (token, (index, claims)) in anonymous {
                if live.get(&claims.sub) != Some(&claims.jti) {
                    return Err((index, TokenError::Revoked));
                }
                out.insert(
                    token.to_string(),
                    TokenPrincipal {
                        user_id: claims.sub,
                        authn: Authn::AnonymousToken,
                    },
                );
            }
        }
        if !provider.is_empty() {
            let provider_id = self.provider().unwrap_or_default().to_string();
            let subjects: Vec<&str> = provider
                .values()
                .filter(|(_, c)| c.external_id.is_none())
                .map(|(_, c)| c.sub.as_str())
                .collect();
            let linked = self
                .store
                .users_for_subjects(&provider_id, &subjects)
                .await
                .map_err(|e| (0, e.into()))?;
            for (token, (index, claims)) in provider {
                let user_id = match claims.external_id {
                    Some(id) => id,
                    None => linked
                        .get(&claims.sub)
                        .cloned()
                        .ok_or((index, TokenError::Unlinked))?,
                };
                out.insert(
                    token.to_string(),
                    TokenPrincipal {
                        user_id,
                        authn: Authn::OidcToken,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Verifies a token of either kind for a decision. A token whose
    /// signature and claims verified is remembered (by the SHA-256 of its
    /// text) for up to [`VERIFIED_TTL`] and never past its `exp`, which saves
    /// the ~0.2 ms signature check on repeated decisions. Whether an
    /// anonymous token is still live is asked of the database every time.
    async fn verify_cached(&self, token: &str) -> Result<Verified, TokenError> {
        let key = anonymous::hash_token(token);
        if let Some((verified, exp)) = self.verified.get(&key) {
            if now_secs() <= exp {
                return Ok(verified);
            }
            self.verified.invalidate(&key);
        }
        let header = unverified::inspect(token)?;
        let (verified, exp) = if self.keys.knows(&header.kid).await || self.oidc.is_none() {
            let claims = self.verify_anonymous(token).await?;
            let exp = claims.exp;
            (Verified::Anonymous(claims), exp)
        } else {
            let claims = self.verify_oidc(token).await?;
            let exp = claims.exp;
            (Verified::Provider(claims), exp)
        };
        self.verified.insert(key, (verified.clone(), exp));
        Ok(verified)
    }

    /// Verifies one of Warden's anonymous tokens (signature and claims only;
    /// whether it is still the live token is the store's question).
    pub async fn verify_anonymous(
        &self,
        token: &str,
    ) -> Result<anonymous::AnonymousClaims, TokenError> {
        let header = unverified::inspect(token)?;
        if header.alg != jsonwebtoken::Algorithm::ES256 {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self
            .keys
            .decoding_key(&header.kid)
            .await
            .ok_or_else(|| TokenError::UnknownKid(header.kid.clone()))?;
        anonymous::verify(token, &key, &self.settings.issuer, &self.settings.audience)
    }

    /// Verifies the identity provider's token.
    pub async fn verify_oidc(&self, token: &str) -> Result<oidc::OidcClaims, TokenError> {
        let header = unverified::inspect(token)?;
        let verifier = self.oidc.as_ref().ok_or(TokenError::NoProvider)?;
        verifier.verify(token, &header).await
    }
}
