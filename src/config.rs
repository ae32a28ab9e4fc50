//! Command-line flags and their `WARDEN_*` environment variables, parsed
//! once into typed settings (CONTRACT §6).

use crate::identity::idp::IdpAdminSettings;
use crate::identity::oidc::OidcSettings;
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
    /// Milliseconds a write waits for the write lock (held by another
    /// write, such as a large import) before it gives up with 503
    /// `write_busy`, having written nothing.
    #[arg(long, env = "WARDEN_WRITE_LOCK_TIMEOUT_MS", default_value_t = 3_000)]
    pub write_lock_timeout_ms: u64,
    /// Log format.
    #[arg(long, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Append every decision as one JSON line to this file (read back by
    /// `warden diff --replay`); never tokens or keys.
    #[arg(long, env = "WARDEN_DECISION_LOG")]
    pub decision_log: Option<PathBuf>,
    /// Rotate the decision log when it would pass this many megabytes: the
    /// file becomes FILE.1 (older ones FILE.2 ...) and a new one starts.
    /// 0 never rotates (leave it to logrotate's copytruncate).
    #[arg(long, env = "WARDEN_DECISION_LOG_MAX_MB", default_value_t = 100)]
    pub decision_log_max_mb: u64,
    /// Rotated decision log files kept (FILE.1 to FILE.N); older ones are
    /// deleted.
    #[arg(long, env = "WARDEN_DECISION_LOG_KEEP", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub decision_log_keep: u16,
    /// KiB of batch request bodies (`/v1/check/batch`, AuthZEN
    /// evaluations) worked on at once; further batch calls wait their turn,
    /// unread, within the request timeout. Bounds a batch load's memory
    /// whatever the number of connections. Default: 512 per core, at least
    /// 1024.
    #[arg(long, env = "WARDEN_BATCH_BUDGET_KIB", value_parser = clap::value_parser!(u32).range(64..))]
    pub batch_budget_kib: Option<u32>,
    /// Connections served at once; further ones wait, unaccepted, in the
    /// listen queue until one closes. Bounds the memory of connections
    /// (each buffers at most 64 KiB of its request) and their file
    /// descriptors.
    #[arg(long, env = "WARDEN_MAX_CONNECTIONS", default_value_t = crate::http::serve::MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a connection may take to send a request head, and may stay
    /// idle between requests (keep-alive), before it is closed. The request
    /// timeout starts once the head is read.
    #[arg(long, env = "WARDEN_IDLE_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Do not watch the policy and schema folders for changes (reload with
    /// SIGHUP or the admin route instead).
    #[arg(long, env = "WARDEN_NO_WATCH")]
    pub no_watch: bool,
    /// Serve `GET /v1/bench/select` (API key with the check scope): the
    /// benchmark floor, one indexed one-row SELECT; and `GET
    /// /v1/bench/facts`, the fact load of one check. Off in production.
    #[arg(long, env = "WARDEN_BENCH_ENDPOINTS")]
    pub bench_endpoints: bool,
    /// Evaluate every decision with Cedar, instead of taking the verdict
    /// Cedar gave an earlier request in the same situation (the same facts
    /// but for their ids, the same action and context: see the README's
    /// "How a decision is made"). The answers are the same; this costs
    /// CPU, and is there to compare and measure.
    #[arg(long, env = "WARDEN_EVALUATE_EVERY_DECISION")]
    pub evaluate_every_decision: bool,
    /// Megabytes the decision cache may hold (estimated from each entry's
    /// size; the least used answers leave first). 0 caches no decision.
    #[arg(long, env = "WARDEN_DECISION_CACHE_MB",
          default_value_t = crate::cache::CacheBounds::default().decisions_mb)]
    pub decision_cache_mb: u32,
    /// Megabytes the cache of single checks' entity slices may hold. 0
    /// caches no slice.
    #[arg(long, env = "WARDEN_SLICE_CACHE_MB",
          default_value_t = crate::cache::CacheBounds::default().slices_mb)]
    pub slice_cache_mb: u32,
    /// Identity settings.
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Anonymous tokens, the identity provider, and the public endpoints' rate
/// limit. `Debug` hides the admin API secret.
#[derive(Args, Clone)]
pub struct IdentityArgs {
    /// `aud` of the anonymous tokens Warden mints.
    #[arg(long, env = "WARDEN_ANONYMOUS_AUDIENCE", default_value = "convex")]
    pub anonymous_audience: String,
    /// Lifetime of an anonymous token, in seconds (default 30 days).
    #[arg(long, env = "WARDEN_ANONYMOUS_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub anonymous_token_ttl: u64,
    /// The identity provider's issuer (`iss`), e.g. Clerk's Frontend API URL.
    #[arg(long, env = "WARDEN_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience (`aud`) the provider's tokens must carry, e.g. `convex`
    /// for a Clerk JWT template; unset: `aud` is not checked.
    #[arg(long, env = "WARDEN_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The provider's JWKS (default `<issuer>/.well-known/jwks.json`).
    #[arg(long, env = "WARDEN_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    /// Accepted `azp` values, comma-separated; unset accepts any.
    #[arg(long, env = "WARDEN_OIDC_AUTHORIZED_PARTIES", value_delimiter = ',')]
    pub oidc_authorized_parties: Vec<String>,
    /// The provider's admin API base URL (Clerk: `https://api.clerk.com`);
    /// when set with the secret, Warden sets `external_id` there.
    #[arg(long, env = "WARDEN_IDP_ADMIN_URL")]
    pub idp_admin_url: Option<String>,
    /// The provider's admin API secret key.
    #[arg(long, env = "WARDEN_IDP_ADMIN_SECRET", hide_env_values = true)]
    pub idp_admin_secret: Option<String>,
    /// Requests per minute per client address on the public endpoints:
    /// `/api/auth/anonymous` (mint, refresh) and `/v1/invites/accept`.
    #[arg(long, env = "WARDEN_ANONYMOUS_RATE_LIMIT", default_value_t = 30)]
    pub anonymous_rate_limit: u32,
    /// Take the client address from the last `X-Forwarded-For` entry (set
    /// only behind a proxy that writes it).
    #[arg(long, env = "WARDEN_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

impl std::fmt::Debug for IdentityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityArgs")
            .field("anonymous_audience", &self.anonymous_audience)
            .field("anonymous_token_ttl", &self.anonymous_token_ttl)
            .field("oidc", &self.oidc())
            .field("idp_admin_url", &self.idp_admin_url)
            .field(
                "idp_admin_secret",
                &self.idp_admin_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("anonymous_rate_limit", &self.anonymous_rate_limit)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish()
    }
}

