//! OpenID AuthZEN Authorization API 1.0: access evaluation, access
//! evaluations (with the three evaluation semantics) and PDP metadata (the
//! three searches are in `super::search`).
//! AuthZEN `type` is the Cedar entity type name without the namespace,
//! `action.name` the Cedar action. `properties` are accepted and ignored:
//! facts come from Warden's store, never from the caller — except
//! `subject.properties.token`: the end user's token, whose verified user is
//! then the subject (`subject.id` may be empty, or must name that user).

use super::check::{decide_logged, verify_tokens};
use super::error::ApiError;
use super::extract::route::Decide;
use super::extract::{Allowed, JsonBody};
use super::openapi::KeyErrors;
use super::AppState;
use crate::decision::{Authn, DecisionInput, EntityRef, InputError, RawDecision};
use crate::identity::TokenPrincipal;
use crate::policy::Verdict;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(evaluation))
        .routes(routes!(configuration))
}

/// The evaluations (batch) route, served under the batch budget
/// (`super::batch_budget`).
pub fn batch_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(evaluations))
}

/// An AuthZEN subject or resource.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct Entity {
    /// Cedar type without namespace.
    #[serde(rename = "type")]
    pub ty: String,
    /// Id.
    pub id: String,
    /// Ignored: Warden decides on stored facts.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// An AuthZEN action.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct Action {
    /// Cedar action name.
    pub name: String,
    /// Ignored.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// An access evaluation request.
#[derive(Debug, Deserialize, ToSchema)]
struct EvaluationBody {
    subject: Entity,
    action: Action,
    resource: Entity,
    #[serde(default)]
    context: Option<Map<String, Value>>,
}

/// One item of an evaluations request; missing parts come from the top level.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
struct Partial {
    #[serde(default)]
    subject: Option<Entity>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    resource: Option<Entity>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
}

/// How a batch of evaluations is carried out.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Semantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// Evaluation options.
#[derive(Debug, Default, Deserialize, ToSchema)]
struct Options {
    #[serde(default)]
    evaluations_semantic: Semantic,
}

/// An access evaluations request: top-level defaults and the items.
#[derive(Debug, Deserialize, ToSchema)]
struct EvaluationsBody {
    #[serde(flatten)]
    defaults: Partial,
    #[serde(default)]
    evaluations: Option<Vec<Partial>>,
    #[serde(default)]
    options: Option<Options>,
}

/// An AuthZEN decision.
#[derive(Serialize, ToSchema)]
struct DecisionDoc {
    /// True for permit.
    decision: bool,
    /// Warden's reasons, errors and policy version.
    context: Object,
}

/// The answers to an evaluations request, in order.
#[derive(Serialize, ToSchema)]
struct DecisionsDoc {
    /// One per evaluation.
    evaluations: Vec<DecisionDoc>,
}

/// The PDP metadata of AuthZEN 1.0.
#[derive(Serialize, ToSchema)]
struct ConfigurationDoc {
    /// Warden's base URL.
    policy_decision_point: String,
    /// The access evaluation endpoint.
    access_evaluation_endpoint: String,
    /// The access evaluations endpoint.
    access_evaluations_endpoint: String,
    /// The subject search endpoint.
    search_subject_endpoint: String,
    /// The resource search endpoint.
    search_resource_endpoint: String,
    /// The action search endpoint.
    search_action_endpoint: String,
}

/// Any JSON object.
type Object = Map<String, Value>;

/// The end-user token a subject carries, if any.
pub(super) fn subject_token(subject: &Entity) -> Option<&str> {
    subject.properties.as_ref()?.get("token")?.as_str()
}

/// The subject of a token-carrying `subject`, as its verified user.
pub(super) fn token_subject(
    mut subject: Entity,
    tokens: &HashMap<String, TokenPrincipal>,
    path: &str,
) -> Result<(Entity, Authn), InputError> {
    let Some(verified) = subject_token(&subject).and_then(|t| tokens.get(t)) else {
        return Ok((subject, Authn::App));
    };
    if !subject.id.is_empty() && subject.id != verified.user_id {
        return Err(InputError {
            field: format!("{path}subject.id"),
            message:
                "the subject's id is not the user of its token; leave id empty or give that user"
                    .into(),
        });
    }
    subject.ty = "User".into();
    subject.id = verified.user_id.clone();
    Ok((subject, verified.authn))
}

