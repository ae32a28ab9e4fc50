//! Search routes (app API key, action `decide`): AuthZEN's resource and
//! subject search, and their `/v1` equivalents. What is found is decided by
//! the policies over candidates from stored relations (`crate::search`), a
//! page at a time; link-only public resources are never listed. And
//! AuthZEN's action search: every action that applies to the resource's
//! type, asked of the policies over one load of facts.

use super::authzen::{subject_field, subject_token, token_subject, Action, Entity};
use super::check::{decide_logged, verify_tokens, EntityRefBody};
use super::error::ApiError;
use super::extract::route::Decide;
use super::extract::{Allowed, JsonBody};
use super::openapi::KeyErrors;
use super::{AppState, Routes};
use crate::cache::Consistency;
use crate::decision::{Authn, DecisionInput, EntityRef, RawDecision};
use crate::policy::PolicyEngine;
use crate::search::{self, Ask, Principal, Scope};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::routes;

/// Results per page unless asked otherwise.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most results per page.
pub const MAX_LIMIT: i64 = 1_000;

/// The routes of this module.
pub fn router() -> Routes {
    Routes::new()
        .routes(routes!(search_resource))
        .routes(routes!(search_subject))
        .routes(routes!(search_action))
        .routes(routes!(v1_resources))
        .routes(routes!(v1_subjects))
}

fn limit(raw: Option<i64>, field: &str) -> Result<i64, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "{field}: between 1 and {MAX_LIMIT}, got {n}"
        ))
        .with("field", json!(field))),
    }
}

/// 400 unless `action` applies to resources of type `ty` (and users).
fn check_shape(
    engine: &PolicyEngine,
    action: &str,
    ty: &str,
    action_field: &str,
    type_field: &str,
) -> Result<(), ApiError> {
    let Some(shape) = engine.decision_action(action) else {
        return Err(ApiError::bad_request(format!(
            "{action_field}: unknown action {action:?}; expected one of: {}",
            engine.decision_actions().collect::<Vec<_>>().join(", ")
        ))
        .with("field", json!(action_field)));
    };
    if !shape.resources.iter().any(|r| r == ty) {
        return Err(ApiError::bad_request(format!(
            "{type_field}: {ty:?} is not a resource of action {action:?}; expected one of: {}",
            shape.resources.join(", ")
        ))
        .with("field", json!(type_field)));
    }
    Ok(())
}

fn text_property(properties: &Option<Map<String, Value>>, key: &str) -> Result<String, ApiError> {
    match properties.as_ref().and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!(
            "resource.properties.{key}: expected a string id"
        ))
        .with("field", json!(format!("resource.properties.{key}")))),
    }
}

/// 400 naming `field` when a search's searched-for entity names an id.
fn searched_for(id: Option<&str>, field: &str) -> Result<(), ApiError> {
    match id {
        None | Some("") => Ok(()),
        Some(id) => Err(ApiError::bad_request(format!(
            "{field}: a search finds these; leave the id out or empty, got {id:?}"
        ))
        .with("field", json!(field))),
    }
}

/// AuthZEN paging of a request (AuthZEN 1.0's paginated request).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PageRequest {
    /// The `next_token` of the previous page's answer (absent or "" for the
    /// first page). Also accepted under the name `next_token`.
    #[serde(default, alias = "next_token")]
    token: Option<String>,
    /// Results per page (1 to 1,000; default 50).
    #[serde(default)]
    limit: Option<i64>,
    /// AuthZEN's implementation-specific paging attributes (sorting,
    /// filtering): Warden has none, results come in id order, so this must
    /// be empty.
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

impl PageRequest {
    /// Where the page starts (results after this id; "" for the first).
    fn after(&self) -> Result<String, ApiError> {
        if let Some(key) = self.properties.as_ref().and_then(|p| p.keys().next()) {
            let field = format!("page.properties.{key}");
            return Err(ApiError::bad_request(format!(
                "{field}: Warden has no paging properties (results come in id order); leave page.properties out"
            ))
            .with("field", json!(field)));
        }
        Ok(self.token.clone().unwrap_or_default())
    }
}

