//! Decisions: a request parsed against the schema, its facts loaded in one
//! round trip for the whole batch, and each item evaluated by the policies.
//!
//! Nothing here decides who may do what. It refuses what cannot be asked
//! (unknown actions or types: a 400 naming the field) and denies what cannot
//! be answered (unknown principal or resource: deny with the reason).

use crate::entities::{self, TYPES};
use crate::policy::{PolicyEngine, Verdict};
use crate::store::facts::{FactKeys, MAX_KEYS};
use crate::store::{Store, StoreError};
use cedar_policy::{Context, Entities, Entity, EntityTypeName, EntityUid, EvalResult, Request};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// How the principal of a decision was established. Set by Warden, visible
/// to policies as `context.authn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authn {
    /// A trusted app, authenticated by its API key, named the principal.
    App,
    /// Warden's own anonymous JWT.
    AnonymousToken,
    /// The identity provider's JWT.
    OidcToken,
}

impl std::str::FromStr for Authn {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "app" => Ok(Authn::App),
            "anonymous_token" => Ok(Authn::AnonymousToken),
            "oidc_token" => Ok(Authn::OidcToken),
            other => Err(format!(
                "unknown authn {other:?}; expected app, anonymous_token or oidc_token"
            )),
        }
    }
}

impl Authn {
    /// The value policies see.
    pub fn as_str(self) -> &'static str {
        match self {
            Authn::App => "app",
            Authn::AnonymousToken => "anonymous_token",
            Authn::OidcToken => "oidc_token",
        }
    }
}

/// A client mistake in a decision request, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InputError {
    /// JSON path of the field, e.g. `requests[3].action`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn input_error(field: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        field: field.into(),
        message: message.into(),
    }
}

/// An entity named by type (without the `Warden::` namespace) and id.
#[derive(Clone, Debug)]
pub struct EntityRef {
    /// Type name, e.g. `Asset`.
    pub ty: String,
    /// Id.
    pub id: String,
}

/// A decision request as received, before validation.
#[derive(Clone, Debug)]
pub struct RawDecision {
    /// Who asks.
    pub principal: EntityRef,
    /// Action name, e.g. `read`.
    pub action: String,
    /// On what.
    pub resource: EntityRef,
    /// Extra context from the caller.
    pub context: Map<String, Value>,
    /// Extra entities from the caller (Cedar entity JSON).
    pub entities: Option<Vec<Value>>,
    /// How the principal was established.
    pub authn: Authn,
}

/// A validated decision request.
#[derive(Clone, Debug)]
pub struct DecisionInput {
    /// Principal uid.
    pub principal: EntityUid,
    /// Action uid.
    pub action: EntityUid,
    /// Resource uid.
    pub resource: EntityUid,
    /// The Cedar context when the caller sent one (with `authn` added),
    /// parsed once; without one it is built only when evaluated.
    context: Option<Context>,
    supplied: Vec<Entity>,
    /// How the principal was established.
    pub authn: Authn,
    /// The caller's context as sent (without `authn`), for the decision log.
    pub context_json: Map<String, Value>,
    /// The caller's entities as sent, for the decision log.
    pub entities_json: Option<Vec<Value>>,
}

/// Types whose entities only Warden may create: role groups come from stored
/// memberships and grants, actions from the schema, keys from the key table.
fn reserved(ty: &EntityTypeName) -> bool {
    *ty == TYPES.role
        || *ty == TYPES.action
        || *ty == TYPES.api_key
        || *ty == TYPES.service
        || *ty == TYPES.client
}

fn entity_uid(
    engine: &PolicyEngine,
    r: &EntityRef,
    allowed: &[String],
    role: &str,
    action: &str,
    field: &str,
) -> Result<EntityUid, InputError> {
    let Some(ty) = engine.entity_type(&r.ty).filter(|t| !reserved(t)) else {
        return Err(input_error(
            format!("{field}.type"),
            format!(
                "unknown entity type {:?}; expected one of: {}",
                r.ty,
                allowed.join(", ")
            ),
        ));
    };
    if !allowed.contains(&r.ty) {
        return Err(input_error(
            format!("{field}.type"),
            format!(
                "{:?} cannot be the {role} of action {action:?}; expected one of: {}",
                r.ty,
                allowed.join(", ")
            ),
        ));
    }
    crate::domain::Id::parse(r.id.clone()).map_err(|e| input_error(format!("{field}.id"), e))?;
    Ok(entities::uid(ty, &r.id))
}

