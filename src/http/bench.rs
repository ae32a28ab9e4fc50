//! The floor of any database-backed decision, for the benchmark script:
//! `GET /v1/bench/select?asset=ID` authenticates the API key and asks the
//! policies for the `decide` route action exactly as `/v1/check` does, then
//! runs one indexed one-row SELECT through the same pool, and nothing else.
//! `GET /v1/bench/facts?user=ID&asset=ID` does the same but runs the fact
//! load of one check instead (the one statement `/v1/check` sends), and
//! decides nothing: between the two and `/v1/check` the benchmark splits a
//! decision's cost into database and Warden. Served only with
//! `warden serve --bench-endpoints`.

use super::error::ApiError;
use super::extract::route::Decide;
use super::extract::Allowed;
use super::manage::Query;
use super::openapi::KeyErrors;
use super::{AppState, Routes};
use crate::store::facts::FactKeys;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> Routes {
    Routes::new().routes(routes!(select)).routes(routes!(facts))
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

/// `?user=ID&asset=ID`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FactsQuery {
    /// A user id.
    #[serde(default)]
    user: String,
    /// An asset id.
    #[serde(default)]
    asset: String,
}

/// Benchmark step: the key check and the fact load of one check (the user,
/// the asset, its project and workspace, the user's memberships and grant),
/// with no decision.
#[utoipa::path(get, path = "/v1/bench/facts", tag = "operations", params(FactsQuery),
    responses((status = 200, description = "The asset as loaded with its facts, or null", body = Option<crate::domain::AssetRecord>), KeyErrors),
    security(("api_key" = [])))]
async fn facts(
    State(state): State<Arc<AppState>>,
    _: Allowed<Decide>,
    Query(query): Query<FactsQuery>,
) -> Result<Json<Option<crate::domain::AssetRecord>>, ApiError> {
    let mut keys = FactKeys::default();
    keys.users.insert(query.user);
    keys.assets.insert(query.asset);
    let world = state.store.load_facts(&keys).await?;
    Ok(Json(world.assets.into_iter().next()))
}
