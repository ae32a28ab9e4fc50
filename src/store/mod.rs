//! Storage: sqlx over Postgres (production) or SQLite (the embedded default).
//!
//! Both backends run through sqlx's `Any` driver with runtime-checked SQL
//! written once: `$N` placeholders (SQLite reads them too), `ON CONFLICT`
//! upserts, times as Unix milliseconds in BIGINT/INTEGER, no arrays. The
//! compile-time `query!` macros are not used on purpose: they check against
//! one database only. Migrations live in `migrations/postgres` and
//! `migrations/sqlite`, are embedded in the binary (`migrations`) and run
//! at start-up (and by `warden migrate`). Queries sit in the module of the
//! table group they touch: `facts` (decision slices), `world`
//! (import/export), `api_keys`, `identity` (users, links, tokens, signing
//! keys), `rate_limits`.

pub mod api_keys;
mod coalesce;
pub mod facts;
pub mod identity;
pub mod manage;
mod migrations;
pub mod rate_limits;
pub mod revision;
pub mod sample;
pub mod world;

use crate::audit::AuditEvent;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// Embedded SQLite.
    Sqlite,
}

/// What went wrong talking to the database. Messages never carry SQL.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (down, timed out, pool exhausted).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The pooled connection a query ran on turned out to be lost (a
    /// database restart, a failover, a cut network). Answered like
    /// [`StoreError::Unavailable`]; a read may be tried again on another
    /// connection ([`Store::read_again_if_lost`]).
    #[error("the database connection was lost: {0}")]
    ConnectionLost(String),
    /// The connection was lost while a write committed: the write may or
    /// may not have been applied.
    #[error("the database connection was lost while the write committed: {0}")]
    OutcomeUnknown(String),
    /// A query failed for another reason: a bug or a broken database.
    #[error("database error: {0}")]
    Query(String),
    /// The database refused a change because of a constraint.
    #[error("the change conflicts with stored data: {0}")]
    Conflict(String),
    /// A write waited for the write lock longer than the configured bound
    /// (another write, such as a large import, held it); nothing was written.
    #[error("the write lock stayed busy: {0}")]
    Busy(String),
}

/// A migration applied by a newer build of Warden than this one
/// ([`Store::migrate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewerMigration {
    /// Its version (file number).
    pub version: i64,
    /// Its description (file name after the number).
    pub description: String,
}

/// [`Store::migrate`] on `conn`, under sqlx's migration lock (so that a
/// replica starting beside another sees its migrations whole): refuses
/// unknown applied migrations older than this build's last, then applies
/// the pending ones with sqlx, past the newer ones.
async fn migrate_on(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
) -> Result<Vec<NewerMigration>, StoreError> {
    use sqlx::migrate::{Migrate, MigrateError};
    let failed = |e: MigrateError| match e {
        MigrateError::Execute(e) => StoreError::from(e),
        other => StoreError::Query(format!("migration failed: {other}")),
    };
    let mut migrator = migrations::migrator(backend).await.map_err(failed)?;
    conn.lock().await.map_err(failed)?;
    let result = async {
        conn.ensure_migrations_table().await.map_err(failed)?;
        let known: std::collections::BTreeSet<i64> = migrator.iter().map(|m| m.version).collect();
        let last = known.last().copied().unwrap_or(0);
        let mut newer = Vec::new();
        for applied in conn.list_applied_migrations().await.map_err(failed)? {
            match applied.version {
                v if known.contains(&v) => {}
                v if v > last => newer.push(v),
                v => {
                    return Err(StoreError::Query(format!(
                        "migration failed: the database has migration {v} applied, which this \
                         build of Warden does not have although it has later ones ({last} is its \
                         last): the database was migrated by a different build; run that build, \
                         or restore a backup taken before it"
                    )))
                }
            }
        }
        let newer = if newer.is_empty() {
            Vec::new()
        } else {
            describe(conn, &newer).await?
        };
        // Checked above: only newer migrations are missing here.
        migrator.set_locking(false);
        migrator.set_ignore_missing(true);
        migrator.run(&mut *conn).await.map_err(failed)?;
        Ok(newer)
    }
    .await;
    conn.unlock().await.map_err(failed)?;
    result
}

