//! Identity routes (CONTRACT §5): anonymous tokens (mint and refresh),
//! `resolve-user` (sign-in, linking and the §4 upgrade), and Warden's JWKS.
//!
//! These are the end user's own endpoints, called by the app's front end
//! or back end with the user's tokens, not with an API key; what a token
//! proves is checked by `identity`, and every change is a store transaction
//! with its audit event.

use super::error::ApiError;
use super::extract::route::{MintAnonymousToken, RefreshAnonymousToken, ResolveUser, RouteAction};
use super::extract::{bearer, optional_body, request_id};
use super::openapi::PublicErrors;
use super::AppState;
use crate::identity::anonymous::{self, AnonymousClaims, MintedToken};
use crate::identity::TokenError;
use crate::store::identity::{AnonymousProof, NewAnonymous, Profile, TokenRecord};
use crate::store::rate_limits::RateDecision;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Window of the public endpoints' rate limit.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The routes of this module.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(anonymous))
        .routes(routes!(resolve_user))
        .routes(routes!(jwks))
}

/// The client's address: the peer, or the last `X-Forwarded-For` entry when
/// the server is told it sits behind a proxy that writes it.
pub struct ClientAddr(pub String);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if state.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .rfind(|v| !v.is_empty());
            if let Some(addr) = forwarded {
                return Ok(ClientAddr(addr.chars().take(64).collect()));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(ClientAddr(peer))
    }
}

/// Optional body of `POST /api/auth/anonymous`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AnonymousBody {
    /// The token to refresh.
    #[serde(default)]
    token: Option<String>,
}

/// A new or refreshed anonymous token.
#[derive(Serialize, ToSchema)]
struct TokenResponse {
    /// The ES256 JWT (shown once; only its hash is stored).
    token: String,
    /// The anonymous user's canonical id.
    user_id: String,
    /// RFC 3339.
    expires_at: String,
}

fn rfc3339(unix_seconds: u64) -> String {
    let at = i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
    at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default()
}

/// Asks the policies whether this client may call the public identity
/// route `action` (policies/api.cedar); 403 when not.
fn allowed(state: &AppState, client: &ClientAddr, action: &str) -> Result<(), ApiError> {
    if state.engine().authorize_client(&client.0, action).allow {
        Ok(())
    } else {
        tracing::info!(client = %client.0, action, "identity route refused by policy");
        Err(ApiError::forbidden(format!(
            "the policies do not allow {action} on this server"
        )))
    }
}

/// Counts a hit of `client` on the public `route` (in the database, so
/// replicas count together); 429 over `--anonymous-rate-limit` a minute.
pub(crate) async fn rate_limit(
    state: &AppState,
    route: &str,
    client: &ClientAddr,
) -> Result<(), ApiError> {
    let bucket = format!("{route}:{}", client.0);
    match state
        .store
        .hit(&bucket, state.anonymous_rate_limit, RATE_WINDOW)
        .await?
    {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited { retry_after } => {
            metrics::counter!("warden_rate_limited_total", "route" => route.to_string())
                .increment(1);
            tracing::info!(client = %client.0, route, "rate limited");
            Err(ApiError::rate_limited(retry_after))
        }
    }
}

async fn mint(state: &AppState, user: &str) -> Result<MintedToken, ApiError> {
    let (kid, key) = state.identity.keys.signer().await?;
    let settings = &state.identity.settings;
    anonymous::mint(
        user,
        (&kid, &key),
        &settings.issuer,
        &settings.audience,
        settings.token_ttl,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "cannot sign an anonymous token");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the cause",
        )
    })
}

fn record(token: &MintedToken) -> TokenRecord {
    TokenRecord {
        jti: token.jti.clone(),
        hash: token.hash.clone(),
        expires_at: token.expires_at,
    }
}

/// `POST /api/auth/anonymous`: without a body, a new anonymous user with
/// its own private workspace and project; with `{token}`, a refresh that
/// accepts only the token last issued to that user.
#[utoipa::path(post, path = "/api/auth/anonymous", tag = "identity",
    request_body(content = Option<AnonymousBody>, description = "Empty: a new anonymous user; `{token}`: refresh"),
    responses((status = 201, description = "A new anonymous user, its workspace, project and token", body = TokenResponse),
        (status = 200, description = "A refreshed token", body = TokenResponse),
        PublicErrors))]
