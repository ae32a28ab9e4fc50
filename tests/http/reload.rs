//! Reloading the policy set into a running server: a valid edit takes
//! effect and is audited; an invalid one is refused with its place and the
//! last good set keeps serving; only admin keys may reload.

use crate::common::{copy_dir, edit, repo, spawn_configured, Db};
use serde_json::json;

#[tokio::test]
async fn reloading_applies_valid_edits_and_refuses_invalid_ones() {
    let policies = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), policies.path());
    let dir = policies.path().to_path_buf();
    let app = spawn_configured(Db::Sqlite, None, None, move |s| s.policies = dir).await;
    app.import(&json!({
        "users": [{"id": "o", "kind": "registered"}, {"id": "e", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "o"}],
        "memberships": [{"user": "e", "scope": "workspace", "id": "w", "role": "editor"}]
    }))
    .await;
    assert_eq!(app.decide("e", "invite", "Workspace", "w").await, "deny");
    let (_, before) = app.get("/v1/admin/policies").await;

    // Only admin keys may reload.
    let check_only = app.key_with_scopes(&["check"]).await;
    let (status, _) = app
        .post_with(Some(&check_only), "/v1/admin/policies/reload", &json!({}))
        .await;
    assert_eq!(status, 403);

    // A loosening edit: editors may invite.
    let roles = policies.path().join("workspace-roles.cedar");
    edit(
        &roles,
        "    Warden::Action::\"share\"\n  ],",
        "    Warden::Action::\"share\",\n    Warden::Action::\"invite\"\n  ],",
    );
    let audits = app.state.store.audit_event_count().await.unwrap();
    let (status, body) = app.post("/v1/admin/policies/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["previous_version"], before["version"]);
    assert_ne!(body["version"], before["version"]);
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits + 1
    );
    let (_, decision) = app
        .post(
            "/v1/check",
            &json!({"principal": {"type": "User", "id": "e"}, "action": "invite",
                                   "resource": {"type": "Workspace", "id": "w"}}),
        )
        .await;
    assert_eq!(decision["decision"], "allow");
    assert_eq!(decision["policy_version"], body["version"]);
    let serving = body["version"].clone();

    // A broken edit is refused; the last good set keeps serving.
    edit(
        &roles,
        "resource.workspace.owner == principal",
        "resource.workspace.ownr == principal",
    );
    let (status, refused) = app.post("/v1/admin/policies/reload", &json!({})).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_policies");
    assert_eq!(refused["version"], serving);
    let problem = &refused["problems"][0];
    assert!(
        problem["file"]
            .as_str()
            .unwrap()
            .ends_with("workspace-roles.cedar"),
        "{refused}"
    );
    assert!(
        problem["line"].as_u64().unwrap() > 0
            && problem["message"].as_str().unwrap().contains("ownr")
    );
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits + 1,
        "a refused reload is not audited"
    );
    assert_eq!(app.decide("e", "invite", "Workspace", "w").await, "allow");
    let (_, listing) = app.get("/v1/admin/policies").await;
    assert_eq!(listing["version"], serving);
    assert_eq!(listing["last_reload"]["ok"], false);
    let metrics = app.metrics().await;
    assert!(metrics.contains("warden_policy_reloads_total"), "{metrics}");
}

/// Waits up to 10 s for the served policy version to differ from `from`.
async fn wait_for_version_change(
    app: &crate::common::TestApp,
    from: &serde_json::Value,
) -> serde_json::Value {
    for _ in 0..200 {
        let (_, listing) = app.get("/v1/admin/policies").await;
        if listing["last_reload"] != serde_json::Value::Null
            && listing["last_reload"]["at"] != from["last_reload"]["at"]
        {
            return listing;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the policy folder change was not picked up within 10 s");
}

#[tokio::test]
async fn a_change_in_the_policy_folder_reloads_the_set() {
    let policies = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), policies.path());
    let dir = policies.path().to_path_buf();
    let app = spawn_configured(Db::Sqlite, None, None, move |s| {
        s.policies = dir;
        s.watch_policies = true;
    })
    .await;
    app.import(&json!({
        "users": [{"id": "o", "kind": "registered"}, {"id": "e", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "o"}],
        "memberships": [{"user": "e", "scope": "workspace", "id": "w", "role": "editor"}]
    }))
    .await;
    assert_eq!(app.decide("e", "invite", "Workspace", "w").await, "deny");
    let (_, before) = app.get("/v1/admin/policies").await;
    let roles = policies.path().join("workspace-roles.cedar");
    edit(
        &roles,
        "    Warden::Action::\"share\"\n  ],",
        "    Warden::Action::\"share\",\n    Warden::Action::\"invite\"\n  ],",
    );
    let after = wait_for_version_change(&app, &before).await;
    assert_eq!(after["last_reload"]["ok"], true, "{after}");
    assert_ne!(after["version"], before["version"]);
    assert_eq!(app.decide("e", "invite", "Workspace", "w").await, "allow");

    // A broken save is refused and the last good set keeps serving.
    edit(
        &roles,
        "resource.workspace.owner == principal",
        "resource.workspace.ownr == principal",
    );
    let refused = wait_for_version_change(&app, &after).await;
    assert_eq!(refused["last_reload"]["ok"], false, "{refused}");
    assert_eq!(refused["version"], after["version"]);
    assert_eq!(app.decide("e", "invite", "Workspace", "w").await, "allow");
}