/// The resource of a resource search: a type, optionally narrowed by
/// `properties.workspace` or `properties.project`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResourceFilter {
    /// `Workspace`, `Project` or `Asset`.
    #[serde(rename = "type")]
    ty: String,
    /// Absent or "": what is searched for (AuthZEN's entity shape has an
    /// `id`, which a search leaves empty).
    #[serde(default)]
    id: Option<String>,
    /// `{"workspace": id}` and/or `{"project": id}`.
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

/// AuthZEN resource search: which resources may the subject act on?
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ResourceSearch {
    subject: Entity,
    action: Action,
    resource: ResourceFilter,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    page: Option<PageRequest>,
}

/// The subject of a subject search: a type (`User`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubjectFilter {
    /// `User`.
    #[serde(rename = "type")]
    ty: String,
    /// Absent or "": what is searched for (AuthZEN's entity shape has an
    /// `id`, which a search leaves empty).
    #[serde(default)]
    id: Option<String>,
    /// Accepted, as AuthZEN allows, and ignored.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted so AuthZEN clients may send it; never read"
    )]
    properties: Option<Map<String, Value>>,
}

/// AuthZEN subject search: who may act on the resource?
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SubjectSearch {
    subject: SubjectFilter,
    action: Action,
    resource: Entity,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    page: Option<PageRequest>,
}

/// One result: an entity and the policies that allowed it.
#[derive(Debug, Serialize, ToSchema)]
struct Found {
    #[serde(rename = "type")]
    ty: String,
    id: String,
    /// `{"reasons": [@id...]}`.
    properties: Map<String, Value>,
}

/// AuthZEN paging of the answer.
#[derive(Debug, Serialize, ToSchema)]
struct PageAnswer {
    /// Pass as `page.token` for the next page; "" on the last page.
    next_token: String,
    /// How many results this page holds.
    count: usize,
}

impl PageAnswer {
    fn new(next: Option<String>, count: usize) -> Self {
        PageAnswer {
            next_token: next.unwrap_or_default(),
            count,
        }
    }
}

/// The `context` of an AuthZEN search answer.
#[derive(Debug, Serialize, ToSchema)]
struct AnswerContext {
    /// The policy set that decided.
    policy_version: String,
}

/// An AuthZEN search's answer: found entities ([`Found`]) or actions
/// ([`FoundAction`]).
#[derive(Debug, Serialize, ToSchema)]
struct SearchAnswer<T> {
    results: Vec<T>,
    page: PageAnswer,
    context: AnswerContext,
}

impl<T> SearchAnswer<T> {
    fn new(results: Vec<T>, next: Option<String>, policy_version: String) -> Self {
        let count = results.len();
        SearchAnswer {
            results,
            page: PageAnswer::new(next, count),
            context: AnswerContext { policy_version },
        }
    }
}

/// A result's `properties`: `{"reasons": [@id...]}`.
fn reasons_property(reasons: Vec<String>) -> Map<String, Value> {
    let mut properties = Map::new();
    properties.insert("reasons".into(), json!(reasons));
    properties
}

fn found(ty: &str, items: Vec<(String, Vec<String>)>) -> Vec<Found> {
    items
        .into_iter()
        .map(|(id, reasons)| Found {
            ty: ty.to_string(),
            id,
            properties: reasons_property(reasons),
        })
        .collect()
}

async fn principal_of(state: &AppState, subject: Entity) -> Result<Principal, ApiError> {
    let tokens: Vec<(String, &str)> = subject_token(&subject)
        .map(|t| ("subject.properties.token".to_string(), t))
        .into_iter()
        .collect();
    let verified = verify_tokens(state, &tokens).await?;
    let (subject, authn) = token_subject(subject, &verified, "")?;
    if subject.ty != "User" {
        return Err(ApiError::bad_request(format!(
            "subject.type: searches are asked for users, got {:?}",
            subject.ty
        ))
        .with("field", json!("subject.type")));
    }
    super::manage::parse_id(&subject.id, "subject.id")?;
    Ok(Principal {
        user: subject.id,
        authn,
    })
}

