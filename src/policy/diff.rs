//! `warden diff`: what a policy change does before it ships. Two policy sets
//! (a base and a head) are asked the same decision requests; every decision
//! whose outcome differs is listed, grouped by the policies responsible.
//!
//! The policies responsible for a changed decision are the determining
//! policies of both sides: a permit that stopped applying (allow → deny), a
//! permit that now applies or a forbid that stopped applying (deny → allow),
//! a forbid that now applies (allow → deny).

use super::probe::{ask, Answer, Probe};
use super::{LoadError, PolicyEngine};
use crate::domain::World;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A policy set to compare, and where it came from.
pub struct PolicySide {
    /// How the user named it (a folder or a git revision).
    pub label: String,
    /// The loaded, validated set.
    pub engine: PolicyEngine,
    /// A git revision's files live here while the diff runs.
    _checkout: Option<tempfile::TempDir>,
}

/// Why a side could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    /// Neither a folder nor a git revision.
    #[error("{spec:?} is neither a folder nor a git revision of this repository: {why}")]
    NotFound {
        /// What was given.
        spec: String,
        /// What git said.
        why: String,
    },
    /// The files could not be copied out of git.
    #[error("cannot read {what} at {spec}: {why}")]
    Git {
        /// The revision.
        spec: String,
        /// What was read.
        what: String,
        /// The cause.
        why: String,
    },
    /// The policies do not load or validate.
    #[error("the {label} policy set does not load:\n{source}")]
    Load {
        /// Which side.
        label: String,
        /// The problems.
        source: LoadError,
    },
}

/// Where a folder spec keeps its policies and schema: `DIR/policies` and
/// `DIR/schema` when those exist (a checkout of a repository), else `DIR`
/// itself holds the `.cedar` files and the schema is `default_schema`.
fn folders_of(dir: &Path, default_schema: &Path) -> (PathBuf, PathBuf) {
    let nested = dir.join("policies");
    if nested.is_dir() {
        let schema = dir.join("schema");
        let schema = if schema.is_dir() {
            schema
        } else {
            default_schema.to_path_buf()
        };
        (nested, schema)
    } else {
        (dir.to_path_buf(), default_schema.to_path_buf())
    }
}

