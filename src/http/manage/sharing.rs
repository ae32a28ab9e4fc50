//! Sharing: workspace and project members, per-user asset grants, and
//! invites (created for one email, shown once, stored hashed, accepted once).

use super::{authorize, parse_id, EndUser};
use crate::decision::Authn;
use crate::domain::{GrantRecord, MembershipRecord, Permission, Role, Scope};
use crate::http::auth::ClientAddr;
use crate::http::error::ApiError;
use crate::http::extract::JsonBody;
use crate::http::AppState;
use crate::store::manage::{InviteInfo, NewInvite};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Lifetime of an invite unless asked otherwise: 7 days.
pub const DEFAULT_INVITE_TTL: u64 = 7 * 24 * 3600;
/// Longest lifetime of an invite: 30 days.
pub const MAX_INVITE_TTL: u64 = 30 * 24 * 3600;

/// The routes of this module.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/workspaces/{id}/members", get(workspace_members))
        .route(
            "/v1/workspaces/{id}/members/{user}",
            put(put_workspace_member).delete(delete_workspace_member),
        )
        .route("/v1/projects/{id}/members", get(project_members))
        .route(
            "/v1/projects/{id}/members/{user}",
            put(put_project_member).delete(delete_project_member),
        )
        .route("/v1/assets/{id}/grants", get(grants))
        .route(
            "/v1/assets/{id}/grants/{user}",
            put(put_grant).delete(delete_grant),
        )
        .route(
            "/v1/workspaces/{id}/invites",
            get(workspace_invites).post(create_workspace_invite),
        )
        .route(
            "/v1/projects/{id}/invites",
            get(project_invites).post(create_project_invite),
        )
        .route("/v1/invites/{id}", delete(revoke_invite))
        .route("/v1/invites/accept", post(accept_invite))
}

fn type_of(scope: Scope) -> &'static str {
    match scope {
        Scope::Workspace => "Workspace",
        Scope::Project => "Project",
    }
}

async fn members(
    state: &AppState,
    user: &EndUser,
    scope: Scope,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    authorize(state, user, "read", type_of(scope), id, Map::new()).await?;
    let members = state.store.members(scope, id).await?;
    let owner = match scope {
        Scope::Workspace => state.store.workspace(id).await?.map(|w| w.owner),
        Scope::Project => None,
    };
    Ok(Json(json!({"members": members, "owner": owner})))
}

async fn workspace_members(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    members(&state, &user, Scope::Workspace, &id).await
}

async fn project_members(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    members(&state, &user, Scope::Project, &id).await
}

/// `PUT .../members/{user}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    /// `owner`, `editor` or `viewer` (projects: `editor` or `viewer`).
    role: Role,
}

/// The workspace's owner (the owner field) is its last line of ownership:
/// never removed or demoted as a member; ownership moves by
/// `PATCH /v1/workspaces/{id} {"owner": ...}`.
async fn refuse_owner_change(
    state: &AppState,
    scope: Scope,
    id: &str,
    member: &str,
) -> Result<(), ApiError> {
    if scope != Scope::Workspace {
        return Ok(());
    }
    match state.store.workspace(id).await? {
        Some(w) if w.owner.as_str() == member => Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_owner",
            format!(
                "{member} owns workspace {id} and cannot be removed or demoted; transfer ownership first with PATCH /v1/workspaces/{id} {{\"owner\": \"...\"}}"
            ),
        )),
        _ => Ok(()),
    }
}

async fn put_member(
    state: &AppState,
    user: &EndUser,
    scope: Scope,
    id: &str,
    member: &str,
    body: MemberBody,
) -> Result<Json<Value>, ApiError> {
    let record = MembershipRecord {
        user: parse_id(member, "user")?,
        scope,
        id: parse_id(id, "id")?,
        role: body.role,
    };
    if let Some(problem) = record.problem() {
        return Err(ApiError::bad_request(format!("role: {problem}")).with("field", json!("role")));
    }
    authorize(
        state,
        user,
        "manage_members",
        type_of(scope),
        id,
        Map::new(),
    )
    .await?;
    refuse_owner_change(state, scope, id, member).await?;
    let before = state.store.put_member(&record, &user.change()).await?;
    Ok(Json(json!({"member": record, "previous_role": before})))
}

async fn delete_member(
    state: &AppState,
    user: &EndUser,
    scope: Scope,
    id: &str,
    member: &str,
) -> Result<StatusCode, ApiError> {
    parse_id(member, "user")?;
    authorize(
        state,
        user,
        "manage_members",
        type_of(scope),
        id,
        Map::new(),
    )
    .await?;
    refuse_owner_change(state, scope, id, member).await?;
    state
        .store
        .delete_member(scope, id, member, &user.change())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_workspace_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
    JsonBody(body): JsonBody<MemberBody>,
) -> Result<Json<Value>, ApiError> {
    put_member(&state, &user, Scope::Workspace, &id, &member, body).await
}

async fn delete_workspace_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_member(&state, &user, Scope::Workspace, &id, &member).await
}

async fn put_project_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
    JsonBody(body): JsonBody<MemberBody>,
) -> Result<Json<Value>, ApiError> {
    put_member(&state, &user, Scope::Project, &id, &member, body).await
}

async fn delete_project_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_member(&state, &user, Scope::Project, &id, &member).await
}

async fn grants(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &user, "share", "Asset", &id, Map::new()).await?;
    let grants = state.store.grants(&id).await?;
    Ok(Json(json!({"grants": grants})))
}

/// `PUT /v1/assets/{id}/grants/{user}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    /// `read` or `write`.
    permission: Permission,
}

