//! Decision caches and consistency (issue 6): two Warden processes on one
//! database; a membership removed through A is refused on B at once when the
//! check carries A's revision token, and within the invalidation delay
//! otherwise; fully consistent checks read the facts; cached answers equal
//! fresh ones. Both backends.

use crate::both_backends;
use crate::common::{spawn_configured, Db, PgDatabase, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn two_servers(db: Db) -> (TestApp, TestApp, tempfile::TempDir) {
    let pg = match db {
        Db::Postgres => Some(PgDatabase::create().await),
        Db::Sqlite => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let url = pg
        .as_ref()
        .map(PgDatabase::url)
        .unwrap_or_else(|| warden::store::sqlite_url(dir.path()));
    let a = spawn_configured(db, None, Some(url.clone()), |_| {}).await;
    let mut b = spawn_configured(db, pg, Some(url), |_| {}).await;
    b.admin_key = a.admin_key.clone();
    (a, b, dir)
}

async fn check(app: &TestApp, consistency: Option<Value>) -> (String, Option<i64>) {
    check_as(app, "bob", consistency).await
}

async fn check_as(app: &TestApp, user: &str, consistency: Option<Value>) -> (String, Option<i64>) {
    let mut body = json!({"principal": {"type": "User", "id": user}, "action": "write",
                          "resource": {"type": "Asset", "id": "a"}});
    if let Some(c) = consistency {
        body["consistency"] = c;
    }
    let resp = app
        .client
        .post(format!("{}/v1/check", app.base))
        .bearer_auth(&app.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let revision = resp
        .headers()
        .get("warden-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    (body["decision"].as_str().unwrap().to_string(), revision)
}

/// An anonymous owner's workspace on `app` with asset `a`, which bob
/// (registered) may edit as a workspace editor; the owner.
async fn bob_edits(app: &TestApp) -> crate::common::identity::Anonymous {
    let owner = app.anonymous().await;
    app.import(&json!({
        "users": [{"id": "bob", "kind": "registered"}],
        "assets": [{"id": "a", "project": owner.project}],
        "memberships": [{"user": "bob", "scope": "workspace", "id": owner.workspace, "role": "editor"}]
    }))
    .await;
    owner
}

/// The `Warden-Revision` header of a response.
fn revision_of(resp: &reqwest::Response) -> i64 {
    resp.headers()["warden-revision"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Removes `user` from `workspace` through `app`, as the owner holding
/// `token`; the write's revision.
async fn remove_member(app: &TestApp, token: &str, workspace: &str, user: &str) -> i64 {
    let resp = app
        .client
        .delete(format!(
            "{}/v1/workspaces/{workspace}/members/{user}",
            app.base
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    revision_of(&resp)
}

async fn a_write_through_one_replica_is_honoured_by_the_other(db: Db) {
    let (a, b, _dir) = two_servers(db).await;
    // The owner is anonymous: it manages members with its own token.
    let owner = a.anonymous().await;
    a.import(&json!({
        "users": [{"id": "bob", "kind": "registered"}, {"id": "carl", "kind": "registered"}],
        "assets": [{"id": "a", "project": owner.project}],
        "memberships": [
            {"user": "bob", "scope": "workspace", "id": owner.workspace, "role": "editor"},
            {"user": "carl", "scope": "workspace", "id": owner.workspace, "role": "editor"}
        ]
    }))
    .await;
    // B learns of A's import; then its answers come from its cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    while check(&b, None).await.0 != "allow" {
        assert!(Instant::now() < deadline, "B never saw A's import");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(check_as(&b, "carl", None).await.0, "allow");
    let loads = b.state.store.fact_loads();
    assert_eq!(check(&b, None).await.0, "allow");
    assert_eq!(
        b.state.store.fact_loads(),
        loads,
        "the second check was cached"
    );

    // A removes bob; the write answers with its revision.
    let token = remove_member(&a, &owner.token, &owner.workspace, "bob").await;
    // With A's token, B refuses at once; fully consistent too.
    let (decision, seen) = check(&b, Some(json!({"at_least_as_fresh": token.to_string()}))).await;
    assert_eq!(decision, "deny");
    assert!(seen.is_some());
    assert_eq!(
        check(&b, Some(json!({"fully_consistent": true}))).await.0,
        "deny"
    );
    // Without a token, B's cached answer follows within the invalidation
    // delay: carl's cached "allow" was not touched by the checks above.
    remove_member(&a, &owner.token, &owner.workspace, "carl").await;
    let removed_at = Instant::now();
    let delay = loop {
        if check_as(&b, "carl", None).await.0 == "deny" {
            break removed_at.elapsed();
        }
        assert!(
            removed_at.elapsed() < Duration::from_secs(10),
            "B never heard of A's write"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    eprintln!(
        "{db:?}: B answered from A's write after {} ms",
        delay.as_millis()
    );
    // A itself never answers stale after its own write.
    assert_eq!(check(&a, None).await.0, "deny");
}

both_backends!(
    replicas,
    a_write_through_one_replica_is_honoured_by_the_other
);

async fn consistency_requests_are_checked(db: Db) {
    let app = crate::common::spawn_app(db).await;
    for (body, field) in [
        (
            json!({"at_least_as_fresh": "yesterday"}),
            "consistency.at_least_as_fresh",
        ),
        (
            json!({"minimize_latency": true, "fully_consistent": true}),
            "consistency",
        ),
        (json!({"minimize_latency": false}), "consistency"),
        (json!({"sometimes": true}), "consistency.sometimes"),
    ] {
        let (status, answer) = app
            .post(
                "/v1/check",
                &json!({"principal": {"type": "User", "id": "x"}, "action": "read",
                  "resource": {"type": "Asset", "id": "a"}, "consistency": body}),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["field"].as_str().unwrap().starts_with("consistency"),
            "{answer}"
        );
        let _ = field;
    }
    let (status, answer) = app
        .post("/v1/check/batch", &json!({"requests": [{"principal": {"type": "User", "id": "x"}, "action": "read",
              "resource": {"type": "Asset", "id": "a"}, "consistency": {"fully_consistent": true}}]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["field"], "requests[0].consistency");
    let (status, _) = app
        .post("/v1/check/batch", &json!({"consistency": {"fully_consistent": true}, "requests": [{"principal":
              {"type": "User", "id": "x"}, "action": "read", "resource": {"type": "Asset", "id": "a"}}]}))
        .await;
    assert_eq!(status, 200);
}

both_backends!(consistency_errors, consistency_requests_are_checked);

/// The anonymous mint and refresh are writes: they answer with a revision
/// token, which another replica honours for the new user's first check.
async fn anonymous_mint_and_refresh_answer_with_a_revision(db: Db) {
    let (a, b, _dir) = two_servers(db).await;
    let resp = a
        .client
        .post(format!("{}/api/auth/anonymous", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let minted = revision_of(&resp);
    let body: Value = resp.json().await.unwrap();
    let user = body["user_id"].as_str().unwrap().to_string();
    let token = body["token"].as_str().unwrap().to_string();
    assert!(minted >= 1, "the mint wrote the user: {minted}");
    let world = a.state.store.export().await.expect("export");
    let workspace = world
        .workspaces
        .iter()
        .find(|w| w.owner.as_str() == user)
        .expect("own workspace")
        .id
        .to_string();
    // B, handed A's revision, decides over the new user and its workspace
    // (named by the app: B's own issuer differs from A's in this test).
    let (status, answer) = b
        .post(
            "/v1/check",
            &json!({"principal": {"type": "User", "id": user}, "action": "read",
                    "resource": {"type": "Workspace", "id": workspace},
                    "consistency": {"at_least_as_fresh": minted.to_string()}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow", "{answer}");
    // A refresh rotates the token in the store: a later revision.
    let resp = a
        .client
        .post(format!("{}/api/auth/anonymous", a.base))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let refreshed = revision_of(&resp);
    assert!(refreshed > minted, "{refreshed} after {minted}");
}

both_backends!(
    anonymous_revision,
    anonymous_mint_and_refresh_answer_with_a_revision
);

/// A write spoils only the cached answers that depend on what it changed:
/// after another user's workspace is created, a cached answer about bob is
/// still served from the cache, here and on the other replica (which hears
/// what changed by notification on Postgres, and by its poll from the
/// write's audit event on SQLite), even for a check at least as fresh as
/// that write; a write about bob spoils his answers at once.
async fn writes_spoil_only_the_answers_that_depend_on_them(db: Db) {
    let (a, b, _dir) = two_servers(db).await;
    let owner = bob_edits(&a).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while check(&b, None).await.0 != "allow" {
        assert!(Instant::now() < deadline, "B never saw A's import");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(check(&a, None).await.0, "allow");
    // B has applied every revision A has seen, and caches bob's answer.
    applied(&b, a.state.store.revisions().seen()).await;
    assert_eq!(check(&b, None).await.0, "allow");

    // Someone else creates a workspace through A.
    let other = a.anonymous().await;
    let resp = a
        .client
        .post(format!("{}/v1/workspaces", a.base))
        .bearer_auth(&other.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let token = revision_of(&resp);
    let created: Value = resp.json().await.unwrap();
    // The write's audit event records what it changed.
    let workspace = format!("Workspace:{}", created["id"].as_str().unwrap());
    let (_, recorded) = a.state.store.recorded_changes(0).await.unwrap();
    assert_eq!(
        recorded.iter().find(|(revision, _)| *revision == token),
        Some(&(
            token,
            warden::store::revision::Changed::Entities([workspace].into())
        ))
    );
    let fresh = json!({"at_least_as_fresh": token.to_string()});
    // Fact loads are counted per server (metrics are one registry for the
    // whole test process): none means the answer came from a cache.
    let loads = a.state.store.fact_loads();
    assert_eq!(check(&a, Some(fresh.clone())).await.0, "allow");
    assert_eq!(
        a.state.store.fact_loads(),
        loads,
        "A answered from its cache"
    );
    // B hears of that write by notification (Postgres) or reads what it
    // changed in the write's audit event (its poll; the only channel on
    // SQLite): either way bob's answer stays cached there.
    applied(&b, token).await;
    let loads = b.state.store.fact_loads();
    assert_eq!(check(&b, Some(fresh)).await.0, "allow");
    assert_eq!(
        b.state.store.fact_loads(),
        loads,
        "B answered from its cache"
    );

    // A write about bob: his cached answer goes at once on A.
    let token = remove_member(&a, &owner.token, &owner.workspace, "bob").await;
    assert_eq!(check(&a, None).await.0, "deny");
    let fresh = json!({"at_least_as_fresh": token.to_string()});
    assert_eq!(check(&b, Some(fresh)).await.0, "deny");
}

both_backends!(
    spoil_by_entity,
    writes_spoil_only_the_answers_that_depend_on_them
);

/// `POST /v1/check` on `app` with API key `key`; the status.
async fn check_with_key(app: &TestApp, key: &str) -> u16 {
    app.client
        .post(format!("{}/v1/check", app.base))
        .bearer_auth(key)
        .json(
            &json!({"principal": {"type": "User", "id": "bob"}, "action": "write",
                      "resource": {"type": "Asset", "id": "a"}}),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An API key revoked through A stops working on B as soon as B has
/// applied the revocation (each replica caches verified keys); API key
/// writes spoil no cached decision.
async fn a_key_revoked_on_one_replica_stops_on_the_other(db: Db) {
    let (a, b, _dir) = two_servers(db).await;
    bob_edits(&a).await;
    assert_eq!(check(&a, None).await.0, "allow");

    // A key made on A: it works on both, and each now holds it verified.
    let resp = a
        .client
        .post(format!("{}/v1/admin/api-keys", a.base))
        .bearer_auth(&a.admin_key)
        .json(&json!({"name": "app", "scopes": ["check"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let created = revision_of(&resp);
    let made: Value = resp.json().await.unwrap();
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    // Creating a key changed no decision's facts: A's cached answer stays
    // cached even for a check at least as fresh as that write.
    let loads = a.state.store.fact_loads();
    let fresh = json!({"at_least_as_fresh": created.to_string()});
    assert_eq!(check(&a, Some(fresh)).await.0, "allow");
    assert_eq!(
        a.state.store.fact_loads(),
        loads,
        "A answered from its cache"
    );
    for app in [&a, &b] {
        assert_eq!(check_with_key(app, &key).await, 200);
        assert_eq!(check_with_key(app, &key).await, 200);
    }

    // Revoked through A: refused on A at once, and on B as soon as B has
    // applied that revision (the key cache's TTL is 30 s; this is sooner).
    let resp = a
        .client
        .delete(format!("{}/v1/admin/api-keys/{id}", a.base))
        .bearer_auth(&a.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let revoked = revision_of(&resp);
    let revoked_at = Instant::now();
    assert_eq!(check_with_key(&a, &key).await, 401);
    applied(&b, revoked).await;
    eprintln!(
        "{db:?}: B applied the revocation after {} ms",
        revoked_at.elapsed().as_millis()
    );
    assert_eq!(check_with_key(&b, &key).await, 401);
    // Other keys still work on B.
    assert_eq!(check(&b, None).await.0, "allow");
}

both_backends!(
    key_revocation,
    a_key_revoked_on_one_replica_stops_on_the_other
);

/// Commits a write straight to the database, with no notification (a
/// notification lost, or another process on SQLite): it bumps the revision
/// and writes an audit event recording `changed` (None: not named, a
/// change to everything). Its revision.
async fn write_without_notification(app: &TestApp, changed: Option<&[&str]>) -> i64 {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let revision: i64 =
        sqlx::query("UPDATE warden_revision SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut *tx)
            .await
            .unwrap()
            .get(0);
    let record = changed.map(|keys| json!({"revision": revision, "changed": keys}).to_string());
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, target_type, target_id, revision, changed) \
         VALUES (0, 'test', 'test.write', 'test', 'test', $1, $2)",
    )
    .bind(revision)
    .bind(record)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    revision
}

/// Whether bob's check on `app` (allowed) was answered from a cache.
async fn cached(app: &TestApp) -> bool {
    let before = app.state.store.fact_loads();
    assert_eq!(check(app, None).await.0, "allow");
    app.state.store.fact_loads() == before
}

/// Waits until `app` has applied `revision` (by notification or poll).
async fn applied(app: &TestApp, revision: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.store.revisions().applied() < revision {
        assert!(
            Instant::now() < deadline,
            "revision {revision} was never applied"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A revision heard of only by the poll is applied as its audit event
/// records it: a write naming someone else leaves bob's cached answer
/// cached, one naming bob spoils it, one naming nothing spoils everything.
async fn the_poll_applies_what_each_write_recorded(db: Db) {
    let app = crate::common::spawn_app(db).await;
    bob_edits(&app).await;
    assert_eq!(check(&app, None).await.0, "allow");
    assert!(cached(&app).await);

    let revision = write_without_notification(&app, Some(&["User:carl"])).await;
    applied(&app, revision).await;
    assert!(cached(&app).await, "a write about carl leaves bob's answer");

    let revision = write_without_notification(&app, Some(&["User:bob"])).await;
    applied(&app, revision).await;
    assert!(!cached(&app).await, "a write about bob spoils it");
    assert!(cached(&app).await);

    let revision = write_without_notification(&app, None).await;
    applied(&app, revision).await;
    assert!(
        !cached(&app).await,
        "a write naming nothing spoils everything"
    );
}

both_backends!(
    poll_reads_records,
    the_poll_applies_what_each_write_recorded
);

/// The poll reads the writes' records in audit event id order, which must
/// be commit order: every audit event is inserted by a write transaction,
/// and writers queue on the revision counter from their first statement to
/// their commit. Concurrent writes through two replicas (anonymous mints
/// and imports): every event carries its write's revision, and revisions
/// never decrease along the ids.
async fn audit_events_are_numbered_in_commit_order(db: Db) {
    use sqlx::{Connection, Row};
    let (a, b, _dir) = two_servers(db).await;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..24 {
        let app = if i % 2 == 0 { &a } else { &b };
        let client = app.client.clone();
        let base = app.base.clone();
        let key = app.admin_key.clone();
        writes.spawn(async move {
            let request = if i % 3 == 0 {
                client.post(format!("{base}/api/auth/anonymous"))
            } else {
                let user = format!("u{i}");
                client
                    .post(format!("{base}/v1/admin/import"))
                    .bearer_auth(key)
                    .json(&json!({"users": [{"id": user, "kind": "registered"}]}))
            };
            let status = request.send().await.unwrap().status().as_u16();
            assert!(status == 200 || status == 201, "write {i}: {status}");
        });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap();
    }
    let mut conn = sqlx::AnyConnection::connect(&a.database_url).await.unwrap();
    let revisions: Vec<Option<i64>> = sqlx::query("SELECT revision FROM audit_events ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(revisions.len() >= 24, "{revisions:?}");
    let revisions: Vec<i64> = revisions
        .into_iter()
        .map(|r| r.expect("every event carries its write's revision"))
        .collect();
    assert!(
        revisions.windows(2).all(|pair| pair[0] <= pair[1]),
        "event ids out of commit order: {revisions:?}"
    );
}

both_backends!(audit_order, audit_events_are_numbered_in_commit_order);