fn git(args: &[&str], cwd: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `path` relative to the repository root `top`.
fn in_repo(path: &Path, top: &Path) -> Result<String, String> {
    let full = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let rel = full.strip_prefix(top).map_err(|_| {
        format!(
            "{} is not inside the repository at {}",
            path.display(),
            top.display()
        )
    })?;
    Ok(rel.to_string_lossy().replace('\\', "/"))
}

/// Copies the files of folder `rel` at revision `rev` into `to`.
fn export_folder(top: &Path, rev: &str, rel: &str, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    let tree = format!("{rev}:{rel}");
    let names = git(&["ls-tree", "--name-only", &tree], top)?;
    for name in String::from_utf8_lossy(&names).lines() {
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let content = git(&["show", &format!("{rev}:{rel}/{name}")], top)?;
        std::fs::write(to.join(name), content).map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl PolicySide {
    /// Loads the policy set named by `spec`: a folder (see [`folders_of`]) or
    /// a git revision, read at the paths `policies` and `schema` have in
    /// this repository.
    pub fn resolve(spec: &str, policies: &Path, schema: &Path) -> Result<Self, SideError> {
        let dir = Path::new(spec);
        if dir.is_dir() {
            let (p, s) = folders_of(dir, schema);
            return Self::load(spec, &p, &s, None);
        }
        let here = policies
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let not_found = |why: String| SideError::NotFound {
            spec: spec.to_string(),
            why,
        };
        let top = git(&["rev-parse", "--show-toplevel"], here).map_err(not_found)?;
        let top = PathBuf::from(String::from_utf8_lossy(&top).trim());
        let top = top.canonicalize().unwrap_or(top);
        let rev = git(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{spec}^{{commit}}"),
            ],
            &top,
        )
        .map_err(|e| {
            not_found(if e.is_empty() {
                "unknown revision".into()
            } else {
                e
            })
        })?;
        let rev = String::from_utf8_lossy(&rev).trim().to_string();
        let checkout = tempfile::tempdir().map_err(|e| SideError::Git {
            spec: spec.into(),
            what: "a temporary folder".into(),
            why: e.to_string(),
        })?;
        for (folder, name) in [(policies, "policies"), (schema, "schema")] {
            let git_err = |why: String| SideError::Git {
                spec: spec.into(),
                what: folder.display().to_string(),
                why,
            };
            let rel = in_repo(folder, &top).map_err(git_err)?;
            export_folder(&top, &rev, &rel, &checkout.path().join(name)).map_err(git_err)?;
        }
        let p = checkout.path().join("policies");
        let s = checkout.path().join("schema");
        Self::load(spec, &p, &s, Some(checkout))
    }

    /// Loads the policies in `policies` against the schema in `schema`.
    pub fn load(
        label: &str,
        policies: &Path,
        schema: &Path,
        checkout: Option<tempfile::TempDir>,
    ) -> Result<Self, SideError> {
        let engine = PolicyEngine::load(policies, schema).map_err(|source| SideError::Load {
            label: label.to_string(),
            source,
        })?;
        Ok(PolicySide {
            label: label.to_string(),
            engine,
            _checkout: checkout,
        })
    }
}

/// One decision whose outcome differs between base and head.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// Where the request came from.
    pub source: String,
    /// Its name there (a suite case, a replay line), if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Type::"id"` of the principal.
    pub principal: String,
    /// The action.
    pub action: String,
    /// `Type::"id"` of the resource.
    pub resource: String,
    /// How the principal authenticated.
    pub authn: &'static str,
    /// The base's answer.
    pub base: Answer,
    /// The head's answer.
    pub head: Answer,
}

impl Change {
    /// `deny -> allow` and the like.
    pub fn direction(&self) -> String {
        format!("{} -> {}", self.base.word(), self.head.word())
    }

    /// The determining policies of both sides, sorted.
    pub fn policies(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .base
            .reasons()
            .iter()
            .chain(self.head.reasons())
            .collect();
        set.into_iter().cloned().collect()
    }
}

/// What a diff found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Base label and version.
    pub base: SideInfo,
    /// Head label and version.
    pub head: SideInfo,
    /// Decisions evaluated per source kind (`suites`, `generated`...).
    pub evaluated: BTreeMap<String, usize>,
    /// Decisions whose outcome stayed but whose determining policies changed.
    pub reasons_changed: usize,
    /// Every decision whose outcome changed.
    pub changes: Vec<Change>,
}

/// A side of the report.
#[derive(Debug, Default, Serialize)]
pub struct SideInfo {
    /// As the user named it.
    pub label: String,
    /// Its content hash.
    pub version: String,
}

/// A group of changes with the same direction and responsible policies.
#[derive(Debug, Serialize)]
pub struct Group<'a> {
    /// `deny -> allow`...
    pub direction: String,
    /// The policies responsible.
    pub policies: Vec<String>,
    /// How many.
    pub count: usize,
    /// The changed decisions.
    pub changes: Vec<&'a Change>,
}

fn entity_text(ty: &str, id: &str) -> String {
    format!("{ty}::{id:?}")
}

impl Report {
    /// An empty report for `base` and `head`.
    pub fn new(base: &PolicySide, head: &PolicySide) -> Self {
        Report {
            base: SideInfo {
                label: base.label.clone(),
                version: base.engine.version().to_string(),
            },
            head: SideInfo {
                label: head.label.clone(),
                version: head.engine.version().to_string(),
            },
            ..Report::default()
        }
    }

    /// Asks both sides every probe over `world`; `kind` counts them
    /// (`suites`, `generated`, `database`, `replay`).
    pub fn compare(
        &mut self,
        kind: &str,
        base: &PolicyEngine,
        head: &PolicyEngine,
        world: &World,
        probes: &[Probe],
    ) {
        let before = ask(base, world, probes);
        let after = ask(head, world, probes);
        *self.evaluated.entry(kind.to_string()).or_default() += probes.len();
        for ((probe, b), h) in probes.iter().zip(before).zip(after) {
            if b.word() == h.word() {
                if b.reasons() != h.reasons() {
                    self.reasons_changed += 1;
                }
                continue;
            }
            self.changes.push(Change {
                source: probe.source.clone(),
                name: probe.name.clone(),
                principal: entity_text(&probe.raw.principal.ty, &probe.raw.principal.id),
                action: probe.raw.action.clone(),
                resource: entity_text(&probe.raw.resource.ty, &probe.raw.resource.id),
                authn: probe.raw.authn.as_str(),
                base: b,
                head: h,
            });
        }
    }

