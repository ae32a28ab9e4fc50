//! Admin routes: import all or nothing (references checked against the
//! document and the store, duplicates and impossible roles refused),
//! idempotent and audited once per import; export round trips between
//! backends; API keys shown once, scoped, listed without secrets, revoked;
//! the policy listing and its version.

use crate::both_backends;
use crate::common::{repo, spawn_app, Db, TestApp};
use serde_json::{json, Value};

/// A world using every section and both kinds of every choice.
fn world() -> Value {
    json!({
        "users": [
            {"id": "alice", "kind": "registered", "email": "alice@example.com", "name": "Alice"},
            {"id": "bob", "kind": "registered", "email": "bob@example.com"},
            {"id": "carol", "kind": "registered", "name": "Carol"},
            {"id": "dave", "kind": "registered"},
            {"id": "anon-1", "kind": "anonymous"}
        ],
        "workspaces": [
            {"id": "w1", "owner": "alice", "visibility": "private"},
            {"id": "w2", "owner": "anon-1", "visibility": "public"}
        ],
        "projects": [
            {"id": "p1", "workspace": "w1", "visibility": "private"},
            {"id": "p2", "workspace": "w2", "visibility": "public"}
        ],
        "assets": [
            {"id": "a1", "project": "p1", "visibility": "private", "public_access": "none"},
            {"id": "a2", "project": "p1", "visibility": "public", "public_access": "read"},
            {"id": "a3", "project": "p2", "visibility": "public", "public_access": "write"}
        ],
        "memberships": [
            {"user": "bob", "scope": "workspace", "id": "w1", "role": "editor"},
            {"user": "carol", "scope": "workspace", "id": "w1", "role": "owner"},
            {"user": "dave", "scope": "project", "id": "p1", "role": "viewer"},
            {"user": "bob", "scope": "project", "id": "p2", "role": "editor"}
        ],
        "grants": [
            {"user": "dave", "asset": "a1", "permission": "write"},
            {"user": "anon-1", "asset": "a2", "permission": "read"}
        ]
    })
}