fn supplied_entities(
    engine: &PolicyEngine,
    values: Vec<Value>,
    field: &str,
) -> Result<Vec<Entity>, InputError> {
    let parsed = Entities::from_json_value(Value::Array(values), Some(engine.schema()))
        .map_err(|e| input_error(field, format!("invalid Cedar entities: {e}")))?;
    let mut out = Vec::new();
    for entity in parsed.iter() {
        let uid = entity.uid();
        if *uid.type_name() == TYPES.action {
            continue; // added by Cedar from the schema, not by the caller
        }
        if reserved(uid.type_name()) {
            return Err(input_error(
                field,
                format!(
                    "entities of type {} come only from Warden; remove {uid}",
                    uid.type_name().basename()
                ),
            ));
        }
        let (_, _, parents) = entity.clone().into_inner();
        if let Some(role) = parents.iter().find(|p| *p.type_name() == TYPES.role) {
            return Err(input_error(
                field,
                format!("{uid} cannot be placed in {role}: roles and grants come only from Warden's store"),
            ));
        }
        out.push(entity.clone());
    }
    Ok(out)
}

impl DecisionInput {
    /// Validates `raw` against the schema; `path` prefixes field names in
    /// errors (e.g. `requests[3].`).
    pub fn parse(engine: &PolicyEngine, raw: RawDecision, path: &str) -> Result<Self, InputError> {
        let Some(shape) = engine.decision_action(&raw.action) else {
            return Err(input_error(
                format!("{path}action"),
                format!(
                    "unknown action {:?}; expected one of: {}",
                    raw.action,
                    engine.decision_actions().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let action = entities::action(&raw.action);
        let principal = entity_uid(
            engine,
            &raw.principal,
            &shape.principals,
            "principal",
            &raw.action,
            &format!("{path}principal"),
        )?;
        let resource = entity_uid(
            engine,
            &raw.resource,
            &shape.resources,
            "resource",
            &raw.action,
            &format!("{path}resource"),
        )?;
        if raw.context.contains_key("authn") {
            return Err(input_error(
                format!("{path}context.authn"),
                "authn is set by Warden from how the principal authenticated; remove it",
            ));
        }
        // A context sent by the caller is parsed here, so a bad one is
        // refused naming this request's field, cached neighbours or not.
        // Without one, the Cedar context is built only when the decision is
        // evaluated (`cedar_context`): a cached answer never needs it.
        let context_json = raw.context;
        let context = if context_json.is_empty() {
            None
        } else {
            let mut with_authn = context_json.clone();
            with_authn.insert("authn".into(), Value::String(raw.authn.as_str().into()));
            Some(
                Context::from_json_value(Value::Object(with_authn), None)
                    .map_err(|e| input_error(format!("{path}context"), e.to_string()))?,
            )
        };
        let (supplied, entities_json) = match raw.entities {
            Some(values) if !values.is_empty() => (
                supplied_entities(engine, values.clone(), &format!("{path}entities"))?,
                Some(values),
            ),
            _ => (Vec::new(), None),
        };
        Ok(DecisionInput {
            principal,
            action,
            resource,
            context,
            supplied,
            authn: raw.authn,
            context_json,
            entities_json,
        })
    }

    /// The Cedar context: the caller's context plus `authn`; `field` names
    /// the context in errors.
    pub(crate) fn cedar_context(&self, field: &str) -> Result<Context, InputError> {
        if let Some(context) = &self.context {
            return Ok(context.clone());
        }
        authn_context(self.authn).map_err(|e| input_error(field, e))
    }

    /// The situation of this request over the world `facts` looks up
    /// (`entities::situation`, telling apart the entities `named` by the
    /// policies, with the action and how the principal authenticated):
    /// requests in one situation are decided alike. `None` when the request
    /// brings its own context or entities, or names an unknown principal or
    /// resource.
    pub(crate) fn situation(
        &self,
        facts: &entities::Lookup<'_>,
        named: &[EntityUid],
    ) -> Option<String> {
        if self.context.is_some() || !self.supplied.is_empty() {
            return None;
        }
        let mut key = entities::situation(facts, &self.principal, &self.resource, named)?;
        key.push_str(" action=");
        key.push_str(self.action.id().unescaped());
        key.push_str(" authn=");
        key.push_str(self.authn.as_str());
        Some(key)
    }

    /// Adds the ids whose facts this decision needs to `keys`.
    pub(crate) fn collect_keys(&self, keys: &mut FactKeys) {
        let mut add = |uid: &EntityUid| {
            let id = uid.id().unescaped().to_string();
            let ty = uid.type_name();
            if *ty == TYPES.user {
                keys.users.insert(id);
            } else if *ty == TYPES.workspace {
                keys.workspaces.insert(id);
            } else if *ty == TYPES.project {
                keys.projects.insert(id);
            } else if *ty == TYPES.asset {
                keys.assets.insert(id);
            }
        };
        add(&self.principal);
        add(&self.resource);
        // Supplied entities may hang off stored ones (a new asset in a stored
        // project): load those, and the supplied ids to detect overrides.
        for entity in &self.supplied {
            add(&entity.uid());
            for attr in ["workspace", "project", "owner"] {
                if let Some(Ok(EvalResult::EntityUid(uid))) = entity.attr(attr) {
                    add(&uid);
                }
            }
            let (_, _, parents) = entity.clone().into_inner();
            parents.iter().for_each(&mut add);
        }
    }
}

/// The context of a request that sent none: `{authn}` alone, built once
/// per kind of authentication (a clone shares it) instead of per decision.
fn authn_context(authn: Authn) -> Result<Context, String> {
    fn build(authn: Authn) -> Result<Context, String> {
        let value = cedar_policy::RestrictedExpression::new_string(authn.as_str().into());
        Context::from_pairs([("authn".to_string(), value)]).map_err(|e| e.to_string())
    }
    static CONTEXTS: std::sync::LazyLock<[Result<Context, String>; 3]> =
        std::sync::LazyLock::new(|| {
            [Authn::App, Authn::AnonymousToken, Authn::OidcToken].map(build)
        });
    let index = match authn {
        Authn::App => 0,
        Authn::AnonymousToken => 1,
        Authn::OidcToken => 2,
    };
    CONTEXTS.get(index).cloned().unwrap_or_else(|| build(authn))
}

/// Why a batch could not be decided at all.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// A client mistake found once the facts were loaded.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The database failed; every decision is deny.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn unknown(what: &str, uid: &EntityUid) -> Verdict {
    Verdict::deny_because(format!(
        "unknown {what} {uid}: it is neither stored by Warden nor supplied in the request"
    ))
}

/// The facts every input needs, in one load. `path` names the list in
/// errors (e.g. `requests`).
pub async fn load_world(
    store: &Store,
    inputs: &[DecisionInput],
    path: &str,
) -> Result<crate::domain::World, DecideError> {
    let mut keys = FactKeys::default();
    for input in inputs {
        input.collect_keys(&mut keys);
    }
    if keys.len() > MAX_KEYS {
        return Err(input_error(
            path,
            format!(
                "the batch names {} distinct entities; at most {MAX_KEYS} fit in one call, split it",
                keys.len()
            ),
        )
        .into());
    }
    Ok(store.load_facts(&keys).await?)
}

/// Whether some of `inputs` supply entities of their own.
pub fn supplies_entities(inputs: &[DecisionInput]) -> bool {
    inputs.iter().any(|i| !i.supplied.is_empty())
}

/// The facts of `world` as Cedar entities, and (only when some input
/// supplies entities) the uids Warden stores, which supplied ones may not
/// replace.
fn stored_entities(
    world: &crate::domain::World,
    supplied: bool,
) -> Result<(Entities, HashSet<EntityUid>), DecideError> {
    let stored = entities::build(world).map_err(|e| StoreError::Query(e.to_string()))?;
    let stored_uids: HashSet<EntityUid> = if supplied {
        stored.iter().map(Entity::uid).collect()
    } else {
        HashSet::new()
    };
    let base =
        Entities::from_entities(stored, None).map_err(|e| StoreError::Query(e.to_string()))?;
    Ok((base, stored_uids))
}

/// `base` plus what `input` supplies; `field` names the entities in errors.
fn with_supplied(
    base: &Entities,
    stored_uids: &HashSet<EntityUid>,
    input: &DecisionInput,
    field: String,
) -> Result<Option<Entities>, DecideError> {
    if input.supplied.is_empty() {
        return Ok(None);
    }
    if let Some(clash) = input
        .supplied
        .iter()
        .find(|e| stored_uids.contains(&e.uid()))
    {
        return Err(input_error(
            field,
            format!(
                "{} is stored by Warden; request-supplied entities may add entities but never replace stored ones",
                clash.uid()
            ),
        )
        .into());
    }
    let merged = base
        .clone()
        .add_entities(input.supplied.iter().cloned(), None)
        .map_err(|e| input_error(field, e.to_string()))?;
    Ok(Some(merged))
}

/// Decides every input over the facts in `world` (loaded from the store, or
/// the world of a policy test suite).
pub fn decide_in_world(
    engine: &PolicyEngine,
    world: &crate::domain::World,
    inputs: &[DecisionInput],
    path: &str,
) -> Result<Vec<Verdict>, DecideError> {
    let decider = WorldDecider::new(world, inputs)?;
    inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            decider.decide(engine, input, &request_prefix(path, index, inputs.len()))
        })
        .collect()
}

/// How errors name the fields of request `index` of `count` in the list
/// `path`: `path[index].`, or nothing for a lone check with no list.
pub(crate) fn request_prefix(path: &str, index: usize, count: usize) -> String {
    if count == 1 && path.is_empty() {
        String::new()
    } else {
        format!("{path}[{index}].")
    }
}

/// The facts of a world as Cedar entities, built once, to decide its inputs
/// one at a time (a caller may yield to other work between them).
pub struct WorldDecider {
    base: Entities,
    stored_uids: HashSet<EntityUid>,
}

impl WorldDecider {
    /// Builds the entities of `world` for deciding `inputs`.
    pub fn new(
        world: &crate::domain::World,
        inputs: &[DecisionInput],
    ) -> Result<Self, DecideError> {
        Self::for_requests(world, supplies_entities(inputs))
    }

