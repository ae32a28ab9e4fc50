//! Facts -> Cedar entities: the only place that knows both the stored rows
//! and the shape of the schema in `schema/warden.cedarschema`.
//!
//! Entities are built directly from records (no JSON round trip, which costs
//! ten times the evaluation itself). Roles and grants become `Role` groups the
//! user is placed in; nothing here decides who may do what.

use crate::domain::{
    AssetRecord, GrantRecord, Id, MembershipRecord, ProjectRecord, Role, Scope, UserRecord,
    WorkspaceRecord, World,
};
use crate::store::revision::entity_key;
use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

/// Cedar namespace of every Warden type.
pub const NAMESPACE: &str = "Warden";

/// The entity types Warden builds, parsed once.
pub struct Types {
    /// `Warden::User`
    pub user: EntityTypeName,
    /// `Warden::Workspace`
    pub workspace: EntityTypeName,
    /// `Warden::Project`
    pub project: EntityTypeName,
    /// `Warden::Asset`
    pub asset: EntityTypeName,
    /// `Warden::Role`
    pub role: EntityTypeName,
    /// `Warden::ApiKey`
    pub api_key: EntityTypeName,
    /// `Warden::Service`
    pub service: EntityTypeName,
    /// `Warden::Client`
    pub client: EntityTypeName,
    /// `Warden::Action`
    pub action: EntityTypeName,
}

fn type_name(basename: &str) -> EntityTypeName {
    #[expect(clippy::expect_used, reason = "constant, valid type names")]
    EntityTypeName::from_str(&format!("{NAMESPACE}::{basename}")).expect("valid type name")
}

/// Warden's entity types.
pub static TYPES: LazyLock<Types> = LazyLock::new(|| Types {
    user: type_name("User"),
    workspace: type_name("Workspace"),
    project: type_name("Project"),
    asset: type_name("Asset"),
    role: type_name("Role"),
    client: type_name("Client"),
    api_key: type_name("ApiKey"),
    service: type_name("Service"),
    action: type_name("Action"),
});

/// The uid of an entity of type `ty` with id `id`.
pub fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

/// The uid of the action named `name`.
pub fn action(name: &str) -> EntityUid {
    uid(&TYPES.action, name)
}

/// The role group of `scope` `id`, e.g. `Role::"workspace/w1/editors"`.
/// Splitting at the last `/` is unambiguous because group names have none.
pub fn role_group(scope: &str, id: &Id, group: &str) -> EntityUid {
    uid(&TYPES.role, &format!("{scope}/{id}/{group}"))
}

fn role_group_name(scope: Scope, role: Role) -> &'static str {
    match (scope, role) {
        (Scope::Workspace, Role::Owner) => "owners",
        (_, Role::Editor) => "editors",
        (_, Role::Viewer) => "viewers",
        // Rejected at the edge (MembershipRecord::problem); a stored row cannot
        // hold it (database CHECK). Mapping it to a group nobody reads keeps
        // this total without granting anything.
        (Scope::Project, Role::Owner) => "invalid-owners",
    }
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_string())
}

fn entity_ref(uid: EntityUid) -> RestrictedExpression {
    RestrictedExpression::new_entity_uid(uid)
}

/// Something in the facts that cannot become an entity.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A record names a parent the facts do not hold.
    #[error("{what} refers to {missing}, which is not in the facts")]
    MissingParent {
        /// The record that refers.
        what: String,
        /// The missing parent.
        missing: String,
    },
    /// Cedar refused an attribute value.
    #[error("cannot build entity {uid}: {message}")]
    Cedar {
        /// The entity.
        uid: String,
        /// Cedar's reason.
        message: String,
    },
}

fn entity(
    uid: EntityUid,
    attrs: HashMap<String, RestrictedExpression>,
    parents: HashSet<EntityUid>,
) -> Result<Entity, BuildError> {
    // Shown only on failure: formatting every uid cost ~2% of a check.
    let failed = uid.clone();
    Entity::new(uid, attrs, parents).map_err(|e| BuildError::Cedar {
        uid: failed.to_string(),
        message: e.to_string(),
    })
}

