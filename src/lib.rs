//! Postern: a secure gateway for safeguarding information sharing.
//!
//! The flow, and the module for each step:
//! agency system ──mTLS──▶ [`ingest`] ──▶ [`domain::envelope`] ──▶ [`domain::policy`] ──▶
//! [`seal`] ──▶ [`store`] (spool + transfer log) ──▶ 202 Accepted.

pub mod client;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod domain;
pub mod inbox;
pub mod ingest;
pub mod live;
pub mod log;
pub mod metrics;
pub mod pki;
pub mod runtime;
pub mod seal;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
