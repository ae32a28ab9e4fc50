//! Identity test helpers: a fake identity provider on loopback (a JWKS, RS256
//! tokens shaped like Clerk's, and an admin API that records
//! `PATCH /v1/users/{id}`), tokens signed with Warden's own stored key, and
//! anonymous users minted through the API.

use super::TestApp;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, patch};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use warden::config::Settings;
use warden::identity::oidc::OidcSettings;

/// Now, Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url.
pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// Segment `index` of a JWT (0: header, 1: claims) as JSON.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("segment");
    serde_json::from_slice(&unb64(segment)).expect("json")
}

/// The `kid` of a JWT's header.
pub fn kid_of(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().expect("kid").to_string()
}

/// One RSA key per test binary (generation takes a moment): PEM, n, e.
fn rsa_key() -> &'static (String, String, String) {
    static KEY: OnceLock<(String, String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key");
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string();
        (
            pem,
            b64(&key.n().to_bytes_be()),
            b64(&key.e().to_bytes_be()),
        )
    })
}

#[derive(Default)]
struct IdpState {
    jwks_fetches: AtomicUsize,
    extra_keys: Mutex<Vec<Value>>,
    patches: Mutex<Vec<(String, Value, String)>>,
}

/// A fake OIDC provider (Clerk-like) on an ephemeral port.
pub struct FakeIdp {
    pub issuer: String,
    pub kid: String,
    state: Arc<IdpState>,
    encoding: EncodingKey,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Json<Value> {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let (_, n, e) = rsa_key();
    let mut keys = vec![
        json!({"kty": "RSA", "kid": "ins_test_key", "alg": "RS256", "use": "sig", "n": n, "e": e}),
    ];
    keys.extend(state.extra_keys.lock().expect("lock").iter().cloned());
    Json(json!({ "keys": keys }))
}

async fn patch_user(
    State(state): State<Arc<IdpState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    state
        .patches
        .lock()
        .expect("lock")
        .push((id.clone(), body, auth));
    Json(json!({"id": id}))
}

/// Serves `router` on an ephemeral loopback port until the returned sender
/// is dropped.
async fn serve(router: Router) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (addr, tx)
}

/// The admin API secret the fake provider expects.
pub const IDP_SECRET: &str = "sk_test_fake_secret";

impl FakeIdp {
    pub async fn start() -> Self {
        let state = Arc::new(IdpState::default());
        let router = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/v1/users/{id}", patch(patch_user))
            .with_state(state.clone());
        let (addr, tx) = serve(router).await;
        let encoding = EncodingKey::from_rsa_pem(rsa_key().0.as_bytes()).expect("rsa pem");
        FakeIdp {
            issuer: format!("http://{addr}"),
            kid: "ins_test_key".into(),
            state,
            encoding,
            _shutdown: tx,
        }
    }

    /// Points `settings` at this provider (audience `convex`) and its admin API.
    pub fn configure(&self, settings: &mut Settings) {
        settings.oidc = Some(OidcSettings {
            issuer: self.issuer.clone(),
            audience: Some("convex".into()),
            jwks_url: format!("{}/.well-known/jwks.json", self.issuer),
            authorized_parties: Vec::new(),
        });
        settings.idp_admin = Some(warden::identity::idp::IdpAdminSettings {
            base_url: self.issuer.clone(),
            secret: IDP_SECRET.into(),
        });
    }

    /// Signs `claims` as is, with `header` (RS256, kid set by default).
    pub fn sign(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// Claims like a Clerk "convex" JWT template token for `sub`, with
    /// `extra` merged in.
    pub fn claims(&self, sub: &str, extra: Value) -> Value {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer, "sub": sub, "aud": "convex", "azp": "http://localhost:3000",
            "iat": now, "nbf": now - 5, "exp": now + 60, "jti": uuid::Uuid::new_v4().simple().to_string(),
            "external_id": null, "email": format!("{sub}@example.com"), "name": "Test Person",
            "username": sub.replace('_', ""), "image_url": format!("https://img.example.com/{sub}.png"),
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        claims
    }

    /// A valid token for `sub`, with `extra` claims.
    pub fn token(&self, sub: &str, extra: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        self.sign(header, &self.claims(sub, extra))
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Adds a raw JWK to the provider's JWKS.
    pub fn add_jwk(&self, jwk: Value) {
        self.state.extra_keys.lock().expect("lock").push(jwk);
    }

    /// The admin API calls received: (provider user id, body, Authorization).
    pub fn patches(&self) -> Vec<(String, Value, String)> {
        self.state.patches.lock().expect("lock").clone()
    }

    /// Waits up to 5 s for `n` admin API calls.
    pub async fn wait_for_patches(&self, n: usize) -> Vec<(String, Value, String)> {
        for _ in 0..100 {
            if self.patches().len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.patches()
    }
}

/// Counts every request it receives (a `jku`/`x5u` target that must never be hit).
pub struct HitCounter {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl HitCounter {
    pub async fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Json(json!({"keys": []}))
            }
        });
        let (addr, tx) = serve(router).await;
        HitCounter {
            url: format!("http://{addr}/keys.json"),
            hits,
            _shutdown: tx,
        }
    }
}