async fn export(app: &TestApp) -> Value {
    let (status, body) = app.get("/v1/admin/export").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn audits(app: &TestApp) -> i64 {
    app.state
        .store
        .audit_event_count()
        .await
        .expect("audit count")
}

/// Posts `doc`, expects a 422 `invalid_import` whose message and problem
/// list name every one of `paths`, and checks nothing was written.
async fn assert_refused(app: &TestApp, doc: &Value, paths: &[&str]) {
    let before = export(app).await;
    let audits_before = audits(app).await;
    let (status, body) = app.post("/v1/admin/import", doc).await;
    assert_eq!(status, 422, "{doc} was not refused: {body}");
    assert_eq!(body["error"]["code"], "invalid_import", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .expect("problems listed")
        .iter()
        .map(|p| p.as_str().expect("problem text"))
        .collect();
    assert_eq!(problems.len(), paths.len(), "{body}");
    for path in paths {
        assert!(message.contains(path), "{path} not in the message: {body}");
        assert!(
            problems.iter().any(|p| p.starts_with(path)),
            "{path} not in the problems: {body}"
        );
    }
    assert_eq!(
        export(app).await,
        before,
        "a refused import wrote something: {doc}"
    );
    assert_eq!(
        audits(app).await,
        audits_before,
        "a refused import was audited: {doc}"
    );
}

async fn dangling_references_are_refused_whole(db: Db) {
    let app = spawn_app(db).await;
    // On an empty store, the valid parts of a bad document are not written.
    assert_refused(
        &app,
        &json!({
            "users": [{"id": "u", "kind": "registered"}],
            "workspaces": [{"id": "w", "owner": "u"}],
            "projects": [{"id": "p", "workspace": "w"}],
            "assets": [{"id": "a", "project": "p"}, {"id": "orphan", "project": "nowhere"}]
        }),
        &["assets[1].project"],
    )
    .await;
    assert_eq!(
        export(&app).await,
        json!({"users": [], "workspaces": [], "projects": [], "assets": [], "memberships": [], "grants": []})
    );
    app.import(&world()).await;
    // One dangling reference of each kind, each named by its path; every
    // problem of a document is listed at once.
    for (doc, paths) in [
        (
            json!({"users": [{"id": "eve", "kind": "registered"}],
                "assets": [{"id": "a9", "project": "nowhere"}]}),
            vec!["assets[0].project"],
        ),
        (
            json!({"workspaces": [{"id": "w9", "owner": "ghost"}]}),
            vec!["workspaces[0].owner"],
        ),
        (
            json!({"projects": [{"id": "p9", "workspace": "w-none"}]}),
            vec!["projects[0].workspace"],
        ),
        (
            json!({"memberships": [{"user": "ghost", "scope": "workspace", "id": "w1", "role": "viewer"}]}),
            vec!["memberships[0].user"],
        ),
        (
            json!({"memberships": [{"user": "bob", "scope": "project", "id": "w1", "role": "viewer"}]}),
            vec!["memberships[0].id"],
        ),
        (
            json!({"memberships": [{"user": "bob", "scope": "workspace", "id": "p1", "role": "viewer"}]}),
            vec!["memberships[0].id"],
        ),
        (
            json!({"grants": [{"user": "bob", "asset": "p1", "permission": "read"}]}),
            vec!["grants[0].asset"],
        ),
        (
            json!({"grants": [{"user": "ghost", "asset": "a1", "permission": "read"}]}),
            vec!["grants[0].user"],
        ),
        (
            json!({
                "projects": [{"id": "p9", "workspace": "w1"}, {"id": "p10", "workspace": "w-none"}],
                "assets": [{"id": "a9", "project": "p9"}, {"id": "a10", "project": "p-none"}],
                "grants": [{"user": "bob", "asset": "a9", "permission": "read"},
                           {"user": "nobody", "asset": "a-none", "permission": "write"}]
            }),
            vec![
                "projects[1].workspace",
                "assets[1].project",
                "grants[1].user",
                "grants[1].asset",
            ],
        ),
    ] {
        assert_refused(&app, &doc, &paths).await;
    }
}
both_backends!(dangling_references, dangling_references_are_refused_whole);

async fn impossible_documents_are_refused(db: Db) {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    for (doc, paths) in [
        (
            json!({"users": [{"id": "eve", "kind": "registered"}, {"id": "eve", "kind": "anonymous"}]}),
            vec!["users[1]"],
        ),
        (
            json!({"workspaces": [{"id": "w9", "owner": "alice"}, {"id": "w9", "owner": "bob"}]}),
            vec!["workspaces[1]"],
        ),
        (
            json!({"projects": [{"id": "p9", "workspace": "w1"}, {"id": "p9", "workspace": "w1"}]}),
            vec!["projects[1]"],
        ),
        (
            json!({"assets": [{"id": "a9", "project": "p1"}, {"id": "a8", "project": "p1"}, {"id": "a9", "project": "p2"}]}),
            vec!["assets[2]"],
        ),
        (
            json!({"memberships": [{"user": "dave", "scope": "workspace", "id": "w1", "role": "viewer"},
                                {"user": "dave", "scope": "workspace", "id": "w1", "role": "editor"}]}),
            vec!["memberships[1]"],
        ),
        (
            json!({"grants": [{"user": "bob", "asset": "a1", "permission": "read"},
                           {"user": "bob", "asset": "a1", "permission": "write"}]}),
            vec!["grants[1]"],
        ),
        (
            json!({"memberships": [{"user": "dave", "scope": "project", "id": "p1", "role": "owner"}]}),
            vec!["memberships[0].role"],
        ),
        (
            json!({"users": [{"id": "eve", "kind": "registered"}],
                "memberships": [{"user": "eve", "scope": "project", "id": "p2", "role": "owner"}]}),
            vec!["memberships[0].role"],
        ),
    ] {
        assert_refused(&app, &doc, &paths).await;
    }
    // The same user in a workspace and in a project is no duplicate, and a
    // workspace-scope owner role is fine.
    app.import(&json!({"memberships": [
        {"user": "dave", "scope": "workspace", "id": "w2", "role": "owner"},
        {"user": "dave", "scope": "project", "id": "p2", "role": "editor"}
    ]}))
    .await;
    let memberships = export(&app).await["memberships"].clone();
    assert!(
        memberships
            .as_array()
            .unwrap()
            .contains(&json!({"user": "dave", "scope": "workspace", "id": "w2", "role": "owner"})),
        "{memberships}"
    );
}
both_backends!(impossible_documents, impossible_documents_are_refused);

async fn import_is_idempotent_and_audited_once(db: Db) {
    let app = spawn_app(db).await;
    let start = audits(&app).await;
    let (status, body) = app.post("/v1/admin/import", &world()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["imported"],
        json!({"users": 5, "workspaces": 2, "projects": 2, "assets": 3, "memberships": 4, "grants": 2})
    );
    assert_eq!(audits(&app).await, start + 1, "one audit row per import");
    let first = export(&app).await;
    // The export holds exactly what was imported (same set of rows).
    for section in [
        "users",
        "workspaces",
        "projects",
        "assets",
        "memberships",
        "grants",
    ] {
        let mut want = world()[section].as_array().unwrap().clone();
        let mut got = first[section].as_array().unwrap().clone();
        want.sort_by_key(Value::to_string);
        got.sort_by_key(Value::to_string);
        assert_eq!(got, want, "{section}");
    }
    app.import(&world()).await;
    assert_eq!(export(&app).await, first, "a second import changes nothing");
    assert_eq!(
        audits(&app).await,
        start + 2,
        "still one audit row per import"
    );
    // The export is itself an import document that changes nothing.
    app.import(&first).await;
    assert_eq!(export(&app).await, first);
    assert_eq!(audits(&app).await, start + 3);
    // An empty document is a valid (and audited) import of nothing.
    app.import(&json!({})).await;
    assert_eq!(export(&app).await, first);
    assert_eq!(audits(&app).await, start + 4);
    // Upsert: a changed row replaces the stored one, decisions follow.
    assert_eq!(app.decide("bob", "read", "Asset", "a3").await, "allow");
    assert_eq!(app.decide("dave", "write", "Asset", "a3").await, "allow");
    assert_eq!(app.decide("eve", "read", "Asset", "a1").await, "deny");
    app.import(&json!({"assets": [{"id": "a3", "project": "p2", "visibility": "private", "public_access": "none"}]}))
        .await;
    let changed = export(&app).await;
    let a3 = changed["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "a3")
        .unwrap();
    assert_eq!(
        a3,
        &json!({"id": "a3", "project": "p2", "visibility": "private", "public_access": "none"})
    );
    assert_eq!(changed["assets"].as_array().unwrap().len(), 3);
    assert_eq!(audits(&app).await, start + 5);
    // bob is a project editor of p2 (not a member of w2): still reads a3.
    assert_eq!(app.decide("bob", "read", "Asset", "a3").await, "allow");
    assert_eq!(app.decide("dave", "write", "Asset", "a3").await, "deny");
}
both_backends!(idempotent, import_is_idempotent_and_audited_once);

async fn references_may_point_to_earlier_imports(db: Db) {
    let app = spawn_app(db).await;
    app.import(&json!({"users": [{"id": "alice", "kind": "registered"}, {"id": "bob", "kind": "registered"}]}))
        .await;
    app.import(&json!({"workspaces": [{"id": "w1", "owner": "alice"}]}))
        .await;
    app.import(&json!({"projects": [{"id": "p1", "workspace": "w1"}]}))
        .await;
    app.import(&json!({"assets": [{"id": "a1", "project": "p1"}]}))
        .await;
    assert_eq!(app.decide("bob", "read", "Asset", "a1").await, "deny");
    app.import(&json!({"grants": [{"user": "bob", "asset": "a1", "permission": "read"}]}))
        .await;
    assert_eq!(app.decide("bob", "read", "Asset", "a1").await, "allow");
    assert_eq!(app.decide("bob", "write", "Asset", "a1").await, "deny");
    // Mixed: a new asset in a stored project, a grant on it for a stored user.
    app.import(&json!({
        "assets": [{"id": "a2", "project": "p1"}],
        "memberships": [{"user": "bob", "scope": "project", "id": "p1", "role": "editor"}],
        "grants": [{"user": "alice", "asset": "a2", "permission": "read"}]
    }))
    .await;
    assert_eq!(app.decide("bob", "write", "Asset", "a2").await, "allow");
    let exported = export(&app).await;
    assert_eq!(exported["assets"].as_array().unwrap().len(), 2);
    assert_eq!(exported["grants"].as_array().unwrap().len(), 2);
    // Defaults: what is not said is private, with no public access.
    assert_eq!(exported["workspaces"][0]["visibility"], "private");
    assert_eq!(exported["projects"][0]["visibility"], "private");
    assert_eq!(exported["assets"][1]["visibility"], "private");
    assert_eq!(exported["assets"][1]["public_access"], "none");
}
both_backends!(earlier_imports, references_may_point_to_earlier_imports);

/// The questions both servers must answer alike after a migration.
async fn answers(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "anon-1", "ghost"] {
        for (ty, id) in [
            ("Workspace", "w1"),
            ("Project", "p2"),
            ("Asset", "a1"),
            ("Asset", "a2"),
            ("Asset", "a3"),
        ] {
            for action in ["read", "write", "delete"] {
                out.push(format!(
                    "{user} {action} {ty} {id}: {}",
                    app.decide(user, action, ty, id).await
                ));
            }
        }
    }
    out
}

async fn migrate(from: Db, to: Db) {
    let source = spawn_app(from).await;
    source.import(&world()).await;
    let exported = export(&source).await;
    let target = spawn_app(to).await;
    target.import(&exported).await;
    assert_eq!(export(&target).await, exported, "{from:?} -> {to:?}");
    let (want, got) = (answers(&source).await, answers(&target).await);
    assert_eq!(got, want, "{from:?} -> {to:?}: decisions differ");
    assert!(want.iter().any(|a| a.ends_with("allow")) && want.iter().any(|a| a.ends_with("deny")));
}

#[tokio::test]
async fn export_migrates_sqlite_to_postgres() {
    migrate(Db::Sqlite, Db::Postgres).await;
}

#[tokio::test]
async fn export_migrates_postgres_to_sqlite() {
    migrate(Db::Postgres, Db::Sqlite).await;
}

async fn api_keys_lifecycle(db: Db) {
    let app = spawn_app(db).await;
    app.import(&world()).await;
    let listed = |body: &Value| body["keys"].as_array().expect("keys").clone();
    let (_, initial) = app.get("/v1/admin/api-keys").await;
    let initial = listed(&initial);
    assert_eq!(initial.len(), 1, "only the first admin key: {initial:?}");
    assert_eq!(initial[0]["name"], "first admin key");
    assert_eq!(initial[0]["scopes"], json!(["admin", "check"]));
    let start = audits(&app).await;

    // Invalid requests create nothing and audit nothing.
    for (body, field) in [
        (json!({"name": "x", "scopes": ["superuser"]}), "scopes"),
        (json!({"name": "x", "scopes": ["check", "root"]}), "scopes"),
        (json!({"name": "x", "scopes": ["Check"]}), "scopes"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "", "scopes": ["check"]}), "name"),
        (json!({"name": "   ", "scopes": ["check"]}), "name"),
        (
            json!({"name": "x".repeat(201), "scopes": ["check"]}),
            "name",
        ),
        (json!({"name": "x", "scopes": "check"}), "scopes"),
    ] {
        let (status, answer) = app.post("/v1/admin/api-keys", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{answer}"
        );
        assert!(answer.get("key").is_none());
    }
    let (status, answer) = app
        .post(
            "/v1/admin/api-keys",
            &json!({"name": "x", "scopes": ["check"], "expires": "never"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (_, now) = app.get("/v1/admin/api-keys").await;
    assert_eq!(listed(&now).len(), 1);
    assert_eq!(audits(&app).await, start);

    // Create: 201, the key shown once, scopes sorted and deduplicated.
    let (status, created) = app
        .post(
            "/v1/admin/api-keys",
            &json!({"name": "  ci app  ", "scopes": ["check", "check"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let check_key = created["key"].as_str().unwrap().to_string();
    let check_id = created["id"].as_str().unwrap().to_string();
    assert!(
        check_key.starts_with(&format!("wdn_{check_id}_")),
        "{created}"
    );
    assert!(check_key.len() > 64, "{created}");
    assert_eq!(created["name"], "ci app");
    assert_eq!(created["scopes"], json!(["check"]));
    assert!(created["created_at"].as_i64().unwrap() > 0);
    assert_eq!(audits(&app).await, start + 1, "creating a key is audited");
    let (status, admin) = app
        .post(
            "/v1/admin/api-keys",
            &json!({"name": "ops", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(status, 201, "{admin}");
    let admin_key = admin["key"].as_str().unwrap().to_string();
    let admin_id = admin["id"].as_str().unwrap().to_string();
    assert_ne!(admin_key, check_key);

    // The listing has every key, and never a secret or a hash.
    let (status, listing) = app.get("/v1/admin/api-keys").await;
    assert_eq!(status, 200);
    let keys = listed(&listing);
    assert_eq!(keys.len(), 3, "{listing}");
    let text = listing.to_string();
    for secret in [&check_key, &admin_key, &app.admin_key] {
        let (_, tail) = secret.rsplit_once('_').unwrap();
        assert!(!text.contains(tail), "a secret is listed: {text}");
    }
    for key in &keys {
        let fields: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            fields
                .iter()
                .all(|f| ["id", "name", "scopes", "created_at", "revoked_at"].contains(f)),
            "unexpected field in the listing: {key}"
        );
        assert!(!key.to_string().to_lowercase().contains("hash"), "{key}");
    }
    let listed_check = keys
        .iter()
        .find(|k| k["id"] == check_id.as_str())
        .expect("new key listed");
    assert_eq!(listed_check["name"], "ci app");
    assert_eq!(listed_check["scopes"], json!(["check"]));

    // Each key works for what its scope allows, and only that.
    let (status, body) = app
        .post_with(Some(&check_key), "/v1/check",
            &json!({"principal": {"type": "User", "id": "dave"}, "action": "write", "resource": {"type": "Asset", "id": "a1"}}))
        .await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!("allow")),
        "{body}"
    );
    let (status, body) = app
        .post_with(Some(&check_key), "/access/v1/evaluation",
            &json!({"subject": {"type": "User", "id": "dave"}, "action": {"name": "delete"}, "resource": {"type": "Asset", "id": "a1"}}))
        .await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!(false)),
        "{body}"
    );
    let (status, _) = app.get_with(Some(&check_key), "/v1/admin/export").await;
    assert_eq!(status, 403);
    let (status, exported) = app.get_with(Some(&admin_key), "/v1/admin/export").await;
    assert_eq!(status, 200);
    assert_eq!(exported, export(&app).await);
    let (status, body) = app
        .post_with(
            Some(&admin_key),
            "/v1/admin/import",
            &json!({"users": [{"id": "erin", "kind": "registered"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .post_with(Some(&admin_key), "/v1/check",
            &json!({"principal": {"type": "User", "id": "dave"}, "action": "read", "resource": {"type": "Asset", "id": "a1"}}))
        .await;
    assert_eq!(status, 403);
    // An admin key manages keys: it may make one that decides.
    let (status, made) = app
        .post_with(
            Some(&admin_key),
            "/v1/admin/api-keys",
            &json!({"name": "made by ops", "scopes": ["check"]}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let made_id = made["id"].as_str().unwrap().to_string();

    // Revoke: 204, then 404 (JSON) on a second revoke; unknown ids are 404.
    let audits_before = audits(&app).await;
    let (status, _) = app
        .delete_with(Some(&admin_key), &format!("/v1/admin/api-keys/{check_id}"))
        .await;
    assert_eq!(status, 204);
    assert_eq!(audits(&app).await, audits_before + 1, "revoking is audited");
    let (status, body) = app
        .delete_with(Some(&admin_key), &format!("/v1/admin/api-keys/{check_id}"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = app
        .delete_with(Some(&app.admin_key), "/v1/admin/api-keys/0000000000000000")
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        audits(&app).await,
        audits_before + 1,
        "a failed revoke is not audited"
    );
    let (status, _) = app
        .post_with(Some(&check_key), "/v1/check",
            &json!({"principal": {"type": "User", "id": "dave"}, "action": "read", "resource": {"type": "Asset", "id": "a1"}}))
        .await;
    assert_eq!(status, 401, "a revoked key stops working");
    // The listing keeps the revoked key, marked revoked.
    let (_, listing) = app.get("/v1/admin/api-keys").await;
    let keys = listed(&listing);
    assert_eq!(keys.len(), 4);
    let revoked = keys.iter().find(|k| k["id"] == check_id.as_str()).unwrap();
    assert!(revoked["revoked_at"].as_i64().is_some(), "{revoked}");
    assert!(keys
        .iter()
        .filter(|k| k["id"] != check_id.as_str())
        .all(|k| k.get("revoked_at").is_none()));
    // Revoking one key leaves the others working.
    let (status, _) = app
        .delete_with(
            Some(&app.admin_key),
            &format!("/v1/admin/api-keys/{made_id}"),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app.get_with(Some(&admin_key), "/v1/admin/api-keys").await;
    assert_eq!(status, 200);
    // A key may revoke itself, and then it is gone.
    let (status, _) = app
        .delete_with(Some(&admin_key), &format!("/v1/admin/api-keys/{admin_id}"))
        .await;
    assert_eq!(status, 204);
    let (status, _) = app.get_with(Some(&admin_key), "/v1/admin/api-keys").await;
    assert_eq!(status, 401);
}
both_backends!(api_keys, api_keys_lifecycle);

/// `@id`s and effects written in the repo's policy files, by file name.
fn policies_on_disk() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "cedar") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("@id(\"") {
            let after = &rest[at + 5..];
            let end = after.find('"').unwrap();
            let id = after[..end].to_string();
            let body = &after[end..];
            let permit = body.find("permit").unwrap_or(usize::MAX);
            let forbid = body.find("forbid").unwrap_or(usize::MAX);
            let effect = if permit < forbid { "permit" } else { "forbid" };
            out.push((id, file.clone(), effect.to_string()));
            rest = body;
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_policy_listing_names_every_policy_and_the_deciding_version() {
    let app = spawn_app(Db::Sqlite).await;
    app.import(&world()).await;
    let (status, body) = app.get("/v1/admin/policies").await;
    assert_eq!(status, 200, "{body}");
    let mut listed: Vec<(String, String, String)> = body["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let file = p["file"].as_str().expect("file");
            let name = std::path::Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                p["id"].as_str().expect("id").to_string(),
                name,
                p["effect"].as_str().expect("effect").to_string(),
            )
        })
        .collect();
    listed.sort();
    let on_disk = policies_on_disk();
    assert!(on_disk.len() >= 17, "{on_disk:?}");
    assert!(
        on_disk.iter().any(|(_, _, e)| e == "forbid")
            && on_disk.iter().any(|(_, _, e)| e == "permit")
    );
    assert_eq!(
        listed, on_disk,
        "the listing is every @id with its file and effect"
    );
    // The listed version is the one that decides.
    let version = body["version"].as_str().expect("version").to_string();
    assert!(version.starts_with("sha256:"), "{version}");
    let ask = json!({"principal": {"type": "User", "id": "alice"}, "action": "read", "resource": {"type": "Asset", "id": "a1"}});
    let (_, check) = app.post("/v1/check", &ask).await;
    assert_eq!(check["decision"], "allow");
    assert_eq!(check["policy_version"], version.as_str());
    let (_, batch) = app
        .post("/v1/check/batch", &json!({"requests": [ask]}))
        .await;
    assert_eq!(batch["policy_version"], version.as_str());
    assert_eq!(batch["results"][0]["policy_version"], version.as_str());
    let (_, evaluation) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": {"type": "User", "id": "alice"},
            "action": {"name": "read"}, "resource": {"type": "Asset", "id": "a1"}}),
        )
        .await;
    assert_eq!(evaluation["context"]["policy_version"], version.as_str());
    // Every reason a decision gives is a listed policy.
    let ids: Vec<&str> = body["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for reason in check["reasons"].as_array().unwrap() {
        assert!(
            ids.contains(&reason.as_str().unwrap()),
            "{reason} not listed"
        );
    }
    // Reading the listing changes nothing and is not audited.
    let before = audits(&app).await;
    let (_, again) = app.get("/v1/admin/policies").await;
    assert_eq!(again["version"], body["version"]);
    assert_eq!(audits(&app).await, before);
}