impl IdentityArgs {
    /// The provider's settings, when an issuer is configured.
    pub fn oidc(&self) -> Option<OidcSettings> {
        let issuer = self.oidc_issuer.clone().filter(|i| !i.trim().is_empty())?;
        let jwks_url = self
            .oidc_jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        Some(OidcSettings {
            issuer,
            audience: self.oidc_audience.clone().filter(|a| !a.is_empty()),
            jwks_url,
            authorized_parties: self
                .oidc_authorized_parties
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        })
    }
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
    /// How long a write waits for the write lock.
    pub write_lock_timeout: Duration,
    /// `aud` of anonymous tokens.
    pub anonymous_audience: String,
    /// Lifetime of anonymous tokens.
    pub anonymous_token_ttl: Duration,
    /// The identity provider.
    pub oidc: Option<OidcSettings>,
    /// The provider's admin API.
    pub idp_admin: Option<IdpAdminSettings>,
    /// Requests per minute per address on the public identity endpoints.
    pub anonymous_rate_limit: u32,
    /// Read the client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// Append every decision to this file.
    pub decision_log: Option<PathBuf>,
    /// When the decision log file moves aside.
    pub decision_log_rotation: crate::decision_log::Rotation,
    /// Reload the policy set when its files change.
    pub watch_policies: bool,
    /// Serve the benchmark floor endpoint.
    pub bench_endpoints: bool,
    /// Evaluate every decision (`--evaluate-every-decision`).
    pub evaluate_every_decision: bool,
    /// Memory bounds of the decision and slice caches.
    pub caches: crate::cache::CacheBounds,
    /// KiB of batch bodies worked on at once.
    pub batch_budget_kib: u32,
    /// Connections and their timeouts.
    pub connections: crate::http::serve::Connections,
}

