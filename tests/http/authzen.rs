//! OpenID AuthZEN Authorization API 1.0 over the real server: access
//! evaluation, access evaluations (top-level defaults, per-item overrides,
//! the three evaluation semantics, bad items) and the PDP metadata (every
//! advertised endpoint answers). The searches are in `search.rs`.

use crate::common::{spawn_app, spawn_configured, Db, TestApp};
use serde_json::{json, Value};

async fn app() -> TestApp {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&json!({
        "users": [
            {"id": "alice", "kind": "registered"},
            {"id": "bob", "kind": "registered"},
            {"id": "carol", "kind": "registered"}
        ],
        "workspaces": [{"id": "w", "owner": "alice"}],
        "projects": [{"id": "p", "workspace": "w"}],
        "assets": [
            {"id": "a1", "project": "p"},
            {"id": "a2", "project": "p"},
            {"id": "a3", "project": "p"}
        ],
        "memberships": [{"user": "carol", "scope": "workspace", "id": "w", "role": "editor"}],
        "grants": [{"user": "bob", "asset": "a2", "permission": "read"}]
    }))
    .await;
    app
}

fn user(id: &str) -> Value {
    json!({"type": "User", "id": id})
}

fn asset(id: &str) -> Value {
    json!({"type": "Asset", "id": id})
}

fn action(name: &str) -> Value {
    json!({"name": name})
}

fn decisions(body: &Value) -> Vec<bool> {
    body["evaluations"]
        .as_array()
        .unwrap_or_else(|| panic!("no evaluations in {body}"))
        .iter()
        .map(|e| e["decision"].as_bool().expect("boolean decision"))
        .collect()
}

/// The same question through `/v1/check`.
async fn check(app: &TestApp, subject: &Value, action: &str, resource: &Value) -> bool {
    let (status, body) = app
        .post(
            "/v1/check",
            &json!({"principal": subject, "action": action, "resource": resource}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["decision"] == "allow"
}

#[tokio::test]
async fn evaluation_answers_allow_and_deny() {
    let app = app().await;
    let (_, policies) = app.get("/v1/admin/policies").await;
    let version = policies["version"].clone();

    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": user("alice"), "action": action("write"), "resource": asset("a1")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["context", "decision"], "{body}");
    assert_eq!(body["decision"], json!(true));
    assert_eq!(body["context"]["reasons"], json!(["workspace-owner"]));
    assert_eq!(body["context"]["errors"], json!([]));
    assert_eq!(body["context"]["policy_version"], version);

    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": user("bob"), "action": action("write"), "resource": asset("a2")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        json!(false),
        "a read grant does not write"
    );
    assert_eq!(body["context"]["reasons"], json!([]));
    let (_, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": user("bob"), "action": action("read"), "resource": asset("a2")}),
        )
        .await;
    assert_eq!(body["decision"], json!(true));
    assert_eq!(body["context"]["reasons"], json!(["asset-grant-read"]));

    // Unknown subjects and resources are denied with the reason.
    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": user("ghost"), "action": action("read"), "resource": asset("a1")}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], json!(false));
    assert!(
        body["context"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown principal"),
        "{body}"
    );
    let (_, body) = app
        .post("/access/v1/evaluation", &json!({"subject": user("alice"), "action": action("read"), "resource": asset("nothing")}))
        .await;
    assert_eq!(body["decision"], json!(false));
    assert!(
        body["context"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown resource"),
        "{body}"
    );

    // Properties are ignored: facts come from the store, not the caller.
    let (_, body) = app
        .post("/access/v1/evaluation", &json!({
            "subject": {"type": "User", "id": "bob", "properties": {"kind": "registered", "role": "owner"}},
            "action": {"name": "write", "properties": {"force": true}},
            "resource": {"type": "Asset", "id": "a1", "properties": {"visibility": "public", "public_access": "write"}}}))
        .await;
    assert_eq!(body["decision"], json!(false), "{body}");
    // Caller context is accepted, but never the authentication method.
    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": user("alice"), "action": action("read"),
            "resource": asset("a1"), "context": {"ip": "192.0.2.1", "time": 1700000000}}),
        )
        .await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": user("alice"), "action": action("read"),
            "resource": asset("a1"), "context": {"authn": "app"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "context.authn");
    assert_eq!(body["decision"], json!(false));

    // Agrees with /v1/check on every user, action and resource.
    for who in ["alice", "bob", "carol", "ghost"] {
        for act in ["read", "write", "delete", "share"] {
            for what in ["a1", "a2", "a3"] {
                let (_, body) = app
                    .post("/access/v1/evaluation", &json!({"subject": user(who), "action": action(act), "resource": asset(what)}))
                    .await;
                assert_eq!(
                    body["decision"],
                    json!(check(&app, &user(who), act, &asset(what)).await),
                    "{who} {act} {what}"
                );
            }
        }
    }
}