/// The descriptions of the applied migrations `versions`, from sqlx's table.
async fn describe(
    conn: &mut sqlx::AnyConnection,
    versions: &[i64],
) -> Result<Vec<NewerMigration>, StoreError> {
    use sqlx::Row;
    let rows = sqlx::query("SELECT version, description FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let version: i64 = row.try_get("version")?;
        if versions.contains(&version) {
            let description: String = row.try_get("description")?;
            out.push(NewerMigration {
                version,
                description,
            });
        }
    }
    Ok(out)
}

/// SQLSTATE / SQLite result codes of a lock wait that gave up: Postgres
/// `lock_not_available` (55P03, raised by `lock_timeout`), SQLite
/// `SQLITE_BUSY` and `SQLITE_LOCKED` with their extended codes.
const BUSY_CODES: &[&str] = &["55P03", "5", "261", "517", "773", "6", "262"];

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => {
                lost::noted();
                StoreError::ConnectionLost(e.to_string())
            }
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                // 08xxx: connection exceptions; 57P0x: server shutting down.
                if code.starts_with("08") || code.starts_with("57P0") {
                    lost::noted();
                    StoreError::ConnectionLost(db.message().to_string())
                } else if BUSY_CODES.contains(&code.as_str()) {
                    StoreError::Busy(db.message().to_string())
                } else if db.is_unique_violation()
                    || db.is_foreign_key_violation()
                    || db.is_check_violation()
                {
                    StoreError::Conflict(db.message().to_string())
                } else {
                    StoreError::Query(db.message().to_string())
                }
            }
            _ => StoreError::Query(e.to_string()),
        }
    }
}

/// Every table Warden writes.
pub const TABLES: &[&str] = &[
    "users",
    "workspaces",
    "projects",
    "assets",
    "workspace_members",
    "project_members",
    "asset_grants",
    "api_keys",
    "audit_events",
    "identities",
    "anonymous_tokens",
    "signing_keys",
    "rate_limits",
    "invites",
];

/// How long a request waits for a database connection before answering 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a write waits for the write lock by default (`serve
/// --write-lock-timeout-ms`) before it gives up with [`StoreError::Busy`].
pub const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// Postgres: the planner's cost of a page read out of order, for Warden's
/// sessions only. Its default (4) is meant for spinning disks; with it a
/// table of a few hundred rows (the users of a small app) is read whole
/// for a lookup by primary key rather than through its index, and every
/// uncached decision's fact query paid for reading 200 rows: 12.0-13.5k
/// against 15.6-17.6k statements/s (pgbench on the 10,000-asset bench
/// world). Warden reads small rows by key from a working set that is
/// cached; 1.1 is the value commonly advised for such data on SSDs.
const RANDOM_PAGE_COST: &str = "SET random_page_cost = 1.1";

/// A pooled connection idle for longer than this is pinged before use
/// (and so is any connection idle since a connection was lost, [`lost`]).
const IDLE_PING: Duration = Duration::from_secs(1);

/// When this process last found a database connection lost.
///
/// One loss says the others went with it more often than not: a database
/// restart or a failover ends every session at once. sqlx pings each
/// connection as it goes back to the pool, so a connection returned since
/// the loss was seen is known good; one that has sat in the pool since
/// before it is pinged before use (see [`Store::connect_with`]), rather than
/// failing the next request it serves. Process-wide because sqlx's error
/// does not say which pool it came from; another pool in the process (a
/// test's) only pings a little more after a loss.
mod lost {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// Milliseconds from [`start`] to the last loss seen, plus one (0: none).
    static LAST: AtomicU64 = AtomicU64::new(0);

    fn start() -> Instant {
        static START: OnceLock<Instant> = OnceLock::new();
        *START.get_or_init(Instant::now)
    }

    fn millis(at: Instant) -> u64 {
        let since = at.saturating_duration_since(start()).as_millis();
        u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
    }

    /// Notes that a connection was found lost, now.
    pub(super) fn noted() {
        LAST.fetch_max(millis(Instant::now()), Ordering::Relaxed);
    }

    /// Whether a loss was seen at or after `at`.
    fn seen_since(at: Instant) -> bool {
        LAST.load(Ordering::Relaxed) >= millis(at)
    }

