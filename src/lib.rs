//! Warden: an authorization server. Apps ask over HTTP whether a principal
//! may act on a resource; Cedar policies in `policies/` decide over facts
//! loaded from Postgres or embedded SQLite. This file only wires the parts.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
pub mod benchdata;
pub mod cache;
pub mod config;
pub mod decision;
pub mod decision_log;
pub mod domain;
pub mod entities;
pub mod http;
pub mod identity;
pub mod policy;
pub mod search;
pub mod startup;
pub mod store;
pub mod telemetry;
