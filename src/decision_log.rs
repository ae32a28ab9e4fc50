//! The decision log: optionally, every decision as one JSON line (the request,
//! the decision, its reasons, the policy version, the time) appended to a
//! file. `warden diff --replay FILE` reads it back to show what a policy
//! change would have done to real traffic.
//!
//! Never written: tokens, API keys, anything from a request's headers, email
//! addresses (context values under `*email*` keys are hashed). A
//! request decided with a token is logged with the token's verified user as
//! the principal and how it authenticated (`authn`).
//!
//! Lines are written by one thread of their own so a slow disk never holds a
//! request: a request hands its line to a bounded queue. When the queue is
//! full the line is dropped, counted in `warden_decision_log_dropped_total`
//! and reported in the server log, rather than stalling decisions.

use crate::decision::{DecisionInput, EntityRef, RawDecision};
use crate::policy::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

/// Lines waiting for the writer before new ones are dropped.
pub const QUEUE: usize = 65_536;

/// An entity as logged: `{"type": "User", "id": "alice"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoggedRef {
    /// Type without the namespace.
    #[serde(rename = "type")]
    pub ty: String,
    /// Id.
    pub id: String,
}

/// One line of the decision log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339, UTC.
    pub time: String,
    /// Who asked (a token's verified user when decided with a token).
    pub principal: LoggedRef,
    /// The action.
    pub action: String,
    /// On what.
    pub resource: LoggedRef,
    /// How the principal authenticated: `app`, `anonymous_token`, `oidc_token`.
    pub authn: String,
    /// The caller's context.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    /// The caller's extra entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<Value>>,
    /// `allow` or `deny`.
    pub decision: String,
    /// Determining `@id`s.
    pub reasons: Vec<String>,
    /// Evaluation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The policy set that decided.
    pub policy_version: String,
}

/// The context as logged: a value under a key naming an email is replaced
/// by a short SHA-256 (equal emails stay equal, so a replay decides the
/// same), so the log holds no email addresses.
fn logged_context(context: &Map<String, Value>) -> Map<String, Value> {
    use sha2::{Digest, Sha256};
    let mut out = context.clone();
    for (key, value) in out.iter_mut() {
        if key.contains("email") {
            if let Value::String(email) = value {
                let digest = hex::encode(Sha256::digest(email.as_bytes()));
                *value = Value::String(format!("sha256:{}", digest.get(..16).unwrap_or("")));
            }
        }
    }
    out
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn logged(uid: &cedar_policy::EntityUid) -> LoggedRef {
    LoggedRef {
        ty: uid.type_name().basename().to_string(),
        id: uid.id().unescaped().to_string(),
    }
}

impl LogLine {
    /// The line for `input` decided as `verdict` by policy set `version`.
    pub fn new(input: &DecisionInput, verdict: &Verdict, version: &str) -> Self {
        LogLine {
            time: now_rfc3339(),
            principal: logged(&input.principal),
            action: input.action.id().unescaped().to_string(),
            resource: logged(&input.resource),
            authn: input.authn.as_str().to_string(),
            context: logged_context(&input.context_json),
            entities: input.entities_json.clone(),
            decision: if verdict.allow { "allow" } else { "deny" }.into(),
            reasons: verdict.reasons.clone(),
            errors: verdict.errors.iter().map(|e| e.message.clone()).collect(),
            policy_version: version.to_string(),
        }
    }

    /// The request this line records, to be asked again.
    pub fn request(&self) -> Result<RawDecision, String> {
        Ok(RawDecision {
            principal: EntityRef {
                ty: self.principal.ty.clone(),
                id: self.principal.id.clone(),
            },
            action: self.action.clone(),
            resource: EntityRef {
                ty: self.resource.ty.clone(),
                id: self.resource.id.clone(),
            },
            context: self.context.clone(),
            entities: self.entities.clone(),
            authn: self.authn.parse()?,
        })
    }
}

/// Reads a decision log: (line number, line) for every non-empty line.
pub fn read(path: &Path) -> Result<Vec<(usize, LogLine)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: LogLine = serde_json::from_str(line).map_err(|e| {
            format!(
                "{}:{}: not a decision log line: {e}",
                path.display(),
                index + 1
            )
        })?;
        out.push((index + 1, parsed));
    }
    Ok(out)
}

/// The appending writer. Cloning shares the one file and thread.
#[derive(Clone)]
pub struct DecisionLog {
    queue: SyncSender<String>,
    path: PathBuf,
}

impl DecisionLog {
    /// Opens (creating, mode 0600) `path` for appending and starts its writer.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        let (queue, lines) = sync_channel::<String>(QUEUE);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                // Write what is queued, then flush: one flush per burst.
                while let Ok(line) = lines.recv() {
                    let mut result = out.write_all(line.as_bytes());
                    while let (Ok(()), Ok(more)) = (&result, lines.try_recv()) {
                        result = out.write_all(more.as_bytes());
                    }
                    if let Err(e) = result.and_then(|()| out.flush()) {
                        metrics::counter!("warden_decision_log_errors_total").increment(1);
                        tracing::error!(file = %shown, error = %e, "cannot write the decision log");
                    }
                }
            })?;
        Ok(DecisionLog {
            queue,
            path: path.to_path_buf(),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues the line for one decision.
    pub fn record(&self, input: &DecisionInput, verdict: &Verdict, version: &str) {
        let mut text = match serde_json::to_string(&LogLine::new(input, verdict, version)) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a decision log line");
                return;
            }
        };
        text.push('\n');
        match self.queue.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("warden_decision_log_dropped_total").increment(1);
                tracing::warn!(file = %self.path.display(), "decision log queue full; a line was dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("warden_decision_log_dropped_total").increment(1);
                tracing::error!(file = %self.path.display(), "decision log writer stopped; a line was dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_hashed_and_stay_comparable() {
        let mut context = Map::new();
        context.insert("caller_email".into(), Value::String("a@example.com".into()));
        context.insert("invite_email".into(), Value::String("a@example.com".into()));
        context.insert("plan".into(), Value::String("pro".into()));
        let logged = logged_context(&context);
        assert_eq!(logged["caller_email"], logged["invite_email"]);
        assert!(!Value::Object(logged.clone())
            .to_string()
            .contains("example.com"));
        assert_eq!(logged["plan"], "pro");
    }
}
