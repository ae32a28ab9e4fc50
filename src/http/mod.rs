//! HTTP: one router per area (decisions, AuthZEN, admin, operations) merged
//! here, the shared state, and the layers every request passes through
//! (request id, tracing, panic catching, timeout, body limits).

pub mod admin;
pub mod auth;
pub mod authzen;
pub mod bench;
pub mod check;
pub mod error;
pub mod extract;
pub mod manage;
pub mod openapi;
pub mod ops;
pub mod search;
pub mod serve;

use crate::policy::PolicyEngine;
use crate::store::api_keys::ApiKey;
use crate::store::Store;
use arc_swap::ArcSwap;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use utoipa_axum::router::OpenApiRouter;

/// A router whose routes carry their OpenAPI descriptions.
pub type Routes = OpenApiRouter<Arc<AppState>>;
use error::ApiError;
use extract::Caller;
use metrics_exporter_prometheus::PrometheusHandle;
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Largest body of a decision request (a batch of thousands with entities).
pub const DECISION_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Largest body of an identity request (a token or two).
pub const AUTH_BODY_LIMIT: usize = 64 * 1024;
/// Largest body of a management request (one resource, member or invite).
pub const MANAGE_BODY_LIMIT: usize = 1024 * 1024;
/// Largest body of an admin request (a whole import document).
pub const ADMIN_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// How long an admin request (a large import or export) may run.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long a verified API key is trusted before it is looked up again,
/// at most. A revocation spoils it sooner: the revoking write names the key
/// (`store::revision`), so every replica drops it as soon as it hears of
/// that write.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// KiB of batch request bodies (`/v1/check/batch`, AuthZEN evaluations)
/// worked on at once, per core, by default (`--batch-budget-kib`); further
/// calls wait their turn, unread, within the request timeout. A call's
/// working memory grows with its body (a 1,000-request batch: a ~110 KB
/// body, several MB while it is decided), so the budget bounds a batch
/// load's memory whatever the number of connections. On two cores (1 MiB:
/// about eight 1,000-request calls at once), 1,000 connections sending
/// batches peaked at 369 MB instead of 645 MB, with p99 0.8 s instead of
/// 4.3 s and no failed answers (227 before).
pub const BATCH_KIB_PER_CORE: u32 = 512;

/// The default batch budget of this machine, in KiB:
/// [`BATCH_KIB_PER_CORE`] per core, at least 1 MiB.
pub fn default_batch_budget_kib() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    BATCH_KIB_PER_CORE
        .saturating_mul(u32::try_from(cores).unwrap_or(u32::MAX))
        .max(1024)
}

/// What every handler shares.
pub struct AppState {
    /// The database.
    pub store: Store,
    engine: ArcSwap<PolicyEngine>,
    /// Verified API keys by hash, for at most [`KEY_CACHE_TTL`]; each
    /// depends on its `ApiKey:<id>` (a revocation spoils it).
    pub key_cache: moka::sync::Cache<String, crate::cache::Tagged<Arc<ApiKey>>>,
    /// The URL apps reach Warden at (AuthZEN metadata).
    pub public_url: String,
    /// Prometheus metrics.
    pub metrics: PrometheusHandle,
    /// Where the policy set is reloaded from.
    policy_dirs: (std::path::PathBuf, std::path::PathBuf),
    /// The outcome of the last reload, for the admin listing.
    last_reload: std::sync::Mutex<Option<ReloadStatus>>,
    /// Tokens: Warden's keys and the identity provider's.
    pub identity: crate::identity::Identity,
    /// Requests per minute per client address on `/api/auth/anonymous`.
    pub anonymous_rate_limit: u32,
    /// Read the client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Where every decision is appended, when configured.
    pub decision_log: Option<crate::decision_log::DecisionLog>,
    /// The OpenAPI document, set once the router is built from the routes.
    pub openapi: std::sync::OnceLock<String>,
    /// Decision and entity-slice caches.
    pub caches: crate::cache::Caches,
    /// Serve the benchmark floor endpoint (`--bench-endpoints`).
    pub bench_endpoints: bool,
    /// Evaluate every decision, reusing no verdict by situation
    /// (`--evaluate-every-decision`); applied to every policy set served.
    evaluate_every_decision: bool,
    /// KiB of batch bodies that may be worked on at once
    /// (`--batch-budget-kib`). A call whose body is larger (up to
    /// [`DECISION_BODY_LIMIT`]) or has no `Content-Length` takes all of it
    /// and runs alone.
    batch_budget: tokio::sync::Semaphore,
    /// Its size.
    batch_kib: u32,
}

