//! Revisions: how a process learns that the facts changed, its own writes
//! and every other replica's, and which cached answers each change spoils.
//!
//! Every write transaction bumps the one-row `warden_revision` counter as
//! its first statement ([`super::Store::begin`]) and holds that row lock
//! until it commits or rolls back, so writers queue on it and committed
//! revisions are 1, 2, 3... in commit order (a rollback undoes its bump).
//! On Postgres the transaction's last statement queues `NOTIFY
//! warden_revision` with its revision and what it changed ([`announce`]),
//! delivered to every listening replica at commit, in commit order (never
//! for a transaction that rolls back). Its audit event records the same
//! (columns `revision` and `changed`). A poll of the counter backs
//! notifications up (and is the only channel between processes on SQLite,
//! where replicas are processes sharing one file): it applies what it finds
//! committed and not yet applied as the audit events written since its
//! last read record it, so a missed notification spoils no more than it
//! would have. Writers queue on the counter from their first statement,
//! and audit events are inserted only by write transactions, so event ids
//! follow commit order (test `consistency::audit_order`).
//!
//! What a write changed is a set of entities (`User:u1`, `Asset:a7`...):
//! every row it wrote belongs to one (a membership or grant to its user).
//! A cached answer depends on the entities of its slice: the principal,
//! the resource and the resource's ancestors. A write that names what it
//! changed spoils only the answers that depend on one of those entities;
//! a write that does not (an import), and a revision the poll finds with
//! no record (written by an earlier Warden version, or beyond the
//! [`CHANGES_READ`] events one poll reads), spoil everything. Writes of no decision's facts name
//! nothing (API key creation, signing keys, policy reloads); an API key's
//! revocation names the key (`ApiKey:<id>`), which each process's cache of
//! verified keys depends on.
//!
//! A process keeps a `generation` clock, bumped by every invalidation, and
//! stamps each changed entity (hashed into one of [`BUCKETS`]: two entities
//! sharing a bucket only spoil each other's answers early) with the
//! generation of its last change. A cache entry carries the generation in
//! which its facts were about to be read and the buckets it depends on; it
//! counts only while none of those buckets, nor the whole, changed since.
//! An invalidation is applied after its write commits, so facts read in a
//! later generation already hold the write.
//!
//! Two revisions are kept: `seen`, the highest revision known to be
//! committed (the `Warden-Revision` header, a token for later checks), and
//! `applied`: every revision up to it has been applied here, so a check
//! `at_least_as_fresh` a token up to `applied` may use the caches.
//! Announcements can arrive out of order (this process's own commit before
//! another replica's earlier one); `applied` waits for the missing one,
//! which the poll applies from its record if no announcement comes.

use super::{i64_of, opt_text, Store, StoreError};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The Postgres channel revisions are announced on.
pub const CHANNEL: &str = "warden_revision";

/// How many buckets changed entities are hashed into (8 bytes each).
pub const BUCKETS: usize = 1 << 16;

/// Longest announcement payload: Postgres refuses a `NOTIFY` payload of
/// 8,000 bytes or more. A write that changed too many entities to name is
/// announced as a change to everything.
const MAX_PAYLOAD: usize = 7_000;

/// How often the counter is polled: the bound on how late a change made
/// by another process is seen when notifications are not available.
pub fn poll_interval(backend: super::Backend) -> Duration {
    match backend {
        // Notifications carry changes within milliseconds; the poll only
        // covers a dropped listener connection or a lost notification.
        super::Backend::Postgres => Duration::from_secs(1),
        super::Backend::Sqlite => Duration::from_millis(200),
    }
}

/// The change key of entity `ty` (a Cedar type without the namespace) `id`,
/// e.g. `User:u1`: what writes name and cached answers depend on.
pub fn entity_key(ty: &str, id: &str) -> String {
    format!("{ty}:{id}")
}

/// The change key of user `id`.
pub fn user(id: &str) -> String {
    entity_key("User", id)
}

/// The change key of workspace `id`.
pub fn workspace(id: &str) -> String {
    entity_key("Workspace", id)
}

/// The change key of project `id`.
pub fn project(id: &str) -> String {
    entity_key("Project", id)
}

/// The change key of asset `id`.
pub fn asset(id: &str) -> String {
    entity_key("Asset", id)
}

/// The change key of API key `id`: its revocation spoils the verified
/// key every replica caches.
pub fn api_key(id: &str) -> String {
    entity_key("ApiKey", id)
}