fn user_entity(user: &UserRecord, groups: HashSet<EntityUid>) -> Result<Entity, BuildError> {
    let mut attrs = HashMap::from([("kind".to_string(), string(user.kind.as_str()))]);
    if user.merged_into.is_some() {
        attrs.insert("merged".to_string(), RestrictedExpression::new_bool(true));
    }
    entity(uid(&TYPES.user, user.id.as_str()), attrs, groups)
}

fn workspace_entity(ws: &WorkspaceRecord) -> Result<Entity, BuildError> {
    let me = uid(&TYPES.workspace, ws.id.as_str());
    let group = |name| entity_ref(role_group("workspace", &ws.id, name));
    let attrs = HashMap::from([
        ("workspace".to_string(), entity_ref(me.clone())),
        (
            "owner".to_string(),
            entity_ref(uid(&TYPES.user, ws.owner.as_str())),
        ),
        ("visibility".to_string(), string(ws.visibility.as_str())),
        ("owners".to_string(), group("owners")),
        ("editors".to_string(), group("editors")),
        ("viewers".to_string(), group("viewers")),
        ("members".to_string(), group("members")),
    ]);
    entity(me, attrs, HashSet::new())
}

fn project_entity(project: &ProjectRecord) -> Result<Entity, BuildError> {
    let me = uid(&TYPES.project, project.id.as_str());
    let workspace = uid(&TYPES.workspace, project.workspace.as_str());
    let group = |name| entity_ref(role_group("project", &project.id, name));
    let attrs = HashMap::from([
        ("project".to_string(), entity_ref(me.clone())),
        ("workspace".to_string(), entity_ref(workspace.clone())),
        (
            "visibility".to_string(),
            string(project.visibility.as_str()),
        ),
        ("editors".to_string(), group("editors")),
        ("viewers".to_string(), group("viewers")),
    ]);
    entity(me, attrs, HashSet::from([workspace]))
}

fn asset_entity(asset: &AssetRecord, workspace: &Id) -> Result<Entity, BuildError> {
    let me = uid(&TYPES.asset, asset.id.as_str());
    let project = uid(&TYPES.project, asset.project.as_str());
    let group = |name| entity_ref(role_group("asset", &asset.id, name));
    let attrs = HashMap::from([
        ("project".to_string(), entity_ref(project.clone())),
        (
            "workspace".to_string(),
            entity_ref(uid(&TYPES.workspace, workspace.as_str())),
        ),
        ("visibility".to_string(), string(asset.visibility.as_str())),
        (
            "public_access".to_string(),
            string(asset.public_access.as_str()),
        ),
        ("readers".to_string(), group("readers")),
        ("writers".to_string(), group("writers")),
    ]);
    entity(me, attrs, HashSet::from([project]))
}

/// The role groups each user of `world` belongs to, from its memberships and grants.
fn groups_by_user(world: &World) -> HashMap<&Id, HashSet<EntityUid>> {
    let mut groups: HashMap<&Id, HashSet<EntityUid>> = HashMap::new();
    for m in &world.memberships {
        groups
            .entry(&m.user)
            .or_default()
            .extend(membership_groups(m));
    }
    for g in &world.grants {
        groups.entry(&g.user).or_default().insert(grant_group(g));
    }
    groups
}

/// The groups a membership places its user in: its scope's group of its
/// role and, in a workspace, the workspace's members.
fn membership_groups(m: &MembershipRecord) -> impl Iterator<Item = EntityUid> + '_ {
    let role = role_group(m.scope.as_str(), &m.id, role_group_name(m.scope, m.role));
    let members = (m.scope == Scope::Workspace).then(|| role_group("workspace", &m.id, "members"));
    std::iter::once(role).chain(members)
}

