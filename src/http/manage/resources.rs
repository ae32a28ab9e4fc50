//! Workspaces, projects and assets: create, read, list, update (visibility,
//! public access, owner, moves), delete, and each one's audit trail.
//!
//! Lists show what the caller may `read`, decided by the policies over
//! candidates drawn from the caller's own relations (owner, member,
//! grantee): a resource reachable only by a public link is never listed.

use super::{authorize, parse_id, EndUser, Page, Query};
use crate::domain::{AssetRecord, Id, ProjectRecord, PublicAccess, Visibility, WorkspaceRecord};
use crate::http::error::ApiError;
use crate::http::extract::JsonBody;
use crate::http::openapi::{AuditEntry, Page as PageDoc, UserErrors};
use crate::http::AppState;
use crate::http::Routes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace, delete_workspace))
        .routes(routes!(workspace_audit))
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(project_audit))
        .routes(routes!(list_assets, create_asset))
        .routes(routes!(get_asset, update_asset, delete_asset))
        .routes(routes!(asset_audit))
}

fn new_id(prefix: &str) -> Result<Id, ApiError> {
    parse_id(&format!("{prefix}_{}", uuid::Uuid::new_v4().simple()), "id")
}

fn no_context() -> Map<String, Value> {
    Map::new()
}

/// `POST /v1/workspaces` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWorkspace {
    /// The app's own id (default: generated).
    #[serde(default)]
    id: Option<String>,
    /// Default private.
    #[serde(default)]
    visibility: Visibility,
}

/// Creates a workspace owned by the caller (action create_workspace on the caller).
#[utoipa::path(post, path = "/v1/workspaces", tag = "management",
    request_body = NewWorkspace,
    responses((status = 201, description = "Creates a workspace owned by the caller (action create_workspace on the caller)", body = WorkspaceRecord), UserErrors),
    security(("user_token" = [])))]
async fn create_workspace(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    JsonBody(body): JsonBody<NewWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceRecord>), ApiError> {
    authorize(
        &state,
        &user,
        "create_workspace",
        "User",
        &user.user_id,
        no_context(),
    )
    .await?;
    let id = match &body.id {
        Some(raw) => parse_id(raw, "id")?,
        None => new_id("w")?,
    };
    let record = WorkspaceRecord {
        id,
        owner: parse_id(&user.user_id, "owner")?,
        visibility: body.visibility,
    };
    state
        .store
        .create_workspace(&record, &user.change())
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// A workspace (action read).
#[utoipa::path(get, path = "/v1/workspaces/{id}", tag = "management",
    params(("id" = String, Path, description = "The workspace's id")),
    responses((status = 200, description = "A workspace (action read)", body = WorkspaceRecord), UserErrors),
    security(("user_token" = [])))]
async fn get_workspace(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<WorkspaceRecord>, ApiError> {
    authorize(&state, &user, "read", "Workspace", &id, no_context()).await?;
    let record = state.store.workspace(&id).await?;
    record
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no workspace {id}")))
}

/// `PATCH /v1/workspaces/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WorkspaceChange {
    /// New visibility (action `share`).
    #[serde(default)]
    visibility: Option<Visibility>,
    /// New owner, an existing user (action `manage_members`); the previous
    /// owner stays a member with role owner.
    #[serde(default)]
    owner: Option<String>,
}

/// Changes visibility (share) or owner (manage_members).
#[utoipa::path(patch, path = "/v1/workspaces/{id}", tag = "management",
    params(("id" = String, Path, description = "The workspace's id")),
    request_body = WorkspaceChange,
    responses((status = 200, description = "Changes visibility (share) or owner (manage_members)", body = WorkspaceRecord), UserErrors),
    security(("user_token" = [])))]
