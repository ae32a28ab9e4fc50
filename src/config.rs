//! Command-line flags and their `WARDEN_*` environment variables, parsed
//! once into typed settings (CONTRACT §6).

use crate::store::sqlite_url;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the data lives.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Folder for the embedded database and the first admin key.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    pub data_dir: PathBuf,
    /// `postgres://...` for production; empty means embedded SQLite in the
    /// data folder. `DATABASE_URL` is read too.
    #[arg(long, env = "WARDEN_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// The database URL in force: flag, `WARDEN_DATABASE_URL`, `DATABASE_URL`,
    /// else SQLite in the data folder.
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| sqlite_url(&self.data_dir))
    }
}

/// Where the policies and schema are.
#[derive(Args, Clone, Debug)]
pub struct PolicyArgs {
    /// Folder of `.cedar` policy files.
    #[arg(long, env = "WARDEN_POLICIES", default_value = "./policies")]
    pub policies: PathBuf,
    /// Folder of `.cedarschema` files.
    #[arg(long, env = "WARDEN_SCHEMA", default_value = "./schema")]
    pub schema: PathBuf,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `warden serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Database location.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Policy location.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Address to listen on.
    #[arg(long, env = "WARDEN_LISTEN", default_value = "127.0.0.1:8180")]
    pub listen: SocketAddr,
    /// URL apps reach Warden at (default: http://<listen address>).
    #[arg(long, env = "WARDEN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Load the small demo world the README's examples use.
    #[arg(long, env = "WARDEN_DEMO")]
    pub demo: bool,
    /// Seconds before a request is abandoned (answered 503, deny).
    #[arg(long, env = "WARDEN_REQUEST_TIMEOUT", default_value_t = 10)]
    pub request_timeout: u64,
    /// Log format.
    #[arg(long, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Everything `serve` needs, typed.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Data folder.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database_url: String,
    /// Policies folder.
    pub policies: PathBuf,
    /// Schema folder.
    pub schema: PathBuf,
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Public URL, if configured.
    pub public_url: Option<String>,
    /// Load the demo world.
    pub demo: bool,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl From<&ServeArgs> for Settings {
    fn from(args: &ServeArgs) -> Self {
        Settings {
            data_dir: args.store.data_dir.clone(),
            database_url: args.store.url(),
            policies: args.policy.policies.clone(),
            schema: args.policy.schema.clone(),
            listen: args.listen,
            public_url: args.public_url.clone(),
            demo: args.demo,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        }
    }
}

/// Hides the password of a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = url.get(scheme + 3..at).unwrap_or("");
            let user = creds.split(':').next().unwrap_or("");
            format!(
                "{}{}:***{}",
                url.get(..scheme + 3).unwrap_or(""),
                user,
                url.get(at..).unwrap_or("")
            )
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/warden"),
            "postgres://app:***@db:5432/warden"
        );
        assert_eq!(
            redact_url("sqlite://./warden-data/warden.db?mode=rwc"),
            "sqlite://./warden-data/warden.db?mode=rwc"
        );
    }
}
