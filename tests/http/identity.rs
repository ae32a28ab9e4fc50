//! Anonymous tokens, the JWKS, key persistence and rotation, rate limits,
//! token-based decisions (CONTRACT §5 identity, issue 3 points 1, 2, 5, 6).

use crate::both_backends;
use crate::common::identity::{b64, jwt_part, kid_of, unb64, FakeIdp};
use crate::common::{spawn_app, spawn_configured, spawn_with, Db, PgDatabase};
use serde_json::{json, Value};
use std::time::Duration;

async fn anonymous_user_owns_a_private_workspace_and_project(db: Db) {
    let app = spawn_app(db).await;
    let anon = app.anonymous().await;
    let world = app.state.store.export().await.expect("export");
    let user = world
        .users
        .iter()
        .find(|u| u.id.as_str() == anon.user_id)
        .expect("user");
    assert_eq!(user.kind.as_str(), "anonymous");
    let ws = world
        .workspaces
        .iter()
        .find(|w| w.id.as_str() == anon.workspace)
        .expect("ws");
    assert_eq!(ws.visibility.as_str(), "private");
    let project = world
        .projects
        .iter()
        .find(|p| p.id.as_str() == anon.project)
        .expect("p");
    assert_eq!(project.visibility.as_str(), "private");
    // The token is the principal: full rights in its own workspace, nothing elsewhere.
    for action in [
        "read",
        "write",
        "delete",
        "manage_members",
        "invite",
        "create_project",
    ] {
        assert_eq!(
            app.decide_token(&anon.token, action, "Workspace", &anon.workspace)
                .await,
            "allow",
            "{action}"
        );
    }
    assert_eq!(
        app.decide_token(&anon.token, "create_asset", "Project", &anon.project)
            .await,
        "allow"
    );
    let other = app.anonymous().await;
    assert_eq!(
        app.decide_token(&other.token, "read", "Workspace", &anon.workspace)
            .await,
        "deny"
    );
    // Secrets are stored hashed, never in clear.
    let events = app
        .state
        .store
        .audit_page("user", &anon.user_id, 0, 10)
        .await
        .expect("audit");
    assert_eq!(events[0]["action"], "anonymous.create");
    let dump =
        serde_json::to_string(&app.state.store.export().await.expect("export")).expect("json");
    assert!(!dump.contains(&anon.token));
}
both_backends!(
    anonymous_user_owns_a_private_workspace_and_project,
    anonymous_user_owns_a_private_workspace_and_project
);

async fn anonymous_token_claims_follow_the_contract(db: Db) {
    let app = spawn_app(db).await;
    let resp = app
        .client
        .post(format!("{}/api/auth/anonymous", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    let body: Value = resp.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    let header = jwt_part(token, 0);
    let claims = jwt_part(token, 1);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    let (_, keys) = app.jwks().await;
    assert_eq!(header["kid"], keys["keys"][0]["kid"]);
    assert_eq!(
        claims["iss"],
        app.base.as_str(),
        "iss is the public URL, no trailing slash"
    );
    assert_eq!(claims["aud"], "convex");
    assert_eq!(claims["sub"], body["user_id"]);
    let exp = claims["exp"].as_i64().expect("exp");
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(exp - iat, 30 * 24 * 3600, "30-day expiry");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 32));
    // expires_at is RFC 3339 and matches exp.
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    assert_eq!(expires.unix_timestamp(), exp);
}
both_backends!(
    anonymous_token_claims_follow_the_contract,
    anonymous_token_claims_follow_the_contract
);

async fn refresh_accepts_only_the_last_token(db: Db) {
    let app = spawn_app(db).await;
    let anon = app.anonymous().await;
    let (status, body) = app.refresh(&anon.token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], anon.user_id.as_str());
    let second = body["token"].as_str().expect("token").to_string();
    assert_ne!(second, anon.token);
    // The replaced token is dead: refresh and decisions refuse it.
    let (status, body) = app.refresh(&anon.token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("replaced by a refresh"),
        "{body}"
    );
    let (status, body) = app
        .check_token(&anon.token, "read", "Workspace", &anon.workspace)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["decision"], "deny");
    // The new one works, once.
    assert_eq!(
        app.decide_token(&second, "read", "Workspace", &anon.workspace)
            .await,
        "allow"
    );
    let (status, body) = app.refresh(&second).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.refresh(&second).await;
    assert_eq!(status, 401);
    let events = app
        .state
        .store
        .audit_page("user", &anon.user_id, 0, 10)
        .await
        .expect("audit");
    let refreshes = events
        .iter()
        .filter(|e| e["action"] == "anonymous.refresh")
        .count();
    assert_eq!(refreshes, 2, "one audit event per accepted refresh");
}
both_backends!(
    refresh_accepts_only_the_last_token,
    refresh_accepts_only_the_last_token
);

