//! Request extractors: JSON bodies whose errors name the field, and the
//! calling app's API key.

use super::error::ApiError;
use super::AppState;
use crate::cache::Tagged;
use crate::store::api_keys::{hash_key, ApiKey};
use crate::store::revision;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON body. Errors are 400 with the path of the offending field, 413
/// past the body limit.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is over this route's size limit; send less per call",
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "body: the request body is empty; send a JSON object",
            )
            .with("field", serde_json::Value::String("body".into())));
        }
        // Every body is a JSON object; serde would otherwise read an array as
        // a struct in tuple form and report a confusing position.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "body: expected a JSON object, e.g. {\"action\": ...}",
            )
            .with("field", serde_json::Value::String("body".into())));
        }
        // The common case, a valid body, without tracking the path; only a
        // body that fails is parsed again to name the offending field.
        if let Ok(value) = serde_json::from_slice(&bytes) {
            return Ok(JsonBody(value));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path == "?" {
                "body".to_string()
            } else {
                path
            };
            ApiError::bad_request(format!("{field}: {}", e.inner()))
                .with("field", serde_json::Value::String(field))
        })?;
        de.end().map_err(|e| {
            ApiError::bad_request(format!("body: trailing data after the JSON value: {e}"))
        })?;
        Ok(JsonBody(value))
    }
}

/// Parses an optional JSON object body: empty means `T::default()`.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &Bytes,
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = match e.path().to_string().as_str() {
            "." | "?" => "body".to_string(),
            path => path.to_string(),
        };
        ApiError::bad_request(format!("{field}: {}", e.inner()))
            .with("field", serde_json::json!(field))
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(format!("body: trailing data after the JSON value: {e}"))
    })?;
    Ok(value)
}

/// The request id set by the request-id layer, for audit events.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// The bearer credential of the `Authorization` header; `what` names it in
/// errors (`api key`, `identity provider JWT`). 401 when missing or malformed.
pub fn bearer<'h>(headers: &'h axum::http::HeaderMap, what: &str) -> Result<&'h str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "missing Authorization header; send `Authorization: Bearer <{what}>`"
        ))
        .with_header(header::WWW_AUTHENTICATE, "Bearer")
    })?;
    value
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the Authorization header must be `Bearer <{what}>`"
            ))
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
        })
}

/// The app calling, authenticated by `Authorization: Bearer <api key>`.
/// What it may do is asked of the policies with [`AppState::require`].
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's stored record (never its secret).
    pub key: Arc<ApiKey>,
    /// The request id, for audit events.
    pub request_id: Option<String>,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let request_id = request_id(&parts.headers);
        let presented = bearer(&parts.headers, "api key")?;
        if presented.len() > 200 {
            return Err(ApiError::unauthenticated("unknown or revoked API key"));
        }
        let hash = hash_key(presented);
        let revisions = state.store.revisions();
        if let Some(cached) = state.key_cache.get(&hash) {
            if cached.current(revisions) {
                return Ok(Caller {
                    key: cached.value,
                    request_id,
                });
            }
        }
        // Read before the lookup: a revocation applied meanwhile spoils it.
        let generation = revisions.generation();
        let key = state
            .store
            .find_api_key(&hash)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("unknown or revoked API key"))?;
        let key = Arc::new(key);
        let depends_on = [revision::bucket(&revision::api_key(&key.id))].into();
        state
            .key_cache
            .insert(hash, Tagged::new(generation, depends_on, key.clone()));
        Ok(Caller { key, request_id })
    }
}

/// The Cedar actions that guard Warden's own routes (policies/api.cedar).
pub mod route {
    /// A route's Cedar action.
    pub trait RouteAction {
        /// The action's name in the schema.
        const NAME: &'static str;
    }

    macro_rules! route_actions {
        ($($ty:ident => $name:literal),+ $(,)?) => {
            $(
                #[doc = concat!("The `", $name, "` action.")]
                pub struct $ty;
                impl RouteAction for $ty {
                    const NAME: &'static str = $name;
                }
            )+
        };
    }

    route_actions!(
        Decide => "decide",
        Import => "import",
        Export => "export",
        ManageApiKeys => "manage_api_keys",
        ReadPolicies => "read_policies",
        ReloadPolicies => "reload_policies",
        RotateSigningKeys => "rotate_signing_keys",
        MintAnonymousToken => "mint_anonymous_token",
        RefreshAnonymousToken => "refresh_anonymous_token",
        ResolveUser => "resolve_user",
    );
}

/// A caller the policies allow to perform the route action `A`. It is
/// extracted from the request head, so a key without the right scope is
/// refused (403) before any body is read.
pub struct Allowed<A>(pub Caller, pub std::marker::PhantomData<fn() -> A>);

impl<A: route::RouteAction> FromRequestParts<Arc<AppState>> for Allowed<A> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        state.require(&caller, A::NAME)?;
        Ok(Allowed(caller, std::marker::PhantomData))
    }
}