async fn anonymous(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: AnonymousBody = optional_body(&body)?;
    let request_id = request_id(&headers);
    let (status, user, token) = match body.token {
        None => {
            allowed(&state, &client, MintAnonymousToken::NAME)?;
            rate_limit(&state, "anonymous", &client).await?;
            let ids = NewAnonymous {
                user: format!("u_{}", uuid::Uuid::new_v4().simple()),
                workspace: format!("w_{}", uuid::Uuid::new_v4().simple()),
                project: format!("p_{}", uuid::Uuid::new_v4().simple()),
            };
            let token = mint(&state, &ids.user).await?;
            state
                .store
                .create_anonymous(&ids, &record(&token), request_id)
                .await?;
            metrics::counter!("warden_anonymous_users_total").increment(1);
            (StatusCode::CREATED, ids.user, token)
        }
        Some(presented) => {
            allowed(&state, &client, RefreshAnonymousToken::NAME)?;
            // Verified before anything is counted or written.
            let claims: AnonymousClaims = state
                .identity
                .verify_anonymous(&presented)
                .await
                .map_err(|e| ApiError::from(e).with("field", serde_json::json!("token")))?;
            rate_limit(&state, "anonymous", &client).await?;
            let proof = AnonymousProof {
                user: claims.sub.clone(),
                jti: claims.jti.clone(),
                hash: anonymous::hash_token(&presented),
            };
            let token = mint(&state, &claims.sub).await?;
            if !state
                .store
                .refresh_anonymous(&proof, &record(&token), request_id)
                .await?
            {
                tracing::warn!(user = %claims.sub, jti = %claims.jti, "refresh refused: not the live token (replayed, or the user signed in)");
                return Err(
                    ApiError::from(TokenError::Revoked).with("field", serde_json::json!("token"))
                );
            }
            (StatusCode::OK, claims.sub, token)
        }
    };
    let expires_at = rfc3339(token.expires_at);
    // The mint and the refresh are writes: like every write they answer
    // with a revision token, so the app's next check can ask for facts at
    // least this fresh on any replica (the new user's workspace included).
    let revision = state.store.revisions().seen().to_string();
    Ok((
        status,
        [
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static(super::REVISION_HEADER),
                revision,
            ),
        ],
        Json(TokenResponse {
            token: token.token,
            user_id: user,
            expires_at,
        }),
    ))
}

/// Optional body of `POST /api/auth/resolve-user`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    /// The anonymous token of the user signing up, if any.
    #[serde(default)]
    anonymous_token: Option<String>,
}

/// The canonical user of the provider's token.
#[derive(Serialize, ToSchema)]
struct ResolveResponse {
    /// Warden's id for this person (the IdP's `external_id`).
    user_id: String,
}

/// A JSON Web Key Set.
#[derive(Serialize, ToSchema)]
struct JwksDoc {
    /// ES256 P-256 public keys; `kid` is the RFC 7638 thumbprint.
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /api/auth/resolve-user`: the canonical user of the provider's
/// token, created or linked as needed, profile synced; with
/// `anonymous_token`, that anonymous user signs up (CONTRACT §4).
#[utoipa::path(post, path = "/api/auth/resolve-user", tag = "identity",
    request_body(content = Option<ResolveBody>, description = "Optional: the anonymous token of the user signing up"),
    responses((status = 200, description = "The canonical user", body = ResolveResponse),
        (status = 409, description = "The identity conflicts with stored links", body = crate::http::openapi::ErrorBody),
        PublicErrors),
    security(("user_token" = [])))]
async fn resolve_user(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ResolveResponse>, ApiError> {
    allowed(&state, &client, ResolveUser::NAME)?;
    let token = bearer(&headers, "identity provider JWT")?;
    let claims = state.identity.verify_oidc(token).await?;
    let body: ResolveBody = optional_body(&body)?;
    let proof = match &body.anonymous_token {
        Some(anonymous_token) => {
            let anon = state
                .identity
                .verify_anonymous(anonymous_token)
                .await
                .map_err(|e| {
                    ApiError::from(e).with("field", serde_json::json!("anonymous_token"))
                })?;
            Some(AnonymousProof {
                user: anon.sub,
                jti: anon.jti,
                hash: anonymous::hash_token(anonymous_token),
            })
        }
        None => None,
    };
    let provider = state.identity.provider().unwrap_or_default().to_string();
    let profile = Profile {
        subject: claims.sub.clone(),
        external_id: claims.external_id.clone(),
        email: claims.email.clone(),
        name: claims.name.clone(),
        username: claims.username.clone(),
        avatar_url: claims.avatar_url().map(String::from),
    };
    let resolved = state
        .store
        .resolve_user(&provider, &profile, proof.as_ref(), request_id(&headers))
        .await?;
    if let Some(summary) = &resolved.upgrade {
        tracing::info!(user = %resolved.user_id, path = %summary["path"], "anonymous user signed up; content secured");
    }
    if claims.external_id.as_deref() != Some(resolved.user_id.as_str()) {
        if let Some(idp) = &state.identity.idp {
            idp.set_external_id(claims.sub.clone(), resolved.user_id.clone());
        }
    }
    Ok(Json(ResolveResponse {
        user_id: resolved.user_id,
    }))
}

/// `GET /.well-known/jwks.json`: Warden's published public keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "Warden's public signing keys", body = JwksDoc)))]
async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = state.identity.keys.jwks().await;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        body.to_string(),
    )
}
