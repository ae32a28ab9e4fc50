//! Policy test suites: a world of facts, optional extra Cedar entities, and
//! cases with the expected decision (and optionally the determining `@id`s).
//! Run by `cargo test` (tests/policy_suites.rs) over `tests/policies/*.json`.
//!
//! A case checks one action (`"action"` + `"decision"`) or several at once
//! (`"expect": {"read": "allow", "write": "deny"}`). The world uses the import
//! document format, so suites build entities exactly as the server does.

use crate::decision::{decide_in_world, Authn, DecisionInput, EntityRef, RawDecision};
use crate::domain::World;
use crate::policy::{PolicyEngine, Verdict};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Expected outcome of one decision.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// An entity reference in a suite.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteRef {
    /// Type without namespace.
    #[serde(rename = "type")]
    pub ty: String,
    /// Id.
    pub id: String,
}

/// One case of a suite.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows, in the contract's words.
    pub name: String,
    /// Who asks.
    pub principal: SuiteRef,
    /// On what.
    pub resource: SuiteRef,
    /// One action (with `decision`)...
    #[serde(default)]
    pub action: Option<String>,
    /// ...and its expected decision.
    #[serde(default)]
    pub decision: Option<Expected>,
    /// Or several actions and their expected decisions.
    #[serde(default)]
    pub expect: BTreeMap<String, Expected>,
    /// Expected determining `@id`s (for a single action), in any order.
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
    /// How the principal authenticated: `app` (default), `anonymous_token`, `oidc_token`.
    #[serde(default)]
    pub authn: Option<String>,
    /// Extra context.
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// A policy test suite file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// What the suite covers.
    #[serde(default)]
    pub description: String,
    /// The facts, as an import document.
    #[serde(default)]
    pub world: World,
    /// Extra Cedar entities, as a request could supply them.
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// The outcome of one (case, action) pair.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `file: case name [action]`.
    pub name: String,
    /// None when it passed; else what went wrong.
    pub failure: Option<String>,
}

fn authn(raw: Option<&str>) -> Result<Authn, String> {
    raw.unwrap_or("app").parse()
}

fn describe(v: &Verdict) -> String {
    format!(
        "{} (reasons: [{}]{})",
        if v.allow { "allow" } else { "deny" },
        v.reasons.join(", "),
        if v.errors.is_empty() {
            String::new()
        } else {
            format!(
                ", errors: [{}]",
                v.errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    )
}

/// Runs every case of the suite in `file`.
pub fn run_file(engine: &PolicyEngine, file: &Path) -> Result<Vec<Outcome>, String> {
    let suite = read_suite(file)?;
    let label = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    run(engine, &label, suite)
}

/// One decision a suite asks for: the case, the action and its expected outcome.
pub struct SuiteProbe<'a> {
    /// The case.
    pub case: &'a Case,
    /// The action checked.
    pub action: String,
    /// The expected decision.
    pub expected: Expected,
    /// The request, before validation against a schema.
    pub raw: RawDecision,
}

/// Every (case, action) pair of `suite` as a decision request; `label`
/// prefixes error messages. `warden test` and `warden diff` share it.
pub fn probes<'a>(label: &str, suite: &'a Suite) -> Result<Vec<SuiteProbe<'a>>, String> {
    let mut out = Vec::new();
    for case in &suite.cases {
        let mut expectations: Vec<(String, Expected)> = case.expect.clone().into_iter().collect();
        match (&case.action, case.decision) {
            (Some(action), Some(decision)) => expectations.push((action.clone(), decision)),
            (None, None) => {}
            _ => {
                return Err(format!(
                    "{label}: case {:?}: give both action and decision",
                    case.name
                ))
            }
        }
        if expectations.is_empty() {
            return Err(format!("{label}: case {:?} expects nothing", case.name));
        }
        for (action, expected) in expectations {
            let raw = RawDecision {
                principal: EntityRef {
                    ty: case.principal.ty.clone(),
                    id: case.principal.id.clone(),
                },
                action: action.clone(),
                resource: EntityRef {
                    ty: case.resource.ty.clone(),
                    id: case.resource.id.clone(),
                },
                context: case.context.clone(),
                entities: Some(suite.entities.clone()),
                authn: authn(case.authn.as_deref()).map_err(|e| format!("{label}: {e}"))?,
            };
            out.push(SuiteProbe {
                case,
                action,
                expected,
                raw,
            });
        }
    }
    Ok(out)
}

/// Reads and parses the suite in `file`.
pub fn read_suite(file: &Path) -> Result<Suite, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// Runs every case of `suite`; `label` prefixes the case names.
pub fn run(engine: &PolicyEngine, label: &str, suite: Suite) -> Result<Vec<Outcome>, String> {
    let mut pairs = Vec::new();
    let mut inputs = Vec::new();
    for probe in probes(label, &suite)? {
        let input = DecisionInput::parse(engine, probe.raw, "")
            .map_err(|e| format!("{label}: case {:?}: {e}", probe.case.name))?;
        inputs.push(input);
        pairs.push((probe.case, probe.action, probe.expected));
    }
    let verdicts = decide_in_world(engine, &suite.world, &inputs, "cases")
        .map_err(|e| format!("{label}: {e}"))?;
    let mut outcomes = Vec::new();
    for ((case, action, expected), verdict) in pairs.into_iter().zip(verdicts) {
        let actual = if verdict.allow {
            Expected::Allow
        } else {
            Expected::Deny
        };
        let mut failure = None;
        if actual != expected {
            failure = Some(format!(
                "expected {}, got {}",
                if expected == Expected::Allow {
                    "allow"
                } else {
                    "deny"
                },
                describe(&verdict)
            ));
        } else if let Some(reasons) = &case.reasons {
            let mut want = reasons.clone();
            want.sort();
            if want != verdict.reasons {
                failure = Some(format!(
                    "expected reasons [{}], got {}",
                    want.join(", "),
                    describe(&verdict)
                ));
            }
        }
        outcomes.push(Outcome {
            name: format!("{label}: {} [{action}]", case.name),
            failure,
        });
    }
    Ok(outcomes)
}
