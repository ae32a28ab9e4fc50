//! OpenID AuthZEN 1.0: evaluation, evaluations with defaults and the three
//! evaluation semantics, and the PDP metadata.

use crate::common::{spawn_app, Db, TestApp};
use serde_json::{json, Value};

async fn app() -> TestApp {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&json!({
        "users": [{"id": "alice", "kind": "registered"}, {"id": "bob", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "alice"}],
        "projects": [{"id": "p", "workspace": "w"}],
        "assets": [{"id": "a1", "project": "p"}, {"id": "a2", "project": "p"}, {"id": "a3", "project": "p"}],
        "grants": [{"user": "bob", "asset": "a2", "permission": "read"}]
    }))
    .await;
    app
}

fn decisions(body: &Value) -> Vec<bool> {
    body["evaluations"]
        .as_array()
        .expect("evaluations")
        .iter()
        .map(|e| e["decision"].as_bool().expect("bool"))
        .collect()
}

#[tokio::test]
async fn evaluation_answers_a_boolean_with_reasons() {
    let app = app().await;
    let ask = |user: &str| {
        json!({"subject": {"type": "User", "id": user, "properties": {"ignored": true}},
                                  "action": {"name": "write"}, "resource": {"type": "Asset", "id": "a1"}})
    };
    let (status, body) = app.post("/access/v1/evaluation", &ask("alice")).await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], true);
    assert_eq!(body["context"]["reasons"], json!(["workspace-owner"]));
    let (_, body) = app.post("/access/v1/evaluation", &ask("bob")).await;
    assert_eq!(body["decision"], false);
}

#[tokio::test]
async fn evaluations_apply_defaults_and_semantics() {
    let app = app().await;
    let body = |semantic: Option<&str>| {
        let mut b = json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "read"},
        "evaluations": [
            {"resource": {"type": "Asset", "id": "a1"}},
            {"resource": {"type": "Asset", "id": "a2"}},
            {"resource": {"type": "Asset", "id": "a3"}},
            {"subject": {"type": "User", "id": "alice"}, "resource": {"type": "Asset", "id": "a3"}}
        ]});
        if let Some(s) = semantic {
            b["options"] = json!({"evaluations_semantic": s});
        }
        b
    };
    let (status, all) = app.post("/access/v1/evaluations", &body(None)).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(decisions(&all), vec![false, true, false, true]);
    let (_, all) = app
        .post("/access/v1/evaluations", &body(Some("execute_all")))
        .await;
    assert_eq!(decisions(&all), vec![false, true, false, true]);
    let (_, deny_first) = app
        .post("/access/v1/evaluations", &body(Some("deny_on_first_deny")))
        .await;
    assert_eq!(decisions(&deny_first), vec![false]);
    let (_, permit_first) = app
        .post(
            "/access/v1/evaluations",
            &body(Some("permit_on_first_permit")),
        )
        .await;
    assert_eq!(decisions(&permit_first), vec![false, true]);
    let (status, bad) = app
        .post("/access/v1/evaluations", &body(Some("whenever")))
        .await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test]
async fn a_bad_item_is_false_with_its_error_and_the_rest_are_decided() {
    let app = app().await;
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({
            "subject": {"type": "User", "id": "alice"},
            "evaluations": [
                {"action": {"name": "read"}, "resource": {"type": "Asset", "id": "a1"}},
                {"action": {"name": "teleport"}, "resource": {"type": "Asset", "id": "a1"}},
                {"resource": {"type": "Asset", "id": "a1"}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decisions(&body), vec![true, false, false]);
    assert!(body["evaluations"][1]["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evaluations[1].action"));
    assert!(body["evaluations"][2]["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("evaluations[2].action"));
}

#[tokio::test]
async fn without_evaluations_it_is_a_single_evaluation() {
    let app = app().await;
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({"subject": {"type": "User", "id": "alice"},
        "action": {"name": "delete"}, "resource": {"type": "Workspace", "id": "w"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], true);
    assert!(body.get("evaluations").is_none());
}

#[tokio::test]
async fn metadata_lists_the_endpoints_without_credentials() {
    let app = app().await;
    let (status, body) = app
        .get_with(None, "/.well-known/authzen-configuration")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["policy_decision_point"], app.base.as_str());
    assert_eq!(
        body["access_evaluation_endpoint"],
        format!("{}/access/v1/evaluation", app.base).as_str()
    );
    assert_eq!(
        body["access_evaluations_endpoint"],
        format!("{}/access/v1/evaluations", app.base).as_str()
    );
}
