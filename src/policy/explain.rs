//! Explain: why a decision came out the way it did, policy by policy, so an
//! app developer can tell a missing membership from a forbid.
//!
//! For every policy whose scope (principal, action, resource constraints)
//! matches the request, the conditions are evaluated one conjunct at a time,
//! in order, as Cedar itself short-circuits them: the first conjunct of a
//! `when` that is not true (or the body of an `unless` that is true) is the
//! condition that stopped the policy. Policies whose scope does not match are
//! left out: they could never have applied to this request.
//!
//! Everything is evaluated by Cedar (`eval_expression` over the same entity
//! slice); this module only takes the policies apart, through their JSON
//! (EST) form.

use super::PolicyEngine;
use cedar_policy::{
    eval_expression, Decision, Entities, Expression, Policy, PolicyId, PolicySet, Request,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::str::FromStr;

/// How one policy fared on one request.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PolicyTrace {
    /// The policy's `@id`.
    pub id: String,
    /// `permit` or `forbid`.
    #[schema(value_type = String)]
    pub effect: &'static str,
    /// The file it is in.
    pub file: String,
    /// `applied` (every condition held), `not_applied` or `error`.
    #[schema(value_type = String)]
    pub outcome: &'static str,
    /// For `not_applied` and `error`: the condition that stopped it, in
    /// Cedar syntax (`unless { ... }` for an unless clause).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// What that condition evaluated to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The evaluation error, for `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The conjuncts of `expr` (`a && b && c` → `[a, b, c]`), in order.
fn conjuncts(expr: &Value, out: &mut Vec<Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let (Some(left), Some(right)) = (and.get("left"), and.get("right")) {
                conjuncts(left, out);
                conjuncts(right, out);
            } else {
                out.push(expr.clone());
            }
        }
        None => out.push(expr.clone()),
    }
}

/// An EST expression in Cedar syntax, printed by Cedar.
fn cedar_text(expr: &Value) -> Option<String> {
    let policy = json!({
        "effect": "permit",
        "principal": {"op": "All"},
        "action": {"op": "All"},
        "resource": {"op": "All"},
        "conditions": [{"kind": "when", "body": expr}],
        "annotations": {},
    });
    let text = Policy::from_json(None, policy).ok()?.to_string();
    let start = text.find("when")? + "when".len();
    let rest = text.get(start..)?.trim_start().strip_prefix('{')?;
    let end = rest.rfind('}')?;
    Some(rest.get(..end)?.trim().to_string())
}

/// Does the scope of the policy `est` match `request`?
fn scope_matches(
    est: &Value,
    request: &Request,
    entities: &Entities,
    engine: &PolicyEngine,
) -> bool {
    let mut scope = est.clone();
    if let Some(object) = scope.as_object_mut() {
        object.insert("effect".into(), json!("permit"));
        object.insert("conditions".into(), json!([]));
        object.insert("annotations".into(), json!({}));
    }
    let Ok(policy) = Policy::from_json(Some(PolicyId::new("scope")), scope) else {
        return false;
    };
    let Ok(set) = PolicySet::from_policies([policy]) else {
        return false;
    };
    engine
        .authorizer
        .is_authorized(request, &set, entities)
        .decision()
        == Decision::Allow
}

/// Evaluates `text` as a boolean condition: `Ok(true/false)` or the value
/// and error.
fn holds(
    text: &str,
    request: &Request,
    entities: &Entities,
) -> Result<bool, (Option<String>, String)> {
    let expr = Expression::from_str(text).map_err(|e| (None, e.to_string()))?;
    match eval_expression(request, entities, &expr) {
        Ok(cedar_policy::EvalResult::Bool(b)) => Ok(b),
        Ok(other) => Err((Some(other.to_string()), "not a boolean".into())),
        Err(e) => Err((None, e.to_string())),
    }
}

impl PolicyEngine {
    /// How every policy whose scope matches `request` fared on it.
    pub fn explain(&self, request: &Request, entities: &Entities) -> Vec<PolicyTrace> {
        let mut out = Vec::new();
        for info in &self.infos {
            let Some(policy) = self.policies.policy(&PolicyId::new(&info.id)) else {
                continue;
            };
            let Ok(est) = policy.to_json() else {
                continue;
            };
            if !scope_matches(&est, request, entities, self) {
                continue;
            }
            let mut trace = PolicyTrace {
                id: info.id.clone(),
                effect: info.effect,
                file: info.file.clone(),
                outcome: "applied",
                condition: None,
                value: None,
                error: None,
            };
            let conditions = est
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            'conditions: for condition in &conditions {
                let Some(body) = condition.get("body") else {
                    continue;
                };
                let unless = condition.get("kind").and_then(Value::as_str) == Some("unless");
                let parts = if unless {
                    vec![body.clone()]
                } else {
                    let mut parts = Vec::new();
                    conjuncts(body, &mut parts);
                    parts
                };
                for part in parts {
                    let Some(text) = cedar_text(&part) else {
                        continue;
                    };
                    let shown = if unless {
                        format!("unless {{ {text} }}")
                    } else {
                        text.clone()
                    };
                    match holds(&text, request, entities) {
                        Ok(value) if value != unless => {}
                        Ok(value) => {
                            trace.outcome = "not_applied";
                            trace.condition = Some(shown);
                            trace.value = Some(value.to_string());
                            break 'conditions;
                        }
                        Err((value, error)) => {
                            trace.outcome = "error";
                            trace.condition = Some(shown);
                            trace.value = value;
                            trace.error = Some(error);
                            break 'conditions;
                        }
                    }
                }
            }
            out.push(trace);
        }
        out
    }
}
