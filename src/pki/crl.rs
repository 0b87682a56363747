//! Certificate revocation lists from the project's own CA (see `pki`): what `tls.client_crls`
//! reads and `postern pki revoke` writes. Revoking a certificate is writing a new, complete list
//! (with a higher number, keeping every certificate the previous list revoked) and reloading the
//! gateway; the list names certificates by their serial number.

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("the CA certificate or key cannot be used: {0}")]
    Ca(#[source] rcgen::Error),
    #[error("the CA certificate cannot be read: {0}")]
    CaCertificate(String),
    #[error("the revocation list cannot be signed: {0}")]
    Sign(#[source] rcgen::Error),
    #[error("certificate {index} to revoke cannot be read: {message}")]
    Certificate { index: usize, message: String },
    #[error("certificate {index} to revoke was not issued by this CA")]
    NotIssued { index: usize },
    #[error("the existing revocation list cannot be read: {0}")]
    Existing(String),
    #[error("the existing revocation list was not signed by this CA")]
    ExistingNotOurs,
}

/// One certificate on a list: its serial number (the bytes of the DER INTEGER) and when it was
/// revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub serial: Vec<u8>,
    pub at: OffsetDateTime,
}

/// One complete revocation list.
pub struct ListParams<'a> {
    /// Certificates to revoke (DER), all issued by the CA.
    pub revoked: &'a [CertificateDer<'a>],
    /// Higher than the number of any earlier list from this CA (RFC 5280's `cRLNumber`).
    pub number: u64,
    pub this_update: OffsetDateTime,
    /// How long until the next list is due (its `nextUpdate`).
    pub valid_for: Duration,
}

/// What an existing list says: its number and what it revokes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    pub number: u64,
    pub revoked: Vec<Revoked>,
}

/// A revocation list (PEM) signed by the CA whose certificate and PKCS#8 key are given (PEM).
pub fn revocation_list(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    params: &ListParams<'_>,
) -> Result<String, CrlError> {
    let revoked = serials(ca_cert_pem, params.revoked, params.this_update)?;
    sign_list(
        ca_cert_pem,
        ca_key_pem,
        &revoked,
        params.number,
        params.this_update,
        params.valid_for,
    )
}

/// The serial numbers of certificates issued by the CA, revoked at `at`.
pub fn serials(
    ca_cert_pem: &str,
    certs: &[CertificateDer<'_>],
    at: OffsetDateTime,
) -> Result<Vec<Revoked>, CrlError> {
    let ca_subject = ca_subject(ca_cert_pem)?;
    let mut out = Vec::with_capacity(certs.len());
    for (index, der) in certs.iter().enumerate() {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| CrlError::Certificate {
                index,
                message: e.to_string(),
            })?;
        if cert.issuer().as_raw() != ca_subject.as_slice() {
            return Err(CrlError::NotIssued { index });
        }
        out.push(Revoked {
            serial: cert.raw_serial().to_vec(),
            at,
        });
    }
    Ok(out)
}

/// Signs a complete list of `revoked` serials.
pub fn sign_list(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    revoked: &[Revoked],
    number: u64,
    this_update: OffsetDateTime,
    valid_for: Duration,
) -> Result<String, CrlError> {
    let key = KeyPair::from_pem(ca_key_pem).map_err(CrlError::Ca)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(CrlError::Ca)?;
    let revoked_certs = revoked
        .iter()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.serial),
            revocation_time: r.at,
            reason_code: Some(RevocationReason::Superseded),
            invalidity_date: None,
        })
        .collect();
    let list = CertificateRevocationListParams {
        this_update,
        next_update: this_update + valid_for,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .map_err(CrlError::Sign)?;
    list.pem().map_err(CrlError::Sign)
}

/// Reads an existing list (PEM) of this CA: its number and the certificates it revokes, so that
/// the next list keeps them.
pub fn read_existing(ca_cert_pem: &str, crl_pem: &[u8]) -> Result<Existing, CrlError> {
    use rustls_pki_types::CertificateRevocationListDer;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let der = CertificateRevocationListDer::from_pem_slice(crl_pem)
        .map_err(|e| CrlError::Existing(e.to_string()))?;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
        .map_err(|e| CrlError::Existing(e.to_string()))?;
    let ca_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
        .map_err(|e| CrlError::CaCertificate(e.to_string()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| CrlError::CaCertificate(e.to_string()))?;
    if crl.issuer().as_raw() != ca.subject().as_raw()
        || crl.verify_signature(ca.public_key()).is_err()
    {
        return Err(CrlError::ExistingNotOurs);
    }
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| Revoked {
            serial: r.raw_serial().to_vec(),
            at: r.revocation_date.to_datetime(),
        })
        .collect();
    Ok(Existing { number, revoked })
}

/// The CA certificate's subject, as encoded (what a certificate's issuer field must equal).
fn ca_subject(ca_cert_pem: &str) -> Result<Vec<u8>, CrlError> {
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
        .map_err(|e| CrlError::CaCertificate(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CrlError::CaCertificate(e.to_string()))?;
    Ok(cert.subject().as_raw().to_vec())
}
