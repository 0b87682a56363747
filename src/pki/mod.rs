//! The project's own PKI: a certificate authority, server and client certificates (rcgen), a
//! summary of a certificate for `postern pki show`, and revocation lists ([`crl`]). Reading a
//! certificate's fingerprint and names (how the gateway tells who is calling) is [`crate::tls`]'s.
//!
//! `postern demo` and the tests use it to make development certificates on first start; an
//! agency's IT team can use `postern pki` to run a small private CA for its organisations, or
//! bring certificates from its own CA. Private keys are written with mode 0600 into the state
//! directory (never into the repository).

pub mod crl;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::domain::registry::CertFingerprint;
use crate::seal::{SealError, write_secret_file};
pub use crate::tls::{fingerprint, subject_alt_names};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(#[from] SealError),
    #[error("`{0}` holds no PEM certificate")]
    NoCertificate(String),
    #[error("`{0}` is not a valid subject alternative name")]
    BadSan(String),
    #[error("cannot read the certificate: {0}")]
    Parse(String),
    #[error("the system random number generator failed")]
    Random,
}

/// Writes a certificate or revocation list readable by all (0644, whatever the umask: `postern`
/// runs with 0077, and the service's user must read what root issued). Only keys are secret.
pub fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A certificate and its private key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    pub fingerprint: CertFingerprint,
}

/// A certificate authority able to issue server and client certificates.
pub struct Ca {
    cert_pem: String,
    key_pem: Zeroizing<String>,
    issuer: Issuer<'static, KeyPair>,
}

/// How long server and client certificates are valid unless asked otherwise: a year, so that a
/// certificate that leaked unnoticed stops working within one, and renewal stays a yearly habit.
pub const DEFAULT_LEAF_DAYS: i64 = 365;
/// The longest validity `postern pki` issues a leaf certificate for.
pub const MAX_LEAF_DAYS: i64 = 825;

/// A random serial number (RFC 5280: positive, unpredictable). A failure of the system random
/// number generator is an error: a predictable serial weakens what the CA signs.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f; // positive INTEGER
    bytes[0] |= 0x01; // and never a leading zero byte to be trimmed away
    Ok(SerialNumber::from_slice(&bytes))
}

fn san(name: &str) -> Result<SanType, PkiError> {
    let bad = || PkiError::BadSan(name.to_owned());
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if name.contains("://") || name.starts_with("urn:") {
        return Ok(SanType::URI(name.try_into().map_err(|_| bad())?));
    }
    if name.contains('@') {
        return Ok(SanType::Rfc822Name(name.try_into().map_err(|_| bad())?));
    }
    Ok(SanType::DnsName(name.try_into().map_err(|_| bad())?))
}