/// The bucket of change key `key`.
pub fn bucket(key: &str) -> u32 {
    // SipHash with fixed keys: the same key always lands in the same bucket.
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    u32::try_from(hasher.finish() % BUCKETS as u64).unwrap_or(0)
}

/// Most audit events one poll reads for what writes changed; revisions
/// beyond them are applied as changes to everything.
pub const CHANGES_READ: i64 = 10_000;

/// What one committed write changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Unknown or too much to name: every cached answer is spoilt.
    Everything,
    /// The facts of these entities (change keys), and of no other.
    Entities(BTreeSet<String>),
}

/// The payload of a revision's `NOTIFY`: `{"revision": 7, "changed":
/// ["User:u1"]}`, or without `changed` for a change to everything.
#[derive(serde::Serialize, serde::Deserialize)]
struct Announcement {
    revision: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changed: Option<BTreeSet<String>>,
}

/// The announcement of `revision`, which changed `changed`.
pub fn announce(revision: i64, changed: &Changed) -> String {
    let everything = || format!("{{\"revision\":{revision}}}");
    let Changed::Entities(keys) = changed else {
        return everything();
    };
    let payload = serde_json::to_string(&Announcement {
        revision,
        changed: Some(keys.clone()),
    })
    .unwrap_or_else(|_| everything());
    if payload.len() > MAX_PAYLOAD {
        everything()
    } else {
        payload
    }
}

/// Reads an announcement; a bare number (older Warden versions) is a
/// change to everything.
pub fn read_announcement(payload: &str) -> Option<(i64, Changed)> {
    if let Ok(revision) = payload.trim().parse::<i64>() {
        return Some((revision, Changed::Everything));
    }
    let a: Announcement = serde_json::from_str(payload).ok()?;
    Some((
        a.revision,
        a.changed.map_or(Changed::Everything, Changed::Entities),
    ))
}

/// What this process knows of the store's revision, and which cached
/// answers still count.
#[derive(Debug)]
pub struct Revisions {
    seen: AtomicI64,
    applied: AtomicI64,
    generation: AtomicU64,
    /// The generation of the last change to everything.
    everything: AtomicU64,
    /// Per bucket, the generation of the last change to an entity in it.
    stamps: Box<[AtomicU64]>,
    /// Revisions above `applied` applied out of order; held while a lower
    /// one is missing. The lock also serializes invalidations.
    early: Mutex<BTreeSet<i64>>,
    /// The last audit event whose recorded change this process has read
    /// (-1 until the first read).
    events_read: AtomicI64,
}

impl Default for Revisions {
    fn default() -> Self {
        Revisions {
            seen: AtomicI64::new(0),
            applied: AtomicI64::new(0),
            generation: AtomicU64::new(0),
            everything: AtomicU64::new(0),
            stamps: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            early: Mutex::new(BTreeSet::new()),
            events_read: AtomicI64::new(-1),
        }
    }
}

impl Revisions {
    /// The highest revision known to be committed: a token for later
    /// checks (the `Warden-Revision` header).
    pub fn seen(&self) -> i64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Every revision up to this one has been applied to this process's
    /// caches: a check at least as fresh as it may use them.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// The current cache generation: read it before reading the facts of
    /// an entry.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether an entry whose facts were read in `generation` and which
    /// depends on the entities in `buckets` still counts: nothing it
    /// depends on changed since.
    pub fn current(&self, generation: u64, buckets: &[u32]) -> bool {
        generation >= self.everything.load(Ordering::SeqCst)
            && buckets.iter().all(|&b| {
                self.stamps
                    .get(b as usize)
                    .is_some_and(|stamp| generation >= stamp.load(Ordering::SeqCst))
            })
    }

    /// Applies the committed write `revision`, which changed `changed`:
    /// the cached answers depending on it stop counting.
    pub fn apply(&self, revision: i64, changed: &Changed) {
        let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
        let applied = self.applied.load(Ordering::SeqCst);
        if revision <= applied || early.contains(&revision) {
            return;
        }
        self.invalidate(changed);
        early.insert(revision);
        self.advance(&mut early, applied);
        self.raise_seen(revision);
    }

    /// Every revision up to `revision` is committed: those not applied yet
    /// are applied as changes to everything (what they changed is unknown).
    pub fn catch_up(&self, revision: i64) {
        let mut early = self.early.lock().unwrap_or_else(PoisonError::into_inner);
        let applied = self.applied.load(Ordering::SeqCst);
        if revision <= applied {
            return;
        }
        let known = early.range(applied + 1..=revision).count();
        if i64::try_from(known).unwrap_or(i64::MAX) < revision - applied {
            self.invalidate(&Changed::Everything);
        }
        early.retain(|r| *r > revision);
        self.advance(&mut early, revision);
        self.raise_seen(revision);
    }

