//! Reading certificates and identities: fingerprints and subject alternative names (how a
//! client certificate is matched to the registry), PEM identities and roots, and the client
//! configuration every outgoing connection uses.

use std::path::Path;
use x509_parser::prelude::GeneralName;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::{PROTOCOLS, provider};
use crate::domain::registry::CertFingerprint;

/// A PEM file that could not be read or holds nothing usable.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{path}`: {reason}")]
pub struct PemError {
    pub path: String,
    pub reason: String,
}

/// SHA-256 of a certificate's DER encoding.
pub fn fingerprint(der: &[u8]) -> CertFingerprint {
    CertFingerprint(Sha256::digest(der).into())
}

/// The DNS names, URIs and email addresses among a certificate's subject alternative names.
pub fn subject_alt_names(der: &[u8]) -> Vec<String> {
    alt_names(der, |n| match n {
        GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
            Some((*s).to_owned())
        }
        _ => None,
    })
}

/// The IP addresses among a certificate's subject alternative names (a server reached by
/// address has them; identities never match on them, so only `pki show` reads them).
pub fn ip_alt_names(der: &[u8]) -> Vec<std::net::IpAddr> {
    alt_names(der, |n| match n {
        GeneralName::IPAddress(b) => match b.len() {
            4 => <[u8; 4]>::try_from(*b).ok().map(Into::into),
            16 => <[u8; 16]>::try_from(*b).ok().map(Into::into),
            _ => None,
        },
        _ => None,
    })
}

/// The subject alternative names `pick` keeps; none for a certificate that does not parse.
fn alt_names<T>(der: &[u8], pick: impl Fn(&GeneralName<'_>) -> Option<T>) -> Vec<T> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value.general_names.iter().filter_map(pick).collect()
}

/// A client certificate chain and its private key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn pem_err(path: &Path, reason: impl ToString) -> PemError {
    PemError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Identity {
    /// Reads a PEM file holding the certificate (chain) and the private key together, as
    /// `postern pki` writes them (`<org>.pem`) and as `curl --cert` accepts.
    pub fn from_pem_file(path: &Path) -> Result<Self, PemError> {
        Self::from_files(path, path)
    }

    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, PemError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_err(cert, e))?;
        if chain.is_empty() {
            return Err(pem_err(cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
        Ok(Identity { chain, key })
    }
}

/// Reads trusted CA certificates from a PEM file.
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// A TLS 1.2/1.3 client configuration trusting `roots`, presenting `identity` if given.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&Identity>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOLS)?
        .with_root_certificates(store);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
