//! Single checks' fact loads, read together: the single checks that need
//! facts while earlier ones are being read wait, and the next statement
//! reads all of them (up to [`MAX_PAIRS`]) in one round trip.
//!
//! A statement costs the database far more than each row it reads: the
//! round trip, the parse and bind, a snapshot and an executor start-up,
//! and a backend woken for it. Under load, one statement per check spends
//! most of the database's CPU on that: on the bench world PostgreSQL spent
//! ~110 µs per uncached single check, ~35 µs once they were read together.
//! So one statement of single checks runs at a time, and another only while
//! at least [`MORE_AT`] checks wait ([`AT_ONCE`] at most); a check arriving
//! meanwhile joins the queue, and the next statement takes the whole queue
//! (up to [`MAX_PAIRS`]). A check that arrives when none is
//! running is read at once, so a quiet server adds no wait.
//!
//! Consistency holds as for a statement of its own: a queued check is read
//! by a statement sent after it was queued, so it sees every write
//! committed before it asked. A check abandoned while queued (its client
//! went, its request timed out) is dropped from the queue unread.

use super::facts::{fetch_pairs, Pair, MAX_PAIRS};
use super::{read_again_if_lost, Backend, StoreError};
use crate::domain::World;
use sqlx::AnyPool;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Most statements of single checks' fact loads running at once.
pub const AT_ONCE: usize = 4;

/// Checks that must be waiting before a statement runs beside another one.
/// Fewer wait for the running statement and go with the next. Measured on
/// the bench worlds (32 clients, fully consistent checks, 10 s runs): one
/// statement at a time left the CPU 7-12% idle while the database worked;
/// two while 16 wait did best at 10,000 assets (20,400-21,550 checks/s)
/// but worst at 1,000,000 (16,700-17,400/s, p99 6.2-7.0 ms, 14-17% idle),
/// where each probe costs the database more (its tables outgrow the default
/// 128 MB of shared buffers); four while 8 wait: 19,870-20,990 and
/// 18,430-18,790/s, p99 5.2-5.7 ms at 1,000,000 (three runs alternated;
/// three while 8 wait fell in between).
pub const MORE_AT: usize = 8;

/// A check waiting for its facts.
struct Waiting {
    pair: Pair,
    reply: oneshot::Sender<Result<World, StoreError>>,
}

/// The queue and how many readers work on it.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    readers: usize,
}

/// The fact loads of single checks on one pool.
pub struct Loads {
    pool: AnyPool,
    backend: Backend,
    /// Most statements at once.
    at_once: usize,
    /// Waiting checks that start another statement beside a running one.
    more_at: usize,
    queue: Mutex<Queue>,
    /// Statements sent, for tests and diagnostics.
    statements: AtomicU64,
}

impl Loads {
    /// Loads on `pool`: at most `at_once` statements at a time, another
    /// one beside those running only while `more_at` checks wait.
    pub fn new(pool: AnyPool, backend: Backend, at_once: usize, more_at: usize) -> Self {
        Loads {
            pool,
            backend,
            at_once: at_once.max(1),
            more_at: more_at.max(1),
            queue: Mutex::default(),
            statements: AtomicU64::new(0),
        }
    }

    /// Statements sent so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is consistent at every unlock: a panic cannot leave it
        // half changed.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The facts of `pair`, read by the next statement sent.
    pub async fn load(self: &Arc<Self>, pair: Pair) -> Result<World, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start_reader = {
            let mut queue = self.queue();
            queue.waiting.push_back(Waiting { pair, reply });
            let free = queue.readers == 0
                || (queue.readers < self.at_once && queue.waiting.len() >= self.more_at);
            if free {
                queue.readers += 1;
            }
            free
        };
        if start_reader {
            tokio::spawn(Reader::counted(self.clone()).run());
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the facts were not read (the server is shutting down, or the read failed inside); retry".into(),
            ))
        })
    }

    /// Up to [`MAX_PAIRS`] waiting checks, oldest first, leaving out those
    /// no longer waited for. None when the queue is empty, or when fewer
    /// than `more_at` wait while another reader runs (they go with that
    /// one's next statement); the reader asking then stops, counted out.
    fn next_group(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        queue.waiting.retain(|w| !w.reply.is_closed());
        let n = queue.waiting.len().min(MAX_PAIRS);
        if n == 0 || (queue.readers > 1 && n < self.more_at) {
            queue.readers = queue.readers.saturating_sub(1);
            return Vec::new();
        }
        queue.waiting.drain(..n).collect()
    }
}

/// A task reading groups of waiting checks until none is left.
struct Reader {
    loads: Arc<Loads>,
    /// Whether [`Queue::readers`] still counts it.
    counted: bool,
}

