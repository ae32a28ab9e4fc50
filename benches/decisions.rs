//! Decision benchmarks (`cargo bench`).
//!
//! (a) In-process: Cedar evaluation on a prebuilt 7-entity slice, and the
//!     same with the slice built from records as the server does it.
//! (b) HTTP `POST /v1/check` against Postgres holding `WARDEN_BENCH_ASSETS`
//!     assets (default 100,000): criterion's sequential latency, then a load
//!     phase of 32 concurrent clients for `WARDEN_BENCH_SECONDS` (default 10)
//!     printing checks/s, p50 and p99, and the same for 1,000-request batches.
//!     Client and server share this machine's cores, as `wrk` on the same box would.
//!     `WARDEN_BENCH_ASSETS=0` leaves it out.
//! (c) The situations of a batch's requests (what a batch or a search page
//!     computes before it evaluates anything), over the slice a batch of
//!     1,000 and of 5,000 random pairs of a bench-data world loads.
//!
//! Postgres: `WARDEN_TEST_DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres);
//! the bench creates and drops its own database.

use cedar_policy::{Context, Entities, Request};
use criterion::{criterion_group, Criterion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::domain::*;
use warden::entities;
use warden::policy::PolicyEngine;

fn engine() -> PolicyEngine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    PolicyEngine::load(&root.join("policies"), &root.join("schema")).expect("policies load")
}

fn id(s: impl Into<String>) -> Id {
    Id::parse(s).expect("id")
}

/// The slice of one decision: a user with a workspace role and a grant, and
/// an asset with its project and workspace (plus the owner), 7 records.
fn small_world() -> World {
    World {
        users: vec![
            UserRecord {
                id: id("u1"),
                kind: UserKind::Registered,
                email: None,
                name: None,
                merged_into: None,
            },
            UserRecord {
                id: id("owner"),
                kind: UserKind::Registered,
                email: None,
                name: None,
                merged_into: None,
            },
        ],
        workspaces: vec![WorkspaceRecord {
            id: id("w1"),
            owner: id("owner"),
            visibility: Visibility::Private,
        }],
        projects: vec![ProjectRecord {
            id: id("p1"),
            workspace: id("w1"),
            visibility: Visibility::Private,
        }],
        assets: vec![AssetRecord {
            id: id("a1"),
            project: id("p1"),
            visibility: Visibility::Private,
            public_access: PublicAccess::None,
        }],
        memberships: vec![MembershipRecord {
            user: id("u1"),
            scope: Scope::Workspace,
            id: id("w1"),
            role: Role::Viewer,
        }],
        grants: vec![GrantRecord {
            user: id("u1"),
            asset: id("a1"),
            permission: Permission::Write,
        }],
    }
}

fn in_process(c: &mut Criterion) {
    let engine = engine();
    let world = small_world();
    let request = Request::new(
        entities::uid(&entities::TYPES.user, "u1"),
        entities::action("write"),
        entities::uid(&entities::TYPES.asset, "a1"),
        Context::from_pairs([(
            "authn".to_string(),
            cedar_policy::RestrictedExpression::new_string("app".into()),
        )])
        .expect("context"),
        None,
    )
    .expect("request");
    let slice =
        Entities::from_entities(entities::build(&world).expect("build"), None).expect("entities");
    assert!(engine.decide(&request, &slice).allow);
    let mut group = c.benchmark_group("in_process");
    group.bench_function("evaluate_prebuilt_slice", |b| {
        b.iter(|| engine.decide(&request, &slice))
    });
    group.bench_function("build_slice_from_records_and_evaluate", |b| {
        b.iter(|| {
            let slice = Entities::from_entities(entities::build(&world).expect("build"), None)
                .expect("entities");
            engine.decide(&request, &slice)
        })
    });
    group.finish();
}

