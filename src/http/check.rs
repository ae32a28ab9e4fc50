//! `POST /v1/check` and `POST /v1/check/batch` (CONTRACT §5): Warden's own
//! decision API. Both are the Cedar action `decide` on the service.

use super::error::ApiError;
use super::extract::route::Decide;
use super::extract::{Allowed, JsonBody};
use super::openapi::KeyErrors;
use super::AppState;
use crate::cache::Consistency;
use crate::decision::{
    explain_one, Authn, DecideError, DecisionInput, EntityRef, Explanation, InputError, RawDecision,
};
use crate::identity::TokenPrincipal;
use crate::policy::{EvalError, PolicyEngine, Verdict};
use crate::store::StoreError;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most requests in one batch call.
pub const MAX_BATCH: usize = 5_000;

/// The single check route.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(check))
}

/// The batch route (served under the batch budget: `super::batch_budget`).
pub fn batch_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(batch))
}

/// An entity named by type and id, e.g. `{"type": "Asset", "id": "a1"}`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRefBody {
    /// Cedar type without the `Warden::` namespace.
    #[serde(rename = "type")]
    pub ty: String,
    /// Id.
    pub id: String,
}

impl From<EntityRefBody> for EntityRef {
    fn from(r: EntityRefBody) -> Self {
        EntityRef { ty: r.ty, id: r.id }
    }
}

/// One decision request.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// Who asks, named by the app.
    #[serde(default)]
    pub principal: Option<EntityRefBody>,
    /// Or the end user's token (Warden's anonymous JWT or the identity
    /// provider's): the principal is the token's verified user.
    #[serde(default)]
    pub token: Option<String>,
    /// Action name.
    pub action: String,
    /// On what.
    pub resource: EntityRefBody,
    /// Extra context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Extra Cedar entities.
    #[serde(default)]
    pub entities: Option<Vec<Value>>,
    /// `/v1/check` only: also return the entity slice and how each policy
    /// whose scope matches fared (for a deny, why the permits did not apply).
    #[serde(default)]
    pub explain: bool,
    /// `/v1/check` only (a batch gives one for all): how fresh the facts
    /// must be. Default `{"minimize_latency": true}`.
    #[serde(default)]
    pub consistency: Option<ConsistencyBody>,
}

/// How fresh the facts behind a decision must be; give one of the three.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyBody {
    /// Cached answers are fine (at most as stale as this server takes to
    /// hear of a write; see the README).
    #[serde(default)]
    pub minimize_latency: Option<bool>,
    /// A revision token (the `Warden-Revision` header of a write): the
    /// answer reflects every write up to it.
    #[serde(default)]
    pub at_least_as_fresh: Option<String>,
    /// Read the facts now.
    #[serde(default)]
    pub fully_consistent: Option<bool>,
}

impl ConsistencyBody {
    /// The consistency asked for; `path` prefixes the field in errors.
    pub fn parse(body: Option<&ConsistencyBody>, path: &str) -> Result<Consistency, ApiError> {
        let Some(body) = body else {
            return Ok(Consistency::MinimizeLatency);
        };
        let bad = |field: &str, message: String| {
            ApiError::bad_request(format!("{path}consistency{field}: {message}"))
                .with("field", json!(format!("{path}consistency{field}")))
        };
        match (body.minimize_latency, &body.at_least_as_fresh, body.fully_consistent) {
            (Some(true), None, None) => Ok(Consistency::MinimizeLatency),
            (None, Some(token), None) => token
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= 0)
                .map(Consistency::AtLeastAsFresh)
                .ok_or_else(|| {
                    bad(
                        ".at_least_as_fresh",
                        "not a revision token; pass the Warden-Revision header of a write".into(),
                    )
                }),
            (None, None, Some(true)) => Ok(Consistency::FullyConsistent),
            _ => Err(bad(
                "",
                "give exactly one of {\"minimize_latency\": true}, {\"at_least_as_fresh\": \"<revision>\"}, {\"fully_consistent\": true}".into(),
            )),
        }
    }
}