/// The group a grant places its user in: its asset's readers or writers.
fn grant_group(g: &GrantRecord) -> EntityUid {
    let name = match g.permission {
        crate::domain::Permission::Read => "readers",
        crate::domain::Permission::Write => "writers",
    };
    role_group("asset", &g.asset, name)
}

/// Worlds of at most this many records are looked up by scanning them (a
/// single check's slice holds a handful); larger ones through maps built
/// once ([`Lookup`]).
const SCANNED_UP_TO: usize = 64;

/// `world`'s records by id, and its memberships and grants by user, to
/// describe many requests over one world ([`situation`]: a batch, a search
/// page) without scanning the whole world for each request (which made a
/// batch's situations cost the square of its size).
pub struct Lookup<'w> {
    world: &'w World,
    maps: Option<Maps<'w>>,
}

/// The maps of a [`Lookup`] over a larger world.
struct Maps<'w> {
    users: HashMap<&'w str, &'w UserRecord>,
    workspaces: HashMap<&'w str, &'w WorkspaceRecord>,
    projects: HashMap<&'w str, &'w ProjectRecord>,
    assets: HashMap<&'w str, &'w AssetRecord>,
    memberships: HashMap<&'w str, Vec<&'w MembershipRecord>>,
    grants: HashMap<&'w str, Vec<&'w GrantRecord>>,
}

/// `records` listed by the key `key` gives each.
fn by_key<R>(records: &[R], key: fn(&R) -> &str) -> HashMap<&str, Vec<&R>> {
    let mut out: HashMap<&str, Vec<&R>> = HashMap::new();
    for r in records {
        out.entry(key(r)).or_default().push(r);
    }
    out
}

/// `records` by id: the first of each id, as a scan finds it (ids are
/// unique in a stored world).
fn by_id<R>(records: &[R], id: fn(&R) -> &str) -> HashMap<&str, &R> {
    let mut out = HashMap::with_capacity(records.len());
    for r in records {
        out.entry(id(r)).or_insert(r);
    }
    out
}

/// The record `id` names: from `map` when there is one, else found in `all`.
fn find<'w, R>(
    map: Option<&HashMap<&'w str, &'w R>>,
    all: &'w [R],
    id_of: fn(&R) -> &str,
    id: &str,
) -> Option<&'w R> {
    match map {
        Some(map) => map.get(id).copied(),
        None => all.iter().find(|r| id_of(r) == id),
    }
}

/// The records of user `who`: listed in `map` when there is one, else
/// filtered from `all`.
fn of_user<'a, 'w: 'a, R>(
    map: Option<&'a HashMap<&'w str, Vec<&'w R>>>,
    all: &'w [R],
    user_of: fn(&R) -> &str,
    who: &'a str,
) -> impl Iterator<Item = &'w R> + 'a {
    let listed = map.map(|map| map.get(who).map_or(&[][..], Vec::as_slice));
    let scanned = listed
        .is_none()
        .then_some(all)
        .into_iter()
        .flatten()
        .filter(move |r| user_of(r) == who);
    listed.into_iter().flatten().copied().chain(scanned)
}

impl<'w> Lookup<'w> {
    /// A lookup over `world`.
    pub fn new(world: &'w World) -> Self {
        Self::built(world, world.records() > SCANNED_UP_TO)
    }

    /// A lookup over `world` through maps (`mapped`) or by scanning it:
    /// the same answers either way (test
    /// `decision::tests::requests_in_one_situation_are_decided_alike`).
    pub(crate) fn built(world: &'w World, mapped: bool) -> Self {
        let maps = mapped.then(|| Maps {
            users: by_id(&world.users, |r| r.id.as_str()),
            workspaces: by_id(&world.workspaces, |r| r.id.as_str()),
            projects: by_id(&world.projects, |r| r.id.as_str()),
            assets: by_id(&world.assets, |r| r.id.as_str()),
            memberships: by_key(&world.memberships, |r| r.user.as_str()),
            grants: by_key(&world.grants, |r| r.user.as_str()),
        });
        Lookup { world, maps }
    }