/// The slice a batch of `pairs` (user, asset) loads from `world`, as
/// `store::facts` does: the users and the assets with their projects and
/// workspaces, the workspaces' owners, and the users' memberships and
/// grants on those.
fn batch_slice(world: &World, pairs: &[(&str, &str)]) -> World {
    use std::collections::HashSet;
    fn kept<R: Clone>(records: &[R], keep: impl Fn(&R) -> bool) -> Vec<R> {
        records.iter().filter(|r| keep(r)).cloned().collect()
    }
    let users: HashSet<&str> = pairs.iter().map(|(u, _)| *u).collect();
    let wanted: HashSet<&str> = pairs.iter().map(|(_, a)| *a).collect();
    let assets = kept(&world.assets, |a| wanted.contains(a.id.as_str()));
    let wanted: HashSet<&str> = assets.iter().map(|a| a.project.as_str()).collect();
    let projects = kept(&world.projects, |p| wanted.contains(p.id.as_str()));
    let wanted: HashSet<&str> = projects.iter().map(|p| p.workspace.as_str()).collect();
    let workspaces = kept(&world.workspaces, |w| wanted.contains(w.id.as_str()));
    let owners: HashSet<&str> = workspaces.iter().map(|w| w.owner.as_str()).collect();
    let loaded: HashSet<&str> = users.union(&owners).copied().collect();
    let scopes: HashSet<&str> = projects
        .iter()
        .map(|p| p.id.as_str())
        .chain(workspaces.iter().map(|w| w.id.as_str()))
        .collect();
    let asset_ids: HashSet<&str> = assets.iter().map(|a| a.id.as_str()).collect();
    World {
        users: kept(&world.users, |u| loaded.contains(u.id.as_str())),
        memberships: kept(&world.memberships, |m| {
            loaded.contains(m.user.as_str()) && scopes.contains(m.id.as_str())
        }),
        grants: kept(&world.grants, |g| {
            loaded.contains(g.user.as_str()) && asset_ids.contains(g.asset.as_str())
        }),
        assets: assets.clone(),
        projects: projects.clone(),
        workspaces: workspaces.clone(),
    }
}

fn batch_situations(c: &mut Criterion) {
    let world = warden::benchdata::world(100_000, 7);
    let mut rng = StdRng::seed_from_u64(11);
    let mut group = c.benchmark_group("batch_situations");
    for size in [1_000, 5_000] {
        let pairs: Vec<(&str, &str)> = (0..size)
            .map(|_| {
                let user = &world.users[rng.gen_range(0..world.users.len())];
                let asset = &world.assets[rng.gen_range(0..world.assets.len())];
                (user.id.as_str(), asset.id.as_str())
            })
            .collect();
        let slice = batch_slice(&world, &pairs);
        let requests: Vec<_> = pairs
            .iter()
            .map(|(u, a)| {
                (
                    entities::uid(&entities::TYPES.user, u),
                    entities::uid(&entities::TYPES.asset, a),
                )
            })
            .collect();
        let facts = entities::Lookup::new(&slice);
        let described = requests
            .iter()
            .filter_map(|(u, a)| entities::situation(&facts, u, a, &[]))
            .count();
        assert_eq!(described, size, "every request has a situation");
        group.bench_function(format!("{size}_requests"), |b| {
            b.iter(|| {
                let facts = entities::Lookup::new(&slice);
                requests
                    .iter()
                    .filter_map(|(u, a)| entities::situation(&facts, u, a, &[]))
                    .count()
            })
        });
    }
    group.finish();
}

fn big_world(assets: usize, rng: &mut StdRng) -> World {
    warden::benchdata::world(assets, rng.gen())
}

struct Bench {
    base: String,
    key: String,
    client: reqwest::Client,
    requests: Arc<Vec<Value>>,
    /// The same questions asked with end-user tokens (anonymous users).
    token_requests: Arc<Vec<Value>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(assets: usize, db_name: &str, admin_url: &str) -> Bench {
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("Postgres for the HTTP bench");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&mut conn)
        .await
        .expect("create db");
    let base_url = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut settings = warden::config::Settings::new(
        dir.path().to_path_buf(),
        format!("{base_url}/{db_name}"),
        root.join("policies"),
        root.join("schema"),
    );
    settings.request_timeout = Duration::from_secs(30);
    settings.anonymous_rate_limit = 1_000_000;
    let app = warden::startup::Application::build(&settings)
        .await
        .expect("server starts");
    let mut rng = StdRng::seed_from_u64(7);
    let world = big_world(assets, &mut rng);
    let started = Instant::now();
    app.state()
        .store
        .import(&world, warden::audit::Actor::cli("bench"), None)
        .await
        .expect("import");
    eprintln!(
        "bench: imported {} assets, {} users, {} memberships, {} grants in {:.1}s",
        world.assets.len(),
        world.users.len(),
        world.memberships.len(),
        world.grants.len(),
        started.elapsed().as_secs_f64()
    );
    let key = std::fs::read_to_string(dir.path().join("admin.key"))
        .expect("key")
        .trim()
        .to_string();
    let base = format!("http://{}", app.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    // Half the questions come from members of the asset's workspace.
    let mut requests = Vec::new();
    let actions = ["read", "write", "delete", "share"];
    for _ in 0..20_000 {
        let asset = world.assets[rng.gen_range(0..world.assets.len())].clone();
        let ws = asset
            .id
            .as_str()
            .split('p')
            .next()
            .unwrap_or("w0")
            .to_string();
        let user = if rng.gen_bool(0.5) {
            world
                .memberships
                .iter()
                .find(|m| m.id.as_str() == ws)
                .map(|m| m.user.to_string())
        } else {
            None
        }
        .unwrap_or_else(|| format!("u{}", rng.gen_range(0..world.users.len())));
        requests.push(json!({"principal": {"type": "User", "id": user},
            "action": actions[rng.gen_range(0..4)], "resource": {"type": "Asset", "id": asset.id}}));
    }
    // 256 anonymous users, each asking about random assets with its token.
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for _ in 0..256 {
        let minted: Value = client
            .post(format!("{base}/api/auth/anonymous"))
            .send()
            .await
            .expect("mint")
            .json()
            .await
            .expect("json");
        tokens.push(minted["token"].as_str().expect("token").to_string());
    }
    let token_requests = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({"token": tokens[i % tokens.len()], "action": r["action"], "resource": r["resource"]})
        })
        .collect();
    Bench {
        base,
        key,
        client,
        requests: Arc::new(requests),
        token_requests: Arc::new(token_requests),
        _shutdown: tx,
        _dir: dir,
    }
}

