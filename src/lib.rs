//! Postern: a secure gateway for safeguarding information sharing.
//!
//! # Where to start reading
//!
//! The flow, and the folder that holds each step:
//!
//! ```text
//! agency system ──mTLS──▶ ingest ──▶ domain::envelope ──▶ domain::policy ──▶ seal ──▶ store ──▶ 202
//!                (who is calling:     parse + validate      pure decision    age,     spool + queue +
//!                 tls::server)                                               stream   transfer log,
//!                                                                                     committed first
//! store (queue) ──▶ deliver ──▶ reseal for the recipient ──▶ email / mTLS HTTPS / inbox
//! peer ──mTLS──▶ ingest::inbound ──▶ domain::inbound (policy again) ──▶ inbox ──▶ the organisation
//! every decision and attempt ──▶ log (records, chain, verification) kept by store (checkpoints)
//! person ──HTTPS──▶ web (sign-in by emailed code, session) ──▶ question pages ──▶ ingest's path
//! ```
//!
//! | folder | what lives there |
//! |---|---|
//! | [`domain`] | the pure policy core: markings, envelopes, registry, policy, decisions (no IO) |
//! | [`clock`], [`live`] | timestamps as the store keeps them; values a reload replaces |
//! | [`tls`] | the rustls provider, TLS 1.2+, identities bound to their CA, TLS failures |
//! | [`seal`] | age: streaming seal, reseal and open; key files |
//! | [`pki`] | the project's own CA: issuing, revocation lists |
//! | [`log`] | the transfer log's records, hash chain, checkpoint key, verification (pure) |
//! | [`config`] | TOML to validated types, every error at once with file and line |
//! | [`store`] | all SQL: the spool, the delivery queue, the inbox, the log's tables, checkpoints |
//! | [`metrics`], [`client`] | what is counted; the HTTP client over mutual TLS |
//! | [`inbox`] | receiving a sealed transfer into an organisation's inbox |
//! | [`deliver`] | the delivery worker, retries, one module per channel |
//! | [`ingest`] | the API listener: routes, upload, inbound, problem codes, the OpenAPI document made from them |
//! | `web` | the people's pages: sign-in, sessions, the share flow, "your shares" |
//! | [`runtime`] | the daemon assembled: reload, shutdown, ops listener, logging, dev material |
//! | `testkit` | (feature `testkit`) the tests' SMTP server and synthetic log; not the product |
//!
//! Imports run up this table only (a module uses the ones above it), never down: the binary's
//! `cli` sits on top. `tests/layers.rs` checks it; `docs/architecture.md` says where a change of
//! each common kind goes.

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
pub(crate) mod web;
