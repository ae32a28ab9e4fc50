//! Decision and entity-slice caches, bounded in memory, and the consistency
//! a check asks for (issue 6).
//!
//! - Decisions are cached by (policy version, how the principal
//!   authenticated, principal, action, resource, context); a request that
//!   supplies entities is never cached.
//! - The entity slice of a single check is cached by (principal, resource),
//!   so other actions on the same pair need no database round trip.
//!
//! Entries are tagged with the store's cache generation when their facts
//! were about to be read, and with the entities they depend on (the
//! principal, the resource and its ancestors: `store::revision`). A
//! committed write, here or on another replica, spoils the entries that
//! depend on an entity it changed (a write that cannot say what it changed
//! spoils all). A check chooses: `minimize_latency` (the default: cached
//! answers, at most as stale as the time it takes this process to hear of
//! a write), `at_least_as_fresh` (a revision token a write returned:
//! cached answers only once this process has applied every revision up to
//! it, else the facts are read), or `fully_consistent` (always read the
//! facts).

use crate::decision::{load_world, request_prefix, DecideError, DecisionInput, WorldDecider};
use crate::domain::World;
use crate::entities::Ancestry;
use crate::policy::{PolicyEngine, Verdict};
use crate::store::revision::{bucket, Revisions};
use crate::store::Store;
use std::sync::Arc;

/// Memory bound of each cache, in (estimated) bytes.
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How fresh the facts behind an answer must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Cached answers are fine (the default).
    #[default]
    MinimizeLatency,
    /// The facts must include every write up to this revision.
    AtLeastAsFresh(i64),
    /// Read the facts now.
    FullyConsistent,
}

/// A cached value, with the cache generation before its facts were read
/// and the buckets of the entities it depends on (`store::revision`).
#[derive(Clone)]
pub struct Tagged<T> {
    generation: u64,
    /// Buckets of the entities the value depends on.
    depends_on: Box<[u32]>,
    /// The value.
    pub value: T,
}

impl<T> Tagged<T> {
    /// `value`, read in `generation`, depending on `depends_on`.
    pub fn new(generation: u64, depends_on: Box<[u32]>, value: T) -> Self {
        Tagged {
            generation,
            depends_on,
            value,
        }
    }

    /// Whether nothing it depends on changed since it was read.
    pub fn current(&self, revisions: &Revisions) -> bool {
        revisions.current(self.generation, &self.depends_on)
    }

    fn bytes(&self) -> usize {
        self.depends_on.len() * 4
    }
}

/// A verdict with the buckets of what it depends on.
type Decided = (Verdict, Box<[u32]>);

/// The buckets of change keys.
fn buckets(keys: &[String]) -> Box<[u32]> {
    keys.iter().map(|k| bucket(k)).collect()
}

/// The caches of one process.
pub struct Caches {
    decisions: moka::sync::Cache<String, Tagged<Verdict>>,
    slices: moka::sync::Cache<String, Tagged<Arc<World>>>,
}

impl Default for Caches {
    fn default() -> Self {
        Self::new(CACHE_BYTES)
    }
}

/// What one cache entry costs beyond its key and value's own text: moka's
/// bookkeeping (entry, hash table slot, access-order node), the allocator's
/// headers and the fixed parts of the value. Calibrated on the bench (a
/// fully consistent check adds one decision and one slice): the server
/// grew by about 2.3 KB per distinct check, which these weights match.
const ENTRY_OVERHEAD: usize = 512;

/// Estimated bytes of one stored record in a slice (the record, its ids'
/// text and the allocator's headers).
const RECORD_BYTES: usize = 320;

fn verdict_weight(key: &str, v: &Tagged<Verdict>) -> u32 {
    let reasons: usize = v.value.reasons.iter().map(|r| r.len() + 40).sum();
    let errors: usize = v.value.errors.iter().map(|e| e.message.len() + 64).sum();
    u32::try_from(key.len() + reasons + errors + v.bytes() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

fn world_weight(key: &str, w: &Tagged<Arc<World>>) -> u32 {
    let world = &w.value;
    let records = world.users.len()
        + world.workspaces.len()
        + world.projects.len()
        + world.assets.len()
        + world.memberships.len()
        + world.grants.len();
    u32::try_from(key.len() + records * RECORD_BYTES + w.bytes() + ENTRY_OVERHEAD)
        .unwrap_or(u32::MAX)
}

impl Caches {
    /// Caches holding at most about `bytes` each.
    pub fn new(bytes: u64) -> Self {
        Caches {
            decisions: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &String, v: &Tagged<Verdict>| verdict_weight(k, v))
                .build(),
            slices: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|k: &String, w: &Tagged<Arc<World>>| world_weight(k, w))
                .build(),
        }
    }

    fn get_decision(&self, key: &str, revisions: &Revisions) -> Option<Verdict> {
        self.decisions
            .get(key)
            .filter(|t| t.current(revisions))
            .map(|t| t.value)
    }

    fn get_slice(&self, key: &str, revisions: &Revisions) -> Option<Arc<World>> {
        self.slices
            .get(key)
            .filter(|t| t.current(revisions))
            .map(|t| t.value)
    }
}

