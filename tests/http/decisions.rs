//! The CONTRACT §3 table through the real server, on both backends.

use crate::both_backends;
use crate::common::{repo, spawn_app, Db, TestApp};
use serde_json::{json, Value};

/// Every policy suite's world imported over HTTP and every case asked via
/// `/v1/check/batch`: the whole stack must agree with the policy suites.
/// Cases about token authentication need identity verification and are
/// covered in-process by tests/policy_suites.rs.
async fn policy_suites_hold_over_http(db: Db) {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("tests/policies"))
        .expect("suites")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut checked = 0;
    for file in files {
        let suite: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
        let app = spawn_app(db).await;
        app.import(&suite["world"]).await;
        let mut requests = Vec::new();
        let mut expected = Vec::new();
        for case in suite["cases"].as_array().expect("cases") {
            if case
                .get("authn")
                .and_then(Value::as_str)
                .is_some_and(|a| a != "app")
            {
                continue;
            }
            let mut pairs: Vec<(String, String)> = Vec::new();
            if let (Some(a), Some(d)) = (case.get("action"), case.get("decision")) {
                pairs.push((
                    a.as_str().expect("action").into(),
                    d.as_str().expect("decision").into(),
                ));
            }
            if let Some(expect) = case.get("expect").and_then(Value::as_object) {
                for (a, d) in expect {
                    pairs.push((a.clone(), d.as_str().expect("decision").into()));
                }
            }
            for (action, decision) in pairs {
                let mut request = json!({
                    "principal": case["principal"],
                    "action": action,
                    "resource": case["resource"],
                });
                if let Some(context) = case.get("context") {
                    request["context"] = context.clone();
                }
                if let Some(entities) = suite
                    .get("entities")
                    .filter(|e| e.as_array().is_some_and(|a| !a.is_empty()))
                {
                    request["entities"] = entities.clone();
                }
                requests.push(request);
                expected.push((
                    format!("{}: {} [{action}]", file.display(), case["name"]),
                    decision,
                ));
            }
        }
        if requests.is_empty() {
            continue;
        }
        let (status, body) = app
            .post("/v1/check/batch", &json!({ "requests": requests }))
            .await;
        assert_eq!(status, 200, "{}: batch failed: {body}", file.display());
        let results = body["results"].as_array().expect("results");
        assert_eq!(results.len(), expected.len());
        let mut failures = Vec::new();
        for ((name, want), got) in expected.iter().zip(results) {
            if got["decision"] != *want {
                failures.push(format!("{name}: expected {want}, got {got}"));
            }
        }
        assert!(
            failures.is_empty(),
            "over HTTP ({db:?}):\n{}",
            failures.join("\n")
        );
        checked += expected.len();
    }
    assert!(checked > 0, "no suite case was checked");
}
both_backends!(policy_suites_over_http, policy_suites_hold_over_http);

/// A small world naming each situation of the contract.
fn world() -> Value {
    json!({
        "users": [
            {"id": "owner", "kind": "registered"},
            {"id": "w-editor", "kind": "registered"},
            {"id": "w-viewer", "kind": "registered"},
            {"id": "p-editor", "kind": "registered"},
            {"id": "viewer-and-p-editor", "kind": "registered"},
            {"id": "reader", "kind": "registered"},
            {"id": "writer", "kind": "registered"},
            {"id": "b-owner", "kind": "registered"},
            {"id": "b-editor", "kind": "registered"},
            {"id": "anon-owner", "kind": "anonymous"},
            {"id": "anon-member", "kind": "anonymous"},
            {"id": "anon-grantee", "kind": "anonymous"}
        ],
        "workspaces": [
            {"id": "wa", "owner": "owner", "visibility": "private"},
            {"id": "wb", "owner": "b-owner", "visibility": "private"},
            {"id": "w-public", "owner": "owner", "visibility": "public"},
            {"id": "w-anon", "owner": "anon-owner", "visibility": "private"}
        ],
        "projects": [
            {"id": "pa", "workspace": "wa", "visibility": "private"},
            {"id": "pb", "workspace": "wb", "visibility": "private"},
            {"id": "p-public", "workspace": "w-public", "visibility": "public"},
            {"id": "p-anon", "workspace": "w-anon", "visibility": "private"}
        ],
        "assets": [
            {"id": "a-private", "project": "pa", "visibility": "private", "public_access": "none"},
            {"id": "a-public-read", "project": "pa", "visibility": "public", "public_access": "read"},
            {"id": "a-public-write", "project": "pa", "visibility": "public", "public_access": "write"},
            {"id": "a-in-public", "project": "p-public", "visibility": "private", "public_access": "none"},
            {"id": "a-b", "project": "pb", "visibility": "private", "public_access": "none"},
            {"id": "a-anon", "project": "p-anon", "visibility": "private", "public_access": "none"}
        ],
        "memberships": [
            {"user": "w-editor", "scope": "workspace", "id": "wa", "role": "editor"},
            {"user": "w-viewer", "scope": "workspace", "id": "wa", "role": "viewer"},
            {"user": "p-editor", "scope": "project", "id": "pa", "role": "editor"},
            {"user": "viewer-and-p-editor", "scope": "workspace", "id": "wa", "role": "viewer"},
            {"user": "viewer-and-p-editor", "scope": "project", "id": "pa", "role": "editor"},
            {"user": "b-editor", "scope": "workspace", "id": "wb", "role": "editor"},
            {"user": "anon-member", "scope": "workspace", "id": "wa", "role": "editor"},
            {"user": "anon-member", "scope": "workspace", "id": "w-public", "role": "editor"}
        ],
        "grants": [
            {"user": "reader", "asset": "a-private", "permission": "read"},
            {"user": "writer", "asset": "a-private", "permission": "write"},
            {"user": "anon-grantee", "asset": "a-private", "permission": "write"},
            {"user": "anon-grantee", "asset": "a-public-read", "permission": "write"}
        ]
    })
}

