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
