//! The management API (CONTRACT §5): end users, authenticated by their own
//! bearer JWT (Warden's anonymous token or the identity provider's), create
//! and change the facts Warden decides on.
//!
//! Warden eats its own cooking: every route is a Cedar action on its target
//! (`read`, `write`, `share`, `delete`, `manage_members`, `invite`,
//! `create_project`, `create_asset`, `create_workspace`, `read_audit`,
//! `accept_invite`), asked of the same policies and the same fact loader as
//! `/v1/check`, and logged as a decision. Nothing a client sends is taken as
//! identity. Writes live in `store::manage`, one audited transaction each.
//!
//! - [`resources`]: workspaces, projects, assets (create, read, list,
//!   update, move, delete) and audit trails.
//! - [`sharing`]: members, grants, invites.

pub mod resources;
pub mod sharing;

use super::check::{decide_logged, log_decision};
use super::error::ApiError;
use super::extract::bearer;
use super::AppState;
use crate::audit::Actor;
use crate::decision::decide_in_world;
use crate::decision::{Authn, DecisionInput, EntityRef, RawDecision};
use crate::domain::Id;
use crate::domain::World;
use crate::http::Routes;
use crate::policy::Verdict;
use crate::store::facts::FactKeys;
use crate::store::manage::{Change, ManageError, Recheck};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};

/// The routes of the management API.
pub fn router() -> Routes {
    Routes::new()
        .merge(resources::router())
        .merge(sharing::router())
}

/// The end user calling, established from the verified bearer token.
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct EndUser {
    /// Canonical user id.
    pub user_id: String,
    /// Which kind of token proved it.
    pub authn: Authn,
    /// The token, to read its verified claims (the email, on invite accept).
    token: String,
    /// The request id, for audit events.
    pub request_id: Option<String>,
    /// The decisions [`authorize`] allowed for this request, asked again
    /// inside the write's transaction.
    authorized: Arc<Authorized>,
}

/// The allowed decisions of one request. The store asks them again
/// ([`Recheck`]) over the facts read inside the write's transaction, and
/// of the policy set in force then, so that a membership or grant removed,
/// or a policy reloaded, between the authorization and the write refuses
/// the write instead of letting it through on the old role or rule.
struct Authorized {
    decisions: Mutex<Vec<DecisionInput>>,
    /// Where the second answers are logged, like the first.
    state: Arc<AppState>,
}

impl std::fmt::Debug for Authorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let asked: Vec<String> = self
            .decisions()
            .iter()
            .map(|i| format!("{} {} {}", i.principal, i.action, i.resource))
            .collect();
        f.debug_struct("Authorized")
            .field("decisions", &asked)
            .finish()
    }
}