async fn app_with_world(db: Db) -> TestApp {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    app
}

async fn workspace_membership_wins_over_project_role(db: Db) {
    let app = app_with_world(db).await;
    // A project editor who is not in the workspace edits the project's assets...
    assert_eq!(
        app.decide("p-editor", "write", "Asset", "a-private").await,
        "allow"
    );
    assert_eq!(
        app.decide("p-editor", "delete", "Asset", "a-private").await,
        "allow"
    );
    // ...but a workspace viewer who is also a project editor only views.
    assert_eq!(
        app.decide("viewer-and-p-editor", "read", "Asset", "a-private")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide("viewer-and-p-editor", "write", "Asset", "a-private")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide("viewer-and-p-editor", "write", "Project", "pa")
            .await,
        "deny"
    );
    // Project members get nothing on the workspace itself.
    assert_eq!(
        app.decide("p-editor", "read", "Workspace", "wa").await,
        "deny"
    );
}
both_backends!(
    membership_precedence,
    workspace_membership_wins_over_project_role
);

async fn anonymous_members_count_only_where_public(db: Db) {
    let app = app_with_world(db).await;
    // Editor of private workspace wa: nothing while it is private.
    assert_eq!(
        app.decide("anon-member", "read", "Asset", "a-private")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide("anon-member", "read", "Workspace", "wa").await,
        "deny"
    );
    // Editor of public workspace w-public: editor rights there.
    assert_eq!(
        app.decide("anon-member", "write", "Asset", "a-in-public")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide("anon-member", "read", "Workspace", "w-public")
            .await,
        "allow"
    );
    // An anonymous owner has full rights in the workspace created with it.
    for action in ["read", "write", "delete", "share"] {
        assert_eq!(
            app.decide("anon-owner", action, "Asset", "a-anon").await,
            "allow",
            "{action}"
        );
    }
    assert_eq!(
        app.decide("anon-owner", "manage_members", "Workspace", "w-anon")
            .await,
        "allow"
    );
    // Anonymous grantees: only while the asset is public.
    assert_eq!(
        app.decide("anon-grantee", "read", "Asset", "a-private")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide("anon-grantee", "write", "Asset", "a-public-read")
            .await,
        "allow"
    );
}
both_backends!(anonymous_members, anonymous_members_count_only_where_public);

async fn grants_reach_one_asset(db: Db) {
    let app = app_with_world(db).await;
    assert_eq!(
        app.decide("reader", "read", "Asset", "a-private").await,
        "allow"
    );
    assert_eq!(
        app.decide("reader", "write", "Asset", "a-private").await,
        "deny"
    );
    assert_eq!(
        app.decide("writer", "write", "Asset", "a-private").await,
        "allow"
    );
    assert_eq!(
        app.decide("writer", "delete", "Asset", "a-private").await,
        "deny"
    );
    assert_eq!(
        app.decide("writer", "share", "Asset", "a-private").await,
        "deny"
    );
    assert_eq!(app.decide("writer", "read", "Project", "pa").await, "deny");
}
both_backends!(grants, grants_reach_one_asset);

