//! Client mistakes (CONTRACT §1.6): never a 500, always the JSON body
//! `{"error": {"code", "message"}}` with the right 4xx, naming the field;
//! decision routes still carry a deny. Credentials: 401 for a missing,
//! malformed, unknown or revoked key on every route, and 403 — with nothing
//! changed — for a key whose scope does not allow the route.

use crate::both_backends;
use crate::common::{spawn_app, Db, TestApp};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};
use warden::http::serve::READ_BUFFER;
use warden::http::DECISION_BODY_LIMIT;

fn world() -> Value {
    json!({
        "users": [{"id": "alice", "kind": "registered"}, {"id": "bob", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "alice"}],
        "projects": [{"id": "p", "workspace": "w"}],
        "assets": [{"id": "a", "project": "p"}]
    })
}

fn ok_check() -> Value {
    json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
           "resource": {"type": "Asset", "id": "a"}})
}

fn ok_evaluation() -> Value {
    json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "read"},
           "resource": {"type": "Asset", "id": "a"}})
}

/// Sends `body` (raw text, or nothing) to `path` with the Authorization
/// header `auth` (raw bytes, or none). Returns status and JSON body
/// (`Null` when the body is not JSON).
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Option<&[u8]>,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    if let Some(auth) = auth {
        req = req.header(
            "authorization",
            HeaderValue::from_bytes(auth).expect("header value"),
        );
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends `body` with the admin key.
async fn send_admin(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<String>,
) -> (u16, Value) {
    let auth = format!("Bearer {}", app.admin_key);
    send(app, method, path, Some(auth.as_bytes()), body).await
}

/// The error shape every refusal has: status `want`, `error.code` and a
/// non-empty `error.message`.
#[track_caller]
fn assert_error(what: &str, status: u16, body: &Value, want: u16) {
    assert_ne!(status, 500, "{what}: a client mistake answered 500: {body}");
    assert_eq!(status, want, "{what}: {body}");
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{what}: no error.code: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no error.message: {body}"
    );
}

/// A 400 naming `field` both in `field` and in the message.
#[track_caller]
fn assert_field(what: &str, status: u16, body: &Value, field: &str) {
    assert_error(what, status, body, 400);
    assert_eq!(body["error"]["code"], "invalid_request", "{what}: {body}");
    assert_eq!(body["field"], field, "{what}: {body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(field),
        "{what}: the message does not name {field}: {body}"
    );
}

/// Whether `path` answers decisions, whose errors carry a deny.
fn decides(path: &str) -> bool {
    path.starts_with("/v1/check")
        || (path.starts_with("/access/") && !path.starts_with("/access/v1/search/"))
}

/// The deny a decision route adds to every error (fail closed).
#[track_caller]
fn assert_denied(what: &str, path: &str, body: &Value) {
    let want = if path.starts_with("/access/") {
        json!(false)
    } else {
        json!("deny")
    };
    assert_eq!(
        body["decision"], want,
        "{what}: {path} did not deny: {body}"
    );
}

const SEARCH_ROUTES: [&str; 5] = [
    "/access/v1/search/resource",
    "/access/v1/search/subject",
    "/access/v1/search/action",
    "/v1/search/resources",
    "/v1/search/subjects",
];

const DECISION_ROUTES: [&str; 4] = [
    "/v1/check",
    "/v1/check/batch",
    "/access/v1/evaluation",
    "/access/v1/evaluations",
];