async fn put_grant(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, grantee)): Path<(String, String)>,
    JsonBody(body): JsonBody<GrantBody>,
) -> Result<Json<Value>, ApiError> {
    let record = GrantRecord {
        user: parse_id(&grantee, "user")?,
        asset: parse_id(&id, "id")?,
        permission: body.permission,
    };
    authorize(&state, &user, "share", "Asset", &id, Map::new()).await?;
    let before = state.store.put_grant(&record, &user.change()).await?;
    Ok(Json(
        json!({"grant": record, "previous_permission": before}),
    ))
}

async fn delete_grant(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, grantee)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    parse_id(&grantee, "user")?;
    authorize(&state, &user, "share", "Asset", &id, Map::new()).await?;
    state
        .store
        .delete_grant(&id, &grantee, &user.change())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../invites` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    /// The one email that may accept it (compared case-insensitively).
    email: String,
    /// The role it grants (projects: `editor` or `viewer`).
    role: Role,
    /// Lifetime in seconds (default 7 days, at most 30 days).
    #[serde(default)]
    expires_in: Option<u64>,
}

fn normalize_email(raw: &str, field: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 320
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::bad_request(format!(
            "{field}: not an email address like name@example.com"
        ))
        .with("field", json!(field)))
    }
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn create_invite(
    state: &AppState,
    user: &EndUser,
    scope: Scope,
    id: &str,
    body: InviteBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let email = normalize_email(&body.email, "email")?;
    let ttl = body.expires_in.unwrap_or(DEFAULT_INVITE_TTL);
    if ttl == 0 || ttl > MAX_INVITE_TTL {
        return Err(ApiError::bad_request(format!(
            "expires_in: seconds between 1 and {MAX_INVITE_TTL} (30 days), got {ttl}"
        ))
        .with("field", json!("expires_in")));
    }
    if scope == Scope::Project && body.role == Role::Owner {
        return Err(ApiError::bad_request(
            "role: projects have no owner role (ownership comes from the workspace); use editor or viewer",
        )
        .with("field", json!("role")));
    }
    let scope_id = parse_id(id, "id")?;
    authorize(state, user, "invite", type_of(scope), id, Map::new()).await?;
    // 256 random bits, shown once; only the hash is kept.
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!(
        "winv_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let expires_at =
        crate::store::now_millis() + i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
    let invite = NewInvite {
        id: format!("inv_{}", uuid::Uuid::new_v4().simple()),
        token_hash: hash_token(&token),
        scope,
        scope_id,
        email,
        role: body.role,
        expires_at,
    };
    state.store.create_invite(&invite, &user.change()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": invite.id,
            "token": token,
            "scope": scope,
            "scope_id": id,
            "email": invite.email,
            "role": invite.role,
            "expires_at": expires_at,
        })),
    ))
}

async fn create_workspace_invite(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create_invite(&state, &user, Scope::Workspace, &id, body).await
}

async fn create_project_invite(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create_invite(&state, &user, Scope::Project, &id, body).await
}

async fn list_invites(
    state: &AppState,
    user: &EndUser,
    scope: Scope,
    id: &str,
) -> Result<Json<Value>, ApiError> {
    authorize(state, user, "invite", type_of(scope), id, Map::new()).await?;
    let invites: Vec<InviteInfo> = state.store.invites(scope, id).await?;
    Ok(Json(json!({"invites": invites})))
}

async fn workspace_invites(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_invites(&state, &user, Scope::Workspace, &id).await
}

async fn project_invites(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_invites(&state, &user, Scope::Project, &id).await
}

async fn revoke_invite(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    parse_id(&id, "id")?;
    let (scope, scope_id) = state
        .store
        .invite_scope(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no invite {id}")))?;
    authorize(
        &state,
        &user,
        "invite",
        type_of(scope),
        &scope_id,
        Map::new(),
    )
    .await?;
    state.store.revoke_invite(&id, &user.change()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/invites/accept` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    /// The invite token, as created.
    token: String,
}

/// The accepting user's email as the policies see it: the verified email of
/// the provider's token, or the email on record of an anonymous user (set
/// by the app); lower-cased, "" when there is none.
async fn caller_email(state: &AppState, user: &EndUser) -> Result<String, ApiError> {
    let email = match user.authn {
        Authn::OidcToken => {
            let claims = state.identity.verify_oidc(&user.token).await?;
            claims
                .email
                .filter(|_| claims.email_verified != Some(false))
        }
        _ => state
            .store
            .user_info(&user.user_id)
            .await?
            .and_then(|u| u.email),
    };
    Ok(email.map(|e| e.trim().to_lowercase()).unwrap_or_default())
}

async fn accept_invite(
    State(state): State<Arc<AppState>>,
    client: ClientAddr,
    user: EndUser,
    JsonBody(body): JsonBody<AcceptBody>,
) -> Result<Json<Value>, ApiError> {
    crate::http::auth::rate_limit(&state, "invite-accept", &client).await?;
    if body.token.len() > 200 {
        return Err(
            ApiError::bad_request("token: not an invite token").with("field", json!("token"))
        );
    }
    let invite = state
        .store
        .invite_by_token(&hash_token(&body.token))
        .await??;
    let mut context = Map::new();
    context.insert(
        "caller_email".into(),
        json!(caller_email(&state, &user).await?),
    );
    context.insert("invite_email".into(), json!(invite.email));
    authorize(
        &state,
        &user,
        "accept_invite",
        type_of(invite.scope),
        &invite.scope_id,
        context,
    )
    .await?;
    let role = state
        .store
        .accept_invite(&invite, &user.user_id, &user.change())
        .await?;
    Ok(Json(json!({
        "scope": invite.scope,
        "scope_id": invite.scope_id,
        "user": user.user_id,
        "role": role,
    })))
}