/// Concurrent refreshes of one token: exactly one wins.
async fn concurrent_refreshes_of_one_token_yield_one_new_token(db: Db) {
    let app = spawn_app(db).await;
    let anon = app.anonymous().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = format!("{}/api/auth/anonymous", app.base);
        let token = anon.token.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"token": token}))
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        9,
        "{statuses:?}"
    );
}
both_backends!(
    concurrent_refreshes_of_one_token_yield_one_new_token,
    concurrent_refreshes_of_one_token_yield_one_new_token
);

/// Warden's tokens verify with another JWT library (jwt-simple) given only
/// the JWKS document fetched over HTTP.
#[tokio::test]
async fn tokens_verify_with_an_independent_library_from_the_jwks_alone() {
    use jwt_simple::prelude::*;
    let app = spawn_app(Db::Sqlite).await;
    let anon = app.anonymous().await;
    let (content_type, doc) = app.jwks().await;
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let jwk = &doc["keys"][0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "no private part is published");
    let raw = |field: &str| unb64(jwk[field].as_str().expect("coord"));
    let mut point = vec![0x04];
    point.extend(raw("x"));
    point.extend(raw("y"));
    let key = ES256PublicKey::from_bytes(&point)
        .expect("public key")
        .with_key_id(jwk["kid"].as_str().expect("kid"));
    // RFC 7638 thumbprint: SHA-256 of {"crv","kty","x","y"} in that order.
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().expect("x"),
        jwk["y"].as_str().expect("y")
    );
    use sha2::Digest;
    assert_eq!(
        jwk["kid"].as_str().expect("kid"),
        b64(&sha2::Sha256::digest(canonical.as_bytes()))
    );
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&[app.base.as_str()])),
        allowed_audiences: Some(HashSet::from_strings(&["convex"])),
        ..Default::default()
    };
    let claims = key
        .verify_token::<JWTClaims<Value>>(&anon.token, Some(options))
        .expect("verifies");
    assert_eq!(claims.subject.as_deref(), Some(anon.user_id.as_str()));
    assert!(claims.expires_at.is_some() && claims.issued_at.is_some());
}

async fn the_signing_key_survives_a_restart(db: Db) {
    let (pg, url) = match db {
        Db::Postgres => {
            let pg = PgDatabase::create().await;
            let url = pg.url();
            (Some(pg), Some(url))
        }
        Db::Sqlite => (None, None),
    };
    let dir = tempfile::tempdir().expect("dir");
    let url = url.unwrap_or_else(|| warden::store::sqlite_url(dir.path()));
    let first = spawn_with(db, None, Some(url.clone())).await;
    let anon = first.anonymous().await;
    let (_, before) = first.jwks().await;
    drop(first);
    let second = spawn_with(db, pg, Some(url)).await;
    let (_, after) = second.jwks().await;
    assert_eq!(before, after, "the same key is published after a restart");
    // The old server's token still verifies (its iss is the old base URL, so
    // refresh is the check that matters: the key, not the issuer).
    assert!(second.state.identity.keys.knows(&kid_of(&anon.token)).await);
}
both_backends!(
    the_signing_key_survives_a_restart,
    the_signing_key_survives_a_restart
);

async fn rotation_signs_with_the_new_key_and_keeps_the_old_one_published(db: Db) {
    let app = spawn_app(db).await;
    let before = app.anonymous().await;
    let (_, doc) = app.jwks().await;
    let old_kid = doc["keys"][0]["kid"].as_str().expect("kid").to_string();
    let (status, body) = app.post("/v1/admin/keys/rotate", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let new_kid = body["kid"].as_str().expect("kid").to_string();
    assert_ne!(new_kid, old_kid);
    let (_, doc) = app.jwks().await;
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(
        kids,
        vec![new_kid.as_str(), old_kid.as_str()],
        "new key first, old key still published"
    );
    let after = app.anonymous().await;
    assert_eq!(kid_of(&after.token), new_kid);
    // Tokens of the old key keep working until they expire.
    assert_eq!(
        app.decide_token(&before.token, "read", "Workspace", &before.workspace)
            .await,
        "allow"
    );
    let (status, _) = app.refresh(&before.token).await;
    assert_eq!(status, 200);
    let events = app
        .state
        .store
        .audit_page("signing_key", &new_kid, 0, 10)
        .await
        .expect("audit");
    assert_eq!(events[0]["action"], "signing_key.rotate");
    // Fail closed: a key without the admin scope may not rotate.
    let check_only = app.key_with_scopes(&["check"]).await;
    let (status, _) = app
        .post_with(Some(&check_only), "/v1/admin/keys/rotate", &json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post_with(None, "/v1/admin/keys/rotate", &json!({}))
        .await;
    assert_eq!(status, 401);
    let (_, doc) = app.jwks().await;
    assert_eq!(
        doc["keys"].as_array().expect("keys").len(),
        2,
        "refused rotations changed nothing"
    );
}
both_backends!(
    rotation_signs_with_the_new_key_and_keeps_the_old_one_published,
    rotation_signs_with_the_new_key_and_keeps_the_old_one_published
);

/// `warden keys rotate` on the command line, picked up by a running server.
#[tokio::test]
async fn rotation_from_the_command_line_reaches_a_running_server() {
    let app = spawn_app(Db::Sqlite).await;
    let (_, doc) = app.jwks().await;
    let old_kid = doc["keys"][0]["kid"].as_str().expect("kid").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "rotate", "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("new signing key"), "{stdout}");
    // The running server re-reads the key set on demand.
    app.state.identity.keys.reread().await.expect("reread");
    let (_, doc) = app.jwks().await;
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], old_kid);
}