impl Reader {
    /// A reader already counted in [`Queue::readers`].
    fn counted(loads: Arc<Loads>) -> Self {
        Reader {
            loads,
            counted: true,
        }
    }

    async fn run(mut self) {
        loop {
            let group = self.loads.next_group();
            if group.is_empty() {
                // `next_group` counted this reader out.
                self.counted = false;
                return;
            }
            let pairs: Vec<&Pair> = group.iter().map(|w| &w.pair).collect();
            self.loads.statements.fetch_add(1, Ordering::Relaxed);
            metrics::histogram!("warden_fact_load_group_size").record(pairs.len() as f64);
            let read =
                read_again_if_lost(|| fetch_pairs(&self.loads.pool, self.loads.backend, &pairs));
            match read.await {
                Ok(worlds) => {
                    for (waiting, world) in group.into_iter().zip(worlds) {
                        let _ = waiting.reply.send(Ok(world));
                    }
                }
                Err(e) => {
                    for waiting in group {
                        let _ = waiting.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

impl Drop for Reader {
    /// A reader that ends without emptying the queue (a panic, or the
    /// runtime shutting down) is counted out, and another one started if
    /// checks still wait, so none waits for a reader that is gone.
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let restart = {
            let mut queue = self.loads.queue();
            queue.readers = queue.readers.saturating_sub(1);
            let restart = !queue.waiting.is_empty() && queue.readers < self.loads.at_once;
            if restart {
                queue.readers += 1;
            }
            restart
        };
        if restart {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(Reader::counted(self.loads.clone()).run());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::time::Duration;

    /// A migrated SQLite store in `dir` holding user `u` and nothing else,
    /// and loads of one statement at a time on a pool of one connection.
    async fn one_connection(dir: &std::path::Path) -> (Arc<Loads>, AnyPool) {
        let url = crate::store::sqlite_url(dir);
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrations");
        sqlx::query(
            "INSERT INTO users (id, kind, created_at, updated_at) VALUES ('u', 'registered', 0, 0)",
        )
        .execute(store.pool())
        .await
        .expect("user");
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("pool");
        let loads = Arc::new(Loads::new(pool.clone(), Backend::Sqlite, 1, 1));
        (loads, pool)
    }

    fn user(id: &str) -> Pair {
        Pair {
            user: Some(id.into()),
            ..Pair::default()
        }
    }

    /// Checks that come while a statement runs wait and go together in the
    /// next one; one abandoned meanwhile is left out unread, and each of the
    /// others gets its own facts.
    #[tokio::test]
    async fn checks_waiting_go_together_and_abandoned_ones_are_left_out() {
        let dir = tempfile::tempdir().expect("dir");
        let (loads, pool) = one_connection(dir.path()).await;
        // Hold the only connection: the first statement waits for it.
        let held = pool.acquire().await.expect("connection");
        let first = tokio::spawn({
            let loads = loads.clone();
            async move { loads.load(user("u")).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(loads.statements(), 1, "the first check is read at once");
        let abandoned = tokio::spawn({
            let loads = loads.clone();
            async move { loads.load(user("u")).await }
        });
        let mut together = Vec::new();
        for id in ["u", "nobody", "u"] {
            let loads = loads.clone();
            together.push(tokio::spawn(async move { loads.load(user(id)).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        abandoned.abort();
        assert_eq!(
            loads.queue().waiting.len(),
            4,
            "they wait for the running statement"
        );
        drop(held);
        let first = first.await.expect("task").expect("facts");
        assert_eq!(first.users.len(), 1);
        let mut found = Vec::new();
        for check in together {
            let world = check.await.expect("task").expect("facts");
            found.push(world.users.len());
        }
        assert_eq!(found, [1, 0, 1], "each check has its own facts");
        assert_eq!(
            loads.statements(),
            2,
            "the three waiting went in one statement"
        );
        let queue = loads.queue();
        assert!(queue.waiting.is_empty(), "the abandoned check was dropped");
        assert_eq!(queue.readers, 0, "no reader left running");
    }

    /// A reader that ends while checks wait (here: the runtime's task is
    /// cancelled) is counted out and another one takes the queue.
    #[tokio::test]
    async fn a_reader_that_ends_early_is_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        let (loads, pool) = one_connection(dir.path()).await;
        {
            let mut queue = loads.queue();
            queue.readers = 1;
        }
        // A reader task that will never read: dropped at once, like one
        // whose task panicked.
        let (reply, answer) = oneshot::channel();
        loads.queue().waiting.push_back(Waiting {
            pair: user("u"),
            reply,
        });
        drop(Reader::counted(loads.clone()));
        let world = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered")
            .expect("sent")
            .expect("facts");
        assert_eq!(world.users.len(), 1);
        drop(pool);
    }
}
