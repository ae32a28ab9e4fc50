//! The HTTP layer's one error type and its single mapping to a response:
//! `{"error": {"code", "message"}}` with the right status (CONTRACT §1.6).
//! Client mistakes are 4xx naming the field; internal failures are logged
//! with their cause and answered without internals.

use crate::decision::{DecideError, InputError};
use crate::identity::TokenError;
use crate::store::identity::LinkError;
use crate::store::manage::ManageError;
use crate::store::world::ImportError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra body fields and headers, boxed to keep `Result<_, ApiError>` small.
    details: Box<Details>,
}

#[derive(Debug, Default)]
struct Details {
    /// Extra top-level fields (a deny decision on the decision routes).
    extra: Map<String, Value>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

impl ApiError {
    /// An error with `status`, a stable `code` and a message for humans.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Box::default(),
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401: no or unknown credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: nothing there.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: axum::http::HeaderName, value: &str) -> Self {
        if let Ok(value) = axum::http::HeaderValue::from_str(value) {
            self.details.headers.push((name, value));
        }
        self
    }

    /// 503 with `Retry-After: 1`: the database could not serve the request
    /// now, and a second try shortly may succeed.
    pub fn retry_soon(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            .with_header(axum::http::header::RETRY_AFTER, "1")
    }

    /// 429: over a rate limit; retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests from this address; retry in {seconds} s"),
        )
        .with("retry_after", json!(seconds))
        .with_header(axum::http::header::RETRY_AFTER, &seconds.to_string())
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Adds a top-level field to the body (e.g. `"decision": "deny"`).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.details.extra.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Details { extra, headers } = *self.details;
        let mut body = extra;
        body.insert(
            "error".into(),
            json!({"code": self.code, "message": self.message}),
        );
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        for (name, value) in headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Store(e) => e.into(),
            TokenError::ProviderUnavailable(_) => {
                tracing::warn!(error = %e, "token refused: identity provider unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity_provider_unavailable",
                    e.to_string(),
                )
            }
            e => {
                tracing::info!(reason = %e, "token refused");
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()).with_header(
                    axum::http::header::WWW_AUTHENTICATE,
                    "Bearer error=\"invalid_token\"",
                )
            }
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "identity_conflict", message)
            }
            LinkError::DeadAnonymousToken => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
                    .with("field", json!("anonymous_token"))
            }
            LinkError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) | StoreError::ConnectionLost(cause) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::retry_soon(
                    "database_unavailable",
                    "the database is unavailable; the request was not served, retry shortly",
                )
            }
            StoreError::OutcomeUnknown(cause) => {
                tracing::warn!(%cause, "connection lost while a write committed");
                ApiError::retry_soon(
                    "write_outcome_unknown",
                    "the database connection was lost while this write committed: it may or may not have been applied; read it back before sending it again (a create sent again may make a second record)",
                )
            }
            StoreError::Conflict(cause) => {
                tracing::info!(%cause, "constraint refused a change");
                ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "the change conflicts with stored data (a referenced record is missing or a value is taken)",
                )
            }
            StoreError::Busy(cause) => {
                tracing::warn!(%cause, "a write gave up waiting for the write lock");
                ApiError::retry_soon(
                    "write_busy",
                    "another write (such as a large import) held the write lock for longer than this server waits (--write-lock-timeout-ms); nothing was written, retry shortly",
                )
            }
            StoreError::Query(cause) => {
                tracing::error!(%cause, "database query failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has the cause",
                )
            }
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::NotFound(message) => ApiError::not_found(message),
            ManageError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            ManageError::Gone(message) => ApiError::new(StatusCode::GONE, "gone", message),
            ManageError::Refused(message) => ApiError::forbidden(message),
            ManageError::Store(e) => e.into(),
        }
    }
}

impl From<crate::search::SearchError> for ApiError {
    fn from(e: crate::search::SearchError) -> Self {
        match e {
            crate::search::SearchError::Decide(e) => e.into(),
            crate::search::SearchError::Store(e) => e.into(),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        ApiError::bad_request(e.to_string()).with("field", Value::String(e.field))
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::Input(e) => e.into(),
            DecideError::Store(e) => e.into(),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Invalid(problems) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_import",
                format!(
                    "the import document was refused, nothing was written: {}",
                    problems.join("; ")
                ),
            )
            .with("problems", json!(problems)),
            ImportError::Store(e) => e.into(),
        }
    }
}