#[tokio::test]
async fn reloading_under_load_fails_no_request() {
    let policies = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), policies.path());
    let dir = policies.path().to_path_buf();
    let app = std::sync::Arc::new(
        spawn_configured(Db::Sqlite, None, None, move |s| s.policies = dir).await,
    );
    app.import(&json!({
        "users": [{"id": "o", "kind": "registered"}, {"id": "e", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "o"}],
        "memberships": [{"user": "e", "scope": "workspace", "id": "w", "role": "editor"}]
    }))
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (app, stop) = (app.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = app
                    .post(
                        "/v1/check",
                        &json!({"principal": {"type": "User", "id": "e"},
                        "action": "invite", "resource": {"type": "Workspace", "id": "w"}}),
                    )
                    .await;
                answers.push((
                    status,
                    body["decision"].clone(),
                    body["policy_version"].clone(),
                ));
            }
            answers
        }));
    }
    let roles = policies.path().join("workspace-roles.cedar");
    let strict = std::fs::read_to_string(&roles).unwrap();
    let loose = strict.replacen(
        "    Warden::Action::\"share\"\n  ],",
        "    Warden::Action::\"share\",\n    Warden::Action::\"invite\"\n  ],",
        1,
    );
    let mut versions = std::collections::BTreeMap::new();
    for round in 0..10 {
        let (text, decision) = if round % 2 == 0 {
            (&loose, "allow")
        } else {
            (&strict, "deny")
        };
        std::fs::write(&roles, text).unwrap();
        let (status, body) = app.post("/v1/admin/policies/reload", &json!({})).await;
        assert_eq!(status, 200, "{body}");
        versions.insert(body["version"].as_str().unwrap().to_string(), decision);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        for (status, decision, version) in client.await.unwrap() {
            total += 1;
            assert_eq!(status, 200, "a request failed during reloads");
            // Each answer is the one its policy version gives.
            if let Some(expected) = versions.get(version.as_str().unwrap()) {
                assert_eq!(decision, *expected, "version {version}");
            }
        }
    }
    assert!(total > 50, "only {total} requests ran during the reloads");
}

/// Verdicts are taken from earlier requests in the same situation, and a
/// situation tells apart the entities the policies name. Two users in the
/// same situation are answered alike; a reloaded policy that names one of
/// them is honoured at once, for both, on a server that had remembered
/// their situation.
#[tokio::test]
async fn a_reloaded_policy_naming_a_user_is_honoured_in_a_remembered_situation() {
    let policies = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), policies.path());
    let dir = policies.path().to_path_buf();
    let app = spawn_configured(Db::Sqlite, None, None, move |s| s.policies = dir).await;
    app.import(&json!({
        "users": [{"id": "o", "kind": "registered"}, {"id": "vip", "kind": "registered"},
                  {"id": "plain", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "o"}],
        "projects": [{"id": "p", "workspace": "w"}],
        "assets": [{"id": "a", "project": "p"}]
    }))
    .await;
    assert!(app.state.engine().decides_by_situation());
    for user in ["vip", "plain", "vip"] {
        assert_eq!(app.decide(user, "read", "Asset", "a").await, "deny");
    }
    std::fs::write(
        policies.path().join("vip.cedar"),
        "// One named user reads everything.\n@id(\"vip-reads\")\n\
         permit (principal == Warden::User::\"vip\", action == Warden::Action::\"read\", resource);\n",
    )
    .unwrap();
    let (status, body) = app.post("/v1/admin/policies/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let engine = app.state.engine();
    assert!(engine.decides_by_situation());
    let named: Vec<String> = engine
        .named_entities()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(named, [r#"Warden::User::"vip""#]);
    for _ in 0..3 {
        assert_eq!(app.decide("vip", "read", "Asset", "a").await, "allow");
        assert_eq!(app.decide("plain", "read", "Asset", "a").await, "deny");
    }
}