async fn rate_limit_holds_across_two_servers_on_one_database(db: Db) {
    let pg = match db {
        Db::Postgres => Some(PgDatabase::create().await),
        Db::Sqlite => None,
    };
    let dir = tempfile::tempdir().expect("dir");
    let url = pg
        .as_ref()
        .map(PgDatabase::url)
        .unwrap_or_else(|| warden::store::sqlite_url(dir.path()));
    let limit = |s: &mut warden::config::Settings| s.anonymous_rate_limit = 3;
    let a = spawn_configured(db, None, Some(url.clone()), limit).await;
    let b = spawn_configured(db, pg, Some(url), limit).await;
    let mint = |app: &crate::common::TestApp| {
        let client = app.client.clone();
        let url = format!("{}/api/auth/anonymous", app.base);
        async move { client.post(url).send().await.expect("sent") }
    };
    assert_eq!(mint(&a).await.status().as_u16(), 201);
    assert_eq!(mint(&a).await.status().as_u16(), 201);
    assert_eq!(mint(&b).await.status().as_u16(), 201);
    let users_before = a.table_sizes().await["users"];
    let refused = mint(&b).await;
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(mint(&a).await.status().as_u16(), 429);
    assert_eq!(
        a.table_sizes().await["users"],
        users_before,
        "a limited request creates nothing"
    );
}
both_backends!(
    rate_limit_holds_across_two_servers_on_one_database,
    rate_limit_holds_across_two_servers_on_one_database
);

/// Behind a proxy, each forwarded client address has its own budget.
#[tokio::test]
async fn rate_limit_uses_the_forwarded_address_only_when_told_to() {
    let app = spawn_configured(Db::Sqlite, None, None, |s| {
        s.anonymous_rate_limit = 1;
        s.trust_forwarded_for = true;
    })
    .await;
    let mint = |from: &str| {
        app.client
            .post(format!("{}/api/auth/anonymous", app.base))
            .header("x-forwarded-for", format!("198.51.100.9, {from}"))
            .send()
    };
    assert_eq!(
        mint("203.0.113.1").await.expect("sent").status().as_u16(),
        201
    );
    assert_eq!(
        mint("203.0.113.1").await.expect("sent").status().as_u16(),
        429
    );
    assert_eq!(
        mint("203.0.113.2").await.expect("sent").status().as_u16(),
        201
    );
}

