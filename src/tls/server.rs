//! TLS for the API listener: TLS 1.2 and 1.3 only (rustls, ring provider), a client certificate
//! always required, and verified twice: by the trusted CAs, then against the registry, so that a
//! certificate that does not map to exactly one organisation or peer gateway fails the handshake
//! and never reaches a handler.
//!
//! Every identity in the registry names the CA that may issue it, so the first check must say
//! *which* CA a chain ends at, not only that it ends at one of them: each trusted CA gets a
//! verifier of its own ([`ClientTrust`]), with its own revocation lists (`tls.client_crls`), and
//! the registry is asked about the certificate as issued by those CAs only ([`authenticate`]).
//!
//! A [`ServerConfig`] is built whole from one configuration; a reload builds a new one, which
//! the listener uses for connections accepted after it (see `ingest::serve_router`). Connections
//! already open are checked again on their next request against the trust and registry then in
//! force (see `ingest::connection`), so a reload that revokes a certificate or removes an
//! identity reaches kept-alive connections too.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::{Crl, TlsMaterial, TrustedCa};
use crate::domain::ids::CaId;
use crate::domain::registry::{CertFingerprint, Identification, Principal, Registry};
use crate::live::Live;
use crate::tls::{PROTOCOLS, provider};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA `{ca}`: {source}")]
    Verifier {
        ca: CaId,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("no client CA is configured (tls.client_cas)")]
    NoClientCa,
}

/// Who is calling: the organisation or peer gateway a verified client certificate maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub fingerprint: CertFingerprint,
}

/// The trusted client CAs, each with a verifier of its own (its certificates and its CRLs), so
/// that the CA a chain ends at is known.
pub struct ClientTrust {
    cas: Vec<TrustEntry>,
    hints: Vec<DistinguishedName>,
}

struct TrustEntry {
    id: CaId,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The issuers (subject names, DER) of the lists this entry checks. Once an entry has any,
    /// a certificate whose issuer publishes none of them is refused: its revocation status is
    /// unknown, and a list that silently revokes nothing is what an operator would never
    /// expect (webpki's own "unknown" policy cannot tell the certificate from the CAs above
    /// it, which may rightly have no list).
    crl_issuers: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.cas.iter().map(|e| &e.id))
            .finish()
    }
}

impl ClientTrust {
    pub fn new(cas: &[TrustedCa]) -> Result<Self, TlsError> {
        if cas.is_empty() {
            return Err(TlsError::NoClientCa);
        }
        let mut out = Vec::with_capacity(cas.len());
        let mut hints = Vec::new();
        for ca in cas {
            let verifier = |source| TlsError::Verifier {
                ca: ca.id.clone(),
                source,
            };
            let mut roots = RootCertStore::empty();
            for r in &ca.roots {
                roots.add(r.clone())?;
            }
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            // Every list that bears on this entry: its own CAs', and those of issuing CAs
            // listed as entries of their own.
            let crls: Vec<&Crl> = cas
                .iter()
                .flat_map(|c| &c.crls)
                .filter(|c| c.applies_to.contains(&ca.id))
                .collect();
            if !crls.is_empty() {
                builder = builder
                    .with_crls(crls.iter().map(|c| c.der.clone()))
                    // A CA above the certificate's issuer may publish no list; the certificate
                    // itself must be covered (see `TrustEntry::crl_issuers`).
                    .allow_unknown_revocation_status();
            }
            let built = builder.build().map_err(verifier)?;
            hints.extend(built.root_hint_subjects().iter().cloned());
            out.push(TrustEntry {
                id: ca.id.clone(),
                verifier: built,
                crl_issuers: crls.iter().map(|c| c.issuer_name.clone()).collect(),
            });
        }
        Ok(ClientTrust { cas: out, hints })
    }

    /// The CAs this chain verifies up to (revocation included), or, if none, the most telling
    /// of their reasons (revoked or expired says more than "unknown issuer").
    pub fn anchors(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Vec<CaId>, rustls::Error> {
        let mut anchors = Vec::new();
        let mut why: Option<rustls::Error> = None;
        for entry in &self.cas {
            let checked = entry
                .verifier
                .verify_client_cert(end_entity, intermediates, now)
                .and_then(|_| entry.covers(end_entity));
            match checked {
                Ok(()) => anchors.push(entry.id.clone()),
                Err(e) => {
                    let unknown = matches!(
                        e,
                        rustls::Error::InvalidCertificate(
                            CertificateError::UnknownIssuer | CertificateError::BadSignature
                        )
                    );
                    if why.is_none() || !unknown {
                        why = Some(e);
                    }
                }
            }
        }
        if anchors.is_empty() {
            return Err(why.unwrap_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )));
        }
        Ok(anchors)
    }

    fn any(&self) -> Option<&Arc<dyn ClientCertVerifier>> {
        self.cas.first().map(|e| &e.verifier)
    }
}

impl TrustEntry {
    /// Whether one of this entry's lists can say the certificate is revoked (always, if the
    /// entry has none: revocation is then not checked at all).
    fn covers(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.crl_issuers.is_empty() {
            return Ok(());
        }
        let unknown =
            || rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus);
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| unknown())?;
        let issuer = cert.issuer().as_raw();
        if self.crl_issuers.iter().any(|i| i.as_slice() == issuer) {
            Ok(())
        } else {
            Err(unknown())
        }
    }
}

