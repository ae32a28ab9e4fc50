//! The `warden` command: serve, migrate, import, validate.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warden::audit::Actor;
use warden::config::{redact_url, LogFormat, PolicyArgs, ServeArgs, Settings, StoreArgs};
use warden::domain::World;
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
    Serve(ServeArgs),
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
    },
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
    if let Err(e) = std::fs::create_dir_all(&store.data_dir) {
        eprintln!("error: cannot create {}: {e}", store.data_dir.display());
        return ExitCode::FAILURE;
    }
    let db = match open_store(&store.url()).await {
        Ok(db) => db,
        Err(e) => return report(e),
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
        Command::Serve(args) => serve(args).await,
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
        Command::Validate { policy } => {
            match PolicyEngine::load(&policy.policies, &policy.schema) {
                Ok(engine) => {
                    println!(
                        "ok: {} policies valid against the schema (version {})",
                        engine.policies().len(),
                        engine.version()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report_policies(e),
            }
        }
    }
}