/// A minted anonymous user.
pub struct Anonymous {
    pub token: String,
    pub user_id: String,
    pub workspace: String,
    pub project: String,
}

impl TestApp {
    /// `POST /api/auth/anonymous` without a body; asserts 201.
    pub async fn anonymous(&self) -> Anonymous {
        let resp = self
            .client
            .post(format!("{}/api/auth/anonymous", self.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 201, "mint refused");
        let body: Value = resp.json().await.expect("json");
        let token = body["token"].as_str().expect("token").to_string();
        let user_id = body["user_id"].as_str().expect("user_id").to_string();
        let world = self.state.store.export().await.expect("export");
        let workspace = world
            .workspaces
            .iter()
            .find(|w| w.owner.as_str() == user_id)
            .expect("own workspace")
            .id
            .to_string();
        let project = world
            .projects
            .iter()
            .find(|p| p.workspace.as_str() == workspace)
            .expect("own project")
            .id
            .to_string();
        Anonymous {
            token,
            user_id,
            workspace,
            project,
        }
    }

    /// `POST /api/auth/anonymous` with `{token}`: status and body.
    pub async fn refresh(&self, token: &str) -> (u16, Value) {
        self.post_with(None, "/api/auth/anonymous", &json!({ "token": token }))
            .await
    }

    /// `POST /api/auth/resolve-user` with the provider's `bearer` token.
    pub async fn resolve(&self, bearer: &str, body: &Value) -> (u16, Value) {
        self.post_with(Some(bearer), "/api/auth/resolve-user", body)
            .await
    }

    /// `/v1/check` with an end-user token: status and body.
    pub async fn check_token(&self, token: &str, action: &str, ty: &str, id: &str) -> (u16, Value) {
        self.post(
            "/v1/check",
            &json!({"token": token, "action": action, "resource": {"type": ty, "id": id}}),
        )
        .await
    }

    /// The decision word of a token check, asserting 200.
    pub async fn decide_token(&self, token: &str, action: &str, ty: &str, id: &str) -> String {
        let (status, body) = self.check_token(token, action, ty, id).await;
        assert_eq!(status, 200, "check failed: {body}");
        body["decision"].as_str().expect("decision").to_string()
    }

    /// Warden's live signing key: kid and the key to sign with.
    pub async fn warden_key(&self) -> (String, EncodingKey) {
        let keys = self.state.store.published_keys().await.expect("keys");
        let key = keys
            .iter()
            .find(|k| k.retired_at.is_none())
            .expect("a live key");
        (
            key.kid.clone(),
            EncodingKey::from_ec_pem(key.private_key.as_bytes()).expect("pem"),
        )
    }

    /// Claims of a valid anonymous token of `user` (as Warden mints them).
    pub fn anonymous_claims(&self, user: &str) -> Value {
        let now = now();
        json!({"iss": self.base, "sub": user, "aud": "convex", "iat": now, "nbf": now,
               "exp": now + 3600, "jti": uuid::Uuid::new_v4().simple().to_string(), "kind": "anonymous"})
    }

    /// Signs `claims` with Warden's own live key.
    pub async fn sign_as_warden(&self, claims: &Value) -> String {
        let (kid, key) = self.warden_key().await;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    /// `GET /.well-known/jwks.json`: content type and document.
    pub async fn jwks(&self) -> (String, Value) {
        let resp = self
            .client
            .get(format!("{}/.well-known/jwks.json", self.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 200);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (content_type, resp.json().await.expect("json"))
    }

    /// Rows per table.
    pub async fn table_sizes(&self) -> std::collections::BTreeMap<&'static str, i64> {
        self.state.store.table_sizes().await.expect("sizes")
    }
}
