//! Probes: decision requests asked of a policy set outside the server, over a
//! world of facts held in memory. `warden diff` asks the same probes of two
//! policy sets; `warden matrix` asks one set about every principal situation.
//!
//! A probe that one policy set cannot even ask (its schema lacks the action or
//! the type) is `Invalid` for that set, never an error of the whole run: a
//! schema change is one of the things a diff must show.

use crate::decision::{decide_in_world, DecisionInput, RawDecision};
use crate::domain::World;
use crate::policy::{PolicyEngine, Verdict};
use serde::Serialize;

/// One decision request and where it came from.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Where it came from: `suite grants.json`, `generated`, `database`, `replay`.
    pub source: String,
    /// A name a person can read (a suite case, a replay line...).
    pub name: String,
    /// The request.
    pub raw: RawDecision,
}

/// What one policy set answered to a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Answer {
    /// Allowed, by these policies.
    Allow {
        /// Determining `@id`s.
        reasons: Vec<String>,
    },
    /// Denied: by these forbids, or because no permit applied (empty).
    Deny {
        /// Determining `@id`s.
        reasons: Vec<String>,
        /// Evaluation errors, and why it was denied before evaluation.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        errors: Vec<String>,
    },
    /// The request cannot be asked of this policy set (schema mismatch).
    Invalid {
        /// Why.
        error: String,
    },
}

impl Answer {
    /// `allow`, `deny` or `invalid`.
    pub fn word(&self) -> &'static str {
        match self {
            Answer::Allow { .. } => "allow",
            Answer::Deny { .. } => "deny",
            Answer::Invalid { .. } => "invalid",
        }
    }

    /// The determining policies (none for `Invalid`).
    pub fn reasons(&self) -> &[String] {
        match self {
            Answer::Allow { reasons } | Answer::Deny { reasons, .. } => reasons,
            Answer::Invalid { .. } => &[],
        }
    }

    fn from_verdict(verdict: Verdict) -> Self {
        if verdict.allow {
            Answer::Allow {
                reasons: verdict.reasons,
            }
        } else {
            Answer::Deny {
                reasons: verdict.reasons,
                errors: verdict.errors.into_iter().map(|e| e.message).collect(),
            }
        }
    }
}

/// The context generated probes carry: an invite accepted by the holder of
/// its email (`accept_invite` reads it; other actions ignore it).
pub fn invite_context() -> serde_json::Map<String, serde_json::Value> {
    let mut context = serde_json::Map::new();
    for key in ["caller_email", "invite_email"] {
        context.insert(
            key.into(),
            serde_json::Value::String("invitee@example.com".into()),
        );
    }
    context
}

/// Asks `engine` every probe over the facts in `world`, in order.
pub fn ask(engine: &PolicyEngine, world: &World, probes: &[Probe]) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = vec![None; probes.len()];
    let mut inputs = Vec::with_capacity(probes.len());
    let mut positions = Vec::with_capacity(probes.len());
    for (index, probe) in probes.iter().enumerate() {
        match DecisionInput::parse(engine, probe.raw.clone(), "") {
            Ok(input) => {
                inputs.push(input);
                positions.push(index);
            }
            Err(e) => {
                if let Some(slot) = answers.get_mut(index) {
                    *slot = Some(Answer::Invalid {
                        error: e.to_string(),
                    });
                }
            }
        }
    }
    match decide_in_world(engine, world, &inputs, "probes") {
        Ok(verdicts) => {
            for (index, verdict) in positions.into_iter().zip(verdicts) {
                if let Some(slot) = answers.get_mut(index) {
                    *slot = Some(Answer::from_verdict(verdict));
                }
            }
        }
        Err(e) => {
            // The whole set could not be decided (a supplied entity clashes
            // with a stored one): every probe of it is invalid, saying why.
            for index in positions {
                if let Some(slot) = answers.get_mut(index) {
                    *slot = Some(Answer::Invalid {
                        error: e.to_string(),
                    });
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|a| {
            a.unwrap_or(Answer::Invalid {
                error: "not evaluated".into(),
            })
        })
        .collect()
}