fn leaf_params(
    common_name: &str,
    sans: &[String],
    days: i64,
    eku: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    p.serial_number = Some(random_serial()?);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn ca_params(name: &str, path_len: u8, days: i64) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Postern");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256), valid for ten years, that issues certificates
    /// directly.
    pub fn generate(name: &str) -> Result<Ca, PkiError> {
        Self::generate_root(name, 0)
    }

    /// A new self-signed CA that may have `path_len` levels of issuing CAs below it (see
    /// [`Ca::issue_intermediate`]): how large organisations' PKIs are built.
    pub fn generate_root(name: &str, path_len: u8) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let p = ca_params(name, path_len, 3650)?;
        let cert = p.self_signed(&key)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(p, key),
        })
    }

    /// An issuing CA below this one, valid for five years, that issues certificates directly.
    pub fn issue_intermediate(&self, name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut p = ca_params(name, 0, 1825)?;
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(p, key),
        })
    }

    /// Loads a CA written by [`Ca::save`] (or any CA certificate and PKCS#8 key in PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
        let cert_pem = std::fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
        let key_pem = Zeroizing::new(std::fs::read_to_string(key_path).map_err(io_err(key_path))?);
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Ca {
            cert_pem,
            key_pem,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.crt` and `ca.key` (0600) into `dir`. Refuses to overwrite the key.
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_secret_file(&dir.join("ca.key"), self.key_pem.as_bytes())?;
        write_public_file(&dir.join("ca.crt"), self.cert_pem.as_bytes())?;
        Ok(())
    }

    fn issue(&self, params: CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            fingerprint: fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// A TLS server certificate for the given DNS names and IP addresses
    /// ([`DEFAULT_LEAF_DAYS`]).
    pub fn issue_server(&self, names: &[String]) -> Result<Issued, PkiError> {
        let cn = names.first().map_or("postern", String::as_str);
        self.issue(leaf_params(
            cn,
            names,
            DEFAULT_LEAF_DAYS,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?)
    }

    /// A TLS client certificate for an organisation's system or user ([`DEFAULT_LEAF_DAYS`]).
    pub fn issue_client(&self, common_name: &str, sans: &[String]) -> Result<Issued, PkiError> {
        self.issue_client_for(common_name, sans, DEFAULT_LEAF_DAYS)
    }

    /// A TLS client certificate valid for `days`.
    pub fn issue_client_for(
        &self,
        common_name: &str,
        sans: &[String],
        days: i64,
    ) -> Result<Issued, PkiError> {
        self.issue(leaf_params(
            common_name,
            sans,
            days,
            ExtendedKeyUsagePurpose::ClientAuth,
        )?)
    }

    /// A client certificate that is also valid for TLS servers: a gateway presents the same
    /// identity when it delivers to a peer as when it is called ([`DEFAULT_LEAF_DAYS`]).
    pub fn issue_gateway(&self, names: &[String]) -> Result<Issued, PkiError> {
        self.issue_gateway_for(names, DEFAULT_LEAF_DAYS)
    }

    /// As [`Ca::issue_gateway`], valid for `days`.
    pub fn issue_gateway_for(&self, names: &[String], days: i64) -> Result<Issued, PkiError> {
        let cn = names.first().map_or("postern", String::as_str);
        let mut p = leaf_params(cn, names, days, ExtendedKeyUsagePurpose::ServerAuth)?;
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        self.issue(p)
    }
}

impl Issued {
    /// Writes `<stem>.crt`, `<stem>.key` (0600) and `<stem>.pem` (certificate and key together,
    /// 0600: what `postern send --identity` and `curl --cert` take) into `dir`.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<PathBuf, PkiError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_public_file(&dir.join(format!("{stem}.crt")), self.cert_pem.as_bytes())?;
        write_secret_file(&dir.join(format!("{stem}.key")), self.key_pem.as_bytes())?;
        let combined = Zeroizing::new(format!("{}{}", self.cert_pem, self.key_pem.as_str()));
        let pem = dir.join(format!("{stem}.pem"));
        write_secret_file(&pem, combined.as_bytes())?;
        Ok(pem)
    }
}

/// A human-readable summary of a certificate, for `postern pki show`.
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// Hex, as `postern pki revoke --serial` takes it.
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sans: Vec<String>,
    pub fingerprint: CertFingerprint,
}

pub fn summarise(der: &[u8]) -> Result<CertSummary, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        sans: subject_alt_names(der)
            .into_iter()
            .chain(crate::tls::ip_alt_names(der).iter().map(IpAddr::to_string))
            .collect(),
        fingerprint: fingerprint(der),
    })
}

/// Reads every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PkiError::Parse(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_written_readable_by_all_and_keys_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        // What umask 0077 (the binary's) would have made of them: 0600. Written again, they
        // are 0644 whatever the umask, so the service's user can read what root issued.
        for f in ["ca.crt", "server.crt"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let ca = Ca::generate("Test CA").unwrap();
        ca.save(dir.path()).unwrap();
        ca.issue_server(&["localhost".into()])
            .unwrap()
            .save(dir.path(), "server")
            .unwrap();
        for (f, m) in [
            ("ca.crt", 0o644),
            ("server.crt", 0o644),
            ("ca.key", 0o600),
            ("server.key", 0o600),
            ("server.pem", 0o600),
        ] {
            assert_eq!(mode(f), m, "{f}");
        }
    }

    #[test]
    fn issued_certificates_carry_their_names_and_fingerprints() {
        let ca = Ca::generate("Test CA").unwrap();
        let client = ca
            .issue_client(
                "Riverside Youth Club",
                &[
                    "riverside-youth.clients.postern.test".into(),
                    "urn:postern:org:riverside-youth".into(),
                ],
            )
            .unwrap();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(fingerprint(&der), client.fingerprint);
        let sans = subject_alt_names(&der);
        assert_eq!(
            sans,
            vec![
                "riverside-youth.clients.postern.test".to_string(),
                "urn:postern:org:riverside-youth".to_string()
            ]
        );
        let summary = summarise(&der).unwrap();
        assert!(summary.subject.contains("Riverside Youth Club"));
        assert!(summary.issuer.contains("Test CA"));

        // `pki show` lists a server's addresses too.
        let server = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into(), "::1".into()])
            .unwrap();
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            summarise(&der).unwrap().sans,
            vec!["localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn server_and_client_certificates_are_valid_for_a_year_at_most_by_default() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let ca = Ca::generate("Test CA").unwrap();
        let days = |issued: Issued| {
            let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let v = cert.validity();
            (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400
        };
        let names = ["gw.example".to_string()];
        for (what, issued) in [
            ("server", ca.issue_server(&names).unwrap()),
            ("gateway", ca.issue_gateway(&names).unwrap()),
            ("client", ca.issue_client("c", &names).unwrap()),
        ] {
            let d = days(issued);
            assert!((365..=366).contains(&d), "{what}: {d} days");
        }
        assert_eq!(days(ca.issue_client_for("c", &names, 30).unwrap()), 30);
    }

    #[test]
    fn a_saved_ca_reloads_and_keeps_issuing_under_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("Reload CA").unwrap();
        ca.save(dir.path()).unwrap();
        assert!(ca.save(dir.path()).is_err(), "never overwrite a CA key");
        let again = Ca::load(&dir.path().join("ca.crt"), &dir.path().join("ca.key")).unwrap();
        let server = again
            .issue_server(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        assert!(summarise(&der).unwrap().issuer.contains("Reload CA"));
        let pem = server.save(dir.path(), "server").unwrap();
        let text = std::fs::read_to_string(pem).unwrap();
        assert!(text.contains("BEGIN CERTIFICATE") && text.contains("PRIVATE KEY"));
    }
}
