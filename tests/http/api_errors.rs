//! Client mistakes: always a JSON `{"error": {"code", "message"}}` with the
//! right 4xx and the field named, never a 500; decision routes still deny.
//! Credentials: 401 without a valid key, 403 (fail closed, nothing changed)
//! for a key whose scope does not allow the route.

use crate::both_backends;
use crate::common::{spawn_app, Db, TestApp};
use serde_json::{json, Value};

fn world() -> Value {
    json!({"users": [{"id": "u", "kind": "registered"}], "workspaces": [{"id": "w", "owner": "u"}],
           "projects": [{"id": "p", "workspace": "w"}], "assets": [{"id": "a", "project": "p"}]})
}

fn ok_check() -> Value {
    json!({"principal": {"type": "User", "id": "u"}, "action": "read", "resource": {"type": "Asset", "id": "a"}})
}

async fn raw(app: &TestApp, method: reqwest::Method, path: &str, body: &str) -> (u16, Value) {
    let resp = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_client_error(status: u16, body: &Value, want: u16, field: Option<&str>) {
    assert_eq!(status, want, "{body}");
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "{body}"
    );
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_field() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let post = reqwest::Method::POST;
    for (body, field) in [
        ("{\"principal\": ", "principal"),
        ("", "body"),
        ("[1, 2]", "body"),
    ] {
        let (status, value) = raw(&app, post.clone(), "/v1/check", body).await;
        assert_client_error(status, &value, 400, Some(field));
        assert_eq!(
            value["decision"], "deny",
            "decision routes fail closed: {value}"
        );
    }
    for (request, field) in cases_list() {
        let (status, body) = app.post("/v1/check", &request).await;
        assert_client_error(status, &body, 400, Some(field));
        assert_eq!(body["decision"], "deny", "{body}");
    }
    // Batches: size limits, and a bad item named by its index.
    let (status, body) = app.post("/v1/check/batch", &json!({"requests": []})).await;
    assert_client_error(status, &body, 400, Some("requests"));
    let many: Vec<Value> = (0..5_001).map(|_| ok_check()).collect();
    let (status, body) = app
        .post("/v1/check/batch", &json!({"requests": many}))
        .await;
    assert_client_error(status, &body, 400, Some("requests"));
    let mut items = vec![ok_check(), ok_check(), ok_check()];
    items[2]["action"] = json!("fly");
    let (status, body) = app
        .post("/v1/check/batch", &json!({"requests": items}))
        .await;
    assert_client_error(status, &body, 400, Some("requests[2].action"));
}

