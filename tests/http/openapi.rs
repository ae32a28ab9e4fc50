//! `GET /openapi.json`: generated from the code, it parses as OpenAPI 3.1,
//! and the router serves exactly the routes it lists.

use crate::common::{repo, spawn_app, Db};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Routes anyone may call: probes, discovery metadata, anonymous sign-up.
const PUBLIC: [&str; 7] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/.well-known/jwks.json",
    "/.well-known/authzen-configuration",
    "/api/auth/anonymous",
];

#[tokio::test]
async fn the_openapi_document_parses_and_lists_every_route_the_router_serves() {
    let app = spawn_app(Db::Sqlite).await;
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let spec: Value = serde_json::from_str(&text).expect("JSON");
    // Parsed by an OpenAPI 3.1 reader that is not the one that wrote it.
    let typed = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    assert_eq!(paths.len(), typed.paths.as_ref().map_or(0, |p| p.len()));

    // Every documented operation is served: never the router's own 404/405.
    let mut operations = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            operations += 1;
            let url = format!(
                "{}{}",
                app.base,
                path.replace("{id}", "x").replace("{user}", "u")
            );
            let resp = app
                .client
                .request(method.to_uppercase().parse().unwrap(), url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let unrouted = (status == 404
                && body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no such route"))
                || status == 405;
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {status} {body}"
            );
            // Documented: what it takes, what it answers, and who may call it.
            assert!(
                operation["summary"].is_string() || operation["description"].is_string(),
                "{method} {path}"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success response"
            );
            if !PUBLIC.contains(&path.as_str()) {
                assert!(
                    operation["security"].is_array(),
                    "{method} {path}: no security requirement"
                );
                assert!(
                    responses.contains_key("401") && responses.contains_key("400"),
                    "{method} {path}"
                );
                // And an unauthenticated call is refused.
                assert!(status == 401, "{method} {path}: {status}");
            }
        }
    }
    assert!(operations >= 53, "{operations} operations");
    // Schemas of request and response bodies are there.
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "CheckBody",
        "CheckResponse",
        "World",
        "WorkspaceRecord",
        "AssetChange",
        "InviteBody",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }

    // The router has no route of its own: every route is registered with its
    // description through utoipa_axum::routes!, so nothing is served that the
    // document does not list.
    for entry in walk(&repo().join("src/http")) {
        let source = std::fs::read_to_string(&entry).unwrap();
        for (n, line) in source.lines().enumerate() {
            assert!(
                !line.contains(".route(\"")
                    && (!line.contains("Router::new()") || line.contains("OpenApiRouter::new()")),
                "{}:{}: a route registered without its OpenAPI description; use routes!",
                entry.display(),
                n + 1
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}