async fn public_read_is_not_public_write(db: Db) {
    let app = app_with_world(db).await;
    assert_eq!(
        app.decide("b-editor", "read", "Asset", "a-public-read")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide("b-editor", "write", "Asset", "a-public-read")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide("b-editor", "write", "Asset", "a-public-write")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide("b-editor", "delete", "Asset", "a-public-write")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide("b-editor", "share", "Asset", "a-public-write")
            .await,
        "deny"
    );
}
both_backends!(public_links, public_read_is_not_public_write);

async fn members_of_another_workspace_are_denied(db: Db) {
    let app = app_with_world(db).await;
    for (ty, id, actions) in [
        (
            "Workspace",
            "wa",
            &[
                "read",
                "write",
                "delete",
                "manage_members",
                "create_project",
                "invite",
            ][..],
        ),
        (
            "Project",
            "pa",
            &[
                "read",
                "write",
                "delete",
                "manage_members",
                "create_asset",
                "invite",
            ][..],
        ),
        (
            "Asset",
            "a-private",
            &["read", "write", "delete", "share"][..],
        ),
    ] {
        for action in actions {
            for user in ["b-editor", "b-owner"] {
                assert_eq!(
                    app.decide(user, action, ty, id).await,
                    "deny",
                    "{user} {action} {ty} {id}"
                );
            }
        }
    }
}
both_backends!(cross_workspace, members_of_another_workspace_are_denied);