/// `uid` as `Type\u{1}id` (types and ids hold no control characters, so
/// the separator is unambiguous), without Cedar's quoting and escaping.
fn push_uid(key: &mut String, uid: &cedar_policy::EntityUid) {
    key.push_str(uid.type_name().basename());
    key.push('\u{1}');
    key.push_str(uid.id().unescaped());
}

fn decision_key(version: &str, input: &DecisionInput) -> Option<String> {
    if input.entities_json.is_some() {
        return None;
    }
    let mut key = String::with_capacity(version.len() + 96);
    key.push_str(version);
    key.push('\u{1}');
    key.push_str(input.authn.as_str());
    key.push('\u{1}');
    push_uid(&mut key, &input.principal);
    key.push('\u{1}');
    key.push_str(input.action.id().unescaped());
    key.push('\u{1}');
    push_uid(&mut key, &input.resource);
    if !input.context_json.is_empty() {
        // JSON escapes control characters: the separator stays unambiguous.
        key.push('\u{1}');
        key.push_str(&serde_json::to_string(&input.context_json).ok()?);
    }
    Some(key)
}

fn slice_key(input: &DecisionInput) -> Option<String> {
    input.entities_json.is_none().then(|| {
        let mut key = String::with_capacity(64);
        push_uid(&mut key, &input.principal);
        key.push('\u{1}');
        push_uid(&mut key, &input.resource);
        key
    })
}

/// Decides `inputs` honouring `consistency`: from the caches where allowed,
/// the rest over one load of facts (none when everything was cached).
pub async fn decide(
    engine: &PolicyEngine,
    store: &Store,
    caches: &Caches,
    inputs: &[DecisionInput],
    path: &str,
    consistency: Consistency,
) -> Result<Vec<Verdict>, DecideError> {
    let revisions = store.revisions();
    // The generation before any fact is read: entries computed now are
    // stored under it, and stop counting if a write they depend on lands
    // meanwhile.
    let generation = revisions.generation();
    let cached = match consistency {
        Consistency::MinimizeLatency => true,
        Consistency::AtLeastAsFresh(revision) => revisions.applied() >= revision,
        Consistency::FullyConsistent => false,
    };
    // A batch in which some request supplies entities is decided whole:
    // a supplied entity that clashes with a stored one is refused naming
    // its request's index, which only holds when nothing was left out.
    let cached = cached && inputs.iter().all(|i| i.entities_json.is_none());
    let keys: Vec<Option<String>> = inputs
        .iter()
        .map(|i| decision_key(engine.version(), i))
        .collect();
    let mut verdicts: Vec<Option<Verdict>> = vec![None; inputs.len()];
    let mut missing = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let hit = if cached {
            key.as_deref()
                .and_then(|k| caches.get_decision(k, revisions))
        } else {
            None
        };
        match hit {
            Some(verdict) => {
                if let Some(slot) = verdicts.get_mut(index) {
                    *slot = Some(verdict);
                }
            }
            None => missing.push(index),
        }
    }
    metrics::counter!("warden_decision_cache_hits_total")
        .increment((inputs.len() - missing.len()) as u64);
    metrics::counter!("warden_decision_cache_misses_total").increment(missing.len() as u64);
    if !missing.is_empty() {
        let todo: Vec<DecisionInput> = missing
            .iter()
            .filter_map(|&i| inputs.get(i).cloned())
            .collect();
        let computed =
            decide_missing(engine, store, caches, &todo, path, cached, generation).await?;
        for (&index, (verdict, depends_on)) in missing.iter().zip(computed) {
            if let Some(key) = keys.get(index).cloned().flatten() {
                if revisions.current(generation, &depends_on) {
                    caches
                        .decisions
                        .insert(key, Tagged::new(generation, depends_on, verdict.clone()));
                }
            }
            if let Some(slot) = verdicts.get_mut(index) {
                *slot = Some(verdict);
            }
        }
    }
    Ok(verdicts.into_iter().flatten().collect())
}

