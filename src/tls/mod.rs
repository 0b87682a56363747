//! TLS, shared by every listener and client: the rustls provider (ring) and protocol versions
//! (1.2 and 1.3 only), the API listener's server configuration with client identities bound to
//! the CA that issued them ([`server`]).

use std::sync::Arc;

pub mod server;

/// The rustls provider used everywhere in Postern.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub const PROTOCOLS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
