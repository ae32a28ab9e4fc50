//! The policy author's and reviewer's tools: `warden diff` (suites, the
//! generated world, a git revision, a database sample, a decision-log
//! replay), `warden matrix`, explain on `/v1/check`, and the decision log.

use crate::both_backends;
use crate::common::{copy_dir, edit, repo, spawn_configured, Db, PgDatabase};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

fn warden_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("WARDEN_DATABASE_URL")
        .env_remove("WARDEN_DATA_DIR")
        .output()
        .expect("warden runs")
}

fn warden(args: &[&str]) -> std::process::Output {
    warden_in(repo(), args)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The loosening edit of the issue: workspace editors may manage members.
const EDITOR_LINE: &str = "    Warden::Action::\"share\"\n  ],\n  resource\n)\nwhen {\n  principal in resource.workspace.editors";
const EDITOR_LOOSER: &str = "    Warden::Action::\"share\",\n    Warden::Action::\"manage_members\"\n  ],\n  resource\n)\nwhen {\n  principal in resource.workspace.editors";

/// A copy of the repo's policies with editors allowed to manage members.
fn loosened() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), dir.path());
    edit(
        &dir.path().join("workspace-roles.cedar"),
        EDITOR_LINE,
        EDITOR_LOOSER,
    );
    dir
}

