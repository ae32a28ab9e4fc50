//! The `warden` command: serve, migrate, import, validate, test, diff,
//! matrix, keys.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warden::audit::Actor;
use warden::config::{redact_url, LogFormat, PolicyArgs, ServeArgs, Settings, StoreArgs};
use warden::domain::World;
use warden::policy::diff::{PolicySide, Sources};
use warden::policy::report::{self, SuiteRun};
use warden::policy::suite::run_file;
use warden::policy::{LoadError, PolicyEngine};
use warden::startup::{open_store, Application, StartError};
use warden::telemetry;

// mimalloc: a request allocates and frees many small objects (JSON values,
// Cedar expressions); glibc's malloc took ~15% of a cached check's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// What a policy change does before it ships: asks two policy sets the
    /// same decisions (test suites, an exhaustive generated world, optionally
    /// a database sample and a decision log) and lists every decision that
    /// changed, grouped by the policies responsible. Exit 1 when something
    /// changed (unless --accept), 2 when a side cannot be loaded.
    Diff(Box<DiffArgs>),
    /// Generate benchmark data: a realistic world of N assets (see
    /// `warden::benchdata`), imported in one transaction.
    BenchData {
        #[command(flatten)]
        store: StoreArgs,
        /// How many assets.
        #[arg(long, default_value_t = 10_000)]
        assets: usize,
        /// Random seed (the same seed gives the same world).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The in-process evaluation rate, for the benchmark script: the load
    /// script's 1,000-request batches decided over facts loaded once, with
    /// no HTTP and no cache, on all cores. Prints decisions/s.
    BenchEval {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Draw from the first HOT workspaces (as `HOT` of batch.lua).
        #[arg(long, default_value_t = 50)]
        hot: usize,
        /// How long to evaluate.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Threads (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// The permission matrix: for each resource type, principal situations
    /// by actions, each cell decided by the policies with the deciding @ids.
    Matrix {
        #[command(flatten)]
        policy: PolicyArgs,
        /// `markdown` (committed at docs/permissions.md) or one
        /// self-contained `html` page.
        #[arg(long, value_enum, default_value_t = MatrixFormat::Markdown)]
        format: MatrixFormat,
        /// Instead of printing, compare with this file: exit 1 when it no
        /// longer matches the policies.
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum MatrixFormat {
    Markdown,
    Html,
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

/// The arguments of `warden diff`.
#[derive(clap::Args, Debug)]
struct DiffArgs {
    /// The head's folders when --head is not given; the paths a git
    /// revision is read at.
    #[command(flatten)]
    policy: PolicyArgs,
    /// The policy set before the change: a git revision of this
    /// repository (`main`, `HEAD~1`) or a folder (holding `policies/` and
    /// `schema/`, or the `.cedar` files themselves).
    #[arg(long)]
    base: String,
    /// The policy set after the change (default: --policies and
    /// --schema as they are on disk); a folder or a git revision.
    #[arg(long)]
    head: Option<String>,
    /// Policy test suites to evaluate (files or folders; default
    /// tests/policies when it exists).
    #[arg(long = "suites")]
    suites: Vec<PathBuf>,
    /// Also evaluate a bounded sample of (user, resource) pairs of this
    /// database, over its facts.
    #[arg(long)]
    database_url: Option<String>,
    /// Pairs to sample from the database.
    #[arg(long, default_value_t = 1_000)]
    sample: usize,
    /// Replay a decision log (`serve --decision-log`) over the facts of
    /// --database-url, or of the SQLite database in --data-dir.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Where the SQLite database a replay reads lives.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    data_dir: PathBuf,
    /// `text` for people, `json` for tools (every change).
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    format: ValidateFormat,
    /// Changes listed per group in text (0: all).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Exit 0 even when decisions changed.
    #[arg(long)]
    accept: bool,
}

async fn diff(args: DiffArgs) -> ExitCode {
    let (policies, schema) = (&args.policy.policies, &args.policy.schema);
    let sides = PolicySide::resolve(&args.base, policies, schema).and_then(|base| {
        let head = match &args.head {
            Some(spec) => PolicySide::resolve(spec, policies, schema)?,
            None => PolicySide::load(&policies.display().to_string(), policies, schema, None)?,
        };
        Ok((base, head))
    });
    let (base, head) = match sides {
        Ok(sides) => sides,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let suite_paths = if args.suites.is_empty() {
        let default = PathBuf::from("tests/policies");
        if default.is_dir() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        args.suites
    };
    let suites = match suite_files(&suite_paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let replay = match &args.replay {
        Some(path) => match warden::decision_log::read(path) {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Vec::new(),
    };
    let url = match (&args.database_url, &args.replay) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(_)) => {
            let file = args.data_dir.join("warden.db");
            if !file.is_file() {
                eprintln!(
                    "error: a replay needs the facts its decisions were made on: no database at {} (give --database-url or --data-dir)",
                    file.display()
                );
                return ExitCode::from(2);
            }
            Some(warden::store::sqlite_url(&args.data_dir))
        }
        (None, None) => None,
    };
    // Read-only use: connect, never migrate someone's database from a diff.
    let database = match &url {
        Some(url) => match warden::store::Store::connect(url).await {
            Ok(store) => Some(store),
            Err(e) => {
                eprintln!("error: cannot use the database at {}: {e}", redact_url(url));
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let sources = Sources {
        suites,
        database,
        sample: if args.database_url.is_some() {
            args.sample
        } else {
            0
        },
        replay,
    };
    let result = match warden::policy::diff::run(&base, &head, sources).await {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match args.format {
        ValidateFormat::Text => emit(&result.text(args.limit)),
        ValidateFormat::Json => emit(&format!("{}\n", result.json())),
    }
    if result.changes.is_empty() || args.accept {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn bench_data(store: StoreArgs, assets: usize, seed: u64) -> ExitCode {
    telemetry::init_logging(LogFormat::Text);
    let started = std::time::Instant::now();
    let world = warden::benchdata::world(assets, seed);
    let db = match open_cli_store(&store).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    match db.import(&world, Actor::cli("bench-data"), None).await {
        Ok(counts) => {
            println!(
                "bench data: {counts} ({} workspaces of 100 assets; \"big\" holds 10,000 when assets >= 10,000) in {:.1} s",
                world.workspaces.len(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn matrix(policy: PolicyArgs, format: MatrixFormat, check: Option<PathBuf>) -> ExitCode {
    let engine = match PolicyEngine::load(&policy.policies, &policy.schema) {
        Ok(engine) => engine,
        Err(e) => {
            report_policies(e);
            return ExitCode::from(2);
        }
    };
    let matrix = warden::policy::matrix::compute(&engine);
    let text = match format {
        MatrixFormat::Markdown => matrix.markdown(),
        MatrixFormat::Html => matrix.html(),
    };
    let Some(file) = check else {
        emit(&text);
        return ExitCode::SUCCESS;
    };
    match std::fs::read_to_string(&file) {
        Ok(committed) if committed == text => {
            println!("ok: {} matches the policies", file.display());
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!(
                "error: {} no longer matches the policies; regenerate it with `warden matrix > {}` and review the change",
                file.display(),
                file.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            ExitCode::from(2)
        }
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
    app.run(shutdown_signal()).await;
    ExitCode::SUCCESS
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
        Command::Diff(args) => {
            telemetry::init_logging(LogFormat::Text);
            diff(*args).await
        }
        Command::Matrix {
            policy,
            format,
            check,
        } => matrix(policy, format, check),
        Command::BenchData {
            store,
            assets,
            seed,
        } => bench_data(store, assets, seed).await,
        Command::BenchEval {
            store,
            policy,
            hot,
            seconds,
            threads,
        } => bench_eval(store, policy, hot, seconds, threads).await,
    }
}

async fn bench_eval(
    store: StoreArgs,
    policy: PolicyArgs,
    hot: usize,
    seconds: f64,
    threads: Option<usize>,
) -> ExitCode {
    telemetry::init_logging(LogFormat::Text);
    let engine = match PolicyEngine::load(&policy.policies, &policy.schema) {
        Ok(engine) => engine,
        Err(e) => {
            report_policies(e);
            return ExitCode::from(2);
        }
    };
    let db = match open_cli_store(&store).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    match warden::benchdata::eval_rate(&engine, &db, hot, seconds, threads).await {
        Ok(rate) => {
            println!("{rate:.0} decisions/s in process ({threads} threads, batches of 1,000)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
