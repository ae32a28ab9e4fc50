//! The JWT attack suite (issue 3): every forged, malformed or stale token is
//! refused with 401 and a clear reason, on every route that takes tokens,
//! and nothing is written to the database.

use crate::common::identity::{b64, now, FakeIdp, HitCounter};
use crate::common::{spawn_configured, Db, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A compact JWS over `header` and `claims`, ES256-signed by `key`.
fn es256(key: &p256::ecdsa::SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

/// Warden's live signing key, to forge tokens with headers of our choosing.
async fn warden_signer(app: &TestApp) -> (String, p256::ecdsa::SigningKey) {
    let keys = app.state.store.published_keys().await.expect("keys");
    let key = keys
        .iter()
        .find(|k| k.retired_at.is_none())
        .expect("live key");
    let secret = p256::SecretKey::from_pkcs8_pem(&key.private_key).expect("pem");
    (key.kid.clone(), p256::ecdsa::SigningKey::from(secret))
}

fn attacker() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng)
}

/// The public JWK of `key`.
fn public_jwk(key: &p256::ecdsa::SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))})
}

/// A point with coordinates (1, 1): not on P-256.
fn off_curve_jwk(kid: &str) -> Value {
    let mut one = [0u8; 32];
    one[31] = 1;
    json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": b64(&one), "y": b64(&one)})
}

/// The same token with a high-S (malleated) signature: still a valid
/// ECDSA signature, but different bytes.
fn malleate(token: &str) -> String {
    use base64::Engine;
    let (input, sig) = token.rsplit_once('.').expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .expect("b64");
    let signature = p256::ecdsa::Signature::from_slice(&bytes).expect("sig");
    let (r, s) = signature.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -*s).expect("high-S");
    format!("{input}.{}", b64(&high.to_bytes()))
}

struct Attack {
    name: &'static str,
    token: String,
    /// Expected in the reason on Warden's own token routes.
    reason: &'static str,
}

/// Sends `token` to every route that takes one; each must answer 401. On
/// `/v1/check` and refresh, the reason must contain `reason`.
async fn refused_everywhere(app: &TestApp, attack: &Attack, workspace: &str) {
    let (status, body) = app
        .check_token(&attack.token, "read", "Workspace", workspace)
        .await;
    assert_eq!(status, 401, "{}: /v1/check answered {body}", attack.name);
    assert_eq!(body["decision"], "deny", "{}", attack.name);
    assert_eq!(
        body["error"]["code"], "invalid_token",
        "{}: {body}",
        attack.name
    );
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(attack.reason),
        "{}: expected {:?} in {message:?}",
        attack.name,
        attack.reason
    );
    let (status, body) = app.refresh(&attack.token).await;
    assert_eq!(status, 401, "{}: refresh answered {body}", attack.name);
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(attack.reason),
        "{}: refresh: expected {:?} in {message:?}",
        attack.name,
        attack.reason
    );
    let (status, body) = app.resolve(&attack.token, &json!({})).await;
    assert_eq!(status, 401, "{}: resolve-user answered {body}", attack.name);
    let (status, body) = app
        .post(
            "/access/v1/evaluation",
            &json!({"subject": {"type": "User", "id": "", "properties": {"token": attack.token}},
                    "action": {"name": "read"}, "resource": {"type": "Workspace", "id": workspace}}),
        )
        .await;
    assert_eq!(status, 401, "{}: AuthZEN answered {body}", attack.name);
    assert_eq!(body["decision"], false);
}