/// What [`AppState::new`] needs besides the store and policies.
pub struct StateParts {
    /// The URL apps reach Warden at.
    pub public_url: String,
    /// Prometheus metrics.
    pub metrics: PrometheusHandle,
    /// The identity layer.
    pub identity: crate::identity::Identity,
    /// Requests per minute per client address on `/api/auth/anonymous`.
    pub anonymous_rate_limit: u32,
    /// Read the client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Where every decision is appended, when configured.
    pub decision_log: Option<crate::decision_log::DecisionLog>,
    /// Serve the benchmark floor endpoint.
    pub bench_endpoints: bool,
    /// Evaluate every decision (`--evaluate-every-decision`).
    pub evaluate_every_decision: bool,
    /// Memory bounds of the decision and slice caches.
    pub caches: crate::cache::CacheBounds,
    /// KiB of batch bodies worked on at once.
    pub batch_budget_kib: u32,
}

/// The outcome of a policy reload.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadStatus {
    /// When, in Unix milliseconds.
    pub at: i64,
    /// Whether the new set was accepted.
    pub ok: bool,
    /// The version serving after the reload.
    pub version: String,
    /// The version serving before it.
    pub previous_version: String,
    /// Why a refused set was refused.
    pub problems: Vec<crate::policy::diagnostics::Problem>,
}

/// Why a reload did not happen. The last good policy set keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new files do not load or validate.
    #[error("the new policy set was refused; version {serving} keeps serving: {source}")]
    Invalid {
        /// The version still serving.
        serving: String,
        /// The problems.
        source: crate::policy::LoadError,
    },
    /// The audit event could not be written, so nothing changed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `engine` as served: with `evaluate_every_decision`, remembering no
/// verdict by situation.
fn served(engine: PolicyEngine, evaluate_every_decision: bool) -> PolicyEngine {
    if evaluate_every_decision {
        engine.without_situations()
    } else {
        engine
    }
}

impl AppState {
    /// Shared state over `store` and `engine`, which was loaded from
    /// `policy_dirs` (policies, schema).
    pub fn new(
        store: Store,
        engine: PolicyEngine,
        policy_dirs: (std::path::PathBuf, std::path::PathBuf),
        parts: StateParts,
    ) -> Self {
        let StateParts {
            public_url,
            metrics,
            identity,
            anonymous_rate_limit,
            trust_forwarded_for,
            decision_log,
            bench_endpoints,
            evaluate_every_decision,
            caches,
            batch_budget_kib,
        } = parts;
        let engine = served(engine, evaluate_every_decision);
        AppState {
            identity,
            anonymous_rate_limit,
            trust_forwarded_for,
            decision_log,
            openapi: std::sync::OnceLock::new(),
            caches: crate::cache::Caches::new(caches),
            bench_endpoints,
            evaluate_every_decision,
            batch_budget: tokio::sync::Semaphore::new(batch_budget_kib as usize),
            batch_kib: batch_budget_kib,
            policy_dirs,
            last_reload: std::sync::Mutex::new(None),
            store,
            engine: ArcSwap::from_pointee(engine),
            key_cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            public_url,
            metrics,
        }
    }

    /// The current policy set. A request keeps the set it loaded even if a
    /// new one is swapped in meanwhile.
    pub fn engine(&self) -> Arc<PolicyEngine> {
        self.engine.load_full()
    }

    /// The folders the policy set is loaded from: (policies, schema).
    pub fn policy_dirs(&self) -> (std::path::PathBuf, std::path::PathBuf) {
        self.policy_dirs.clone()
    }

    /// Whether the files on disk differ from the set serving (by content
    /// hash); unreadable files count as changed, so the reload says why.
    pub fn policies_changed_on_disk(&self) -> bool {
        let (policies, schema) = &self.policy_dirs;
        match PolicyEngine::version_on_disk(policies, schema) {
            Ok(version) => version != self.engine().version(),
            Err(_) => true,
        }
    }