/// What a search asks, whichever API shape it came in.
struct Asked {
    action: String,
    context: Map<String, Value>,
    after: String,
    limit: Option<i64>,
    fields: Fields,
}

/// How each API shape names its fields in errors: action, resource type, limit.
type Fields = (&'static str, &'static str, &'static str);
const AUTHZEN_FIELDS: Fields = ("action.name", "resource.type", "page.limit");
const V1_FIELDS: Fields = ("action", "resource_type", "limit");

/// Validates and runs a resource search; the answer and the policy version.
async fn find_resources(
    state: &AppState,
    subject: Entity,
    scope: &Scope,
    asked: Asked,
) -> Result<(search::Found, String), ApiError> {
    let engine = state.engine();
    let (action_field, type_field, limit_field) = asked.fields;
    check_shape(&engine, &asked.action, &scope.ty, action_field, type_field)?;
    let size = limit(asked.limit, limit_field)?;
    let principal = principal_of(state, subject).await?;
    let ask = Ask {
        action: &asked.action,
        context: &asked.context,
        after: &asked.after,
        size,
    };
    let found = search::resources(&engine, &state.store, &principal, scope, ask).await?;
    Ok((found, engine.version().to_string()))
}

/// Validates and runs a subject search; the answer and the policy version.
async fn find_subjects(
    state: &AppState,
    ty: &str,
    id: &str,
    asked: Asked,
) -> Result<(search::Found, String), ApiError> {
    let engine = state.engine();
    let (action_field, _, limit_field) = asked.fields;
    check_shape(&engine, &asked.action, ty, action_field, "resource.type")?;
    super::manage::parse_id(id, "resource.id")?;
    let size = limit(asked.limit, limit_field)?;
    let ask = Ask {
        action: &asked.action,
        context: &asked.context,
        after: &asked.after,
        size,
    };
    let found = search::subjects(&engine, &state.store, (ty, id), Authn::App, ask).await?;
    Ok((found, engine.version().to_string()))
}

/// AuthZEN resource search: the resources of a type (optionally in one
/// workspace or project) the subject may perform the action on.
#[utoipa::path(post, path = "/access/v1/search/resource", tag = "authzen", request_body = ResourceSearch,
    responses((status = 200, description = "The resources, by id, with the deciding policies", body = SearchAnswer<Found>), KeyErrors),
    security(("api_key" = [])))]
async fn search_resource(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<ResourceSearch>,
) -> Result<Json<SearchAnswer<Found>>, ApiError> {
    searched_for(body.resource.id.as_deref(), "resource.id")?;
    let page = body.page.unwrap_or_default();
    let scope = Scope {
        ty: body.resource.ty.clone(),
        workspace: text_property(&body.resource.properties, "workspace")?,
        project: text_property(&body.resource.properties, "project")?,
    };
    let asked = Asked {
        action: body.action.name,
        context: body.context.unwrap_or_default(),
        after: page.after()?,
        limit: page.limit,
        fields: AUTHZEN_FIELDS,
    };
    let (result, version) = find_resources(&state, body.subject, &scope, asked).await?;
    Ok(Json(SearchAnswer::new(
        found(&scope.ty, result.items),
        result.next,
        version,
    )))
}

/// AuthZEN subject search: the users who may perform the action on the
/// resource (as named by an app), each with the deciding policies.
#[utoipa::path(post, path = "/access/v1/search/subject", tag = "authzen", request_body = SubjectSearch,
    responses((status = 200, description = "The users, by id, with the deciding policies", body = SearchAnswer<Found>), KeyErrors),
    security(("api_key" = [])))]