#[tokio::test]
async fn evaluation_errors_name_the_authzen_field() {
    let app = app().await;
    for (body, field) in [
        (
            json!({"subject": {"type": "Robot", "id": "r"}, "action": action("read"), "resource": asset("a1")}),
            "subject.type",
        ),
        (
            json!({"subject": {"type": "Asset", "id": "a1"}, "action": action("read"), "resource": asset("a1")}),
            "subject.type",
        ),
        (
            json!({"subject": {"type": "User", "id": ""}, "action": action("read"), "resource": asset("a1")}),
            "subject.id",
        ),
        (
            json!({"subject": user("alice"), "action": action("fly"), "resource": asset("a1")}),
            "action",
        ),
        (
            json!({"subject": user("alice"), "action": action("read"), "resource": {"type": "Document", "id": "d"}}),
            "resource.type",
        ),
        (
            json!({"subject": user("alice"), "action": action("create_project"), "resource": {"type": "Project", "id": "p"}}),
            "resource.type",
        ),
    ] {
        let (status, answer) = app.post("/access/v1/evaluation", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{answer}"
        );
        assert_eq!(answer["decision"], json!(false));
    }
    // Missing parts of a single evaluation are named too.
    let (status, answer) = app
        .post(
            "/access/v1/evaluation",
            &json!({"action": action("read"), "resource": asset("a1")}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subject"),
        "{answer}"
    );
    assert_eq!(answer["decision"], json!(false));
}

#[tokio::test]
async fn evaluations_take_top_level_defaults_and_item_overrides() {
    let app = app().await;
    let items = vec![
        json!({}),
        json!({"resource": asset("a1")}),
        json!({"subject": user("alice")}),
        json!({"action": action("write")}),
        json!({"subject": user("carol"), "action": action("delete"), "resource": {"type": "Project", "id": "p"}}),
        json!({"subject": user("carol"), "action": action("delete"), "resource": {"type": "Workspace", "id": "w"}}),
    ];
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({
            "subject": user("bob"), "action": action("read"), "resource": asset("a2"),
            "evaluations": items}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only evaluations: {body}"
    );
    assert_eq!(
        decisions(&body),
        vec![true, false, true, false, true, false]
    );
    // Each item is the /v1/check answer to its completed question.
    let expanded = [
        (user("bob"), "read", asset("a2")),
        (user("bob"), "read", asset("a1")),
        (user("alice"), "read", asset("a2")),
        (user("bob"), "write", asset("a2")),
        (
            user("carol"),
            "delete",
            json!({"type": "Project", "id": "p"}),
        ),
        (
            user("carol"),
            "delete",
            json!({"type": "Workspace", "id": "w"}),
        ),
    ];
    for (i, (s, a, r)) in expanded.iter().enumerate() {
        assert_eq!(decisions(&body)[i], check(&app, s, a, r).await, "item {i}");
        assert!(body["evaluations"][i]["context"]["policy_version"].is_string());
    }
    assert_eq!(
        body["evaluations"][2]["context"]["reasons"],
        json!(["workspace-owner"])
    );

    // An item's context replaces the top-level one: a bad default context
    // spoils only the items that use it.
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({
            "subject": user("alice"), "action": action("read"), "context": {"authn": "oidc_token"},
            "evaluations": [
                {"resource": asset("a1")},
                {"resource": asset("a1"), "context": {"ip": "192.0.2.1"}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decisions(&body), vec![false, true]);
    assert!(
        body["evaluations"][0]["context"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evaluations[0].context.authn"),
        "{body}"
    );
}

#[tokio::test]
async fn evaluation_semantics() {
    let app = app().await;
    let t1 = json!({"subject": user("alice"), "resource": asset("a1")});
    let t2 = json!({"subject": user("bob"), "resource": asset("a2")});
    let t3 = json!({"subject": user("carol"), "resource": asset("a3")});
    let f1 = json!({"subject": user("bob"), "resource": asset("a1")});
    let f2 = json!({"subject": user("bob"), "resource": asset("a3")});
    let f3 = json!({"subject": user("ghost"), "resource": asset("a1")});
    let ask = |items: Vec<Value>, semantic: Option<&str>| {
        let mut body = json!({"action": action("read"), "evaluations": items});
        if let Some(s) = semantic {
            body["options"] = json!({"evaluations_semantic": s});
        }
        body
    };
    let mixed = vec![t1.clone(), t2.clone(), f1.clone(), t3.clone(), f2.clone()];
    for semantic in [None, Some("execute_all")] {
        let (status, body) = app
            .post("/access/v1/evaluations", &ask(mixed.clone(), semantic))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            decisions(&body),
            vec![true, true, false, true, false],
            "{semantic:?}"
        );
    }
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({"action": action("read"), "evaluations": mixed, "options": {}}),
        )
        .await;
    assert_eq!(
        decisions(&body),
        vec![true, true, false, true, false],
        "empty options"
    );

    // deny_on_first_deny: stops after the first false.
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &ask(
                vec![t1.clone(), t2.clone(), f1.clone(), t3.clone(), f2.clone()],
                Some("deny_on_first_deny"),
            ),
        )
        .await;
    assert_eq!(decisions(&body), vec![true, true, false]);
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &ask(vec![f3.clone(), t1.clone()], Some("deny_on_first_deny")),
        )
        .await;
    assert_eq!(decisions(&body), vec![false]);
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &ask(
                vec![t1.clone(), t2.clone(), t3.clone()],
                Some("deny_on_first_deny"),
            ),
        )
        .await;
    assert_eq!(
        decisions(&body),
        vec![true, true, true],
        "no deny: all answered"
    );

    // permit_on_first_permit: stops after the first true.
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &ask(
                vec![f1.clone(), f2.clone(), t2.clone(), f3.clone(), t1.clone()],
                Some("permit_on_first_permit"),
            ),
        )
        .await;
    assert_eq!(decisions(&body), vec![false, false, true]);
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &ask(vec![t3.clone(), f1.clone()], Some("permit_on_first_permit")),
        )
        .await;
    assert_eq!(decisions(&body), vec![true]);
    let (_, body) = app
        .post(
            "/access/v1/evaluations",
            &ask(
                vec![f1.clone(), f2.clone(), f3.clone()],
                Some("permit_on_first_permit"),
            ),
        )
        .await;
    assert_eq!(
        decisions(&body),
        vec![false, false, false],
        "no permit: all answered"
    );

    // An unknown semantic is a client mistake, not a default.
    for bad in ["whenever", "DENY_ON_FIRST_DENY", ""] {
        let (status, body) = app
            .post(
                "/access/v1/evaluations",
                &ask(mixed_clone(&t1, &f1), Some(bad)),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("evaluations_semantic"),
            "{body}"
        );
        assert_eq!(body["decision"], json!(false));
    }
}

