//! Admin routes (admin API key): bulk import/export, API keys, the loaded
//! policies, signing key rotation. Each route is a Cedar action on the service (policies/api.cedar)
//! and every change is audited in its transaction.

use super::error::ApiError;
use super::extract::route::{
    Export, Import, ManageApiKeys, ReadPolicies, ReloadPolicies, RotateSigningKeys,
};
use super::extract::{optional_body, Allowed, JsonBody};
use super::{AppState, ReloadError};
use crate::audit::Actor;
use crate::domain::World;
use crate::store::api_keys::{ApiKey, SCOPES};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The routes of this module.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/import", post(import))
        .route("/v1/admin/export", get(export))
        .route("/v1/admin/api-keys", post(create_key).get(list_keys))
        .route("/v1/admin/api-keys/{id}", delete(revoke_key))
        .route("/v1/admin/policies", get(policies))
        .route("/v1/admin/policies/reload", post(reload))
        .route("/v1/admin/keys/rotate", post(rotate_keys))
}

async fn import(
    State(state): State<Arc<AppState>>,
    Allowed(caller, _): Allowed<Import>,
    JsonBody(world): JsonBody<World>,
) -> Result<Json<Value>, ApiError> {
    let counts = state
        .store
        .import(
            &world,
            Actor::api_key(&caller.key.id),
            caller.request_id.clone(),
        )
        .await?;
    tracing::info!(key = %caller.key.id, %counts, "world imported");
    Ok(Json(json!({ "imported": counts })))
}

async fn export(
    State(state): State<Arc<AppState>>,
    _: Allowed<Export>,
) -> Result<Json<World>, ApiError> {
    Ok(Json(state.store.export().await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    scopes: Vec<String>,
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    Allowed(caller, _): Allowed<ManageApiKeys>,
    JsonBody(body): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(
            ApiError::bad_request("name: give the key a name of 1 to 200 characters")
                .with("field", json!("name")),
        );
    }
    if body.scopes.is_empty() {
        return Err(ApiError::bad_request(format!(
            "scopes: give at least one of: {}",
            SCOPES.join(", ")
        ))
        .with("field", json!("scopes")));
    }
    if let Some(bad) = body.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        return Err(ApiError::bad_request(format!(
            "scopes: unknown scope {bad:?}; expected one of: {}",
            SCOPES.join(", ")
        ))
        .with("field", json!("scopes")));
    }
    let mut scopes = body.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let (key, secret) = state
        .store
        .create_api_key(
            name,
            &scopes,
            Actor::api_key(&caller.key.id),
            caller.request_id.clone(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": key.id,
            "name": key.name,
            "scopes": key.scopes,
            "created_at": key.created_at,
            "key": secret.expose(),
        })),
    ))
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    _: Allowed<ManageApiKeys>,
) -> Result<Json<Value>, ApiError> {
    let keys: Vec<ApiKey> = state.store.list_api_keys().await?;
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Allowed(caller, _): Allowed<ManageApiKeys>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let revoked = state
        .store
        .revoke_api_key(
            &id,
            Actor::api_key(&caller.key.id),
            caller.request_id.clone(),
        )
        .await?;
    if !revoked {
        return Err(ApiError::not_found(format!(
            "no live API key with id {id:?}"
        )));
    }
    // This process forgets it at once; other replicas within KEY_CACHE_TTL.
    state.key_cache.invalidate_all();
    Ok(StatusCode::NO_CONTENT)
}

async fn policies(
    State(state): State<Arc<AppState>>,
    _: Allowed<ReadPolicies>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine();
    Ok(Json(json!({
        "version": engine.version(),
        "policies": engine.policies(),
        "last_reload": state.last_reload(),
    })))
}

async fn reload(
    State(state): State<Arc<AppState>>,
    Allowed(caller, _): Allowed<ReloadPolicies>,
) -> Result<Json<Value>, ApiError> {
    match state
        .reload(Actor::api_key(&caller.key.id), caller.request_id.clone())
        .await
    {
        Ok(status) => Ok(Json(json!(status))),
        Err(ReloadError::Invalid { serving, source }) => {
            let problems = match &source {
                crate::policy::LoadError::Invalid { problems } => json!(problems),
                other => {
                    json!([{"file": "", "line": 0, "column": 0, "message": other.to_string()}])
                }
            };
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_policies",
                format!("the new policy set was refused; version {serving} keeps serving"),
            )
            .with("problems", problems)
            .with("version", json!(serving)))
        }
        Err(ReloadError::Store(e)) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// Publish the new key this long before it signs (default 0).
    #[serde(default)]
    publish_lead_seconds: u64,
}

/// Longest publish lead accepted (a week).
const MAX_PUBLISH_LEAD: u64 = 7 * 24 * 3600;

/// `POST /v1/admin/keys/rotate` (`{publish_lead_seconds?}`): new anonymous
/// tokens are signed with a new key (after the lead, during which it is
/// only published); the old keys stay in the JWKS until their last token
/// has expired.
async fn rotate_keys(
    State(state): State<Arc<AppState>>,
    Allowed(caller, _): Allowed<RotateSigningKeys>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: RotateBody = optional_body(&body)?;
    if body.publish_lead_seconds > MAX_PUBLISH_LEAD {
        return Err(ApiError::bad_request(format!(
            "publish_lead_seconds: at most {MAX_PUBLISH_LEAD} (a week), got {}",
            body.publish_lead_seconds
        ))
        .with("field", json!("publish_lead_seconds")));
    }
    let key = state
        .identity
        .keys
        .rotate(
            std::time::Duration::from_secs(body.publish_lead_seconds),
            Actor::api_key(&caller.key.id),
            caller.request_id.clone(),
        )
        .await?;
    Ok(Json(json!({
        "kid": key.kid,
        "signs_from": key.signs_from,
        "jwks": state.identity.keys.jwks().await,
    })))
}