    /// Moves `applied` from `from` over the revisions applied early.
    fn advance(&self, early: &mut BTreeSet<i64>, from: i64) {
        let mut applied = from;
        while early.remove(&(applied + 1)) {
            applied += 1;
        }
        self.applied.store(applied, Ordering::SeqCst);
        metrics::gauge!("warden_revision_applied").set(applied as f64);
    }

    fn raise_seen(&self, revision: i64) {
        if self.seen.fetch_max(revision, Ordering::SeqCst) < revision {
            metrics::gauge!("warden_revision_seen").set(revision as f64);
        }
    }

    /// Stamps what changed with the next generation, then moves the clock
    /// there; called with `early` locked. Stamping first means an entry
    /// read in an older generation can never pass for current.
    fn invalidate(&self, changed: &Changed) {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        match changed {
            Changed::Everything => {
                self.everything.fetch_max(next, Ordering::SeqCst);
            }
            Changed::Entities(keys) if keys.is_empty() => return,
            Changed::Entities(keys) => {
                for key in keys {
                    if let Some(stamp) = self.stamps.get(bucket(key) as usize) {
                        stamp.fetch_max(next, Ordering::SeqCst);
                    }
                }
            }
        }
        self.generation.store(next, Ordering::SeqCst);
    }
}

impl Store {
    /// What this process knows of the revision.
    pub fn revisions(&self) -> &Arc<Revisions> {
        &self.revisions
    }

    /// The committed revision and the last audit event, read together (in
    /// one snapshot: every event up to that one belongs to a revision up to
    /// that one).
    pub async fn committed(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT value, (SELECT COALESCE(MAX(id), 0) FROM audit_events) AS last_event \
             FROM warden_revision WHERE id = 1",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((i64_of(&row, "value")?, i64_of(&row, "last_event")?))
    }