    /// Whether a connection idle for `idle_for` has sat in the pool since
    /// before a loss was seen (to the millisecond, erring towards a ping).
    pub(super) fn idle_since_a_loss(idle_for: Duration) -> bool {
        let released = Instant::now().checked_sub(idle_for).unwrap_or_else(start);
        seen_since(released)
    }
}

/// The database: a connection pool and its backend. `Debug` never shows
/// the URL (it may carry a password).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL, for the Postgres revision listener (never logged).
    url: String,
    revisions: std::sync::Arc<revision::Revisions>,
    fact_loads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Single checks' fact loads, read together.
    single_loads: std::sync::Arc<coalesce::Loads>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("revision_seen", &self.revisions.seen())
            .finish_non_exhaustive()
    }
}

static DRIVERS: Once = Once::new();

/// The SQLite URL of the embedded database in `data_dir`.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("warden.db").display())
}

impl Store {
    /// Connects to `url` (`postgres://...` or `sqlite://...`) with the
    /// default write-lock wait ([`WRITE_LOCK_TIMEOUT`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, WRITE_LOCK_TIMEOUT).await
    }

    /// Connects to `url`; a write waits at most `write_lock_timeout` for
    /// the write lock (and any other lock), then fails with
    /// [`StoreError::Busy`] having written nothing. Without the bound a
    /// long import would hold every waiting writer, and the pool
    /// connections they sit on, for as long as it runs, until checks too
    /// found no free connection.
    pub async fn connect_with(url: &str, write_lock_timeout: Duration) -> Result<Self, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Unavailable(
                "unsupported database URL: use postgres://... or sqlite://...".into(),
            ));
        };
        let max = match backend {
            Backend::Postgres => 16,
            Backend::Sqlite => 8,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // By default sqlx pings every idle connection before handing it
            // out: one extra round trip per query. Connections that were in
            // use a moment ago are known good (sqlx also checks each one
            // when it is returned), so only one idle for longer than
            // IDLE_PING, or idle since a connection was found lost, is
            // pinged; a broken one is dropped and another taken, so a
            // database restart during a quiet spell costs no request, and
            // one during traffic costs no more than the queries it cut.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_PING || lost::idle_since_a_loss(meta.idle_for) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                let millis = write_lock_timeout.as_millis().max(1);
                Box::pin(async move {
                    // Postgres: `lock_timeout` bounds every lock wait of the
                    // session (the write lock above all). SQLite: the busy
                    // timeout bounds the wait for the database write lock.
                    let statement = match conn.backend_name() {
                        "PostgreSQL" => format!("SET lock_timeout = {millis}"),
                        _ => format!("PRAGMA busy_timeout = {millis}"),
                    };
                    sqlx::Executor::execute(&mut *conn, statement.as_str()).await?;
                    if conn.backend_name() == "PostgreSQL" {
                        sqlx::Executor::execute(&mut *conn, RANDOM_PAGE_COST).await?;
                    }
                    Ok(())
                })
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // Persistent in the file: readers no longer block the writer.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let single_loads =
            coalesce::Loads::new(pool.clone(), backend, coalesce::AT_ONCE, coalesce::MORE_AT);
        Ok(Store {
            pool,
            backend,
            url: url.to_string(),
            revisions: Default::default(),
            fact_loads: Default::default(),
            single_loads: std::sync::Arc::new(single_loads),
        })
    }

    /// Applies every pending migration of this backend, and returns the
    /// migrations a newer build of Warden applied that this one does not
    /// know (versions past its last one), which it leaves as they are: a
    /// replica restarted on the previous release during a rolling upgrade,
    /// or a release rolled back, still starts (migrations only add to what
    /// the previous release reads; README, "Upgrading replicas one at a
    /// time"). An unknown applied
    /// migration before this build's last one means the database was
    /// migrated by another line of builds, and stops the start-up.
    pub async fn migrate(&self) -> Result<Vec<NewerMigration>, StoreError> {
        // On a connection of its own with no lock wait bound: a replica
        // starting beside another waits for that one's migrations (they
        // hold sqlx's migration lock) however long they take. The
        // connection is closed afterwards rather than returned unbounded.
        let mut conn = self.pool.acquire().await?.detach();
        if self.backend == Backend::Postgres {
            sqlx::Executor::execute(&mut conn, "SET lock_timeout = 0").await?;
        }
        let result = migrate_on(&mut conn, self.backend).await;
        let _ = sqlx::Connection::close(conn).await;
        let newer = result?;
        for migration in &newer {
            tracing::warn!(
                version = migration.version,
                description = %migration.description,
                "the database has a migration from a newer build of Warden; \
                 this build runs without it (upgrade this replica to match the others)"
            );
        }
        Ok(newer)
    }

    /// The pool, for the query modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// How many fact loads (decision round trips) this store has made; a
    /// batch of decisions makes one.
    pub fn fact_loads(&self) -> u64 {
        self.fact_loads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Single checks' fact loads ([`coalesce`]).
    pub(crate) fn single_loads(&self) -> &std::sync::Arc<coalesce::Loads> {
        &self.single_loads
    }

    /// How many statements have read single checks' facts: fewer than the
    /// checks when they arrived together.
    pub fn single_fact_statements(&self) -> u64 {
        self.single_loads.statements()
    }

    pub(crate) fn count_fact_load(&self) {
        count_fact_load(&self.fact_loads);
    }

    /// Number of audit events stored (all targets).
    pub async fn audit_event_count(&self) -> Result<i64, StoreError> {
        use sqlx::Row;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
            .fetch_one(&self.pool)
            .await?;
        row.try_get::<i64, _>("n")
            .map_err(|e| StoreError::Query(e.to_string()))
    }

    /// Checks that the database answers (on another connection if the
    /// first one taken turns out lost).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read_again_if_lost(|| async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// Runs the read `query`, and once more if its connection turned out
    /// to be lost: by then every connection idle since before the loss is
    /// pinged before use, so the second try runs on a live connection, or
    /// a new one if the database is back. Only for reads (and the
    /// rate-limit counter, which may safely count twice): a write cut off
    /// at its commit may or may not have committed.
    pub(crate) async fn read_again_if_lost<T, F, Fut>(&self, query: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        read_again_if_lost(query).await
    }

    /// Refreshes the planner's statistics after a bulk load, so that plans
    /// are costed on the real table sizes.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let statement = match self.backend {
            Backend::Postgres => {
                "ANALYZE users, workspaces, projects, assets, workspace_members, project_members, asset_grants"
            }
            Backend::Sqlite => "PRAGMA optimize",
        };
        sqlx::query(statement).execute(&self.pool).await?;
        Ok(())
    }

    /// Records an event that changed no table of its own (a policy reload).
    /// It spoils no cached answer: decisions are cached per policy version,
    /// and slices hold facts, which it does not change.
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        tx.changed_only([]);
        tx.commit(event).await
    }

    /// Starts a write. Commit it with [`Tx::commit`], which writes the audit event.
    ///
    /// The first statement takes the write lock and the transaction's
    /// revision: it bumps the one-row revision counter. Writers queue on
    /// that row until they commit or roll back, so revisions follow commit
    /// order, and what a transaction reads after it no other writer changes
    /// before it ends: a decision made on it still holds at commit
    /// (`manage::Recheck`). Every writer takes this lock first, so it is
    /// never part of a deadlock. On SQLite `BEGIN IMMEDIATE` takes the
    /// database's write lock at once as well (a transaction that read first
    /// and wrote later could otherwise fail with "database is locked"
    /// instead of waiting its turn).
    ///
    /// Until the transaction says what it changed ([`Tx::changed_only`]),
    /// its commit spoils every cached answer.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        use sqlx::Row;
        let mut inner = match self.backend {
            Backend::Postgres => self.pool.begin().await?,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
        };
        let row = sqlx::query(
            "UPDATE warden_revision SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .fetch_one(&mut *inner)
        .await?;
        let revision: i64 = row
            .try_get("value")
            .map_err(|e| StoreError::Query(e.to_string()))?;
        Ok(Tx {
            inner,
            backend: self.backend,
            revisions: self.revisions.clone(),
            revision,
            changed: revision::Changed::Everything,
            fact_loads: self.fact_loads.clone(),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Rows per table, for diagnostics and tests that show a refused
    /// request wrote nothing.
    pub async fn table_sizes(
        &self,
    ) -> Result<std::collections::BTreeMap<&'static str, i64>, StoreError> {
        use sqlx::Row;
        let mut sizes = std::collections::BTreeMap::new();
        for table in TABLES {
            let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
                .fetch_one(&self.pool)
                .await?;
            let n = row
                .try_get::<i64, _>("n")
                .map_err(|e| StoreError::Query(e.to_string()))?;
            sizes.insert(*table, n);
        }
        Ok(sizes)
    }
}

/// [`Store::read_again_if_lost`], for code that holds the pool only.
pub(crate) async fn read_again_if_lost<T, F, Fut>(query: F) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    match query().await {
        Err(StoreError::ConnectionLost(cause)) => {
            tracing::info!(%cause, "a pooled database connection was lost; reading again");
            query().await
        }
        result => result,
    }
}

