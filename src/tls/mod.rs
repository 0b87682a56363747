//! TLS, shared by every listener and client: the rustls provider (ring) and protocol versions
//! (1.2 and 1.3 only), the API listener's server configuration with client identities bound to
//! the CA that issued them ([`server`]), reading certificates and identities, and the bounded
//! vocabulary of TLS failures.

use std::sync::Arc;

mod certs;
mod failure;
mod material;
pub mod server;

pub use certs::{
    Identity, PemError, client_config, fingerprint, ip_alt_names, read_roots, subject_alt_names,
};
pub use failure::{HandshakeFailure, find_io_error, find_tls_error, in_words, io_in_words};
pub use material::{Crl, TlsMaterial, TrustedCa};

/// The rustls provider used everywhere in Postern.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub const PROTOCOLS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
