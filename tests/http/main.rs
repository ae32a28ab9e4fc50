//! HTTP integration tests: the real server on an ephemeral port, over a
//! fresh SQLite file or a fresh Postgres database per test.

#[path = "../common/mod.rs"]
pub mod common;

mod decisions;
mod outage;
mod random_worlds;