    /// Builds the entities of `world` for deciding requests of which some
    /// supply entities (`supplied`) or none do.
    pub fn for_requests(world: &crate::domain::World, supplied: bool) -> Result<Self, DecideError> {
        let (base, stored_uids) = stored_entities(world, supplied)?;
        Ok(WorldDecider { base, stored_uids })
    }

    /// Decides `input`, one of those it was built for; errors name its
    /// fields after `prefix` (`request_prefix`).
    pub fn decide(
        &self,
        engine: &PolicyEngine,
        input: &DecisionInput,
        prefix: &str,
    ) -> Result<Verdict, DecideError> {
        let context = input.cedar_context(&format!("{prefix}context"))?;
        let merged = with_supplied(
            &self.base,
            &self.stored_uids,
            input,
            format!("{prefix}entities"),
        )?;
        Ok(decide_one(
            engine,
            input,
            context,
            merged.as_ref().unwrap_or(&self.base),
        ))
    }
}

/// A decision with its explanation: the entity slice it was made over (Cedar
/// entity JSON) and how each policy whose scope matches fared.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// The entity slice, as Cedar entity JSON.
    #[schema(value_type = Vec<Object>)]
    pub entities: Value,
    /// Every policy whose scope matches the request, in file order.
    pub policies: Vec<crate::policy::explain::PolicyTrace>,
}