fn raw(
    subject: Entity,
    action: Action,
    resource: Entity,
    context: Option<Map<String, Value>>,
    tokens: &HashMap<String, TokenPrincipal>,
    path: &str,
) -> Result<RawDecision, InputError> {
    let (subject, authn) = token_subject(subject, tokens, path)?;
    Ok(RawDecision {
        principal: EntityRef {
            ty: subject.ty,
            id: subject.id,
        },
        action: action.name,
        resource: EntityRef {
            ty: resource.ty,
            id: resource.id,
        },
        context: context.unwrap_or_default(),
        entities: None,
        authn,
    })
}

fn answer(verdict: Verdict, version: &str) -> Value {
    json!({
        "decision": verdict.allow,
        "context": {
            "reasons": verdict.reasons,
            "errors": verdict.errors,
            "policy_version": version,
        }
    })
}

/// AuthZEN access evaluation: one decision.
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen", request_body = EvaluationBody,
    responses((status = 200, description = "The decision", body = DecisionDoc), KeyErrors),
    security(("api_key" = [])))]
async fn evaluation(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<EvaluationBody>,
) -> Result<Json<Value>, ApiError> {
    let tokens: Vec<(String, &str)> = subject_token(&body.subject)
        .map(|t| ("subject.properties.token".to_string(), t))
        .into_iter()
        .collect();
    let verified = verify_tokens(&state, &tokens).await?;
    let raw = raw(
        body.subject,
        body.action,
        body.resource,
        body.context,
        &verified,
        "",
    )?;
    single(&state, raw).await
}

/// AuthZEN calls the principal `subject`: errors name the field as the
/// request does (`evaluations[2].subject.type`, not `...principal.type`).
pub(super) fn subject_field(mut error: InputError, path: &str) -> InputError {
    let principal = format!("{path}principal");
    if let Some(rest) = error.field.strip_prefix(&principal) {
        error.field = format!("{path}subject{rest}");
    }
    error
}

/// One access evaluation, answered as AuthZEN's `{decision, context}`.
async fn single(state: &AppState, raw: RawDecision) -> Result<Json<Value>, ApiError> {
    let engine = state.engine();
    let input = DecisionInput::parse(&engine, raw, "").map_err(|e| subject_field(e, ""))?;
    let mut verdicts = decide_logged(
        state,
        &engine,
        std::slice::from_ref(&input),
        "",
        crate::cache::Consistency::MinimizeLatency,
    )
    .await?;
    let verdict = verdicts
        .pop()
        .unwrap_or_else(|| Verdict::deny_because("no verdict"));
    Ok(Json(answer(verdict, engine.version())))
}

/// Fills the gaps of `item` from `defaults`; names what is still missing.
fn complete(
    item: Partial,
    defaults: &Partial,
    path: &str,
    tokens: &HashMap<String, TokenPrincipal>,
) -> Result<RawDecision, (String, String)> {
    let missing = |what: &str| {
        (
            format!("{path}{what}"),
            format!("missing {what}, and no top-level default"),
        )
    };
    let subject = item
        .subject
        .or_else(|| defaults.subject.clone())
        .ok_or_else(|| missing("subject"))?;
    let action = item
        .action
        .or_else(|| defaults.action.clone())
        .ok_or_else(|| missing("action"))?;
    let resource = item
        .resource
        .or_else(|| defaults.resource.clone())
        .ok_or_else(|| missing("resource"))?;
    let context = item.context.or_else(|| defaults.context.clone());
    raw(subject, action, resource, context, tokens, path).map_err(|e| (e.field, e.message))
}

/// AuthZEN access evaluations: many decisions, with the evaluation semantics.
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen", request_body = EvaluationsBody,
    responses((status = 200, description = "The decisions, in order", body = DecisionsDoc), KeyErrors),
    security(("api_key" = [])))]
