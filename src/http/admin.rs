//! Admin routes (admin API key): bulk import/export, API keys, the loaded
//! policies, signing key rotation. Each route is a Cedar action on the service (policies/api.cedar)
//! and every change is audited in its transaction.

use super::error::ApiError;
use super::extract::route::{
    Export, Import, ManageApiKeys, ReadPolicies, ReloadPolicies, RotateSigningKeys,
};
use super::extract::{optional_body, Allowed, JsonBody};
use super::openapi::KeyErrors;
use super::{AppState, ReloadError};
use crate::audit::Actor;
use crate::domain::World;
use crate::store::api_keys::{ApiKey, SCOPES};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(import))
        .routes(routes!(export))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(policies))
        .routes(routes!(reload))
        .routes(routes!(rotate_keys))
}

/// Any JSON object.
type Object = serde_json::Map<String, Value>;

/// What an import wrote.
#[derive(Serialize, ToSchema)]
struct ImportDoc {
    /// Records per kind.
    imported: Object,
}

/// A new API key: the only time its secret is shown.
#[derive(Serialize, ToSchema)]
struct CreatedKeyDoc {
    id: String,
    name: String,
    scopes: Vec<String>,
    /// Unix milliseconds.
    created_at: i64,
    /// The secret; only its SHA-256 is stored.
    key: String,
}

/// The API keys (never their secrets).
#[derive(Serialize, ToSchema)]
struct KeysDoc {
    keys: Vec<Object>,
}

/// The loaded policy set.
#[derive(Serialize, ToSchema)]
struct PoliciesDoc {
    /// Content hash of the schema and policy files.
    version: String,
    /// `@id`, file and effect of every policy.
    policies: Vec<Object>,
    /// The outcome of the last reload, if any.
    last_reload: Option<Object>,
}

/// A rotation's outcome.
#[derive(Serialize, ToSchema)]
struct RotatedDoc {
    /// The new key's id.
    kid: String,
    /// When it starts signing (Unix milliseconds).
    signs_from: i64,
    /// The published key set.
    jwks: Object,
}

/// Imports a world document in one transaction: all or nothing, idempotent
/// upserts, every reference checked.
#[utoipa::path(post, path = "/v1/admin/import", tag = "admin", request_body = World,
    responses((status = 200, description = "Imported", body = ImportDoc),
        (status = 422, description = "Refused; nothing was written; `problems` lists why", body = crate::http::openapi::ErrorBody),
        KeyErrors),
    security(("api_key" = [])))]
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

/// The whole store as one world document.
#[utoipa::path(get, path = "/v1/admin/export", tag = "admin",
    responses((status = 200, description = "The world", body = World), KeyErrors),
    security(("api_key" = [])))]
async fn export(
    State(state): State<Arc<AppState>>,
    _: Allowed<Export>,
) -> Result<Json<World>, ApiError> {
    Ok(Json(state.store.export().await?))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// What it is for (1 to 200 characters).
    name: String,
    /// `check` and/or `admin`.
    scopes: Vec<String>,
}

/// Creates an API key; its secret is in this answer only.
#[utoipa::path(post, path = "/v1/admin/api-keys", tag = "admin", request_body = NewKey,
    responses((status = 201, description = "Created", body = CreatedKeyDoc), KeyErrors),
    security(("api_key" = [])))]
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

/// Lists the API keys.
#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "admin",
    responses((status = 200, description = "The keys", body = KeysDoc), KeyErrors),
    security(("api_key" = [])))]
async fn list_keys(
    State(state): State<Arc<AppState>>,
    _: Allowed<ManageApiKeys>,
) -> Result<Json<Value>, ApiError> {
    let keys: Vec<ApiKey> = state.store.list_api_keys().await?;
    Ok(Json(json!({ "keys": keys })))
}

/// Revokes an API key.
#[utoipa::path(delete, path = "/v1/admin/api-keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No live key with this id", body = crate::http::openapi::ErrorBody), KeyErrors),
    security(("api_key" = [])))]
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
    Ok(StatusCode::NO_CONTENT)
}

/// The loaded policies, their version and the last reload.
#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin",
    responses((status = 200, description = "The policy set", body = PoliciesDoc), KeyErrors),
    security(("api_key" = [])))]
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

/// Reloads the policies and schema from disk; an invalid set is refused and
/// the last good one keeps serving.
#[utoipa::path(post, path = "/v1/admin/policies/reload", tag = "admin",
    responses((status = 200, description = "Reloaded", body = Object),
        (status = 422, description = "Refused: `problems` says where; the last good set serves", body = crate::http::openapi::ErrorBody),
        KeyErrors),
    security(("api_key" = [])))]
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

/// Optional body of a rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
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
#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin",
    request_body(content = Option<RotateBody>, description = "Optional publish lead"),
    responses((status = 200, description = "Rotated", body = RotatedDoc), KeyErrors),
    security(("api_key" = [])))]
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
