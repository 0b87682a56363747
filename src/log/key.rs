//! The checkpoint signing key: an ed25519 key in a PKCS#8 PEM file, held like the spool and
//! subject keys. The store signs the log's head with it (`store::checkpoint`); `postern log
//! verify` checks with its public half.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

use super::verify::{self, PublicKey};
use crate::seal::{SealError, write_secret_file};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` holds no ed25519 private key (a PKCS#8 `BEGIN PRIVATE KEY` block): {why}")]
    Format { path: String, why: String },
    #[error(
        "`{path}` already exists; refusing to overwrite a key (the checkpoints signed with it would no longer verify)"
    )]
    Exists { path: String },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random number generator failed")]
    Random,
}

/// The key that signs checkpoints. Its public half is what a data protection officer checks
/// them against.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey({})", self.public.fingerprint())
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// `OneAsymmetricKey` version 0, algorithm id-Ed25519, then the 32-byte private key as an OCTET
/// STRING inside the privateKey OCTET STRING (RFC 8410, section 7).
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a PKCS#8 document is not an ed25519 key.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs8Error {
    #[error("{0}")]
    Rejected(ring::error::KeyRejected),
    #[error("the public key is not 32 bytes")]
    PublicKeyLength,
}

impl CheckpointKey {
    /// A PKCS#8 document (v1, as `openssl genpkey -algorithm ed25519` writes, or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, Pkcs8Error> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(Pkcs8Error::Rejected)?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Pkcs8Error::PublicKeyLength)?;
        Ok(CheckpointKey {
            pair,
            public: PublicKey::from_bytes(public),
        })
    }

    /// Reads a PEM file (`BEGIN PRIVATE KEY`; lines outside the block are ignored).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let format = |why: String| KeyError::Format {
            path: path.display().to_string(),
            why,
        };
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let (Some(begin), Some(end)) = (text.find(PEM_BEGIN), text.find(PEM_END)) else {
            return Err(format("no PEM block".into()));
        };
        let b64: Zeroizing<String> = Zeroizing::new(
            text.get(begin + PEM_BEGIN.len()..end)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        );
        let der = Zeroizing::new(
            STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| format("the block is not base64".into()))?,
        );
        Self::from_pkcs8(&der).map_err(|e| format(e.to_string()))
    }

    /// Generates a key and writes it, readable by its owner only. Refuses to overwrite: a new
    /// key would no longer verify the checkpoints signed with the old one.
    pub fn generate_file(path: &Path) -> Result<PublicKey, KeyError> {
        // PKCS#8 v1 as RFC 8410 gives it (the private key's 32-byte seed, no public key), which
        // OpenSSL and other tools read; ring's own v2 encoding is not read by OpenSSL 3.0.
        let mut doc = Zeroizing::new(PKCS8_V1_PREFIX.to_vec());
        let mut seed = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed[..])
            .map_err(|_| KeyError::Random)?;
        doc.extend_from_slice(&seed[..]);
        let key = Self::from_pkcs8(&doc).map_err(|why| KeyError::Format {
            path: path.display().to_string(),
            why: why.to_string(),
        })?;
        let b64 = Zeroizing::new(STANDARD.encode(&doc[..]));
        let mut text = Zeroizing::new(format!(
            "# postern transfer log checkpoint key (ed25519)\n# public key: {}\n# fingerprint: {}\n{PEM_BEGIN}\n",
            key.public,
            key.public.fingerprint()
        ));
        for line in b64.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(line).unwrap_or_default());
            text.push('\n');
        }
        text.push_str(PEM_END);
        text.push('\n');
        write_secret_file(path, text.as_bytes()).map_err(|e| {
            let path = path.display().to_string();
            match e {
                SealError::Exists { .. } => KeyError::Exists { path },
                SealError::Io(source) => KeyError::Write { path, source },
                other => KeyError::Write {
                    path,
                    source: std::io::Error::other(other.to_string()),
                },
            }
        })?;
        Ok(key.public)
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) fn sign(&self, seq: i64, hash: &[u8; 32], at: &str) -> Vec<u8> {
        self.pair
            .sign(&verify::signed_message(seq, hash, at))
            .as_ref()
            .to_vec()
    }
}

/// Creates the key file unless it exists (development deployments); the public key if created.
pub fn ensure_key_file(path: &Path) -> Result<Option<PublicKey>, KeyError> {
    if path.exists() {
        CheckpointKey::from_file(path)?;
        return Ok(None);
    }
    CheckpointKey::generate_file(path).map(Some)
}
