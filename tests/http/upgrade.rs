//! Signing in and signing up (CONTRACT §4, issue 3 point 4): resolve-user
//! finds, creates or links the canonical user, syncs the profile, and
//! secures an anonymous user's content when it signs up — in place, or by
//! moving it to the identity's existing user. Nothing is deleted.

use crate::both_backends;
use crate::common::identity::{FakeIdp, IDP_SECRET};
use crate::common::{spawn_configured, Db, TestApp};
use serde_json::{json, Value};

async fn spawn(db: Db, idp: &FakeIdp) -> TestApp {
    spawn_configured(db, None, None, |s| idp.configure(s)).await
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .expect("list")
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("{id} not found"))
}

async fn export(app: &TestApp) -> Value {
    let (status, body) = app.get("/v1/admin/export").await;
    assert_eq!(status, 200);
    body
}

async fn actions_for(app: &TestApp, user: &str) -> Vec<Value> {
    app.state
        .store
        .audit_page("user", user, 0, 100)
        .await
        .expect("audit")
}

async fn signing_up_secures_the_anonymous_users_content(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn(db, &idp).await;
    let anna = app.anonymous().await; // signs up below
    let ben = app.anonymous().await; // another anonymous user, shared with
    let carl = app.anonymous().await; // an anonymous outsider with the link
    app.import(&json!({
        "users": [{"id": "rita", "kind": "registered"}],
        "workspaces": [{"id": anna.workspace, "owner": anna.user_id, "visibility": "public"}],
        "projects": [{"id": anna.project, "workspace": anna.workspace, "visibility": "public"}],
        "assets": [
            {"id": "a-read", "project": anna.project, "visibility": "public", "public_access": "read"},
            {"id": "a-write", "project": anna.project, "visibility": "public", "public_access": "write"},
            {"id": "a-shared", "project": anna.project, "visibility": "public", "public_access": "none"}
        ],
        "memberships": [
            {"user": ben.user_id, "scope": "workspace", "id": anna.workspace, "role": "viewer"},
            {"user": ben.user_id, "scope": "project", "id": anna.project, "role": "editor"},
            {"user": "rita", "scope": "workspace", "id": anna.workspace, "role": "editor"}
        ],
        "grants": [
            {"user": ben.user_id, "asset": "a-shared", "permission": "write"},
            {"user": "rita", "asset": "a-shared", "permission": "read"}
        ]
    }))
    .await;
    // Before: shared and public content is reachable.
    assert_eq!(
        app.decide_token(&ben.token, "read", "Asset", "a-shared")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide_token(&ben.token, "write", "Asset", "a-shared")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide_token(&carl.token, "read", "Asset", "a-read")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide_token(&carl.token, "write", "Asset", "a-write")
            .await,
        "allow"
    );
    assert_eq!(
        app.decide_token(&anna.token, "delete", "Workspace", &anna.workspace)
            .await,
        "allow"
    );
    let sizes = app.table_sizes().await;

    let provider_token = idp.token(
        "user_2anna",
        json!({"name": "Anna Example", "username": "anna"}),
    );
    let (status, body) = app
        .resolve(&provider_token, &json!({"anonymous_token": anna.token}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user_id"],
        anna.user_id.as_str(),
        "same canonical id kept"
    );

    // Everything the user owns is private; public access is none.
    let world = export(&app).await;
    assert_eq!(
        find(&world["workspaces"], &anna.workspace)["visibility"],
        "private"
    );
    assert_eq!(
        find(&world["projects"], &anna.project)["visibility"],
        "private"
    );
    for asset in ["a-read", "a-write", "a-shared"] {
        assert_eq!(
            find(&world["assets"], asset)["visibility"],
            "private",
            "{asset}"
        );
        assert_eq!(
            find(&world["assets"], asset)["public_access"],
            "none",
            "{asset}"
        );
    }
    assert_eq!(find(&world["users"], &anna.user_id)["kind"], "registered");
    // Anonymous users' memberships and grants there are gone; registered ones stay.
    let holders: Vec<&Value> = world["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .chain(world["grants"].as_array().expect("grants"))
        .collect();
    assert!(
        holders.iter().all(|m| m["user"] != ben.user_id.as_str()),
        "{holders:?}"
    );
    assert_eq!(holders.iter().filter(|m| m["user"] == "rita").count(), 2);
    // Nothing is deleted: same users, workspaces, projects, assets.
    let after = app.table_sizes().await;
    for table in ["users", "workspaces", "projects", "assets"] {
        assert_eq!(after[table], sizes[table], "{table}");
    }
    assert_eq!(after["workspace_members"], sizes["workspace_members"] - 1);
    assert_eq!(after["project_members"], sizes["project_members"] - 1);
    assert_eq!(after["asset_grants"], sizes["asset_grants"] - 1);
    assert_eq!(after["identities"], sizes["identities"] + 1);

    // After: other anonymous users lost access; the registered editor kept it.
    assert_eq!(
        app.decide_token(&ben.token, "read", "Asset", "a-shared")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide_token(&ben.token, "read", "Project", &anna.project)
            .await,
        "deny"
    );
    assert_eq!(
        app.decide_token(&carl.token, "read", "Asset", "a-read")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide_token(&carl.token, "write", "Asset", "a-write")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide("rita", "write", "Asset", "a-shared").await,
        "allow"
    );
    // The old anonymous token is dead: decisions and refresh refuse it.
    let (status, body) = app
        .check_token(&anna.token, "read", "Workspace", &anna.workspace)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["decision"], "deny");
    let (status, _) = app.refresh(&anna.token).await;
    assert_eq!(status, 401);
    // The user signs in with the provider's token and keeps full rights.
    let signed_in = idp.token("user_2anna", json!({}));
    assert_eq!(
        app.decide_token(&signed_in, "delete", "Workspace", &anna.workspace)
            .await,
        "allow"
    );
    assert_eq!(
        app.decide_token(&signed_in, "share", "Asset", "a-read")
            .await,
        "allow"
    );

    // One audit event records what was secured; the profile sync is audited too.
    let events = actions_for(&app, &anna.user_id).await;
    let upgrade = events
        .iter()
        .find(|e| e["action"] == "identity.upgrade")
        .expect("upgrade event");
    let counts = &upgrade["after"]["counts"];
    assert_eq!(upgrade["after"]["path"], "upgrade");
    assert_eq!(counts["workspaces"], 1);
    assert_eq!(counts["projects"], 1);
    assert_eq!(counts["assets"], 3);
    assert_eq!(counts["workspace_memberships_removed"], 1);
    assert_eq!(counts["project_memberships_removed"], 1);
    assert_eq!(counts["grants_removed"], 1);
    assert_eq!(upgrade["after"]["workspaces"], json!([anna.workspace]));
    let synced = events
        .iter()
        .find(|e| e["action"] == "owner.synced")
        .expect("owner.synced");
    assert_eq!(
        synced["after"]["user"]["profile"]["email"],
        "user_2anna@example.com"
    );
    assert_eq!(synced["after"]["user"]["profile"]["name"], "Anna Example");
    assert_eq!(synced["after"]["user"]["profile"]["username"], "anna");
    assert_eq!(
        synced["after"]["user"]["profile"]["avatar_url"],
        "https://img.example.com/user_2anna.png"
    );
    assert_eq!(synced["after"]["subject"], "user_2anna");

    // The provider is told the canonical id, with the admin secret.
    let patches = idp.wait_for_patches(1).await;
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].0, "user_2anna");
    assert_eq!(patches[0].1, json!({"external_id": anna.user_id}));
    assert_eq!(patches[0].2, format!("Bearer {IDP_SECRET}"));

    // The dead token cannot sign up again, as anyone, and writes nothing.
    let before = app.table_sizes().await;
    let (status, body) = app
        .resolve(
            &idp.token("user_2other", json!({})),
            &json!({"anonymous_token": anna.token}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["field"], "anonymous_token");
    assert_eq!(app.table_sizes().await, before);
}
both_backends!(
    signing_up_secures_the_anonymous_users_content,
    signing_up_secures_the_anonymous_users_content
);