#[tokio::test]
async fn unreadable_bodies_are_400_json_on_every_route() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let (_, export_before) = app.get("/v1/admin/export").await;
    let bodies: Vec<(&str, String)> = vec![
        ("truncated JSON", "{\"principal\": ".into()),
        ("not JSON", "principal=alice&action=read".into()),
        ("empty body", String::new()),
        ("whitespace only", "  \n\t ".into()),
        ("an array", "[{\"action\": \"read\"}]".into()),
        ("null", "null".into()),
        ("a string", "\"read\"".into()),
        ("a number", "42".into()),
        ("two objects", "{} {}".into()),
        ("trailing garbage", "{}x".into()),
        ("single quotes", "{'action': 'read'}".into()),
        (
            "nesting past serde's limit",
            format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200)),
        ),
    ];
    let routes: Vec<&str> = DECISION_ROUTES
        .iter()
        .copied()
        .chain(SEARCH_ROUTES)
        .chain(["/v1/admin/import", "/v1/admin/api-keys"])
        .collect();
    for route in &routes {
        for (what, body) in &bodies {
            let what = format!("{what} to {route}");
            let (status, value) = send_admin(&app, Method::POST, route, Some(body.clone())).await;
            assert_error(&what, status, &value, 400);
            assert_eq!(value["error"]["code"], "invalid_request", "{what}: {value}");
            if decides(route) {
                assert_denied(&what, route, &value);
            }
        }
        // An empty body names the body.
        let (status, value) = send_admin(&app, Method::POST, route, Some(String::new())).await;
        assert_field(route, status, &value, "body");
        // So does no body at all (no Content-Type either).
        let (status, value) = send_admin(&app, Method::POST, route, None).await;
        assert_field(&format!("no body to {route}"), status, &value, "body");
    }
    // Invalid UTF-8 inside a string.
    let mut bytes = br#"{"principal": {"type": "User", "id": ""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(br#""}, "action": "read", "resource": {"type": "Asset", "id": "a"}}"#);
    let resp = app
        .client
        .post(format!("{}/v1/check", app.base))
        .bearer_auth(&app.admin_key)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    assert_error("invalid UTF-8", status, &value, 400);
    assert_denied("invalid UTF-8", "/v1/check", &value);

    // Refused imports and key creations wrote nothing.
    let (_, export_after) = app.get("/v1/admin/export").await;
    assert_eq!(export_before, export_after);
    let (_, keys) = app.get("/v1/admin/api-keys").await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
}

/// Requests with a JSON type wrong somewhere: each names the path.
#[tokio::test]
async fn wrong_json_types_name_the_field() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let with = |path: &[&str], value: Value, base: Value| {
        let mut body = base;
        let mut slot = &mut body;
        for key in path {
            slot = &mut slot[*key];
        }
        *slot = value;
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/check",
            with(&["resource", "id"], json!(7), ok_check()),
            "resource.id",
        ),
        (
            "/v1/check",
            with(&["principal", "id"], json!(true), ok_check()),
            "principal.id",
        ),
        (
            "/v1/check",
            with(&["resource", "type"], json!(["Asset"]), ok_check()),
            "resource.type",
        ),
        (
            "/v1/check",
            with(&["principal"], json!("alice"), ok_check()),
            "principal",
        ),
        (
            "/v1/check",
            with(&["action"], json!({"name": "read"}), ok_check()),
            "action",
        ),
        (
            "/v1/check",
            with(&["context"], json!("admin"), ok_check()),
            "context",
        ),
        (
            "/v1/check",
            with(&["entities"], json!({"uid": 1}), ok_check()),
            "entities",
        ),
        (
            "/v1/check",
            with(&["token"], json!(12), ok_check()),
            "token",
        ),
        (
            "/v1/check/batch",
            json!({"requests": {"0": ok_check()}}),
            "requests",
        ),
        (
            "/v1/check/batch",
            json!({"requests": [ok_check(), with(&["resource", "id"], json!(7), ok_check())]}),
            "requests[1].resource.id",
        ),
        (
            "/v1/check/batch",
            json!({"requests": [ok_check(), ok_check(), with(&["action"], json!(null), ok_check())]}),
            "requests[2].action",
        ),
        (
            "/access/v1/evaluation",
            with(&["subject", "id"], json!(7), ok_evaluation()),
            "subject.id",
        ),
        (
            "/access/v1/evaluation",
            with(&["action"], json!("read"), ok_evaluation()),
            "action",
        ),
        (
            "/access/v1/evaluation",
            with(&["resource", "type"], json!(1), ok_evaluation()),
            "resource.type",
        ),
        (
            "/access/v1/evaluations",
            json!({"subject": {"type": "User", "id": "alice"}, "evaluations": "all"}),
            "evaluations",
        ),
        (
            "/access/v1/evaluations",
            json!({"subject": {"type": "User", "id": "alice"},
            "evaluations": [{"action": {"name": "read"}, "resource": {"type": "Asset", "id": 7}}]}),
            "evaluations[0].resource.id",
        ),
        (
            "/access/v1/evaluations",
            json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "read"},
            "resource": {"type": "Asset", "id": "a"}, "options": {"evaluations_semantic": 1}}),
            "options.evaluations_semantic",
        ),
    ];
    for (route, body, field) in cases {
        let (status, value) = app.post(route, &body).await;
        let what = format!("{route} {body}");
        assert_field(&what, status, &value, field);
        assert_denied(&what, route, &value);
    }
    // Import documents too: wrong types are refused by path, nothing is written.
    for (doc, field) in [
        (
            json!({"users": [{"id": 1, "kind": "registered"}]}),
            "users[0].id",
        ),
        (
            json!({"users": [{"id": "x", "kind": "admin"}]}),
            "users[0].kind",
        ),
        (
            json!({"assets": [{"id": "a9", "project": "p", "public_access": true}]}),
            "assets[0].public_access",
        ),
        (json!({"workspaces": {"id": "w9"}}), "workspaces"),
    ] {
        let (status, value) = app.post("/v1/admin/import", &doc).await;
        assert_field(&doc.to_string(), status, &value, field);
    }
}