fn mixed_clone(a: &Value, b: &Value) -> Vec<Value> {
    vec![a.clone(), b.clone()]
}

#[tokio::test]
async fn a_bad_item_is_false_with_its_error_and_the_others_are_decided() {
    let app = app().await;
    let items = vec![
        json!({"subject": user("alice"), "action": action("read"), "resource": asset("a1")}),
        json!({"subject": user("alice"), "action": action("teleport"), "resource": asset("a1")}),
        json!({"subject": user("alice"), "action": action("read"), "resource": {"type": "Document", "id": "d"}}),
        json!({"action": action("read"), "resource": asset("a1")}),
        json!({"subject": user("alice"), "action": action("read"), "resource": asset("a1"), "context": {"authn": "app"}}),
        json!({"subject": user(""), "action": action("read"), "resource": asset("a1")}),
        json!({"subject": user("bob"), "action": action("read"), "resource": asset("a2")}),
        json!({"subject": user("bob"), "action": action("read"), "resource": asset("a1")}),
    ];
    let (status, body) = app
        .post("/access/v1/evaluations", &json!({"evaluations": items}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        decisions(&body),
        vec![true, false, false, false, false, false, true, false]
    );
    for (i, field) in [
        (1, "evaluations[1].action"),
        (2, "evaluations[2].resource.type"),
        (3, "evaluations[3].subject"),
        (4, "evaluations[4].context.authn"),
        (5, "evaluations[5].subject.id"),
    ] {
        let error = &body["evaluations"][i]["context"]["error"];
        assert_eq!(error["status"], 400, "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(field),
            "item {i}: expected {field}: {message}"
        );
    }
    // The good items carry their reasons, the bad ones no verdict.
    assert_eq!(
        body["evaluations"][0]["context"]["reasons"],
        json!(["workspace-owner"])
    );
    assert_eq!(
        body["evaluations"][6]["context"]["reasons"],
        json!(["asset-grant-read"])
    );
    assert!(body["evaluations"][1]["context"].get("reasons").is_none());
    // A bad item counts as a deny for deny_on_first_deny...
    let (_, stopped) = app
        .post("/access/v1/evaluations", &json!({"evaluations": items, "options": {"evaluations_semantic": "deny_on_first_deny"}}))
        .await;
    assert_eq!(decisions(&stopped), vec![true, false]);
    // ...and never as a permit.
    let (_, permit) = app
        .post("/access/v1/evaluations", &json!({"evaluations": items[1..].to_vec(), "options": {"evaluations_semantic": "permit_on_first_permit"}}))
        .await;
    assert_eq!(
        decisions(&permit),
        vec![false, false, false, false, false, true]
    );
    // All items bad: still a 200 with every item false.
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({"evaluations": [items[1].clone(), items[2].clone()]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decisions(&body), vec![false, false]);
}

#[tokio::test]
async fn without_evaluations_it_is_one_evaluation() {
    let app = app().await;
    for (subject, act, resource) in [
        (
            user("alice"),
            "delete",
            json!({"type": "Workspace", "id": "w"}),
        ),
        (
            user("carol"),
            "delete",
            json!({"type": "Workspace", "id": "w"}),
        ),
        (user("bob"), "read", asset("a2")),
    ] {
        let question = json!({"subject": subject, "action": action(act), "resource": resource});
        let (status, single) = app.post("/access/v1/evaluation", &question).await;
        assert_eq!(status, 200, "{single}");
        let (status, plural) = app.post("/access/v1/evaluations", &question).await;
        assert_eq!(status, 200, "{plural}");
        assert!(plural.get("evaluations").is_none(), "{plural}");
        assert_eq!(plural, single, "{question}");
        let mut empty = question.clone();
        empty["evaluations"] = json!([]);
        let (status, answer) = app.post("/access/v1/evaluations", &empty).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer, single,
            "an empty evaluations array is one evaluation"
        );
        assert_eq!(
            single["decision"],
            json!(check(&app, &subject, act, &resource).await)
        );
    }
    // Without evaluations, a missing part is a 400 naming it.
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({"subject": user("alice"), "action": action("read")}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "resource");
    assert_eq!(body["decision"], json!(false));
}

#[tokio::test]
async fn metadata_lists_the_endpoints_at_the_base_url() {
    let app = app().await;
    for auth in [None, Some("Bearer not-a-key")] {
        let mut req = app
            .client
            .get(format!("{}/.well-known/authzen-configuration", app.base));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "no credentials needed ({auth:?})"
        );
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["policy_decision_point"], app.base.as_str());
        assert_eq!(
            body["access_evaluation_endpoint"],
            format!("{}/access/v1/evaluation", app.base)
        );
        assert_eq!(
            body["access_evaluations_endpoint"],
            format!("{}/access/v1/evaluations", app.base)
        );
        // The advertised endpoints are the ones that answer.
        let (status, answer) = app
            .post(body["access_evaluation_endpoint"].as_str().unwrap().trim_start_matches(&app.base),
                &json!({"subject": user("alice"), "action": action("read"), "resource": asset("a1")}))
            .await;
        assert_eq!((status, answer["decision"].clone()), (200, json!(true)));
        for (endpoint, ask, found) in [
            (
                "search_resource_endpoint",
                json!({"subject": user("bob"), "action": action("read"), "resource": {"type": "Asset"}}),
                json!([{"type": "Asset", "id": "a2", "properties": {"reasons": ["asset-grant-read"]}}]),
            ),
            (
                "search_subject_endpoint",
                json!({"subject": {"type": "User"}, "action": action("write"), "resource": asset("a3")}),
                json!([{"type": "User", "id": "alice", "properties": {"reasons": ["workspace-owner"]}},
                       {"type": "User", "id": "carol", "properties": {"reasons": ["workspace-editor"]}}]),
            ),
            (
                "search_action_endpoint",
                json!({"subject": user("bob"), "resource": asset("a2")}),
                json!([{"name": "read", "properties": {"reasons": ["asset-grant-read"]}}]),
            ),
        ] {
            let url = body[endpoint]
                .as_str()
                .unwrap_or_else(|| panic!("{endpoint} in {body}"));
            let (status, answer) = app.post(url.trim_start_matches(&app.base), &ask).await;
            assert_eq!(status, 200, "{endpoint}: {answer}");
            assert_eq!(answer["results"], found, "{endpoint}: {answer}");
        }
    }
    // Behind a proxy, the configured public URL is advertised (no double slash).
    let proxied = spawn_configured(Db::Sqlite, None, None, |s| {
        s.public_url = Some("https://authz.example.com/".into());
    })
    .await;
    let (status, body) = proxied
        .get_with(None, "/.well-known/authzen-configuration")
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["policy_decision_point"], "https://authz.example.com");
    assert_eq!(
        body["access_evaluation_endpoint"],
        "https://authz.example.com/access/v1/evaluation"
    );
    assert_eq!(
        body["access_evaluations_endpoint"],
        "https://authz.example.com/access/v1/evaluations"
    );
    for kind in ["subject", "resource", "action"] {
        assert_eq!(
            body[format!("search_{kind}_endpoint")],
            format!("https://authz.example.com/access/v1/search/{kind}")
        );
    }
}