/// Counts one fact load (decision round trip), on the pool or in a write.
fn count_fact_load(loads: &std::sync::atomic::AtomicU64) {
    loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("warden_fact_loads_total").increment(1);
}

/// A write transaction. Dropping it rolls back; the only way to commit is
/// [`Tx::commit`], which writes the change's audit event first.
pub struct Tx {
    inner: Transaction<'static, Any>,
    backend: Backend,
    revisions: std::sync::Arc<revision::Revisions>,
    /// The revision this transaction commits as (taken by [`Store::begin`]).
    revision: i64,
    /// What it changed, for the caches of every process.
    changed: revision::Changed,
    fact_loads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Tx {
    /// The connection, for queries inside the transaction.
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }

    /// Declares that this transaction changed the facts of these entities
    /// (change keys: [`revision::user`], [`revision::asset`]...) and of no
    /// others; call it after the writes, naming the entity of every row
    /// written (a membership's or grant's user); calls add up, so a helper
    /// that writes may name its own. Cached answers that
    /// depend on none of them survive the commit, here and on every other
    /// replica. A transaction that never calls it spoils every cached answer.
    pub(crate) fn changed_only(&mut self, entities: impl IntoIterator<Item = String>) {
        let mut keys = match std::mem::replace(&mut self.changed, revision::Changed::Everything) {
            revision::Changed::Entities(keys) => keys,
            revision::Changed::Everything => Default::default(),
        };
        keys.extend(entities);
        self.changed = revision::Changed::Entities(keys);
    }