async fn search_subject(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<SubjectSearch>,
) -> Result<Json<SearchAnswer<Found>>, ApiError> {
    if body.subject.ty != "User" {
        return Err(ApiError::bad_request(format!(
            "subject.type: searches find users, got {:?}",
            body.subject.ty
        ))
        .with("field", json!("subject.type")));
    }
    searched_for(body.subject.id.as_deref(), "subject.id")?;
    let page = body.page.unwrap_or_default();
    let asked = Asked {
        action: body.action.name,
        context: body.context.unwrap_or_default(),
        after: page.after()?,
        limit: page.limit,
        fields: AUTHZEN_FIELDS,
    };
    let (result, version) =
        find_subjects(&state, &body.resource.ty, &body.resource.id, asked).await?;
    Ok(Json(SearchAnswer::new(
        found("User", result.items),
        result.next,
        version,
    )))
}

/// AuthZEN action search: which actions may the subject perform on the
/// resource?
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ActionSearch {
    subject: Entity,
    resource: Entity,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    page: Option<PageRequest>,
}

/// One action found: its name and the policies that allowed it.
#[derive(Debug, Serialize, ToSchema)]
struct FoundAction {
    name: String,
    /// `{"reasons": [@id...]}`.
    properties: Map<String, Value>,
}

/// The actions that apply to resources of type `ty`, in name order; 400
/// naming `resource.type` when none does.
fn actions_on<'e>(engine: &'e PolicyEngine, ty: &str) -> Result<Vec<&'e str>, ApiError> {
    let on = |action: &&str| {
        engine
            .decision_action(action)
            .is_some_and(|shape| shape.resources.iter().any(|r| r == ty))
    };
    let names: Vec<&str> = engine.decision_actions().filter(on).collect();
    if names.is_empty() {
        let types: std::collections::BTreeSet<&str> = engine
            .decision_actions()
            .filter_map(|a| engine.decision_action(a))
            .flat_map(|shape| shape.resources.iter().map(String::as_str))
            .collect();
        return Err(ApiError::bad_request(format!(
            "resource.type: no action applies to {ty:?}; expected one of: {}",
            types.into_iter().collect::<Vec<_>>().join(", ")
        ))
        .with("field", json!("resource.type")));
    }
    Ok(names)
}

/// AuthZEN action search: the actions the subject may perform on the
/// resource (which buttons a page shows), each with the policies that
/// allowed it. Every action that applies to the resource's type is asked
/// of the policies, all over one load of facts (and the decision cache, as
/// AuthZEN evaluations are); results come in name order.
#[utoipa::path(post, path = "/access/v1/search/action", tag = "authzen", request_body = ActionSearch,
    responses((status = 200, description = "The actions, by name, with the deciding policies", body = SearchAnswer<FoundAction>), KeyErrors),
    security(("api_key" = [])))]
async fn search_action(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<ActionSearch>,
) -> Result<Json<SearchAnswer<FoundAction>>, ApiError> {
    let engine = state.engine();
    let page = body.page.unwrap_or_default();
    let after = page.after()?;
    let size = usize::try_from(limit(page.limit, "page.limit")?).unwrap_or(usize::MAX);
    let mut names: Vec<&str> = actions_on(&engine, &body.resource.ty)?
        .into_iter()
        .filter(|name| *name > after.as_str())
        .collect();
    let next = (names.len() > size)
        .then(|| names.get(size - 1).map(|name| name.to_string()))
        .flatten();
    names.truncate(size);
    let tokens: Vec<(String, &str)> = subject_token(&body.subject)
        .map(|t| ("subject.properties.token".to_string(), t))
        .into_iter()
        .collect();
    let verified = verify_tokens(&state, &tokens).await?;
    let (subject, authn) = token_subject(body.subject, &verified, "")?;
    let context = body.context.unwrap_or_default();
    let mut inputs = Vec::with_capacity(names.len());
    for name in &names {
        let raw = RawDecision {
            principal: EntityRef {
                ty: subject.ty.clone(),
                id: subject.id.clone(),
            },
            action: name.to_string(),
            resource: EntityRef {
                ty: body.resource.ty.clone(),
                id: body.resource.id.clone(),
            },
            context: context.clone(),
            entities: None,
            authn,
        };
        inputs.push(DecisionInput::parse(&engine, raw, "").map_err(|e| subject_field(e, ""))?);
    }
    let verdicts = if inputs.is_empty() {
        Vec::new()
    } else {
        decide_logged(&state, &engine, &inputs, "", Consistency::MinimizeLatency).await?
    };
    let results: Vec<FoundAction> = names
        .iter()
        .zip(verdicts)
        .filter(|(_, verdict)| verdict.allow)
        .map(|(name, verdict)| FoundAction {
            name: name.to_string(),
            properties: reasons_property(verdict.reasons),
        })
        .collect();
    Ok(Json(SearchAnswer::new(
        results,
        next,
        engine.version().to_string(),
    )))
}

