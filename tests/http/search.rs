//! Search: AuthZEN resource and subject search and their /v1 equivalents,
//! decided by the policies (a new policy changes the results with no code
//! change), paginated, never listing link-only public resources. Both backends.

use crate::both_backends;
use crate::common::{repo, spawn_configured, Db, PgDatabase, TestApp};
use serde_json::{json, Value};

fn world() -> Value {
    json!({
        "users": [
            {"id": "alice", "kind": "registered"}, {"id": "bob", "kind": "registered"},
            {"id": "dave", "kind": "registered"}, {"id": "erin", "kind": "registered"},
            {"id": "mallory", "kind": "registered"}
        ],
        "workspaces": [{"id": "w", "owner": "alice"}, {"id": "wm", "owner": "mallory"}],
        "projects": [{"id": "p", "workspace": "w"}, {"id": "q", "workspace": "w"}, {"id": "pm", "workspace": "wm"}],
        "assets": [
            {"id": "a1", "project": "p"}, {"id": "a2", "project": "p"}, {"id": "a3", "project": "p"},
            {"id": "a4", "project": "q"}, {"id": "a5", "project": "q"},
            {"id": "pub", "project": "p", "visibility": "public", "public_access": "write"},
            {"id": "m1", "project": "pm"}
        ],
        "memberships": [
            {"user": "bob", "scope": "workspace", "id": "w", "role": "editor"},
            {"user": "dave", "scope": "project", "id": "p", "role": "editor"}
        ],
        "grants": [{"user": "erin", "asset": "a1", "permission": "read"}]
    })
}

async fn app(db: Db, policies: Option<std::path::PathBuf>) -> TestApp {
    let app = spawn_configured(db, None, None, |s| {
        if let Some(dir) = policies {
            s.policies = dir;
        }
    })
    .await;
    app.import(&world()).await;
    app
}

