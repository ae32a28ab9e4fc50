//! The policy set: loading `policies/*.cedar` and `schema/*.cedarschema`,
//! strict validation, the content-hash version, and evaluation.
//!
//! Policies decide (CONTRACT §1.1). Each policy's Cedar id is its `@id`
//! annotation, so decisions report the ids a reviewer reads in the files.
//! Evaluation adds one rule of its own, CONTRACT §1.2: if any `forbid`
//! errors for a request, the decision is deny.

pub mod diagnostics;
pub mod diff;
pub mod explain;
pub mod generated;
pub mod matrix;
pub mod probe;
pub mod report;
pub mod suite;

use crate::entities::{self, TYPES};
use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Effect, Entities, PolicyId, PolicySet,
    Request, Schema, SchemaFragment, ValidationMode, Validator,
};
use diagnostics::{problem, problem_at, Problem};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why a policy set could not be loaded.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {source}")]
    #[diagnostic(help("check the --policies and --schema paths"))]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A folder holds no file of the expected kind.
    #[error("no {kind} files in {path}")]
    #[diagnostic(help(
        "point --policies at a folder of .cedar files and --schema at one of .cedarschema files"
    ))]
    Empty {
        /// `.cedar` or `.cedarschema`.
        kind: &'static str,
        /// The folder.
        path: PathBuf,
    },
    /// The files parse or validate with errors.
    #[error("{} problem(s) in the policies or schema:\n\n{}", problems.len(), render(problems))]
    Invalid {
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(&p.to_string());
        out.push('\n');
    }
    out
}

/// One policy of the loaded set, for listings and reviews.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyInfo {
    /// The `@id`.
    pub id: String,
    /// The file it came from.
    pub file: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
}

/// An error Cedar reported while evaluating one policy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EvalError {
    /// The policy's `@id`, when the error is about one policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or deny.
    pub allow: bool,
    /// `@id`s of the determining policies.
    pub reasons: Vec<String>,
    /// Evaluation errors (and why a request was denied before evaluation).
    pub errors: Vec<EvalError>,
}

impl Verdict {
    /// A deny decided before any policy ran (unknown principal, bad slice...).
    pub fn deny_because(message: impl Into<String>) -> Self {
        Verdict {
            allow: false,
            reasons: Vec::new(),
            errors: vec![EvalError {
                policy: None,
                message: message.into(),
            }],
        }
    }
}

/// A loaded, validated policy set with its schema. Immutable: reloading
/// builds a new one and swaps it in, so a request finishes on the set it
/// started with.
pub struct PolicyEngine {
    policies: PolicySet,
    schema: Schema,
    version: String,
    infos: Vec<PolicyInfo>,
    authorizer: Authorizer,
    /// Decision actions by name, with the principal and resource type
    /// basenames each applies to (sorted), computed once per load.
    shapes: std::collections::BTreeMap<String, ActionShape>,
    /// Entity types of the schema by basename.
    types: HashMap<String, cedar_policy::EntityTypeName>,
    /// For each action of the schema, the policies whose action scope can
    /// match it. Evaluating only those gives the same answer as the whole
    /// set (a policy whose scope does not match neither applies nor errors:
    /// Cedar evaluates the scope first), at a fraction of the cost.
    by_action: HashMap<cedar_policy::EntityUid, PolicySet>,
    /// Route decisions by (key or client, scopes, action): they depend on
    /// nothing but these and this policy set, so they are asked once.
    routes: moka::sync::Cache<String, Verdict>,
    /// Verdicts by situation (`entities::situation`, with the action and
    /// how the principal authenticated): what Cedar answered for one
    /// request holds for every request in the same situation. `None` when
    /// the set holds templates: then every request is evaluated.
    situations: Option<quick_cache::sync::Cache<String, Verdict>>,
    /// The entities other than actions that the policies name: a situation
    /// says which of them each entity of the request is, or holds.
    named: Vec<cedar_policy::EntityUid>,
}

/// Most situations remembered per policy set. The bench world has a few
/// hundred (user kinds, roles, visibilities, ownership, actions); each is a
/// key of about 100 bytes and a verdict.
const SITUATIONS: usize = 20_000;

/// The entities other than actions that `policies` name, in a fixed order,
/// when every request can be decided by its situation: an entity literal,
/// in a policy's scope or its conditions, is the only way a policy can
/// tell one id from another, so a situation that says which of these each
/// entity of the request is (`entities::situation`) tells apart every
/// request the policies can. `None` when the set holds templates (their
/// slots are filled with entities per link).
fn named_entities(policies: &PolicySet) -> Option<Vec<cedar_policy::EntityUid>> {
    if policies.templates().next().is_some() {
        return None;
    }
    let mut named: Vec<cedar_policy::EntityUid> = policies
        .policies()
        .flat_map(|p| p.entity_literals())
        .filter(|uid| *uid.type_name() != TYPES.action)
        .collect();
    named.sort_by_cached_key(|uid| uid.to_string());
    named.dedup();
    Some(named)
}