/// Forged, malformed and stale anonymous tokens.
#[tokio::test]
async fn forged_and_malformed_tokens_are_refused_without_a_write() {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(Db::Sqlite, None, None, |s| idp.configure(s)).await;
    let anon = app.anonymous().await;
    let other = app.anonymous().await;
    let counter = HitCounter::start().await;
    let (kid, warden) = warden_signer(&app).await;
    let good = app.anonymous_claims(&anon.user_id);
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            claims[k] = v.clone();
        }
        claims
    };
    let evil = attacker();
    let public_pem = {
        use p256::pkcs8::EncodePublicKey;
        warden
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("pem")
    };
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let (payload_of_other, _) = {
        let claims = with(json!({"sub": other.user_id}));
        (b64(claims.to_string().as_bytes()), ())
    };
    let mut parts: Vec<String> = anon.token.split('.').map(String::from).collect();
    parts[1] = payload_of_other;
    let tampered = parts.join(".");
    let mut bad_b64: Vec<String> = anon.token.split('.').map(String::from).collect();
    bad_b64[1].replace_range(3..4, "!");
    let attacks = vec![
        Attack {
            name: "alg none",
            reason: "algorithm \"none\"",
            token: format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT", "kid": kid})
                    .to_string()
                    .as_bytes()),
                b64(good.to_string().as_bytes())
            ),
        },
        Attack {
            name: "HS256 signed with the public key",
            reason: "algorithm \"HS256\"",
            token: jsonwebtoken::encode(
                &hs256,
                &good,
                &EncodingKey::from_secret(public_pem.as_bytes()),
            )
            .expect("hs256"),
        },
        Attack {
            name: "RS256 header on Warden's kid",
            reason: "algorithm",
            token: es256(&warden, &json!({"alg": "RS256", "kid": kid}), &good),
        },
        Attack {
            name: "unknown kid",
            reason: "no trusted key has kid",
            token: es256(
                &evil,
                &json!({"alg": "ES256", "kid": "attacker-key"}),
                &good,
            ),
        },
        Attack {
            name: "missing kid",
            reason: "no `kid`",
            token: es256(&warden, &json!({"alg": "ES256", "typ": "JWT"}), &good),
        },
        Attack {
            name: "expired",
            reason: "expired",
            token: es256(
                &warden,
                &header,
                &with(json!({"exp": now() - 3600, "iat": now() - 7200, "nbf": now() - 7200})),
            ),
        },
        Attack {
            name: "nbf in the future",
            reason: "not valid yet",
            token: es256(&warden, &header, &with(json!({"nbf": now() + 3600}))),
        },
        Attack {
            name: "wrong iss",
            reason: "issuer",
            token: es256(
                &warden,
                &header,
                &with(json!({"iss": "https://evil.example"})),
            ),
        },
        Attack {
            name: "wrong aud",
            reason: "audience",
            token: es256(&warden, &header, &with(json!({"aud": "someone-else"}))),
        },
        Attack {
            name: "missing exp",
            reason: "exp",
            token: es256(&warden, &header, &{
                let mut c = good.clone();
                c.as_object_mut().expect("o").remove("exp");
                c
            }),
        },
        Attack {
            name: "tampered payload",
            reason: "signature does not verify",
            token: tampered,
        },
        Attack {
            name: "bad base64",
            reason: "base64url",
            token: bad_b64.join("."),
        },
        Attack {
            name: "two segments",
            reason: "three dot-separated segments",
            token: "eyJhbGciOiJFUzI1NiJ9.e30".into(),
        },
        Attack {
            name: "four segments",
            reason: "three dot-separated segments",
            token: format!("{}.extra", anon.token),
        },
        Attack {
            name: "over 8 KB",
            reason: "over 8192 bytes",
            token: es256(
                &warden,
                &header,
                &with(json!({"padding": "x".repeat(9000)})),
            ),
        },
        Attack {
            name: "crit header",
            reason: "crit",
            token: es256(
                &warden,
                &json!({"alg": "ES256", "kid": kid, "crit": ["exp"]}),
                &good,
            ),
        },
        Attack {
            name: "jku header pointing at the attacker's keys",
            reason: "no trusted key has kid",
            token: es256(
                &evil,
                &json!({"alg": "ES256", "kid": "attacker-key", "jku": counter.url}),
                &good,
            ),
        },
        Attack {
            name: "x5u header pointing at the attacker's keys",
            reason: "no trusted key has kid",
            token: es256(
                &evil,
                &json!({"alg": "ES256", "kid": "attacker-key", "x5u": counter.url}),
                &good,
            ),
        },
        Attack {
            name: "embedded jwk (CVE-2018-0114)",
            reason: "no trusted key has kid",
            token: es256(
                &evil,
                &json!({"alg": "ES256", "kid": "attacker-key", "jwk": public_jwk(&evil)}),
                &good,
            ),
        },
        Attack {
            name: "embedded jwk under Warden's kid",
            reason: "signature does not verify",
            token: es256(
                &evil,
                &json!({"alg": "ES256", "kid": kid, "jwk": public_jwk(&evil)}),
                &good,
            ),
        },
        Attack {
            name: "embedded jwk with a point off the curve",
            reason: "no trusted key has kid",
            token: es256(
                &evil,
                &json!({"alg": "ES256", "kid": "off-curve", "jwk": off_curve_jwk("off-curve")}),
                &good,
            ),
        },
        Attack {
            name: "not a JWT at all",
            reason: "three dot-separated segments",
            token: "hello".into(),
        },
    ];
    let before = app.table_sizes().await;
    let events_before = app.state.store.audit_event_count().await.expect("count");
    for attack in &attacks {
        refused_everywhere(&app, attack, &anon.workspace).await;
    }
    assert_eq!(
        counter.hits.load(Ordering::SeqCst),
        0,
        "jku/x5u were never fetched"
    );
    assert_eq!(app.table_sizes().await, before, "no attack wrote anything");
    assert_eq!(
        app.state.store.audit_event_count().await.expect("count"),
        events_before
    );
    // The legitimate token still works after all that.
    assert_eq!(
        app.decide_token(&anon.token, "read", "Workspace", &anon.workspace)
            .await,
        "allow"
    );
}

