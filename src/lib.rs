//! Postern: a secure gateway for safeguarding information sharing.
//!
//! The flow, and the module for each step:
//! agency system ──mTLS──▶ [`ingest`] ──▶ [`domain::envelope`] ──▶ [`domain::policy`] ──▶
//! [`seal`] ──▶ [`store`] (spool + transfer log) ──▶ 202 Accepted.

pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod devkit;
pub mod domain;
pub mod inbox;
pub mod ingest;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod pki;
pub mod pki_crl;
pub mod seal;
pub mod smtp_sink;
pub mod store;
pub mod transfer_log;
pub mod verify;