async fn token_decisions_in_check_batch_and_authzen(db: Db) {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(db, None, None, |s| idp.configure(s)).await;
    let anon = app.anonymous().await;
    // Batch: a token and a named principal side by side, one round trip.
    let loads = app.state.store.fact_loads();
    let (status, body) = app
        .post(
            "/v1/check/batch",
            &json!({"requests": [
                {"token": anon.token, "action": "write", "resource": {"type": "Project", "id": anon.project}},
                {"principal": {"type": "User", "id": anon.user_id}, "action": "read", "resource": {"type": "Project", "id": anon.project}},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["decision"], "allow");
    assert_eq!(body["results"][1]["decision"], "allow");
    assert_eq!(app.state.store.fact_loads(), loads + 1);
    // AuthZEN: the token in subject.properties.
    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": {"type": "User", "id": "", "properties": {"token": anon.token}},
                    "action": {"name": "delete"}, "resource": {"type": "Workspace", "id": anon.workspace}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], true);
    // The action search takes the token the same way: the anonymous user
    // owns its workspace, so every workspace action is allowed but
    // accepting an invite (no invite context was given).
    let (status, body) = app
        .post(
            "/access/v1/search/action",
            &json!({"subject": {"type": "User", "id": "", "properties": {"token": anon.token}},
                    "resource": {"type": "Workspace", "id": anon.workspace}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "create_project",
            "delete",
            "invite",
            "manage_members",
            "read",
            "read_audit",
            "share",
            "write"
        ],
        "{body}"
    );
    let (status, body) = app
        .post(
            "/access/v1/search/action",
            &json!({"subject": {"type": "User", "id": "", "properties": {"token": "not.a.token"}},
                    "resource": {"type": "Workspace", "id": anon.workspace}}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["field"], "subject.properties.token", "{body}");
    // A subject id that is not the token's user is refused.
    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": {"type": "User", "id": "mallory", "properties": {"token": anon.token}},
                    "action": {"name": "read"}, "resource": {"type": "Workspace", "id": anon.workspace}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["decision"], false);
    // Evaluations: a bad token fails only its own item.
    let (status, body) = app
        .post(
            "/access/v1/evaluations",
            &json!({"action": {"name": "read"}, "resource": {"type": "Workspace", "id": anon.workspace},
                    "evaluations": [
                        {"subject": {"type": "User", "id": "", "properties": {"token": anon.token}}},
                        {"subject": {"type": "User", "id": "", "properties": {"token": "not.a.token"}}},
                    ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["evaluations"][0]["decision"], true);
    assert_eq!(body["evaluations"][1]["decision"], false);
    assert_eq!(body["evaluations"][1]["context"]["error"]["status"], 401);
    // The provider's token with external_id names the canonical user.
    let oidc = idp.token("user_2abc", json!({"external_id": anon.user_id}));
    // (not linked yet: external_id alone is trusted for decisions, as CONTRACT §5 says)
    assert_eq!(
        app.decide_token(&oidc, "read", "Workspace", &anon.workspace)
            .await,
        "allow"
    );
    // Without external_id and without a link, the identity has no user yet.
    let unlinked = idp.token("user_2new", json!({}));
    let (status, body) = app
        .check_token(&unlinked, "read", "Workspace", &anon.workspace)
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("resolve-user"),
        "{body}"
    );
    assert_eq!(body["field"], "token");
    // A bad token in a batch names its item.
    let (status, body) = app
        .post(
            "/v1/check/batch",
            &json!({"requests": [
                {"principal": {"type": "User", "id": anon.user_id}, "action": "read", "resource": {"type": "Project", "id": anon.project}},
                {"token": "x.y", "action": "read", "resource": {"type": "Project", "id": anon.project}},
            ]}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["field"], "requests[1].token");
    assert_eq!(body["decision"], "deny");
}
both_backends!(
    token_decisions_in_check_batch_and_authzen,
    token_decisions_in_check_batch_and_authzen
);

/// The public identity routes are Cedar actions: with the permit removed
/// from the policies, they refuse (403) and write nothing.
#[tokio::test]
async fn identity_routes_fail_closed_when_the_policies_do_not_allow_them() {
    let dir = tempfile::tempdir().expect("dir");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    let repo = crate::common::repo();
    for entry in std::fs::read_dir(repo.join("policies")).expect("read") {
        let path = entry.expect("entry").path();
        let mut text = std::fs::read_to_string(&path).expect("read");
        if let Some(at) = text.find("@id(\"public-identity-routes\")") {
            text.truncate(at);
        }
        std::fs::write(policies.join(path.file_name().expect("name")), text).expect("write");
    }
    let idp = FakeIdp::start().await;
    let app = spawn_configured(Db::Sqlite, None, None, |s| {
        s.policies = policies.clone();
        idp.configure(s);
    })
    .await;
    let before = app.table_sizes().await;
    let (status, body) = app.post_with(None, "/api/auth/anonymous", &json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = app.refresh("a.b.c").await;
    assert_eq!(status, 403);
    let (status, _) = app
        .resolve(&idp.token("user_1", json!({})), &json!({}))
        .await;
    assert_eq!(status, 403);
    assert_eq!(app.table_sizes().await, before);
}

/// A rotation can publish first: the new key is in the JWKS at once but
/// signs only after the lead, so relying parties that cache the JWKS know
/// it before they see tokens signed with it.
#[tokio::test]
async fn rotation_can_publish_the_new_key_before_it_signs() {
    let app = spawn_app(Db::Sqlite).await;
    let old_kid = kid_of(&app.anonymous().await.token);
    let (status, body) = app
        .post("/v1/admin/keys/rotate", &json!({"publish_lead_seconds": 2}))
        .await;
    assert_eq!(status, 200, "{body}");
    let new_kid = body["kid"].as_str().expect("kid").to_string();
    let (_, doc) = app.jwks().await;
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&new_kid.as_str()) && kids.contains(&old_kid.as_str()),
        "{kids:?}"
    );
    assert_eq!(
        kid_of(&app.anonymous().await.token),
        old_kid,
        "the old key still signs during the lead"
    );
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(
        kid_of(&app.anonymous().await.token),
        new_kid,
        "the new key signs after the lead"
    );
    let (status, body) = app
        .post(
            "/v1/admin/keys/rotate",
            &json!({"publish_lead_seconds": 10_000_000}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "publish_lead_seconds");
}
