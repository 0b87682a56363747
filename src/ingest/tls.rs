//! TLS for the API listener: TLS 1.2 and 1.3 only (rustls, ring provider), a client certificate
//! always required, and verified twice: by the trusted CAs, then against the registry, so that a
//! certificate that does not map to exactly one organisation or peer gateway fails the handshake
//! and never reaches a handler. Revocation lists of the client CAs (`tls.client_crls`) are part of
//! the first check.
//!
//! A [`ServerConfig`] is built whole from one configuration; a reload builds a new one, which
//! the listener uses for connections accepted after it (see `ingest::serve_router`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::config::TlsMaterial;
use crate::domain::registry::{CertFingerprint, Identification, Principal, Registry};
use crate::live::Live;
use crate::pki;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The rustls provider used everywhere in Postern.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub const PROTOCOLS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Who is calling: the organisation or peer gateway a verified client certificate maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub fingerprint: CertFingerprint,
}

pub fn identify(registry: &Registry, cert: &CertificateDer<'_>) -> Identification {
    let fp = pki::fingerprint(cert);
    let sans = pki::subject_alt_names(cert);
    registry.identify(&fp, sans.iter().map(String::as_str))
}

/// The caller of an established connection, if its certificate maps to exactly one principal.
pub fn caller(registry: &Registry, certs: Option<&[CertificateDer<'_>]>) -> Option<Caller> {
    let leaf = certs?.first()?;
    match identify(registry, leaf) {
        Identification::One(principal) => Some(Caller {
            principal,
            fingerprint: pki::fingerprint(leaf),
        }),
        _ => None,
    }
}

/// CA verification first, then "is this exactly one registered organisation?".
#[derive(Debug)]
struct OrgVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    registry: Live<Registry>,
}

impl ClientCertVerifier for OrgVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match identify(&self.registry.current(), end_entity) {
            Identification::One(_) => Ok(ClientCertVerified::assertion()),
            Identification::Unknown => {
                tracing::info!(fingerprint = %pki::fingerprint(end_entity), "client certificate from a trusted CA maps to no organisation or peer; handshake refused");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
            Identification::Ambiguous(orgs) => {
                tracing::warn!(fingerprint = %pki::fingerprint(end_entity), principals = ?orgs, "client certificate maps to several organisations or peers; handshake refused");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The API listener's TLS configuration.
pub fn server_config(
    material: &TlsMaterial,
    registry: Live<Registry>,
) -> Result<ServerConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in &material.client_roots {
        roots.add(ca.clone())?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if !material.client_crls.is_empty() {
        builder = builder
            .with_crls(material.client_crls.iter().map(|c| c.der.clone()))
            // A CA without a list is not checked: without this, configuring a list for one CA
            // would refuse every client of the others.
            .allow_unknown_revocation_status();
    }
    let inner = builder.build()?;
    let verifier = Arc::new(OrgVerifier { inner, registry });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOLS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
