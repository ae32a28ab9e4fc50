//! The management API: every route succeeds for a caller with the right,
//! is refused (403, nothing changed, no audit row) for one without it and
//! (401) for one without a valid token; invites; audit counts; the
//! cross-workspace rules; listings; client mistakes never 500. Both backends.

use crate::both_backends;
use crate::common::identity::FakeIdp;
use crate::common::{spawn_configured, Db, TestApp};
use serde_json::{json, Value};
use std::collections::BTreeMap;

struct Env {
    app: TestApp,
    idp: FakeIdp,
}

/// A registered user: Warden's id and the provider's subject.
#[derive(Clone)]
struct Person {
    id: String,
    sub: String,
}

async fn env(db: Db) -> Env {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(db, None, None, |s| idp.configure(s)).await;
    Env { app, idp }
}

impl Env {
    /// Signs `name` in through resolve-user (email `user_<name>@example.com`).
    async fn person(&self, name: &str) -> Person {
        let sub = format!("user_{name}");
        let (status, body) = self
            .app
            .resolve(&self.idp.token(&sub, json!({})), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
        Person {
            id: body["user_id"].as_str().unwrap().to_string(),
            sub,
        }
    }

    fn token(&self, p: &Person) -> String {
        self.idp.token(&p.sub, json!({}))
    }

    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.app.base);
        let mut req = match method {
            "GET" => self.app.client.get(url),
            "POST" => self.app.client.post(url),
            "PUT" => self.app.client.put(url),
            "PATCH" => self.app.client.patch(url),
            "DELETE" => self.app.client.delete(url),
            other => panic!("method {other}"),
        };
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn as_(
        &self,
        p: &Person,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call(Some(&self.token(p)), method, path, body).await
    }

    async fn audits(&self) -> i64 {
        self.app.state.store.audit_event_count().await.unwrap()
    }

    async fn sizes(&self) -> BTreeMap<&'static str, i64> {
        let mut sizes = self.app.state.store.table_sizes().await.unwrap();
        sizes.remove("rate_limits");
        sizes
    }

    /// Alice owns workspace `w` with project `p` and asset `a`; carol is a
    /// viewer of `w`; mallory owns workspace `wb` elsewhere.
    async fn world(&self) -> (Person, Person, Person) {
        let alice = self.person("alice").await;
        let carol = self.person("carol").await;
        let mallory = self.person("mallory").await;
        for (who, path, body) in [
            (&alice, "/v1/workspaces", json!({"id": "w"})),
            (&alice, "/v1/projects", json!({"id": "p", "workspace": "w"})),
            (&alice, "/v1/assets", json!({"id": "a", "project": "p"})),
            (&mallory, "/v1/workspaces", json!({"id": "wb"})),
            (
                &mallory,
                "/v1/projects",
                json!({"id": "pb", "workspace": "wb"}),
            ),
        ] {
            let (status, body) = self.as_(who, "POST", path, Some(&body)).await;
            assert_eq!(status, 201, "{path}: {body}");
        }
        let (status, body) = self
            .as_(
                &alice,
                "PUT",
                &format!("/v1/workspaces/w/members/{}", carol.id),
                Some(&json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (alice, carol, mallory)
    }
}

/// Every management route: (method, path, body). `{user}` is replaced.
fn routes(user: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/v1/workspaces/w".into(), None),
        (
            "PATCH",
            "/v1/workspaces/w".into(),
            Some(json!({"visibility": "public"})),
        ),
        ("GET", "/v1/workspaces/w/audit".into(), None),
        ("GET", "/v1/workspaces/w/members".into(), None),
        (
            "PUT",
            format!("/v1/workspaces/w/members/{user}"),
            Some(json!({"role": "editor"})),
        ),
        ("DELETE", format!("/v1/workspaces/w/members/{user}"), None),
        ("GET", "/v1/workspaces/w/invites".into(), None),
        (
            "POST",
            "/v1/workspaces/w/invites".into(),
            Some(json!({"email": "x@example.com", "role": "viewer"})),
        ),
        (
            "POST",
            "/v1/projects".into(),
            Some(json!({"workspace": "w", "id": "p-new"})),
        ),
        ("GET", "/v1/projects/p".into(), None),
        (
            "PATCH",
            "/v1/projects/p".into(),
            Some(json!({"visibility": "public"})),
        ),
        (
            "PATCH",
            "/v1/projects/p".into(),
            Some(json!({"workspace": "wb"})),
        ),
        ("GET", "/v1/projects/p/audit".into(), None),
        ("GET", "/v1/projects/p/members".into(), None),
        (
            "PUT",
            format!("/v1/projects/p/members/{user}"),
            Some(json!({"role": "viewer"})),
        ),
        ("DELETE", format!("/v1/projects/p/members/{user}"), None),
        ("GET", "/v1/projects/p/invites".into(), None),
        (
            "POST",
            "/v1/projects/p/invites".into(),
            Some(json!({"email": "x@example.com", "role": "editor"})),
        ),
        (
            "POST",
            "/v1/assets".into(),
            Some(json!({"project": "p", "id": "a-new"})),
        ),
        ("GET", "/v1/assets/a".into(), None),
        (
            "PATCH",
            "/v1/assets/a".into(),
            Some(json!({"visibility": "public", "public_access": "read"})),
        ),
        (
            "PATCH",
            "/v1/assets/a".into(),
            Some(json!({"project": "pb"})),
        ),
        ("GET", "/v1/assets/a/audit".into(), None),
        ("GET", "/v1/assets/a/grants".into(), None),
        (
            "PUT",
            format!("/v1/assets/a/grants/{user}"),
            Some(json!({"permission": "write"})),
        ),
        ("DELETE", format!("/v1/assets/a/grants/{user}"), None),
        ("DELETE", "/v1/assets/a".into(), None),
        ("DELETE", "/v1/projects/p".into(), None),
        ("DELETE", "/v1/workspaces/w".into(), None),
    ]
}

