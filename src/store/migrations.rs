//! The migrations of `migrations/postgres` and `migrations/sqlite`, embedded
//! in the binary by `build.rs` and read the way sqlx reads a migration
//! directory (`sqlx::migrate::resolve_blocking`): `<VERSION>_<DESCRIPTION>.sql`,
//! the description with `_` as spaces, `-- no-transaction` as the first line
//! to opt out of the transaction. One difference: a `.sql` file not named
//! that way stops the start-up with its name (sqlx skips it silently), and
//! the unit tests below catch it first. Each checksum is sqlx's SHA-384 of
//! the text (`Migration::new`), the same one `sqlx::migrate!` embedded
//! before, so databases migrated by earlier builds still match.

use super::Backend;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;

mod files {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// The embedded files of one backend, as `(file name, text)`.
#[derive(Debug, Clone, Copy)]
struct Embedded(&'static [(&'static str, &'static str)]);

/// One file as a migration, or why its name is not one.
fn migration(file: &'static str, sql: &'static str) -> Result<Migration, String> {
    let (version, rest) = file
        .split_once('_')
        .filter(|(_, rest)| rest.ends_with(".sql"))
        .ok_or_else(|| {
            format!("migration file {file:?} is not named <VERSION>_<DESCRIPTION>.sql")
        })?;
    let version: i64 = version
        .parse()
        .map_err(|_| format!("migration file {file:?} does not start with an integer version"))?;
    let kind = MigrationType::from_filename(rest);
    let description = rest.trim_end_matches(kind.suffix()).replace('_', " ");
    let no_tx = sql.starts_with("-- no-transaction");
    Ok(Migration::new(
        version,
        Cow::Owned(description),
        kind,
        Cow::Borrowed(sql),
        no_tx,
    ))
}

/// What [`MigrationSource::resolve`] returns.
type Resolved = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>,
>;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Resolved {
        Box::pin(async move {
            let mut migrations = self
                .0
                .iter()
                .map(|(file, sql)| migration(file, sql))
                .collect::<Result<Vec<_>, _>>()?;
            migrations.sort_by_key(|m| m.version);
            Ok(migrations)
        })
    }
}

/// The migrator of `backend`.
pub async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(match backend {
        Backend::Postgres => files::POSTGRES,
        Backend::Sqlite => files::SQLITE,
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_versions_and_descriptions() {
        let m = migration("0007_members_by_scope.sql", "SELECT 1;").unwrap();
        assert_eq!(m.version, 7);
        assert_eq!(m.description, "members by scope");
        assert_eq!(m.migration_type, MigrationType::Simple);
        assert!(!m.no_tx);
        assert!(
            migration("0008_x.sql", "-- no-transaction\nCREATE INDEX")
                .unwrap()
                .no_tx
        );
        assert!(migration("x_y.sql", "").is_err());
        assert!(migration("0009.sql", "").is_err());
    }

    #[test]
    fn both_backends_embed_every_file_in_version_order() {
        for files in [files::POSTGRES, files::SQLITE] {
            let versions: Vec<i64> = files
                .iter()
                .map(|(f, s)| migration(f, s).unwrap().version)
                .collect();
            let expected: Vec<i64> = (1..=versions.len() as i64).collect();
            assert_eq!(versions, expected);
        }
    }
}
