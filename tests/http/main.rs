//! HTTP integration tests: the real server on an ephemeral port, over a
//! fresh SQLite file or a fresh Postgres database per test.

#[path = "../common/mod.rs"]
pub mod common;

mod admin;
mod authzen;
mod cli;
mod consistency;
mod decisions;
mod errors;
mod identity;
mod jwt_attacks;
mod manage;
mod openapi;
mod ops;
mod outage;
mod policy_tools;
mod random_worlds;
mod reload;
mod search;
mod startup;
mod upgrade;