async fn update_workspace(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WorkspaceChange>,
) -> Result<Json<WorkspaceRecord>, ApiError> {
    if body.visibility.is_none() && body.owner.is_none() {
        return Err(nothing_to_change("visibility, owner"));
    }
    if body.visibility.is_some() {
        authorize(&state, &user, "share", "Workspace", &id, no_context()).await?;
    }
    if body.owner.is_some() {
        authorize(
            &state,
            &user,
            "manage_members",
            "Workspace",
            &id,
            no_context(),
        )
        .await?;
    }
    let before = state
        .store
        .workspace(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no workspace {id}")))?;
    let mut after = before.clone();
    if let Some(visibility) = body.visibility {
        after.visibility = visibility;
    }
    if let Some(owner) = &body.owner {
        after.owner = parse_id(owner, "owner")?;
    }
    state
        .store
        .update_workspace(&before, &after, &user.change())
        .await?;
    Ok(Json(after))
}

fn nothing_to_change(fields: &str) -> ApiError {
    ApiError::bad_request(format!(
        "body: nothing to change; give at least one of: {fields}"
    ))
    .with("field", json!("body"))
}

/// Deletes a workspace and everything in it (action delete).
#[utoipa::path(delete, path = "/v1/workspaces/{id}", tag = "management",
    params(("id" = String, Path, description = "The workspace's id")),
    responses((status = 204, description = "Deletes a workspace and everything in it (action delete)"), UserErrors),
    security(("user_token" = [])))]
async fn delete_workspace(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &user, "delete", "Workspace", &id, no_context()).await?;
    let before = state.store.workspace(&id).await?;
    state
        .store
        .delete_resource("Workspace", &id, json!(before), &user.change())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/projects` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProject {
    /// The workspace it goes in (action `create_project` there).
    workspace: String,
    /// The app's own id (default: generated).
    #[serde(default)]
    id: Option<String>,
    /// Default private.
    #[serde(default)]
    visibility: Visibility,
}

/// Creates a project in a workspace (action create_project there).
#[utoipa::path(post, path = "/v1/projects", tag = "management",
    request_body = NewProject,
    responses((status = 201, description = "Creates a project in a workspace (action create_project there)", body = ProjectRecord), UserErrors),
    security(("user_token" = [])))]
async fn create_project(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    JsonBody(body): JsonBody<NewProject>,
) -> Result<(StatusCode, Json<ProjectRecord>), ApiError> {
    let workspace = parse_id(&body.workspace, "workspace")?;
    authorize(
        &state,
        &user,
        "create_project",
        "Workspace",
        workspace.as_str(),
        no_context(),
    )
    .await?;
    let id = match &body.id {
        Some(raw) => parse_id(raw, "id")?,
        None => new_id("p")?,
    };
    let record = ProjectRecord {
        id,
        workspace,
        visibility: body.visibility,
    };
    state.store.create_project(&record, &user.change()).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// A project (action read).
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "management",
    params(("id" = String, Path, description = "The project's id")),
    responses((status = 200, description = "A project (action read)", body = ProjectRecord), UserErrors),
    security(("user_token" = [])))]
async fn get_project(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<ProjectRecord>, ApiError> {
    authorize(&state, &user, "read", "Project", &id, no_context()).await?;
    let record = state.store.project(&id).await?;
    record
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no project {id}")))
}

/// `PATCH /v1/projects/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProjectChange {
    /// New visibility (action `share`).
    #[serde(default)]
    visibility: Option<Visibility>,
    /// Move to this workspace: `delete` on the project and
    /// `create_project` on the target.
    #[serde(default)]
    workspace: Option<String>,
}

/// Changes visibility (share) or moves the project (delete here, create_project there).
#[utoipa::path(patch, path = "/v1/projects/{id}", tag = "management",
    params(("id" = String, Path, description = "The project's id")),
    request_body = ProjectChange,
    responses((status = 200, description = "Changes visibility (share) or moves the project (delete here, create_project there)", body = ProjectRecord), UserErrors),
    security(("user_token" = [])))]