async fn every_route_works_for_the_owner_with_one_audit_event_per_change(db: Db) {
    let env = env(db).await;
    let (alice, carol, _mallory) = env.world().await;
    let bob = env.person("bob").await;
    let expected = |method: &str| if method == "GET" { 0 } else { 1 };
    for (method, path, body) in routes(&bob.id) {
        // Moves need the right on the target too: give alice editor in wb.
        if path == "/v1/projects/p" && body.as_ref().is_some_and(|b| b.get("workspace").is_some()) {
            continue; // covered by moves_across_workspaces_need_the_right_on_both_sides
        }
        if path == "/v1/assets/a" && body.as_ref().is_some_and(|b| b.get("project").is_some()) {
            continue;
        }
        let before = env.audits().await;
        let (status, answer) = env.as_(&alice, method, &path, body.as_ref()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        assert_eq!(
            env.audits().await,
            before + expected(method),
            "{method} {path}"
        );
    }
    // Reads answer what the writes did.
    let (status, _) = env.as_(&alice, "GET", "/v1/workspaces/w", None).await;
    assert_eq!(status, 404, "the workspace was deleted at the end");
    // The viewer could read before; now there is nothing.
    let (_, list) = env.as_(&carol, "GET", "/v1/workspaces", None).await;
    assert_eq!(list["items"], json!([]));
}

both_backends!(
    owner_routes,
    every_route_works_for_the_owner_with_one_audit_event_per_change
);

async fn routes_fail_closed_for_callers_without_the_right(db: Db) {
    let env = env(db).await;
    let (alice, carol, mallory) = env.world().await;
    let (status, invite) = env
        .as_(
            &alice,
            "POST",
            "/v1/workspaces/w/invites",
            Some(&json!({"email": "z@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201);
    let revoke = format!("/v1/invites/{}", invite["id"].as_str().unwrap());
    let sizes = env.sizes().await;
    let audits = env.audits().await;
    // Mallory (owner of another workspace) on every route of alice's ids.
    for (method, path, body) in routes(&mallory.id) {
        let (status, answer) = env.as_(&mallory, method, &path, body.as_ref()).await;
        assert_eq!(status, 403, "mallory {method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    // Carol (viewer) may read, nothing else.
    for (method, path, body) in routes(&mallory.id) {
        let (status, answer) = env.as_(&carol, method, &path, body.as_ref()).await;
        let readable = method == "GET"
            && !path.ends_with("/audit")
            && !path.ends_with("/invites")
            && !path.ends_with("/grants");
        if readable {
            assert_eq!(status, 200, "carol {method} {path}: {answer}");
        } else {
            assert_eq!(status, 403, "carol {method} {path}: {answer}");
        }
    }
    for who in [&mallory, &carol] {
        let (status, _) = env.as_(who, "DELETE", &revoke, None).await;
        assert_eq!(status, 403, "only those who may invite revoke invites");
        let accept = json!({"token": invite["token"]});
        let (status, _) = env
            .as_(who, "POST", "/v1/invites/accept", Some(&accept))
            .await;
        assert_eq!(status, 403, "an invite bound to another email");
    }
    assert_eq!(env.sizes().await, sizes, "a refused request wrote nothing");
    assert_eq!(
        env.audits().await,
        audits,
        "a refused request is not audited"
    );
    // Listings show mallory nothing of alice's, and alice's stays intact.
    for path in [
        "/v1/workspaces",
        "/v1/projects",
        "/v1/assets",
        "/v1/assets?project=p",
    ] {
        let (status, list) = env.as_(&mallory, "GET", path, None).await;
        assert_eq!(status, 200);
        assert!(
            !list["items"].to_string().contains("\"w\"")
                && !list["items"].to_string().contains("\"a\""),
            "{path}: {list}"
        );
    }
    let (_, list) = env.as_(&alice, "GET", "/v1/assets", None).await;
    assert_eq!(
        list["items"],
        json!([{"id": "a", "project": "p", "visibility": "private", "public_access": "none"}])
    );
}

both_backends!(
    fail_closed,
    routes_fail_closed_for_callers_without_the_right
);

async fn routes_refuse_callers_without_a_valid_token(db: Db) {
    let env = env(db).await;
    let (alice, _, _) = env.world().await;
    let audits = env.audits().await;
    let expired = env.idp.token(
        &alice.sub,
        json!({"exp": 1_000_000, "nbf": 999_000, "iat": 999_000}),
    );
    let mut more = routes(&alice.id);
    more.push(("GET", "/v1/workspaces".into(), None));
    more.push(("POST", "/v1/workspaces".into(), Some(json!({}))));
    more.push(("DELETE", "/v1/invites/inv_x".into(), None));
    more.push((
        "POST",
        "/v1/invites/accept".into(),
        Some(json!({"token": "winv_x"})),
    ));
    for (method, path, body) in more {
        for token in [
            None,
            Some(env.app.admin_key.as_str()),
            Some("not-a-jwt"),
            Some(expired.as_str()),
        ] {
            let (status, answer) = env.call(token, method, &path, body.as_ref()).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {answer}");
        }
    }
    assert_eq!(env.audits().await, audits);
}

both_backends!(unauthenticated, routes_refuse_callers_without_a_valid_token);

async fn invites_are_bound_to_one_email_single_use_and_expire(db: Db) {
    let env = env(db).await;
    let (alice, carol, _) = env.world().await;
    let bob = env.person("bob").await;
    let invite = |email: &str, extra: Value| {
        let mut body = json!({"email": email, "role": "editor"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (status, created) = env
        .as_(
            &alice,
            "POST",
            "/v1/workspaces/w/invites",
            Some(&invite("User_Bob@Example.com", json!({}))),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["email"], "user_bob@example.com");
    // Shown once: the listing has no token; the database keeps its hash only.
    let (_, listed) = env
        .as_(&alice, "GET", "/v1/workspaces/w/invites", None)
        .await;
    assert_eq!(listed["invites"][0]["status"], "pending");
    assert!(!listed.to_string().contains(&token));
    let pool = sqlx::AnyPool::connect(&env.app.database_url).await.unwrap();
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM invites")
        .fetch_all(&pool)
        .await
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        stored[0].0,
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    );
    assert!(!stored.iter().any(|(h,)| h.contains(&token)));

    // Wrong email: refused, and the invite still works for the right person.
    let audits = env.audits().await;
    let (status, body) = env
        .as_(
            &carol,
            "POST",
            "/v1/invites/accept",
            Some(&json!({"token": token})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reasons"], json!(["invite-email-must-match"]));
    assert_eq!(env.audits().await, audits);
    let (status, body) = env
        .as_(
            &bob,
            "POST",
            "/v1/invites/accept",
            Some(&json!({"token": token})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "editor");
    assert_eq!(env.audits().await, audits + 1);
    assert_eq!(
        env.app.decide(&bob.id, "write", "Asset", "a").await,
        "allow"
    );
    // Reuse: gone.
    let (status, body) = env
        .as_(
            &bob,
            "POST",
            "/v1/invites/accept",
            Some(&json!({"token": token})),
        )
        .await;
    assert_eq!(status, 410, "{body}");
    // Unknown token: 404.
    let (status, _) = env
        .as_(
            &bob,
            "POST",
            "/v1/invites/accept",
            Some(&json!({"token": "winv_nope"})),
        )
        .await;
    assert_eq!(status, 404);

    // Ten concurrent accepts: exactly one wins.
    let dora = env.person("dora").await;
    let (_, created) = env
        .as_(
            &alice,
            "POST",
            "/v1/projects/p/invites",
            Some(&invite("user_dora@example.com", json!({"role": "viewer"}))),
        )
        .await;
    let token = created["token"].as_str().unwrap().to_string();
    let audits = env.audits().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, url, bearer, token) = (
            env.app.client.clone(),
            format!("{}/v1/invites/accept", env.app.base),
            env.token(&dora),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(bearer)
                .json(&json!({"token": token}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 410, 410, 410, 410, 410, 410, 410, 410, 410],
        "{statuses:?}"
    );
    assert_eq!(env.audits().await, audits + 1);

    // Expired and revoked: gone.
    let (_, short) = env
        .as_(
            &alice,
            "POST",
            "/v1/workspaces/w/invites",
            Some(&invite("user_erin@example.com", json!({"expires_in": 1}))),
        )
        .await;
    let erin = env.person("erin").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = env
        .as_(
            &erin,
            "POST",
            "/v1/invites/accept",
            Some(&json!({"token": short["token"]})),
        )
        .await;
    assert_eq!(status, 410);
    let (_, revoked) = env
        .as_(
            &alice,
            "POST",
            "/v1/workspaces/w/invites",
            Some(&invite("user_erin@example.com", json!({}))),
        )
        .await;
    let (status, _) = env
        .as_(
            &alice,
            "DELETE",
            &format!("/v1/invites/{}", revoked["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = env
        .as_(
            &erin,
            "POST",
            "/v1/invites/accept",
            Some(&json!({"token": revoked["token"]})),
        )
        .await;
    assert_eq!(status, 410);

    // Anonymous invitees: only into public scopes.
    let anon = env.app.anonymous().await;
    env.app
        .import(&json!({"users": [{"id": anon.user_id, "kind": "anonymous", "email": "guest@example.com"}]}))
        .await;
    let (_, private) = env
        .as_(
            &alice,
            "POST",
            "/v1/workspaces/w/invites",
            Some(&invite("guest@example.com", json!({}))),
        )
        .await;
    let accept = |token: Value| json!({"token": token});
    let (status, body) = env
        .call(
            Some(&anon.token),
            "POST",
            "/v1/invites/accept",
            Some(&accept(private["token"].clone())),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reasons"], json!(["anonymous-invitee-public-only"]));
    let (status, _) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/workspaces/w",
            Some(&json!({"visibility": "public"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = env
        .call(
            Some(&anon.token),
            "POST",
            "/v1/invites/accept",
            Some(&accept(private["token"].clone())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Invites are for those who may invite: not carol (viewer), not bob (editor).
    for who in [&carol, &bob] {
        let (status, _) = env
            .as_(
                who,
                "POST",
                "/v1/workspaces/w/invites",
                Some(&invite("x@example.com", json!({}))),
            )
            .await;
        assert_eq!(status, 403);
    }
}

both_backends!(
    invites,
    invites_are_bound_to_one_email_single_use_and_expire
);

async fn moves_across_workspaces_need_the_right_on_both_sides(db: Db) {
    let env = env(db).await;
    let (alice, _, mallory) = env.world().await;
    let audits = env.audits().await;
    // Alice owns p but has no role in wb: refused, nothing moved.
    let (status, _) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/projects/p",
            Some(&json!({"workspace": "wb"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/assets/a",
            Some(&json!({"project": "pb"})),
        )
        .await;
    assert_eq!(status, 403);
    // A viewer of wb still may not bring things in.
    let (status, _) = env
        .as_(
            &mallory,
            "PUT",
            &format!("/v1/workspaces/wb/members/{}", alice.id),
            Some(&json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/assets/a",
            Some(&json!({"project": "pb"})),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(env.audits().await, audits + 1);
    // As an editor of wb she may.
    env.as_(
        &mallory,
        "PUT",
        &format!("/v1/workspaces/wb/members/{}", alice.id),
        Some(&json!({"role": "editor"})),
    )
    .await;
    let (status, body) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/assets/a",
            Some(&json!({"project": "pb"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project"], "pb");
    // Now mallory owns it through wb.
    assert_eq!(
        env.app.decide(&mallory.id, "delete", "Asset", "a").await,
        "allow"
    );
    let (status, body) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/projects/p",
            Some(&json!({"workspace": "wb"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Mallory may not move wb's project back into alice's w.
    let (status, _) = env
        .as_(
            &mallory,
            "PATCH",
            "/v1/projects/p",
            Some(&json!({"workspace": "w"})),
        )
        .await;
    assert_eq!(status, 403);
}

both_backends!(moves, moves_across_workspaces_need_the_right_on_both_sides);

async fn the_workspace_owner_cannot_be_removed_or_demoted(db: Db) {
    let env = env(db).await;
    let (alice, carol, _) = env.world().await;
    let audits = env.audits().await;
    let me = format!("/v1/workspaces/w/members/{}", alice.id);
    let (status, body) = env.as_(&alice, "DELETE", &me, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "last_owner");
    let (status, _) = env
        .as_(&alice, "PUT", &me, Some(&json!({"role": "viewer"})))
        .await;
    assert_eq!(status, 409);
    assert_eq!(env.audits().await, audits);
    // Ownership moves explicitly; the previous owner stays an owner member.
    let (status, body) = env
        .as_(
            &alice,
            "PATCH",
            "/v1/workspaces/w",
            Some(&json!({"owner": carol.id})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, members) = env
        .as_(&carol, "GET", "/v1/workspaces/w/members", None)
        .await;
    assert_eq!(members["owner"], json!(carol.id));
    assert!(
        members["members"].to_string().contains(&alice.id),
        "{members}"
    );
    // An owner-role member can be removed: the owner remains.
    let (status, _) = env.as_(&carol, "DELETE", &me, None).await;
    assert_eq!(status, 204);
    assert_eq!(
        env.app.decide(&alice.id, "read", "Workspace", "w").await,
        "deny"
    );
    // Projects have no owner role.
    let (status, body) = env
        .as_(
            &carol,
            "PUT",
            &format!("/v1/projects/p/members/{}", alice.id),
            Some(&json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "role");
}

both_backends!(last_owner, the_workspace_owner_cannot_be_removed_or_demoted);

async fn listings_page_through_what_the_caller_may_read_and_never_public_links(db: Db) {
    let env = env(db).await;
    let (alice, _, mallory) = env.world().await;
    for i in 0..7 {
        let (status, _) = env
            .as_(
                &alice,
                "POST",
                "/v1/assets",
                Some(&json!({"project": "p", "id": format!("a{i}")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    // A public link and a grant for mallory.
    env.as_(
        &alice,
        "PATCH",
        "/v1/assets/a0",
        Some(&json!({"visibility": "public", "public_access": "write"})),
    )
    .await;
    env.as_(
        &alice,
        "PUT",
        &format!("/v1/assets/a1/grants/{}", mallory.id),
        Some(&json!({"permission": "read"})),
    )
    .await;
    assert_eq!(
        env.app.decide(&mallory.id, "read", "Asset", "a0").await,
        "allow"
    );
    let (_, list) = env.as_(&mallory, "GET", "/v1/assets", None).await;
    assert_eq!(
        list["items"],
        json!([{"id": "a1", "project": "p", "visibility": "private", "public_access": "none"}])
    );
    // Alice pages through her 8 assets, 3 at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/v1/assets?project=p&limit=3&cursor={c}"),
            None => "/v1/assets?project=p&limit=3".into(),
        };
        let (status, page) = env.as_(&alice, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "a0", "a1", "a2", "a3", "a4", "a5", "a6"]);
    let (status, body) = env.as_(&alice, "GET", "/v1/assets?limit=0", None).await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "limit");
    // The audit trail pages too, and names the actor.
    let (status, trail) = env
        .as_(&alice, "GET", "/v1/assets/a1/audit?limit=1", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(trail["items"][0]["action"], "asset.create");
    assert_eq!(trail["items"][0]["actor"], format!("user:{}", alice.id));
    let created_at = trail["items"][0]["revision"].as_i64().expect("a revision");
    assert_eq!(
        trail["items"][0]["request_id"].as_str().map(str::len),
        Some(36),
        "{trail}"
    );
    let next = trail["next_cursor"].as_str().unwrap();
    let (_, trail) = env
        .as_(
            &alice,
            "GET",
            &format!("/v1/assets/a1/audit?cursor={next}"),
            None,
        )
        .await;
    assert_eq!(trail["items"][0]["action"], "grant.put");
    // Each event carries the revision of its write, in commit order.
    assert!(trail["items"][0]["revision"].as_i64().expect("a revision") > created_at);
}

both_backends!(
    listings,
    listings_page_through_what_the_caller_may_read_and_never_public_links
);

async fn client_mistakes_are_4xx_and_change_nothing(db: Db) {
    let env = env(db).await;
    let (alice, _, _) = env.world().await;
    let sizes = env.sizes().await;
    let audits = env.audits().await;
    let long = "x".repeat(300);
    let bodies = [
        json!(null),
        json!([]),
        json!("text"),
        json!(7),
        json!({"unknown": 1}),
        json!({"id": long}),
        json!({"id": ""}),
        json!({"visibility": "secret"}),
        json!({"role": "admin"}),
        json!({"permission": "all"}),
        json!({"email": "nope"}),
        json!({"email": "a@b.c", "role": "editor", "expires_in": 0}),
        json!({"workspace": 5}),
        json!({"project": "no-such-project"}),
        json!({"token": long}),
        json!({"public_access": "everything"}),
    ];
    let mut paths: Vec<(&str, String)> = routes("nobody-here")
        .into_iter()
        .filter(|(m, _, _)| *m != "GET" && *m != "DELETE")
        .map(|(m, p, _)| (m, p))
        .collect();
    paths.push(("POST", "/v1/workspaces".into()));
    paths.push(("POST", "/v1/invites/accept".into()));
    for (method, path) in &paths {
        for body in &bodies {
            let (status, answer) = env.as_(&alice, method, path, Some(body)).await;
            assert!(
                (400..500).contains(&status),
                "{method} {path} {body}: {status} {answer}"
            );
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
        // Not JSON at all.
        let resp = env
            .app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", env.app.base))
            .bearer_auth(env.token(&alice))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{method} {path}");
    }
    for path in [
        "/v1/workspaces?limit=x",
        "/v1/assets?cursor=a&bogus=1",
        "/v1/workspaces/w/audit?cursor=zz",
    ] {
        let (status, _) = env.as_(&alice, "GET", path, None).await;
        assert_eq!(status, 400, "{path}");
    }
    let (status, _) = env
        .as_(&alice, "GET", &format!("/v1/assets/{long}"), None)
        .await;
    assert_eq!(status, 400);
    // Taken ids are a 409 naming the id.
    let (status, body) = env
        .as_(&alice, "POST", "/v1/workspaces", Some(&json!({"id": "wb"})))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("wb"));
    assert_eq!(env.sizes().await, sizes, "a client mistake wrote nothing");
    assert_eq!(env.audits().await, audits);
}

both_backends!(client_mistakes, client_mistakes_are_4xx_and_change_nothing);

async fn invite_accepts_are_rate_limited_across_replicas(db: Db) {
    let idp = FakeIdp::start().await;
    let pg = match db {
        Db::Postgres => Some(crate::common::PgDatabase::create().await),
        Db::Sqlite => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let url = pg
        .as_ref()
        .map(crate::common::PgDatabase::url)
        .unwrap_or_else(|| warden::store::sqlite_url(dir.path()));
    let configure = |s: &mut warden::config::Settings| {
        idp.configure(s);
        s.anonymous_rate_limit = 2;
    };
    let a = spawn_configured(db, None, Some(url.clone()), configure).await;
    let b = spawn_configured(db, pg, Some(url), configure).await;
    let a = Env { app: a, idp };
    let person = a.person("rita").await;
    let accept = |app: &TestApp| {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/v1/invites/accept", app.base),
            a.token(&person),
        );
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"token": "winv_unknown"}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(accept(&a.app).await.status().as_u16(), 404);
    assert_eq!(accept(&b).await.status().as_u16(), 404);
    let limited = accept(&b).await;
    assert_eq!(limited.status().as_u16(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(accept(&a.app).await.status().as_u16(), 429);
}

both_backends!(
    accept_rate_limit,
    invite_accepts_are_rate_limited_across_replicas
);

/// Workspace creation is a policy decision too: without the permit, it is refused.
#[tokio::test]
async fn without_the_create_permit_nobody_creates_workspaces() {
    let idp = FakeIdp::start().await;
    let policies = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(crate::common::repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, policies.path().join(path.file_name().unwrap())).unwrap();
    }
    let file = policies.path().join("management.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("@id(\"users-create-own-workspaces\")").unwrap();
    let end = start + text[start..].find(";\n").unwrap() + 2;
    std::fs::write(&file, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let dir = policies.path().to_path_buf();
    let app = spawn_configured(Db::Sqlite, None, None, |s| {
        idp.configure(s);
        s.policies = dir;
    })
    .await;
    let env = Env { app, idp };
    let olga = env.person("olga").await;
    let sizes = env.sizes().await;
    let audits = env.audits().await;
    let (status, body) = env
        .as_(&olga, "POST", "/v1/workspaces", Some(&json!({"id": "w"})))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(env.sizes().await, sizes);
    assert_eq!(env.audits().await, audits);
}

/// Holds the store's write lock on `conn` the way another writer does:
/// Postgres, the revision row every writer takes first; SQLite, the
/// database's one writer slot.
async fn hold_write_lock(
    db: Db,
    conn: &mut sqlx::AnyConnection,
) -> sqlx::Transaction<'_, sqlx::Any> {
    use sqlx::Connection;
    match db {
        Db::Postgres => {
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SELECT value FROM warden_revision WHERE id = 1 FOR UPDATE")
                .execute(&mut *tx)
                .await
                .unwrap();
            tx
        }
        Db::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await.unwrap(),
    }
}

/// Returns once a Warden transaction waits for the write lock (Postgres:
/// seen in pg_stat_activity; SQLite shows no waiters, so it gives the
/// request half a second to get there).
async fn until_a_writer_waits(db: Db, url: &str) {
    if db == Db::Sqlite {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        return;
    }
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for _ in 0..500 {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no Warden transaction ever waited for the write lock");
}

/// The world, with carol an editor of `w` (who may create assets there):
/// the start of the tests of a change that waits for the write lock.
async fn carol_the_editor(db: Db) -> (Env, Person) {
    let env = env(db).await;
    let (alice, carol, _) = env.world().await;
    let (status, body) = env
        .as_(
            &alice,
            "PUT",
            &format!("/v1/workspaces/w/members/{}", carol.id),
            Some(&json!({"role": "editor"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (env, carol)
}

/// Carol's asset `a2` was refused by the re-check inside her transaction
/// (403 "... no longer ..."), not before it, and is not there.
async fn refused_at_write(env: &Env, status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer"),
        "refused by the re-check in the transaction, not before it: {body}"
    );
    assert!(env.app.state.store.asset("a2").await.unwrap().is_none());
}

async fn a_role_removed_while_a_change_waits_refuses_the_change(db: Db) {
    let (env, carol) = carol_the_editor(db).await;
    let audits = env.audits().await;
    let sizes = env.sizes().await;
    // Another writer holds the write lock; carol, an editor, creates an
    // asset: the policies allow it, and her write queues behind the lock.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&env.app.database_url)
        .await
        .unwrap();
    let mut writer = hold_write_lock(db, &mut conn).await;
    let token = env.token(&carol);
    let new_asset = json!({"id": "a2", "project": "p"});
    let create = env.call(Some(&token), "POST", "/v1/assets", Some(&new_asset));
    // Meanwhile the other writer removes her membership and commits.
    let revoke = async {
        until_a_writer_waits(db, &env.app.database_url).await;
        sqlx::query("DELETE FROM workspace_members WHERE user_id = $1 AND workspace_id = 'w'")
            .bind(&carol.id)
            .execute(&mut *writer)
            .await
            .unwrap();
        sqlx::query("UPDATE warden_revision SET value = value + 1 WHERE id = 1")
            .execute(&mut *writer)
            .await
            .unwrap();
        writer.commit().await.unwrap();
    };
    let ((status, body), ()) = tokio::join!(create, revoke);
    // Asked again inside her transaction, after the removal: refused.
    refused_at_write(&env, status, &body).await;
    assert_eq!(
        env.audits().await,
        audits,
        "nothing written, not even audit"
    );
    let mut expected = sizes;
    *expected.get_mut("workspace_members").unwrap() -= 1;
    assert_eq!(env.sizes().await, expected);
}

/// A policy change that lands while a change waits for the write lock:
/// the re-check inside the transaction asks the policy set in force then,
/// not the one that allowed the change a moment earlier.
async fn a_policy_change_while_a_change_waits_refuses_the_change(db: Db) {
    let (env, carol) = carol_the_editor(db).await;
    let audits = env.audits().await;
    // The same policies, except that editors no longer create assets.
    let policies = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&crate::common::repo().join("policies"), policies.path());
    crate::common::edit(
        &policies.path().join("workspace-roles.cedar"),
        "    Warden::Action::\"create_asset\",\n",
        "",
    );
    let engine =
        warden::policy::PolicyEngine::load(policies.path(), &crate::common::repo().join("schema"))
            .unwrap();

    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&env.app.database_url)
        .await
        .unwrap();
    let writer = hold_write_lock(db, &mut conn).await;
    let token = env.token(&carol);
    let new_asset = json!({"id": "a2", "project": "p"});
    // Allowed when asked; the write queues behind the lock.
    let create = env.call(Some(&token), "POST", "/v1/assets", Some(&new_asset));
    let change_policies = async {
        until_a_writer_waits(db, &env.app.database_url).await;
        env.app.state.replace_engine_unaudited(engine);
        writer.commit().await.unwrap();
    };
    let ((status, body), ()) = tokio::join!(create, change_policies);
    refused_at_write(&env, status, &body).await;
    assert_eq!(env.audits().await, audits, "nothing written");
}

/// An asset deleted while a change to it waits for the write lock: the
/// change answers 404 (not a 403 about access), writes nothing, and the
/// second decision is in the decision log beside the first.
async fn an_asset_deleted_while_a_change_waits_answers_404(db: Db) {
    let idp = FakeIdp::start().await;
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("decisions.jsonl");
    let log_path = log.clone();
    let app = spawn_configured(db, None, None, |s| {
        idp.configure(s);
        s.decision_log = Some(log_path);
    })
    .await;
    let env = Env { app, idp };
    let (alice, _, _) = env.world().await;
    let audits = env.audits().await;
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&env.app.database_url)
        .await
        .unwrap();
    let mut writer = hold_write_lock(db, &mut conn).await;
    let token = env.token(&alice);
    let share = json!({"visibility": "public"});
    let change = env.call(Some(&token), "PATCH", "/v1/assets/a", Some(&share));
    let delete = async {
        until_a_writer_waits(db, &env.app.database_url).await;
        for statement in [
            "DELETE FROM asset_grants WHERE asset_id = 'a'",
            "DELETE FROM assets WHERE id = 'a'",
            "UPDATE warden_revision SET value = value + 1 WHERE id = 1",
        ] {
            sqlx::query(statement).execute(&mut *writer).await.unwrap();
        }
        writer.commit().await.unwrap();
    };
    let ((status, body), ()) = tokio::join!(change, delete);
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("no longer exists"), "{body}");
    assert_eq!(
        env.audits().await,
        audits,
        "nothing written, not even audit"
    );
    // Both answers to `share` on the asset are logged: allow when asked,
    // deny inside the transaction.
    let is_share = |l: &&Value| l["action"] == "share" && l["resource"]["id"] == "a";
    let shares: Vec<Value> =
        crate::common::decision_log(&log, |l| l.iter().filter(is_share).count() >= 2)
            .await
            .iter()
            .filter(is_share)
            .map(|l| l["decision"].clone())
            .collect();
    assert_eq!(shares, ["allow", "deny"]);
}

/// A write that finds the write lock held (by another writer such as a
/// long import) waits only as long as configured, then answers 503
/// `write_busy` with nothing written; reads are served meanwhile, and the
/// same write succeeds once the lock is free.
async fn a_write_waits_for_the_write_lock_only_as_long_as_configured(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(db, None, None, |s| {
        idp.configure(s);
        s.write_lock_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let env = Env { app, idp };
    let (alice, _, _) = env.world().await;
    let audits = env.audits().await;
    let sizes = env.sizes().await;
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&env.app.database_url)
        .await
        .unwrap();
    let writer = hold_write_lock(db, &mut conn).await;
    let new_asset = json!({"id": "a2", "project": "p"});
    let started = std::time::Instant::now();
    let response = env
        .app
        .client
        .post(format!("{}/v1/assets", env.app.base))
        .bearer_auth(env.token(&alice))
        .json(&new_asset)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "write_busy", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{body}"
    );
    assert_eq!(retry_after.unwrap(), "1");
    // Gave up at its own bound, not at the 10 s request timeout.
    assert!(
        waited < std::time::Duration::from_secs(8),
        "waited {waited:?}"
    );
    // The waiting write held no lock of its own: checks are answered.
    assert_eq!(
        env.app.decide(&alice.id, "read", "Asset", "a").await,
        "allow"
    );
    assert_eq!(
        env.audits().await,
        audits,
        "nothing written, not even audit"
    );
    assert_eq!(env.sizes().await, sizes);
    writer.rollback().await.unwrap();
    let (status, body) = env
        .as_(&alice, "POST", "/v1/assets", Some(&new_asset))
        .await;
    assert_eq!(status, 201, "{body}");
}

both_backends!(
    authorized_in_the_write,
    a_role_removed_while_a_change_waits_refuses_the_change
);
both_backends!(
    deleted_while_waiting,
    an_asset_deleted_while_a_change_waits_answers_404
);
both_backends!(
    write_lock_wait_is_bounded,
    a_write_waits_for_the_write_lock_only_as_long_as_configured
);
both_backends!(
    policy_changed_while_waiting,
    a_policy_change_while_a_change_waits_refuses_the_change
);

/// A question for `/v1/check`: (principal, action, resource type, id).
type Question<'a> = (&'a str, &'a str, &'a str, &'a str);

impl Env {
    /// `question` is answered `before` twice (the second time from the
    /// cache); `who` makes the write; the same question, with the default
    /// consistency, is then answered `after`.
    async fn spoils(
        &self,
        who: &Person,
        (method, path, body): (&str, &str, Option<Value>),
        question: Question<'_>,
        (before, after): (&str, &str),
    ) {
        let (user, action, ty, id) = question;
        let app = &self.app;
        assert_eq!(
            app.decide(user, action, ty, id).await,
            before,
            "{question:?}"
        );
        // No fact load: the answer came from a cache (counted per server).
        let loads = app.state.store.fact_loads();
        assert_eq!(app.decide(user, action, ty, id).await, before);
        assert_eq!(
            app.state.store.fact_loads(),
            loads,
            "{question:?} was cached"
        );
        let (status, answer) = self.as_(who, method, path, body.as_ref()).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
        assert_eq!(
            app.decide(user, action, ty, id).await,
            after,
            "{method} {path} left {question:?} stale in the cache"
        );
    }
}

/// Every kind of management write spoils the cached answers it changes
/// (issue 6: a write names the entities it changed, and only answers that
/// depend on one of them are dropped; a name left out would leave a stale
/// answer here).
async fn every_write_spoils_the_cached_answers_it_changes(db: Db) {
    let env = env(db).await;
    let (alice, carol, mallory) = env.world().await;
    let bob = env.person("bob").await;
    let (a, b, c, m) = (
        alice.id.as_str(),
        bob.id.as_str(),
        carol.id.as_str(),
        mallory.id.as_str(),
    );
    let bob_grant = format!("/v1/assets/a/grants/{b}");
    let bob_in_p = format!("/v1/projects/p/members/{b}");
    let bob_in_w = format!("/v1/workspaces/w/members/{b}");
    let steps = [
        // Created: a cached "unknown" answer goes.
        (
            ("POST", "/v1/workspaces", Some(json!({"id": "w2"}))),
            (a, "read", "Workspace", "w2"),
            ("deny", "allow"),
        ),
        (
            (
                "POST",
                "/v1/projects",
                Some(json!({"id": "p2", "workspace": "w"})),
            ),
            (a, "read", "Project", "p2"),
            ("deny", "allow"),
        ),
        (
            (
                "POST",
                "/v1/assets",
                Some(json!({"id": "a2", "project": "p"})),
            ),
            (a, "read", "Asset", "a2"),
            ("deny", "allow"),
        ),
        // Updated.
        (
            (
                "PATCH",
                "/v1/assets/a2",
                Some(json!({"visibility": "public", "public_access": "read"})),
            ),
            (m, "read", "Asset", "a2"),
            ("deny", "allow"),
        ),
        (
            ("PATCH", "/v1/projects/p2", Some(json!({"workspace": "w2"}))),
            (c, "read", "Project", "p2"),
            ("allow", "deny"),
        ),
        (
            ("PATCH", "/v1/workspaces/w2", Some(json!({"owner": b}))),
            (b, "delete", "Workspace", "w2"),
            ("deny", "allow"),
        ),
        // Grants and memberships.
        (
            (
                "PUT",
                bob_grant.as_str(),
                Some(json!({"permission": "read"})),
            ),
            (b, "read", "Asset", "a"),
            ("deny", "allow"),
        ),
        (
            ("DELETE", bob_grant.as_str(), None),
            (b, "read", "Asset", "a"),
            ("allow", "deny"),
        ),
        (
            ("PUT", bob_in_p.as_str(), Some(json!({"role": "viewer"}))),
            (b, "read", "Project", "p"),
            ("deny", "allow"),
        ),
        (
            ("DELETE", bob_in_p.as_str(), None),
            (b, "read", "Project", "p"),
            ("allow", "deny"),
        ),
        (
            ("PUT", bob_in_w.as_str(), Some(json!({"role": "viewer"}))),
            (b, "read", "Workspace", "w"),
            ("deny", "allow"),
        ),
        (
            ("DELETE", bob_in_w.as_str(), None),
            (b, "read", "Workspace", "w"),
            ("allow", "deny"),
        ),
        // Deleted.
        (
            ("DELETE", "/v1/assets/a2", None),
            (a, "read", "Asset", "a2"),
            ("allow", "deny"),
        ),
    ];
    for (write, question, answers) in steps {
        env.spoils(&alice, write, question, answers).await;
    }
    // An accepted invite gives bob the role.
    let (status, invite) = env
        .as_(
            &alice,
            "POST",
            "/v1/projects/p/invites",
            Some(&json!({"email": "user_bob@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let accept = json!({"token": invite["token"]});
    env.spoils(
        &bob,
        ("POST", "/v1/invites/accept", Some(accept)),
        (b, "read", "Project", "p"),
        ("deny", "allow"),
    )
    .await;
}

both_backends!(
    writes_spoil_cached_answers,
    every_write_spoils_the_cached_answers_it_changes
);