async fn resources(
    app: &TestApp,
    user: &str,
    action: &str,
    ty: &str,
    properties: Value,
) -> Vec<String> {
    let (status, body) = app
        .post(
            "/access/v1/search/resource",
            &json!({"subject": {"type": "User", "id": user}, "action": {"name": action},
                    "resource": {"type": ty, "properties": properties}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["page"]["next_token"], "", "{body}");
    ids(&body["results"])
}

async fn subjects(app: &TestApp, action: &str, ty: &str, id: &str) -> Value {
    let (status, body) = app
        .post(
            "/access/v1/search/subject",
            &json!({"subject": {"type": "User"}, "action": {"name": action}, "resource": {"type": ty, "id": id}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_authzen_answer(&body);
    body["results"].clone()
}

/// An AuthZEN 1.0 search answer holds `results`, `page` (`next_token`,
/// `count`) and `context` (Warden's policy version), and nothing else.
fn assert_authzen_answer(body: &Value) {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["context", "page", "results"], "{body}");
    assert_eq!(
        body["page"]["count"],
        json!(body["results"].as_array().unwrap().len()),
        "{body}"
    );
    assert!(body["page"]["next_token"].is_string(), "{body}");
    assert!(
        body["context"]["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{body}"
    );
}

/// The actions `user` may perform on resource `ty` `id` (AuthZEN action
/// search), walked `limit` at a time, with the reasons of each.
async fn actions(
    app: &TestApp,
    user: &str,
    ty: &str,
    id: &str,
    limit: usize,
) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    let mut token = String::new();
    for _ in 0..20 {
        let (status, body) = app
            .post(
                "/access/v1/search/action",
                &json!({"subject": {"type": "User", "id": user}, "resource": {"type": ty, "id": id},
                        "page": {"token": token, "limit": limit}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_authzen_answer(&body);
        for result in body["results"].as_array().unwrap() {
            assert_eq!(result.as_object().unwrap().len(), 2, "{result}");
            found.push((
                result["name"].as_str().unwrap().to_string(),
                result["properties"]["reasons"].clone(),
            ));
        }
        token = body["page"]["next_token"].as_str().unwrap().to_string();
        if token.is_empty() {
            return found;
        }
    }
    panic!("{user} on {ty} {id}: still more pages after 20 of {limit}");
}

fn names(found: &[(String, Value)]) -> Vec<&str> {
    found.iter().map(|(name, _)| name.as_str()).collect()
}

/// Every result of the /v1 search `ask` at `path`, following `next_cursor`
/// page by page until the last.
async fn walk(app: &TestApp, path: &str, mut ask: Value) -> Vec<String> {
    let mut walked = Vec::new();
    loop {
        let (status, body) = app.post(path, &ask).await;
        assert_eq!(status, 200, "{body}");
        walked.extend(ids(&body["results"]));
        if body["next_cursor"].is_null() {
            return walked;
        }
        ask["cursor"] = body["next_cursor"].clone();
    }
}

fn ids(results: &Value) -> Vec<String> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

async fn searches_find_what_the_policies_allow_and_never_public_links(db: Db) {
    let app = app(db, None).await;
    let all_w = ["a1", "a2", "a3", "a4", "a5", "pub"];
    assert_eq!(
        resources(&app, "alice", "delete", "Asset", json!({})).await,
        all_w
    );
    assert_eq!(
        resources(&app, "bob", "write", "Asset", json!({})).await,
        all_w
    );
    assert_eq!(
        resources(&app, "dave", "write", "Asset", json!({})).await,
        ["a1", "a2", "a3", "pub"]
    );
    assert_eq!(
        resources(&app, "dave", "read", "Project", json!({})).await,
        ["p"]
    );
    // A read grant: that asset only. The public asset is readable by anyone
    // with the link, but never listed.
    assert_eq!(
        resources(&app, "erin", "read", "Asset", json!({})).await,
        ["a1"]
    );
    assert_eq!(app.decide("erin", "read", "Asset", "pub").await, "allow");
    assert!(
        resources(&app, "mallory", "read", "Asset", json!({"workspace": "w"}))
            .await
            .is_empty()
    );
    assert_eq!(
        resources(&app, "mallory", "read", "Asset", json!({})).await,
        ["m1"]
    );
    // Within one workspace or project.
    assert_eq!(
        resources(&app, "bob", "read", "Asset", json!({"project": "q"})).await,
        ["a4", "a5"]
    );
    assert_eq!(
        resources(&app, "alice", "read", "Project", json!({"workspace": "w"})).await,
        ["p", "q"]
    );
    assert_eq!(
        resources(&app, "alice", "manage_members", "Workspace", json!({})).await,
        ["w"]
    );
    // Each result carries the policies that allowed it.
    let (_, body) = app
        .post(
            "/access/v1/search/resource",
            &json!({"subject": {"type": "User", "id": "erin"},
              "action": {"name": "read"}, "resource": {"type": "Asset"}}),
        )
        .await;
    assert_eq!(
        body["results"][0],
        json!({"type": "Asset", "id": "a1", "properties": {"reasons": ["asset-grant-read"]}})
    );

    // Pages: 2 at a time, each answer's page.next_token sent back as
    // page.token (AuthZEN 1.0), with the page's count. The answer holds
    // only AuthZEN's keys; the policy version is in its context.
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let (status, body) = app
            .post("/access/v1/search/resource", &json!({"subject": {"type": "User", "id": "bob"},
                  "action": {"name": "read"}, "resource": {"type": "Asset"}, "page": {"token": token, "limit": 2}}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_authzen_answer(&body);
        seen.extend(ids(&body["results"]));
        token = body["page"]["next_token"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, all_w);
    // The searched-for entity may carry AuthZEN's `id`, empty.
    let (status, body) = app
        .post(
            "/access/v1/search/resource",
            &json!({"subject": {"type": "User", "id": "erin"},
              "action": {"name": "read"}, "resource": {"type": "Asset", "id": ""}}),
        )
        .await;
    assert_eq!(
        (status, ids(&body["results"])),
        (200, vec!["a1".to_string()]),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/access/v1/search/subject",
            &json!({"subject": {"type": "User", "id": ""},
              "action": {"name": "delete"}, "resource": {"type": "Project", "id": "p"}}),
        )
        .await;
    assert_eq!(
        (status, ids(&body["results"])),
        (200, vec!["alice".to_string(), "bob".to_string()]),
        "{body}"
    );
    // `next_token` is accepted as the request's name for it too; empty
    // paging properties are fine.
    let (status, body) = app
        .post(
            "/access/v1/search/resource",
            &json!({"subject": {"type": "User", "id": "bob"},
              "action": {"name": "read"}, "resource": {"type": "Asset"},
              "page": {"next_token": "a2", "limit": 2, "properties": {}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["results"]), ["a3", "a4"]);
    assert_eq!(body["page"], json!({"next_token": "a4", "count": 2}));

    // Who may write a1? With the reason for each.
    let writers = subjects(&app, "write", "Asset", "a1").await;
    assert_eq!(
        writers,
        json!([
            {"type": "User", "id": "alice", "properties": {"reasons": ["workspace-owner"]}},
            {"type": "User", "id": "bob", "properties": {"reasons": ["workspace-editor"]}},
            {"type": "User", "id": "dave", "properties": {"reasons": ["project-editor"]}}
        ])
    );
    assert_eq!(
        ids(&subjects(&app, "read", "Asset", "a1").await),
        ["alice", "bob", "dave", "erin"]
    );
    assert_eq!(
        ids(&subjects(&app, "manage_members", "Workspace", "w").await),
        ["alice"]
    );
    assert_eq!(
        ids(&subjects(&app, "read", "Asset", "a4").await),
        ["alice", "bob"]
    );

    // The /v1 equivalents.
    let (status, body) = app
        .post(
            "/v1/search/resources",
            &json!({"principal": {"type": "User", "id": "dave"}, "action": "write",
              "resource_type": "Asset", "project": "p", "limit": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["results"]), ["a1", "a2", "a3"]);
    assert_eq!(body["next_cursor"], "a3");
    let (_, body) = app
        .post(
            "/v1/search/resources",
            &json!({"principal": {"type": "User", "id": "dave"}, "action": "write",
              "resource_type": "Asset", "project": "p", "cursor": "a3"}),
        )
        .await;
    assert_eq!(ids(&body["results"]), ["pub"]);
    assert_eq!(body["next_cursor"], Value::Null);
    // Walking every page of an unscoped search, in pages of one and two,
    // gives the one-page answer: each relation (ownership, workspace and
    // project memberships, grants) pages on its own cursor.
    for (user, action) in [
        ("alice", "delete"),
        ("bob", "read"),
        ("dave", "write"),
        ("erin", "read"),
    ] {
        let whole = resources(&app, user, action, "Asset", json!({})).await;
        for limit in [1, 2] {
            let ask = json!({"principal": {"type": "User", "id": user}, "action": action,
                             "resource_type": "Asset", "limit": limit});
            let walked = walk(&app, "/v1/search/resources", ask).await;
            assert_eq!(walked, whole, "{user} {action} in pages of {limit}");
        }
    }
    let (status, body) = app
        .post(
            "/v1/search/subjects",
            &json!({"action": "delete", "resource": {"type": "Project", "id": "p"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["results"]), ["alice", "bob"]);

    // Mistakes name the field; keys without the check scope are refused.
    for (path, body, field) in [
        (
            "/access/v1/search/resource",
            json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "fly"}, "resource": {"type": "Asset"}}),
            "action.name",
        ),
        (
            "/access/v1/search/resource",
            json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "share"}, "resource": {"type": "User"}}),
            "resource.type",
        ),
        (
            "/access/v1/search/resource",
            json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "read"}, "resource": {"type": "Asset"}, "page": {"limit": 0}}),
            "page.limit",
        ),
        (
            "/access/v1/search/subject",
            json!({"subject": {"type": "Asset"}, "action": {"name": "read"}, "resource": {"type": "Asset", "id": "a1"}}),
            "subject.type",
        ),
        (
            "/access/v1/search/subject",
            json!({"subject": {"type": "User"}, "action": {"name": "read"}, "resource": {"type": "Asset", "id": "a1"},
                   "page": {"properties": {"sort": "desc"}}}),
            "page.properties.sort",
        ),
        (
            "/access/v1/search/subject",
            json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "read"}, "resource": {"type": "Asset", "id": "a1"}}),
            "subject.id",
        ),
        (
            "/access/v1/search/resource",
            json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "read"}, "resource": {"type": "Asset", "id": "a1"}}),
            "resource.id",
        ),
        (
            "/v1/search/resources",
            json!({"action": "read", "resource_type": "Asset"}),
            "principal",
        ),
    ] {
        let (status, answer) = app.post(path, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    let admin_only = app.key_with_scopes(&["admin"]).await;
    let search = json!({"subject": {"type": "User", "id": "bob"}, "action": {"name": "read"}, "resource": {"type": "Asset"}});
    let (status, _) = app
        .post_with(Some(&admin_only), "/access/v1/search/resource", &search)
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post_with(None, "/access/v1/search/resource", &search)
        .await;
    assert_eq!(status, 401);
}

both_backends!(
    search,
    searches_find_what_the_policies_allow_and_never_public_links
);

/// Searches within a workspace read the assets' workspace, which the
/// database keeps: it follows new assets, assets moved to another project,
/// and projects moved to another workspace; scopes by grant and project
/// role still apply.
async fn scoped_searches_follow_moves(db: Db) {
    let app = app(db, None).await;
    let in_w = |user: &'static str, scope: Value| {
        let app = &app;
        async move { resources(app, user, "read", "Asset", scope).await }
    };
    assert_eq!(
        in_w("alice", json!({"workspace": "w"})).await,
        ["a1", "a2", "a3", "a4", "a5", "pub"]
    );
    assert_eq!(in_w("erin", json!({"workspace": "w"})).await, ["a1"]);
    assert_eq!(
        in_w("dave", json!({"workspace": "w"})).await,
        ["a1", "a2", "a3", "pub"]
    );
    assert_eq!(
        in_w("dave", json!({"workspace": "w", "project": "p"})).await,
        ["a1", "a2", "a3", "pub"]
    );
    assert!(in_w("dave", json!({"project": "q"})).await.is_empty());
    // Project q moves to mallory's workspace; a3 moves to project pm; a new
    // asset a6 is added to q.
    app.import(&json!({
        "projects": [{"id": "q", "workspace": "wm"}],
        "assets": [{"id": "a3", "project": "pm"}, {"id": "a6", "project": "q"}]
    }))
    .await;
    assert_eq!(
        in_w("alice", json!({"workspace": "w"})).await,
        ["a1", "a2", "pub"]
    );
    assert_eq!(
        in_w("mallory", json!({"workspace": "wm"})).await,
        ["a3", "a4", "a5", "a6", "m1"]
    );
    assert_eq!(
        in_w("mallory", json!({"workspace": "wm", "project": "q"})).await,
        ["a4", "a5", "a6"]
    );
    assert_eq!(
        in_w("mallory", json!({"project": "pm"})).await,
        ["a3", "m1"]
    );
    // Erin's grant on a1 is unchanged; dave lost a3 with its move.
    assert_eq!(in_w("erin", json!({"workspace": "w"})).await, ["a1"]);
    assert_eq!(
        in_w("dave", json!({"workspace": "w"})).await,
        ["a1", "a2", "pub"]
    );
}

