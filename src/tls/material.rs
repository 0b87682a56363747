//! The TLS material a configuration names, read and checked by `config`: the server chain and
//! key, the trusted client CAs with their revocation lists, and the identity presented to peers.

use std::path::PathBuf;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::domain::ids::CaId;

/// A trusted client CA, read: its certificates (usually one; a renewed CA may have two) and the
/// revocation lists it signed.
#[derive(Debug, Clone)]
pub struct TrustedCa {
    pub id: CaId,
    pub roots: Vec<CertificateDer<'static>>,
    pub crls: Vec<Crl>,
}

/// The TLS material read from the files the daemon names.
pub struct TlsMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// `tls.client_cas`, each with the CRLs of `tls.client_crls` that it signed.
    pub client_cas: Vec<TrustedCa>,
    /// Presented when delivering to peers (the server certificate unless configured).
    pub client_chain: Vec<CertificateDer<'static>>,
    pub client_key: PrivateKeyDer<'static>,
}

/// A certificate revocation list, parsed and verified against the client CA that issued it.
#[derive(Debug, Clone)]
pub struct Crl {
    pub path: PathBuf,
    pub der: CertificateRevocationListDer<'static>,
    /// The issuing CA, e.g. `CN=Northshire CA, O=Northshire`.
    pub issuer: String,
    /// The entry in `tls.client_cas` whose file holds the list's issuer.
    pub ca: CaId,
    /// The entries whose verification the list takes part in: the issuer's, and any whose
    /// certificates issued the issuer (an issuing CA listed as an entry of its own still revokes
    /// through its root's entry).
    pub applies_to: Vec<CaId>,
    /// The issuer's subject name (DER), which a certificate it revokes names as its issuer.
    pub issuer_name: Vec<u8>,
    /// After this the issuer promises a newer list. Handshakes still use an overdue list (an
    /// outage for every organisation would be worse than a stale list); the gateway warns.
    pub next_update: Option<time::OffsetDateTime>,
    pub revoked: usize,
}
