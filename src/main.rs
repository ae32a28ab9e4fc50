//! The `warden` command: serve, migrate, import, validate, test.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warden::audit::Actor;
use warden::config::{redact_url, LogFormat, PolicyArgs, ServeArgs, Settings, StoreArgs};
use warden::domain::World;
use warden::policy::report::{self, SuiteRun};
use warden::policy::suite::run_file;
use warden::policy::{LoadError, PolicyEngine};
use warden::startup::{open_store, Application, StartError};
use warden::telemetry;

/// Warden: an authorization server deciding with Cedar policies.
#[derive(Parser, Debug)]
#[command(name = "warden", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import a world document (CONTRACT §5) in one transaction.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The JSON document.
        file: PathBuf,
    },
    /// Parse and strictly validate the policies against the schema.
    Validate {
        #[command(flatten)]
        policy: PolicyArgs,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Manage the keys that sign anonymous tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Run policy test suites (default: tests/policies) against the policies.
    Test {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Suite files or folders of them.
        paths: Vec<PathBuf>,
        /// `text` (like cargo test) or `junit` (XML for CI systems).
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Sign new tokens with a new key; the old keys stay published until
    /// their last token has expired. Running servers pick the new key up
    /// within a minute.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Lifetime of the anonymous tokens the old keys signed, in seconds
        /// (as the servers' --anonymous-token-ttl).
        #[arg(long, env = "WARDEN_ANONYMOUS_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
        anonymous_token_ttl: u64,
        /// Publish the new key this many seconds before it signs, so that
        /// relying parties caching the JWKS learn it first.
        #[arg(long, default_value_t = 0)]
        publish_lead: u64,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ValidateFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TestFormat {
    Text,
    Junit,
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn validate(policy: PolicyArgs, format: ValidateFormat) -> ExitCode {
    let loaded = PolicyEngine::load(&policy.policies, &policy.schema);
    match (format, loaded) {
        (ValidateFormat::Text, Ok(engine)) => {
            println!(
                "ok: {} policies valid against the schema (version {})",
                engine.policies().len(),
                engine.version()
            );
            ExitCode::SUCCESS
        }
        (ValidateFormat::Text, Err(e)) => report_policies(e),
        (ValidateFormat::Json, Ok(engine)) => {
            let out = serde_json::json!({"ok": true, "version": engine.version(),
                "policies": engine.policies(), "problems": []});
            emit(&format!("{out}\n"));
            ExitCode::SUCCESS
        }
        (ValidateFormat::Json, Err(e)) => {
            let problems = match &e {
                LoadError::Invalid { problems } => serde_json::json!(problems),
                other => {
                    serde_json::json!([{"file": "", "line": 0, "column": 0, "message": other.to_string()}])
                }
            };
            emit(&format!(
                "{}\n",
                serde_json::json!({"ok": false, "problems": problems})
            ));
            ExitCode::FAILURE
        }
    }
}

/// The suite files named by `paths` (folders give their `*.json`), sorted.
fn suite_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or folder", path.display()));
        }
    }
    Ok(files)
}