async fn update_project(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProjectChange>,
) -> Result<Json<ProjectRecord>, ApiError> {
    if body.visibility.is_none() && body.workspace.is_none() {
        return Err(nothing_to_change("visibility, workspace"));
    }
    let target = body
        .workspace
        .as_deref()
        .map(|w| parse_id(w, "workspace"))
        .transpose()?;
    if body.visibility.is_some() {
        authorize(&state, &user, "share", "Project", &id, no_context()).await?;
    }
    if let Some(target) = &target {
        authorize(&state, &user, "delete", "Project", &id, no_context()).await?;
        authorize(
            &state,
            &user,
            "create_project",
            "Workspace",
            target.as_str(),
            no_context(),
        )
        .await?;
    }
    let before = state
        .store
        .project(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project {id}")))?;
    let mut after = before.clone();
    if let Some(visibility) = body.visibility {
        after.visibility = visibility;
    }
    if let Some(target) = target {
        after.workspace = target;
    }
    state
        .store
        .update_project(&before, &after, &user.change())
        .await?;
    Ok(Json(after))
}

/// Deletes a project and its assets (action delete).
#[utoipa::path(delete, path = "/v1/projects/{id}", tag = "management",
    params(("id" = String, Path, description = "The project's id")),
    responses((status = 204, description = "Deletes a project and its assets (action delete)"), UserErrors),
    security(("user_token" = [])))]
async fn delete_project(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &user, "delete", "Project", &id, no_context()).await?;
    let before = state.store.project(&id).await?;
    state
        .store
        .delete_resource("Project", &id, json!(before), &user.change())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/assets` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAsset {
    /// The project it goes in (action `create_asset` there).
    project: String,
    /// The app's own id (default: generated).
    #[serde(default)]
    id: Option<String>,
    /// Default private.
    #[serde(default)]
    visibility: Visibility,
    /// Default none: public write is never on by default.
    #[serde(default)]
    public_access: PublicAccess,
}

/// Creates an asset in a project, with the app's own id if given (action create_asset there).
#[utoipa::path(post, path = "/v1/assets", tag = "management",
    request_body = NewAsset,
    responses((status = 201, description = "Creates an asset in a project, with the app's own id if given (action create_asset there)", body = AssetRecord), UserErrors),
    security(("user_token" = [])))]
async fn create_asset(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    JsonBody(body): JsonBody<NewAsset>,
) -> Result<(StatusCode, Json<AssetRecord>), ApiError> {
    let project = parse_id(&body.project, "project")?;
    authorize(
        &state,
        &user,
        "create_asset",
        "Project",
        project.as_str(),
        no_context(),
    )
    .await?;
    let workspace = state
        .store
        .workspace_of("Project", project.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project {project}")))?;
    let id = match &body.id {
        Some(raw) => parse_id(raw, "id")?,
        None => new_id("a")?,
    };
    let record = AssetRecord {
        id,
        project,
        visibility: body.visibility,
        public_access: body.public_access,
    };
    state
        .store
        .create_asset(&record, &workspace, &user.change())
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// An asset (action read).
#[utoipa::path(get, path = "/v1/assets/{id}", tag = "management",
    params(("id" = String, Path, description = "The asset's id")),
    responses((status = 200, description = "An asset (action read)", body = AssetRecord), UserErrors),
    security(("user_token" = [])))]
async fn get_asset(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<Json<AssetRecord>, ApiError> {
    authorize(&state, &user, "read", "Asset", &id, no_context()).await?;
    let record = state.store.asset(&id).await?;
    record
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no asset {id}")))
}

/// `PATCH /v1/assets/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AssetChange {
    /// New visibility (action `share`).
    #[serde(default)]
    visibility: Option<Visibility>,
    /// New public access (action `share`).
    #[serde(default)]
    public_access: Option<PublicAccess>,
    /// Move to this project: `delete` on the asset and `create_asset` on
    /// the target.
    #[serde(default)]
    project: Option<String>,
}

/// Changes visibility and public access (share) or moves the asset (delete here, create_asset there).
#[utoipa::path(patch, path = "/v1/assets/{id}", tag = "management",
    params(("id" = String, Path, description = "The asset's id")),
    request_body = AssetChange,
    responses((status = 200, description = "Changes visibility and public access (share) or moves the asset (delete here, create_asset there)", body = AssetRecord), UserErrors),
    security(("user_token" = [])))]
