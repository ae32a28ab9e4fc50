//! Building and running the server: policies loaded and validated, database
//! connected and migrated, first admin key, optional demo world, listener
//! bound (port 0 in tests), router served until shutdown.

use crate::audit::Actor;
use crate::config::{redact_url, Settings};
use crate::decision_log::DecisionLog;
use crate::domain::World;
use crate::http::{self, AppState, StateParts};
use crate::identity::{Identity, IdentitySettings};
use crate::policy::{LoadError, PolicyEngine};
use crate::store::api_keys::generate_key;
use crate::store::world::ImportError;
use crate::store::{Store, StoreError};
use crate::telemetry;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The demo world loaded by `warden serve --demo`.
pub const DEMO_WORLD: &str = include_str!("../demo/world.json");

/// Why the server could not start.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StartError {
    /// The policies or schema are invalid.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Policies(#[from] LoadError),
    /// The database could not be opened or migrated.
    #[error("cannot use the database at {url}: {source}")]
    #[diagnostic(help("check --database-url (or WARDEN_DATABASE_URL / DATABASE_URL) and that the database is running"))]
    Database {
        /// The URL, password hidden.
        url: String,
        /// The cause.
        source: StoreError,
    },
    /// A file or socket could not be used.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The demo world did not import.
    #[error("cannot load the demo world: {0}")]
    Demo(String),
}

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    router: axum::Router,
    admin_key_file: Option<PathBuf>,
    watch_policies: bool,
    connections: http::serve::Connections,
}

/// Opens and migrates the database at `url`.
pub async fn open_store(url: &str) -> Result<Store, StartError> {
    open_store_with(url, crate::store::WRITE_LOCK_TIMEOUT).await
}

/// [`open_store`] with a chosen bound on write-lock waits.
pub async fn open_store_with(
    url: &str,
    write_lock_timeout: std::time::Duration,
) -> Result<Store, StartError> {
    let wrap = |source| StartError::Database {
        url: redact_url(url),
        source,
    };
    let store = Store::connect_with(url, write_lock_timeout)
        .await
        .map_err(wrap)?;
    store.migrate().await.map_err(wrap)?;
    Ok(store)
}

/// Creates the first admin key when no live one exists and writes it to
/// `<data dir>/admin.key` (mode 0600) before storing its hash.
async fn bootstrap_admin_key(
    store: &Store,
    data_dir: &Path,
    url: &str,
) -> Result<Option<PathBuf>, StartError> {
    let db = |source| StartError::Database {
        url: redact_url(url),
        source,
    };
    if store.has_admin_key().await.map_err(db)? {
        return Ok(None);
    }
    let (id, secret) = generate_key();
    let path = data_dir.join("admin.key");
    write_secret(&path, secret.expose()).map_err(|source| StartError::Io {
        what: format!("write the admin key to {}", path.display()),
        source,
    })?;
    let scopes = ["admin".to_string(), "check".to_string()];
    store
        .store_api_key(
            &id,
            &secret,
            "first admin key",
            &scopes,
            Actor::system(),
            None,
        )
        .await
        .map_err(db)?;
    Ok(Some(path))
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")
}

/// Imports the demo world (idempotent).
pub async fn load_demo(store: &Store) -> Result<(), StartError> {
    let world: World =
        serde_json::from_str(DEMO_WORLD).map_err(|e| StartError::Demo(e.to_string()))?;
    store
        .import(&world, Actor::cli("serve --demo"), None)
        .await
        .map_err(|e: ImportError| StartError::Demo(e.to_string()))?;
    Ok(())
}

/// `SIGHUP` reloads the policy set (validated first; see [`AppState::reload`]).
fn reload_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload through the admin route");
            return;
        };
        while hangups.recv().await.is_some() {
            // Failures are logged, counted and kept in the reload status.
            let _ = state.reload(Actor::cli("SIGHUP"), None).await;
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

mod watch {
    //! Reloads the policy set when a file in the policy or schema folder
    //! changes. Editors save in several steps (truncate, write, rename), so
    //! events are debounced; a half-written set is refused like any invalid
    //! one and the last good set keeps serving until the next change.

    use super::Actor;
    use crate::http::AppState;
    use notify::RecursiveMode;
    use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
    use std::sync::Arc;
    use std::time::Duration;

    /// How long the folders must be quiet before a reload.
    pub const DEBOUNCE: Duration = Duration::from_millis(300);

    /// Starts watching; `None` (with a warning) when the platform refuses.
    pub fn reload_on_change(state: Arc<AppState>) -> Option<Debouncer<notify::RecommendedWatcher>> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let debouncer = new_debouncer(DEBOUNCE, move |events: DebounceEventResult| match events {
            Ok(events) if !events.is_empty() => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "policy folder watch error"),
        });
        let mut debouncer = match debouncer {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the policy folders; reload with SIGHUP or the admin route");
                return None;
            }
        };
        let (policies, schema) = state.policy_dirs();
        for dir in [&policies, &schema] {
            if let Err(e) = debouncer.watcher().watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(folder = %dir.display(), error = %e,
                    "cannot watch the folder; reload with SIGHUP or the admin route");
                return None;
            }
        }
        tracing::info!(policies = %policies.display(), schema = %schema.display(),
            "watching the policy folders; a change reloads the policy set");
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                while rx.try_recv().is_ok() {}
                // Reload only when the content changed (a touch, an editor's
                // swap file): the version is the content hash.
                if state.policies_changed_on_disk() {
                    let _ = state.reload(Actor::cli("policy file change"), None).await;
                }
            }
        });
        Some(debouncer)
    }
}

