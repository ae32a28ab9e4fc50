//! The `warden` command line: migrate, import, validate (text and JSON), test.

use crate::common::{copy_dir, repo, Db};

fn warden(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(repo())
        .env_remove("DATABASE_URL")
        .env_remove("WARDEN_DATABASE_URL")
        .output()
        .expect("warden runs")
}

#[tokio::test]
async fn the_command_line_imports_validates_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = warden(&["migrate", "--data-dir", data]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = warden(&["import", "--data-dir", data, "demo/world.json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"assets\":4"));
    // The imported world is there: a server over the same data answers from it.
    let app = crate::common::spawn_with(
        Db::Sqlite,
        None,
        Some(warden::store::sqlite_url(dir.path())),
    )
    .await;
    assert_eq!(app.decide("bob", "write", "Asset", "plan").await, "allow");
    // A bad document is refused with its problem and writes nothing.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"assets": [{"id": "x", "project": "nowhere"}]}"#).unwrap();
    let out = warden(&["import", "--data-dir", data, bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("assets[0].project"));
    let (_, export) = app.get("/v1/admin/export").await;
    assert!(export["assets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["id"] != "x"));
    // validate: exit 0 on the repo's policies, 1 with the place of a mistake.
    let out = warden(&["validate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let broken = dir.path().join("policies");
    copy_dir(&repo().join("policies"), &broken);
    std::fs::write(
        broken.join("zz.cedar"),
        "@id(\"zz\")\npermit (principal, action, resource) when { principal.nope };\n",
    )
    .unwrap();
    let out = warden(&["validate", "--policies", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("zz.cedar:2:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn warden_test_reports_like_cargo_test_and_fails_on_a_wrong_expectation() {
    let out = warden(&["test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("test result: ok.") && stdout.contains(" 0 failed"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("wrong.json");
    std::fs::write(
        &suite,
        r#"{"world": {"users": [{"id": "v", "kind": "registered"}, {"id": "o", "kind": "registered"}],
                     "workspaces": [{"id": "w", "owner": "o"}],
                     "memberships": [{"user": "v", "scope": "workspace", "id": "w", "role": "viewer"}]},
            "cases": [{"name": "viewers read", "principal": {"type": "User", "id": "v"}, "action": "read",
                       "resource": {"type": "Workspace", "id": "w"}, "decision": "allow", "reasons": ["workspace-viewer"]},
                      {"name": "viewers write (wrong on purpose)", "principal": {"type": "User", "id": "v"}, "action": "write",
                       "resource": {"type": "Workspace", "id": "w"}, "decision": "allow"}]}"#,
    )
    .unwrap();
    let path = suite.to_str().unwrap();
    let out = warden(&["test", path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("viewers read [read] ... ok"), "{stdout}");
    assert!(
        stdout.contains("viewers write (wrong on purpose) [write] ... FAILED"),
        "{stdout}"
    );
    assert!(stdout.contains("expected allow, got deny"), "{stdout}");
    assert!(
        stdout.contains("test result: FAILED. 1 passed; 1 failed"),
        "{stdout}"
    );
    let out = warden(&["test", "--format", "junit", path]);
    let xml = String::from_utf8_lossy(&out.stdout);
    assert!(
        xml.contains("tests=\"2\" failures=\"1\"")
            && xml.contains("<failure message=\"expected allow"),
        "{xml}"
    );
}

#[test]
fn warden_validate_speaks_json_for_tools() {
    let out = warden(&["validate", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["ok"], true);
    assert!(value["policies"].as_array().unwrap().len() >= 17);
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("policies");
    copy_dir(&repo().join("policies"), &broken);
    std::fs::write(
        broken.join("zz.cedar"),
        "@id(\"zz\")\npermit (principal, action, resource)\n  when { resource.nope };\n",
    )
    .unwrap();
    let out = warden(&[
        "validate",
        "--format",
        "json",
        "--policies",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["ok"], false);
    let problem = &value["problems"][0];
    assert!(
        problem["file"].as_str().unwrap().ends_with("zz.cedar"),
        "{value}"
    );
    assert_eq!(problem["line"], 3, "{value}");
    assert!(problem["column"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bench_data_imports_a_world_of_the_asked_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(&[
        "bench-data",
        "--assets",
        "1000",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = crate::common::spawn_with(
        Db::Sqlite,
        None,
        Some(warden::store::sqlite_url(dir.path())),
    )
    .await;
    let (_, export) = app.get("/v1/admin/export").await;
    assert_eq!(export["assets"].as_array().unwrap().len(), 1000);
    assert_eq!(export["workspaces"].as_array().unwrap().len(), 10);
    // The owner of w3 may delete its assets: the ids follow the documented pattern.
    assert_eq!(
        app.decide("u6", "delete", "Asset", "w3p4a19").await,
        "allow"
    );
}
