//! The floor of any database-backed decision, for the benchmark script:
//! `GET /v1/bench/select?asset=ID` authenticates the API key and asks the
//! policies for the `decide` route action exactly as `/v1/check` does, then
//! runs one indexed one-row SELECT through the same pool, and nothing else.
//! Served only with `warden serve --bench-endpoints`.

use super::error::ApiError;
use super::extract::route::Decide;
use super::extract::Allowed;
use super::manage::Query;
use super::openapi::KeyErrors;
use super::{AppState, Routes};
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> Routes {
    Routes::new().routes(routes!(select))
}

/// `?asset=ID`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SelectQuery {
    /// An asset id.
    #[serde(default)]
    asset: String,
}

/// Benchmark floor: the key check and one indexed one-row SELECT.
#[utoipa::path(get, path = "/v1/bench/select", tag = "operations", params(SelectQuery),
    responses((status = 200, description = "The asset, or null", body = Option<crate::domain::AssetRecord>), KeyErrors),
    security(("api_key" = [])))]
async fn select(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    Query(query): Query<SelectQuery>,
) -> Result<Json<Option<crate::domain::AssetRecord>>, ApiError> {
    Ok(Json(state.store.asset(&query.asset).await?))
}
