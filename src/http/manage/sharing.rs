//! Sharing: workspace and project members, per-user asset grants, and
//! invites (created for one email, shown once, stored hashed, accepted once).

use super::{authorize, parse_id, EndUser};
use crate::decision::Authn;
use crate::domain::Id;
use crate::domain::{GrantRecord, MembershipRecord, Permission, Role, Scope};
use crate::http::auth::ClientAddr;
use crate::http::error::ApiError;
use crate::http::extract::JsonBody;
use crate::http::openapi::UserErrors;
use crate::http::AppState;
use crate::http::Routes;
use crate::store::manage::{InviteInfo, NewInvite};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::routes;

/// Lifetime of an invite unless asked otherwise: 7 days.
pub const DEFAULT_INVITE_TTL: u64 = 7 * 24 * 3600;
/// Longest lifetime of an invite: 30 days.
pub const MAX_INVITE_TTL: u64 = 30 * 24 * 3600;

/// The routes of this module.
pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(workspace_members))
        .routes(routes!(put_workspace_member, delete_workspace_member))
        .routes(routes!(project_members))
        .routes(routes!(put_project_member, delete_project_member))
        .routes(routes!(grants))
        .routes(routes!(put_grant, delete_grant))
        .routes(routes!(workspace_invites, create_workspace_invite))
        .routes(routes!(project_invites, create_project_invite))
        .routes(routes!(revoke_invite))
        .routes(routes!(accept_invite))
}

/// The members of a workspace or project.
#[derive(Serialize, ToSchema)]
struct MembersDoc {
    /// The workspace's owner (absent for a project).
    owner: Option<Id>,
    /// Members and their roles.
    members: Vec<MembershipRecord>,
}

/// A member set.
#[derive(Serialize, ToSchema)]
struct MemberDoc {
    /// The membership now.
    member: MembershipRecord,
    /// The role before, if the user was a member.
    previous_role: Option<Role>,
}

/// An asset's grants.
#[derive(Serialize, ToSchema)]
struct GrantsDoc {
    /// The grants.
    grants: Vec<GrantRecord>,
}

/// A grant set.
#[derive(Serialize, ToSchema)]
struct GrantDoc {
    /// The grant now.
    grant: GrantRecord,
    /// The permission before, if any.
    previous_permission: Option<Permission>,
}

/// Invites, never their tokens.
#[derive(Serialize, ToSchema)]
struct InvitesDoc {
    /// Newest first.
    invites: Vec<InviteInfo>,
}

/// A new invite: the only time its token is shown.
#[derive(Serialize, ToSchema)]
struct CreatedInviteDoc {
    /// Invite id (to revoke it).
    id: String,
    /// 256 random bits, URL-safe; only its SHA-256 is stored.
    token: String,
    /// Workspace or project.
    scope: Scope,
    /// Its id.
    scope_id: String,
    /// The one email that may accept it.
    email: String,
    /// The role it grants.
    role: Role,
    /// Unix milliseconds.
    expires_at: i64,
}

/// An accepted invite.
#[derive(Serialize, ToSchema)]
struct AcceptedDoc {
    /// Workspace or project.
    scope: Scope,
    /// Its id.
    scope_id: String,
    /// The user who joined.
    user: String,
    /// The role now held (a stronger one already held is kept).
    role: Role,
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

/// The workspace's owner and members (action read).
#[utoipa::path(get, path = "/v1/workspaces/{id}/members", tag = "management",
    params(("id" = String, Path, description = "The workspace's id")),
    responses((status = 200, description = "The workspace's owner and members (action read)", body = MembersDoc), UserErrors),
    security(("user_token" = [])))]
async fn workspace_members(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    members(&state, &user, Scope::Workspace, &id).await
}

/// The project's members (action read).
#[utoipa::path(get, path = "/v1/projects/{id}/members", tag = "management",
    params(("id" = String, Path, description = "The project's id")),
    responses((status = 200, description = "The project's members (action read)", body = MembersDoc), UserErrors),
    security(("user_token" = [])))]
async fn project_members(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    members(&state, &user, Scope::Project, &id).await
}

/// `PUT .../members/{user}` body.
#[derive(Debug, Deserialize, ToSchema)]
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

/// Sets a member's role (action manage_members); the owner cannot be demoted.
#[utoipa::path(put, path = "/v1/workspaces/{id}/members/{user}", tag = "management",
    params(("id" = String, Path, description = "The workspace's id"), ("user" = String, Path, description = "The user's id")),
    request_body = MemberBody,
    responses((status = 200, description = "Sets a member's role (action manage_members); the owner cannot be demoted", body = MemberDoc), UserErrors),
    security(("user_token" = [])))]
async fn put_workspace_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
    JsonBody(body): JsonBody<MemberBody>,
) -> Result<Json<Value>, ApiError> {
    put_member(&state, &user, Scope::Workspace, &id, &member, body).await
}

/// Removes a member (action manage_members); the owner cannot be removed.
#[utoipa::path(delete, path = "/v1/workspaces/{id}/members/{user}", tag = "management",
    params(("id" = String, Path, description = "The workspace's id"), ("user" = String, Path, description = "The user's id")),
    responses((status = 204, description = "Removes a member (action manage_members); the owner cannot be removed"), UserErrors),
    security(("user_token" = [])))]
async fn delete_workspace_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_member(&state, &user, Scope::Workspace, &id, &member).await
}

