//! Test helpers: `spawn_app` starts the real server on an ephemeral port over
//! a fresh database (a temp SQLite file, or a new Postgres database that is
//! dropped afterwards) and returns a client for it.
#![allow(dead_code)]

pub mod identity;

use serde_json::{json, Value};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;
use warden::config::Settings;
use warden::http::AppState;
use warden::startup::Application;

/// Copies the files of folder `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// Replaces the first `from` in `file` with `to`; `from` must be there.
pub fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// The decision log's entries (JSON lines) once `done` holds for them: the
/// writer thread flushes after each burst, so this polls for up to 2 s and
/// then returns what is there.
pub async fn decision_log(path: &Path, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a decision log line is JSON"))
            .collect();
        if done(&entries) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    entries
}

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The Postgres server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("WARDEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh Postgres database, dropped when this is dropped.
pub struct PgDatabase {
    pub name: String,
    pub admin_url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        Self::create_with("").await
    }

    /// A fresh database created with `options` after its name (e.g. a
    /// template and a locale).
    pub async fn create_with(options: &str) -> Self {
        let admin_url = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Postgres tests need a server at {admin_url} (set WARDEN_TEST_DATABASE_URL; \
                 .ci/run starts the local one): {e}"
                )
            });
        let name = format!("warden_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name} {options}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        PgDatabase { name, admin_url }
    }

    /// URL of this database, on `host_port` (the server's, or a proxy's).
    pub fn url_via(&self, host_port: &str) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        let base = match (base.find('@'), base.rfind('/')) {
            (Some(at), _) => format!("{}@{host_port}", &base[..at]),
            _ => format!("postgres://postgres@{host_port}"),
        };
        format!("{base}/{}", self.name)
    }

    pub fn url(&self) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime: use a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    pub data_dir: PathBuf,
    pub db: Db,
    /// The URL of this server's database.
    pub database_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
    _pg: Option<PgDatabase>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn settings(data_dir: &Path, database_url: String) -> Settings {
    let mut settings = Settings::new(
        data_dir.to_path_buf(),
        database_url,
        repo().join("policies"),
        repo().join("schema"),
    );
    // Tests mint many anonymous users from one address.
    settings.anonymous_rate_limit = 100_000;
    settings
}

/// Starts a server over a fresh database of kind `db`.
pub async fn spawn_app(db: Db) -> TestApp {
    let pg = match db {
        Db::Postgres => Some(PgDatabase::create().await),
        Db::Sqlite => None,
    };
    let url = pg.as_ref().map(PgDatabase::url);
    spawn_with(db, pg, url).await
}

/// Starts a server over `url` (default: SQLite in a temp dir), keeping `pg` alive.
pub async fn spawn_with(db: Db, pg: Option<PgDatabase>, url: Option<String>) -> TestApp {
    spawn_configured(db, pg, url, |_| {}).await
}

/// Like [`spawn_with`], letting `configure` change the settings first.
pub async fn spawn_configured(
    db: Db,
    pg: Option<PgDatabase>,
    url: Option<String>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    // A Postgres test always runs on Postgres: a fresh database unless the
    // caller brings one (or a URL to share with another server).
    let pg = match (db, pg, &url) {
        (Db::Postgres, None, None) => Some(PgDatabase::create().await),
        (_, pg, _) => pg,
    };
    let url = url
        .or_else(|| pg.as_ref().map(PgDatabase::url))
        .unwrap_or_else(|| warden::store::sqlite_url(dir.path()));
    let mut settings = settings(dir.path(), url.clone());
    configure(&mut settings);
    let app = Application::build(&settings)
        .await
        .unwrap_or_else(|e| panic!("server failed to start: {e}"));
    let base = format!("http://{}", app.local_addr().expect("bound"));
    let state = app.state();
    // A second server on a database that already has an admin key writes
    // none; such tests use the first server's key.
    let admin_key = std::fs::read_to_string(dir.path().join("admin.key"))
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        admin_key,
        client: reqwest::Client::new(),
        state,
        data_dir: dir.path().to_path_buf(),
        db,
        database_url: settings.database_url.clone(),
        shutdown: Some(tx),
        _dir: dir,
        _pg: pg,
    }
}

impl TestApp {
    /// Sends `req` with `key`; returns status and JSON body (`Null` when
    /// the body is not JSON).
    async fn answer(req: reqwest::RequestBuilder, key: Option<&str>) -> (u16, Value) {
        let req = match key {
            Some(key) => req.bearer_auth(key),
            None => req,
        };
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// POST `body` to `path` with `key`; returns status and JSON body.
    pub async fn post_with(&self, key: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
        let req = self.client.post(format!("{}{path}", self.base)).json(body);
        Self::answer(req, key).await
    }

    /// POST with the admin key.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(Some(&self.admin_key), path, body).await
    }

    /// GET with `key`.
    pub async fn get_with(&self, key: Option<&str>, path: &str) -> (u16, Value) {
        Self::answer(self.client.get(format!("{}{path}", self.base)), key).await
    }

    /// DELETE with `key`.
    pub async fn delete_with(&self, key: Option<&str>, path: &str) -> (u16, Value) {
        Self::answer(self.client.delete(format!("{}{path}", self.base)), key).await
    }

    /// GET with the admin key.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with(Some(&self.admin_key), path).await
    }

    /// Imports `world` and asserts it was accepted.
    pub async fn import(&self, world: &Value) {
        let (status, body) = self.post("/v1/admin/import", world).await;
        assert_eq!(status, 200, "import refused: {body}");
    }

    /// `/v1/check` for a User on `resource_type`/`resource_id`; returns the decision word.
    pub async fn decide(
        &self,
        user: &str,
        action: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> String {
        let (status, body) = self
            .post(
                "/v1/check",
                &json!({
                    "principal": {"type": "User", "id": user},
                    "action": action,
                    "resource": {"type": resource_type, "id": resource_id},
                }),
            )
            .await;
        assert_eq!(status, 200, "check failed: {body}");
        body["decision"].as_str().expect("decision").to_string()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let resp = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("sent");
        resp.text().await.expect("text")
    }

    /// Creates an API key with `scopes`; returns its text.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/v1/admin/api-keys",
                &json!({"name": "test", "scopes": scopes}),
            )
            .await;
        assert_eq!(status, 201, "key not created: {body}");
        body["key"].as_str().expect("key").to_string()
    }
}

/// Declares `name` once per backend: `name::sqlite` and `name::postgres`,
/// each calling `body(Db)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                $body($crate::common::Db::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                $body($crate::common::Db::Postgres).await;
            }
        }
    };
}
