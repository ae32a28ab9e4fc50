//! The one place Warden reads a token before its signature is verified.
//!
//! WARNING: nothing read here is trusted. The header is inspected only to
//! refuse what must never be verified (oversized tokens, wrong shape,
//! algorithms other than those pinned, `crit` extensions) and to pick the
//! verification key by `kid`. Header fields that point at keys (`jku`,
//! `x5u`, `jwk`, `x5c`) are never read: keys come only from Warden's own
//! key ring or the identity provider's configured JWKS URL.

use super::TokenError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Largest token Warden will look at, in bytes (real tokens are ~1 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What the header says, unverified.
#[derive(Debug)]
pub struct UnverifiedHeader {
    /// The `alg` value, one of the algorithms Warden accepts.
    pub alg: jsonwebtoken::Algorithm,
    /// The key id.
    pub kid: String,
}

/// Checks the token's shape and header, before any key is looked up.
pub fn inspect(token: &str) -> Result<UnverifiedHeader, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = segments.as_slice() else {
        return Err(TokenError::Malformed(format!(
            "a JWT has three dot-separated segments, this one has {}",
            segments.len()
        )));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("the header segment is not base64url".into()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("the header is not JSON".into()))?;
    let Some(object) = value.as_object() else {
        return Err(TokenError::Malformed(
            "the header is not a JSON object".into(),
        ));
    };
    let alg = match object.get("alg").and_then(|a| a.as_str()) {
        Some("ES256") => jsonwebtoken::Algorithm::ES256,
        Some("RS256") => jsonwebtoken::Algorithm::RS256,
        Some(other) => return Err(TokenError::Algorithm(other.chars().take(20).collect())),
        None => return Err(TokenError::Algorithm("(missing)".into())),
    };
    if object.contains_key("crit") {
        return Err(TokenError::Critical);
    }
    let kid = match object.get("kid") {
        Some(serde_json::Value::String(kid)) if !kid.is_empty() && kid.len() <= 256 => kid.clone(),
        _ => return Err(TokenError::MissingKid),
    };
    for (name, segment) in [("payload", payload), ("signature", signature)] {
        if segment.is_empty() {
            return Err(TokenError::Malformed(format!(
                "the {name} segment is empty"
            )));
        }
        if URL_SAFE_NO_PAD.decode(segment).is_err() {
            return Err(TokenError::Malformed(format!(
                "the {name} segment is not unpadded base64url"
            )));
        }
    }
    Ok(UnverifiedHeader { alg, kid })
}