impl CheckBody {
    /// The request with its principal resolved (`tokens`: the verified
    /// users of the request's tokens); `path` prefixes field names.
    pub fn into_raw(
        self,
        path: &str,
        tokens: &HashMap<String, TokenPrincipal>,
    ) -> Result<RawDecision, InputError> {
        let (principal, authn) =
            match (self.principal, self.token) {
                (Some(p), None) => (p, Authn::App),
                (None, Some(token)) => {
                    let Some(verified) = tokens.get(&token) else {
                        return Err(InputError {
                            field: format!("{path}token"),
                            message: "the token was not verified".into(),
                        });
                    };
                    (
                        EntityRefBody {
                            ty: "User".into(),
                            id: verified.user_id.clone(),
                        },
                        verified.authn,
                    )
                }
                (Some(_), Some(_)) => {
                    return Err(InputError {
                        field: format!("{path}principal"),
                        message: "give either `principal` or `token`, not both".into(),
                    })
                }
                (None, None) => return Err(InputError {
                    field: format!("{path}principal"),
                    message:
                        "missing: name the principal, e.g. {\"type\": \"User\", \"id\": \"alice\"}"
                            .into(),
                }),
            };
        Ok(RawDecision {
            principal: principal.into(),
            action: self.action,
            resource: self.resource.into(),
            context: self.context.unwrap_or_default(),
            entities: self.entities,
            authn,
        })
    }
}

/// The answer to one decision request.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    /// `allow` or `deny`.
    #[schema(value_type = String, example = "allow")]
    pub decision: &'static str,
    /// `@id`s of the determining policies.
    pub reasons: Vec<String>,
    /// Evaluation errors, and why a request was denied before evaluation.
    pub errors: Vec<EvalError>,
    /// Version of the policy set that decided.
    pub policy_version: String,
    /// With `"explain": true`: the slice and the policies' traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explanation>,
}

impl CheckResponse {
    fn new(verdict: Verdict, version: &str) -> Self {
        CheckResponse {
            decision: if verdict.allow { "allow" } else { "deny" },
            reasons: verdict.reasons,
            errors: verdict.errors,
            policy_version: version.to_string(),
            explain: None,
        }
    }
}

/// Logs one decision (never tokens or keys), counts it, and appends it to
/// the decision log when one is configured.
pub fn log_decision(
    state: &AppState,
    input: &DecisionInput,
    verdict: &Verdict,
    micros: u128,
    version: &str,
    batched: bool,
) {
    if let Some(log) = &state.decision_log {
        log.record(input, verdict, version);
    }
    let decision = if verdict.allow { "allow" } else { "deny" };
    metrics::counter!("warden_decisions_total", "decision" => decision).increment(1);
    if batched {
        tracing::debug!(target: "warden::decision", principal = %input.principal, action = %input.action,
            resource = %input.resource, decision, reasons = ?verdict.reasons, latency_us = micros as u64,
            policy_version = version);
    } else {
        tracing::info!(target: "warden::decision", principal = %input.principal, action = %input.action,
            resource = %input.resource, decision, reasons = ?verdict.reasons, errors = verdict.errors.len(),
            latency_us = micros as u64, policy_version = version);
    }
}

/// Decides `inputs` with the freshness `consistency` asks for, logging
/// each decision and the latency.
pub async fn decide_logged(
    state: &AppState,
    engine: &PolicyEngine,
    inputs: &[DecisionInput],
    path: &str,
    consistency: Consistency,
) -> Result<Vec<Verdict>, DecideError> {
    let started = Instant::now();
    let verdicts = crate::cache::decide(
        engine,
        &state.store,
        &state.caches,
        inputs,
        path,
        consistency,
    )
    .await?;
    let elapsed = started.elapsed();
    metrics::histogram!("warden_decision_batch_seconds").record(elapsed.as_secs_f64());
    let batched = inputs.len() > 1;
    for (input, verdict) in inputs.iter().zip(&verdicts) {
        log_decision(
            state,
            input,
            verdict,
            elapsed.as_micros(),
            engine.version(),
            batched,
        );
    }
    if batched {
        let allowed = verdicts.iter().filter(|v| v.allow).count();
        tracing::info!(target: "warden::decision", count = verdicts.len(), allowed,
            denied = verdicts.len() - allowed, latency_us = elapsed.as_micros() as u64,
            policy_version = engine.version(), "batch decided");
    }
    Ok(verdicts)
}

/// Verifies the end-user tokens of a request (`(field, token)` pairs) in
/// one go; a bad token is a 401 naming its field.
pub async fn verify_tokens(
    state: &AppState,
    tokens: &[(String, &str)],
) -> Result<HashMap<String, TokenPrincipal>, ApiError> {
    if tokens.is_empty() {
        return Ok(HashMap::new());
    }
    let texts: Vec<&str> = tokens.iter().map(|(_, t)| *t).collect();
    state
        .identity
        .principals(&texts)
        .await
        .map_err(|(index, e)| {
            let field = tokens
                .get(index)
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            ApiError::from(e).with("field", json!(field))
        })
}

