//! Benchmark data (`warden bench-data`, `cargo bench`): a realistic world
//! of a given size. Workspaces of 5 projects × 20 assets, 2 users per
//! workspace, editors, viewers, project editors, 12% public assets (2%
//! public write), read grants on 5% of assets, 10% anonymous users. Ids are
//! patterns a load script can draw at random without reading the data:
//! users `u{0..2W}`, workspaces `w{0..W}` owned by `u{2w}`, projects
//! `w{w}p{0..5}`, assets `w{w}p{p}a{0..20}`. From 10,000 assets on, one
//! more workspace, `big`, holds 10,000 assets (100 projects × 100), owned
//! by `u0` with `u1` as editor: the subject of the search benchmark.

use crate::domain::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn id(s: impl Into<String>) -> Id {
    #[expect(clippy::expect_used, reason = "generated ids are short printable text")]
    Id::parse(s).expect("valid generated id")
}

/// The world for `assets` assets (plus `big`), drawn from `seed`.
pub fn world(assets: usize, seed: u64) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = generate(assets, &mut rng);
    if assets >= 10_000 {
        add_big_workspace(&mut w);
    }
    w
}

fn add_big_workspace(w: &mut World) {
    w.workspaces.push(WorkspaceRecord {
        id: id("big"),
        owner: id("u0"),
        visibility: Visibility::Private,
    });
    w.memberships.push(MembershipRecord {
        user: id("u1"),
        scope: Scope::Workspace,
        id: id("big"),
        role: Role::Editor,
    });
    for p in 0..100 {
        let pid = id(format!("bigp{p}"));
        w.projects.push(ProjectRecord {
            id: pid.clone(),
            workspace: id("big"),
            visibility: Visibility::Private,
        });
        for a in 0..100 {
            w.assets.push(AssetRecord {
                id: id(format!("bigp{p}a{a}")),
                project: pid.clone(),
                visibility: Visibility::Private,
                public_access: PublicAccess::None,
            });
        }
    }
}

/// A realistic world: workspaces of 5 projects × 20 assets, 2 users per
/// workspace, editors, viewers, project editors, public assets and grants.
fn generate(assets: usize, rng: &mut StdRng) -> World {
    let workspaces = (assets / 100).max(1);
    let users = workspaces * 2;
    let mut w = World::default();
    for u in 0..users {
        let kind = if u % 10 == 9 {
            UserKind::Anonymous
        } else {
            UserKind::Registered
        };
        w.users.push(UserRecord {
            id: id(format!("u{u}")),
            kind,
            email: None,
            name: None,
            merged_into: None,
        });
    }
    for ws in 0..workspaces {
        let wid = id(format!("w{ws}"));
        w.workspaces.push(WorkspaceRecord {
            id: wid.clone(),
            owner: id(format!("u{}", ws * 2)),
            visibility: Visibility::Private,
        });
        let mut members = std::collections::HashSet::new();
        for role in [Role::Editor, Role::Editor, Role::Viewer, Role::Viewer] {
            let user = rng.gen_range(0..users);
            if user != ws * 2 && members.insert(user) {
                w.memberships.push(MembershipRecord {
                    user: id(format!("u{user}")),
                    scope: Scope::Workspace,
                    id: wid.clone(),
                    role,
                });
            }
        }
        for p in 0..5 {
            let pid = id(format!("w{ws}p{p}"));
            w.projects.push(ProjectRecord {
                id: pid.clone(),
                workspace: wid.clone(),
                visibility: Visibility::Private,
            });
            let user = rng.gen_range(0..users);
            w.memberships.push(MembershipRecord {
                user: id(format!("u{user}")),
                scope: Scope::Project,
                id: pid.clone(),
                role: Role::Editor,
            });
            for a in 0..20 {
                let aid = id(format!("w{ws}p{p}a{a}"));
                let roll = rng.gen_range(0..100);
                let (visibility, public_access) = match roll {
                    0..=1 => (Visibility::Public, PublicAccess::Write),
                    2..=11 => (Visibility::Public, PublicAccess::Read),
                    _ => (Visibility::Private, PublicAccess::None),
                };
                w.assets.push(AssetRecord {
                    id: aid.clone(),
                    project: pid.clone(),
                    visibility,
                    public_access,
                });
                if a % 20 == 0 {
                    let user = rng.gen_range(0..users);
                    w.grants.push(GrantRecord {
                        user: id(format!("u{user}")),
                        asset: aid,
                        permission: Permission::Read,
                    });
                }
            }
        }
    }
    w.memberships
        .dedup_by(|a, b| a.user == b.user && a.id == b.id);
    w
}

/// The in-process evaluation rate (`warden bench-eval`): the batches the
/// load script sends (`scripts/bench/batch.lua`: 1,000 `read` checks on
/// assets of the first `hot` workspaces, half by the owner), each decided
/// over its facts, loaded once beforehand, by the policies with no HTTP and
/// no cache, on `threads` threads for `seconds`. Returns decisions/s.
pub async fn eval_rate(
    engine: &crate::policy::PolicyEngine,
    store: &crate::store::Store,
    hot: usize,
    seconds: f64,
    threads: usize,
) -> Result<f64, String> {
    use crate::decision::{decide_in_world, Authn, DecisionInput, EntityRef, RawDecision};
    use crate::store::facts::FactKeys;
    let hot = hot.max(1);
    let mut rng = StdRng::seed_from_u64(11);
    let mut batches = Vec::new();
    for _ in 0..8 {
        let mut inputs = Vec::with_capacity(1000);
        let mut keys = FactKeys::default();
        for _ in 0..1000 {
            let w = rng.gen_range(0..hot);
            let user = if rng.gen_bool(0.5) {
                2 * w
            } else {
                rng.gen_range(0..2 * hot)
            };
            let raw = RawDecision {
                principal: EntityRef {
                    ty: "User".into(),
                    id: format!("u{user}"),
                },
                action: "read".into(),
                resource: EntityRef {
                    ty: "Asset".into(),
                    id: format!("w{w}p{}a{}", rng.gen_range(0..5), rng.gen_range(0..20)),
                },
                context: Default::default(),
                entities: None,
                authn: Authn::App,
            };
            let input = DecisionInput::parse(engine, raw, "").map_err(|e| e.to_string())?;
            input.collect_keys(&mut keys);
            inputs.push(input);
        }
        let world = store.load_facts(&keys).await.map_err(|e| e.to_string())?;
        batches.push((world, inputs));
    }
    let deadline = std::time::Duration::from_secs_f64(seconds);
    let started = std::time::Instant::now();
    let decided = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let batches = &batches;
                scope.spawn(move || -> Result<usize, String> {
                    let mut decided = 0;
                    let mut next = t;
                    while started.elapsed() < deadline {
                        let Some((world, inputs)) = batches.get(next % batches.len()) else {
                            break;
                        };
                        let verdicts = decide_in_world(engine, world, inputs, "requests")
                            .map_err(|e| e.to_string())?;
                        decided += verdicts.len();
                        next += 1;
                    }
                    Ok(decided)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "an evaluation thread panicked".to_string())?
            })
            .sum::<Result<usize, String>>()
    })?;
    Ok(decided as f64 / started.elapsed().as_secs_f64())
}