/// A malleated (high-S) copy of the live token cannot refresh, and the
/// attempt does not burn the real token.
#[tokio::test]
async fn a_malleated_signature_cannot_refresh() {
    let app = spawn_configured(Db::Sqlite, None, None, |_| {}).await;
    let anon = app.anonymous().await;
    let twin = malleate(&anon.token);
    assert_ne!(twin, anon.token);
    let (status, body) = app.refresh(&twin).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = app.refresh(&anon.token).await;
    assert_eq!(status, 200, "{body}");
}

/// The identity provider's tokens: forged, stale, misdirected, or signed by
/// keys Warden must not accept.
#[tokio::test]
async fn provider_tokens_are_verified_strictly() {
    let idp = FakeIdp::start().await;
    idp.add_jwk(off_curve_jwk("ins_off_curve"));
    let evil = attacker();
    let mut oct = json!({"kty": "oct", "kid": "ins_hmac", "k": b64(b"secret-shared-with-nobody")});
    oct["alg"] = json!("HS256");
    idp.add_jwk(oct);
    let app = spawn_configured(Db::Sqlite, None, None, |s| idp.configure(s)).await;
    let anon = app.anonymous().await;
    let rs = |claims: Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("ins_test_key".into());
        idp.sign(header, &claims)
    };
    let sub = "user_2attack";
    let good = idp.claims(sub, json!({"external_id": anon.user_id}));
    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            claims[k] = v.clone();
        }
        claims
    };
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("ins_hmac".into());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            rs(with(
                json!({"exp": now() - 60, "iat": now() - 120, "nbf": now() - 120}),
            )),
            "expired",
        ),
        (
            "nbf in the future",
            rs(with(json!({"nbf": now() + 600}))),
            "not valid yet",
        ),
        (
            "wrong iss",
            rs(with(json!({"iss": "https://clerk.evil.example"}))),
            "issuer",
        ),
        (
            "wrong aud",
            rs(with(json!({"aud": "not-convex"}))),
            "audience",
        ),
        (
            "no aud",
            rs({
                let mut c = good.clone();
                c.as_object_mut().expect("o").remove("aud");
                c
            }),
            "aud",
        ),
        (
            "no sub",
            rs({
                let mut c = good.clone();
                c.as_object_mut().expect("o").remove("sub");
                c
            }),
            "sub",
        ),
        (
            "HMAC key in the JWKS",
            jsonwebtoken::encode(
                &hs,
                &good,
                &EncodingKey::from_secret(b"secret-shared-with-nobody"),
            )
            .expect("hs"),
            "algorithm \"HS256\"",
        ),
        (
            "EC key off the curve in the JWKS",
            es256(
                &evil,
                &json!({"alg": "ES256", "kid": "ins_off_curve"}),
                &good,
            ),
            "no trusted key has kid",
        ),
        (
            "ES256 under the RSA key's kid",
            es256(
                &evil,
                &json!({"alg": "ES256", "kid": "ins_test_key"}),
                &good,
            ),
            "algorithm",
        ),
        (
            "unknown kid",
            es256(&evil, &json!({"alg": "ES256", "kid": "ins_unknown"}), &good),
            "no trusted key has kid",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","kid":"ins_test_key"}"#),
                b64(good.to_string().as_bytes())
            ),
            "algorithm \"none\"",
        ),
    ];
    let before = app.table_sizes().await;
    for (name, token, reason) in &cases {
        let (status, body) = app.resolve(token, &json!({})).await;
        assert_eq!(status, 401, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(reason),
            "{name}: expected {reason:?} in {message:?}"
        );
        let (status, body) = app
            .check_token(token, "read", "Workspace", &anon.workspace)
            .await;
        assert_eq!(status, 401, "{name}: /v1/check answered {body}");
    }
    assert_eq!(
        app.table_sizes().await,
        before,
        "no refused token wrote anything"
    );
    // The genuine token is accepted (external_id names the anonymous user).
    assert_eq!(
        app.decide_token(&rs(good.clone()), "read", "Workspace", &anon.workspace)
            .await,
        "allow"
    );
}