#[test]
fn diff_lists_exactly_the_decisions_a_loosening_edit_flips() {
    let head = loosened();
    let head_arg = head.path().to_str().unwrap();
    let root = repo().to_str().unwrap();
    let out = warden(&[
        "diff", "--base", root, "--head", head_arg, "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report}");
    assert_eq!(groups[0]["direction"], "deny -> allow");
    assert_eq!(groups[0]["policies"], json!(["workspace-editor"]));
    let changes = groups[0]["changes"].as_array().unwrap();
    assert!(changes.iter().all(|c| c["action"] == "manage_members"));

    // The generated world: exactly the registered workspace editors (every
    // project role and grant: 9 users) on the 4 workspaces and 8 projects,
    // named by an app or by the provider's token. Anonymous editors stay
    // denied by a forbid, and an anonymous token of a registered user is dead.
    let generated: BTreeSet<(String, String, String)> = changes
        .iter()
        .filter(|c| c["source"] == "generated")
        .map(|c| {
            (
                c["principal"].as_str().unwrap().to_string(),
                c["resource"].as_str().unwrap().to_string(),
                c["authn"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = BTreeSet::new();
    for p_role in ["none", "editor", "viewer"] {
        for grant in ["none", "read", "write"] {
            let user = format!("User::\"registered:ws-editor:p-{p_role}:grant-{grant}\"");
            for owner in ["registered", "anonymous"] {
                for ws in ["private", "public"] {
                    let w = format!("ws({owner}-owner,{ws})");
                    for authn in ["app", "oidc_token"] {
                        expected.insert((
                            user.clone(),
                            format!("Workspace::{w:?}"),
                            authn.to_string(),
                        ));
                        for p in ["private", "public"] {
                            expected.insert((
                                user.clone(),
                                format!("Project::\"{w}/p({p})\""),
                                authn.to_string(),
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(generated, expected);
    // And the suites' editors.
    let suites = changes.iter().filter(|c| c["source"] == "suite").count();
    assert!(suites > 0, "{report}");
    assert_eq!(report["changed"], json!(expected.len() + suites));
    assert_eq!(report["evaluated"]["generated"].as_u64().unwrap(), 114_840);

    // Text for people: the group, a summary, and --accept exits 0.
    let out = warden(&[
        "diff", "--base", root, "--head", head_arg, "--limit", "2", "--accept",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "deny -> allow by [workspace-editor] ({})",
            expected.len() + suites
        )),
        "{text}"
    );
    assert!(text.contains("... and"), "{text}");
}

#[test]
fn diff_groups_a_tightening_edit_under_the_removed_policy() {
    let head = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("policies"), head.path());
    // Remove public write: anyone's writes to public-write assets flip.
    let file = head.path().join("public-links.cedar");
    let text = std::fs::read_to_string(&file).unwrap();
    let cut = text
        .find("// A public asset with public access \"write\"")
        .unwrap();
    std::fs::write(&file, &text[..cut]).unwrap();
    let out = warden(&[
        "diff",
        "--base",
        repo().to_str().unwrap(),
        "--head",
        head.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report}");
    assert_eq!(groups[0]["direction"], "allow -> deny");
    assert_eq!(groups[0]["policies"], json!(["public-asset-write"]));
    for change in groups[0]["changes"].as_array().unwrap() {
        assert_eq!(change["action"], "write");
        assert!(
            change["resource"]
                .as_str()
                .unwrap()
                .contains("a(public,write)")
                || change["source"] == "suite",
            "{change}"
        );
    }
}

#[test]
fn diff_reads_the_base_from_a_git_revision() {
    let repo_dir = tempfile::tempdir().unwrap();
    let root = repo_dir.path();
    copy_dir(&repo().join("policies"), &root.join("policies"));
    copy_dir(&repo().join("schema"), &root.join("schema"));
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "policies"]);
    // Unchanged: nothing to report.
    let out = warden_in(root, &["diff", "--base", "HEAD", "--suites", "none"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing suite path is an error"
    );
    let out = warden_in(root, &["diff", "--base", "HEAD"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no decision changed"),
        "{}",
        stdout(&out)
    );
    // Edited in the work tree: the revision is the base.
    edit(
        &root.join("policies/workspace-roles.cedar"),
        EDITOR_LINE,
        EDITOR_LOOSER,
    );
    let out = warden_in(root, &["diff", "--base", "HEAD"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deny -> allow by [workspace-editor] (216)"),
        "{}",
        stdout(&out)
    );
    // A revision that does not exist, or a base that does not load.
    let out = warden_in(root, &["diff", "--base", "no-such-revision"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("neither a folder nor a git revision"));
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("x.cedar"),
        "permit (principal, action, resource) when { nope };",
    )
    .unwrap();
    let out = warden_in(root, &["diff", "--base", broken.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("x.cedar:1:"), "{}", stderr(&out));
}

async fn diff_replays_logged_decisions_and_samples_the_database(db: Db) {
    let pg = match db {
        Db::Postgres => Some(PgDatabase::create().await),
        Db::Sqlite => None,
    };
    let url = pg.as_ref().map(PgDatabase::url);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("decisions.jsonl");
    let log_path = log.clone();
    let app = spawn_configured(db, pg, url, move |s| s.decision_log = Some(log_path)).await;
    let world: Value = serde_json::from_str(warden::startup::DEMO_WORLD).unwrap();
    app.import(&world).await;
    let asked = [
        ("bob", "manage_members", "Workspace", "acme"),
        ("bob", "write", "Asset", "plan"),
        ("carol", "write", "Asset", "plan"),
        ("erin", "read", "Asset", "plan"),
    ];
    for (user, action, ty, id) in asked {
        app.decide(user, action, ty, id).await;
    }
    // A decision made with a token is logged as its user, never the token.
    let anon = app.anonymous().await;
    assert_eq!(
        app.decide_token(&anon.token, "write", "Project", &anon.project)
            .await,
        "allow"
    );
    let lines = crate::common::decision_log(&log, |l| l.len() >= 5).await;
    assert_eq!(lines.len(), 5, "{lines:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(&anon.token) && !text.contains("eyJ"),
        "{text}"
    );
    assert!(!text.contains(&app.admin_key));
    let first = &lines[0];
    assert_eq!(first["principal"], json!({"type": "User", "id": "bob"}));
    assert_eq!(first["action"], "manage_members");
    assert_eq!(first["decision"], "deny");
    assert_eq!(first["authn"], "app");
    assert!(first["policy_version"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let last = &lines[4];
    assert_eq!(last["principal"]["id"], json!(anon.user_id));
    assert_eq!(last["authn"], "anonymous_token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the decision log is private: {mode:o}");
    }

    // Replay against the loosened policies, over this database's facts.
    let head = loosened();
    let out = warden(&[
        "diff",
        "--base",
        repo().to_str().unwrap(),
        "--head",
        head.path().to_str().unwrap(),
        "--suites",
        repo().join("tests/policies/grants.json").to_str().unwrap(),
        "--replay",
        log.to_str().unwrap(),
        "--database-url",
        &app.database_url,
        "--sample",
        "500",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["evaluated"]["replay"], 5);
    assert!(report["evaluated"]["database"].as_u64().unwrap() > 0);
    let changes: Vec<&Value> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["changes"].as_array().unwrap())
        .collect();
    let replayed: Vec<&&Value> = changes.iter().filter(|c| c["source"] == "replay").collect();
    assert_eq!(
        replayed.len(),
        1,
        "only bob's manage_members flips: {report}"
    );
    assert_eq!(replayed[0]["principal"], "User::\"bob\"");
    assert_eq!(replayed[0]["name"], "line 1, logged deny");
    // The sample found bob (an editor of acme) on acme as well.
    assert!(changes.iter().any(|c| c["source"] == "database"
        && c["principal"] == "User::\"bob\""
        && c["resource"] == "Workspace::\"acme\""));
    // The database was read, not written: no audit row from the diff.
    let audits = app.state.store.audit_event_count().await.unwrap();
    let out = warden(&[
        "diff",
        "--base",
        repo().to_str().unwrap(),
        "--database-url",
        &app.database_url,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(app.state.store.audit_event_count().await.unwrap(), audits);
}

both_backends!(
    diff_replays_and_samples,
    diff_replays_logged_decisions_and_samples_the_database
);

/// The server rotates its decision log by size: with room for a few lines
/// per file and one rotated file kept, the two files hold the newest
/// decisions, in order, and nothing older is left behind.
#[tokio::test]
async fn the_decision_log_rotates_by_size() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("decisions.jsonl");
    let log_path = log.clone();
    let app = spawn_configured(Db::Sqlite, None, None, move |s| {
        s.decision_log = Some(log_path);
        s.decision_log_rotation = warden::decision_log::Rotation {
            max_bytes: 1_000,
            keep: 1,
        };
    })
    .await;
    let resources: Vec<String> = (0..30).map(|i| format!("a{i}")).collect();
    for id in &resources {
        app.decide("bob", "read", "Asset", id).await;
        // Written before the next decision: the files' order is the decisions'.
        crate::common::decision_log(&log, |l| {
            l.last().is_some_and(|e| e["resource"]["id"] == json!(id))
        })
        .await;
    }
    let read = |path: &Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let rotated = log_dir.path().join("decisions.jsonl.1");
    let (old, current) = (read(&rotated), read(&log));
    assert!(!log_dir.path().join("decisions.jsonl.2").exists());
    for file in [&log, &rotated] {
        assert!(std::fs::metadata(file).unwrap().len() <= 1_000);
    }
    let ids: Vec<&str> = old
        .iter()
        .chain(&current)
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(!old.is_empty() && !current.is_empty());
    assert!(ids.len() < resources.len(), "older files were deleted");
    let newest: Vec<&str> = resources[resources.len() - ids.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(ids, newest, "the newest decisions, in order");
}

#[test]
fn matrix_prints_markdown_and_html_and_checks_the_committed_file() {
    let out = warden(&["matrix"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let markdown = stdout(&out);
    assert!(markdown.contains("## Asset"));
    assert!(markdown.contains("| write grant on the asset | allow (asset-grant-write) | allow (asset-grant-write) | deny | deny |"), "{markdown}");
    let out = warden(&["matrix", "--check", "docs/permissions.md"]);
    assert!(
        out.status.success(),
        "docs/permissions.md is stale: {}",
        stderr(&out)
    );
    let stale = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        stale.path(),
        markdown.replace("allow (workspace-viewer)", "deny"),
    )
    .unwrap();
    let out = warden(&["matrix", "--check", stale.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no longer matches"));
    let out = warden(&["matrix", "--format", "html"]);
    let html = stdout(&out);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<td class=\"allow\">allow<small>workspace-owner</small></td>"));
    assert!(!html.contains("src=") && !html.contains("<script") && !html.contains("href="));
}

async fn explain_shows_the_slice_and_why_each_policy_did_or_did_not_apply(db: Db) {
    let app = crate::common::spawn_app(db).await;
    let world: Value = serde_json::from_str(warden::startup::DEMO_WORLD).unwrap();
    app.import(&world).await;
    app.import(&json!({
        "users": [{"id": "guest", "kind": "anonymous"}],
        "memberships": [{"user": "guest", "scope": "workspace", "id": "acme", "role": "owner"}]
    }))
    .await;
    let explain = |user: &str, action: &str, ty: &str, id: &str| {
        json!({"principal": {"type": "User", "id": user}, "action": action,
               "resource": {"type": ty, "id": id}, "explain": true})
    };
    let trace = |body: &Value, id: &str| -> Value {
        body["explain"]["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };

    // A missing membership: the viewer may not write; each permit says why.
    let (status, body) = app
        .post("/v1/check", &explain("carol", "write", "Asset", "plan"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "deny");
    let editor = trace(&body, "workspace-editor");
    assert_eq!(editor["outcome"], "not_applied");
    assert_eq!(
        editor["condition"],
        "principal in resource.workspace.editors"
    );
    assert_eq!(editor["value"], "false");
    assert_eq!(
        trace(&body, "public-asset-write")["condition"],
        "resource.visibility == \"public\""
    );
    // Policies whose scope cannot match (read-only, other actions) are left out.
    assert_eq!(trace(&body, "workspace-viewer"), Value::Null);
    // The slice: the principal with its role groups, the resource chain.
    let entities = body["explain"]["entities"].as_array().unwrap();
    let carol = entities
        .iter()
        .find(|e| e["uid"]["id"] == "carol")
        .expect("principal in the slice");
    assert!(carol["parents"]
        .to_string()
        .contains("workspace/acme/viewers"));
    for id in ["plan", "roadmap", "acme"] {
        assert!(
            entities.iter().any(|e| e["uid"]["id"] == id),
            "{id} missing"
        );
    }
    assert!(!entities.iter().any(|e| e["uid"]["id"] == "globex"));

    // An allow: the determining permit applied.
    let (_, body) = app
        .post("/v1/check", &explain("bob", "write", "Asset", "plan"))
        .await;
    assert_eq!(body["decision"], "allow");
    assert_eq!(trace(&body, "workspace-editor")["outcome"], "applied");

    // A forbid: the permit applied, and the forbid that overrode it.
    let (_, body) = app
        .post(
            "/v1/check",
            &explain("guest", "manage_members", "Workspace", "acme"),
        )
        .await;
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["reasons"], json!(["anonymous-no-member-management"]));
    let forbid = trace(&body, "anonymous-no-member-management");
    assert_eq!(forbid["effect"], "forbid");
    assert_eq!(forbid["outcome"], "applied");
    let permit = trace(&body, "workspace-owner-role");
    assert_eq!(permit["outcome"], "not_applied");
    assert!(
        permit["condition"]
            .as_str()
            .unwrap()
            .contains("visibility == \"public\""),
        "{permit}"
    );

    // Without explain, no explanation; in a batch, a 400 naming the item.
    let (_, plain) = app
        .post(
            "/v1/check",
            &json!({"principal": {"type": "User", "id": "bob"}, "action": "read",
              "resource": {"type": "Asset", "id": "plan"}}),
        )
        .await;
    assert!(plain.get("explain").is_none());
    let (status, body) = app
        .post(
            "/v1/check/batch",
            &json!({"requests": [explain("bob", "read", "Asset", "plan")]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "requests[0].explain");
    assert_eq!(body["decision"], "deny");
    // Unknown principal: deny with the reason, still explained.
    let (status, body) = app
        .post("/v1/check", &explain("nobody", "read", "Asset", "plan"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "deny");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown principal"));
    // A key without the check scope gets no explanation either.
    let admin_only = app.key_with_scopes(&["admin"]).await;
    let (status, body) = app
        .post_with(
            Some(&admin_only),
            "/v1/check",
            &explain("bob", "read", "Asset", "plan"),
        )
        .await;
    assert_eq!(status, 403);
    assert!(body.get("explain").is_none());
}

both_backends!(
    explain,
    explain_shows_the_slice_and_why_each_policy_did_or_did_not_apply
);