async fn update_asset(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AssetChange>,
) -> Result<Json<AssetRecord>, ApiError> {
    if body.visibility.is_none() && body.public_access.is_none() && body.project.is_none() {
        return Err(nothing_to_change("visibility, public_access, project"));
    }
    let target = body
        .project
        .as_deref()
        .map(|p| parse_id(p, "project"))
        .transpose()?;
    if body.visibility.is_some() || body.public_access.is_some() {
        authorize(&state, &user, "share", "Asset", &id, no_context()).await?;
    }
    if let Some(target) = &target {
        authorize(&state, &user, "delete", "Asset", &id, no_context()).await?;
        authorize(
            &state,
            &user,
            "create_asset",
            "Project",
            target.as_str(),
            no_context(),
        )
        .await?;
    }
    let before = state
        .store
        .asset(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no asset {id}")))?;
    let from = state
        .store
        .workspace_of("Asset", &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no asset {id}")))?;
    let to = match &target {
        Some(p) => state
            .store
            .workspace_of("Project", p.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no project {p}")))?,
        None => from.clone(),
    };
    let mut after = before.clone();
    if let Some(visibility) = body.visibility {
        after.visibility = visibility;
    }
    if let Some(access) = body.public_access {
        after.public_access = access;
    }
    if let Some(target) = target {
        after.project = target;
    }
    state
        .store
        .update_asset(&before, &after, (&from, &to), &user.change())
        .await?;
    Ok(Json(after))
}

/// Deletes an asset (action delete).
#[utoipa::path(delete, path = "/v1/assets/{id}", tag = "management",
    params(("id" = String, Path, description = "The asset's id")),
    responses((status = 204, description = "Deletes an asset (action delete)"), UserErrors),
    security(("user_token" = [])))]
async fn delete_asset(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &user, "delete", "Asset", &id, no_context()).await?;
    let before = state.store.asset(&id).await?;
    state
        .store
        .delete_resource("Asset", &id, json!(before), &user.change())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One page of `ty` resources (in `workspace` / `project` when not empty)
/// the caller may read, decided by the policies (see `crate::search`).
async fn readable_page(
    state: &AppState,
    user: &EndUser,
    ty: &str,
    page: &Page,
) -> Result<crate::search::Found, ApiError> {
    let size = page.size()?;
    let engine = state.engine();
    let principal = crate::search::Principal {
        user: user.user_id.clone(),
        authn: user.authn,
    };
    let scope = crate::search::Scope {
        ty: ty.into(),
        workspace: page.workspace.clone().unwrap_or_default(),
        project: page.project.clone().unwrap_or_default(),
    };
    let after = page.cursor.clone().unwrap_or_default();
    let context = Map::new();
    let ask = crate::search::Ask {
        action: "read",
        context: &context,
        after: &after,
        size,
    };
    Ok(crate::search::resources(&engine, &state.store, &principal, &scope, ask).await?)
}

fn page_body<T: serde::Serialize>(items: Vec<T>, next: Option<String>) -> Json<Value> {
    Json(json!({"items": items, "next_cursor": next}))
}

/// The workspaces the caller may read, by id.
#[utoipa::path(get, path = "/v1/workspaces", tag = "management",
    params(Page),
    responses((status = 200, description = "The workspaces the caller may read, by id", body = PageDoc<WorkspaceRecord>), UserErrors),
    security(("user_token" = [])))]
async fn list_workspaces(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    if page.workspace.is_some() || page.project.is_some() {
        return Err(ApiError::bad_request(
            "query: workspaces are not filtered by workspace or project",
        )
        .with("field", json!("query")));
    }
    let found = readable_page(&state, &user, "Workspace", &page).await?;
    let items: Vec<&WorkspaceRecord> = found
        .items
        .iter()
        .filter_map(|(id, _)| found.world.workspaces.iter().find(|w| w.id.as_str() == id))
        .collect();
    Ok(page_body(items, found.next.clone()))
}