/// The policies of `policies` whose action scope can match each action of
/// `schema` (an action matches `action in [G]` when it is G or one of G's
/// members). Empty when the set holds templates: those are not split.
fn policies_by_action(
    policies: &PolicySet,
    schema: &Schema,
) -> HashMap<cedar_policy::EntityUid, PolicySet> {
    use cedar_policy::ActionConstraint;
    let mut out = HashMap::new();
    if policies.templates().next().is_some() {
        return out;
    }
    let Ok(actions) = schema.action_entities() else {
        return out;
    };
    for action in schema.actions() {
        let groups: Vec<&cedar_policy::EntityUid> = actions
            .ancestors(action)
            .map(|a| a.collect())
            .unwrap_or_default();
        let mut set = PolicySet::new();
        for policy in policies.policies() {
            let matches = match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(uid) => uid == *action,
                ActionConstraint::In(list) => list
                    .iter()
                    .any(|uid| uid == action || groups.contains(&uid)),
            };
            if matches && set.add(policy.clone()).is_err() {
                return HashMap::new();
            }
        }
        out.insert(action.clone(), set);
    }
    out
}

/// The principal and resource types an action applies to (basenames, sorted).
#[derive(Clone, Debug)]
pub struct ActionShape {
    /// Principal types.
    pub principals: Vec<String>,
    /// Resource types.
    pub resources: Vec<String>,
}

fn action_shapes(schema: &Schema) -> std::collections::BTreeMap<String, ActionShape> {
    let user = TYPES.user.basename();
    let mut shapes = std::collections::BTreeMap::new();
    for action in schema.actions() {
        let (Some(principals), Some(resources)) = (
            schema.principals_for_action(action),
            schema.resources_for_action(action),
        ) else {
            continue;
        };
        let mut principals: Vec<String> = principals.map(|t| t.basename().to_string()).collect();
        let mut resources: Vec<String> = resources.map(|t| t.basename().to_string()).collect();
        // Apps ask decisions about users; Warden's own API actions are not theirs to ask.
        if !principals.iter().any(|p| p == user) {
            continue;
        }
        principals.sort();
        resources.sort();
        shapes.insert(
            action.id().unescaped().to_string(),
            ActionShape {
                principals,
                resources,
            },
        );
    }
    shapes
}

struct SourceFile {
    name: String,
    text: String,
}

fn read_dir(dir: &Path, ext: &'static str) -> Result<Vec<SourceFile>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(LoadError::Empty {
            kind: if ext == "cedar" {
                ".cedar"
            } else {
                ".cedarschema"
            },
            path: dir.to_path_buf(),
        });
    }
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        files.push(SourceFile {
            name: path.display().to_string(),
            text,
        });
    }
    Ok(files)
}

