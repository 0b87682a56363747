//! Postern: a secure gateway for safeguarding information sharing.
//!
//! The flow, and the module for each step:
//! agency system ──mTLS──▶ [`ingest`] ──▶ [`domain::envelope`] ──▶ [`domain::policy`] ──▶
//! [`seal`] ──▶ [`store`] (spool + transfer log) ──▶ 202 Accepted.

pub mod domain;
