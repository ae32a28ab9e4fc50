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