async fn unknown_ids_are_denied_with_a_reason(db: Db) {
    let app = app_with_world(db).await;
    let (status, body) = app
        .post(
            "/v1/check",
            &json!({"principal": {"type": "User", "id": "ghost"}, "action": "read",
                                   "resource": {"type": "Asset", "id": "a-public-read"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "deny");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown principal"),
        "{body}"
    );
    let (_, body) = app
        .post(
            "/v1/check",
            &json!({"principal": {"type": "User", "id": "owner"}, "action": "read",
                                   "resource": {"type": "Asset", "id": "no-such-asset"}}),
        )
        .await;
    assert_eq!(body["decision"], "deny");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown resource"),
        "{body}"
    );
    assert!(body["policy_version"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}
both_backends!(unknown_ids, unknown_ids_are_denied_with_a_reason);

async fn a_batch_of_thousands_is_one_load(db: Db) {
    let app = app_with_world(db).await;
    let users = [
        "owner", "w-editor", "w-viewer", "p-editor", "reader", "b-editor", "ghost",
    ];
    let assets = [
        "a-private",
        "a-public-read",
        "a-public-write",
        "a-b",
        "missing",
    ];
    let actions = ["read", "write", "delete", "share"];
    let mut requests = Vec::new();
    let mut singles = Vec::new();
    while requests.len() < 1_200 {
        for user in users {
            for asset in assets {
                for action in actions {
                    requests.push(
                        json!({"principal": {"type": "User", "id": user}, "action": action,
                                         "resource": {"type": "Asset", "id": asset}}),
                    );
                    singles.push((user, action, asset));
                }
            }
        }
    }
    let before = app.state.store.fact_loads();
    let (status, body) = app
        .post("/v1/check/batch", &json!({ "requests": requests }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.state.store.fact_loads() - before,
        1,
        "a batch loads its facts once"
    );
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), requests.len());
    // The batch answers as single checks do.
    for (i, (user, action, asset)) in singles.iter().enumerate().take(140) {
        assert_eq!(
            results[i]["decision"],
            app.decide(user, action, "Asset", asset).await,
            "{user} {action} {asset}"
        );
    }
}
both_backends!(batch, a_batch_of_thousands_is_one_load);

async fn supplied_entities_add_but_never_replace(db: Db) {
    let app = app_with_world(db).await;
    let new_asset = json!({"uid": {"type": "Warden::Asset", "id": "draft"},
        "attrs": {"project": {"type": "Warden::Project", "id": "pa"}, "workspace": {"type": "Warden::Workspace", "id": "wa"},
                  "visibility": "private", "public_access": "none",
                  "readers": {"type": "Warden::Role", "id": "asset/draft/readers"},
                  "writers": {"type": "Warden::Role", "id": "asset/draft/writers"}},
        "parents": [{"type": "Warden::Project", "id": "pa"}]});
    let ask = |user: &str, entities: Value| {
        json!({"principal": {"type": "User", "id": user}, "action": "write",
        "resource": {"type": "Asset", "id": "draft"}, "entities": entities})
    };
    // A not-yet-stored asset in a stored project: roles there apply.
    let (status, body) = app
        .post("/v1/check", &ask("w-editor", json!([new_asset])))
        .await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!("allow")),
        "{body}"
    );
    let (_, body) = app
        .post("/v1/check", &ask("b-editor", json!([new_asset])))
        .await;
    assert_eq!(body["decision"], "deny");
    // Replacing a stored entity is refused.
    let mut fake = new_asset.clone();
    fake["uid"]["id"] = json!("a-private");
    fake["attrs"]["visibility"] = json!("public");
    fake["attrs"]["public_access"] = json!("write");
    let (status, body) = app.post("/v1/check", &ask("b-editor", json!([fake]))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stored"),
        "{body}"
    );
    // So is claiming a role: roles come only from the store.
    let intruder = json!({"uid": {"type": "Warden::User", "id": "intruder"}, "attrs": {"kind": "registered"},
        "parents": [{"type": "Warden::Role", "id": "workspace/wa/owners"}]});
    let (status, body) = app
        .post("/v1/check", &ask("intruder", json!([intruder, new_asset])))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "entities");
    // In a batch whose other requests are cached answers, a refused request
    // is still named by its own index.
    let plain = json!({"principal": {"type": "User", "id": "w-editor"}, "action": "read",
        "resource": {"type": "Asset", "id": "a-private"}});
    let (status, _) = app.post("/v1/check", &plain).await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(
            "/v1/check/batch",
            &json!({"requests": [plain, plain, ask("b-editor", json!([fake]))]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "requests[2].entities", "{body}");
    let mut bad_context = plain.clone();
    bad_context["context"] = json!({"when": null});
    let (status, body) = app
        .post(
            "/v1/check/batch",
            &json!({"requests": [plain, bad_context]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "requests[1].context", "{body}");
}
both_backends!(supplied_entities, supplied_entities_add_but_never_replace);

async fn the_largest_batch_of_distinct_ids_is_answered(db: Db) {
    let app = app_with_world(db).await;
    let types = ["Workspace", "Project", "Asset"];
    let requests: Vec<Value> = (0..5_000)
        .map(|i| {
            json!({"principal": {"type": "User", "id": format!("user-{i}")}, "action": "read",
                   "resource": {"type": types[i % 3], "id": format!("thing-{i}")}})
        })
        .chain(std::iter::once(
            json!({"principal": {"type": "User", "id": "owner"}, "action": "read",
                   "resource": {"type": "Asset", "id": "a-private"}}),
        ))
        .skip(1)
        .collect();
    assert_eq!(requests.len(), 5_000);
    let (status, body) = app
        .post("/v1/check/batch", &json!({ "requests": requests }))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert!(results[..4_999].iter().all(|r| r["decision"] == "deny"));
    assert_eq!(results[4_999]["decision"], "allow");
}
both_backends!(largest_batch, the_largest_batch_of_distinct_ids_is_answered);

/// Requests over [`world`]: every user (and an unknown one) on every asset
/// (and an unknown one) with each asset action, and on a project and two
/// workspaces with `read`.
fn asked_in_world() -> Vec<Value> {
    let world = world();
    let users: Vec<&str> = world["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    let mut asked = Vec::new();
    for user in users.iter().copied().chain(["nobody"]) {
        for asset in [
            "a-private",
            "a-public-read",
            "a-public-write",
            "a-in-public",
            "a-b",
            "a-anon",
            "no-such-asset",
        ] {
            for action in ["read", "write", "delete", "share"] {
                asked.push(
                    json!({"principal": {"type": "User", "id": user}, "action": action,
                                  "resource": {"type": "Asset", "id": asset}}),
                );
            }
        }
        for (ty, id) in [
            ("Project", "pa"),
            ("Workspace", "wa"),
            ("Workspace", "w-anon"),
        ] {
            asked.push(
                json!({"principal": {"type": "User", "id": user}, "action": "read",
                              "resource": {"type": ty, "id": id}}),
            );
        }
    }
    asked
}

/// Single checks arriving together read their facts together (fewer
/// statements than checks, `store::coalesce`), and each still gets the
/// answer it would get alone: the same as the batch path, which reads them
/// with its own statement. Fully consistent, so no cache answers them.
async fn single_checks_arriving_together_share_statements(db: Db) {
    let app = app_with_world(db).await;
    let asked = asked_in_world();
    let (status, batch) = app
        .post(
            "/v1/check/batch",
            &json!({"requests": asked, "consistency": {"fully_consistent": true}}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let expected = batch["results"].as_array().unwrap().clone();
    let before = app.state.store.single_fact_statements();
    let mut checks = Vec::new();
    for request in &asked {
        let mut request = request.clone();
        request["consistency"] = json!({"fully_consistent": true});
        let send = app
            .client
            .post(format!("{}/v1/check", app.base))
            .bearer_auth(&app.admin_key)
            .json(&request);
        checks.push(tokio::spawn(async move {
            let resp = send.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for check in checks {
        answers.push(check.await.unwrap());
    }
    for ((request, answer), expected) in asked.iter().zip(&answers).zip(&expected) {
        assert_eq!(answer["decision"], expected["decision"], "{request}");
        assert_eq!(answer["reasons"], expected["reasons"], "{request}");
        assert_eq!(answer["errors"], expected["errors"], "{request}");
    }
    let allowed = answers.iter().filter(|a| a["decision"] == "allow").count();
    assert!(
        allowed > 40 && allowed < answers.len() - 40,
        "a mix of answers: {allowed}"
    );
    let statements = app.state.store.single_fact_statements() - before;
    assert!(
        statements > 0 && statements < asked.len() as u64,
        "{} checks sent at once were read by {statements} statements",
        asked.len()
    );
}
both_backends!(
    single_checks_together,
    single_checks_arriving_together_share_statements
);

/// With `--evaluate-every-decision` no verdict is taken from an earlier
/// request in the same situation, and every answer is the same as with
/// situations (the default): the same decisions, reasons and errors.
async fn evaluating_every_decision_answers_the_same(db: Db) {
    let by_situation = app_with_world(db).await;
    let evaluated =
        crate::common::spawn_configured(db, None, None, |s| s.evaluate_every_decision = true).await;
    evaluated.import(&world()).await;
    assert!(by_situation.state.engine().decides_by_situation());
    assert!(!evaluated.state.engine().decides_by_situation());
    // Twice: the second round finds every situation remembered.
    for round in 0..2 {
        for request in asked_in_world() {
            let (status, a) = by_situation.post("/v1/check", &request).await;
            let (_, b) = evaluated.post("/v1/check", &request).await;
            assert_eq!(status, 200, "{a}");
            for field in ["decision", "reasons", "errors"] {
                assert_eq!(a[field], b[field], "round {round}: {request}");
            }
        }
    }
}
both_backends!(
    every_decision_evaluated,
    evaluating_every_decision_answers_the_same
);

/// `/v1/check/batch` with `body` on `app`, through `client`; the answers.
async fn batch_call(client: reqwest::Client, base: String, key: String, body: Value) -> Vec<Value> {
    let resp = client
        .post(format!("{base}/v1/check/batch"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    body["results"].as_array().unwrap().clone()
}

/// Batch calls are worked on under a budget of body bytes
/// (`--batch-budget-kib`, taken before the body is read): calls beside
/// each other, one larger than the whole budget (it runs alone) and one
/// without a `Content-Length` (chunked: it counts as the whole budget)
/// are all answered.
async fn batches_over_the_budget_and_chunked_are_answered(db: Db) {
    let app = crate::common::spawn_configured(db, None, None, |s| s.batch_budget_kib = 64).await;
    app.import(&world()).await;
    let ask = |user: &str| {
        json!({"principal": {"type": "User", "id": user}, "action": "read",
               "resource": {"type": "Asset", "id": "a-private"}})
    };
    // Ids of 250 bytes: 1,000 requests make a body over the 64 KiB budget.
    let mut big: Vec<Value> = (0..999).map(|i| ask(&format!("{i:0>250}"))).collect();
    big.push(ask("owner"));
    let big = json!({ "requests": big });
    assert!(big.to_string().len() > 64 * 1024);
    let small = json!({"requests": [ask("owner"), ask("ghost")]});
    let call = |body: &Value| {
        tokio::spawn(batch_call(
            app.client.clone(),
            app.base.clone(),
            app.admin_key.clone(),
            body.clone(),
        ))
    };
    let mut calls = vec![call(&big)];
    calls.extend((0..16).map(|_| call(&small)));
    calls.push(call(&big));
    for (i, handle) in calls.into_iter().enumerate() {
        let results = handle.await.unwrap();
        let decisions: Vec<&str> = results
            .iter()
            .map(|r| r["decision"].as_str().unwrap())
            .collect();
        if i == 0 || i == 17 {
            assert_eq!(decisions.len(), 1_000);
            assert!(decisions[..999].iter().all(|d| *d == "deny"));
            assert_eq!(decisions[999], "allow");
        } else {
            assert_eq!(decisions, ["allow", "deny"]);
        }
    }

    // Chunked: no Content-Length.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = small.to_string();
    let request = format!(
        "POST /v1/check/batch HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        app.admin_key,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""decision":"allow""#) && response.contains(r#""decision":"deny""#),
        "{response}"
    );
}
both_backends!(
    batch_budget,
    batches_over_the_budget_and_chunked_are_answered
);