both_backends!(scoped, scoped_searches_follow_moves);

/// Adding a policy changes what search finds (resources, subjects and
/// actions), with no code change.
#[tokio::test]
async fn a_new_policy_changes_search_results_with_no_code_change() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let app = app(Db::Sqlite, Some(dir.path().to_path_buf())).await;
    assert!(resources(&app, "erin", "write", "Asset", json!({}))
        .await
        .is_empty());
    assert_eq!(
        ids(&subjects(&app, "write", "Asset", "a1").await),
        ["alice", "bob", "dave"]
    );
    assert_eq!(
        actions(&app, "erin", "Asset", "a1", 50).await,
        [("read".to_string(), json!(["asset-grant-read"]))]
    );
    std::fs::write(
        dir.path().join("readers-write.cedar"),
        "// Holders of a read grant may also write that asset.\n\
         @id(\"readers-may-write\")\n\
         permit (principal is Warden::User, action == Warden::Action::\"write\", resource is Warden::Asset)\n\
         when { principal in resource.readers };\n",
    )
    .unwrap();
    let (status, body) = app.post("/v1/admin/policies/reload", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        resources(&app, "erin", "write", "Asset", json!({})).await,
        ["a1"]
    );
    let writers = subjects(&app, "write", "Asset", "a1").await;
    assert_eq!(ids(&writers), ["alice", "bob", "dave", "erin"]);
    assert_eq!(
        writers[3]["properties"]["reasons"],
        json!(["readers-may-write"])
    );
    assert_eq!(
        actions(&app, "erin", "Asset", "a1", 50).await,
        [
            ("read".to_string(), json!(["asset-grant-read"])),
            ("write".to_string(), json!(["readers-may-write"]))
        ]
    );
}