/// Why a client certificate does not authenticate anyone.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// No trusted CA vouches for it (unknown issuer, revoked, expired...).
    Untrusted(rustls::Error),
    /// Trusted, but no identity issued by its CA matches it.
    Unknown,
    /// It matches several organisations or peers.
    Ambiguous(Vec<Principal>),
}

impl Refused {
    /// As the handshake reports it.
    pub fn into_tls(self) -> rustls::Error {
        match self {
            Refused::Untrusted(e) => e,
            Refused::Unknown | Refused::Ambiguous(_) => {
                rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
            }
        }
    }
}

/// Verifies a client certificate chain (leaf first) against the trusted CAs, then maps it to
/// the one organisation or peer whose identity, issued by one of those CAs, it carries.
pub fn authenticate(
    trust: &ClientTrust,
    registry: &Registry,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<Caller, Refused> {
    let anchors = trust
        .anchors(end_entity, intermediates, now)
        .map_err(Refused::Untrusted)?;
    let fingerprint = super::fingerprint(end_entity);
    let sans = super::subject_alt_names(end_entity);
    match registry.identify(&fingerprint, sans.iter().map(String::as_str), &anchors) {
        Identification::One(principal) => Ok(Caller {
            principal,
            fingerprint,
        }),
        Identification::Unknown => Err(Refused::Unknown),
        Identification::Ambiguous(all) => Err(Refused::Ambiguous(all)),
    }
}

/// [`authenticate`] for a chain as a connection holds it.
pub fn authenticate_chain(
    trust: &ClientTrust,
    registry: &Registry,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<Caller, Refused> {
    match chain.split_first() {
        Some((leaf, rest)) => authenticate(trust, registry, leaf, rest, now),
        None => Err(Refused::Untrusted(rustls::Error::NoCertificatesPresented)),
    }
}

/// CA verification first, then "is this exactly one registered organisation or peer, as issued
/// by its own CA?".
#[derive(Debug)]
struct OrgVerifier {
    trust: Arc<ClientTrust>,
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
        &self.trust.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let registry = self.registry.current();
        match authenticate(&self.trust, &registry, end_entity, intermediates, now) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(refused) => {
                let fingerprint = super::fingerprint(end_entity);
                match &refused {
                    Refused::Untrusted(_) => {}
                    Refused::Unknown => {
                        tracing::info!(%fingerprint, "client certificate from a trusted CA maps to no organisation or peer registered for that CA; handshake refused")
                    }
                    Refused::Ambiguous(all) => {
                        tracing::warn!(%fingerprint, principals = ?all, "client certificate maps to several organisations or peers; handshake refused")
                    }
                }
                Err(refused.into_tls())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.trust.any() {
            Some(v) => v.verify_tls12_signature(message, cert, dss),
            None => Err(rustls::Error::General("no client CA".into())),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match self.trust.any() {
            Some(v) => v.verify_tls13_signature(message, cert, dss),
            None => Err(rustls::Error::General("no client CA".into())),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .any()
            .map(|v| v.supported_verify_schemes())
            .unwrap_or_default()
    }
}

/// The API listener's TLS configuration for one set of material.
fn build(
    material: &TlsMaterial,
    trust: Arc<ClientTrust>,
    registry: Live<Registry>,
) -> Result<ServerConfig, TlsError> {
    let verifier = Arc::new(OrgVerifier { trust, registry });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOLS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The web listener's TLS configuration: the same certificate and protocol versions as the
/// API, without client authentication (people sign in on the pages).
fn build_web(material: &TlsMaterial) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOLS)?
        .with_no_client_auth()
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The API listener's TLS configuration (for a listener that never reloads).
pub fn server_config(
    material: &TlsMaterial,
    registry: Live<Registry>,
) -> Result<ServerConfig, TlsError> {
    build(
        material,
        Arc::new(ClientTrust::new(&material.client_cas)?),
        registry,
    )
}

/// What the API listener authenticates with: its rustls configuration (for new connections)
/// and the trust behind it (for requests on connections already open). Both are [`Live`]: a
/// reload replaces them together. Clones share them.
#[derive(Clone)]
pub struct ListenerTls {
    pub config: Live<ServerConfig>,
    /// The web listener's: the same certificate, reloaded with it, no client certificates.
    pub web: Live<ServerConfig>,
    pub trust: Live<ClientTrust>,
    pub registry: Live<Registry>,
}

/// A configuration and trust built, not yet in force (see [`ListenerTls::replace`]).
pub struct NextTls {
    config: ServerConfig,
    web: ServerConfig,
    trust: Arc<ClientTrust>,
}

impl ListenerTls {
    pub fn new(material: &TlsMaterial, registry: Live<Registry>) -> Result<Self, TlsError> {
        let next = Self::prepare(material, registry.clone())?;
        Ok(ListenerTls {
            config: Live::new(next.config),
            web: Live::new(next.web),
            trust: Arc::clone(&next.trust).into(),
            registry,
        })
    }

    /// Builds everything a reload will put in force, so that a failure changes nothing.
    pub fn prepare(material: &TlsMaterial, registry: Live<Registry>) -> Result<NextTls, TlsError> {
        let trust = Arc::new(ClientTrust::new(&material.client_cas)?);
        Ok(NextTls {
            config: build(material, trust.clone(), registry)?,
            web: build_web(material)?,
            trust,
        })
    }

    /// Puts a prepared configuration in force: new connections handshake with it, and
    /// connections already open are checked against it on their next request.
    pub fn replace(&self, next: NextTls) {
        self.trust.replace_arc(next.trust);
        self.config.replace(next.config);
        self.web.replace(next.web);
    }
}