impl Settings {
    /// Defaults for everything but the folders and database (tests and
    /// benchmarks start from here).
    pub fn new(
        data_dir: PathBuf,
        database_url: String,
        policies: PathBuf,
        schema: PathBuf,
    ) -> Self {
        Settings {
            data_dir,
            database_url,
            policies,
            schema,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            demo: false,
            request_timeout: Duration::from_secs(10),
            write_lock_timeout: crate::store::WRITE_LOCK_TIMEOUT,
            anonymous_audience: "convex".into(),
            anonymous_token_ttl: Duration::from_secs(30 * 24 * 3600),
            oidc: None,
            idp_admin: None,
            anonymous_rate_limit: 30,
            trust_forwarded_for: false,
            decision_log: None,
            decision_log_rotation: crate::decision_log::Rotation::default(),
            // `warden serve` watches unless --no-watch; tests opt in.
            watch_policies: false,
            bench_endpoints: false,
            evaluate_every_decision: false,
            caches: crate::cache::CacheBounds::default(),
            batch_budget_kib: crate::http::default_batch_budget_kib(),
            connections: crate::http::serve::Connections::default(),
        }
    }
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
            write_lock_timeout: Duration::from_millis(args.write_lock_timeout_ms.max(1)),
            anonymous_audience: args.identity.anonymous_audience.clone(),
            anonymous_token_ttl: Duration::from_secs(args.identity.anonymous_token_ttl.max(60)),
            oidc: args.identity.oidc(),
            idp_admin: match (
                &args.identity.idp_admin_url,
                &args.identity.idp_admin_secret,
            ) {
                (Some(base_url), Some(secret)) if !base_url.is_empty() && !secret.is_empty() => {
                    Some(IdpAdminSettings {
                        base_url: base_url.clone(),
                        secret: secret.clone(),
                    })
                }
                _ => None,
            },
            anonymous_rate_limit: args.identity.anonymous_rate_limit.max(1),
            trust_forwarded_for: args.identity.trust_forwarded_for,
            decision_log: args.decision_log.clone(),
            decision_log_rotation: crate::decision_log::Rotation {
                max_bytes: args.decision_log_max_mb.saturating_mul(1024 * 1024),
                keep: usize::from(args.decision_log_keep),
            },
            watch_policies: !args.no_watch,
            bench_endpoints: args.bench_endpoints,
            evaluate_every_decision: args.evaluate_every_decision,
            caches: crate::cache::CacheBounds {
                decisions_mb: args.decision_cache_mb,
                slices_mb: args.slice_cache_mb,
            },
            batch_budget_kib: args
                .batch_budget_kib
                .unwrap_or_else(crate::http::default_batch_budget_kib),
            connections: crate::http::serve::Connections {
                max: args.max_connections,
                idle_timeout: Duration::from_secs(args.idle_timeout),
            },
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
    use super::{redact_url, ServeArgs, Settings};
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn settings(args: &[&str]) -> Settings {
        let serve = Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("the flags parse");
        Settings::from(&serve.args)
    }

    #[test]
    fn cache_bounds_come_from_the_flags() {
        assert_eq!(settings(&[]).caches, crate::cache::CacheBounds::default());
        let set = settings(&["--decision-cache-mb", "8", "--slice-cache-mb", "0"]).caches;
        assert_eq!((set.decisions_mb, set.slices_mb), (8, 0));
        assert!(Serve::try_parse_from(["serve", "--decision-cache-mb", "-1"]).is_err());
    }

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