    fn user(&self, id: &str) -> Option<&'w UserRecord> {
        let map = self.maps.as_ref().map(|m| &m.users);
        find(map, &self.world.users, |r| r.id.as_str(), id)
    }

    fn workspace(&self, id: &str) -> Option<&'w WorkspaceRecord> {
        let map = self.maps.as_ref().map(|m| &m.workspaces);
        find(map, &self.world.workspaces, |r| r.id.as_str(), id)
    }

    fn project(&self, id: &str) -> Option<&'w ProjectRecord> {
        let map = self.maps.as_ref().map(|m| &m.projects);
        find(map, &self.world.projects, |r| r.id.as_str(), id)
    }

    fn asset(&self, id: &str) -> Option<&'w AssetRecord> {
        let map = self.maps.as_ref().map(|m| &m.assets);
        find(map, &self.world.assets, |r| r.id.as_str(), id)
    }

    fn memberships_of<'a>(
        &'a self,
        who: &'a str,
    ) -> impl Iterator<Item = &'w MembershipRecord> + 'a {
        let map = self.maps.as_ref().map(|m| &m.memberships);
        of_user(map, &self.world.memberships, |r| r.user.as_str(), who)
    }

    fn grants_of<'a>(&'a self, who: &'a str) -> impl Iterator<Item = &'w GrantRecord> + 'a {
        let map = self.maps.as_ref().map(|m| &m.grants);
        of_user(map, &self.world.grants, |r| r.user.as_str(), who)
    }

    /// Whether the world places user `who` in `group`, as [`build`] does.
    fn in_group(&self, who: &str, group: &EntityUid) -> bool {
        self.memberships_of(who)
            .any(|m| membership_groups(m).any(|g| g == *group))
            || self.grants_of(who).any(|g| grant_group(g) == *group)
    }
}

/// Builds one Cedar entity per user, workspace, project and asset of `world`.
///
/// Every asset's project must be in `world` (its workspace is read from it).
pub fn build(world: &World) -> Result<Vec<Entity>, BuildError> {
    let mut groups = groups_by_user(world);
    let workspace_of: HashMap<&Id, &Id> = world
        .projects
        .iter()
        .map(|p| (&p.id, &p.workspace))
        .collect();
    let mut out = Vec::with_capacity(
        world.users.len() + world.workspaces.len() + world.projects.len() + world.assets.len(),
    );
    for user in &world.users {
        out.push(user_entity(
            user,
            groups.remove(&user.id).unwrap_or_default(),
        )?);
    }
    for ws in &world.workspaces {
        out.push(workspace_entity(ws)?);
    }
    for project in &world.projects {
        out.push(project_entity(project)?);
    }
    for asset in &world.assets {
        let workspace =
            workspace_of
                .get(&asset.project)
                .ok_or_else(|| BuildError::MissingParent {
                    what: format!("asset {:?}", asset.id.as_str()),
                    missing: format!("project {:?}", asset.project.as_str()),
                })?;
        out.push(asset_entity(asset, workspace)?);
    }
    Ok(out)
}

/// Where each asset and project of a world hangs: what a decision over it
/// depends on besides its principal and resource.
pub struct Ancestry<'w> {
    project_of: HashMap<&'w str, &'w str>,
    workspace_of: HashMap<&'w str, &'w str>,
}

impl<'w> Ancestry<'w> {
    /// The parents of `world`'s assets and projects.
    pub fn new(world: &'w World) -> Self {
        Ancestry {
            project_of: world
                .assets
                .iter()
                .map(|a| (a.id.as_str(), a.project.as_str()))
                .collect(),
            workspace_of: world
                .projects
                .iter()
                .map(|p| (p.id.as_str(), p.workspace.as_str()))
                .collect(),
        }
    }