/// `POST /v1/search/resources` body. No `Debug`: it may hold a token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct V1ResourceSearch {
    /// The user asking, named by the app...
    #[serde(default)]
    principal: Option<EntityRefBody>,
    /// ...or the end user's token.
    #[serde(default)]
    token: Option<String>,
    action: String,
    /// `Workspace`, `Project` or `Asset`.
    resource_type: String,
    /// Only in this workspace.
    #[serde(default)]
    workspace: Option<String>,
    /// Only in this project.
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// 1 to 1,000 (default 50).
    #[serde(default)]
    limit: Option<i64>,
}

/// `POST /v1/search/subjects` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct V1SubjectSearch {
    action: String,
    resource: EntityRefBody,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// 1 to 1,000 (default 50).
    #[serde(default)]
    limit: Option<i64>,
}

/// A `/v1` search answer.
#[derive(Debug, Serialize, ToSchema)]
struct V1Answer {
    /// Entities with their deciding policies (`properties.reasons`).
    results: Vec<Found>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
    /// The policy set that decided.
    policy_version: String,
}

/// The resources of a type the principal may perform the action on.
#[utoipa::path(post, path = "/v1/search/resources", tag = "decisions", request_body = V1ResourceSearch,
    responses((status = 200, description = "The resources, by id", body = V1Answer), KeyErrors),
    security(("api_key" = [])))]
async fn v1_resources(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<V1ResourceSearch>,
) -> Result<Json<V1Answer>, ApiError> {
    let subject = match (body.principal, body.token) {
        (Some(p), None) => Entity {
            ty: p.ty,
            id: p.id,
            properties: None,
        },
        (None, Some(token)) => {
            let mut properties = Map::new();
            properties.insert("token".into(), json!(token));
            Entity {
                ty: "User".into(),
                id: String::new(),
                properties: Some(properties),
            }
        }
        _ => {
            return Err(
                ApiError::bad_request("principal: give either `principal` or `token`")
                    .with("field", json!("principal")),
            )
        }
    };
    let scope = Scope {
        ty: body.resource_type,
        workspace: body.workspace.unwrap_or_default(),
        project: body.project.unwrap_or_default(),
    };
    let asked = Asked {
        action: body.action,
        context: body.context.unwrap_or_default(),
        after: body.cursor.unwrap_or_default(),
        limit: body.limit,
        fields: V1_FIELDS,
    };
    let (result, version) = find_resources(&state, subject, &scope, asked).await?;
    Ok(Json(V1Answer {
        results: found(&scope.ty, result.items),
        next_cursor: result.next,
        policy_version: version,
    }))
}

/// The users who may perform the action on the resource, with reasons.
#[utoipa::path(post, path = "/v1/search/subjects", tag = "decisions", request_body = V1SubjectSearch,
    responses((status = 200, description = "The users, by id", body = V1Answer), KeyErrors),
    security(("api_key" = [])))]
async fn v1_subjects(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<V1SubjectSearch>,
) -> Result<Json<V1Answer>, ApiError> {
    let asked = Asked {
        action: body.action,
        context: body.context.unwrap_or_default(),
        after: body.cursor.unwrap_or_default(),
        limit: body.limit,
        fields: V1_FIELDS,
    };
    let (result, version) =
        find_subjects(&state, &body.resource.ty, &body.resource.id, asked).await?;
    Ok(Json(V1Answer {
        results: found("User", result.items),
        next_cursor: result.next,
        policy_version: version,
    }))
}
