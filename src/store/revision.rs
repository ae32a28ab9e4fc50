//! Revisions: how a process learns that the facts changed, its own writes
//! and every other replica's.
//!
//! Every write transaction bumps the one-row `warden_revision` counter as
//! its first statement ([`super::Store::begin`]) and holds that row lock
//! until it commits or rolls back, so writers queue on it and revisions
//! follow commit order. On Postgres the same statement queues `NOTIFY
//! warden_revision, '<n>'`, delivered to every listening replica at commit,
//! in commit order (never for a transaction that rolls back). A poll of the counter backs that up (and is the
//! only channel on SQLite, where replicas are processes sharing one file).
//!
//! A process keeps two numbers: `seen`, the highest revision whose changes
//! it knows of, and a `generation` bumped whenever `seen` grows. Caches tag
//! each entry with the generation it was computed in and ignore entries of
//! older generations, so one increment invalidates every cache at once, and
//! an entry computed from facts read before a change can never be stored as
//! current (its generation is already old when it is inserted).

use super::{Store, StoreError};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The Postgres channel revisions are announced on.
pub const CHANNEL: &str = "warden_revision";

/// How often the counter is polled: the bound on how late a change made
/// by another process is seen when notifications are not available.
pub fn poll_interval(backend: super::Backend) -> Duration {
    match backend {
        // Notifications carry changes within milliseconds; the poll only
        // covers a dropped listener connection.
        super::Backend::Postgres => Duration::from_secs(1),
        super::Backend::Sqlite => Duration::from_millis(200),
    }
}

/// What this process knows of the store's revision.
#[derive(Debug, Default)]
pub struct Revisions {
    seen: AtomicI64,
    generation: AtomicU64,
}

impl Revisions {
    /// The highest revision known to be committed and applied here.
    pub fn seen(&self) -> i64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// The current cache generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Records that every write up to `revision` is committed: if that is
    /// news, every cache entry of older generations stops counting.
    pub fn observe(&self, revision: i64) {
        let mut current = self.seen.load(Ordering::SeqCst);
        while revision > current {
            // Invalidate first: a reader that sees the new `seen` must not
            // find an entry computed before the change.
            self.generation.fetch_add(1, Ordering::SeqCst);
            match self
                .seen
                .compare_exchange(current, revision, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    metrics::gauge!("warden_revision_seen").set(revision as f64);
                    return;
                }
                Err(now) => current = now,
            }
        }
    }
}

impl Store {
    /// What this process knows of the revision.
    pub fn revisions(&self) -> &Arc<Revisions> {
        &self.revisions
    }

    /// The committed revision, read from the database.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT value FROM warden_revision WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        row.try_get::<i64, _>("value")
            .map_err(|e| StoreError::Query(e.to_string()))
    }

    /// Follows other processes' writes: LISTEN on Postgres, and a poll of
    /// the counter every [`poll_interval`] on both backends.
    pub fn follow_revisions(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(poll_interval(store.backend()));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match store.current_revision().await {
                    Ok(revision) => store.revisions.observe(revision),
                    Err(e) => tracing::debug!(error = %e, "cannot poll the revision"),
                }
            }
        });
        if self.backend() == super::Backend::Postgres {
            let store = self.clone();
            tokio::spawn(async move { store.listen().await });
        }
    }

    /// Listens for revision notifications, reconnecting after failures.
    async fn listen(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match sqlx::postgres::PgListener::connect(&self.url).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "cannot LISTEN for revisions");
                    } else {
                        backoff = Duration::from_millis(100);
                        tracing::debug!("listening for revisions");
                        loop {
                            match listener.recv().await {
                                Ok(notification) => {
                                    if let Ok(revision) = notification.payload().parse::<i64>() {
                                        self.revisions.observe(revision);
                                    }
                                }
                                Err(e) => {
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

    #[test]
    fn news_invalidates_and_old_news_does_not() {
        let r = Revisions::default();
        let g = r.generation();
        r.observe(5);
        assert_eq!((r.seen(), r.generation()), (5, g + 1));
        r.observe(3);
        r.observe(5);
        assert_eq!((r.seen(), r.generation()), (5, g + 1));
    }
}
