//! Start-up: the first admin key, and invalid policies refusing to start
//! with the file, line, column and reason.

use crate::common::{repo, settings, Db, PgDatabase};
use std::path::Path;
use warden::startup::Application;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[tokio::test]
async fn first_start_writes_a_private_admin_key_once() {
    for db in [Db::Sqlite, Db::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let pg = match db {
            Db::Postgres => Some(PgDatabase::create().await),
            Db::Sqlite => None,
        };
        let url = pg
            .as_ref()
            .map_or_else(|| warden::store::sqlite_url(dir.path()), PgDatabase::url);
        let first = Application::build(&settings(dir.path(), url.clone()))
            .await
            .unwrap();
        let file = first
            .admin_key_file()
            .expect("first start writes the key")
            .to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let key = std::fs::read_to_string(&file).unwrap();
        assert!(key.trim().starts_with("wdn_"));
        drop(first);
        let second = Application::build(&settings(dir.path(), url))
            .await
            .unwrap();
        assert!(
            second.admin_key_file().is_none(),
            "{db:?}: a second start makes no new key"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
    }
}

async fn start_error(edit: impl Fn(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&repo().join("policies"), &policies);
    edit(&policies);
    let mut s = settings(dir.path(), warden::store::sqlite_url(dir.path()));
    s.policies = policies;
    match Application::build(&s).await {
        Ok(_) => panic!("the server started with invalid policies"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn invalid_policies_stop_the_server_with_the_place_and_reason() {
    let typo = start_error(|dir| {
        let file = dir.join("workspace-roles.cedar");
        let text = std::fs::read_to_string(&file).unwrap().replace(
            "resource.workspace.owner == principal",
            "resource.workspace.ownr == principal",
        );
        std::fs::write(file, text).unwrap();
    })
    .await;
    assert!(typo.contains("workspace-roles.cedar:14:8"), "{typo}");
    assert!(
        typo.contains("ownr") && typo.contains("did you mean `owner`"),
        "{typo}"
    );

    let type_error = start_error(|dir| {
        let file = dir.join("public-links.cedar");
        let text = std::fs::read_to_string(&file).unwrap().replace(
            "resource.public_access == \"write\" }",
            "resource.public_access == 3 }",
        );
        std::fs::write(file, text).unwrap();
    })
    .await;
    assert!(type_error.contains("public-links.cedar:"), "{type_error}");

    let no_id = start_error(|dir| {
        std::fs::write(
            dir.join("extra.cedar"),
            "\npermit (principal, action, resource);\n",
        )
        .unwrap();
    })
    .await;
    assert!(
        no_id.contains("extra.cedar:2:1") && no_id.contains("@id"),
        "{no_id}"
    );

    let duplicate = start_error(|dir| {
        std::fs::write(
            dir.join("zz-extra.cedar"),
            "@id(\"workspace-owner\")\nforbid (principal, action, resource);\n",
        )
        .unwrap();
    })
    .await;
    assert!(
        duplicate.contains("zz-extra.cedar:1:1") && duplicate.contains("duplicate @id"),
        "{duplicate}"
    );

    let syntax = start_error(|dir| {
        std::fs::write(
            dir.join("extra.cedar"),
            "@id(\"x\")\npermit (principal, action resource);\n",
        )
        .unwrap();
    })
    .await;
    assert!(syntax.contains("extra.cedar:2:"), "{syntax}");
}
