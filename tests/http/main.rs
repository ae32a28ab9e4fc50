//! HTTP integration tests: the real server on an ephemeral port, over a
//! fresh SQLite file or a fresh Postgres database per test.

#[path = "../common/mod.rs"]
pub mod common;

mod admin_api;
mod api_errors;
mod authzen_api;
mod decisions;
mod outage;
mod random_worlds;
mod reload;
mod startup_checks;