/// Decides one input, loading its facts in one round trip, and explains the
/// decision.
pub async fn explain_one(
    engine: &PolicyEngine,
    store: &Store,
    input: &DecisionInput,
) -> Result<(Verdict, Explanation), DecideError> {
    let mut keys = FactKeys::default();
    input.collect_keys(&mut keys);
    let world = store.load_facts(&keys).await?;
    let inputs = std::slice::from_ref(input);
    let (base, stored_uids) = stored_entities(&world, supplies_entities(inputs))?;
    let merged = with_supplied(&base, &stored_uids, input, "entities".into())?;
    let slice = merged.as_ref().unwrap_or(&base);
    let context = input.cedar_context("context")?;
    let verdict = decide_one(engine, input, context.clone(), slice);
    let policies = match Request::new(
        input.principal.clone(),
        input.action.clone(),
        input.resource.clone(),
        context,
        None,
    ) {
        Ok(request) => engine.explain(&request, slice),
        Err(_) => Vec::new(),
    };
    let entities = slice
        .to_json_value()
        .map_err(|e| StoreError::Query(e.to_string()))?;
    Ok((verdict, Explanation { entities, policies }))
}

fn decide_one(
    engine: &PolicyEngine,
    input: &DecisionInput,
    context: Context,
    slice: &Entities,
) -> Verdict {
    if slice.get(&input.principal).is_none() {
        return unknown("principal", &input.principal);
    }
    if slice.get(&input.resource).is_none() {
        return unknown("resource", &input.resource);
    }
    match Request::new(
        input.principal.clone(),
        input.action.clone(),
        input.resource.clone(),
        context,
        None,
    ) {
        Ok(request) => engine.decide(&request, slice),
        Err(e) => Verdict::deny_because(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        AssetRecord, GrantRecord, MembershipRecord, ProjectRecord, Role, Scope, UserKind,
        UserRecord, WorkspaceRecord, World,
    };
    use crate::entities::Lookup;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn engine() -> PolicyEngine {
        PolicyEngine::load(Path::new("policies"), Path::new("schema"))
            .expect("the repository's policies load")
    }

    fn id(text: &str) -> crate::domain::Id {
        crate::domain::Id::parse(text).expect("id")
    }

    fn pick<'a, T>(rng: &mut StdRng, from: &'a [T]) -> &'a T {
        from.choose(rng).expect("not empty")
    }

    /// A random world: users of both kinds (some merged), workspaces owned
    /// by a stored user or by one the world does not hold, projects, assets,
    /// and memberships and grants in every role.
    fn random_world(rng: &mut StdRng) -> World {
        let users: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
        let mut world = World::default();
        for u in &users {
            world.users.push(UserRecord {
                id: id(u),
                kind: *pick(rng, &[UserKind::Anonymous, UserKind::Registered]),
                email: None,
                name: None,
                merged_into: rng.gen_bool(0.15).then(|| id("u0")),
            });
        }
        let vis = [
            crate::domain::Visibility::Private,
            crate::domain::Visibility::Public,
        ];
        for w in 0..3 {
            let owner = if rng.gen_bool(0.2) {
                "ghost".to_string()
            } else {
                pick(rng, &users).clone()
            };
            world.workspaces.push(WorkspaceRecord {
                id: id(&format!("w{w}")),
                owner: id(&owner),
                visibility: *pick(rng, &vis),
            });
        }
        for p in 0..5 {
            world.projects.push(ProjectRecord {
                id: id(&format!("p{p}")),
                workspace: id(&format!("w{}", rng.gen_range(0..3))),
                visibility: *pick(rng, &vis),
            });
        }
        use crate::domain::PublicAccess;
        for a in 0..8 {
            world.assets.push(AssetRecord {
                id: id(&format!("a{a}")),
                project: id(&format!("p{}", rng.gen_range(0..5))),
                visibility: *pick(rng, &vis),
                public_access: *pick(
                    rng,
                    &[PublicAccess::None, PublicAccess::Read, PublicAccess::Write],
                ),
            });
        }
        let mut seen = BTreeSet::new();
        for _ in 0..14 {
            let user = pick(rng, &users).clone();
            let (scope, scope_id, role) = if rng.gen_bool(0.5) {
                let role = *pick(rng, &[Role::Owner, Role::Editor, Role::Viewer]);
                (Scope::Workspace, format!("w{}", rng.gen_range(0..3)), role)
            } else {
                let role = *pick(rng, &[Role::Editor, Role::Viewer]);
                (Scope::Project, format!("p{}", rng.gen_range(0..5)), role)
            };
            if seen.insert((user.clone(), scope.as_str(), scope_id.clone())) {
                world.memberships.push(MembershipRecord {
                    user: id(&user),
                    scope,
                    id: id(&scope_id),
                    role,
                });
            }
        }
        let mut granted = BTreeSet::new();
        for _ in 0..8 {
            let user = pick(rng, &users).clone();
            let asset = format!("a{}", rng.gen_range(0..8));
            if granted.insert((user.clone(), asset.clone())) {
                world.grants.push(GrantRecord {
                    user: id(&user),
                    asset: id(&asset),
                    permission: *pick(
                        rng,
                        &[
                            crate::domain::Permission::Read,
                            crate::domain::Permission::Write,
                        ],
                    ),
                });
            }
        }
        world
    }

    /// What the single-check statement reads for `user` on `resource`: the
    /// user, the resource and its ancestors, and the user's roles and grant
    /// on them.
    fn pair_slice(world: &World, user: &str, ty: &str, resource: &str) -> World {
        let mut slice = World::default();
        slice.users.extend(
            world
                .users
                .iter()
                .filter(|u| u.id.as_str() == user)
                .cloned(),
        );
        let asset = world
            .assets
            .iter()
            .find(|a| ty == "Asset" && a.id.as_str() == resource);
        let project_id = asset
            .map(|a| a.project.as_str())
            .or((ty == "Project").then_some(resource));
        let project = world
            .projects
            .iter()
            .find(|p| Some(p.id.as_str()) == project_id);
        let workspace_id = project
            .map(|p| p.workspace.as_str())
            .or((ty == "Workspace").then_some(resource));
        let workspace = world
            .workspaces
            .iter()
            .find(|w| Some(w.id.as_str()) == workspace_id);
        slice.assets.extend(asset.cloned());
        slice.projects.extend(project.cloned());
        slice.workspaces.extend(workspace.cloned());
        for m in &world.memberships {
            let on = match m.scope {
                Scope::Workspace => workspace.map(|w| &w.id),
                Scope::Project => project.map(|p| &p.id),
            };
            if m.user.as_str() == user && on == Some(&m.id) {
                slice.memberships.push(m.clone());
            }
        }
        for g in &world.grants {
            if g.user.as_str() == user && asset.map(|a| &a.id) == Some(&g.asset) {
                slice.grants.push(g.clone());
            }
        }
        slice
    }

    /// Every decision request apps may ask over `world`: each user (and one
    /// unknown) on each resource with each action its type takes, as each
    /// kind of authentication.
    fn requests(
        engine: &PolicyEngine,
        world: &World,
    ) -> Vec<(String, String, String, DecisionInput)> {
        let mut resources: Vec<(&str, String)> = Vec::new();
        resources.extend(
            world
                .workspaces
                .iter()
                .map(|w| ("Workspace", w.id.as_str().to_string())),
        );
        resources.extend(
            world
                .projects
                .iter()
                .map(|p| ("Project", p.id.as_str().to_string())),
        );
        resources.extend(
            world
                .assets
                .iter()
                .map(|a| ("Asset", a.id.as_str().to_string())),
        );
        let mut users: Vec<String> = world
            .users
            .iter()
            .map(|u| u.id.as_str().to_string())
            .collect();
        users.push("nobody".into());
        let actions: Vec<String> = engine.decision_actions().map(str::to_string).collect();
        let mut out = Vec::new();
        for user in &users {
            for (ty, resource) in &resources {
                for action in &actions {
                    let takes = engine
                        .decision_action(action)
                        .is_some_and(|shape| shape.resources.iter().any(|r| r == ty));
                    if !takes {
                        continue;
                    }
                    for authn in [Authn::App, Authn::AnonymousToken, Authn::OidcToken] {
                        let raw = RawDecision {
                            principal: EntityRef {
                                ty: "User".into(),
                                id: user.clone(),
                            },
                            action: action.clone(),
                            resource: EntityRef {
                                ty: ty.to_string(),
                                id: resource.clone(),
                            },
                            context: Map::new(),
                            entities: None,
                            authn,
                        };
                        let input = DecisionInput::parse(engine, raw, "").expect("valid request");
                        out.push((user.clone(), ty.to_string(), resource.clone(), input));
                    }
                }
            }
        }
        out
    }

    /// What [`decide_alike_by_situation`] saw: situations, and requests in
    /// all, in a situation seen before, allowed and denied.
    #[derive(Default)]
    struct Seen {
        situations: BTreeMap<String, (bool, Vec<String>, String)>,
        asked: usize,
        shared: usize,
        allowed: usize,
        denied: usize,
    }

    /// Decides every request of 20 random worlds with `engine`, over the
    /// facts a single check reads and over the whole world (as in a
    /// batch), and asserts that Cedar decided each situation alike.
    fn decide_alike_by_situation(engine: &PolicyEngine) -> Seen {
        let mut seen = Seen::default();
        for seed in 0..20 {
            let world = random_world(&mut StdRng::seed_from_u64(seed));
            for (user, ty, resource, input) in requests(engine, &world) {
                let slice = pair_slice(&world, &user, &ty, &resource);
                for facts in [&world, &slice] {
                    let verdict = decide_in_world(engine, facts, std::slice::from_ref(&input), "")
                        .expect("decided")
                        .remove(0);
                    let named = engine.named_entities();
                    let scanned = input.situation(&Lookup::built(facts, false), named);
                    let mapped = input.situation(&Lookup::built(facts, true), named);
                    assert_eq!(
                        scanned, mapped,
                        "{user} {ty} {resource}: looked up two ways"
                    );
                    let Some(situation) = scanned else {
                        assert!(
                            !verdict.errors.is_empty() || !verdict.allow,
                            "{user} {ty} {resource}: no situation, so unknown"
                        );
                        continue;
                    };
                    if !verdict.errors.is_empty() {
                        continue;
                    }
                    seen.asked += 1;
                    if verdict.allow {
                        seen.allowed += 1
                    } else {
                        seen.denied += 1
                    }
                    let request = format!(
                        "world {seed}: {user} {} {ty} {resource} ({})",
                        input.action,
                        input.authn.as_str()
                    );
                    match seen.situations.get(&situation) {
                        Some((allow, reasons, first)) => {
                            seen.shared += 1;
                            assert_eq!(
                                (*allow, reasons),
                                (verdict.allow, &verdict.reasons),
                                "situation {situation}: {first} and {request} were decided differently"
                            );
                        }
                        None => {
                            seen.situations
                                .insert(situation, (verdict.allow, verdict.reasons, request));
                        }
                    }
                }
            }
        }
        seen
    }

    /// Cedar decides every request of one situation alike, over the facts a
    /// single check reads and over a whole world (as in a batch), in 20
    /// random worlds: so a verdict remembered by situation is the one
    /// evaluating would give. The situations must also tell apart what
    /// decides: the run sees both answers and many situations.
    #[test]
    fn requests_in_one_situation_are_decided_alike() {
        let engine = engine();
        assert!(engine.named_entities().is_empty());
        let seen = decide_alike_by_situation(&engine.without_situations());
        assert!(
            seen.situations.len() > 500,
            "{} situations",
            seen.situations.len()
        );
        assert!(
            seen.shared > 2 * seen.situations.len(),
            "{} requests met a situation seen before",
            seen.shared
        );
        assert!(
            seen.allowed > 1_000 && seen.denied > 1_000,
            "{} allowed, {} denied of {}",
            seen.allowed,
            seen.denied,
            seen.asked
        );
    }

    /// Policies that name entities of every kind the random worlds hold:
    /// users (one that owns workspaces, one that never exists), a
    /// workspace, a project and an asset, role groups of scopes in and out
    /// of a request's chain, compared with `==`, `in` and attributes.
    const NAMING: &str = r#"