fn version_of(schema: &[SourceFile], policies: &[SourceFile]) -> String {
    let mut hash = Sha256::new();
    for file in schema.iter().chain(policies) {
        let base = Path::new(&file.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hash.update(base.as_bytes());
        hash.update([0]);
        hash.update(file.text.as_bytes());
        hash.update([0]);
    }
    let digest = hex::encode(hash.finalize());
    format!("sha256:{}", digest.get(..16).unwrap_or(&digest))
}

fn load_schema(files: &[SourceFile], problems: &mut Vec<Problem>) -> Option<Schema> {
    let mut fragments = Vec::new();
    for file in files {
        match SchemaFragment::from_cedarschema_str(&file.text) {
            Ok((fragment, _warnings)) => fragments.push(fragment),
            Err(e) => problems.push(problem(&file.name, &file.text, &e)),
        }
    }
    if !problems.is_empty() {
        return None;
    }
    match Schema::from_schema_fragments(fragments) {
        Ok(schema) => Some(schema),
        Err(e) => {
            let name = files.first().map_or("schema", |f| f.name.as_str());
            problems.push(problem_at(name, "", None, format!("{e}")));
            None
        }
    }
}

/// Parses every file and renames each policy to its `@id`.
fn load_policies(
    files: &[SourceFile],
    problems: &mut Vec<Problem>,
) -> (PolicySet, Vec<PolicyInfo>, HashMap<String, usize>) {
    let mut set = PolicySet::new();
    let mut infos = Vec::new();
    let mut file_of: HashMap<String, usize> = HashMap::new();
    for (index, file) in files.iter().enumerate() {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for e in errors.iter() {
                    problems.push(problem(&file.name, &file.text, e));
                }
                continue;
            }
        };
        // Keep file order: Cedar numbers policies policy0, policy1, ...
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(0)
        });
        // Search past the previous policy, so that a policy pasted twice is
        // reported where the second copy is.
        let mut searched_to = 0;
        for policy in policies {
            let text = policy.to_string();
            let offset = file
                .text
                .get(searched_to..)
                .and_then(|rest| rest.find(text.trim()))
                .map(|at| at + searched_to);
            if let Some(at) = offset {
                searched_to = at + text.trim().len();
            }
            let Some(id) = policy.annotation("id") else {
                problems.push(problem_at(
                    &file.name,
                    &file.text,
                    offset,
                    "policy has no @id(\"...\") annotation; every policy needs a unique @id".into(),
                ));
                continue;
            };
            if let Some(&other) = file_of.get(id) {
                let first = files.get(other).map_or("", |f| f.name.as_str());
                problems.push(problem_at(
                    &file.name,
                    &file.text,
                    offset,
                    format!("duplicate @id({id:?}): already used in {first}"),
                ));
                continue;
            }
            let renamed = policy.new_id(PolicyId::new(id));
            if let Err(e) = set.add(renamed) {
                problems.push(problem_at(&file.name, &file.text, offset, e.to_string()));
                continue;
            }
            file_of.insert(id.to_string(), index);
            infos.push(PolicyInfo {
                id: id.to_string(),
                file: file.name.clone(),
                effect: match policy.effect() {
                    Effect::Permit => "permit",
                    Effect::Forbid => "forbid",
                },
            });
        }
    }
    (set, infos, file_of)
}

