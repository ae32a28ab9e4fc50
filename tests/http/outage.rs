//! Database outage: decisions answer 503 with a deny body while Postgres is
//! unreachable, and work again once it is back, with no restart.

use crate::common::identity::FakeIdp;
use crate::common::{spawn_configured, Db, PgDatabase, TestApp};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A TCP proxy to Postgres that can cut every connection and refuse new
/// ones, or cut the connection that sends a `COMMIT` (before it arrives).
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    cut_at_commit: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let up = Arc::new(AtomicBool::new(true));
        let cut_at_commit = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, armed, list) = (up.clone(), cut_at_commit.clone(), pipes.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // the database "is down"
                    continue;
                }
                let (target, armed) = (target.clone(), armed.clone());
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        pipe(client, server, armed).await;
                    }
                });
                list.lock().await.push(task);
            }
        });
        Proxy {
            addr,
            up,
            cut_at_commit,
            pipes,
        }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().await.drain(..) {
            pipe.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes both ways until either side closes; when `armed`, a chunk
/// from the client holding `COMMIT` ends both connections instead of being
/// passed on (once: the flag is cleared).
async fn pipe(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buffer[..n];
            if chunk.windows(6).any(|w| w == b"COMMIT") && armed.swap(false, Ordering::SeqCst) {
                return;
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        () = upstream => {}
        _ = downstream => {}
    }
}

/// A server on a fresh Postgres database reached through a [`Proxy`], with
/// user `u` owning asset `a` (in `p`, in `w`).
async fn proxied_app() -> (Proxy, TestApp) {
    proxied_app_configured(|_| {}).await
}

/// [`proxied_app`], letting `configure` change the settings first.
async fn proxied_app_configured(
    configure: impl FnOnce(&mut warden::config::Settings),
) -> (Proxy, TestApp) {
    let pg = PgDatabase::create().await;
    let admin = crate::common::postgres_admin_url();
    let target = admin
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let proxy = Proxy::start(target).await;
    let url = pg.url_via(&proxy.addr);
    let app = spawn_configured(Db::Postgres, Some(pg), Some(url), configure).await;
    app.import(&json!({
        "users": [{"id": "u", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "u"}],
        "projects": [{"id": "p", "workspace": "w"}],
        "assets": [{"id": "a", "project": "p"}]
    }))
    .await;
    (proxy, app)
}

#[tokio::test]
async fn database_outage_answers_503_deny_then_recovers() {
    let (proxy, app) = proxied_app().await;
    let request = json!({"principal": {"type": "User", "id": "u"}, "action": "read",
                         "resource": {"type": "Asset", "id": "a"}});
    let (status, body) = app.post("/v1/check", &request).await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!("allow")),
        "{body}"
    );

    let unused_key = app.key_with_scopes(&["check"]).await;

    proxy.down().await;
    // A key never used before must be looked up: that fails closed too.
    let (status, body) = app
        .post_with(Some(&unused_key), "/v1/check", &request)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["decision"], "deny", "{body}");
    // The API key is cached; reading the facts needs the database. (The
    // cached answer to `request` would still be served: creating the key
    // changed no fact.)
    let mut fresh = request.clone();
    fresh["consistency"] = json!({"fully_consistent": true});
    let body = unavailable(&app, "/v1/check", &fresh).await;
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["error"]["code"], "database_unavailable");
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 503);

    proxy.up();
    // Only a check that reads the facts shows the database is back: the
    // answer to `request` is cached, and was 200 throughout.
    let mut recovered = false;
    for _ in 0..50 {
        let (status, body) = app.post("/v1/check", &fresh).await;
        if status == 200 {
            assert_eq!(body["decision"], "allow");
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "decisions did not recover after the database came back"
    );
    // Every connection the outage broke has sat in the pool since the
    // loss was seen, so it is pinged and replaced before use: readiness
    // holds at once.
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "/readyz right after recovery: {body}");
}

/// POSTs `body` to `path` with the admin key, asserts the answer is 503
/// with `Retry-After: 1` (clients and load balancers are told when to try
/// again), and returns its JSON body.
async fn unavailable(app: &TestApp, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.admin_key)
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    response.json().await.expect("JSON body")
}

/// `u`'s check on `a`: allowed, and (fully consistent) it reads the facts.
fn owner_check() -> serde_json::Value {
    json!({"principal": {"type": "User", "id": "u"}, "action": "read",
           "resource": {"type": "Asset", "id": "a"},
           "consistency": {"fully_consistent": true}})
}

/// Asks [`owner_check`] eight times at once, so that the pool holds several
/// connections, each used a moment ago (each must answer 200); then cuts
/// every connection, and the database is reachable again at once.
async fn cut_a_full_pool(proxy: &Proxy, app: &TestApp) {
    let mut checks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (app.client.clone(), format!("{}/v1/check", app.base));
        let (key, body) = (app.admin_key.clone(), owner_check());
        checks.spawn(async move {
            let response = client.post(url).bearer_auth(key).json(&body).send().await;
            response.map(|r| r.status().as_u16())
        });
    }
    while let Some(status) = checks.join_next().await {
        assert_eq!(status.expect("task").expect("request"), 200);
    }
    proxy.down().await;
    proxy.up();
}