/// Subject search pages each relation on its own cursor: walked in pages of
/// one, two and three, "who may read this?" gives the one-page answer for a
/// workspace, a project and an asset, with users related in several ways
/// listed once.
async fn subject_search_pages_per_relation(db: Db) {
    let app = spawn_configured(db, None, None, |_| {}).await;
    let users: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("u{i:02}"), "kind": "registered"}))
        .collect();
    let member = |user: &str, scope: &str, id: &str, role: &str| json!({"user": user, "scope": scope, "id": id, "role": role});
    app.import(&json!({
        "users": users,
        "workspaces": [{"id": "w", "owner": "u05"}],
        "projects": [{"id": "p", "workspace": "w"}, {"id": "q", "workspace": "w"}],
        "assets": [{"id": "a", "project": "p"}],
        "memberships": [
            member("u01", "workspace", "w", "viewer"), member("u07", "workspace", "w", "editor"),
            member("u10", "workspace", "w", "viewer"),
            member("u01", "project", "p", "editor"), member("u02", "project", "p", "viewer"),
            member("u08", "project", "p", "viewer"),
            member("u02", "project", "q", "editor"), member("u03", "project", "q", "viewer"),
            member("u09", "project", "q", "viewer")
        ],
        "grants": [
            {"user": "u04", "asset": "a", "permission": "read"},
            {"user": "u08", "asset": "a", "permission": "write"},
            {"user": "u11", "asset": "a", "permission": "read"}
        ]
    }))
    .await;
    for (resource, expected) in [
        (
            // Members of its projects are candidates, but may not read it.
            json!({"type": "Workspace", "id": "w"}),
            vec!["u01", "u05", "u07", "u10"],
        ),
        (
            json!({"type": "Project", "id": "p"}),
            vec!["u01", "u02", "u05", "u07", "u08", "u10"],
        ),
        (
            json!({"type": "Asset", "id": "a"}),
            vec!["u01", "u02", "u04", "u05", "u07", "u08", "u10", "u11"],
        ),
    ] {
        let ask = json!({"action": "read", "resource": resource});
        assert_eq!(
            walk(&app, "/v1/search/subjects", ask.clone()).await,
            expected,
            "{resource}"
        );
        for limit in [1, 2, 3] {
            let mut ask = ask.clone();
            ask["limit"] = json!(limit);
            assert_eq!(
                walk(&app, "/v1/search/subjects", ask).await,
                expected,
                "{resource} in pages of {limit}"
            );
        }
    }
}

