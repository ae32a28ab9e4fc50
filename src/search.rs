//! Search: the resources a principal may act on ("Alice's assets") and the
//! principals that may act on a resource ("who can edit this?").
//!
//! Decided by the policies, not by a second copy of the rules in SQL: the
//! database narrows *candidates* to what the principal (or resource) has a
//! stored relation with (ownership, workspace and project memberships,
//! grants), and Cedar confirms each candidate, a page at a time, over one
//! fact load per page. A policy change that widens or narrows what those
//! relations allow changes the results with no code change. A resource
//! reachable only by a public link is never a candidate, so it is never
//! listed (CONTRACT §2: "nothing public is ever listed").

use crate::decision::{Authn, DecideError, DecisionInput, EntityRef, RawDecision};
use crate::domain::World;
use crate::policy::PolicyEngine;
use crate::store::facts::FactKeys;
use crate::store::manage::{CandidateRound, SubjectScope};
use crate::store::{Store, StoreError};
use serde_json::{Map, Value};

/// Candidates fetched per round while filling a page, as a multiple of the
/// page size, and rounds per page before handing back a partial page.
const ROUNDS: usize = 10;

/// Who asks (a resource search) or is asked about (a subject search).
#[derive(Clone, Debug)]
pub struct Principal {
    /// User id.
    pub user: String,
    /// How the user authenticated.
    pub authn: Authn,
}

/// Where a resource search looks: a type, optionally within one workspace
/// or project.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// `Workspace`, `Project` or `Asset`.
    pub ty: String,
    /// Only resources in this workspace ("" for any).
    pub workspace: String,
    /// Only resources in this project ("" for any).
    pub project: String,
}

/// What is asked and which page: the action, the request context, the
/// cursor (results after this id; "" for the first page) and the page size.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The action.
    pub action: &'a str,
    /// Extra context for every decision.
    pub context: &'a Map<String, Value>,
    /// Results after this id.
    pub after: &'a str,
    /// Most results.
    pub size: i64,
}

/// One page of results.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The matching ids, in id order, with the policies that allowed each.
    pub items: Vec<(String, Vec<String>)>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
    /// The facts loaded on the way (records of the found resources).
    pub world: World,
}

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A client mistake, naming the field.
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn decision(
    principal: &Principal,
    action: &str,
    ty: &str,
    id: &str,
    context: &Map<String, Value>,
) -> RawDecision {
    RawDecision {
        principal: EntityRef {
            ty: "User".into(),
            id: principal.user.clone(),
        },
        action: action.into(),
        resource: EntityRef {
            ty: ty.into(),
            id: id.into(),
        },
        context: context.clone(),
        entities: None,
        authn: principal.authn,
    }
}

/// Where the candidates of one search come from, and the decision each
/// candidate id stands for.
enum Candidates<'a> {
    /// Resources `principal` has a relation to, within `scope`.
    Resources {
        principal: &'a Principal,
        scope: &'a Scope,
    },
    /// Users with a relation to `resource`, which lives in `within`.
    Subjects {
        resource: (&'a str, &'a str),
        authn: Authn,
        within: SubjectScope,
    },
}