    /// The change keys (`store::revision`) a decision about `principal` and
    /// `resource` depends on: both, and the resource's ancestors (an
    /// asset's project and workspace, a project's workspace). The slice
    /// holds nothing else: the principal's memberships and grants are
    /// changed under its own key. Unknown entities are named too, so that
    /// creating them spoils a cached "unknown" answer.
    pub fn dependencies(&self, principal: &EntityUid, resource: &EntityUid) -> Vec<String> {
        let key = |uid: &EntityUid| entity_key(uid.type_name().basename(), uid.id().unescaped());
        let mut keys = vec![key(principal), key(resource)];
        let ty = resource.type_name();
        let id = resource.id().unescaped();
        let project = if *ty == TYPES.asset {
            self.project_of.get(id).copied()
        } else if *ty == TYPES.project {
            Some(id)
        } else {
            None
        };
        if let Some(project) = project {
            if *ty != TYPES.project {
                keys.push(entity_key(TYPES.project.basename(), project));
            }
            if let Some(workspace) = self.workspace_of.get(project) {
                keys.push(entity_key(TYPES.workspace.basename(), workspace));
            }
        }
        keys
    }
}

/// What a decision about `principal` on `resource` can see of `world`,
/// written with every id replaced by its place in the request: the
/// principal is user `0`, the resource and its ancestors are asset,
/// project and workspace `0`, and the workspace's owner is user `0` (the
/// principal) or `1`. Everything else the entities built from `world`
/// ([`build`]) would show a policy through the principal, the resource and
/// their attributes is written as is: kinds, visibilities, public access,
/// whether a user was merged, and the roles and grants of users `0` and `1`
/// on those scopes (the only groups a policy can name, through the
/// resource's attributes). Nothing else of `world` is reachable from the
/// request, so it cannot change the decision.
///
/// Cedar cannot see an id except by comparing entities with each other or
/// with an entity literal written in a policy (`principal ==
/// Warden::User::"alice"`, `resource in Warden::Workspace::"acme"`,
/// `principal in Warden::Role::"project/p1/editors"`). So the situation
/// also says, for each entity the policies name (`named`, from
/// `policy::PolicyEngine::named_entities`), which entity of the request it
/// is, if any (user `0` or `1`, asset, project or workspace `0`, or one of
/// their role groups), and whether users `0` and `1` are in it, when it is
/// a role group (also one of another scope: a batch may load those).
/// Then two requests with the same situation (and the same action and
/// context) are decided alike: the same decision, for the same policies.
///
/// `None` when the principal is not a stored user of `world`, or the
/// resource not a stored workspace, project or asset (those are decided,
/// as unknown, without policies), or an asset's project is missing.
///
/// Must name every field [`build`] turns into an attribute or a parent: a
/// field it leaves out here would make requests that differ by it look
/// alike (test `decision::tests::requests_in_one_situation_are_decided_alike`).
pub fn situation(
    world: &Lookup<'_>,
    principal: &EntityUid,
    resource: &EntityUid,
    named: &[EntityUid],
) -> Option<String> {
    use std::fmt::Write;
    if *principal.type_name() != TYPES.user {
        return None;
    }
    let user = principal.id().unescaped();
    let me = world.user(user)?;
    let ty = resource.type_name();
    let id = resource.id().unescaped();
    let (asset, project_id) = if *ty == TYPES.asset {
        let asset = world.asset(id)?;
        (Some(asset), Some(asset.project.as_str()))
    } else if *ty == TYPES.project {
        (None, Some(id))
    } else if *ty == TYPES.workspace {
        (None, None)
    } else {
        return None;
    };
    let project = match project_id {
        Some(p) => Some(world.project(p)?),
        None => None,
    };
    let workspace_id = project.map_or(id, |p| p.workspace.as_str());
    let workspace = world.workspace(workspace_id);
    if *ty == TYPES.workspace && workspace.is_none() {
        return None;
    }
    let mut out = String::with_capacity(96);
    let person = |out: &mut String, u: &UserRecord| {
        let _ = write!(out, "{}:{}", u.kind.as_str(), u.merged_into.is_some());
    };
    // The roles and grants of `who` on the scopes above, in a fixed order.
    let held = |out: &mut String, who: &str| {
        let mut roles: Vec<String> = Vec::new();
        for m in world.memberships_of(who) {
            let on = match m.scope {
                Scope::Workspace if Some(m.id.as_str()) == workspace.map(|w| w.id.as_str()) => "w",
                Scope::Project if Some(m.id.as_str()) == project.map(|p| p.id.as_str()) => "p",
                _ => continue,
            };
            roles.push(format!("{on}{}", m.role.as_str()));
        }
        for g in world.grants_of(who) {
            if Some(g.asset.as_str()) == asset.map(|a| a.id.as_str()) {
                roles.push(format!("a{}", g.permission.as_str()));
            }
        }
        roles.sort();
        out.push('[');
        out.push_str(&roles.join(","));
        out.push(']');
    };
    out.push_str(ty.basename());
    out.push_str(" u0=");
    person(&mut out, me);
    held(&mut out, user);
    if let Some(a) = asset {
        let _ = write!(
            out,
            " a0={}:{}",
            a.visibility.as_str(),
            a.public_access.as_str()
        );
    }
    if let Some(p) = project {
        let _ = write!(out, " p0={}", p.visibility.as_str());
    }
    match workspace {
        None => out.push_str(" w0=absent"),
        Some(w) if w.owner.as_str() == user => {
            let _ = write!(out, " w0={}:u0", w.visibility.as_str());
        }
        Some(w) => {
            let _ = write!(out, " w0={}:u1 u1=", w.visibility.as_str());
            match world.user(w.owner.as_str()) {
                Some(owner) => {
                    person(&mut out, owner);
                    held(&mut out, w.owner.as_str());
                }
                None => out.push_str("absent"),
            }
        }
    }
    if !named.is_empty() {
        let places = Places {
            user,
            owner: workspace
                .map(|w| w.owner.as_str())
                .filter(|owner| *owner != user),
            asset: asset.map(|a| a.id.as_str()),
            project: project_id,
            workspace: workspace_id,
        };
        out.push_str(" named=");
        for uid in named {
            places.write_named(world, uid, &mut out);
        }
    }
    Some(out)
}

