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

/// Memory bounds of the caches, in (estimated) megabytes
/// (`--decision-cache-mb`, `--slice-cache-mb`); 0 caches nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheBounds {
    /// The decision cache's.
    pub decisions_mb: u32,
    /// The slice cache's.
    pub slices_mb: u32,
}

impl Default for CacheBounds {
    /// 64 MB of decisions and 32 MB of slices: a slice saves a fact read
    /// only for another action on the same pair. With both caches full (the
    /// bench's 400,000 distinct checks) the server held ~130 MB, and peaked
    /// at 207-244 MB with 32 concurrent 1,000-request batches on top.
    fn default() -> Self {
        CacheBounds {
            decisions_mb: 64,
            slices_mb: 32,
        }
    }
}

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

/// The weight of a cached decision ([`verdict_weight`]).
#[derive(Clone, Copy)]
struct VerdictWeight;

impl quick_cache::Weighter<String, Tagged<Verdict>> for VerdictWeight {
    fn weight(&self, key: &String, value: &Tagged<Verdict>) -> u64 {
        u64::from(verdict_weight(key, value))
    }
}

/// The weight of a cached slice ([`world_weight`]).
#[derive(Clone, Copy)]
struct WorldWeight;

impl quick_cache::Weighter<String, Tagged<Arc<World>>> for WorldWeight {
    fn weight(&self, key: &String, value: &Tagged<Arc<World>>) -> u64 {
        u64::from(world_weight(key, value))
    }
}

/// The caches of one process, on quick_cache (sharded, S3-FIFO eviction,
/// bounded by weight). With moka, its inserts and the eviction work behind
/// them cost an uncached check ~18 µs of the server's CPU (measured by
/// leaving them out); with quick_cache uncached checks ran 4-6% faster and
/// cached ones 3-4% (four runs alternated).
pub struct Caches {
    decisions: quick_cache::sync::Cache<String, Tagged<Verdict>, VerdictWeight>,
    slices: quick_cache::sync::Cache<String, Tagged<Arc<World>>, WorldWeight>,
}

/// What one cache entry costs beyond its key and value's own text: the
/// cache's bookkeeping (entry, hash table slot), the allocator's headers
/// and the fixed parts of the value. Calibrated on the bench with moka, the
/// cache used before (a fully consistent check adds one decision and one
/// slice): the server grew by about 2.3 KB per distinct check, which these
/// weights match. quick_cache keeps less per entry, so they err high.
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
    u32::try_from(key.len() + world.records() * RECORD_BYTES + w.bytes() + ENTRY_OVERHEAD)
        .unwrap_or(u32::MAX)
}