/// Connections broken while they sat idle in the pool (a database restart
/// in a quiet spell) cost no request: each is pinged before use and
/// replaced, so the first checks after it all answer.
#[tokio::test]
async fn connections_broken_while_idle_are_replaced_before_use() {
    let (proxy, app) = proxied_app().await;
    let request = owner_check();
    // Several connections in the pool, all cut, then idle for over a
    // second.
    cut_a_full_pool(&proxy, &app).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for i in 0..10 {
        let (status, body) = app.post("/v1/check", &request).await;
        assert_eq!(
            (status, body["decision"].clone()),
            (200, json!("allow")),
            "check {i} after the cut: {body}"
        );
    }
}

/// Connections cut while in use a moment ago (a failover, a proxy restart,
/// a network cut that heals at once) cost no request either: the first
/// read to find its connection lost reads again, and every connection idle
/// since the loss was seen is pinged before use, not just those idle for
/// over a second.
#[tokio::test]
async fn connections_cut_in_use_are_replaced_and_the_read_tried_again() {
    let (proxy, app) = proxied_app().await;
    let request = owner_check();
    for round in 0..3 {
        // Every connection is cut well within a second of its last use.
        cut_a_full_pool(&proxy, &app).await;
        for i in 0..10 {
            let (status, body) = app.post("/v1/check", &request).await;
            assert_eq!(
                (status, body["decision"].clone()),
                (200, json!("allow")),
                "round {round}, check {i} after the cut: {body}"
            );
        }
        let (status, body) = app.get("/readyz").await;
        assert_eq!(status, 200, "round {round}: /readyz after the cut: {body}");
    }
}

/// A write whose connection is lost as it commits may or may not have been
/// applied: it is answered 503 `write_outcome_unknown`, not "not served",
/// so the client reads it back before sending it again. (Here the `COMMIT`
/// never reaches the database, so the write is not there.)
#[tokio::test]
async fn a_write_cut_off_at_its_commit_is_answered_outcome_unknown() {
    let (proxy, app) = proxied_app().await;
    let world = json!({"assets": [{"id": "b", "project": "p"}]});
    proxy.cut_at_commit.store(true, Ordering::SeqCst);
    let body = unavailable(&app, "/v1/admin/import", &world).await;
    assert_eq!(body["error"]["code"], "write_outcome_unknown", "{body}");
    assert!(
        !proxy.cut_at_commit.load(Ordering::SeqCst),
        "the proxy saw no COMMIT"
    );
    // `b` was never committed: the owner's check on it is denied (no such
    // asset); the same write sent again is applied.
    let read = |asset: &str| {
        json!({"principal": {"type": "User", "id": "u"}, "action": "read",
               "resource": {"type": "Asset", "id": asset},
               "consistency": {"fully_consistent": true}})
    };
    let (status, body) = app.post("/v1/check", &read("b")).await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!("deny")),
        "{body}"
    );
    app.import(&world).await;
    let (status, body) = app.post("/v1/check", &read("b")).await;
    assert_eq!(
        (status, body["decision"].clone()),
        (200, json!("allow")),
        "{body}"
    );
}

/// The first read of a request that carries an end user's token is whether
/// the token is still live (an anonymous token) or whose user it names (a
/// provider token without `external_id`); after a cut it is read again as
/// the fact load is, so neither a check with a token nor a management read
/// (which starts the same way) fails on a connection lost a moment ago. Nor
/// does the anonymous mint, whose first statement is the rate-limit counter
/// (sent again: at worst it counts the client once more).
#[tokio::test]
async fn requests_with_a_token_read_again_after_a_cut() {
    let idp = FakeIdp::start().await;
    let (proxy, app) = proxied_app_configured(|s| idp.configure(s)).await;
    let minted = app.anonymous().await;
    let (token, workspace) = (minted.token, minted.workspace);
    // A provider user linked to its subject (no `external_id` in its token).
    let provider = idp.token("user_1", json!({}));
    let (status, body) = app.resolve(&provider, &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let check = |token: &str| {
        json!({"token": token, "action": "read",
               "resource": {"type": "Workspace", "id": workspace},
               "consistency": {"fully_consistent": true}})
    };
    // Once before any cut: from then on each token's signature is
    // remembered, and the read above is the request's first.
    for (token, decision) in [(&token, "allow"), (&provider, "deny")] {
        let (status, body) = app.post("/v1/check", &check(token)).await;
        assert_eq!(
            (status, body["decision"].clone()),
            (200, json!(decision)),
            "{body}"
        );
    }
    for round in 0..8 {
        cut_a_full_pool(&proxy, &app).await;
        // The first request after the cut, in turn: a check with the
        // anonymous token, a management read with it, a check with the
        // provider's token, and an anonymous mint (whose first statement
        // is the rate-limit counter, answered 201).
        let (expected, (status, body)) = match round % 4 {
            0 => (200, app.post("/v1/check", &check(&token)).await),
            1 => {
                let path = format!("/v1/workspaces/{workspace}");
                (200, app.get_with(Some(&token), &path).await)
            }
            2 => (200, app.post("/v1/check", &check(&provider)).await),
            _ => {
                let url = format!("{}/api/auth/anonymous", app.base);
                let response = app.client.post(url).send().await.expect("mint sent");
                let status = response.status().as_u16();
                (201, (status, response.json().await.unwrap_or_default()))
            }
        };
        assert_eq!(
            status, expected,
            "round {round}, the first request after the cut: {body}"
        );
    }
}
