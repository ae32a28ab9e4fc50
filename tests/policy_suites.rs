//! Runs every policy test suite in `tests/policies/` against the repo's
//! `policies/` and `schema/`, with no database. Each failing case is listed.

use std::path::Path;
use warden::policy::suite::run_file;
use warden::policy::PolicyEngine;

#[test]
fn policy_suites_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = PolicyEngine::load(&root.join("policies"), &root.join("schema"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests/policies"))
        .expect("tests/policies exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no policy suites in tests/policies");
    let (mut passed, mut failures) = (0, Vec::new());
    for file in &files {
        for outcome in run_file(&engine, file).unwrap_or_else(|e| panic!("{e}")) {
            match outcome.failure {
                None => passed += 1,
                Some(why) => failures.push(format!("{}: {why}", outcome.name)),
            }
        }
    }
    eprintln!("policy suites: {passed} passed, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "failing policy cases:\n{}",
        failures.join("\n")
    );
}

/// `docs/permissions.md` is what `warden matrix` computes from the policies:
/// a policy edit that changes a decision must come with the regenerated file.
#[test]
fn the_committed_permission_matrix_matches_the_policies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = PolicyEngine::load(&root.join("policies"), &root.join("schema"))
        .unwrap_or_else(|e| panic!("{e}"));
    let computed = warden::policy::matrix::compute(&engine).markdown();
    let committed = std::fs::read_to_string(root.join("docs/permissions.md"))
        .expect("docs/permissions.md exists");
    assert!(
        committed == computed,
        "docs/permissions.md no longer matches the policies; regenerate it with \
         `cargo run -- matrix > docs/permissions.md` and review the diff"
    );
}