    /// Changes grouped by direction and responsible policies, largest first.
    pub fn groups(&self) -> Vec<Group<'_>> {
        let mut groups: BTreeMap<(String, Vec<String>), Vec<&Change>> = BTreeMap::new();
        for change in &self.changes {
            groups
                .entry((change.direction(), change.policies()))
                .or_default()
                .push(change);
        }
        let mut out: Vec<Group<'_>> = groups
            .into_iter()
            .map(|((direction, policies), changes)| Group {
                direction,
                policies,
                count: changes.len(),
                changes,
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.direction.cmp(&b.direction)));
        out
    }

    /// The report for people; at most `limit` changes listed per group (0: all).
    pub fn text(&self, limit: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "warden diff: base {} ({}) -> head {} ({})",
            self.base.label, self.base.version, self.head.label, self.head.version
        );
        let total: usize = self.evaluated.values().sum();
        let parts: Vec<String> = self
            .evaluated
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "evaluated {total} decisions: {}", parts.join(", "));
        if self.changes.is_empty() {
            let _ = writeln!(out, "\nno decision changed");
        } else {
            let mut directions: BTreeMap<String, usize> = BTreeMap::new();
            for c in &self.changes {
                *directions.entry(c.direction()).or_default() += 1;
            }
            let summary: Vec<String> = directions
                .iter()
                .map(|(d, n)| format!("{d}: {n}"))
                .collect();
            let _ = writeln!(
                out,
                "\n{} decisions changed ({})",
                self.changes.len(),
                summary.join(", ")
            );
            for group in self.groups() {
                let by = if group.policies.is_empty() {
                    "no policy".to_string()
                } else {
                    group.policies.join(", ")
                };
                let _ = writeln!(out, "\n{} by [{by}] ({})", group.direction, group.count);
                let shown = if limit == 0 { group.count } else { limit };
                for c in group.changes.iter().take(shown) {
                    let name = if c.name.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", c.name)
                    };
                    let _ = writeln!(
                        out,
                        "  {:<10} {} {} {} [authn {}]{name}",
                        c.source, c.principal, c.action, c.resource, c.authn
                    );
                    if let Answer::Invalid { error } = &c.head {
                        let _ = writeln!(out, "             head: {error}");
                    }
                    if let Answer::Invalid { error } = &c.base {
                        let _ = writeln!(out, "             base: {error}");
                    }
                }
                if group.count > shown {
                    let _ = writeln!(
                        out,
                        "  ... and {} more (--limit 0 lists all)",
                        group.count - shown
                    );
                }
            }
        }
        if self.reasons_changed > 0 {
            let _ = writeln!(
                out,
                "\n{} decisions kept their outcome with other determining policies",
                self.reasons_changed
            );
        }
        out
    }

    /// The report for tools: every change, and the groups.
    pub fn json(&self) -> serde_json::Value {
        let groups: Vec<serde_json::Value> = self
            .groups()
            .iter()
            .map(|g| {
                serde_json::json!({"direction": g.direction, "policies": g.policies,
                    "count": g.count, "changes": g.changes})
            })
            .collect();
        serde_json::json!({
            "base": self.base,
            "head": self.head,
            "evaluated": self.evaluated,
            "changed": self.changes.len(),
            "reasons_changed": self.reasons_changed,
            "groups": groups,
        })
    }
}

/// What `warden diff` evaluates besides the generated world.
pub struct Sources {
    /// Policy test suite files.
    pub suites: Vec<PathBuf>,
    /// The database whose facts the database sample and the replay use.
    pub database: Option<crate::store::Store>,
    /// At most this many (user, resource) pairs sampled from the database
    /// (0: no sample; the database is then only for the replay).
    pub sample: usize,
    /// A decision log to replay over the database's facts.
    pub replay: Vec<(usize, crate::decision_log::LogLine)>,
}

/// The actions of both sides, with the resource types each applies to.
fn actions_of(sides: [&PolicyEngine; 2]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for engine in sides {
        for action in engine.decision_actions() {
            if let Some(shape) = engine.decision_action(action) {
                out.entry(action.to_string())
                    .or_default()
                    .extend(shape.resources.iter().cloned());
            }
        }
    }
    out
}

/// Pairs per fact load: well under the store's key limit.
const CHUNK: usize = 2_000;