async fn check(bench: &Bench, i: usize) -> bool {
    check_from(bench, &bench.requests, i).await
}

async fn check_from(bench: &Bench, requests: &[Value], i: usize) -> bool {
    let body = &requests[i % requests.len()];
    let resp = bench
        .client
        .post(format!("{}/v1/check", bench.base))
        .bearer_auth(&bench.key)
        .json(body)
        .send()
        .await
        .expect("send");
    assert!(resp.status().is_success(), "status {}", resp.status());
    let v: Value = resp.json().await.expect("json");
    v["decision"] == "allow"
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// 32 concurrent clients for `seconds`; prints throughput and latency
/// percentiles. `tokens`: single checks ask with end-user tokens.
async fn load(bench: &Arc<Bench>, seconds: u64, batch: usize, tokens: bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..32 {
        let bench = bench.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker * 7919;
            while Instant::now() < deadline {
                let started = Instant::now();
                if batch == 1 && tokens {
                    check_from(&bench, &bench.token_requests, i).await;
                } else if batch == 1 {
                    check(&bench, i).await;
                } else {
                    let requests: Vec<&Value> = (0..batch)
                        .map(|k| &bench.requests[(i + k) % bench.requests.len()])
                        .collect();
                    let resp = bench
                        .client
                        .post(format!("{}/v1/check/batch", bench.base))
                        .bearer_auth(&bench.key)
                        .json(&json!({"requests": requests}))
                        .send()
                        .await
                        .expect("send");
                    assert!(resp.status().is_success());
                    let _: Value = resp.json().await.expect("json");
                }
                latencies.push(started.elapsed());
                i += batch;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all.sort();
    let calls = all.len() as f64;
    let what = if batch == 1 && tokens {
        "checks with anonymous tokens".to_string()
    } else if batch == 1 {
        "checks".to_string()
    } else {
        format!("batches of {batch}")
    };
    eprintln!(
        "load: {what}: {:.0} calls/s ({:.0} decisions/s), p50 {:.2} ms, p99 {:.2} ms, {} calls, 32 clients, {seconds}s",
        calls / seconds as f64,
        calls * batch as f64 / seconds as f64,
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.len()
    );
}

fn http_postgres(c: &mut Criterion) {
    let assets: usize = std::env::var("WARDEN_BENCH_ASSETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if assets == 0 {
        return;
    }
    let seconds: u64 = std::env::var("WARDEN_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let admin_url = std::env::var("WARDEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db_name = format!("warden_bench_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bench = Arc::new(rt.block_on(start(assets, &db_name, &admin_url)));
    let mut group = c.benchmark_group(format!("http_postgres_{assets}_assets"));
    let mut i = 0;
    group.bench_function("check_sequential", |b| {
        b.to_async(&rt).iter(|| {
            i += 1;
            let bench = bench.clone();
            async move { check(&bench, i).await }
        })
    });
    group.finish();
    rt.block_on(load(&bench, seconds, 1, false));
    rt.block_on(load(&bench, seconds, 1, true));
    rt.block_on(load(&bench, seconds, 1000, false));
    drop(bench);
    rt.block_on(async {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    });
}

criterion_group!(benches, in_process, batch_situations, http_postgres);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
