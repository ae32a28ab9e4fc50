//! Verifying the identity provider's tokens (Clerk in the apps we serve).
//!
//! Keys come only from the configured JWKS URL (never from a token header),
//! fetched with a real HTTP client and cached for [`JWKS_TTL`]. An unknown
//! `kid` triggers a refetch, one at a time and at most every
//! [`MIN_REFETCH`], so a flood of made-up kids costs the provider at most
//! one request per interval. Only RSA keys (RS256, at least 2048 bits) and
//! P-256 keys whose point is on the curve (ES256) are accepted; the
//! algorithm is pinned by the key's type, whatever the token says.

use super::unverified::UnverifiedHeader;
use super::{validation, TokenError};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long fetched keys are used before they are fetched again.
pub const JWKS_TTL: Duration = Duration::from_secs(300);
/// Least time between two fetches caused by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The provider's settings.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// Expected `iss`, byte for byte.
    pub issuer: String,
    /// Expected `aud`; when unset, `aud` is not checked (Clerk session
    /// tokens carry none).
    pub audience: Option<String>,
    /// Where the keys are.
    pub jwks_url: String,
    /// Accepted `azp` values; empty accepts any.
    pub authorized_parties: Vec<String>,
}

/// The claims Warden reads from the provider's token.
#[derive(Clone, Debug, Deserialize)]
pub struct OidcClaims {
    /// The provider's user id (Clerk: `user_...`).
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Warden's canonical id, once the provider carries it (JSON `null`
    /// when unset).
    #[serde(default)]
    pub external_id: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider verified the email (OIDC standard claim; Clerk
    /// puts only verified primary emails in its tokens and omits it).
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Username.
    #[serde(default)]
    pub username: Option<String>,
    /// Avatar (Clerk templates: `image_url`).
    #[serde(default)]
    pub image_url: Option<String>,
    /// Avatar (OIDC standard claim).
    #[serde(default)]
    pub picture: Option<String>,
    /// Authorized party.
    #[serde(default)]
    pub azp: Option<String>,
}

impl OidcClaims {
    /// The avatar URL, whichever claim carries it.
    pub fn avatar_url(&self) -> Option<&str> {
        self.image_url.as_deref().or(self.picture.as_deref())
    }
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

/// Verifies the provider's tokens.
pub struct OidcVerifier {
    settings: OidcSettings,
    client: reqwest::Client,
    cache: std::sync::RwLock<Cache>,
    fetching: tokio::sync::Mutex<()>,
}

/// Turns one JWK into a verification key, or says why it is skipped.
fn accept_key(jwk: &serde_json::Value) -> Result<(String, DecodingKey, Algorithm), String> {
    let field = |name: &str| jwk.get(name).and_then(|v| v.as_str());
    let kid = field("kid").ok_or("no kid")?.to_string();
    if field("use").is_some_and(|u| u != "sig") {
        return Err("not a signing key".into());
    }
    match field("kty") {
        Some("RSA") => {
            if field("alg").is_some_and(|a| a != "RS256") {
                return Err("RSA key for an algorithm other than RS256".into());
            }
            let n = field("n").ok_or("RSA key without n")?;
            let e = field("e").ok_or("RSA key without e")?;
            // base64url of a 2048-bit modulus is 342 characters.
            if n.len() < 342 {
                return Err("RSA key shorter than 2048 bits".into());
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
            Ok((kid, key, Algorithm::RS256))
        }
        Some("EC") => {
            if field("crv") != Some("P-256") || field("alg").is_some_and(|a| a != "ES256") {
                return Err("EC key that is not P-256/ES256".into());
            }
            let x = field("x").ok_or("EC key without x")?;
            let y = field("y").ok_or("EC key without y")?;
            on_curve(x, y)?;
            let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
            Ok((kid, key, Algorithm::ES256))
        }
        other => Err(format!("unsupported key type {other:?}")),
    }
}

/// Refuses a P-256 public key whose point is not on the curve.
fn on_curve(x: &str, y: &str) -> Result<(), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let x = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(|_| "x is not base64url")?;
    let y = URL_SAFE_NO_PAD
        .decode(y)
        .map_err(|_| "y is not base64url")?;
    if x.len() != 32 || y.len() != 32 {
        return Err("P-256 coordinates are 32 bytes".into());
    }
    let point = p256::EncodedPoint::from_affine_coordinates(
        p256::FieldBytes::from_slice(&x),
        p256::FieldBytes::from_slice(&y),
        false,
    );
    p256::PublicKey::from_sec1_bytes(point.as_bytes())
        .map(|_| ())
        .map_err(|_| "the EC point is not on P-256".into())
}

impl OidcVerifier {
    /// A verifier for `settings`.
    pub fn new(settings: OidcSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        OidcVerifier {
            settings,
            client,
            cache: std::sync::RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn cached(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.cache.read().ok()?.keys.get(kid).cloned()
    }

    /// Whether a fetch is due: the keys are stale, or `kid` is unknown and
    /// the last attempt is older than [`MIN_REFETCH`].
    fn due(&self, kid: &str) -> bool {
        let Ok(cache) = self.cache.read() else {
            return true;
        };
        let stale = cache.fetched_at.is_none_or(|t| t.elapsed() >= JWKS_TTL);
        let unknown = !cache.keys.contains_key(kid);
        let may_retry = cache
            .attempted_at
            .is_none_or(|t| t.elapsed() >= MIN_REFETCH);
        (stale || unknown) && may_retry
    }

    async fn fetch(&self) -> Result<(), String> {
        let response = self
            .client
            .get(&self.settings.jwks_url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.settings.jwks_url))?;
        if !response.status().is_success() {
            return Err(format!(
                "GET {}: status {}",
                self.settings.jwks_url,
                response.status()
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err("the JWKS document is too large".into());
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err("the JWKS document is too large".into());
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("the JWKS has no keys array")?;
        let mut keys = HashMap::new();
        for jwk in list {
            match accept_key(jwk) {
                Ok((kid, key, alg)) => {
                    keys.insert(kid, (key, alg));
                }
                Err(why) => tracing::debug!(why, "identity provider key skipped"),
            }
        }
        if let Ok(mut cache) = self.cache.write() {
            cache.keys = keys;
            cache.fetched_at = Some(Instant::now());
        }
        Ok(())
    }

    /// The key for `kid`, fetching the JWKS when due. Requests that miss
    /// wait for the one fetch in flight rather than failing or fetching again.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), TokenError> {
        if !self.due(kid) || self.fresh_and_known(kid) {
            if let Some(key) = self.cached(kid) {
                return Ok(key);
            }
        }
        let _one_at_a_time = self.fetching.lock().await;
        if self.fresh_and_known(kid) {
            if let Some(key) = self.cached(kid) {
                return Ok(key);
            }
        }
        if self.due(kid) {
            if let Ok(mut cache) = self.cache.write() {
                cache.attempted_at = Some(Instant::now());
            }
            metrics::counter!("warden_oidc_jwks_fetches_total").increment(1);
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "cannot fetch the identity provider's JWKS");
                // Keys fetched earlier keep working through an outage.
                return self.cached(kid).ok_or(TokenError::ProviderUnavailable(e));
            }
        }
        self.cached(kid)
            .ok_or_else(|| TokenError::UnknownKid(kid.to_string()))
    }

    /// Whether `kid` is cached and the keys are younger than [`JWKS_TTL`].
    fn fresh_and_known(&self, kid: &str) -> bool {
        self.cache.read().is_ok_and(|cache| {
            cache.keys.contains_key(kid) && cache.fetched_at.is_some_and(|t| t.elapsed() < JWKS_TTL)
        })
    }

    /// Verifies `token`, whose header was inspected as `header`.
    pub async fn verify(
        &self,
        token: &str,
        header: &UnverifiedHeader,
    ) -> Result<OidcClaims, TokenError> {
        let (key, alg) = self.key(&header.kid).await?;
        if header.alg != alg {
            return Err(TokenError::Algorithm(format!(
                "{:?} (key {} is for {alg:?})",
                header.alg, header.kid
            )));
        }
        let issuer = &self.settings.issuer;
        let mut v = validation(alg, issuer);
        let audience = self.settings.audience.clone().unwrap_or_default();
        match &self.settings.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
            }
            None => v.validate_aud = false,
        }
        let claims: OidcClaims = super::decode(token, &key, &v, issuer, &audience)?;
        if claims.sub.is_empty() {
            return Err(TokenError::Claim("sub".into()));
        }
        if !self.settings.authorized_parties.is_empty()
            && !claims
                .azp
                .as_ref()
                .is_some_and(|azp| self.settings.authorized_parties.contains(azp))
        {
            return Err(TokenError::AuthorizedParty);
        }
        if claims
            .external_id
            .as_ref()
            .is_some_and(|id| crate::domain::Id::parse(id.clone()).is_err())
        {
            return Err(TokenError::Claim("external_id".into()));
        }
        Ok(claims)
    }
}