async fn evaluations(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<EvaluationsBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine();
    let semantic = body.options.unwrap_or_default().evaluations_semantic;
    // Without an `evaluations` array this is a single evaluation (AuthZEN 1.0).
    let Some(items) = body.evaluations.filter(|e| !e.is_empty()) else {
        let tokens: Vec<(String, &str)> = body
            .defaults
            .subject
            .as_ref()
            .and_then(subject_token)
            .map(|t| ("subject.properties.token".to_string(), t))
            .into_iter()
            .collect();
        let verified = verify_tokens(&state, &tokens).await?;
        let raw = complete(Partial::default(), &body.defaults, "", &verified).map_err(
            |(field, message)| {
                ApiError::bad_request(format!("{field}: {message}")).with("field", json!(field))
            },
        )?;
        return single(&state, raw).await;
    };
    if items.len() > super::check::MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "evaluations: at most {} per call, got {}",
            super::check::MAX_BATCH,
            items.len()
        )));
    }
    // Tokens are verified one by one so that a bad token fails only its
    // own items (a 401 inside the item, like a 400).
    let mut verified = HashMap::new();
    let mut refused: HashMap<String, String> = HashMap::new();
    for item in &items {
        let subject = item.subject.as_ref().or(body.defaults.subject.as_ref());
        let Some(token) = subject.and_then(subject_token) else {
            continue;
        };
        if verified.contains_key(token) || refused.contains_key(token) {
            continue;
        }
        match state.identity.principals(&[token]).await {
            Ok(found) => verified.extend(found),
            Err((_, crate::identity::TokenError::Store(e))) => return Err(e.into()),
            Err((_, e)) => {
                refused.insert(token.to_string(), e.to_string());
            }
        }
    }
    // Items that cannot be asked answer false with the reason; the rest are
    // decided together over one load of facts.
    let mut slots: Vec<Result<usize, Value>> = Vec::with_capacity(items.len());
    let mut inputs = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("evaluations[{i}].");
        let subject = item.subject.as_ref().or(body.defaults.subject.as_ref());
        if let Some(reason) = subject.and_then(subject_token).and_then(|t| refused.get(t)) {
            slots.push(Err(json!({
                "decision": false,
                "context": {"error": {"status": 401, "message": format!("{path}subject.properties.token: {reason}")}}
            })));
            continue;
        }
        let parsed = complete(item, &body.defaults, &path, &verified)
            .map_err(|(field, message)| format!("{field}: {message}"))
            .and_then(|raw| {
                DecisionInput::parse(&engine, raw, &path)
                    .map_err(|e| subject_field(e, &path).to_string())
            });
        match parsed {
            Ok(input) => {
                slots.push(Ok(inputs.len()));
                inputs.push(input);
            }
            Err(message) => slots.push(Err(json!({
                "decision": false,
                "context": {"error": {"status": 400, "message": message}}
            }))),
        }
    }
    let verdicts = if inputs.is_empty() {
        Vec::new()
    } else {
        decide_logged(
            &state,
            &engine,
            &inputs,
            "evaluations",
            crate::cache::Consistency::MinimizeLatency,
        )
        .await
        .map_err(ApiError::from)?
    };
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let value = match slot {
            Ok(index) => verdicts
                .get(index)
                .cloned()
                .map(|v| answer(v, engine.version()))
                .unwrap_or_else(|| json!({"decision": false})),
            Err(value) => value,
        };
        let decision = value
            .get("decision")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.push(value);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !decision,
            Semantic::PermitOnFirstPermit => decision,
        };
        if stop {
            break;
        }
    }
    Ok(Json(json!({ "evaluations": out })))
}

/// AuthZEN PDP metadata (discovery; unauthenticated).
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen",
    responses((status = 200, description = "PDP metadata", body = ConfigurationDoc)))]
async fn configuration(State(state): State<Arc<AppState>>) -> Json<Value> {
    let base = state.public_url.trim_end_matches('/');
    Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    }))
}
