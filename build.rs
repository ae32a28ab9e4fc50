//! Embeds the migrations: writes `$OUT_DIR/migrations.rs`, one list per
//! backend of `(file name, include_str!(file))` in file-name order, which
//! `store::migrations` turns into sqlx migrations at start-up.
//!
//! This replaces `sqlx::migrate!`, the only use of sqlx's `macros` feature:
//! that proc macro compiled a second sqlx with SQLite's C source for the
//! build host in every build. Cargo reruns this script when a file in
//! `migrations/` is added, removed or changed.
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut out = String::new();
    for (name, dir) in [("POSTGRES", "postgres"), ("SQLITE", "sqlite")] {
        let dir = root.join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
            .map(|entry| entry.path())
            // Like sqlx's own directory reader, only `.sql` files count.
            .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        writeln!(
            out,
            "/// The files of `migrations/{}`.",
            dir.file_name().unwrap_or_default().to_string_lossy()
        )
        .ok();
        writeln!(out, "pub const {name}: &[(&str, &str)] = &[").ok();
        for path in files {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            writeln!(
                out,
                "    ({file:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .ok();
        }
        writeln!(out, "];").ok();
    }
    let target =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    std::fs::write(&target, out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}
