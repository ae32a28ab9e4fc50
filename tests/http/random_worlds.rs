//! Randomized worlds: imported over HTTP, every (user, action, resource)
//! asked through `/v1/check/batch`, each answer compared with a reference
//! reading of the CONTRACT §3 table written here in plain Rust. The oracle
//! exists only in this test; the server decides with `policies/`.

use crate::both_backends;
use crate::common::{spawn_app, Db};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Workspace,
    Project,
    Asset,
}

struct W {
    id: String,
    owner: String,
    public: bool,
}
struct P {
    id: String,
    ws: usize,
    public: bool,
}
struct A {
    id: String,
    project: usize,
    public: bool,
    access: &'static str,
}

struct World {
    users: Vec<(String, bool)>, // (id, anonymous)
    ws: Vec<W>,
    ps: Vec<P>,
    assets: Vec<A>,
    ws_roles: HashMap<(usize, usize), &'static str>, // (user, ws) -> role
    p_roles: HashMap<(usize, usize), &'static str>,  // (user, project) -> role
    grants: HashMap<(usize, usize), &'static str>,   // (user, asset) -> permission
}

fn generate(seed: u64) -> World {
    let mut rng = StdRng::seed_from_u64(seed);
    let pick = |rng: &mut StdRng, items: &[&'static str]| items[rng.gen_range(0..items.len())];
    let users: Vec<(String, bool)> = (0..7)
        .map(|u| (format!("s{seed}-u{u}"), rng.gen_bool(0.4)))
        .collect();
    let mut world = World {
        users,
        ws: Vec::new(),
        ps: Vec::new(),
        assets: Vec::new(),
        ws_roles: HashMap::new(),
        p_roles: HashMap::new(),
        grants: HashMap::new(),
    };
    for w in 0..3 {
        let owner = rng.gen_range(0..world.users.len());
        world.ws.push(W {
            id: format!("s{seed}-w{w}"),
            owner: world.users[owner].0.clone(),
            public: rng.gen_bool(0.5),
        });
        for p in 0..2 {
            let pi = world.ps.len();
            world.ps.push(P {
                id: format!("s{seed}-w{w}p{p}"),
                ws: w,
                public: rng.gen_bool(0.5),
            });
            for a in 0..2 {
                let (public, access) = (
                    rng.gen_bool(0.5),
                    pick(&mut rng, &["none", "read", "write"]),
                );
                world.assets.push(A {
                    id: format!("s{seed}-w{w}p{p}a{a}"),
                    project: pi,
                    public,
                    access,
                });
            }
        }
    }
    for u in 0..world.users.len() {
        for w in 0..world.ws.len() {
            if rng.gen_bool(0.35) {
                world
                    .ws_roles
                    .insert((u, w), pick(&mut rng, &["owner", "editor", "viewer"]));
            }
        }
        for p in 0..world.ps.len() {
            if rng.gen_bool(0.3) {
                world
                    .p_roles
                    .insert((u, p), pick(&mut rng, &["editor", "viewer"]));
            }
        }
        for a in 0..world.assets.len() {
            if rng.gen_bool(0.2) {
                world
                    .grants
                    .insert((u, a), pick(&mut rng, &["read", "write"]));
            }
        }
    }
    world
}

fn document(world: &World) -> Value {
    let vis = |p: bool| if p { "public" } else { "private" };
    json!({
        "users": world.users.iter().map(|(id, anon)| json!({"id": id, "kind": if *anon { "anonymous" } else { "registered" }})).collect::<Vec<_>>(),
        "workspaces": world.ws.iter().map(|w| json!({"id": w.id, "owner": w.owner, "visibility": vis(w.public)})).collect::<Vec<_>>(),
        "projects": world.ps.iter().map(|p| json!({"id": p.id, "workspace": world.ws[p.ws].id, "visibility": vis(p.public)})).collect::<Vec<_>>(),
        "assets": world.assets.iter().map(|a| json!({"id": a.id, "project": world.ps[a.project].id, "visibility": vis(a.public), "public_access": a.access})).collect::<Vec<_>>(),
        "memberships": world.ws_roles.iter().map(|((u, w), r)| json!({"user": world.users[*u].0, "scope": "workspace", "id": world.ws[*w].id, "role": r}))
            .chain(world.p_roles.iter().map(|((u, p), r)| json!({"user": world.users[*u].0, "scope": "project", "id": world.ps[*p].id, "role": r})))
            .collect::<Vec<_>>(),
        "grants": world.grants.iter().map(|((u, a), g)| json!({"user": world.users[*u].0, "asset": world.assets[*a].id, "permission": g})).collect::<Vec<_>>(),
    })
}

/// CONTRACT §3, read directly.
fn oracle(world: &World, u: usize, action: &str, ty: Ty, index: usize) -> bool {
    let (user, anonymous) = (&world.users[u].0, world.users[u].1);
    let (w, p, a) = match ty {
        Ty::Workspace => (index, None, None),
        Ty::Project => (world.ps[index].ws, Some(index), None),
        Ty::Asset => {
            let p = world.assets[index].project;
            (world.ps[p].ws, Some(p), Some(index))
        }
    };
    let owns = world.ws[w].owner == *user;
    // Anonymous principals never manage members, invite, or delete a workspace they do not own.
    if anonymous && !owns && (action == "manage_members" || action == "invite") {
        return false;
    }
    if anonymous && !owns && action == "delete" && ty == Ty::Workspace {
        return false;
    }
    if owns {
        return true;
    }
    let role_allows = |role: &str, scope_is_workspace: bool| -> bool {
        match (role, ty, action) {
            ("owner", _, _) => true,
            (_, _, "read") => true,
            ("editor", _, "write") => true,
            ("editor", Ty::Workspace, "create_project") if scope_is_workspace => true,
            ("editor", Ty::Project, "create_asset") => true,
            ("editor", Ty::Project, "delete") => scope_is_workspace,
            ("editor", Ty::Asset, "delete" | "share") => true,
            _ => false,
        }
    };
    if let Some(role) = world.ws_roles.get(&(u, w)) {
        // Workspace membership wins: project roles are not consulted.
        if (!anonymous || world.ws[w].public) && role_allows(role, true) {
            return true;
        }
    } else if let Some(p) = p {
        if let Some(role) = world.p_roles.get(&(u, p)) {
            if (!anonymous || world.ps[p].public) && role_allows(role, false) {
                return true;
            }
        }
    }
    if let Some(a) = a {
        let asset = &world.assets[a];
        if let Some(permission) = world.grants.get(&(u, a)) {
            if (!anonymous || asset.public)
                && (action == "read" || (action == "write" && *permission == "write"))
            {
                return true;
            }
        }
        if asset.public {
            if action == "read" && (asset.access == "read" || asset.access == "write") {
                return true;
            }
            if action == "write" && asset.access == "write" {
                return true;
            }
        }
    }
    false
}

const WORKSPACE_ACTIONS: &[&str] = &[
    "read",
    "write",
    "delete",
    "manage_members",
    "create_project",
    "invite",
];
const PROJECT_ACTIONS: &[&str] = &[
    "read",
    "write",
    "delete",
    "manage_members",
    "create_asset",
    "invite",
];
const ASSET_ACTIONS: &[&str] = &["read", "write", "delete", "share"];

async fn random_worlds_agree_with_the_contract(db: Db) {
    let app = spawn_app(db).await;
    let mut compared = 0;
    let (mut every_request, mut every_expected) = (Vec::new(), Vec::new());
    for seed in 0..25 {
        let world = generate(seed);
        app.import(&document(&world)).await;
        let mut requests = Vec::new();
        let mut expected = Vec::new();
        for u in 0..world.users.len() {
            let first = requests.len();
            let targets = (0..world.ws.len())
                .map(|i| {
                    (
                        Ty::Workspace,
                        i,
                        "Workspace",
                        world.ws[i].id.clone(),
                        WORKSPACE_ACTIONS,
                    )
                })
                .chain((0..world.ps.len()).map(|i| {
                    (
                        Ty::Project,
                        i,
                        "Project",
                        world.ps[i].id.clone(),
                        PROJECT_ACTIONS,
                    )
                }))
                .chain((0..world.assets.len()).map(|i| {
                    (
                        Ty::Asset,
                        i,
                        "Asset",
                        world.assets[i].id.clone(),
                        ASSET_ACTIONS,
                    )
                }));
            for (ty, index, type_name, id, actions) in targets {
                for action in actions {
                    requests.push(json!({"principal": {"type": "User", "id": world.users[u].0}, "action": action,
                                         "resource": {"type": type_name, "id": id}}));
                    expected.push((
                        oracle(&world, u, action, ty, index),
                        format!(
                            "seed {seed}: {} {action} {type_name} {id}",
                            world.users[u].0
                        ),
                    ));
                }
            }
            // One user's requests alone: the fact statement looks each
            // (user, scope) pair up by itself.
            assert_agree(&app, &requests[first..], &expected[first..]).await;
        }
        // The world's users together: memberships and grants are read by
        // a join of the users with the scopes.
        assert_agree(&app, &requests, &expected).await;
        compared += expected.len();
        every_request.extend(requests);
        every_expected.extend(expected);
    }
    assert!(compared > 10_000, "compared only {compared}");
    // The worlds asked together, 4,000 requests a call: hundreds of users
    // and scopes in one fact statement.
    for (requests, expected) in every_request
        .chunks(4_000)
        .zip(every_expected.chunks(4_000))
    {
        assert_agree(&app, requests, expected).await;
    }
}

/// Asks `requests` in one batch, decided on facts read for it (not answers
/// cached by an earlier call), and asserts each answer is `expected`'s.
async fn assert_agree(
    app: &crate::common::TestApp,
    requests: &[Value],
    expected: &[(bool, String)],
) {
    let (status, body) = app
        .post(
            "/v1/check/batch",
            &json!({ "requests": requests, "consistency": {"fully_consistent": true} }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut disagreements = Vec::new();
    for ((want, what), got) in expected
        .iter()
        .zip(body["results"].as_array().expect("results"))
    {
        let allowed = got["decision"] == "allow";
        if allowed != *want {
            disagreements.push(format!(
                "{what}: contract says {}, server says {got}",
                if *want { "allow" } else { "deny" }
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s) in a batch of {}:\n{}",
        disagreements.len(),
        requests.len(),
        disagreements.join("\n")
    );
}
both_backends!(random_worlds, random_worlds_agree_with_the_contract);
