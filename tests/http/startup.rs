//! Start-up (CONTRACT §6): the first start writes a working admin key to
//! `<data dir>/admin.key` (mode 0600) and later starts over the same
//! database make none; invalid policies stop `Application::build` with the
//! file, line:column and reason, before anything is written.

use crate::both_backends;
use crate::common::{repo, settings, Db, PgDatabase};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden::config::Settings;
use warden::http::AppState;
use warden::startup::Application;

/// A running server; stops when dropped.
struct Running {
    base: String,
    state: Arc<AppState>,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn start(app: Application) -> Self {
        let base = format!("http://{}", app.local_addr().expect("bound"));
        let state = app.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Running {
            base,
            state,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    async fn call(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

impl Running {
    /// Imports a user owning a workspace with `key`, and asks whether the
    /// user may delete it: allowed.
    async fn imports_and_decides(&self, key: &str) {
        let (status, body) = self
            .call(key, reqwest::Method::POST, "/v1/admin/import", Some(json!({
                "users": [{"id": "u", "kind": "registered"}], "workspaces": [{"id": "w", "owner": "u"}]})))
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = self
            .call(key, reqwest::Method::POST, "/v1/check", Some(json!({
                "principal": {"type": "User", "id": "u"}, "action": "delete", "resource": {"type": "Workspace", "id": "w"}})))
            .await;
        assert_eq!(
            (status, body["decision"].clone()),
            (200, json!("allow")),
            "{body}"
        );
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Every byte stored under `dir`, except the admin key file.
fn stored_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir") {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "admin.key") {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

/// A fresh database of kind `db`: a new Postgres database (dropped with
/// the first value), or SQLite in the data folder `data`; and its URL.
async fn database(db: Db, data: &Path) -> (Option<PgDatabase>, String) {
    let pg = match db {
        Db::Postgres => Some(PgDatabase::create().await),
        Db::Sqlite => None,
    };
    let url = pg
        .as_ref()
        .map_or_else(|| warden::store::sqlite_url(data), PgDatabase::url);
    (pg, url)
}

async fn the_first_start_writes_one_working_admin_key(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    // The data folder does not exist yet: the first start makes it.
    let data = tmp.path().join("data").join("warden");
    let (_pg, url) = database(db, &data).await;
    let first = Application::build(&settings(&data, url.clone()))
        .await
        .unwrap_or_else(|e| panic!("first start failed: {e}"));
    let file = first
        .admin_key_file()
        .expect("the first start writes the key")
        .to_path_buf();
    assert_eq!(file, data.join("admin.key"));
    #[cfg(unix)]
    assert_eq!(
        mode(&file),
        0o600,
        "admin.key is readable by its owner only"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let key = text.trim().to_string();
    assert_eq!(text, format!("{key}\n"), "one key, one line");
    assert!(key.starts_with("wdn_"), "{key}");

    let server = Running::start(first);
    // The key administers and decides.
    let (status, keys) = server
        .call(&key, reqwest::Method::GET, "/v1/admin/api-keys", None)
        .await;
    assert_eq!(status, 200, "{keys}");
    let keys = keys["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["scopes"], json!(["admin", "check"]));
    let id = keys[0]["id"].as_str().unwrap();
    assert!(
        key.starts_with(&format!("wdn_{id}_")),
        "the listed key is the written one"
    );
    server.imports_and_decides(&key).await;
    // Creating the key was audited; the key itself is stored only as a hash.
    assert_eq!(
        server.state.store.audit_event_count().await.unwrap(),
        3,
        "signing key + admin key creation + import"
    );
    if db == Db::Sqlite {
        let stored = stored_bytes(&data);
        assert!(!stored.is_empty());
        let secret = key.rsplit_once('_').unwrap().1.as_bytes();
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret),
            "the key is stored in clear"
        );
    }
    drop(server);

    // A second start over the same database makes no new key and leaves the
    // file alone; the first key keeps working.
    let second = Application::build(&settings(&data, url.clone()))
        .await
        .unwrap();
    assert!(
        second.admin_key_file().is_none(),
        "{db:?}: a second start made a new key"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    let server = Running::start(second);
    let (status, keys) = server
        .call(&key, reqwest::Method::GET, "/v1/admin/api-keys", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    drop(server);

    // Another replica over the same Postgres database, with its own data
    // folder, makes no key either.
    if db == Db::Postgres {
        let replica_dir = tmp.path().join("replica");
        let replica = Application::build(&settings(&replica_dir, url))
            .await
            .unwrap();
        assert!(replica.admin_key_file().is_none());
        assert!(!replica_dir.join("admin.key").exists());
    }
}
both_backends!(admin_key, the_first_start_writes_one_working_admin_key);

#[cfg(unix)]
#[tokio::test]
async fn an_existing_admin_key_file_is_rewritten_private() {
    use std::os::unix::fs::PermissionsExt;
    // A stale admin.key (say, from a wiped database) with loose permissions
    // is replaced, and ends up 0600.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("admin.key");
    std::fs::write(&file, "wdn_stale_0000\nleftover line\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let app = Application::build(&settings(tmp.path(), warden::store::sqlite_url(tmp.path())))
        .await
        .unwrap();
    assert_eq!(app.admin_key_file(), Some(file.as_path()));
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("stale") && !text.contains("leftover"),
        "{text}"
    );
    let server = Running::start(app);
    let (status, _) = server
        .call(text.trim(), reqwest::Method::GET, "/v1/admin/export", None)
        .await;
    assert_eq!(status, 200);
}

/// Copies of the repo's policies and schema in a temp folder.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["policies", "schema"] {
            let to = dir.path().join(sub);
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(repo().join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        Workspace { dir }
    }

    fn policy(&self, name: &str) -> PathBuf {
        self.dir.path().join("policies").join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.policy(name)).unwrap()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.policy(name), text).unwrap();
    }

    /// Replaces `from` (which must occur once) by `to` in policy file `name`;
    /// returns the 1-based line and column where `to` starts.
    fn replace(&self, name: &str, from: &str, to: &str) -> (usize, usize) {
        let text = self.read(name);
        assert_eq!(text.matches(from).count(), 1, "{from:?} in {name}");
        let at = text.find(from).unwrap();
        self.write(name, &text.replacen(from, to, 1));
        position(&text, at)
    }

    /// Appends `extra` to policy file `name`; returns the line it starts on.
    fn append(&self, name: &str, extra: &str) -> usize {
        let mut text = self.read(name);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let line = text.lines().count() + 1;
        text.push_str(extra);
        self.write(name, &text);
        line
    }

    fn settings(&self) -> Settings {
        let data = self.dir.path().join("data");
        let mut s = settings(&data, warden::store::sqlite_url(&data));
        s.policies = self.dir.path().join("policies");
        s.schema = self.dir.path().join("schema");
        s
    }

    /// Builds the server, which must refuse to start; returns the error text.
    async fn refused(&self) -> String {
        let s = self.settings();
        match Application::build(&s).await {
            Ok(_) => panic!("the server started with invalid policies"),
            Err(e) => {
                // Nothing was touched: no data folder, no database, no key.
                assert!(
                    !s.data_dir.exists(),
                    "a refused start wrote to {}",
                    s.data_dir.display()
                );
                e.to_string()
            }
        }
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

#[tokio::test]
async fn the_unmodified_copy_starts() {
    // The harness itself: the copied folders are a valid policy set.
    let ws = Workspace::new();
    let app = Application::build(&ws.settings())
        .await
        .expect("a copy of the repo's policies starts");
    assert!(app.admin_key_file().is_some());
}

#[tokio::test]
async fn an_unknown_attribute_stops_the_start_with_file_line_column_and_reason() {
    let ws = Workspace::new();
    let (line, column) = ws.replace(
        "public-links.cedar",
        "resource.public_access == \"write\" };",
        "resource.ownr == \"write\" };",
    );
    let error = ws.refused().await;
    let place = format!("public-links.cedar:{line}:{column}");
    assert!(error.contains(&place), "expected {place} in:\n{error}");
    assert!(
        error.contains(&ws.policy("public-links.cedar").display().to_string()),
        "{error}"
    );
    assert!(
        error.contains("ownr"),
        "the reason names the attribute:\n{error}"
    );
    assert!(
        error.contains("Asset"),
        "the reason names the entity type:\n{error}"
    );
    assert!(error.contains("1 problem"), "{error}");
}

#[tokio::test]
async fn every_broken_file_is_reported_at_once() {
    let ws = Workspace::new();
    let (l1, c1) = ws.replace("asset-grants.cedar", "resource.readers", "resource.ownr");
    let (l2, _) = ws.replace(
        "project-roles.cedar",
        "Warden::Action::\"create_asset\",",
        "Warden::Action::\"create_assets\",",
    );
    let error = ws.refused().await;
    assert!(
        error.contains(&format!("asset-grants.cedar:{l1}:{c1}")),
        "{error}"
    );
    assert!(
        error.contains(&format!("project-roles.cedar:{l2}:")),
        "{error}"
    );
    assert!(error.contains("create_assets"), "{error}");
    assert!(error.contains("2 problem"), "{error}");
}

#[tokio::test]
async fn a_policy_without_id_stops_the_start() {
    let ws = Workspace::new();
    let line = ws.append(
        "tokens.cedar",
        "\n// A policy someone forgot to name.\npermit (principal, action == Warden::Action::\"read\", resource);\n",
    );
    let error = ws.refused().await;
    let place = format!("tokens.cedar:{}:1", line + 2);
    assert!(error.contains(&place), "expected {place} in:\n{error}");
    assert!(error.contains("@id"), "{error}");
}

#[tokio::test]
async fn duplicate_ids_across_files_stop_the_start() {
    let ws = Workspace::new();
    ws.write(
        "zz-local.cedar",
        "// Local additions.\n\n@id(\"public-asset-read\")\nforbid (principal, action, resource)\nwhen { context.authn == \"app\" };\n",
    );
    let error = ws.refused().await;
    assert!(error.contains("zz-local.cedar:3:1"), "{error}");
    assert!(error.contains("duplicate @id"), "{error}");
    assert!(error.contains("public-asset-read"), "{error}");
    assert!(
        error.contains("public-links.cedar"),
        "names where the @id is already used:\n{error}"
    );
}

#[tokio::test]
async fn duplicate_ids_in_one_file_stop_the_start() {
    let ws = Workspace::new();
    let line = ws.append(
        "public-links.cedar",
        "\n@id(\"public-asset-write\")\npermit (principal is Warden::User, action == Warden::Action::\"delete\", resource is Warden::Asset)\nwhen { resource.visibility == \"public\" };\n",
    );
    let error = ws.refused().await;
    let place = format!("public-links.cedar:{}:1", line + 1);
    assert!(error.contains(&place), "expected {place} in:\n{error}");
    assert!(
        error.contains("duplicate @id") && error.contains("public-asset-write"),
        "{error}"
    );
}

#[tokio::test]
async fn a_copied_policy_is_reported_where_the_copy_is() {
    // The same policy pasted twice in one file: the error points at the
    // second copy, not the first.
    let ws = Workspace::new();
    let text = ws.read("public-links.cedar");
    let start = text.find("@id(\"public-asset-write\")").unwrap();
    let end = start + text[start..].find("};").unwrap() + 2;
    let policy = text[start..end].to_string();
    let line = ws.append("public-links.cedar", &format!("\n{policy}\n"));
    let error = ws.refused().await;
    let place = format!("public-links.cedar:{}:1", line + 1);
    assert!(error.contains(&place), "expected {place} in:\n{error}");
    assert!(error.contains("duplicate @id"), "{error}");
}

/// Runs `sql` on the database at `url` (SQLite or Postgres), as an operator
/// or another build of Warden would.
async fn execute(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
}

/// sqlx's record of a migration `version` this build does not have, as
/// the build that applied it would leave it.
fn applied_elsewhere(version: i64, description: &str) -> String {
    format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         SELECT {version}, '{description}', success, checksum, 1 FROM _sqlx_migrations WHERE version = 1"
    )
}

/// A rolling upgrade, or a release rolled back: a replica of the previous
/// release restarted on a database the next release has already migrated
/// starts, says which migrations it runs without, and serves. An unknown
/// migration among this build's own still stops it, with what to do.
async fn a_database_a_newer_build_migrated_still_starts_this_one(db: Db) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (_pg, url) = database(db, &data).await;
    std::fs::create_dir_all(&data).unwrap();
    let store = warden::startup::open_store(&url).await.expect("migrated");
    execute(&url, &applied_elsewhere(9001, "from a newer build")).await;
    assert_eq!(
        store
            .migrate()
            .await
            .expect("a newer build's migration is left alone"),
        vec![warden::store::NewerMigration {
            version: 9001,
            description: "from a newer build".to_string(),
        }]
    );
    let server = Running::start(
        Application::build(&settings(&data, url.clone()))
            .await
            .unwrap_or_else(|e| panic!("{db:?}: refused a newer build's database: {e}")),
    );
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let key = key.trim();
    server.imports_and_decides(key).await;
    drop(server);

    execute(&url, &applied_elsewhere(0, "from another line of builds")).await;
    let refused = match Application::build(&settings(&data, url.clone())).await {
        Ok(_) => panic!("{db:?}: started over a migration among its own it does not have"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("migration 0 applied")
            && refused.contains("migrated by a different build")
            && refused.contains("restore a backup"),
        "{refused}"
    );
}
both_backends!(
    newer_migrations,
    a_database_a_newer_build_migrated_still_starts_this_one
);