/// The decisions not in the cache, each with the buckets of what it
/// depends on: a single check may use (and fill) the slice cache; anything
/// else loads its facts in one round trip.
async fn decide_missing(
    engine: &PolicyEngine,
    store: &Store,
    caches: &Caches,
    todo: &[DecisionInput],
    path: &str,
    cached: bool,
    generation: u64,
) -> Result<Vec<Decided>, DecideError> {
    let key = match todo {
        [single] => slice_key(single),
        _ => None,
    };
    let Some(key) = key else {
        let world = load_world(store, todo, path).await?;
        return decided(engine, &world, todo, path).await;
    };
    if cached {
        if let Some(world) = caches.get_slice(&key, store.revisions()) {
            return decided(engine, &world, todo, path).await;
        }
    }
    let world = Arc::new(load_world(store, todo, path).await?);
    let verdicts = decided(engine, &world, todo, path).await?;
    if let Some((_, depends_on)) = verdicts.first() {
        if store.revisions().current(generation, depends_on) {
            caches
                .slices
                .insert(key, Tagged::new(generation, depends_on.clone(), world));
        }
    }
    Ok(verdicts)
}

/// Decisions made between two turns given back to the runtime: a batch's
/// decisions are CPU work (about 16 µs each), and a task that runs 1,000 of
/// them at once holds its worker thread for as long, while the single
/// checks queued on that thread wait.
const DECISIONS_PER_TURN: usize = 32;

/// `inputs` decided over `world`, each with the buckets of what it depends
/// on; every [`DECISIONS_PER_TURN`] decisions other tasks get a turn.
async fn decided(
    engine: &PolicyEngine,
    world: &World,
    inputs: &[DecisionInput],
    path: &str,
) -> Result<Vec<Decided>, DecideError> {
    let decider = WorldDecider::new(world, inputs)?;
    let ancestry = Ancestry::new(world);
    let mut decided = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        if index > 0 && index % DECISIONS_PER_TURN == 0 {
            tokio::task::yield_now().await;
        }
        let prefix = request_prefix(path, index, inputs.len());
        let verdict = decider.decide(engine, input, &prefix)?;
        let keys = ancestry.dependencies(&input.principal, &input.resource);
        decided.push((verdict, buckets(&keys)));
    }
    Ok(decided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{decide_in_world, Authn, EntityRef, RawDecision};
    use std::future::Future;
    use std::path::Path;
    use std::task::{Context, Poll, Waker};

    /// A batch's decisions give other tasks a turn every
    /// [`DECISIONS_PER_TURN`]: deciding 100 takes four polls (32, 32, 32
    /// and 4 decisions), and the verdicts are those decided in one go.
    #[test]
    fn a_batch_gives_other_tasks_a_turn() {
        let engine = PolicyEngine::load(Path::new("policies"), Path::new("schema"))
            .expect("the repository's policies load");
        let world: World = serde_json::from_value(serde_json::json!({
            "users": [{"id": "alice", "kind": "registered"}, {"id": "bob", "kind": "registered"}],
            "workspaces": [{"id": "w", "owner": "alice", "visibility": "private"}],
            "projects": [{"id": "p", "workspace": "w", "visibility": "private"}],
            "assets": [{"id": "a", "project": "p", "visibility": "private", "public_access": "none"}]
        }))
        .expect("world");
        let inputs: Vec<DecisionInput> = (0..100)
            .map(|i| {
                let raw = RawDecision {
                    principal: EntityRef {
                        ty: "User".into(),
                        id: if i % 2 == 0 { "alice" } else { "bob" }.into(),
                    },
                    action: "read".into(),
                    resource: EntityRef {
                        ty: "Asset".into(),
                        id: "a".into(),
                    },
                    context: serde_json::Map::new(),
                    entities: None,
                    authn: Authn::App,
                };
                DecisionInput::parse(&engine, raw, "").expect("input")
            })
            .collect();
        let mut batch = std::pin::pin!(decided(&engine, &world, &inputs, "requests"));
        let mut cx = Context::from_waker(Waker::noop());
        let mut polls = 0;
        let decided = loop {
            polls += 1;
            if let Poll::Ready(result) = batch.as_mut().poll(&mut cx) {
                break result.expect("decided");
            }
        };
        assert_eq!(polls, 4, "100 decisions in turns of {DECISIONS_PER_TURN}");
        let at_once = decide_in_world(&engine, &world, &inputs, "requests").expect("decided");
        let allowed: Vec<bool> = decided.iter().map(|(v, _)| v.allow).collect();
        assert_eq!(allowed, at_once.iter().map(|v| v.allow).collect::<Vec<_>>());
        assert_eq!(
            allowed.iter().filter(|a| **a).count(),
            50,
            "alice reads, bob not"
        );
    }
}