    /// What the committed writes recorded in the audit events after event
    /// `after` changed, by revision (at most [`CHANGES_READ`] events), and
    /// the last event read. A write whose event records no change changed
    /// everything.
    pub async fn recorded_changes(
        &self,
        after: i64,
    ) -> Result<(i64, Vec<(i64, Changed)>), StoreError> {
        let rows =
            sqlx::query("SELECT id, changed FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(CHANGES_READ)
                .fetch_all(self.pool())
                .await?;
        let mut last = after;
        let mut changes = Vec::new();
        for row in &rows {
            last = i64_of(row, "id")?;
            match opt_text(row, "changed")?.as_deref().map(read_announcement) {
                None => {}
                Some(Some(change)) => changes.push(change),
                Some(None) => tracing::warn!(event = last, "unreadable change record"),
            }
        }
        Ok((last, changes))
    }

    /// Applies every revision up to `revision` (committed, with
    /// `last_event` the last audit event then): what the audit events
    /// written since the last read record each write changed, and the rest
    /// as changes to everything.
    async fn apply_committed(&self, (revision, last_event): (i64, i64)) {
        let revisions = &self.revisions;
        let after = revisions.events_read.load(Ordering::SeqCst);
        if after < 0 || revision <= revisions.applied() {
            // Nothing to read: every revision up to this one is applied
            // (or, the first time, applied now as a change to everything:
            // this process's caches started empty). Later reads start
            // after this event.
            revisions.catch_up(revision);
            revisions
                .events_read
                .fetch_max(last_event, Ordering::SeqCst);
            return;
        }
        match self.recorded_changes(after).await {
            Ok((last, changes)) => {
                for (committed, changed) in changes {
                    revisions.apply(committed, &changed);
                }
                revisions.events_read.fetch_max(last, Ordering::SeqCst);
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the recorded changes"),
        }
        revisions.catch_up(revision);
    }

    /// Follows other processes' writes: LISTEN on Postgres, and a poll of
    /// the counter every [`poll_interval`] on both backends.
    ///
    /// The poll applies every revision it finds committed and not yet
    /// applied as the audit events record it: only the cached answers that
    /// depend on what it changed go, as with its announcement (on SQLite,
    /// the only channel between processes). A revision whose event records
    /// no change (an import, a write by an earlier version) is a change to
    /// everything.
    pub fn follow_revisions(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(poll_interval(store.backend()));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match store.committed().await {
                    Ok(committed) => store.apply_committed(committed).await,
                    Err(e) => tracing::debug!(error = %e, "cannot poll the revision"),
                }
            }
        });
        if self.backend() == super::Backend::Postgres {
            let store = self.clone();
            tokio::spawn(async move { store.listen().await });
        }
    }

    /// Listens for revision announcements, reconnecting after failures.
    async fn listen(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match sqlx::postgres::PgListener::connect(&self.url).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "cannot LISTEN for revisions");
                    } else {
                        backoff = Duration::from_millis(100);
                        metrics::gauge!("warden_revision_listening").set(1.0);
                        tracing::debug!("listening for revisions");
                        // Revisions committed before LISTEN took effect are
                        // never announced here: apply them now, not at the
                        // poll's next tick.
                        match self.committed().await {
                            Ok(committed) => self.apply_committed(committed).await,
                            Err(e) => tracing::debug!(error = %e, "cannot read the revision"),
                        }
                        loop {
                            match listener.recv().await {
                                Ok(notification) => {
                                    match read_announcement(notification.payload()) {
                                        Some((revision, changed)) => {
                                            self.revisions.apply(revision, &changed)
                                        }
                                        None => tracing::warn!(
                                            "unreadable revision announcement; the poll applies it"
                                        ),
                                    }
                                }
                                Err(e) => {
                                    metrics::gauge!("warden_revision_listening").set(0.0);
                                    tracing::warn!(error = %e, "revision listener lost its connection; polling until it is back");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot connect the revision listener"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Changed {
        Changed::Entities(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_change_spoils_only_what_depends_on_it() {
        let r = Revisions::default();
        let g = r.generation();
        let (bob, a1, a2) = (
            bucket(&user("bob")),
            bucket(&asset("a1")),
            bucket(&asset("a2")),
        );
        assert_ne!(a1, a2, "pick ids in distinct buckets");
        r.apply(1, &keys(&["Asset:a1"]));
        assert!(!r.current(g, &[bob, a1]), "depends on a1");
        assert!(r.current(g, &[bob, a2]), "a2 did not change");
        // Facts read after the change count again.
        assert!(r.current(r.generation(), &[bob, a1]));
        // A write that changed no fact spoils nothing and moves no clock.
        let before = r.generation();
        r.apply(2, &keys(&[]));
        assert_eq!((r.generation(), r.applied(), r.seen()), (before, 2, 2));
        r.apply(3, &Changed::Everything);
        assert!(!r.current(g, &[bob, a2]) && !r.current(before, &[]));
    }

    #[test]
    fn applied_waits_for_a_missing_revision_and_seen_does_not() {
        let r = Revisions::default();
        r.apply(2, &keys(&["User:bob"]));
        assert_eq!((r.seen(), r.applied()), (2, 0), "1 is missing");
        r.apply(1, &keys(&["User:carl"]));
        assert_eq!((r.seen(), r.applied()), (2, 2));
        // Old news changes nothing.
        let g = r.generation();
        r.apply(2, &Changed::Everything);
        r.apply(1, &Changed::Everything);
        assert_eq!(r.generation(), g);
    }

    #[test]
    fn the_poll_spoils_everything_only_for_revisions_it_cannot_name() {
        let r = Revisions::default();
        let bob = bucket(&user("bob"));
        r.apply(1, &keys(&["User:carl"]));
        r.apply(2, &keys(&["User:dora"]));
        let g = r.generation();
        r.catch_up(2);
        assert!(r.current(g, &[bob]), "1 and 2 were announced");
        r.apply(4, &keys(&["User:erin"]));
        r.catch_up(3);
        assert_eq!(r.applied(), 4, "3 from the poll, 4 announced");
        assert!(!r.current(g, &[bob]), "3 was never announced");
        r.catch_up(4);
        assert_eq!(r.seen(), 4);
    }

    #[test]
    fn announcements_round_trip_and_fall_back_to_everything() {
        let named = keys(&["User:bob", "Asset:a \"1\""]);
        assert_eq!(read_announcement(&announce(7, &named)), Some((7, named)));
        assert_eq!(
            read_announcement(&announce(8, &Changed::Everything)),
            Some((8, Changed::Everything))
        );
        assert_eq!(read_announcement("9"), Some((9, Changed::Everything)));
        assert_eq!(read_announcement("nonsense"), None);
        let many: Vec<String> = (0..2_000).map(|i| asset(&format!("a{i}"))).collect();
        let payload = announce(10, &Changed::Entities(many.into_iter().collect()));
        assert!(payload.len() < 8_000);
        assert_eq!(read_announcement(&payload), Some((10, Changed::Everything)));
    }
}
