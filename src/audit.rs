//! Audit events (CONTRACT §1.4). An event is written by
//! [`crate::store::Tx::commit`], the only way to commit a write, so a change
//! without its audit row cannot be expressed.

use serde_json::Value;

/// Who made a change: an API key, the command line, or the server itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// An app or admin calling with an API key.
    pub fn api_key(id: &str) -> Self {
        Actor(format!("api_key:{id}"))
    }

    /// An operator at the command line (`warden import`, `warden serve --demo`).
    pub fn cli(command: &str) -> Self {
        Actor(format!("cli:{command}"))
    }

    /// An end user, established from a verified token.
    pub fn user(id: &str) -> Self {
        Actor(format!("user:{id}"))
    }

    /// Warden itself (first start: the bootstrap admin key).
    pub fn system() -> Self {
        Actor("system".into())
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One state change: who did what to which target, and a summary of the
/// state before and after.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// Who.
    pub actor: Actor,
    /// What, e.g. `admin.import`, `api_key.create`.
    pub action: &'static str,
    /// Target type, e.g. `world`, `api_key`.
    pub target_type: &'static str,
    /// Target id.
    pub target_id: String,
    /// Summary of the state before, when there was one.
    pub before: Option<Value>,
    /// Summary of the state after.
    pub after: Option<Value>,
    /// The HTTP request that caused it, when there was one.
    pub request_id: Option<String>,
}
