//! The OpenAPI document, `GET /openapi.json`. It is generated from the code:
//! every route is registered through `utoipa_axum::routes!`, which adds the
//! handler's `#[utoipa::path]` (method, path, parameters, request and
//! response schemas derived from the Rust types) to the document and the
//! handler to the router in one step, so the router serves nothing the
//! document does not describe.
//!
//! This module holds what the handlers share: the error body, the error
//! responses of each kind of route, pages, and the security schemes.

use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// Every error: `{"error": {"code", "message"}}`, with `field` naming the
/// offending field of a client mistake. Decision routes add the deny
/// decision and the policy version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// The JSON path of the offending field (`requests[3].action`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The `error` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`invalid_request`, `unauthenticated`, `forbidden`,
    /// `not_found`, `conflict`, `gone`, `rate_limited`, `database_unavailable`...).
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

/// A page of a listing; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing id (the cursor).
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// `user:<id>`, `api_key:<id>`, `cli:<command>` or `system`.
    pub actor: String,
    /// E.g. `asset.update`, `member.put`, `invite.accept`.
    pub action: String,
    /// Summary of the state before.
    pub before: serde_json::Value,
    /// Summary of the state after.
    pub after: serde_json::Value,
    /// The HTTP request that made the change.
    pub request_id: Option<String>,
    /// The store revision of the write (the `Warden-Revision` its response
    /// carried); null for events written before Warden recorded it.
    pub revision: Option<i64>,
}

/// Errors of the routes an app calls with its API key.
#[derive(IntoResponses)]
pub enum KeyErrors {
    /// A client mistake; `field` names it.
    #[response(
        status = 400,
        description = "Malformed request; `field` names the offending field"
    )]
    BadRequest(ErrorBody),
    /// No key, or an unknown or revoked one.
    #[response(status = 401, description = "Missing, unknown or revoked API key")]
    Unauthenticated(ErrorBody),
    /// The key's scopes do not allow the route (policies/api.cedar).
    #[response(
        status = 403,
        description = "The policies do not allow this key this route"
    )]
    Forbidden(ErrorBody),
    /// Over the route's body limit.
    #[response(status = 413, description = "Body over the route's limit")]
    TooLarge(ErrorBody),
    /// The database is unavailable or the request timed out.
    #[response(
        status = 503,
        description = "Database unavailable or request timed out; retry"
    )]
    Unavailable(ErrorBody),
}

/// Errors of the routes an end user calls with their own token.
#[derive(IntoResponses)]
pub enum UserErrors {
    /// A client mistake; `field` names it.
    #[response(
        status = 400,
        description = "Malformed request; `field` names the offending field"
    )]
    BadRequest(ErrorBody),
    /// No token, or one that does not verify.
    #[response(status = 401, description = "Missing or invalid bearer token")]
    Unauthenticated(ErrorBody),
    /// The policies deny the route's action on its target.
    #[response(
        status = 403,
        description = "The policies deny this action on this target"
    )]
    Forbidden(ErrorBody),
    /// The target does not exist.
    #[response(status = 404, description = "No such resource")]
    NotFound(ErrorBody),
    /// The change conflicts with stored data.
    #[response(
        status = 409,
        description = "Conflict: id taken, moved meanwhile, last owner"
    )]
    Conflict(ErrorBody),
    /// The database is unavailable or the request timed out.
    #[response(
        status = 503,
        description = "Database or identity provider unavailable; retry"
    )]
    Unavailable(ErrorBody),
}

/// Errors of the public identity routes.
#[derive(IntoResponses)]
pub enum PublicErrors {
    /// A client mistake; `field` names it.
    #[response(
        status = 400,
        description = "Malformed request; `field` names the offending field"
    )]
    BadRequest(ErrorBody),
    /// A token that does not verify.
    #[response(status = 401, description = "Invalid token")]
    Unauthenticated(ErrorBody),
    /// The policies close this route.
    #[response(status = 403, description = "The policies do not allow this route")]
    Forbidden(ErrorBody),
    /// Too many requests from this address (counted across replicas).
    #[response(status = 429, description = "Rate limited; see Retry-After")]
    RateLimited(ErrorBody),
    /// The database or identity provider is unavailable.
    #[response(
        status = 503,
        description = "Database or identity provider unavailable; retry"
    )]
    Unavailable(ErrorBody),
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let mut jwt = Http::new(HttpAuthScheme::Bearer);
        jwt.bearer_format = Some("JWT".into());
        jwt.description = Some(
            "The end user's token: Warden's anonymous ES256 JWT or the identity provider's JWT"
                .into(),
        );
        components.add_security_scheme("user_token", SecurityScheme::Http(jwt));
    }
}

/// The document's root; the routes add their paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Warden",
        description = "An authorization server: Cedar policies decide over facts Warden keeps. \
            Decision routes take an app's API key; identity and management routes take the end \
            user's token; admin routes take an admin API key. Every route is itself a Cedar action.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "decisions", description = "Warden's decision API"),
        (name = "authzen", description = "OpenID AuthZEN Authorization API 1.0"),
        (name = "identity", description = "Anonymous tokens, sign-in, keys"),
        (name = "management", description = "Workspaces, projects, assets, members, grants, invites, audit"),
        (name = "admin", description = "Import/export, API keys, policies, signing keys"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;