impl Caches {
    /// Caches holding at most about the bounds' megabytes.
    pub fn new(bounds: CacheBounds) -> Self {
        let decisions = u64::from(bounds.decisions_mb) * 1024 * 1024;
        let slices = u64::from(bounds.slices_mb) * 1024 * 1024;
        let items = |bytes: u64, weight: u64| {
            usize::try_from(bytes / weight)
                .unwrap_or(usize::MAX)
                .max(16)
        };
        Caches {
            decisions: quick_cache::sync::Cache::with_weighter(
                items(decisions, 700),
                decisions,
                VerdictWeight,
            ),
            slices: quick_cache::sync::Cache::with_weighter(
                items(slices, 3_000),
                slices,
                WorldWeight,
            ),
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
        let world = Arc::new(load_world(store, todo, path).await?);
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

/// Most requests of a batch whose entities are built on the worker thread
/// (about 1 ms of work); a larger batch's are built off it
/// ([`built_off_the_worker`]).
const BUILT_ON_THE_WORKER: usize = 128;

/// Builds running off the worker (see [`built_off_the_worker`]).
static BUILDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The entities of a batch's `world`, built on tokio's blocking threads.
/// For an uncached 1,000-request batch they are about 1,300 entities: 3.5
/// ms to make and 5 ms for Cedar to index, in one piece that cannot yield.
/// On a worker thread that piece held up the tasks queued there (single
/// checks among them) for as long. Measured beside two clients sending
/// such batches, cached single checks' p99 went from 8-12 ms to 5-6 ms;
/// the batches' rate fell by about a tenth.
async fn built_off_the_worker(
    world: &Arc<World>,
    inputs: &[DecisionInput],
) -> Result<WorldDecider, DecideError> {
    let supplied = crate::decision::supplies_entities(inputs);
    // One build at a time, so one blocking thread (rarely two) does them
    // all. Each
    // thread has its own allocator heap, and the entities are freed on a
    // worker thread: a heap whose thread then sits idle keeps that memory.
    // With a thread per concurrent build (nine under the bench's batch
    // load), the batch load's peak memory rose from 142-147 MB to 213-232
    // MB; with one, to 161-183 MB.
    // The semaphore is never closed, so this always takes a permit.
    let _turn = BUILDS.acquire().await.ok();
    let world = world.clone();
    let built =
        tokio::task::spawn_blocking(move || WorldDecider::for_requests(&world, supplied)).await;
    match built {
        Ok(decider) => decider,
        // A panic stays a panic (answered 500 by the panic layer), as when
        // the entities were built on the worker.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the build.
        Err(_) => Err(crate::store::StoreError::Unavailable(
            "the server is shutting down; retry on another replica".into(),
        )
        .into()),
    }
}

/// `inputs` decided over `world` (facts already loaded: a search page's),
/// taking remembered situations' verdicts as [`decide`] does.
pub(crate) async fn decide_over(
    engine: &PolicyEngine,
    world: &Arc<World>,
    inputs: &[DecisionInput],
    path: &str,
) -> Result<Vec<Verdict>, DecideError> {
    let decided = decided(engine, world, inputs, path).await?;
    Ok(decided.into_iter().map(|(verdict, _)| verdict).collect())
}

/// `inputs` decided over `world`, each with the buckets of what it depends
/// on. A request whose situation (`DecisionInput::situation`) Cedar has
/// decided before takes that verdict; the others are evaluated over the
/// entities of `world`, built only if one needs them (off the worker for
/// more than [`BUILT_ON_THE_WORKER`]), and their situations remembered.
/// Every [`DECISIONS_PER_TURN`] evaluations other tasks get a turn.
async fn decided(
    engine: &PolicyEngine,
    world: &Arc<World>,
    inputs: &[DecisionInput],
    path: &str,
) -> Result<Vec<Decided>, DecideError> {
    let mut situations: Vec<Option<String>> = Vec::with_capacity(inputs.len());
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(inputs.len());
    let facts = engine
        .decides_by_situation()
        .then(|| crate::entities::Lookup::new(world));
    for input in inputs {
        let situation = facts
            .as_ref()
            .and_then(|facts| input.situation(facts, engine.named_entities()));
        verdicts.push(situation.as_deref().and_then(|s| engine.remembered(s)));
        situations.push(situation);
    }
    let evaluate: Vec<usize> = (0..inputs.len())
        .filter(|&i| matches!(verdicts.get(i), Some(None)))
        .collect();
    metrics::counter!("warden_decisions_by_situation_total")
        .increment((inputs.len() - evaluate.len()) as u64);
    if !evaluate.is_empty() {
        let decider = if evaluate.len() > BUILT_ON_THE_WORKER {
            built_off_the_worker(world, inputs).await?
        } else {
            WorldDecider::new(world, inputs)?
        };
        for (turn, &index) in evaluate.iter().enumerate() {
            if turn > 0 && turn % DECISIONS_PER_TURN == 0 {
                tokio::task::yield_now().await;
            }
            let (Some(input), Some(slot)) = (inputs.get(index), verdicts.get_mut(index)) else {
                continue;
            };
            let prefix = request_prefix(path, index, inputs.len());
            let verdict = decider.decide(engine, input, &prefix)?;
            if let Some(situation) = situations.get_mut(index).and_then(Option::take) {
                engine.remember(situation, &verdict);
            }
            *slot = Some(verdict);
        }
    }
    let ancestry = Ancestry::new(world);
    let mut decided = Vec::with_capacity(inputs.len());
    for (input, verdict) in inputs.iter().zip(verdicts) {
        let verdict = verdict.ok_or_else(|| {
            crate::store::StoreError::Query("a request was left undecided".into())
        })?;
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

    fn engine() -> PolicyEngine {
        PolicyEngine::load(Path::new("policies"), Path::new("schema"))
            .expect("the repository's policies load")
    }

    /// Workspace `w` owned by alice, with project `p` and `assets` private
    /// assets `a0`, `a1`...; bob is a user with no role.
    fn world(assets: usize) -> World {
        let assets: Vec<serde_json::Value> = (0..assets)
            .map(|i| {
                serde_json::json!({"id": format!("a{i}"), "project": "p",
                    "visibility": "private", "public_access": "none"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "users": [{"id": "alice", "kind": "registered"}, {"id": "bob", "kind": "registered"}],
            "workspaces": [{"id": "w", "owner": "alice", "visibility": "private"}],
            "projects": [{"id": "p", "workspace": "w", "visibility": "private"}],
            "assets": assets
        }))
        .expect("world")
    }

    /// `count` requests to read an asset (`asset(i)`), by alice (even `i`,
    /// allowed) and bob (odd, denied) in turn.
    fn reads(
        engine: &PolicyEngine,
        count: usize,
        asset: impl Fn(usize) -> String,
    ) -> Vec<DecisionInput> {
        (0..count)
            .map(|i| {
                let raw = RawDecision {
                    principal: EntityRef {
                        ty: "User".into(),
                        id: if i % 2 == 0 { "alice" } else { "bob" }.into(),
                    },
                    action: "read".into(),
                    resource: EntityRef {
                        ty: "Asset".into(),
                        id: asset(i),
                    },
                    context: serde_json::Map::new(),
                    entities: None,
                    authn: Authn::App,
                };
                DecisionInput::parse(engine, raw, "").expect("input")
            })
            .collect()
    }

    /// The verdicts of `decided` are those of `decide_in_world`, and alice
    /// (half the requests, rounded up) is the one allowed.
    fn same_as_in_place(decided: &[Decided], in_place: &[Verdict]) {
        let allowed: Vec<bool> = decided.iter().map(|(v, _)| v.allow).collect();
        assert_eq!(
            allowed,
            in_place.iter().map(|v| v.allow).collect::<Vec<_>>()
        );
        assert_eq!(
            allowed.iter().filter(|a| **a).count(),
            allowed.len().div_ceil(2),
            "alice reads, bob not"
        );
    }

    /// A verdict of `reasons` reasons, tagged in generation 0 on nothing.
    fn tagged(reasons: usize) -> Tagged<Verdict> {
        let reasons = (0..reasons).map(|i| format!("reason-{i}")).collect();
        Tagged::new(
            0,
            Box::new([]),
            Verdict {
                allow: true,
                reasons,
                errors: Vec::new(),
            },
        )
    }

    #[test]
    fn caches_hold_what_their_bounds_allow() {
        let revisions = Revisions::default();
        // Caches bounded at `mb` megabytes each, after one decision and one
        // slice under "k": whether each is found again.
        let keep_one = |mb: u32| {
            let caches = Caches::new(CacheBounds {
                decisions_mb: mb,
                slices_mb: mb,
            });
            caches.decisions.insert("k".into(), tagged(1));
            let slice = Tagged::new(0, Box::new([]), Arc::new(world(1)));
            caches.slices.insert("k".into(), slice);
            let kept = (
                caches.get_decision("k", &revisions).is_some(),
                caches.get_slice("k", &revisions).is_some(),
            );
            (caches, kept)
        };
        assert_eq!(keep_one(0).1, (false, false));
        let (one, kept) = keep_one(1);
        assert_eq!(kept, (true, true));
        // Many more entries than a megabyte holds: the weight stays bound.
        for i in 0..20_000 {
            one.decisions.insert(format!("key-{i}"), tagged(3));
        }
        assert!(one.decisions.weight() <= 1024 * 1024);
        assert!(
            one.decisions.len() > 500 && one.decisions.len() < 20_000,
            "{} entries in a megabyte",
            one.decisions.len()
        );
    }

    /// A batch's decisions give other tasks a turn every
    /// [`DECISIONS_PER_TURN`]: deciding 100 takes four polls (32, 32, 32
    /// and 4 decisions), and the verdicts are those decided in one go.
    #[test]
    fn a_batch_gives_other_tasks_a_turn() {
        let engine = engine().without_situations();
        let world = Arc::new(world(1));
        let inputs = reads(&engine, 100, |_| "a0".into());
        let (decided, polls) = polled(decided(&engine, &world, &inputs, "requests"));
        assert_eq!(polls, 4, "100 decisions in turns of {DECISIONS_PER_TURN}");
        let at_once = decide_in_world(&engine, &world, &inputs, "requests").expect("decided");
        same_as_in_place(&decided, &at_once);
    }

    /// `future` polled to its end with a waker that does nothing, and how
    /// many polls that took.
    fn polled<T>(future: impl Future<Output = Result<T, DecideError>>) -> (T, usize) {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        let mut polls = 0;
        loop {
            polls += 1;
            if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
                return (result.expect("decided"), polls);
            }
        }
    }

    /// Requests in a situation Cedar decided before take its verdict: the
    /// first 100 reads (alice's and bob's, two situations) are evaluated,
    /// the same again and 100 reads of other assets in the same situations
    /// are not (one poll: no turn given, nothing built), and all are
    /// answered as evaluated in place.
    #[test]
    fn requests_in_a_situation_decided_before_are_not_evaluated() {
        let engine = engine();
        let world = Arc::new(world(100));
        let inputs = reads(&engine, 100, |_| "a0".into());
        let (first, polls) = polled(decided(&engine, &world, &inputs, "requests"));
        assert_eq!(polls, 4, "evaluated in turns");
        let others = reads(&engine, 100, |i| format!("a{i}"));
        for inputs in [&inputs, &others] {
            let (again, polls) = polled(decided(&engine, &world, inputs, "requests"));
            assert_eq!(polls, 1, "no evaluation, no turn given");
            let in_place = decide_in_world(&engine, &world, inputs, "requests").expect("decided");
            same_as_in_place(&again, &in_place);
        }
        same_as_in_place(
            &first,
            &decide_in_world(&engine, &world, &inputs, "requests").expect("decided"),
        );
    }

    /// A large batch's entities are built off the runtime's thread: on a
    /// current-thread runtime, another task keeps running while they are
    /// built (built in place, it would not run once), and the entities
    /// decide as those built in place do.
    #[tokio::test]
    async fn a_large_batch_builds_its_entities_off_the_worker() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let engine = engine();
        let world = world(2_000);
        let inputs = reads(&engine, BUILT_ON_THE_WORKER + 1, |i| format!("a{i}"));
        let in_place = decide_in_world(&engine, &world, &inputs, "requests").expect("decided");
        let turns = Arc::new(AtomicUsize::new(0));
        let other = tokio::spawn({
            let turns = turns.clone();
            async move {
                loop {
                    turns.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        let world = Arc::new(world);
        let decider = built_off_the_worker(&world, &inputs).await.expect("built");
        let turns_meanwhile = turns.load(Ordering::Relaxed);
        other.abort();
        assert!(
            turns_meanwhile > 0,
            "another task ran while 2,000 entities were built"
        );
        let built: Vec<Verdict> = inputs
            .iter()
            .map(|input| decider.decide(&engine, input, "").expect("decided"))
            .collect();
        let allowed = |v: &[Verdict]| {
            v.iter()
                .map(|v| (v.allow, v.reasons.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(&built), allowed(&in_place));
    }
}