/// Deletes old rate-limit counters every few minutes (any replica may).
fn prune_rate_limits(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            every.tick().await;
            if let Err(e) = state
                .store
                .prune_rate_limits(std::time::Duration::from_secs(3600))
                .await
            {
                tracing::debug!(error = %e, "cannot prune rate-limit counters");
            }
        }
    });
}

impl Application {
    /// Loads policies, opens the database, binds the listener.
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let engine = PolicyEngine::load(&settings.policies, &settings.schema)?;
        tracing::info!(
            version = engine.version(),
            policies = engine.policies().len(),
            "policies loaded"
        );
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartError::Io {
            what: format!("create the data folder {}", settings.data_dir.display()),
            source,
        })?;
        let store = open_store_with(&settings.database_url, settings.write_lock_timeout).await?;
        tracing::info!(database = %redact_url(&settings.database_url), "database ready");
        let admin_key_file =
            bootstrap_admin_key(&store, &settings.data_dir, &settings.database_url).await?;
        if settings.demo {
            load_demo(&store).await?;
            tracing::info!("demo world loaded");
        }
        let listener =
            crate::http::serve::bind(settings.listen).map_err(|source| StartError::Io {
                what: format!("listen on {}", settings.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Io {
            what: "read the listen address".into(),
            source,
        })?;
        // `iss` must match the relying party's configuration byte for byte:
        // no trailing slash.
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let identity = Identity::start(
            store.clone(),
            IdentitySettings {
                issuer: public_url.clone(),
                audience: settings.anonymous_audience.clone(),
                token_ttl: settings.anonymous_token_ttl,
                oidc: settings.oidc.clone(),
                idp_admin: settings.idp_admin.clone(),
            },
        )
        .await
        .map_err(|source| StartError::Database {
            url: redact_url(&settings.database_url),
            source,
        })?;
        match &settings.oidc {
            Some(oidc) => tracing::info!(issuer = %oidc.issuer, jwks = %oidc.jwks_url,
                audience = ?oidc.audience, "identity provider configured"),
            None => tracing::info!("no identity provider configured (--oidc-issuer); only anonymous tokens are accepted"),
        }
        if settings.oidc.as_ref().is_some_and(|o| o.audience.is_none()) {
            tracing::warn!(
                "--oidc-audience is not set: the provider's tokens are accepted for any audience"
            );
        }
        let decision_log = match &settings.decision_log {
            Some(path) => Some(
                DecisionLog::open(path, settings.decision_log_rotation).map_err(|source| {
                    StartError::Io {
                        what: format!("open the decision log {}", path.display()),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        let state = Arc::new(AppState::new(
            store,
            engine,
            (settings.policies.clone(), settings.schema.clone()),
            StateParts {
                public_url,
                metrics: telemetry::metrics(),
                identity,
                anonymous_rate_limit: settings.anonymous_rate_limit,
                trust_forwarded_for: settings.trust_forwarded_for,
                decision_log,
                bench_endpoints: settings.bench_endpoints,
                evaluate_every_decision: settings.evaluate_every_decision,
                caches: settings.caches,
                batch_budget_kib: settings.batch_budget_kib.max(1),
            },
        ));
        let router = http::router(state.clone(), settings.request_timeout);
        Ok(Application {
            listener,
            state,
            router,
            admin_key_file,
            watch_policies: settings.watch_policies,
            connections: settings.connections,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Shared state (tests use it to reach the store).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Where the first admin key was written, when this start created it.
    pub fn admin_key_file(&self) -> Option<&Path> {
        self.admin_key_file.as_deref()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        reload_on_sighup(self.state.clone());
        // Hear of other replicas' writes (NOTIFY, and a poll behind it).
        self.state.store.follow_revisions();
        // Dropping the watcher stops it: keep it for as long as we serve.
        let _watcher = if self.watch_policies {
            watch::reload_on_change(self.state.clone())
        } else {
            None
        };
        prune_rate_limits(self.state.clone());
        http::serve::serve(self.listener, self.router, self.connections, shutdown).await;
    }
}
