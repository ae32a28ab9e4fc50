//! The exhaustive generated world `warden diff` evaluates: every combination
//! CONTRACT §2 allows of a principal's situation and a resource's state, for
//! every action of the schema.
//!
//! Principals: kind (registered, anonymous, anonymous merged into a
//! registered user) × workspace role (none, owner, editor, viewer) × project
//! role (none, editor, viewer) × asset grant (none, read, write), each holding
//! that role in every workspace and project of the world and that grant on
//! every asset; plus the workspaces' owners themselves (registered and
//! anonymous). Every principal is asked with every way of authenticating
//! (`app`, `anonymous_token`, `oidc_token`).
//!
//! Resources: workspaces for owner kind × visibility, a private and a public
//! project in each, and in each project an asset for every visibility ×
//! public access. Ids say what they are, so a listed change reads on its own:
//! `registered:ws-editor:p-none:grant-read` may `delete`
//! `ws(anonymous-owner,public)/p(private)/a(public,read)`.

use super::probe::Probe;
use crate::decision::{Authn, EntityRef, RawDecision};
use crate::domain::{
    AssetRecord, GrantRecord, Id, MembershipRecord, Permission, ProjectRecord, PublicAccess, Role,
    Scope, UserKind, UserRecord, Visibility, WorkspaceRecord, World,
};
use std::collections::{BTreeMap, BTreeSet};

/// Every way a principal can be established.
pub const AUTHNS: [Authn; 3] = [Authn::App, Authn::AnonymousToken, Authn::OidcToken];

fn id(text: &str) -> Id {
    #[expect(clippy::expect_used, reason = "generated ids are short printable text")]
    Id::parse(text).expect("valid generated id")
}

fn user(text: &str, kind: UserKind, merged_into: Option<&str>) -> UserRecord {
    UserRecord {
        id: id(text),
        kind,
        email: None,
        name: None,
        merged_into: merged_into.map(id),
    }
}

/// The principal kinds of the generated world: (label, kind, merged).
const KINDS: [(&str, UserKind, bool); 3] = [
    ("registered", UserKind::Registered, false),
    ("anonymous", UserKind::Anonymous, false),
    ("merged-anonymous", UserKind::Anonymous, true),
];

/// The user every merged anonymous user was merged into.
const MERGE_TARGET: &str = "registered:ws-none:p-none:grant-none";

/// The generated world and the ids of its resources by type basename.
pub fn world() -> (World, BTreeMap<&'static str, Vec<String>>) {
    let mut world = World::default();
    let mut resources: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for owner_kind in [UserKind::Registered, UserKind::Anonymous] {
        let owner = format!("owner:{owner_kind}");
        world.users.push(user(&owner, owner_kind, None));
        for ws_vis in Visibility::ALL {
            let w = format!("ws({owner_kind}-owner,{ws_vis})");
            world.workspaces.push(WorkspaceRecord {
                id: id(&w),
                owner: id(&owner),
                visibility: *ws_vis,
            });
            resources.entry("Workspace").or_default().push(w.clone());
            for p_vis in Visibility::ALL {
                let p = format!("{w}/p({p_vis})");
                world.projects.push(ProjectRecord {
                    id: id(&p),
                    workspace: id(&w),
                    visibility: *p_vis,
                });
                resources.entry("Project").or_default().push(p.clone());
                for a_vis in Visibility::ALL {
                    for access in PublicAccess::ALL {
                        let a = format!("{p}/a({a_vis},{access})");
                        world.assets.push(AssetRecord {
                            id: id(&a),
                            project: id(&p),
                            visibility: *a_vis,
                            public_access: *access,
                        });
                        resources.entry("Asset").or_default().push(a);
                    }
                }
            }
        }
    }
    let ws_roles: [Option<Role>; 4] = [
        None,
        Some(Role::Owner),
        Some(Role::Editor),
        Some(Role::Viewer),
    ];
    let p_roles: [Option<Role>; 3] = [None, Some(Role::Editor), Some(Role::Viewer)];
    let grants: [Option<Permission>; 3] = [None, Some(Permission::Read), Some(Permission::Write)];
    for (label, kind, merged) in KINDS {
        for ws_role in ws_roles {
            for p_role in p_roles {
                for grant in grants {
                    let name = format!(
                        "{label}:ws-{}:p-{}:grant-{}",
                        ws_role.map_or("none", Role::as_str),
                        p_role.map_or("none", Role::as_str),
                        grant.map_or("none", Permission::as_str),
                    );
                    world
                        .users
                        .push(user(&name, kind, merged.then_some(MERGE_TARGET)));
                    add_roles(&mut world, &name, ws_role, p_role, grant);
                }
            }
        }
    }
    (world, resources)
}

fn add_roles(
    world: &mut World,
    user: &str,
    ws_role: Option<Role>,
    p_role: Option<Role>,
    grant: Option<Permission>,
) {
    if let Some(role) = ws_role {
        for w in world.workspaces.clone() {
            world.memberships.push(MembershipRecord {
                user: id(user),
                scope: Scope::Workspace,
                id: w.id,
                role,
            });
        }
    }
    if let Some(role) = p_role {
        for p in world.projects.clone() {
            world.memberships.push(MembershipRecord {
                user: id(user),
                scope: Scope::Project,
                id: p.id,
                role,
            });
        }
    }
    if let Some(permission) = grant {
        for a in world.assets.clone() {
            world.grants.push(GrantRecord {
                user: id(user),
                asset: a.id,
                permission,
            });
        }
    }
}

/// Every user of `world` asked every action (of `actions`: name → resource
/// type basenames) on every resource of those types, with every authn.
pub fn probes(
    world: &World,
    resources: &BTreeMap<&'static str, Vec<String>>,
    actions: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Probe> {
    let mut out = Vec::new();
    for user in &world.users {
        for authn in AUTHNS {
            for (action, types) in actions {
                for ty in types {
                    for resource in resources.get(ty.as_str()).into_iter().flatten() {
                        out.push(Probe {
                            source: "generated".into(),
                            name: String::new(),
                            raw: RawDecision {
                                principal: EntityRef {
                                    ty: "User".into(),
                                    id: user.id.to_string(),
                                },
                                action: action.clone(),
                                resource: EntityRef {
                                    ty: ty.clone(),
                                    id: resource.clone(),
                                },
                                context: super::probe::invite_context(),
                                entities: None,
                                authn,
                            },
                        });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_covers_every_combination() {
        let (world, resources) = world();
        // 2 owners + 3 kinds x 4 workspace roles x 3 project roles x 3 grants.
        assert_eq!(world.users.len(), 2 + 3 * 4 * 3 * 3);
        assert_eq!(resources["Workspace"].len(), 4);
        assert_eq!(resources["Project"].len(), 8);
        assert_eq!(resources["Asset"].len(), 8 * 2 * 3);
        let actions: BTreeMap<String, BTreeSet<String>> =
            [("read".to_string(), ["Asset".to_string()].into())].into();
        assert_eq!(
            probes(&world, &resources, &actions).len(),
            world.users.len() * 3 * 48
        );
    }
}