/// A flood of made-up kids costs the provider at most one JWKS fetch per
/// refetch interval.
#[tokio::test]
async fn unknown_kids_do_not_flood_the_provider() {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(Db::Sqlite, None, None, |s| idp.configure(s)).await;
    let evil = attacker();
    let claims = idp.claims("user_flood", json!({}));
    for i in 0..50 {
        let token = es256(
            &evil,
            &json!({"alg": "ES256", "kid": format!("ins_made_up_{i}")}),
            &claims,
        );
        let (status, _) = app.resolve(&token, &json!({})).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        idp.jwks_fetches(),
        1,
        "one fetch, then the refetch interval holds"
    );
}

/// A provider that cannot be reached: 503 with the reason, never an allow.
#[tokio::test]
async fn an_unreachable_provider_fails_closed() {
    let idp = FakeIdp::start().await;
    let app = spawn_configured(Db::Sqlite, None, None, |s| {
        idp.configure(s);
        if let Some(oidc) = s.oidc.as_mut() {
            oidc.jwks_url = "http://127.0.0.1:9/.well-known/jwks.json".into();
        }
    })
    .await;
    let (status, body) = app
        .resolve(&idp.token("user_x", json!({})), &json!({}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "identity_provider_unavailable");
}

/// Tokens signed by a rotated-out key die when they expire, and the key
/// leaves the JWKS once its last token has expired.
#[tokio::test]
async fn a_rotated_out_key_stops_verifying_after_its_tokens_expire() {
    let app = spawn_configured(Db::Sqlite, None, None, |s| {
        s.anonymous_token_ttl = Duration::from_secs(1);
    })
    .await;
    let anon = app.anonymous().await;
    let (status, _) = app.post("/v1/admin/keys/rotate", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.decide_token(&anon.token, "read", "Workspace", &anon.workspace)
            .await,
        "allow"
    );
    // ttl 1 s + leeway 5 s.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let (status, body) = app
        .check_token(&anon.token, "read", "Workspace", &anon.workspace)
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{body}"
    );
    // Published until ttl + 2 x leeway = 11 s after the rotation.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    app.state.identity.keys.reread().await.expect("reread");
    let (_, doc) = app.jwks().await;
    assert_eq!(
        doc["keys"].as_array().expect("keys").len(),
        1,
        "the retired key left the JWKS: {doc}"
    );
    let (status, body) = app
        .check_token(&anon.token, "read", "Workspace", &anon.workspace)
        .await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no trusted key"),
        "{body}"
    );
}