/// Well-formed JSON that cannot be asked: the field named, with the deny.
fn unaskable() -> Vec<(&'static str, Value, &'static str)> {
    let mut unknown_field = ok_check();
    unknown_field["sudo"] = json!(true);
    let mut principal_extra = ok_check();
    principal_extra["principal"]["kind"] = json!("admin");
    vec![
        (
            "unknown action",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "fly",
            "resource": {"type": "Asset", "id": "a"}}),
            "action",
        ),
        (
            "Warden's own API action",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "decide",
            "resource": {"type": "Asset", "id": "a"}}),
            "action",
        ),
        (
            "import is not a decision action",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "import",
            "resource": {"type": "Asset", "id": "a"}}),
            "action",
        ),
        (
            "action with namespace",
            json!({"principal": {"type": "User", "id": "alice"},
            "action": "Warden::Action::\"read\"", "resource": {"type": "Asset", "id": "a"}}),
            "action",
        ),
        (
            "unknown resource type",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Document", "id": "a"}}),
            "resource.type",
        ),
        (
            "unknown principal type",
            json!({"principal": {"type": "Robot", "id": "r"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal.type",
        ),
        (
            "type names are case-sensitive",
            json!({"principal": {"type": "user", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal.type",
        ),
        (
            "reserved type Role as resource",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Role", "id": "workspace/w/owners"}}),
            "resource.type",
        ),
        (
            "reserved type ApiKey as principal",
            json!({"principal": {"type": "ApiKey", "id": "k"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal.type",
        ),
        (
            "reserved type Service as resource",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Service", "id": "warden"}}),
            "resource.type",
        ),
        (
            "principal type Asset",
            json!({"principal": {"type": "Asset", "id": "a"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal.type",
        ),
        (
            "create_asset applies to projects only",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "create_asset",
            "resource": {"type": "Workspace", "id": "w"}}),
            "resource.type",
        ),
        (
            "create_project applies to workspaces only",
            json!({"principal": {"type": "User", "id": "alice"},
            "action": "create_project", "resource": {"type": "Asset", "id": "a"}}),
            "resource.type",
        ),
        (
            "a user is no resource",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "User", "id": "bob"}}),
            "resource.type",
        ),
        (
            "missing principal",
            json!({"action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "principal",
        ),
        (
            "null principal",
            json!({"principal": null, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal",
        ),
        (
            "principal and token",
            json!({"principal": {"type": "User", "id": "alice"}, "token": "eyJ.x.y",
            "action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "principal",
        ),
        (
            "context claims authn",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}, "context": {"authn": "app"}}),
            "context.authn",
        ),
        (
            "context claims a token",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}, "context": {"authn": "oidc_token", "x": 1}}),
            "context.authn",
        ),
        (
            "empty id",
            json!({"principal": {"type": "User", "id": ""}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal.id",
        ),
        (
            "id over 256 bytes",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "x".repeat(257)}}),
            "resource.id",
        ),
        (
            "control character in an id",
            json!({"principal": {"type": "User", "id": "al\u{0}ice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}}),
            "principal.id",
        ),
        (
            "entities not Cedar JSON",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"}, "entities": [{"id": "x"}]}),
            "entities",
        ),
        (
            "supplied role entity",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"},
            "entities": [{"uid": {"type": "Warden::Role", "id": "workspace/w/owners"}, "attrs": {}, "parents": []}]}),
            "entities",
        ),
        (
            "supplied API key entity",
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
            "resource": {"type": "Asset", "id": "a"},
            "entities": [{"uid": {"type": "Warden::ApiKey", "id": "k"}, "attrs": {"scopes": ["admin"]}, "parents": []}]}),
            "entities",
        ),
        ("unknown top-level field", unknown_field, "sudo"),
        (
            "unknown field in the principal",
            principal_extra,
            "principal.kind",
        ),
    ]
}

#[tokio::test]
async fn requests_that_cannot_be_asked_are_400_naming_the_field() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    for (what, request, field) in unaskable() {
        let (status, body) = app.post("/v1/check", &request).await;
        assert_error(what, status, &body, 400);
        assert_denied(what, "/v1/check", &body);
        assert_field(what, status, &body, field);
        // Inside a batch the same mistake names the item.
        let batch = json!({"requests": [ok_check(), request, ok_check()]});
        let (status, body) = app.post("/v1/check/batch", &batch).await;
        assert_denied(what, "/v1/check/batch", &body);
        assert_field(
            &format!("batch {what}"),
            status,
            &body,
            &format!("requests[1].{field}"),
        );
        assert!(
            body.get("results").is_none(),
            "a bad item refuses the whole batch: {body}"
        );
    }
    // Missing required fields are named in the message.
    for (request, name) in [
        (
            json!({"principal": {"type": "User", "id": "alice"}, "resource": {"type": "Asset", "id": "a"}}),
            "action",
        ),
        (
            json!({"principal": {"type": "User", "id": "alice"}, "action": "read"}),
            "resource",
        ),
        (
            json!({"principal": {"type": "User"}, "action": "read", "resource": {"type": "Asset", "id": "a"}}),
            "id",
        ),
    ] {
        let (status, body) = app.post("/v1/check", &request).await;
        assert_error(name, status, &body, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{name}`")),
            "{body}"
        );
        assert_denied(name, "/v1/check", &body);
    }
    // An unverifiable token is a 401 naming the token, never a decision
    // about whoever the token claims to be.
    let (status, body) = app
        .post(
            "/v1/check",
            &json!({"token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "action": "read",
                                   "resource": {"type": "Asset", "id": "a"}}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["field"], "token");
    assert_denied("token", "/v1/check", &body);
}

/// Replacing any one field of a valid request by a value of every JSON
/// type never answers 5xx, and every refusal has the error body.
#[tokio::test]
async fn no_single_field_mutation_answers_500() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5e300),
        json!(""),
        json!("x".repeat(1000)),
        json!([]),
        json!([null, {}]),
        json!({}),
        json!({"type": "User", "id": "alice"}),
        json!({"__entity": {"type": "Warden::User", "id": "alice"}}),
    ];
    let paths: &[(&str, &[&str])] = &[
        ("/v1/check", &["principal"]),
        ("/v1/check", &["principal", "type"]),
        ("/v1/check", &["principal", "id"]),
        ("/v1/check", &["action"]),
        ("/v1/check", &["resource"]),
        ("/v1/check", &["resource", "type"]),
        ("/v1/check", &["resource", "id"]),
        ("/v1/check", &["context"]),
        ("/v1/check", &["context", "extra"]),
        ("/v1/check", &["entities"]),
        ("/access/v1/evaluation", &["subject"]),
        ("/access/v1/evaluation", &["subject", "properties"]),
        ("/access/v1/evaluation", &["action"]),
        ("/access/v1/evaluation", &["action", "name"]),
        ("/access/v1/evaluation", &["resource", "id"]),
        ("/access/v1/evaluation", &["context"]),
    ];
    let mut checked = 0;
    for (route, path) in paths {
        for value in &values {
            let mut body = if route.starts_with("/access/") {
                ok_evaluation()
            } else {
                ok_check()
            };
            let mut slot = &mut body;
            for key in *path {
                slot = &mut slot[*key];
            }
            *slot = value.clone();
            let (status, answer) = app.post(route, &body).await;
            let what = format!("{route} {body}");
            assert!(status == 200 || status == 400, "{what}: {status} {answer}");
            if status == 400 {
                assert_error(&what, status, &answer, 400);
                assert_denied(&what, route, &answer);
            } else {
                assert!(answer.get("decision").is_some(), "{what}: {answer}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, paths.len() * values.len());
}

#[tokio::test]
async fn batch_sizes_are_bounded() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let (status, body) = app.post("/v1/check/batch", &json!({"requests": []})).await;
    assert_field("0 requests", status, &body, "requests");
    assert_denied("0 requests", "/v1/check/batch", &body);
    let (status, body) = app.post("/v1/check/batch", &json!({})).await;
    assert_error("no requests field", status, &body, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requests"),
        "{body}"
    );
    // 5,000 is the largest batch; one more is refused whole.
    let max: Vec<Value> = (0..5_000).map(|_| ok_check()).collect();
    let (status, body) = app.post("/v1/check/batch", &json!({"requests": max})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 5_000);
    assert!(body["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["decision"] == "allow"));
    let over: Vec<Value> = (0..5_001).map(|_| ok_check()).collect();
    let (status, body) = app
        .post("/v1/check/batch", &json!({"requests": over}))
        .await;
    assert_field("5001 requests", status, &body, "requests");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("5001"),
        "{body}"
    );
    assert_denied("5001 requests", "/v1/check/batch", &body);
    assert!(body.get("results").is_none(), "{body}");
    // The same bound holds for AuthZEN evaluations.
    let items: Vec<Value> = (0..5_001)
        .map(|_| json!({"resource": {"type": "Asset", "id": "a"}}))
        .collect();
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({"subject": {"type": "User", "id": "alice"},
            "action": {"name": "read"}, "evaluations": items}),
        )
        .await;
    assert_error("5001 evaluations", status, &body, 400);
    assert_denied("5001 evaluations", "/access/v1/evaluations", &body);
}

#[tokio::test]
async fn bodies_over_the_decision_limit_are_413_json() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    // A valid request padded with whitespace to exactly the limit is decided...
    let padded = |request: &Value, size: usize| {
        let mut text = request.to_string();
        let pad = size - text.len();
        text.insert_str(1, &" ".repeat(pad));
        assert_eq!(text.len(), size);
        text
    };
    let (status, body) = send_admin(
        &app,
        Method::POST,
        "/v1/check",
        Some(padded(&ok_check(), DECISION_BODY_LIMIT)),
    )
    .await;
    assert_eq!(status, 200, "a body at the limit is read: {body}");
    assert_eq!(body["decision"], "allow");
    // ...and one byte more is refused on every decision route.
    for (route, request) in [
        ("/v1/check", ok_check()),
        ("/v1/check/batch", json!({"requests": [ok_check()]})),
        ("/access/v1/evaluation", ok_evaluation()),
        ("/access/v1/evaluations", ok_evaluation()),
    ] {
        let (status, body) = send_admin(
            &app,
            Method::POST,
            route,
            Some(padded(&request, DECISION_BODY_LIMIT + 1)),
        )
        .await;
        assert_error(route, status, &body, 413);
        assert_eq!(body["error"]["code"], "body_too_large", "{body}");
        assert_denied(route, route, &body);
    }
    // Admin routes have their own, larger limit: a 17 MiB import is read.
    let doc = json!({"users": [{"id": "carol", "kind": "registered"}]});
    let (status, body) = send_admin(
        &app,
        Method::POST,
        "/v1/admin/import",
        Some(padded(&doc, DECISION_BODY_LIMIT + 1024 * 1024)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported"]["users"], 1);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let app = spawn_app(Db::Sqlite).await;
    let auth = format!("Bearer {}", app.admin_key);
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/nope"),
        (Method::POST, "/v1/checks"),
        (Method::POST, "/v1/check/batch/extra"),
        (Method::GET, "/v1/admin/nothing"),
        (Method::POST, "/access/v1/evaluationz"),
        (Method::POST, "/access/v2/evaluation"),
        (Method::DELETE, "/v1/admin/api-keys/a/b"),
    ] {
        for key in [Some(auth.as_bytes()), None] {
            let (status, body) = send(&app, method.clone(), path, key, None).await;
            assert_error(&format!("{method} {path}"), status, &body, 404);
            assert_eq!(body["error"]["code"], "not_found", "{body}");
        }
    }
    for (method, path) in [
        (Method::GET, "/v1/check"),
        (Method::PUT, "/v1/check"),
        (Method::GET, "/v1/check/batch"),
        (Method::DELETE, "/v1/check/batch"),
        (Method::GET, "/access/v1/evaluation"),
        (Method::PATCH, "/access/v1/evaluations"),
        (Method::POST, "/.well-known/authzen-configuration"),
        (Method::GET, "/v1/admin/import"),
        (Method::POST, "/v1/admin/export"),
        (Method::PUT, "/v1/admin/api-keys"),
        (Method::GET, "/v1/admin/api-keys/some-id"),
        (Method::POST, "/v1/admin/policies"),
        (Method::GET, "/v1/admin/policies/reload"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/readyz"),
    ] {
        let (status, body) = send(&app, method.clone(), path, Some(auth.as_bytes()), None).await;
        let what = format!("{method} {path}");
        assert_error(&what, status, &body, 405);
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{what}: {body}"
        );
    }
    // A 405 says which methods the route takes.
    let resp = app
        .client
        .get(format!("{}/v1/check", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
}

/// Every route that needs an API key, with a body it would accept.
fn keyed_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::POST, "/v1/check", Some(ok_check())),
        (
            Method::POST,
            "/v1/check/batch",
            Some(json!({"requests": [ok_check()]})),
        ),
        (Method::POST, "/access/v1/evaluation", Some(ok_evaluation())),
        (
            Method::POST,
            "/access/v1/evaluations",
            Some(ok_evaluation()),
        ),
        (
            Method::POST,
            "/access/v1/search/resource",
            Some(
                json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "read"},
                        "resource": {"type": "Asset"}}),
            ),
        ),
        (
            Method::POST,
            "/access/v1/search/subject",
            Some(
                json!({"subject": {"type": "User"}, "action": {"name": "read"},
                        "resource": {"type": "Asset", "id": "a"}}),
            ),
        ),
        (
            Method::POST,
            "/access/v1/search/action",
            Some(
                json!({"subject": {"type": "User", "id": "alice"}, "resource": {"type": "Asset", "id": "a"}}),
            ),
        ),
        (
            Method::POST,
            "/v1/search/resources",
            Some(
                json!({"principal": {"type": "User", "id": "alice"}, "action": "read",
                        "resource_type": "Asset"}),
            ),
        ),
        (
            Method::POST,
            "/v1/search/subjects",
            Some(json!({"action": "read", "resource": {"type": "Asset", "id": "a"}})),
        ),
        (
            Method::POST,
            "/v1/admin/import",
            Some(json!({"users": [{"id": "intruder", "kind": "registered"}]})),
        ),
        (Method::GET, "/v1/admin/export", None),
        (
            Method::POST,
            "/v1/admin/api-keys",
            Some(json!({"name": "sneaky", "scopes": ["admin", "check"]})),
        ),
        (Method::GET, "/v1/admin/api-keys", None),
        (Method::DELETE, "/v1/admin/api-keys/whatever", None),
        (Method::GET, "/v1/admin/policies", None),
        (Method::POST, "/v1/admin/policies/reload", None),
    ]
}

async fn no_valid_key_is_401_everywhere(db: Db) {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    let (_, export_before) = app.get("/v1/admin/export").await;
    let audits_before = app.state.store.audit_event_count().await.unwrap();
    let long = format!("Bearer wdn_{}", "a".repeat(500));
    let wrong_secret = {
        // The admin key's id with another secret.
        let (prefix, _) = app.admin_key.rsplit_once('_').unwrap();
        format!("Bearer {prefix}_{}", "0".repeat(64))
    };
    let headers: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("no Authorization header", None),
        ("Basic scheme", Some(b"Basic YWRtaW46YWRtaW4=".to_vec())),
        ("scheme only", Some(b"Bearer".to_vec())),
        ("empty key", Some(b"Bearer    ".to_vec())),
        (
            "key without scheme",
            Some(app.admin_key.as_bytes().to_vec()),
        ),
        (
            "unknown key",
            Some(b"Bearer wdn_0000000000000000_ffff".to_vec()),
        ),
        ("known id, wrong secret", Some(wrong_secret.into_bytes())),
        ("over-long key", Some(long.into_bytes())),
        ("non-UTF-8 header", Some(b"Bearer wdn_\xff\xfe".to_vec())),
    ];
    for (method, path, body) in keyed_routes() {
        for (what, header) in &headers {
            let (status, value) = send(
                &app,
                method.clone(),
                path,
                header.as_deref(),
                body.as_ref().map(Value::to_string),
            )
            .await;
            let what = format!("{what} on {method} {path}");
            assert_error(&what, status, &value, 401);
            assert_eq!(value["error"]["code"], "unauthenticated", "{what}: {value}");
            if decides(path) {
                assert_denied(&what, path, &value);
            } else {
                assert!(value.get("results").is_none(), "{what}: {value}");
            }
        }
        // Credentials are checked before the body is even read.
        if method == Method::POST {
            let (status, value) =
                send(&app, method.clone(), path, None, Some("{oops".into())).await;
            assert_error(&format!("no key, bad body on {path}"), status, &value, 401);
        }
    }
    // Nothing changed and nothing was audited.
    let (_, export_after) = app.get("/v1/admin/export").await;
    assert_eq!(export_before, export_after);
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits_before
    );
}
both_backends!(unauthenticated, no_valid_key_is_401_everywhere);

async fn revoked_keys_stop_at_once(db: Db) {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    let (_, created) = app
        .post(
            "/v1/admin/api-keys",
            &json!({"name": "both", "scopes": ["check", "admin"]}),
        )
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    // Used once on every route, so the key sits in this process's cache.
    let auth = format!("Bearer {key}");
    for (method, path, body) in keyed_routes() {
        if method == Method::DELETE
            || path == "/v1/admin/import"
            || path == "/v1/admin/policies/reload"
        {
            continue;
        }
        let (status, value) = send(
            &app,
            method.clone(),
            path,
            Some(auth.as_bytes()),
            body.map(|b| b.to_string()),
        )
        .await;
        assert!(
            status == 200 || status == 201,
            "{method} {path} before revoking: {status} {value}"
        );
    }
    let (status, _) = app
        .delete_with(Some(&app.admin_key), &format!("/v1/admin/api-keys/{id}"))
        .await;
    assert_eq!(status, 204);
    let (_, export_before) = app.get("/v1/admin/export").await;
    let audits_before = app.state.store.audit_event_count().await.unwrap();
    for (method, path, body) in keyed_routes() {
        let (status, value) = send(
            &app,
            method.clone(),
            path,
            Some(auth.as_bytes()),
            body.map(|b| b.to_string()),
        )
        .await;
        let what = format!("revoked key on {method} {path}");
        assert_error(&what, status, &value, 401);
        assert_eq!(value["error"]["code"], "unauthenticated", "{what}: {value}");
    }
    let (_, export_after) = app.get("/v1/admin/export").await;
    assert_eq!(export_before, export_after);
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits_before
    );
    // Other keys are unaffected by the revocation.
    assert_eq!(app.decide("alice", "read", "Asset", "a").await, "allow");
}
both_backends!(revoked, revoked_keys_stop_at_once);

async fn scopes_fail_closed_on_every_route(db: Db) {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    let check_only = app.key_with_scopes(&["check"]).await;
    let admin_only = app.key_with_scopes(&["admin"]).await;
    // The first admin key's id: a real target for a revocation attempt.
    let (_, keys) = app.get("/v1/admin/api-keys").await;
    let keys_before = keys["keys"].as_array().unwrap().clone();
    let admin_id = keys_before
        .iter()
        .find(|k| k["name"] == "first admin key")
        .expect("first admin key listed")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoke_admin = format!("/v1/admin/api-keys/{admin_id}");
    let admin_routes: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/admin/import",
            Some(json!({"users": [{"id": "intruder", "kind": "registered"}],
                        "memberships": [{"user": "intruder", "scope": "workspace", "id": "w", "role": "owner"}]})),
        ),
        (Method::GET, "/v1/admin/export", None),
        (
            Method::POST,
            "/v1/admin/api-keys",
            Some(json!({"name": "escalate", "scopes": ["admin"]})),
        ),
        (Method::GET, "/v1/admin/api-keys", None),
        (Method::DELETE, &revoke_admin, None),
        (Method::GET, "/v1/admin/policies", None),
        (Method::POST, "/v1/admin/policies/reload", None),
    ];
    let (_, export_before) = app.get("/v1/admin/export").await;
    let audits_before = app.state.store.audit_event_count().await.unwrap();
    let check_auth = format!("Bearer {check_only}");
    for (method, path, body) in &admin_routes {
        let (status, value) = send(
            &app,
            method.clone(),
            path,
            Some(check_auth.as_bytes()),
            body.as_ref().map(Value::to_string),
        )
        .await;
        let what = format!("check-only key on {method} {path}");
        assert_error(&what, status, &value, 403);
        assert_eq!(value["error"]["code"], "forbidden", "{what}: {value}");
        // A refusal leaks nothing: no export, no key listing, no policies.
        assert!(
            value.get("keys").is_none()
                && value.get("users").is_none()
                && value.get("policies").is_none()
                && value.get("key").is_none(),
            "{what}: {value}"
        );
    }
    let admin_auth = format!("Bearer {admin_only}");
    let evaluations = json!({"subject": {"type": "User", "id": "alice"}, "action": {"name": "read"},
                             "evaluations": [{"resource": {"type": "Asset", "id": "a"}}]});
    let decide_routes = keyed_routes()
        .into_iter()
        .filter(|(_, path, _)| !path.starts_with("/v1/admin/"))
        .map(|(_, path, body)| (path, body.unwrap_or_default()))
        .chain([("/access/v1/evaluations", evaluations)]);
    for (path, body) in decide_routes {
        let (status, value) = send(
            &app,
            Method::POST,
            path,
            Some(admin_auth.as_bytes()),
            Some(body.to_string()),
        )
        .await;
        let what = format!("admin-only key on {path}");
        assert_error(&what, status, &value, 403);
        assert_eq!(value["error"]["code"], "forbidden", "{what}: {value}");
        if decides(path) {
            assert_denied(&what, path, &value);
        }
        assert!(
            value.get("results").is_none() && value.get("evaluations").is_none(),
            "{what}: {value}"
        );
    }
    // Nothing changed: same world, no audit row, same keys, admin key alive.
    let (_, export_after) = app.get("/v1/admin/export").await;
    assert_eq!(export_before, export_after);
    assert!(export_after["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"] != "intruder"));
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits_before
    );
    let (status, keys) = app.get("/v1/admin/api-keys").await;
    assert_eq!(status, 200, "the first admin key still works");
    assert_eq!(keys["keys"].as_array().unwrap(), &keys_before);
    // And each key still does what its scope allows.
    let (status, _) = send(
        &app,
        Method::POST,
        "/v1/check",
        Some(check_auth.as_bytes()),
        Some(ok_check().to_string()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &app,
        Method::GET,
        "/v1/admin/export",
        Some(admin_auth.as_bytes()),
        None,
    )
    .await;
    assert_eq!(status, 200);
}
both_backends!(scopes, scopes_fail_closed_on_every_route);

/// The route's Cedar action is asked before the body is read: a key without
/// the scope is refused with 403 whatever it sends.
#[tokio::test]
async fn scope_is_checked_before_the_body_is_read() {
    let app = crate::common::spawn_app(crate::common::Db::Sqlite).await;
    let check_only = app.key_with_scopes(&["check"]).await;
    let resp = app
        .client
        .post(format!("{}/v1/admin/import", app.base))
        .bearer_auth(&check_only)
        .header("content-type", "application/json")
        .body("{ this is not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 403);
    let admin_only = app.key_with_scopes(&["admin"]).await;
    let resp = app
        .client
        .post(format!("{}/v1/check", app.base))
        .bearer_auth(&admin_only)
        .body("[]")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 403);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["decision"], "deny");
}

/// hyper's read buffer is bounded per connection (`warden::http::serve`):
/// a request head must fit in it. A head of half the bound is read; one
/// larger than the bound is refused with 431 before any handler runs (with
/// hyper's default bound, about 408 KiB, it would have been read).
#[tokio::test]
async fn request_heads_over_the_read_buffer_are_431() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let check = |padding: usize| {
        app.client
            .post(format!("{}/v1/check", app.base))
            .bearer_auth(&app.admin_key)
            .header("x-padding", "a".repeat(padding))
            .json(&ok_check())
            .send()
    };
    let response = check(READ_BUFFER / 2).await.expect("request sent");
    assert_eq!(response.status().as_u16(), 200, "a head within the bound");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["decision"], "allow", "{body}");
    let response = check(READ_BUFFER + 16 * 1024).await.expect("request sent");
    assert_eq!(response.status().as_u16(), 431, "a head over the bound");
    // The server goes on serving.
    let response = check(0).await.expect("request sent");
    assert_eq!(response.status().as_u16(), 200);
}