/// Decides one request: may the principal (named, or the user of the
/// end user's token) perform the action on the resource?
#[utoipa::path(post, path = "/v1/check", tag = "decisions", request_body = CheckBody,
    responses((status = 200, description = "The decision (deny is a 200 too)", body = CheckResponse), KeyErrors),
    security(("api_key" = [])))]
async fn check(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Json<CheckResponse>, ApiError> {
    let engine = state.engine();
    // With both a principal and a token, the 400 below says so first.
    let tokens: Vec<(String, &str)> = body
        .token
        .as_deref()
        .filter(|_| body.principal.is_none())
        .map(|t| ("token".to_string(), t))
        .into_iter()
        .collect();
    let verified = verify_tokens(&state, &tokens).await?;
    let explain = body.explain;
    let consistency = ConsistencyBody::parse(body.consistency.as_ref(), "")?;
    let input = DecisionInput::parse(&engine, body.into_raw("", &verified)?, "")?;
    if explain {
        let started = Instant::now();
        let (verdict, explanation) = explain_one(&engine, &state.store, &input).await?;
        log_decision(
            &state,
            &input,
            &verdict,
            started.elapsed().as_micros(),
            engine.version(),
            false,
        );
        let mut response = CheckResponse::new(verdict, engine.version());
        response.explain = Some(explanation);
        return Ok(Json(response));
    }
    let verdicts = decide_logged(
        &state,
        &engine,
        std::slice::from_ref(&input),
        "",
        consistency,
    )
    .await?;
    let verdict = verdicts
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::from(StoreError::Query("no verdict for the request".into())))?;
    Ok(Json(CheckResponse::new(verdict, engine.version())))
}

/// A batch of decision requests.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// 1 to 5,000 requests, decided over one load of facts.
    requests: Vec<CheckBody>,
    /// How fresh the facts must be, for the whole batch.
    #[serde(default)]
    consistency: Option<ConsistencyBody>,
}

/// The answers, in request order.
#[derive(Serialize, ToSchema)]
struct BatchResponse {
    /// One answer per request.
    results: Vec<CheckResponse>,
    /// The policy set that decided them all.
    policy_version: String,
}

/// Decides up to 5,000 requests in one call and one database round trip.
#[utoipa::path(post, path = "/v1/check/batch", tag = "decisions", request_body = BatchBody,
    responses((status = 200, description = "The decisions, in order", body = BatchResponse), KeyErrors),
    security(("api_key" = [])))]
async fn batch(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<Json<BatchResponse>, ApiError> {
    if body.requests.is_empty() || body.requests.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "requests: send between 1 and {MAX_BATCH} requests per call, got {}",
            body.requests.len()
        ))
        .with("field", json!("requests")));
    }
    let engine = state.engine();
    let tokens: Vec<(String, &str)> = body
        .requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.principal.is_none())
        .filter_map(|(i, r)| {
            r.token
                .as_deref()
                .map(|t| (format!("requests[{i}].token"), t))
        })
        .collect();
    let verified = verify_tokens(&state, &tokens).await?;
    let consistency = ConsistencyBody::parse(body.consistency.as_ref(), "")?;
    if let Some(i) = body.requests.iter().position(|r| r.consistency.is_some()) {
        return Err(ApiError::bad_request(format!(
            "requests[{i}].consistency: give consistency once, for the whole batch"
        ))
        .with("field", json!(format!("requests[{i}].consistency"))));
    }
    if let Some(i) = body.requests.iter().position(|r| r.explain) {
        return Err(ApiError::bad_request(format!(
            "requests[{i}].explain: explanations are given by /v1/check, one decision at a time"
        ))
        .with("field", json!(format!("requests[{i}].explain"))));
    }
    let mut inputs = Vec::with_capacity(body.requests.len());
    for (i, request) in body.requests.into_iter().enumerate() {
        let path = format!("requests[{i}].");
        inputs.push(DecisionInput::parse(
            &engine,
            request.into_raw(&path, &verified)?,
            &path,
        )?);
    }
    let verdicts = decide_logged(&state, &engine, &inputs, "requests", consistency).await?;
    let results = verdicts
        .into_iter()
        .map(|v| CheckResponse::new(v, engine.version()))
        .collect();
    Ok(Json(BatchResponse {
        results,
        policy_version: engine.version().to_string(),
    }))
}