/// Asks both sides `probes` over facts loaded from `store`, `CHUNK` at a time.
async fn compare_stored(
    report: &mut Report,
    kind: &str,
    sides: [&PolicyEngine; 2],
    store: &crate::store::Store,
    probes: &[Probe],
) -> Result<(), String> {
    use crate::store::facts::FactKeys;
    for chunk in probes.chunks(CHUNK) {
        let mut keys = FactKeys::default();
        for probe in chunk {
            for r in [&probe.raw.principal, &probe.raw.resource] {
                let set = match r.ty.as_str() {
                    "User" => &mut keys.users,
                    "Workspace" => &mut keys.workspaces,
                    "Project" => &mut keys.projects,
                    "Asset" => &mut keys.assets,
                    _ => continue,
                };
                set.insert(r.id.clone());
            }
        }
        let world = store
            .load_facts(&keys)
            .await
            .map_err(|e| format!("cannot load facts: {e}"))?;
        report.compare(kind, sides[0], sides[1], &world, chunk);
    }
    Ok(())
}

/// Runs the diff of `base` against `head` over every source.
pub async fn run(base: &PolicySide, head: &PolicySide, sources: Sources) -> Result<Report, String> {
    let sides = [&base.engine, &head.engine];
    let mut report = Report::new(base, head);
    for file in &sources.suites {
        let suite = super::suite::read_suite(file)?;
        let label = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let probes: Vec<Probe> = super::suite::probes(&label, &suite)?
            .into_iter()
            .map(|p| Probe {
                source: "suite".into(),
                name: format!("{label}: {}", p.case.name),
                raw: p.raw,
            })
            .collect();
        report.compare("suites", sides[0], sides[1], &suite.world, &probes);
    }
    let (world, resources) = super::generated::world();
    let probes = super::generated::probes(&world, &resources, &actions_of(sides));
    report.compare("generated", sides[0], sides[1], &world, &probes);
    let Some(store) = &sources.database else {
        if sources.replay.is_empty() {
            return Ok(report);
        }
        return Err("a replay needs the facts its decisions were made on: give --database-url (or --data-dir)".into());
    };
    if sources.sample > 0 {
        let actions = actions_of(sides);
        let pairs = store
            .sample_pairs(sources.sample)
            .await
            .map_err(|e| format!("cannot sample the database: {e}"))?;
        let mut probes = Vec::new();
        for (user, ty, id) in pairs {
            for (action, types) in &actions {
                if !types.contains(ty) {
                    continue;
                }
                probes.push(Probe {
                    source: "database".into(),
                    name: String::new(),
                    raw: crate::decision::RawDecision {
                        principal: crate::decision::EntityRef {
                            ty: "User".into(),
                            id: user.clone(),
                        },
                        action: action.clone(),
                        resource: crate::decision::EntityRef {
                            ty: ty.into(),
                            id: id.clone(),
                        },
                        context: Default::default(),
                        entities: None,
                        authn: crate::decision::Authn::App,
                    },
                });
            }
        }
        compare_stored(&mut report, "database", sides, store, &probes).await?;
    }
    if !sources.replay.is_empty() {
        let mut probes = Vec::new();
        for (line, logged) in &sources.replay {
            probes.push(Probe {
                source: "replay".into(),
                name: format!("line {line}, logged {}", logged.decision),
                raw: logged.request().map_err(|e| format!("line {line}: {e}"))?,
            });
        }
        compare_stored(&mut report, "replay", sides, store, &probes).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The per-action index of the engine (only the policies whose action
    /// scope can match are evaluated) answers every generated request as
    /// the whole set does: same decision, same reasons, same errors.
    #[test]
    fn the_action_index_decides_as_the_whole_set() {
        let load = || PolicyEngine::load(Path::new("policies"), Path::new("schema"));
        let (Ok(indexed), Ok(whole)) = (load(), load()) else {
            panic!("the repository's policies load");
        };
        let whole = whole.without_action_index();
        let (world, resources) = super::super::generated::world();
        let probes =
            super::super::generated::probes(&world, &resources, &actions_of([&indexed, &whole]));
        assert!(probes.len() > 100_000, "{} probes", probes.len());
        let a = super::super::probe::ask(&indexed, &world, &probes);
        let b = super::super::probe::ask(&whole, &world, &probes);
        assert!(a
            .iter()
            .any(|x| matches!(x, super::super::probe::Answer::Allow { .. })));
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(
            differing, 0,
            "answers differ between the index and the whole set"
        );
    }
}