both_backends!(subject_paging, subject_search_pages_per_relation);

/// Workspace and project search page each relation on its own cursor:
/// walked in pages of one, two and three, they give the one-page answer for
/// a user who owns workspaces, is a member of others and of projects in
/// others still, unscoped and within one workspace.
async fn workspace_and_project_search_page_per_relation(db: Db) {
    let app = spawn_configured(db, None, None, |_| {}).await;
    // u owns w1 and w4, is a member of w2 and w5, and of one project in
    // each of w3 and w6 (and of w1a, in a workspace it owns); o owns the rest.
    let workspaces: Vec<Value> = (1..=7)
        .map(|i| json!({"id": format!("w{i}"), "owner": if i == 1 || i == 4 { "u" } else { "o" }}))
        .collect();
    let projects: Vec<Value> = (1..=7)
        .flat_map(|i| {
            ["a", "b"].map(|p| json!({"id": format!("w{i}{p}"), "workspace": format!("w{i}")}))
        })
        .collect();
    let member = |scope: &str, id: &str, role: &str| json!({"user": "u", "scope": scope, "id": id, "role": role});
    app.import(&json!({
        "users": [{"id": "u", "kind": "registered"}, {"id": "o", "kind": "registered"}],
        "workspaces": workspaces,
        "projects": projects,
        "memberships": [
            member("workspace", "w2", "viewer"), member("workspace", "w5", "editor"),
            member("project", "w3b", "viewer"), member("project", "w6a", "editor"),
            member("project", "w1a", "viewer")
        ]
    }))
    .await;
    for (ty, scope, expected) in [
        // Members of a project get nothing on its workspace.
        ("Workspace", json!({}), vec!["w1", "w2", "w4", "w5"]),
        (
            "Project",
            json!({}),
            vec![
                "w1a", "w1b", "w2a", "w2b", "w3b", "w4a", "w4b", "w5a", "w5b", "w6a",
            ],
        ),
        ("Project", json!({"workspace": "w1"}), vec!["w1a", "w1b"]),
        ("Project", json!({"workspace": "w2"}), vec!["w2a", "w2b"]),
        ("Project", json!({"workspace": "w3"}), vec!["w3b"]),
        ("Project", json!({"workspace": "w7"}), vec![]),
    ] {
        assert_eq!(
            resources(&app, "u", "read", ty, scope.clone()).await,
            expected,
            "{ty} {scope}"
        );
        for limit in [1, 2, 3] {
            let mut ask = json!({"principal": {"type": "User", "id": "u"}, "action": "read",
                                 "resource_type": ty, "limit": limit});
            if let Some(workspace) = scope.get("workspace") {
                ask["workspace"] = workspace.clone();
            }
            assert_eq!(
                walk(&app, "/v1/search/resources", ask).await,
                expected,
                "{ty} {scope} in pages of {limit}"
            );
        }
    }
}

both_backends!(
    workspace_project_paging,
    workspace_and_project_search_page_per_relation
);