async fn signing_in_as_an_existing_identity_moves_the_content_to_its_user(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn(db, &idp).await;
    // The person signed up on another device earlier.
    let (status, body) = app
        .resolve(&idp.token("user_2max", json!({})), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let max = body["user_id"].as_str().expect("user_id").to_string();
    // Later, anonymously, they made content and shared it with another anonymous user.
    let guest = app.anonymous().await;
    let friend = app.anonymous().await;
    app.import(&json!({
        "workspaces": [{"id": guest.workspace, "owner": guest.user_id, "visibility": "public"}],
        "assets": [{"id": "g-asset", "project": guest.project, "visibility": "public", "public_access": "write"}],
        "grants": [{"user": friend.user_id, "asset": "g-asset", "permission": "write"}]
    }))
    .await;
    assert_eq!(
        app.decide_token(&friend.token, "write", "Asset", "g-asset")
            .await,
        "allow"
    );
    let sizes = app.table_sizes().await;

    let (status, body) = app
        .resolve(
            &idp.token("user_2max", json!({"external_id": max})),
            &json!({"anonymous_token": guest.token}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user_id"],
        max.as_str(),
        "the identity's existing user"
    );

    let world = export(&app).await;
    let ws = find(&world["workspaces"], &guest.workspace);
    assert_eq!(ws["owner"], max.as_str(), "the workspace moved");
    assert_eq!(ws["visibility"], "private");
    assert_eq!(find(&world["assets"], "g-asset")["public_access"], "none");
    let kept = find(&world["users"], &guest.user_id);
    assert_eq!(kept["kind"], "anonymous", "the anonymous record is kept");
    assert_eq!(kept["merged_into"], max.as_str());
    let after = app.table_sizes().await;
    for table in ["users", "workspaces", "projects", "assets"] {
        assert_eq!(after[table], sizes[table], "nothing deleted from {table}");
    }
    // Decisions: the registered user owns it now; the anonymous token is dead.
    let signed_in = idp.token("user_2max", json!({"external_id": max}));
    assert_eq!(
        app.decide_token(&signed_in, "delete", "Workspace", &guest.workspace)
            .await,
        "allow"
    );
    assert_eq!(
        app.decide_token(&signed_in, "write", "Asset", "g-asset")
            .await,
        "allow"
    );
    let (status, _) = app
        .check_token(&guest.token, "read", "Workspace", &guest.workspace)
        .await;
    assert_eq!(status, 401);
    let (status, _) = app.refresh(&guest.token).await;
    assert_eq!(status, 401);
    assert_eq!(
        app.decide_token(&friend.token, "write", "Asset", "g-asset")
            .await,
        "deny"
    );
    assert_eq!(
        app.decide(&guest.user_id, "read", "Workspace", &guest.workspace)
            .await,
        "deny"
    );
    let events = actions_for(&app, &max).await;
    let upgrade = events
        .iter()
        .find(|e| e["action"] == "identity.upgrade")
        .expect("event");
    assert_eq!(upgrade["after"]["path"], "merge");
    assert_eq!(upgrade["after"]["anonymous_user"], guest.user_id.as_str());
    assert_eq!(upgrade["after"]["counts"]["grants_removed"], 1);
    // external_id already carried the canonical id: the provider is not called.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        idp.patches().len(),
        1,
        "only the first sign-in set external_id"
    );
}
both_backends!(
    signing_in_as_an_existing_identity_moves_the_content_to_its_user,
    signing_in_as_an_existing_identity_moves_the_content_to_its_user
);

async fn twenty_concurrent_first_sign_ins_create_one_user(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn(db, &idp).await;
    let before = app.table_sizes().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = format!("{}/api/auth/resolve-user", app.base);
        let token = idp.token("user_2rush", json!({}));
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("sent");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        ids.insert(body["user_id"].as_str().expect("id").to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let after = app.table_sizes().await;
    assert_eq!(after["users"], before["users"] + 1);
    assert_eq!(after["identities"], before["identities"] + 1);
    let user = ids.into_iter().next().expect("one");
    let synced = actions_for(&app, &user).await;
    assert_eq!(
        synced
            .iter()
            .filter(|e| e["action"] == "owner.synced")
            .count(),
        1,
        "{synced:?}"
    );
}
both_backends!(
    twenty_concurrent_first_sign_ins_create_one_user,
    twenty_concurrent_first_sign_ins_create_one_user
);

async fn profile_sync_is_an_audited_upsert(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn(db, &idp).await;
    let (_, body) = app
        .resolve(&idp.token("user_2sync", json!({})), &json!({}))
        .await;
    let user = body["user_id"].as_str().expect("id").to_string();
    let events = app.state.store.audit_event_count().await.expect("count");
    // The same claims again: nothing changed, nothing written.
    let (status, body) = app
        .resolve(
            &idp.token("user_2sync", json!({"external_id": user})),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], user.as_str());
    assert_eq!(
        app.state.store.audit_event_count().await.expect("count"),
        events
    );
    // A new name is synced and audited; claims absent from a token keep their value.
    let (status, _) = app
        .resolve(
            &idp.token("user_2sync", json!({"name": "New Name", "email": null})),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let world = export(&app).await;
    let stored = find(&world["users"], &user);
    assert_eq!(stored["name"], "New Name");
    assert_eq!(stored["email"], "user_2sync@example.com");
    let synced: Vec<Value> = actions_for(&app, &user)
        .await
        .into_iter()
        .filter(|e| e["action"] == "owner.synced")
        .collect();
    assert_eq!(synced.len(), 2);
    assert!(synced[1]["before"].to_string().contains("Test Person"));
    assert!(synced[1]["after"].to_string().contains("New Name"));
}
both_backends!(
    profile_sync_is_an_audited_upsert,
    profile_sync_is_an_audited_upsert
);

async fn external_id_must_agree_with_the_link(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn(db, &idp).await;
    let (_, body) = app
        .resolve(&idp.token("user_2link", json!({})), &json!({}))
        .await;
    let user = body["user_id"].as_str().expect("id").to_string();
    app.import(&json!({"users": [{"id": "someone-else", "kind": "registered"}]}))
        .await;
    let before = app.table_sizes().await;
    let (status, body) = app
        .resolve(
            &idp.token("user_2link", json!({"external_id": "someone-else"})),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "identity_conflict");
    // external_id naming no Warden user is refused too.
    let (status, body) = app
        .resolve(
            &idp.token("user_2ghost", json!({"external_id": "ghost"})),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // external_id naming a user linked to another subject.
    let (status, _) = app
        .resolve(
            &idp.token("user_2thief", json!({"external_id": user})),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        app.table_sizes().await,
        before,
        "refused sign-ins write nothing"
    );
    // Without the provider's token: 401.
    let (status, body) = app
        .post_with(None, "/api/auth/resolve-user", &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
}
both_backends!(
    external_id_must_agree_with_the_link,
    external_id_must_agree_with_the_link
);

/// Without `--oidc-issuer`, resolve-user says what is missing.
#[tokio::test]
async fn resolve_user_needs_a_configured_provider() {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(Db::Sqlite, None, None, |_| {}).await;
    let (status, body) = app
        .resolve(&idp.token("user_2x", json!({})), &json!({}))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("--oidc-issuer"),
        "{body}"
    );
}

/// The provider already carries an anonymous user's id as `external_id`
/// (set before it ever signed up): signing in with it signs that user up,
/// securing its content, even without its anonymous token.
async fn external_id_naming_an_anonymous_user_signs_it_up(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn(db, &idp).await;
    let anon = app.anonymous().await;
    app.import(&json!({"workspaces": [{"id": anon.workspace, "owner": anon.user_id, "visibility": "public"}]}))
        .await;
    let (status, body) = app
        .resolve(
            &idp.token("user_2pre", json!({"external_id": anon.user_id})),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], anon.user_id.as_str());
    let world = export(&app).await;
    assert_eq!(find(&world["users"], &anon.user_id)["kind"], "registered");
    assert_eq!(
        find(&world["workspaces"], &anon.workspace)["visibility"],
        "private"
    );
    let (status, _) = app.refresh(&anon.token).await;
    assert_eq!(status, 401, "its anonymous token died");
    let events = actions_for(&app, &anon.user_id).await;
    assert!(events.iter().any(|e| e["action"] == "identity.upgrade"));
    // No admin API call: the provider already carries the id.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(idp.patches().is_empty());
}
both_backends!(
    external_id_naming_an_anonymous_user_signs_it_up,
    external_id_naming_an_anonymous_user_signs_it_up
);