    /// Writes `event` and commits, all or nothing, as the revision taken
    /// when the transaction began; then the cached answers that depend on
    /// what it changed stop counting in this process, and (Postgres) every
    /// other replica is told at commit, by a `NOTIFY` queued with the event.
    /// The event also records what the write changed (when it named it),
    /// for replicas that hear of the revision only by their poll.
    pub async fn commit(mut self, event: AuditEvent) -> Result<(), StoreError> {
        let announcement = revision::announce(self.revision, &self.changed);
        let named = matches!(self.changed, revision::Changed::Entities(_));
        let postgres = self.backend == Backend::Postgres;
        self.write_audit(
            event,
            named.then_some(announcement.as_str()),
            postgres.then_some(announcement.as_str()),
        )
        .await?;
        self.inner
            .commit()
            .await
            .map_err(|e| match StoreError::from(e) {
                // COMMIT was sent; whether it took effect is unknown.
                StoreError::ConnectionLost(cause) => StoreError::OutcomeUnknown(cause),
                other => other,
            })?;
        self.revisions.apply(self.revision, &self.changed);
        Ok(())
    }

    /// Writes one more audit event for a change made in this transaction
    /// (one that makes several distinct changes, such as a sign-up that both
    /// syncs a profile and secures content). It lands only if the
    /// transaction commits.
    pub async fn audit(&mut self, event: AuditEvent) -> Result<(), StoreError> {
        self.write_audit(event, None, None).await
    }