    /// The outcome of the last reload, if there was one.
    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload
            .lock()
            .ok()
            .and_then(|status| status.clone())
    }

    fn remember(&self, status: &ReloadStatus) {
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(status.clone());
        }
        let result = if status.ok { "ok" } else { "refused" };
        metrics::counter!("warden_policy_reloads_total", "result" => result).increment(1);
    }

    /// Reloads the policy set from disk. The new set is validated first; an
    /// invalid one is refused and the last good one keeps serving. A
    /// request in flight finishes on the set it started with. An accepted
    /// reload is audited before it takes effect.
    pub async fn reload(
        &self,
        actor: crate::audit::Actor,
        request_id: Option<String>,
    ) -> Result<ReloadStatus, ReloadError> {
        let (policies, schema) = self.policy_dirs.clone();
        let loaded = tokio::task::spawn_blocking(move || PolicyEngine::load(&policies, &schema))
            .await
            .map_err(|e| {
                crate::store::StoreError::Query(format!("policy loading task failed: {e}"))
            })?;
        let previous = self.engine().version().to_string();
        let engine = match loaded {
            Ok(engine) => engine,
            Err(source) => {
                let problems = match &source {
                    crate::policy::LoadError::Invalid { problems } => problems.clone(),
                    _ => Vec::new(),
                };
                let status = ReloadStatus {
                    at: crate::store::now_millis(),
                    ok: false,
                    version: previous.clone(),
                    previous_version: previous.clone(),
                    problems,
                };
                self.remember(&status);
                tracing::error!(error = %source, serving = %previous, "policy reload refused");
                return Err(ReloadError::Invalid {
                    serving: previous,
                    source,
                });
            }
        };
        let version = engine.version().to_string();
        self.store
            .record(crate::audit::AuditEvent {
                actor,
                action: "policies.reload",
                target_type: "policy_set",
                target_id: version.clone(),
                before: Some(serde_json::json!({"version": previous})),
                after: Some(
                    serde_json::json!({"version": version, "policies": engine.policies().len()}),
                ),
                request_id,
            })
            .await?;
        self.engine
            .store(Arc::new(served(engine, self.evaluate_every_decision)));
        let status = ReloadStatus {
            at: crate::store::now_millis(),
            ok: true,
            version,
            previous_version: previous,
            problems: Vec::new(),
        };
        self.remember(&status);
        tracing::info!(version = %status.version, previous = %status.previous_version, "policies reloaded");
        Ok(status)
    }

    /// Serves `engine` from now on, without the reload's audit event. Only
    /// for tests that need the policy set to change at an exact moment (a
    /// reload audits first, so it queues behind a held write lock); the
    /// server itself changes policies through [`AppState::reload`].
    #[doc(hidden)]
    pub fn replace_engine_unaudited(&self, engine: PolicyEngine) {
        self.engine
            .store(Arc::new(served(engine, self.evaluate_every_decision)));
    }

    /// Asks the policies whether `caller` may perform the route action
    /// `action` (policies/api.cedar); 403 when not.
    pub fn require(&self, caller: &Caller, action: &str) -> Result<(), ApiError> {
        let verdict = self
            .engine()
            .authorize_api_key(&caller.key.id, &caller.key.scopes, action);
        if verdict.allow {
            Ok(())
        } else {
            tracing::info!(key = %caller.key.id, action, "API key refused by policy");
            Err(ApiError::forbidden(format!(
                "this API key (scopes: {}) may not {action}; use a key with the scope that allows it",
                caller.key.scopes.join(", ")
            )))
        }
    }
}

/// 404 for a path no route serves, counted as route `unmatched` (the path
/// itself never becomes a label).
async fn not_found(method: axum::http::Method) -> ApiError {
    metrics::counter!("warden_http_requests_total", "method" => method_label(&method), "route" => "unmatched", "status" => "404")
        .increment(1);
    ApiError::not_found("no such route; see the README for Warden's HTTP API")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

async fn timed_out(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took longer than the server's request timeout and was abandoned",
        )
    } else {
        tracing::error!(%error, "middleware failure");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the cause",
        )
    }
}

fn panicked(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = detail, "handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the server log has the cause",
    )
    .with("decision", serde_json::Value::String("deny".into()))
    .into_response()
}

/// Fail closed (CONTRACT §1.2): every error of a decision route, whoever
/// raised it (key check, body parsing, database), still carries the deny
/// decision, `decision_value` (`"deny"`, or `false` for AuthZEN).
async fn deny_on_error(
    state: &AppState,
    response: Response,
    decision_value: serde_json::Value,
) -> Response {
    if response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::json!({"error": {"code": "error", "message": String::from_utf8_lossy(&bytes)}})
    });
    if let Some(object) = value.as_object_mut() {
        object.entry("decision").or_insert(decision_value);
        object
            .entry("policy_version")
            .or_insert(serde_json::json!(state.engine().version()));
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(value.to_string()))
}

async fn deny_on_error_check(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    response: Response,
) -> Response {
    deny_on_error(&state, response, serde_json::json!("deny")).await
}