/// The ids of a request's places ([`situation`]): the principal (user
/// `0`), the workspace's owner when that is someone else (user `1`), and
/// the resource with its ancestors.
struct Places<'a> {
    user: &'a str,
    owner: Option<&'a str>,
    asset: Option<&'a str>,
    project: Option<&'a str>,
    workspace: &'a str,
}

impl Places<'_> {
    /// Writes which place the named entity `uid` is (`u0`, `u1`, `a0`,
    /// `p0`, `w0`, a place's role group such as `w0/editors`, or `-`) and,
    /// for a role group, whether users `0` and `1` are in it over `world`.
    fn write_named(&self, world: &Lookup<'_>, uid: &EntityUid, out: &mut String) {
        let ty = uid.type_name();
        let id = uid.id().unescaped();
        let is = |place: Option<&str>| place == Some(id);
        if *ty == TYPES.role {
            self.write_named_group(world, uid, out);
        } else if *ty == TYPES.user {
            out.push_str(if is(Some(self.user)) {
                "u0"
            } else if is(self.owner) {
                "u1"
            } else {
                "-"
            });
        } else if *ty == TYPES.asset {
            out.push_str(if is(self.asset) { "a0" } else { "-" });
        } else if *ty == TYPES.project {
            out.push_str(if is(self.project) { "p0" } else { "-" });
        } else if *ty == TYPES.workspace {
            out.push_str(if is(Some(self.workspace)) { "w0" } else { "-" });
        } else {
            out.push('-');
        }
        out.push(';');
    }

    /// [`Places::write_named`] for the role group `uid`: which place's
    /// group it is, if any, and whether users `0` and `1` are in it.
    fn write_named_group(&self, world: &Lookup<'_>, uid: &EntityUid, out: &mut String) {
        // `scope/id/group`: group names hold no `/`, ids may.
        let place = uid
            .id()
            .unescaped()
            .rsplit_once('/')
            .and_then(|(scope_and_id, group)| {
                let (scope, of) = scope_and_id.split_once('/')?;
                let place = match scope {
                    "workspace" if of == self.workspace => "w0",
                    "project" if Some(of) == self.project => "p0",
                    "asset" if Some(of) == self.asset => "a0",
                    _ => return None,
                };
                Some((place, group))
            });
        match place {
            Some((place, group)) => {
                out.push_str(place);
                out.push('/');
                out.push_str(group);
            }
            None => out.push('-'),
        }
        if world.in_group(self.user, uid) {
            out.push_str("+u0");
        }
        if self.owner.is_some_and(|owner| world.in_group(owner, uid)) {
            out.push_str("+u1");
        }
    }
}