impl Candidates<'_> {
    /// The next `size` candidates after `after`; a read, so tried again
    /// on another connection if the first turns out lost.
    async fn fetch(
        &self,
        store: &Store,
        after: &str,
        size: i64,
    ) -> Result<CandidateRound, StoreError> {
        store
            .read_again_if_lost(|| self.fetch_once(store, after, size))
            .await
    }

    async fn fetch_once(
        &self,
        store: &Store,
        after: &str,
        size: i64,
    ) -> Result<CandidateRound, StoreError> {
        match self {
            Candidates::Resources { principal, scope } => match scope.ty.as_str() {
                "Workspace" => store
                    .workspace_candidates(&principal.user, after, size)
                    .await
                    .map(CandidateRound::complete),
                "Project" => {
                    store
                        .project_candidates(&principal.user, &scope.workspace, after, size)
                        .await
                }
                _ => {
                    store
                        .asset_candidates(
                            &principal.user,
                            &scope.workspace,
                            &scope.project,
                            after,
                            size,
                        )
                        .await
                }
            },
            Candidates::Subjects { within, .. } => store
                .subject_candidates(within, after, size)
                .await
                .map(CandidateRound::complete),
        }
    }

    fn decision(&self, candidate: &str, action: &str, context: &Map<String, Value>) -> RawDecision {
        match self {
            Candidates::Resources { principal, scope } => {
                decision(principal, action, &scope.ty, candidate, context)
            }
            Candidates::Subjects {
                resource: (ty, id),
                authn,
                ..
            } => {
                let who = Principal {
                    user: candidate.to_string(),
                    authn: *authn,
                };
                decision(&who, action, ty, id, context)
            }
        }
    }
}

/// Resources of `scope` on which `principal` may perform `ask.action`.
pub async fn resources(
    engine: &PolicyEngine,
    store: &Store,
    principal: &Principal,
    scope: &Scope,
    ask: Ask<'_>,
) -> Result<Found, SearchError> {
    page(
        engine,
        store,
        Candidates::Resources { principal, scope },
        ask,
    )
    .await
}

/// Users who may perform `ask.action` on `ty` `id` (authenticated as
/// `authn`), by user id, each with the deciding policies.
pub async fn subjects(
    engine: &PolicyEngine,
    store: &Store,
    resource: (&str, &str),
    authn: Authn,
    ask: Ask<'_>,
) -> Result<Found, SearchError> {
    // Where the resource lives is read once, not per round.
    let Some(within) = store.subject_scope(resource.0, resource.1).await? else {
        return Ok(Found::default());
    };
    let candidates = Candidates::Subjects {
        resource,
        authn,
        within,
    };
    page(engine, store, candidates, ask).await
}

/// Fills one page: candidates a round at a time, each round confirmed by
/// the policies over one fact load.
async fn page(
    engine: &PolicyEngine,
    store: &Store,
    candidates: Candidates<'_>,
    ask: Ask<'_>,
) -> Result<Found, SearchError> {
    let size = ask.size;
    let mut after = ask.after.to_string();
    let mut found = Found::default();
    for _ in 0..ROUNDS {
        let CandidateRound { ids, through } = candidates.fetch(store, &after, size).await?;
        let mut keys = FactKeys::default();
        let mut inputs = Vec::with_capacity(ids.len());
        for id in &ids {
            let raw = candidates.decision(id, ask.action, ask.context);
            let input = DecisionInput::parse(engine, raw, "").map_err(DecideError::from)?;
            input.collect_keys(&mut keys);
            inputs.push(input);
        }
        let facts = std::sync::Arc::new(store.load_facts(&keys).await?);
        let verdicts = crate::cache::decide_over(engine, &facts, &inputs, "candidates").await?;
        let facts = std::sync::Arc::unwrap_or_clone(facts);
        for (id, verdict) in ids.iter().zip(verdicts) {
            if verdict.allow && (found.items.len() as i64) < size {
                found.items.push((id.clone(), verdict.reasons));
            }
        }
        found.world.workspaces.extend(facts.workspaces);
        found.world.projects.extend(facts.projects);
        found.world.assets.extend(facts.assets);
        if let Some(last) = ids.last() {
            after = last.clone();
        }
        if found.items.len() as i64 >= size {
            found.next = found.items.last().map(|(id, _)| id.clone());
            return Ok(found);
        }
        if (ids.len() as i64) < size {
            // Fewer than asked for: none left, unless the round read only
            // part of the ids (then it goes on past what it read).
            match through {
                Some(through) => after = through,
                None => return Ok(found),
            }
        }
    }
    // Many candidates, few allowed: a partial page, and where to go on.
    found.next = Some(after);
    Ok(found)
}
