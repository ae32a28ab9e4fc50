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

/// When the decision log moves aside: once the file would pass `max_bytes`
/// it is renamed `FILE.1` (older ones shift to `FILE.2` ... `FILE.<keep>`,
/// the oldest is deleted) and a new file is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Largest size of one file; 0 never rotates.
    pub max_bytes: u64,
    /// Rotated files kept beside the current one (at least 1).
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// Opens `path` for appending, created with mode 0600.
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// `path` with `.n` appended: `decisions.jsonl.2`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The writer thread's file: appends lines and rotates by size.
struct Appender {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Bytes in the current file.
    size: u64,
    rotation: Rotation,
}

impl Appender {
    fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Appender {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
            size,
            rotation,
        })
    }

    fn append(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64;
        let max = self.rotation.max_bytes;
        if max > 0 && self.size > 0 && self.size + len > max {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// `FILE` becomes `FILE.1`, `FILE.1` becomes `FILE.2`, and so on; the
    /// oldest beyond `keep` is deleted; a new `FILE` is started.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let keep = self.rotation.keep.max(1);
        let absent_is_fine = |result: std::io::Result<()>| match result {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        absent_is_fine(std::fs::remove_file(numbered(&self.path, keep)))?;
        for n in (1..keep).rev() {
            absent_is_fine(std::fs::rename(
                numbered(&self.path, n),
                numbered(&self.path, n + 1),
            ))?;
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.out = std::io::BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        metrics::counter!("warden_decision_log_rotations_total").increment(1);
        tracing::info!(file = %self.path.display(), "decision log rotated");
        Ok(())
    }
}

/// The appending writer. Cloning shares the one file and thread.
#[derive(Clone)]
pub struct DecisionLog {
    queue: SyncSender<String>,
    path: PathBuf,
}

impl DecisionLog {
    /// Opens (creating, mode 0600) `path` for appending and starts its
    /// writer, which rotates the file as `rotation` says.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let mut out = Appender::open(path, rotation)?;
        let (queue, lines) = sync_channel::<String>(QUEUE);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                // Write what is queued, then flush: one flush per burst.
                while let Ok(line) = lines.recv() {
                    let mut result = out.append(&line);
                    while let (Ok(()), Ok(more)) = (&result, lines.try_recv()) {
                        result = out.append(&more);
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

    #[test]
    fn the_log_rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let rotation = Rotation {
            max_bytes: 250,
            keep: 2,
        };
        let mut out = Appender::open(&path, rotation).unwrap();
        let lines: Vec<String> = (0..20).map(|i| format!("{{\"n\":{i:>90}}}\n")).collect();
        assert!(lines.iter().all(|l| l.len() == 97));
        for line in &lines {
            out.append(line).unwrap();
        }
        out.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        // Two lines fit in 250 bytes: the current file holds the last two,
        // FILE.1 and FILE.2 the two pairs before, nothing older is kept.
        assert_eq!(read(&path), lines[18..].concat());
        assert_eq!(read(&numbered(&path, 1)), lines[16..18].concat());
        assert_eq!(read(&numbered(&path, 2)), lines[14..16].concat());
        assert!(!numbered(&path, 3).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [path.clone(), numbered(&path, 1)] {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{} is private: {mode:o}", p.display());
            }
        }
        // Reopened, the writer counts what the file already holds.
        drop(out);
        let mut out = Appender::open(&path, rotation).unwrap();
        out.append(&lines[0]).unwrap();
        out.flush().unwrap();
        assert_eq!(read(&path), lines[0].clone());
        assert_eq!(read(&numbered(&path, 1)), lines[18..].concat());
    }

    #[test]
    fn a_line_larger_than_the_limit_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let mut out = Appender::open(
            &path,
            Rotation {
                max_bytes: 10,
                keep: 1,
            },
        )
        .unwrap();
        for line in ["0123456789abcdef\n", "second\n"] {
            out.append(line).unwrap();
        }
        out.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(
            std::fs::read_to_string(numbered(&path, 1)).unwrap(),
            "0123456789abcdef\n"
        );
    }
}