/// Sets a project member's role, editor or viewer (action manage_members).
#[utoipa::path(put, path = "/v1/projects/{id}/members/{user}", tag = "management",
    params(("id" = String, Path, description = "The project's id"), ("user" = String, Path, description = "The user's id")),
    request_body = MemberBody,
    responses((status = 200, description = "Sets a project member's role, editor or viewer (action manage_members)", body = MemberDoc), UserErrors),
    security(("user_token" = [])))]
async fn put_project_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
    JsonBody(body): JsonBody<MemberBody>,
) -> Result<Json<Value>, ApiError> {
    put_member(&state, &user, Scope::Project, &id, &member, body).await
}

/// Removes a project member (action manage_members).
#[utoipa::path(delete, path = "/v1/projects/{id}/members/{user}", tag = "management",
    params(("id" = String, Path, description = "The project's id"), ("user" = String, Path, description = "The user's id")),
    responses((status = 204, description = "Removes a project member (action manage_members)"), UserErrors),
    security(("user_token" = [])))]
async fn delete_project_member(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete_member(&state, &user, Scope::Project, &id, &member).await
}

/// The asset's per-user grants (action share).
#[utoipa::path(get, path = "/v1/assets/{id}/grants", tag = "management",
    params(("id" = String, Path, description = "The asset's id")),
    responses((status = 200, description = "The asset's per-user grants (action share)", body = GrantsDoc), UserErrors),
    security(("user_token" = [])))]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    /// `read` or `write`.
    permission: Permission,
}

/// Grants a user read or write on the asset, anonymous users included (action share).
#[utoipa::path(put, path = "/v1/assets/{id}/grants/{user}", tag = "management",
    params(("id" = String, Path, description = "The asset's id"), ("user" = String, Path, description = "The user's id")),
    request_body = GrantBody,
    responses((status = 200, description = "Grants a user read or write on the asset, anonymous users included (action share)", body = GrantDoc), UserErrors),
    security(("user_token" = [])))]
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

/// Removes a user's grant (action share).
#[utoipa::path(delete, path = "/v1/assets/{id}/grants/{user}", tag = "management",
    params(("id" = String, Path, description = "The asset's id"), ("user" = String, Path, description = "The user's id")),
    responses((status = 204, description = "Removes a user's grant (action share)"), UserErrors),
    security(("user_token" = [])))]
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
#[derive(Debug, Deserialize, ToSchema)]
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

/// Invite tokens are stored as their SHA-256, like API keys.
fn hash_token(token: &str) -> String {
    crate::store::api_keys::hash_key(token)
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

/// Invites one email into the workspace; the token is in this answer only (action invite).
#[utoipa::path(post, path = "/v1/workspaces/{id}/invites", tag = "management",
    params(("id" = String, Path, description = "The workspace's id")),
    request_body = InviteBody,
    responses((status = 201, description = "Invites one email into the workspace; the token is in this answer only (action invite)", body = CreatedInviteDoc), UserErrors),
    security(("user_token" = [])))]
async fn create_workspace_invite(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InviteBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    create_invite(&state, &user, Scope::Workspace, &id, body).await
}

/// Invites one email into the project; the token is in this answer only (action invite).
#[utoipa::path(post, path = "/v1/projects/{id}/invites", tag = "management",
    params(("id" = String, Path, description = "The project's id")),
    request_body = InviteBody,
    responses((status = 201, description = "Invites one email into the project; the token is in this answer only (action invite)", body = CreatedInviteDoc), UserErrors),
    security(("user_token" = [])))]
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

/// The workspace's invites, never their tokens (action invite).
#[utoipa::path(get, path = "/v1/workspaces/{id}/invites", tag = "management",
    params(("id" = String, Path, description = "The workspace's id")),
    responses((status = 200, description = "The workspace's invites, never their tokens (action invite)", body = InvitesDoc), UserErrors),
    security(("user_token" = [])))]
async fn workspace_invites(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_invites(&state, &user, Scope::Workspace, &id).await
}

/// The project's invites, never their tokens (action invite).
#[utoipa::path(get, path = "/v1/projects/{id}/invites", tag = "management",
    params(("id" = String, Path, description = "The project's id")),
    responses((status = 200, description = "The project's invites, never their tokens (action invite)", body = InvitesDoc), UserErrors),
    security(("user_token" = [])))]
async fn project_invites(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_invites(&state, &user, Scope::Project, &id).await
}

/// Revokes a pending invite (action invite on its scope).
#[utoipa::path(delete, path = "/v1/invites/{id}", tag = "management",
    params(("id" = String, Path, description = "The invite's id")),
    responses((status = 204, description = "Revokes a pending invite (action invite on its scope)"), (status = 410, description = "Already used or revoked", body = crate::http::openapi::ErrorBody), UserErrors),
    security(("user_token" = [])))]
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

/// `POST /v1/invites/accept` body. No `Debug`: it holds a secret.
#[derive(Deserialize, ToSchema)]
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

/// Accepts an invite as the signed-in holder of its email (action accept_invite); single use; rate limited per client address.
#[utoipa::path(post, path = "/v1/invites/accept", tag = "management",
    request_body = AcceptBody,
    responses((status = 200, description = "Accepts an invite as the signed-in holder of its email (action accept_invite); single use; rate limited per client address", body = AcceptedDoc), (status = 410, description = "Used, revoked or expired", body = crate::http::openapi::ErrorBody), (status = 429, description = "Rate limited", body = crate::http::openapi::ErrorBody), UserErrors),
    security(("user_token" = [])))]
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