/// Searches list ids in byte order, as SQLite compares them, on every
/// Postgres whatever the locale its database was created with: here one
/// whose collation (ICU en-US) sorts `_carol a B` where bytes sort `B _carol
/// a`. Each relation is read in id order from the database and the pages
/// merge them, so a database ordering them otherwise skipped or repeated
/// results; walked in pages of one to three, a resource search over
/// workspace, project and grant relations and a subject search over
/// members, project members and grantees give the byte-sorted answer.
async fn searches_list_ids_in_byte_order_whatever_the_database_locale(db: Db) {
    let pg = match db {
        Db::Postgres => Some(
            PgDatabase::create_with("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
                .await,
        ),
        Db::Sqlite => None,
    };
    let app = spawn_configured(db, pg, None, |_| {}).await;
    let users: Vec<Value> = [
        "Zed", "u", "Bob", "_carol", "Dave", "alice", "erin", "Émile",
    ]
    .map(|id| json!({"id": id, "kind": "registered"}))
    .to_vec();
    let member = |user: &str, scope: &str, id: &str, role: &str| json!({"user": user, "scope": scope, "id": id, "role": role});
    let asset = |id: &str, project: &str| json!({"id": id, "project": project});
    let grant =
        |user: &str, asset: &str| json!({"user": user, "asset": asset, "permission": "read"});
    app.import(&json!({
        "users": users,
        "workspaces": [{"id": "W", "owner": "Zed"}, {"id": "v", "owner": "Zed"}],
        "projects": [{"id": "P", "workspace": "W"}, {"id": "q", "workspace": "v"}, {"id": "R", "workspace": "v"}],
        "assets": [
            asset("a", "P"), asset("B", "P"), asset("c", "P"), asset("D", "q"), asset("e", "q"),
            asset("_f", "R"), asset("Ä", "R"), asset("x", "R")
        ],
        "memberships": [
            member("u", "workspace", "W", "viewer"), member("u", "project", "q", "viewer"),
            member("Bob", "workspace", "W", "viewer"), member("erin", "workspace", "W", "editor"),
            member("_carol", "project", "P", "viewer"), member("Dave", "project", "P", "editor")
        ],
        "grants": [
            grant("u", "_f"), grant("u", "Ä"), grant("alice", "a"), grant("Émile", "a")
        ]
    }))
    .await;
    let assets = ["B", "D", "_f", "a", "c", "e", "Ä"];
    let readers = [
        "Bob", "Dave", "Zed", "_carol", "alice", "erin", "u", "Émile",
    ];
    assert_eq!(
        resources(&app, "u", "read", "Asset", json!({})).await,
        assets
    );
    for limit in [1, 2, 3] {
        let ask = json!({"principal": {"type": "User", "id": "u"}, "action": "read",
                         "resource_type": "Asset", "limit": limit});
        assert_eq!(
            walk(&app, "/v1/search/resources", ask).await,
            assets,
            "assets in pages of {limit}"
        );
        let ask =
            json!({"action": "read", "resource": {"type": "Asset", "id": "a"}, "limit": limit});
        assert_eq!(
            walk(&app, "/v1/search/subjects", ask).await,
            readers,
            "readers in pages of {limit}"
        );
    }
}

both_backends!(
    byte_order,
    searches_list_ids_in_byte_order_whatever_the_database_locale
);

/// The actions the schema applies to each resource type, as an app would
/// list them by hand.
const ACTIONS: [(&str, &[&str]); 3] = [
    (
        "Workspace",
        &[
            "accept_invite",
            "create_project",
            "delete",
            "invite",
            "manage_members",
            "read",
            "read_audit",
            "share",
            "write",
        ],
    ),
    (
        "Project",
        &[
            "accept_invite",
            "create_asset",
            "delete",
            "invite",
            "manage_members",
            "read",
            "read_audit",
            "share",
            "write",
        ],
    ),
    ("Asset", &["delete", "read", "read_audit", "share", "write"]),
];

/// AuthZEN action search finds, for every user and every stored resource
/// (and for an unknown user and resource), exactly the actions
/// `/v1/check/batch` allows, with the same reasons, in name order; walked
/// one or four at a time it finds the same. One search loads the facts
/// once (none when its decisions are cached). Mistakes name the field;
/// keys without the check scope are refused.
async fn action_search_finds_what_checks_allow(db: Db) {
    let app = app(db, None).await;
    let users = ["alice", "bob", "dave", "erin", "mallory", "nobody"];
    let resources: [(&str, &[&str]); 3] = [
        ("Workspace", &["w", "wm"]),
        ("Project", &["p", "q", "pm"]),
        (
            "Asset",
            &["a1", "a2", "a3", "a4", "a5", "pub", "m1", "gone"],
        ),
    ];
    // A first search on a pair loads its facts once; asked again, its
    // decisions come from the cache.
    let loads = app.state.store.fact_loads();
    let first = actions(&app, "bob", "Project", "q", 50).await;
    assert_eq!(app.state.store.fact_loads(), loads + 1);
    assert_eq!(actions(&app, "bob", "Project", "q", 50).await, first);
    assert_eq!(app.state.store.fact_loads(), loads + 1);

    let mut allowed_somewhere = 0;
    for user in users {
        for (ty, ids) in resources {
            let universe = ACTIONS.iter().find(|(t, _)| *t == ty).unwrap().1;
            for id in ids {
                let requests: Vec<Value> = universe
                    .iter()
                    .map(|action| {
                        json!({"principal": {"type": "User", "id": user}, "action": action,
                                         "resource": {"type": ty, "id": id}})
                    })
                    .collect();
                let (status, body) = app
                    .post("/v1/check/batch", &json!({"requests": requests}))
                    .await;
                assert_eq!(status, 200, "{body}");
                let expected: Vec<(String, Value)> = universe
                    .iter()
                    .zip(body["results"].as_array().unwrap())
                    .filter(|(_, r)| r["decision"] == "allow")
                    .map(|(action, r)| (action.to_string(), r["reasons"].clone()))
                    .collect();
                allowed_somewhere += expected.len();
                let loads = app.state.store.fact_loads();
                let found = actions(&app, user, ty, id, 50).await;
                assert_eq!(found, expected, "{user} on {ty} {id}");
                assert!(app.state.store.fact_loads() <= loads + 1);
                for limit in [1, 4] {
                    assert_eq!(
                        actions(&app, user, ty, id, limit).await,
                        expected,
                        "{user} on {ty} {id}, {limit} at a time"
                    );
                }
            }
        }
    }
    // Not a vacuous agreement: owners, editors, grantees and public links
    // all show up.
    assert!(allowed_somewhere > 100, "{allowed_somewhere}");
    assert_eq!(
        names(&actions(&app, "alice", "Workspace", "w", 50).await),
        [
            "create_project",
            "delete",
            "invite",
            "manage_members",
            "read",
            "read_audit",
            "share",
            "write"
        ]
    );
    assert_eq!(
        names(&actions(&app, "dave", "Asset", "a1", 50).await),
        ["delete", "read", "share", "write"]
    );
    assert_eq!(
        actions(&app, "mallory", "Asset", "pub", 50).await,
        [
            ("read".to_string(), json!(["public-asset-read"])),
            ("write".to_string(), json!(["public-asset-write"]))
        ]
    );
    // Mistakes name the field.
    let ask = |subject: Value, resource: Value, page: Value| json!({"subject": subject, "resource": resource, "page": page});
    let bob = json!({"type": "User", "id": "bob"});
    let a1 = json!({"type": "Asset", "id": "a1"});
    for (body, field) in [
        (
            ask(bob.clone(), json!({"type": "Planet", "id": "x"}), json!({})),
            "resource.type",
        ),
        (
            ask(bob.clone(), json!({"type": "Asset"}), json!({})),
            "resource",
        ),
        (
            ask(json!({"type": "Group", "id": "g"}), a1.clone(), json!({})),
            "subject.type",
        ),
        (
            ask(json!({"type": "User", "id": ""}), a1.clone(), json!({})),
            "subject.id",
        ),
        (
            ask(bob.clone(), a1.clone(), json!({"limit": 0})),
            "page.limit",
        ),
        (
            ask(
                bob.clone(),
                a1.clone(),
                json!({"properties": {"sort": "name"}}),
            ),
            "page.properties.sort",
        ),
        (
            json!({"subject": bob, "resource": a1, "action": {"name": "read"}}),
            "action",
        ),
        (
            json!({"subject": bob, "resource": a1, "context": {"authn": "app"}}),
            "context.authn",
        ),
    ] {
        let (status, answer) = app.post("/access/v1/search/action", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    // Fail closed: a key without the check scope, or no key.
    let admin_only = app.key_with_scopes(&["admin"]).await;
    let search = json!({"subject": bob, "resource": a1});
    let (status, answer) = app
        .post_with(Some(&admin_only), "/access/v1/search/action", &search)
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.get("results").is_none(), "{answer}");
    let (status, answer) = app
        .post_with(None, "/access/v1/search/action", &search)
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.get("results").is_none(), "{answer}");
}

both_backends!(actions, action_search_finds_what_checks_allow);

/// 60 workspaces of two projects of 25 assets (3,000 in all, every 7th
/// public by link). `many` owns w03 and is a viewer of w00-w09 and
/// w40-w59, a project viewer in w12 and granted one asset in w25 and one in
/// w45 (between them 1,500 assets it has no role on); `few` is a viewer of
/// w05, a project editor in w27 and granted one asset in w28 and one in
/// w06.
fn many_workspaces() -> Value {
    let mut workspaces = Vec::new();
    let mut projects = Vec::new();
    let mut assets = Vec::new();
    let mut memberships = Vec::new();
    for w in 0..60 {
        let ws = format!("w{w:02}");
        let owner = if w == 3 { "many" } else { "owner" };
        workspaces.push(json!({"id": ws, "owner": owner}));
        if !(10..40).contains(&w) && w != 3 {
            memberships
                .push(json!({"user": "many", "scope": "workspace", "id": ws, "role": "viewer"}));
        }
        for p in 0..2 {
            let project = format!("{ws}p{p}");
            projects.push(json!({"id": project, "workspace": ws}));
            for a in 0..25 {
                let id = format!("{project}a{a:02}");
                assets.push(if (w * 50 + p * 25 + a) % 7 == 0 {
                    json!({"id": id, "project": project, "visibility": "public", "public_access": "read"})
                } else {
                    json!({"id": id, "project": project})
                });
            }
        }
    }
    memberships.extend([
        json!({"user": "many", "scope": "project", "id": "w12p1", "role": "viewer"}),
        json!({"user": "few", "scope": "workspace", "id": "w05", "role": "viewer"}),
        json!({"user": "few", "scope": "project", "id": "w27p1", "role": "editor"}),
    ]);
    json!({
        "users": [{"id": "many", "kind": "registered"}, {"id": "few", "kind": "registered"},
                  {"id": "owner", "kind": "registered"}],
        "workspaces": workspaces, "projects": projects, "assets": assets,
        "memberships": memberships,
        "grants": [
            {"user": "many", "asset": "w25p1a10", "permission": "read"},
            {"user": "many", "asset": "w45p1a03", "permission": "read"},
            {"user": "few", "asset": "w28p0a03", "permission": "read"},
            {"user": "few", "asset": "w06p0a00", "permission": "read"}
        ]
    })
}

/// One list of [`unscoped_search_of_a_user_of_many_workspaces`]: the user,
/// the world's list (`assets` or `projects`), which of its ids the user has
/// a relation to, fewer than how many of them it must be able to read, and
/// the page sizes to walk the search in.
type Case<'a> = (&'a str, &'a str, &'a dyn Fn(&str) -> bool, usize, &'a [i64]);

/// An unscoped asset or project search lists, page after page whatever the
/// page size, exactly the resources the user has a relation to that the
/// policies let it read (checked one by one), in byte order, and never an
/// asset it reaches only by a public link: for a user of half the
/// workspaces, whose candidates are read in id order a slice at a time
/// (on Postgres but for pages of 1,000 assets or 100 projects; SQLite,
/// which does not know how many rows a workspace holds, for every page
/// size), and for a user of few, whose candidates are read per relation.
async fn unscoped_search_of_a_user_of_many_workspaces(db: Db) {
    let app = spawn_configured(db, None, None, |_| {}).await;
    let world = many_workspaces();
    app.import(&world).await;
    if db == Db::Postgres {
        // The planner's counts, which choose how candidates are read.
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    }
    let store = &app.state.store;
    // Pages of 7 read 1,024 assets (or projects: all 120) a round in id
    // order: not all 3,000.
    let many = store.asset_candidates("many", "", "", "", 7).await.unwrap();
    assert_eq!(many.ids.len(), 7);
    assert_eq!(
        many.through.as_deref(),
        Some("w20p0a23"),
        "read in id order, up to the 1,024th asset"
    );
    let many = store.project_candidates("many", "", "", 7).await.unwrap();
    assert_eq!(many.ids.len(), 7);
    assert_eq!(many.through, None, "every project read in one round");
    let few = store.asset_candidates("few", "", "", "", 7).await.unwrap();
    assert_eq!((few.ids.len(), few.through), (7, None), "read per relation");
    let many_assets = |id: &str| {
        !("w10".."w40").contains(&&id[..3]) || id.starts_with("w12p1") || id == "w25p1a10"
    };
    let few_assets = |id: &str| {
        &id[..3] == "w05" || id.starts_with("w27p1") || id == "w28p0a03" || id == "w06p0a00"
    };
    let many_projects = |id: &str| !("w10".."w40").contains(&&id[..3]) || id == "w12p1";
    let few_projects = |id: &str| &id[..3] == "w05" || id == "w27p1";
    let cases: [Case; 4] = [
        ("many", "assets", &many_assets, 1_500, &[7, 100, 1000]),
        ("few", "assets", &few_assets, 50, &[7, 100, 1000]),
        ("many", "projects", &many_projects, 60, &[1, 7, 100]),
        ("few", "projects", &few_projects, 2, &[1, 7, 100]),
    ];
    for (user, list, related, least, limits) in cases {
        let ty = if list == "assets" { "Asset" } else { "Project" };
        let candidates: Vec<&str> = world[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .filter(|id| related(id))
            .collect();
        let requests: Vec<Value> = candidates
            .iter()
            .map(|id| {
                json!({"principal": {"type": "User", "id": user}, "action": "read",
                       "resource": {"type": ty, "id": id}})
            })
            .collect();
        let (status, body) = app
            .post("/v1/check/batch", &json!({"requests": requests}))
            .await;
        assert_eq!(status, 200, "{body}");
        let mut expected: Vec<String> = candidates
            .iter()
            .zip(body["results"].as_array().unwrap())
            .filter(|(_, verdict)| verdict["decision"] == "allow")
            .map(|(id, _)| id.to_string())
            .collect();
        expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert!(
            expected.len() > least,
            "{user}: {} readable {list}",
            expected.len()
        );
        for &limit in limits {
            let walked = walk(
                &app,
                "/v1/search/resources",
                json!({"principal": {"type": "User", "id": user}, "action": "read",
                       "resource_type": ty, "limit": limit}),
            )
            .await;
            let what = format!("{user}, {list} in pages of {limit}");
            assert_eq!(walked.len(), expected.len(), "{what}");
            assert!(walked == expected, "{what}: another list");
        }
    }
}
both_backends!(unscoped_many, unscoped_search_of_a_user_of_many_workspaces);
