//! Certificate revocation lists from the project's own CA (see `pki`): what `tls.client_crls`
//! reads. Revoking a certificate is writing a new, complete list (with a higher number) and
//! reloading the gateway; the list names certificates by their serial number.
//!
//! Self-contained (rcgen, x509-parser, ring's types only) so that it can stand on its own until
//! `postern pki revoke` is built on it.

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

/// A revocation list (PEM) signed by the CA whose certificate and PKCS#8 key are given (PEM).
pub fn revocation_list(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    params: &ListParams<'_>,
) -> Result<String, CrlError> {
    let key = KeyPair::from_pem(ca_key_pem).map_err(CrlError::Ca)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(CrlError::Ca)?;
    let ca_subject = ca_subject(ca_cert_pem)?;
    let mut revoked_certs = Vec::with_capacity(params.revoked.len());
    for (index, der) in params.revoked.iter().enumerate() {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| CrlError::Certificate {
                index,
                message: e.to_string(),
            })?;
        if cert.issuer().as_raw() != ca_subject.as_slice() {
            return Err(CrlError::NotIssued { index });
        }
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(cert.raw_serial()),
            revocation_time: params.this_update,
            reason_code: Some(RevocationReason::Superseded),
            invalidity_date: None,
        });
    }
    let list = CertificateRevocationListParams {
        this_update: params.this_update,
        next_update: params.this_update + params.valid_for,
        crl_number: SerialNumber::from(params.number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .map_err(CrlError::Sign)?;
    list.pem().map_err(CrlError::Sign)
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