@id("vip-reads")
permit (principal == Warden::User::"u1", action == Warden::Action::"read", resource);
@id("no-deletes-in-w1")
forbid (principal, action == Warden::Action::"delete", resource in Warden::Workspace::"w1");
@id("p2-editors-write-everywhere")
permit (principal in Warden::Role::"project/p2/editors", action == Warden::Action::"write", resource);
@id("a3-shared-by-u2s-workspace")
permit (principal, action == Warden::Action::"share", resource == Warden::Asset::"a3")
when { resource.workspace.owner == Warden::User::"u2" };
@id("w0-readers-of-a1")
permit (principal in Warden::Role::"asset/a1/readers", action == Warden::Action::"read", resource)
when { resource.workspace.editors == Warden::Role::"workspace/w0/editors" };
@id("p4-is-closed")
forbid (principal, action in [Warden::Action::"read", Warden::Action::"write"], resource)
when { resource.workspace.owner == Warden::User::"ghost" && principal != Warden::User::"nobody" }
unless { resource in Warden::Project::"p4" };
@id("owners-of-w2-members-manage")
permit (principal, action == Warden::Action::"invite", resource)
when { resource.workspace.owner in Warden::Role::"workspace/w2/members" };
"#;

    /// The repository's policies with [`NAMING`] added.
    fn naming_engine() -> PolicyEngine {
        let dir = tempfile::tempdir().expect("dir");
        for entry in std::fs::read_dir("policies").expect("policies") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(dir.path().join("naming.cedar"), NAMING).expect("policy");
        PolicyEngine::load(dir.path(), Path::new("schema")).expect("loads")
    }

    /// The request `user` `action` `ty` `id`, as an app asks it.
    fn ask(engine: &PolicyEngine, user: &str, action: &str, ty: &str, id: &str) -> DecisionInput {
        let raw = RawDecision {
            principal: EntityRef {
                ty: "User".into(),
                id: user.into(),
            },
            action: action.into(),
            resource: EntityRef {
                ty: ty.into(),
                id: id.into(),
            },
            context: Map::new(),
            entities: None,
            authn: Authn::App,
        };
        DecisionInput::parse(engine, raw, "").expect("valid request")
    }

    /// Requests alike but for one id that a policy names are in different
    /// situations, and decided differently: an asset (`a3` against `a5`), a
    /// workspace (`w1` against `w3`) and a project (`p4` against `p6`).
    #[test]
    fn a_named_id_sets_its_requests_situation_apart() {
        let engine = naming_engine();
        let user = |u: &str| UserRecord {
            id: id(u),
            kind: UserKind::Registered,
            email: None,
            name: None,
            merged_into: None,
        };
        let workspace = |w: &str, owner: &str| WorkspaceRecord {
            id: id(w),
            owner: id(owner),
            visibility: crate::domain::Visibility::Private,
        };
        let project = |p: &str, w: &str| ProjectRecord {
            id: id(p),
            workspace: id(w),
            visibility: crate::domain::Visibility::Private,
        };
        let asset = |a: &str, p: &str| AssetRecord {
            id: id(a),
            project: id(p),
            visibility: crate::domain::Visibility::Private,
            public_access: crate::domain::PublicAccess::None,
        };
        let viewer = |u: &str, w: &str| MembershipRecord {
            user: id(u),
            scope: Scope::Workspace,
            id: id(w),
            role: Role::Viewer,
        };
        let world = World {
            users: vec![user("u0"), user("u2")],
            workspaces: vec![
                workspace("w0", "u2"),
                workspace("w1", "u2"),
                workspace("w3", "u2"),
                workspace("w5", "ghost"),
            ],
            projects: vec![
                project("p0", "w0"),
                project("p1", "w1"),
                project("p3", "w3"),
                project("p4", "w5"),
                project("p6", "w5"),
            ],
            assets: vec![
                asset("a3", "p0"),
                asset("a5", "p0"),
                asset("b4", "p4"),
                asset("b6", "p6"),
            ],
            memberships: vec![viewer("u0", "w0"), viewer("u0", "w5")],
            grants: Vec::new(),
        };
        for (named, other) in [
            (
                ask(&engine, "u0", "share", "Asset", "a3"),
                ask(&engine, "u0", "share", "Asset", "a5"),
            ),
            (
                ask(&engine, "u2", "delete", "Project", "p1"),
                ask(&engine, "u2", "delete", "Project", "p3"),
            ),
            (
                ask(&engine, "u0", "read", "Asset", "b4"),
                ask(&engine, "u0", "read", "Asset", "b6"),
            ),
        ] {
            let situation = |input: &DecisionInput| {
                input
                    .situation(&Lookup::new(&world), engine.named_entities())
                    .expect("a situation")
            };
            assert_ne!(situation(&named), situation(&other), "{}", named.resource);
            let decided = decide_in_world(&engine, &world, &[named.clone(), other.clone()], "")
                .expect("decided");
            assert_ne!(
                decided[0].allow, decided[1].allow,
                "{} and {}",
                named.resource, other.resource
            );
        }
    }

    /// With policies that name entities, a situation says which of the
    /// request's entities each named one is (or holds), and Cedar still
    /// decides every request of one situation alike, in the same 20 random
    /// worlds: situations stay on for such a set. Each named entity is met
    /// in some situation.
    #[test]
    fn policies_naming_entities_are_decided_alike_by_situation() {
        let engine = naming_engine();
        assert!(engine.decides_by_situation());
        let named: Vec<String> = engine
            .named_entities()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(named.len(), 11, "{named:?}");
        let seen = decide_alike_by_situation(&engine.without_situations());
        assert!(
            seen.situations.len() > 500,
            "{} situations",
            seen.situations.len()
        );
        assert!(
            seen.shared > 10_000,
            "{} of {} requests met a situation seen before",
            seen.shared,
            seen.asked
        );
        assert!(seen.allowed > 1_000 && seen.denied > 1_000);
        // Each kind of place a named entity can be is met.
        for mark in [
            "u0;",
            "u1;",
            "a0;",
            "p0;",
            "w0;",
            "w0/editors",
            "+u0",
            "+u1",
        ] {
            assert!(
                seen.situations.keys().any(|s| s.contains(mark)),
                "no situation holds {mark}"
            );
        }
        // And the named policies decide some of them.
        for id in [
            "vip-reads",
            "p2-editors-write-everywhere",
            "a3-shared-by-u2s-workspace",
            "w0-readers-of-a1",
            "owners-of-w2-members-manage",
        ] {
            assert!(
                seen.situations
                    .values()
                    .any(|(_, reasons, _)| reasons.iter().any(|r| r == id)),
                "{id} decided nothing"
            );
        }
    }
}