/// The projects the caller may read (optionally in one workspace), by id.
#[utoipa::path(get, path = "/v1/projects", tag = "management",
    params(Page),
    responses((status = 200, description = "The projects the caller may read (optionally in one workspace), by id", body = PageDoc<ProjectRecord>), UserErrors),
    security(("user_token" = [])))]
async fn list_projects(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    if page.project.is_some() {
        return Err(ApiError::bad_request(
            "query: projects are filtered by workspace, not project",
        )
        .with("field", json!("project")));
    }
    let found = readable_page(&state, &user, "Project", &page).await?;
    let items: Vec<&ProjectRecord> = found
        .items
        .iter()
        .filter_map(|(id, _)| found.world.projects.iter().find(|p| p.id.as_str() == id))
        .collect();
    Ok(page_body(items, found.next.clone()))
}

/// The assets the caller may read by role or grant (optionally in one workspace or project), by id; never by public link alone.
#[utoipa::path(get, path = "/v1/assets", tag = "management",
    params(Page),
    responses((status = 200, description = "The assets the caller may read by role or grant (optionally in one workspace or project), by id; never by public link alone", body = PageDoc<AssetRecord>), UserErrors),
    security(("user_token" = [])))]
async fn list_assets(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let found = readable_page(&state, &user, "Asset", &page).await?;
    let items: Vec<&AssetRecord> = found
        .items
        .iter()
        .filter_map(|(id, _)| found.world.assets.iter().find(|a| a.id.as_str() == id))
        .collect();
    Ok(page_body(items, found.next.clone()))
}

async fn audit(
    state: &AppState,
    user: &EndUser,
    ty: &str,
    id: &str,
    page: &Page,
) -> Result<Json<Value>, ApiError> {
    if page.workspace.is_some() || page.project.is_some() {
        return Err(
            ApiError::bad_request("query: an audit trail takes cursor and limit only")
                .with("field", json!("query")),
        );
    }
    authorize(state, user, "read_audit", ty, id, no_context()).await?;
    let size = page.size()?;
    let after = match &page.cursor {
        None => 0,
        Some(c) => c.parse::<i64>().map_err(|_| {
            ApiError::bad_request("cursor: not a cursor this route returned")
                .with("field", json!("cursor"))
        })?,
    };
    let target = ty.to_lowercase();
    let events = state.store.audit_page(&target, id, after, size).await?;
    let next = if events.len() as i64 == size {
        events
            .last()
            .and_then(|e| e["id"].as_i64())
            .map(|n| n.to_string())
    } else {
        None
    };
    Ok(page_body(events, next))
}

/// The workspace's audit trail, oldest first (action read_audit).
#[utoipa::path(get, path = "/v1/workspaces/{id}/audit", tag = "management",
    params(("id" = String, Path, description = "The workspace's id"), Page),
    responses((status = 200, description = "The workspace's audit trail, oldest first (action read_audit)", body = PageDoc<AuditEntry>), UserErrors),
    security(("user_token" = [])))]
async fn workspace_audit(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    audit(&state, &user, "Workspace", &id, &page).await
}

/// The project's audit trail, oldest first (action read_audit).
#[utoipa::path(get, path = "/v1/projects/{id}/audit", tag = "management",
    params(("id" = String, Path, description = "The project's id"), Page),
    responses((status = 200, description = "The project's audit trail, oldest first (action read_audit)", body = PageDoc<AuditEntry>), UserErrors),
    security(("user_token" = [])))]
async fn project_audit(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    audit(&state, &user, "Project", &id, &page).await
}

/// The asset's audit trail, oldest first (action read_audit).
#[utoipa::path(get, path = "/v1/assets/{id}/audit", tag = "management",
    params(("id" = String, Path, description = "The asset's id"), Page),
    responses((status = 200, description = "The asset's audit trail, oldest first (action read_audit)", body = PageDoc<AuditEntry>), UserErrors),
    security(("user_token" = [])))]
async fn asset_audit(
    State(state): State<Arc<AppState>>,
    user: EndUser,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    audit(&state, &user, "Asset", &id, &page).await
}
