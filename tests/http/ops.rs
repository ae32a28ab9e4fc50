//! Operations routes: liveness, readiness and Prometheus metrics, without credentials.

use crate::common::{spawn_app, Db};
use serde_json::json;

#[tokio::test]
async fn operations_routes_answer() {
    let app = spawn_app(Db::Sqlite).await;
    let (status, body) = app.get_with(None, "/healthz").await;
    assert_eq!((status, body["status"].clone()), (200, json!("ok")));
    let (status, body) = app.get_with(None, "/readyz").await;
    assert_eq!((status, body["database"].clone()), (200, json!("ok")));
    app.decide("nobody", "read", "Asset", "nothing").await;
    let text = app.metrics().await;
    assert!(text.contains("warden_decisions_total"), "{text}");
}

/// The benchmark endpoints (the floor, the fact load) exist only with
/// --bench-endpoints, and then like /v1/check: an API key whose scope
/// allows `decide`.
#[tokio::test]
async fn the_bench_endpoint_is_off_by_default_and_keyed_when_on() {
    let off = crate::common::spawn_app(crate::common::Db::Sqlite).await;
    let (status, _) = off.get("/v1/bench/select?asset=a").await;
    assert_eq!(status, 404);
    let on = crate::common::spawn_configured(crate::common::Db::Sqlite, None, None, |s| {
        s.bench_endpoints = true
    })
    .await;
    on.import(
        &serde_json::json!({"users": [{"id": "o", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "o"}], "projects": [{"id": "p", "workspace": "w"}],
        "assets": [{"id": "a", "project": "p"}]}),
    )
    .await;
    let (status, body) = on.get("/v1/bench/select?asset=a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "a");
    let (status, _) = on.get_with(None, "/v1/bench/select?asset=a").await;
    assert_eq!(status, 401);
    let admin_only = on.key_with_scopes(&["admin"]).await;
    let (status, _) = on
        .get_with(Some(&admin_only), "/v1/bench/select?asset=a")
        .await;
    assert_eq!(status, 403);
    // The fact load of one check: the same key rules, the asset as loaded.
    let (status, _) = off.get("/v1/bench/facts?user=o&asset=a").await;
    assert_eq!(status, 404);
    let (status, body) = on.get("/v1/bench/facts?user=o&asset=a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project"], "p");
    let (status, _) = on.get_with(None, "/v1/bench/facts?user=o&asset=a").await;
    assert_eq!(status, 401);
    let (status, _) = on
        .get_with(Some(&admin_only), "/v1/bench/facts?user=o&asset=a")
        .await;
    assert_eq!(status, 403);
}