    /// Inserts `event`, with the transaction's revision and, for the event
    /// that commits it, what it `changed` (the announcement). With a
    /// `notify` payload (Postgres) the same statement queues the
    /// revision's `NOTIFY`, delivered at commit.
    async fn write_audit(
        &mut self,
        event: AuditEvent,
        changed: Option<&str>,
        notify: Option<&str>,
    ) -> Result<(), StoreError> {
        /// The insert, written once for both statements below.
        macro_rules! insert_event {
            () => {
                "INSERT INTO audit_events \
                 (at, actor, action, target_type, target_id, before, after, request_id, revision, changed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            };
        }
        const INSERT: &str = insert_event!();
        const INSERT_AND_NOTIFY: &str = concat!(
            "WITH e AS (",
            insert_event!(),
            " RETURNING id) SELECT e.id FROM e CROSS JOIN LATERAL pg_notify($11, $12) AS n"
        );
        let json = |v: &Option<serde_json::Value>| v.as_ref().map(ToString::to_string);
        let query = sqlx::query(if notify.is_some() {
            INSERT_AND_NOTIFY
        } else {
            INSERT
        })
        .bind(now_millis())
        .bind(event.actor.as_str())
        .bind(event.action)
        .bind(event.target_type)
        .bind(&event.target_id)
        .bind(json(&event.before))
        .bind(json(&event.after))
        .bind(event.request_id.as_deref())
        .bind(self.revision)
        .bind(changed);
        let query = match notify {
            Some(payload) => query.bind(revision::CHANNEL).bind(payload),
            None => query,
        };
        query.execute(&mut *self.inner).await?;
        Ok(())
    }
}

/// Now, in Unix milliseconds.
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// `($first), ($first+1), ...` for a VALUES list of `n` single-column rows.
pub(crate) fn values_list(first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("(${})", first + i));
    }
    out
}

/// Reads a text column, naming it in the error.
pub(crate) fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    use sqlx::Row;
    row.try_get::<String, _>(column)
        .map_err(|e| StoreError::Query(format!("column {column}: {e}")))
}

/// Reads an optional text column, naming it in the error.
pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    use sqlx::Row;
    row.try_get::<Option<String>, _>(column)
        .map_err(|e| StoreError::Query(format!("column {column}: {e}")))
}

/// An integer column.
pub(crate) fn i64_of(row: &AnyRow, column: &str) -> Result<i64, StoreError> {
    use sqlx::Row;
    row.try_get::<i64, _>(column)
        .map_err(|e| StoreError::Query(format!("column {column}: {e}")))
}

/// A nullable integer column.
pub(crate) fn opt_i64(row: &AnyRow, column: &str) -> Result<Option<i64>, StoreError> {
    use sqlx::Row;
    row.try_get::<Option<i64>, _>(column)
        .map_err(|e| StoreError::Query(format!("column {column}: {e}")))
}

/// Parses a stored word (kind, visibility, role...), naming it in the error.
pub(crate) fn parse<T: std::str::FromStr<Err = String>>(
    value: &str,
    what: &str,
) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|e| StoreError::Query(format!("stored {what} is invalid: {e}")))
}

/// Parses a stored id.
pub(crate) fn id(value: String) -> Result<crate::domain::Id, StoreError> {
    crate::domain::Id::parse(value)
        .map_err(|e| StoreError::Query(format!("stored id is invalid: {e}")))
}

/// Unwraps a column that must not be NULL.
pub(crate) fn required(value: Option<String>, what: &str) -> Result<String, StoreError> {
    value.ok_or_else(|| StoreError::Query(format!("stored {what} is missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pooled Postgres session plans for cached data
    /// ([`RANDOM_PAGE_COST`]: with the default, a check's fact statement
    /// read small tables whole) and bounds its lock waits by the write-lock
    /// timeout it was given. Asked of several sessions at once, so a
    /// setting made on one connection only would show.
    #[tokio::test]
    async fn postgres_sessions_plan_for_cached_data_and_bound_lock_waits() {
        let url = std::env::var("WARDEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let store = Store::connect_with(&url, Duration::from_millis(1234))
            .await
            .unwrap_or_else(|e| {
                panic!("this test needs Postgres at {url} (.ci/run starts it): {e}")
            });
        let mut sessions = Vec::new();
        for _ in 0..3 {
            sessions.push(store.pool().acquire().await.expect("session"));
        }
        for session in &mut sessions {
            let (cost, lock): (String, String) = sqlx::query_as(
                "SELECT current_setting('random_page_cost'), current_setting('lock_timeout')",
            )
            .fetch_one(&mut **session)
            .await
            .expect("settings");
            assert_eq!((cost.as_str(), lock.as_str()), ("1.1", "1234ms"));
        }
    }
}
