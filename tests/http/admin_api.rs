//! Admin routes: import all or nothing, idempotent, references checked,
//! audited; export round trip between backends; API keys; policy listing.

use crate::both_backends;
use crate::common::{spawn_app, Db};
use serde_json::{json, Value};

fn base_world() -> Value {
    json!({
        "users": [{"id": "alice", "kind": "registered", "email": "alice@example.com"}, {"id": "anon", "kind": "anonymous"}],
        "workspaces": [{"id": "w1", "owner": "alice", "visibility": "public"}],
        "projects": [{"id": "p1", "workspace": "w1"}],
        "assets": [{"id": "a1", "project": "p1", "visibility": "public", "public_access": "read"}],
        "memberships": [{"user": "anon", "scope": "workspace", "id": "w1", "role": "viewer"}],
        "grants": [{"user": "anon", "asset": "a1", "permission": "write"}]
    })
}

async fn import_is_all_or_nothing_and_idempotent(db: Db) {
    let app = spawn_app(db).await;
    let audits = app.state.store.audit_event_count().await.unwrap();
    app.import(&base_world()).await;
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits + 1,
        "one audit row per import"
    );
    let (_, first) = app.get("/v1/admin/export").await;
    app.import(&base_world()).await;
    let (_, second) = app.get("/v1/admin/export").await;
    assert_eq!(first, second, "importing twice changes nothing");
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits + 2
    );
    // Defaults: new things are private with public access none.
    assert_eq!(first["projects"][0]["visibility"], "private");

    // A later document may refer to rows stored by an earlier one.
    app.import(&json!({"assets": [{"id": "a2", "project": "p1"}], "grants": [{"user": "alice", "asset": "a2", "permission": "read"}]})).await;
    let (_, stored) = app.get("/v1/admin/export").await;
    let audits = app.state.store.audit_event_count().await.unwrap();

    // Refused documents write nothing, not even their valid parts.
    for (doc, needle) in [
        (
            json!({"users": [{"id": "bob", "kind": "registered"}], "assets": [{"id": "a3", "project": "nowhere"}]}),
            "assets[0].project",
        ),
        (
            json!({"users": [{"id": "bob", "kind": "registered"}], "grants": [{"user": "ghost", "asset": "a1", "permission": "read"}]}),
            "grants[0].user",
        ),
        (
            json!({"users": [{"id": "bob", "kind": "registered"}, {"id": "bob", "kind": "anonymous"}]}),
            "users[1]",
        ),
        (
            json!({"users": [{"id": "bob", "kind": "registered"}], "memberships": [{"user": "bob", "scope": "project", "id": "p1", "role": "owner"}]}),
            "memberships[0].role",
        ),
    ] {
        let (status, body) = app.post("/v1/admin/import", &doc).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_import");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {body}"
        );
        let (_, after) = app.get("/v1/admin/export").await;
        assert_eq!(after, stored, "a refused import wrote something");
    }
    assert_eq!(
        app.state.store.audit_event_count().await.unwrap(),
        audits,
        "refused imports are not audited"
    );
}
both_backends!(import, import_is_all_or_nothing_and_idempotent);

#[tokio::test]
async fn export_moves_a_world_between_backends() {
    let lite = spawn_app(Db::Sqlite).await;
    lite.import(&base_world()).await;
    let (status, exported) = lite.get("/v1/admin/export").await;
    assert_eq!(status, 200);
    let pg = spawn_app(Db::Postgres).await;
    pg.import(&exported).await;
    let (_, again) = pg.get("/v1/admin/export").await;
    assert_eq!(exported, again);
    assert_eq!(
        pg.decide("anon", "write", "Asset", "a1").await,
        lite.decide("anon", "write", "Asset", "a1").await
    );
}

async fn api_keys_are_shown_once_and_scoped(db: Db) {
    let app = spawn_app(db).await;
    let (status, body) = app
        .post(
            "/v1/admin/api-keys",
            &json!({"name": "ci", "scopes": ["superuser"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, created) = app
        .post(
            "/v1/admin/api-keys",
            &json!({"name": "app", "scopes": ["check"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("wdn_"));
    let (_, listing) = app.get("/v1/admin/api-keys").await;
    let text = listing.to_string();
    assert!(
        !text.contains(&key) && !text.contains("hash"),
        "the listing shows no secret: {text}"
    );
    assert_eq!(listing["keys"].as_array().unwrap().len(), 2);
    let (status, _) = app.post_with(Some(&key), "/v1/check/batch",
        &json!({"requests": [{"principal": {"type": "User", "id": "x"}, "action": "read", "resource": {"type": "Asset", "id": "y"}}]})).await;
    assert_eq!(status, 200);
    let (status, _) = app.get_with(Some(&key), "/v1/admin/export").await;
    assert_eq!(status, 403);
    let url = format!(
        "{}/v1/admin/api-keys/{}",
        app.base,
        created["id"].as_str().unwrap()
    );
    let first = app
        .client
        .delete(&url)
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 204);
    let second = app
        .client
        .delete(&url)
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status().as_u16(), 404);
}
both_backends!(api_keys, api_keys_are_shown_once_and_scoped);

#[tokio::test]
async fn policy_listing_matches_decisions() {
    let app = spawn_app(Db::Sqlite).await;
    let (status, body) = app.get("/v1/admin/policies").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for id in [
        "workspace-owner",
        "project-editor",
        "asset-grant-read",
        "public-asset-write",
        "upgraded-anonymous-token",
        "api-key-admin-scope",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let forbid = body["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "anonymous-no-member-management")
        .unwrap();
    assert_eq!(forbid["effect"], "forbid");
    assert!(forbid["file"]
        .as_str()
        .unwrap()
        .ends_with("anonymous.cedar"));
    let (_, decision) = app.post("/v1/check", &json!({"principal": {"type": "User", "id": "x"}, "action": "read", "resource": {"type": "Asset", "id": "y"}})).await;
    assert_eq!(decision["policy_version"], body["version"]);
}

#[tokio::test]
async fn operations_routes_answer() {
    let app = spawn_app(Db::Sqlite).await;
    let (status, body) = app.get_with(None, "/healthz").await;
    assert_eq!((status, body["status"].clone()), (200, json!("ok")));
    let (status, body) = app.get_with(None, "/readyz").await;
    assert_eq!((status, body["database"].clone()), (200, json!("ok")));
    app.decide("nobody", "read", "Asset", "nothing").await;
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("warden_decisions_total"), "{text}");
}