fn test(policy: PolicyArgs, paths: Vec<PathBuf>, format: TestFormat) -> ExitCode {
    let engine = match PolicyEngine::load(&policy.policies, &policy.schema) {
        Ok(engine) => engine,
        Err(e) => {
            report_policies(e);
            return ExitCode::from(2);
        }
    };
    let paths = if paths.is_empty() {
        vec![PathBuf::from("tests/policies")]
    } else {
        paths
    };
    let files = match suite_files(&paths) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("error: no suite files (*.json) in {paths:?}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runs: Vec<SuiteRun> = files
        .iter()
        .map(|file| SuiteRun {
            file: file.display().to_string(),
            outcomes: run_file(&engine, file),
        })
        .collect();
    match format {
        TestFormat::Text => emit(&report::text(&runs)),
        TestFormat::Junit => emit(&report::junit(&runs)),
    }
    if report::totals(&runs).1 == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report(error: impl miette::Diagnostic + Send + Sync + 'static) -> ExitCode {
    eprintln!("{:?}", miette::Report::new(error));
    ExitCode::FAILURE
}

/// Policy problems read best as a compiler prints them: one block each.
fn report_policies(error: LoadError) -> ExitCode {
    match error {
        LoadError::Invalid { problems } => {
            for problem in &problems {
                eprintln!("{problem}\n");
            }
            eprintln!(
                "error: {} problem(s); the policy set was not loaded",
                problems.len()
            );
            ExitCode::FAILURE
        }
        other => report(other),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn serve(args: ServeArgs) -> ExitCode {
    telemetry::init_logging(args.log_format);
    let settings = Settings::from(&args);
    let app = match Application::build(&settings).await {
        Ok(app) => app,
        Err(StartError::Policies(e)) => return report_policies(e),
        Err(e) => return report(e),
    };
    if let Some(path) = app.admin_key_file() {
        eprintln!(
            "warden: created the first admin API key, saved to {} (mode 0600)",
            path.display()
        );
    }
    let addr = app
        .local_addr()
        .map_or_else(|| settings.listen.to_string(), |a| a.to_string());
    tracing::info!(%addr, database = %redact_url(&settings.database_url), "warden listening");
    eprintln!("warden: listening on http://{addr}");
    match app.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(StartError::Io {
            what: "serve HTTP".into(),
            source: e,
        }),
    }
}

/// Creates the data folder and opens (and migrates) the database for a
/// command; on failure the error is printed and the exit code returned.
async fn open_cli_store(store: &StoreArgs) -> Result<warden::store::Store, ExitCode> {
    if let Err(e) = std::fs::create_dir_all(&store.data_dir) {
        eprintln!("error: cannot create {}: {e}", store.data_dir.display());
        return Err(ExitCode::FAILURE);
    }
    open_store(&store.url()).await.map_err(report)
}

async fn rotate_keys(store: StoreArgs, ttl: u64, publish_lead: u64) -> ExitCode {
    telemetry::init_logging(LogFormat::Text);
    let db = match open_cli_store(&store).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let ttl = std::time::Duration::from_secs(ttl.max(60));
    let result = match warden::identity::keys::KeyRing::load(db, ttl).await {
        Ok(ring) => {
            ring.rotate(
                std::time::Duration::from_secs(publish_lead),
                Actor::cli("keys rotate"),
                None,
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(key) => {
            println!(
                "new signing key {} (signs in {publish_lead} s); the previous keys stay published until their tokens expire",
                key.kid
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn import(store: StoreArgs, file: PathBuf) -> ExitCode {
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let mut de = serde_json::Deserializer::from_str(&text);
    let world: World = match serde_path_to_error::deserialize(&mut de) {
        Ok(world) => world,
        Err(e) => {
            eprintln!("error: {}: {}: {}", file.display(), e.path(), e.inner());
            return ExitCode::FAILURE;
        }
    };
    let db = match open_cli_store(&store).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    match db.import(&world, Actor::cli("import"), None).await {
        Ok(counts) => {
            println!("imported {}: {counts}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}\nnothing was written");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate { store } => {
            telemetry::init_logging(LogFormat::Text);
            if let Err(e) = std::fs::create_dir_all(&store.data_dir) {
                eprintln!("error: cannot create {}: {e}", store.data_dir.display());
                return ExitCode::FAILURE;
            }
            match open_store(&store.url()).await {
                Ok(_) => {
                    println!("migrations applied to {}", redact_url(&store.url()));
                    ExitCode::SUCCESS
                }
                Err(e) => report(e),
            }
        }
        Command::Import { store, file } => import(store, file).await,
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    store,
                    anonymous_token_ttl,
                    publish_lead,
                },
        } => rotate_keys(store, anonymous_token_ttl, publish_lead).await,
        Command::Validate { policy, format } => validate(policy, format),
        Command::Test {
            policy,
            paths,
            format,
        } => test(policy, paths, format),
    }
}