impl Authorized {
    fn new(state: Arc<AppState>) -> Self {
        Authorized {
            decisions: Mutex::default(),
            state,
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<DecisionInput>> {
        self.decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn decisions(&self) -> Vec<DecisionInput> {
        self.list().clone()
    }

    fn record(&self, input: DecisionInput) {
        self.list().push(input);
    }
}

impl Recheck for Authorized {
    fn keys(&self) -> FactKeys {
        let mut keys = FactKeys::default();
        for input in self.decisions() {
            input.collect_keys(&mut keys);
        }
        keys
    }

    fn recheck(&self, world: &World) -> Result<(), ManageError> {
        // The policies in force now: a reload since the first answer counts.
        let engine = self.state.engine();
        for input in self.decisions() {
            let started = std::time::Instant::now();
            let verdict = decide_in_world(&engine, world, std::slice::from_ref(&input), "")
                .map_err(|e| {
                    ManageError::Refused(format!("the change could not be authorized again: {e}"))
                })?
                .into_iter()
                .next()
                .unwrap_or_else(|| Verdict::deny_because("no verdict for the request"));
            // The second answer is a decision like the first: logged and counted.
            log_decision(
                &self.state,
                &input,
                &verdict,
                started.elapsed().as_micros(),
                engine.version(),
                false,
            );
            if verdict.allow {
                continue;
            }
            if !crate::entities::stored(world, &input.resource) {
                return Err(ManageError::NotFound(format!(
                    "{} no longer exists: it was deleted while this request ran; nothing was written",
                    input.resource
                )));
            }
            tracing::warn!(principal = %input.principal, action = %input.action,
                resource = %input.resource, reasons = ?verdict.reasons,
                "management change refused: allowed when asked, no longer allowed at write time");
            return Err(ManageError::Refused(format!(
                "you may no longer {} {}: your access changed while this request ran; nothing was written",
                input.action.id().unescaped(),
                input.resource
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for EndUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndUser")
            .field("user_id", &self.user_id)
            .field("authn", &self.authn)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl EndUser {
    /// Who is changing what, for the audit event.
    pub fn change(&self) -> Change {
        Change {
            actor: Actor::user(&self.user_id),
            request_id: self.request_id.clone(),
            authorized: Some(self.authorized.clone()),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for EndUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let request_id = super::extract::request_id(&parts.headers);
        let token = bearer(&parts.headers, "user token")?.to_string();
        let principals = state
            .identity
            .principals(&[token.as_str()])
            .await
            .map_err(|(_, e)| ApiError::from(e))?;
        let principal = principals
            .get(&token)
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("the token was not verified"))?;
        Ok(EndUser {
            user_id: principal.user_id,
            authn: principal.authn,
            token,
            request_id,
            authorized: Arc::new(Authorized::new(state.clone())),
        })
    }
}

/// Parses an id from a path or body, naming the field in the error.
pub fn parse_id(raw: &str, field: &str) -> Result<Id, ApiError> {
    Id::parse(raw)
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")).with("field", json!(field)))
}

/// Asks the policies whether `user` may perform `action` on `ty` `id`
/// (with extra `context`). 404 when the resource does not exist, 403 when
/// the policies deny.
pub async fn authorize(
    state: &AppState,
    user: &EndUser,
    action: &str,
    ty: &str,
    id: &str,
    context: Map<String, Value>,
) -> Result<(), ApiError> {
    let engine = state.engine();
    let raw = RawDecision {
        principal: EntityRef {
            ty: "User".into(),
            id: user.user_id.clone(),
        },
        action: action.into(),
        resource: EntityRef {
            ty: ty.into(),
            id: id.into(),
        },
        context,
        entities: None,
        authn: user.authn,
    };
    let input = DecisionInput::parse(&engine, raw, "")?;
    // Authorizing a change reads the facts now: never a cached answer.
    let verdicts = decide_logged(
        state,
        &engine,
        std::slice::from_ref(&input),
        "",
        crate::cache::Consistency::FullyConsistent,
    )
    .await?;
    let Some(verdict) = verdicts.into_iter().next() else {
        return Err(ApiError::forbidden("no decision was made; refused"));
    };
    if verdict.allow {
        user.authorized.record(input);
        return Ok(());
    }
    if verdict
        .errors
        .iter()
        .any(|e| e.policy.is_none() && e.message.starts_with("unknown resource"))
    {
        return Err(ApiError::not_found(format!(
            "no {} {id}",
            ty.to_lowercase()
        )));
    }
    tracing::info!(user = %user.user_id, action, ty, id, reasons = ?verdict.reasons, "management request refused by policy");
    let mut error = ApiError::forbidden(format!(
        "you may not {action} {} {id}; ask someone who manages it for access",
        ty.to_lowercase()
    ))
    .with("policy_version", json!(engine.version()));
    if !verdict.reasons.is_empty() {
        error = error.with("reasons", json!(verdict.reasons));
    }
    Err(error)
}

/// Cursor pagination: `?cursor=<last id>&limit=<n>`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Items per page (1 to [`MAX_PAGE`], default [`DEFAULT_PAGE`]).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Listing filter: the workspace (projects) or project (assets).
    #[serde(default)]
    pub workspace: Option<String>,
    /// Listing filter: the project (assets).
    #[serde(default)]
    pub project: Option<String>,
}

/// Items per page unless asked otherwise.
pub const DEFAULT_PAGE: i64 = 50;
/// Most items per page.
pub const MAX_PAGE: i64 = 500;

impl Page {
    /// The page size, checked.
    pub fn size(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(format!(
                "limit: must be between 1 and {MAX_PAGE}, got {n}"
            ))
            .with("field", json!("limit"))),
        }
    }
}

/// A query string parsed with errors naming the parameter.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned + Default> FromRequestParts<Arc<AppState>> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<AppState>) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("query: {e}")).with("field", json!("query")))
    }
}