fn cases_list() -> Vec<(Value, &'static str)> {
    vec![
        (
            json!({"principal": {"type": "User", "id": "u"}, "action": "read", "resource": {"type": "Asset", "id": 7}}),
            "resource.id",
        ),
        (
            json!({"principal": {"type": "User", "id": "u"}, "action": "reed", "resource": {"type": "Asset", "id": "a"}}),
            "action",
        ),
        (
            json!({"principal": {"type": "User", "id": "u"}, "action": "read", "resource": {"type": "Document", "id": "a"}}),
            "resource.type",
        ),
        (
            json!({"principal": {"type": "Asset", "id": "a"}, "action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "principal.type",
        ),
        (
            json!({"principal": {"type": "User", "id": "u"}, "action": "share", "resource": {"type": "Project", "id": "p"}}),
            "resource.type",
        ),
        (
            json!({"action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "principal",
        ),
        (
            json!({"principal": {"type": "User", "id": "u"}, "token": "x", "action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "principal",
        ),
        (
            json!({"principal": {"type": "User", "id": "u"}, "action": "read", "resource": {"type": "Asset", "id": "a"}, "context": {"authn": "anonymous_token"}}),
            "context.authn",
        ),
        (
            json!({"principal": {"type": "User", "id": ""}, "action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "principal.id",
        ),
    ]
}

#[tokio::test]
async fn limits_and_unknown_routes_answer_json() {
    let app = spawn_app(Db::Sqlite).await;
    let huge = format!("{{\"requests\": [\"{}\"]}}", "x".repeat(17 * 1024 * 1024));
    let (status, body) = raw(&app, reqwest::Method::POST, "/v1/check/batch", &huge).await;
    assert_client_error(status, &body, 413, None);
    let (status, body) = app.get("/v1/nothing-here").await;
    assert_client_error(status, &body, 404, None);
    let (status, body) = app.get("/v1/check").await;
    assert_client_error(status, &body, 405, None);
    // An unknown field in an import document is refused by name.
    let (status, body) = app
        .post(
            "/v1/admin/import",
            &json!({"users": [{"id": "x", "kind": "registered", "age": 3}]}),
        )
        .await;
    assert_client_error(status, &body, 400, None);
    assert!(
        body["field"].as_str().unwrap().starts_with("users[0]"),
        "{body}"
    );
}

async fn credentials_are_checked_on_every_route(db: Db) {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    let check_only = app.key_with_scopes(&["check"]).await;
    let admin_only = app.key_with_scopes(&["admin"]).await;
    let admin_routes: Vec<(&str, &str, Value)> = vec![
        (
            "POST",
            "/v1/admin/import",
            json!({"users": [{"id": "intruder", "kind": "registered"}]}),
        ),
        ("GET", "/v1/admin/export", Value::Null),
        (
            "POST",
            "/v1/admin/api-keys",
            json!({"name": "sneaky", "scopes": ["admin"]}),
        ),
        ("GET", "/v1/admin/api-keys", Value::Null),
        ("DELETE", "/v1/admin/api-keys/does-not-matter", Value::Null),
        ("GET", "/v1/admin/policies", Value::Null),
        ("POST", "/v1/admin/policies/reload", json!({})),
    ];
    let decision_routes: Vec<(&str, &str, Value)> = vec![
        ("POST", "/v1/check", ok_check()),
        ("POST", "/v1/check/batch", json!({"requests": [ok_check()]})),
        (
            "POST",
            "/access/v1/evaluation",
            json!({"subject": {"type": "User", "id": "u"}, "action": {"name": "read"}, "resource": {"type": "Asset", "id": "a"}}),
        ),
        (
            "POST",
            "/access/v1/evaluations",
            json!({"subject": {"type": "User", "id": "u"}, "action": {"name": "read"}, "evaluations": [{"resource": {"type": "Asset", "id": "a"}}]}),
        ),
    ];
    let (_, export_before) = app.get("/v1/admin/export").await;
    let audits_before = app.state.store.audit_event_count().await.unwrap();
    let send = |key: Option<String>, method: &str, path: &str, body: Value| {
        let mut req = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.base));
        if let Some(key) = key {
            req = req.header("authorization", key);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.expect("sent");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for (method, path, body) in admin_routes.iter().chain(&decision_routes) {
        for bad in [
            None,
            Some("Basic abc".to_string()),
            Some("Bearer wdn_nope_nope".to_string()),
        ] {
            let (status, value) = send(bad.clone(), method, path, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} with {bad:?}: {value}");
            assert_eq!(value["error"]["code"], "unauthenticated");
        }
    }
    for (method, path, body) in &admin_routes {
        let (status, value) = send(
            Some(format!("Bearer {check_only}")),
            method,
            path,
            body.clone(),
        )
        .await;
        assert_eq!(status, 403, "check-only key on {method} {path}: {value}");
    }
    for (method, path, body) in &decision_routes {
        let (status, value) = send(
            Some(format!("Bearer {admin_only}")),
            method,
            path,
            body.clone(),
        )
        .await;
        assert_eq!(status, 403, "admin-only key on {method} {path}: {value}");
        assert!(
            value["decision"] == "deny" || value["decision"] == false,
            "{value}"
        );
    }
    let (_, export_after) = app.get("/v1/admin/export").await;
    assert_eq!(
        export_before, export_after,
        "a refused call changed nothing"
    );
    // Creating the two keys wrote two audit rows before; refusals wrote none.
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits_before
    );
    // A revoked key stops working at once on the revoking server.
    let (_, keys) = app.get("/v1/admin/api-keys").await;
    let id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scopes"] == json!(["check"]))
        .unwrap()["id"]
        .clone();
    let (status, _) = send(
        Some(format!("Bearer {check_only}")),
        "POST",
        "/v1/check",
        ok_check(),
    )
    .await;
    assert_eq!(status, 200);
    let resp = app
        .client
        .delete(format!(
            "{}/v1/admin/api-keys/{}",
            app.base,
            id.as_str().unwrap()
        ))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let (status, _) = send(
        Some(format!("Bearer {check_only}")),
        "POST",
        "/v1/check",
        ok_check(),
    )
    .await;
    assert_eq!(status, 401);
}
both_backends!(credentials, credentials_are_checked_on_every_route);