impl PolicyEngine {
    /// Loads and strictly validates the policies in `policies_dir` against the
    /// schema in `schema_dir`. Every problem is reported, not just the first.
    pub fn load(policies_dir: &Path, schema_dir: &Path) -> Result<Self, LoadError> {
        let schema_files = read_dir(schema_dir, "cedarschema")?;
        let policy_files = read_dir(policies_dir, "cedar")?;
        let mut problems = Vec::new();
        let schema = load_schema(&schema_files, &mut problems);
        let (policies, infos, file_of) = load_policies(&policy_files, &mut problems);
        let Some(schema) = schema else {
            return Err(LoadError::Invalid { problems });
        };
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let id = error.policy_id().to_string();
            match file_of.get(&id).and_then(|&i| policy_files.get(i)) {
                Some(file) => problems.push(problem(&file.name, &file.text, error)),
                None => problems.push(problem_at("policies", "", None, error.to_string())),
            }
        }
        if !problems.is_empty() {
            return Err(LoadError::Invalid { problems });
        }
        let shapes = action_shapes(&schema);
        let types = schema
            .entity_types()
            .map(|t| (t.basename().to_string(), t.clone()))
            .collect();
        let named = named_entities(&policies);
        let situations = named
            .is_some()
            .then(|| quick_cache::sync::Cache::new(SITUATIONS));
        if situations.is_none() {
            tracing::info!("the policies hold templates: every decision is evaluated, none is remembered by situation");
        }
        Ok(PolicyEngine {
            by_action: policies_by_action(&policies, &schema),
            routes: moka::sync::Cache::new(10_000),
            situations,
            named: named.unwrap_or_default(),
            shapes,
            types,
            policies,
            schema,
            version: version_of(&schema_files, &policy_files),
            infos,
            authorizer: Authorizer::new(),
        })
    }

    /// The same set evaluating every policy for every request, as Cedar
    /// would without Warden's per-action index: the reference the index is
    /// tested against.
    #[doc(hidden)]
    pub fn without_action_index(mut self) -> Self {
        self.by_action.clear();
        self
    }

    /// The same set evaluating every request, remembering no verdict by
    /// situation: the reference the situations are tested against.
    #[doc(hidden)]
    pub fn without_situations(mut self) -> Self {
        self.situations = None;
        self
    }

    /// Whether verdicts are remembered by situation (the set holds no
    /// templates, and `--evaluate-every-decision` is off).
    pub fn decides_by_situation(&self) -> bool {
        self.situations.is_some()
    }

    /// The entities other than actions that the policies name, which a
    /// situation must tell apart (`entities::situation`).
    pub fn named_entities(&self) -> &[cedar_policy::EntityUid] {
        &self.named
    }

    /// The verdict Cedar gave a request in `situation` before, if any.
    pub fn remembered(&self, situation: &str) -> Option<Verdict> {
        self.situations.as_ref()?.get(situation)
    }

    /// Remembers `verdict` for `situation`, unless evaluating gave errors:
    /// their messages name the request's own entities.
    pub fn remember(&self, situation: String, verdict: &Verdict) {
        if let Some(situations) = &self.situations {
            if verdict.errors.is_empty() {
                situations.insert(situation, verdict.clone());
            }
        }
    }

    /// The version the files in these folders would load as, without
    /// parsing or validating them.
    pub fn version_on_disk(policies_dir: &Path, schema_dir: &Path) -> Result<String, LoadError> {
        let schema_files = read_dir(schema_dir, "cedarschema")?;
        let policy_files = read_dir(policies_dir, "cedar")?;
        Ok(version_of(&schema_files, &policy_files))
    }

    /// The content hash of the schema and policy files: `sha256:` and 16 hex digits.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The schema the policies were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Every policy, in file order.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.infos
    }

    fn is_forbid(&self, id: &PolicyId) -> bool {
        self.policies.policy(id).map(|p| p.effect()) == Some(Effect::Forbid)
    }

    /// Evaluates `request` over `entities`.
    ///
    /// A `forbid` that errors denies (CONTRACT §1.2); the erroring forbids are
    /// then the reasons.
    pub fn decide(&self, request: &Request, entities: &Entities) -> Verdict {
        let policies = request
            .action()
            .and_then(|action| self.by_action.get(action))
            .unwrap_or(&self.policies);
        let response = self.authorizer.is_authorized(request, policies, entities);
        let mut errors = Vec::new();
        let mut failed_forbids = Vec::new();
        for error in response.diagnostics().errors() {
            let AuthorizationError::PolicyEvaluationError(e) = error;
            if self.is_forbid(e.policy_id()) {
                failed_forbids.push(e.policy_id().to_string());
            }
            errors.push(EvalError {
                policy: Some(e.policy_id().to_string()),
                message: e.inner().to_string(),
            });
        }
        if !failed_forbids.is_empty() {
            return Verdict {
                allow: false,
                reasons: failed_forbids,
                errors,
            };
        }
        let mut reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        reasons.sort();
        Verdict {
            allow: response.decision() == Decision::Allow,
            reasons,
            errors,
        }
    }

    /// May the API key with `scopes` call a route guarded by `action`?
    pub fn authorize_api_key(&self, key_id: &str, scopes: &[String], action: &str) -> Verdict {
        // The key's entity is its id and scopes; the answer is asked once
        // per policy set (a reload builds a new engine, so a new cache).
        // Every part length-prefixed: unambiguous whatever the text holds.
        let mut cache_key = String::with_capacity(64);
        for part in [key_id, action]
            .into_iter()
            .chain(scopes.iter().map(String::as_str))
        {
            cache_key.push_str(&part.len().to_string());
            cache_key.push(':');
            cache_key.push_str(part);
        }
        if let Some(verdict) = self.routes.get(&cache_key) {
            return verdict;
        }
        let verdict = match entities::api_key_entity(key_id, scopes) {
            Ok(entity) => self.authorize_route(entity, action),
            Err(e) => Verdict::deny_because(e.to_string()),
        };
        self.routes.insert(cache_key, verdict.clone());
        verdict
    }

    /// Asks whether an unidentified HTTP client at `address` may call the
    /// public identity route `action` (policies/api.cedar).
    pub fn authorize_client(&self, address: &str, action: &str) -> Verdict {
        let entity = cedar_policy::Entity::new_no_attrs(
            entities::uid(&entities::TYPES.client, address),
            std::collections::HashSet::new(),
        );
        self.authorize_route(entity, action)
    }

    /// Decides route `action` on the service for `principal`.
    fn authorize_route(&self, entity: cedar_policy::Entity, action: &str) -> Verdict {
        let principal = entity.uid();
        let store = match Entities::from_entities([entity], None) {
            Ok(store) => store,
            Err(e) => return Verdict::deny_because(e.to_string()),
        };
        match Request::new(
            principal,
            entities::action(action),
            entities::service(),
            Context::empty(),
            Some(&self.schema),
        ) {
            Ok(request) => self.decide(&request, &store),
            Err(e) => Verdict::deny_because(e.to_string()),
        }
    }

    /// The shape of the decision action `name`, or `None` when the schema has
    /// no such action or it is not one apps may ask about.
    pub fn decision_action(&self, name: &str) -> Option<&ActionShape> {
        self.shapes.get(name)
    }

    /// The names of the actions apps may ask decisions about, sorted.
    pub fn decision_actions(&self) -> impl Iterator<Item = &str> {
        self.shapes.keys().map(String::as_str)
    }

    /// The schema's entity type with this basename (`User`, `Asset`...).
    pub fn entity_type(&self, basename: &str) -> Option<&cedar_policy::EntityTypeName> {
        self.types.get(basename)
    }
}