async fn deny_on_error_authzen(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    response: Response,
) -> Response {
    deny_on_error(&state, response, serde_json::json!(false)).await
}

/// The response header carrying the store revision this process had seen
/// when it answered: after a write, a token at least as fresh as that
/// write, for `consistency.at_least_as_fresh`.
pub const REVISION_HEADER: &str = "warden-revision";

async fn revision_header(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Only for callers with credentials: the counter tells how busy the
    // store is, which anonymous probes have no need to know.
    let credentials = request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    let mut response = next.run(request).await;
    if credentials {
        // Read after the handler: a write has committed and been observed.
        let seen = state.store.revisions().seen();
        if let Ok(value) = axum::http::HeaderValue::from_str(&seen.to_string()) {
            response.headers_mut().insert(REVISION_HEADER, value);
        }
    }
    response
}

/// The request latency histogram (by method and route).
pub const REQUEST_DURATION: &str = "warden_http_request_duration_seconds";

/// Upper bounds, in seconds, of [`REQUEST_DURATION`]'s buckets: from a
/// cached check (a fraction of a millisecond) to the request timeout.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `method` label of a request: the standard methods by name, any
/// other as `other` (labels stay few).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every routed request by method, route and status
/// (`warden_http_requests_total`) and times it by method and route
/// (`warden_http_request_duration_seconds`, a histogram). The route is the
/// route's pattern (`/v1/assets/{id}`), never the ids in the path, so the
/// series stay as few as the routes; requests no route serves are counted
/// by [`not_found`].
async fn http_metrics(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("warden_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves a batch call once its body fits in the batch budget
/// (`--batch-budget-kib`), before the body is read.
async fn batch_budget(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let kib = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(state.batch_kib, |bytes| {
            u32::try_from(bytes.div_ceil(1024))
                .unwrap_or(u32::MAX)
                .clamp(1, state.batch_kib)
        });
    let started = std::time::Instant::now();
    // The semaphore is never closed: acquiring cannot fail.
    let Ok(_permit) = state.batch_budget.acquire_many(kib).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error: the batch budget is closed",
        )
        .into_response();
    };
    metrics::histogram!("warden_batch_wait_seconds").record(started.elapsed().as_secs_f64());
    next.run(request).await
}

/// `router` with requests abandoned after `timeout` (503, JSON body).
fn with_timeout(router: Routes, timeout: Duration) -> Routes {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(timed_out))
            .layer(tower::timeout::TimeoutLayer::new(timeout)),
    )
}

/// The whole HTTP API over `state`. Decision and operations requests are
/// abandoned after `timeout`; admin requests after [`ADMIN_TIMEOUT`].
pub fn router(state: Arc<AppState>, timeout: Duration) -> Router {
    let budget = axum::middleware::from_fn_with_state(state.clone(), batch_budget);
    let check = with_timeout(
        check::router().merge(check::batch_router().layer(budget.clone())),
        timeout,
    )
    .layer(axum::middleware::map_response_with_state(
        state.clone(),
        deny_on_error_check,
    ));
    let authzen = with_timeout(
        authzen::router().merge(authzen::batch_router().layer(budget)),
        timeout,
    )
    .layer(axum::middleware::map_response_with_state(
        state.clone(),
        deny_on_error_authzen,
    ));
    let decisions = Routes::new()
        .merge(check)
        .merge(authzen)
        .layer(DefaultBodyLimit::max(DECISION_BODY_LIMIT));
    let admin =
        with_timeout(admin::router(), ADMIN_TIMEOUT).layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT));
    let bench = if state.bench_endpoints {
        with_timeout(bench::router(), timeout)
    } else {
        Routes::new()
    };
    // Every route comes with its OpenAPI description (utoipa_axum::routes!).
    let (routes, spec) = Routes::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .merge(bench)
        .merge(decisions)
        .merge(admin)
        .merge(with_timeout(auth::router(), timeout).layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT)))
        .merge(
            with_timeout(manage::router(), timeout).layer(DefaultBodyLimit::max(MANAGE_BODY_LIMIT)),
        )
        .merge(
            with_timeout(search::router(), timeout)
                .layer(DefaultBodyLimit::max(DECISION_BODY_LIMIT)),
        )
        .merge(with_timeout(ops::router(), timeout))
        .split_for_parts();
    match spec.to_json() {
        Ok(json) => {
            let _ = state.openapi.set(json);
        }
        Err(e) => tracing::error!(error = %e, "cannot render the OpenAPI document"),
    }
    routes
        .route_layer(axum::middleware::from_fn(http_metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            revision_header,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(panicked)),
        )
}