/// Whether `world` holds the stored record `uid` names (a user, workspace,
/// project or asset; any other type is never stored).
pub fn stored(world: &World, uid: &EntityUid) -> bool {
    let id = uid.id().unescaped();
    let ty = uid.type_name();
    if *ty == TYPES.user {
        world.users.iter().any(|r| r.id.as_str() == id)
    } else if *ty == TYPES.workspace {
        world.workspaces.iter().any(|r| r.id.as_str() == id)
    } else if *ty == TYPES.project {
        world.projects.iter().any(|r| r.id.as_str() == id)
    } else if *ty == TYPES.asset {
        world.assets.iter().any(|r| r.id.as_str() == id)
    } else {
        false
    }
}

/// The entity of an API key with its scopes.
pub fn api_key_entity(id: &str, scopes: &[String]) -> Result<Entity, BuildError> {
    let scopes = RestrictedExpression::new_set(scopes.iter().map(|s| string(s)));
    entity(
        uid(&TYPES.api_key, id),
        HashMap::from([("scopes".to_string(), scopes)]),
        HashSet::new(),
    )
}

/// The uid of the Warden service, the resource of every API route.
pub fn service() -> EntityUid {
    uid(&TYPES.service, "warden")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::revision;

    #[test]
    fn answers_depend_on_the_keys_writes_name() {
        let world: World = serde_json::from_value(serde_json::json!({
            "users": [{"id": "bob", "kind": "registered"}],
            "workspaces": [{"id": "w1", "owner": "bob"}],
            "projects": [{"id": "p1", "workspace": "w1"}],
            "assets": [{"id": "a1", "project": "p1"}]
        }))
        .unwrap();
        let ancestry = Ancestry::new(&world);
        let bob = uid(&TYPES.user, "bob");
        assert_eq!(
            ancestry.dependencies(&bob, &uid(&TYPES.asset, "a1")),
            [
                revision::user("bob"),
                revision::asset("a1"),
                revision::project("p1"),
                revision::workspace("w1")
            ]
        );
        assert_eq!(
            ancestry.dependencies(&bob, &uid(&TYPES.project, "p1")),
            [
                revision::user("bob"),
                revision::project("p1"),
                revision::workspace("w1")
            ]
        );
        assert_eq!(
            ancestry.dependencies(&bob, &uid(&TYPES.workspace, "w1")),
            [revision::user("bob"), revision::workspace("w1")]
        );
        // Not stored: its creation must still reach the cached "unknown".
        assert_eq!(
            ancestry.dependencies(&uid(&TYPES.user, "eve"), &uid(&TYPES.asset, "a9")),
            [revision::user("eve"), revision::asset("a9")]
        );
    }
}
