//! Token costs, in process: minting an anonymous token, inspecting a header,
//! and verifying an anonymous token (ES256) with Warden's own code paths.
//! `cargo bench --bench tokens`.

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, EncodingKey};
use std::time::Duration;
use warden::identity::{anonymous, keys, unverified};

fn tokens(c: &mut Criterion) {
    let stored = keys::generate().expect("key");
    let encoding = EncodingKey::from_ec_pem(stored.private_key.as_bytes()).expect("pem");
    let jwk: Jwk = serde_json::from_str(&stored.public_jwk).expect("jwk");
    let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
    let issuer = "https://warden.example.com";
    let ttl = Duration::from_secs(3600);
    let minted =
        anonymous::mint("u_bench", (&stored.kid, &encoding), issuer, "convex", ttl).expect("mint");
    c.bench_function("mint an anonymous token (ES256 sign)", |b| {
        b.iter(|| {
            anonymous::mint("u_bench", (&stored.kid, &encoding), issuer, "convex", ttl)
                .expect("mint")
        })
    });
    c.bench_function("inspect a token header (unverified)", |b| {
        b.iter(|| unverified::inspect(&minted.token).expect("inspect"))
    });
    c.bench_function("verify an anonymous token (ES256 + claims)", |b| {
        b.iter(|| anonymous::verify(&minted.token, &decoding, issuer, "convex").expect("verify"))
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
