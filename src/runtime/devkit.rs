//! Development material for `postern demo` (and `postern pki dev`): a CA, the gateway's server
//! certificate, one client certificate per organisation, the spool and subject keys, and an age
//! key per organisation, all generated on first start by the project's own code into the state
//! directory. Existing files are kept: running the demo again reuses them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::daemon::read_subject_key;
use crate::pki::{Ca, PkiError};
use crate::seal::{SealError, generate_identity_file, write_secret_file};

#[derive(Debug, thiserror::Error)]
pub enum DevkitError {
    #[error("{0}")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Seal(#[from] SealError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("organisations file: {0}")]
    Organisations(#[from] toml::de::Error),
    #[error("{0}")]
    SubjectKey(#[from] crate::config::daemon::SubjectKeyError),
    #[error("{0}")]
    CheckpointKey(#[from] crate::store::checkpoint::KeyError),
}

#[derive(Deserialize)]
struct LightFile {
    #[serde(default)]
    organisation: Vec<LightOrg>,
}

#[derive(Deserialize)]
struct LightOrg {
    id: String,
    name: String,
    #[serde(default)]
    identities: Vec<LightIdentity>,
}

#[derive(Deserialize)]
struct LightIdentity {
    san: Option<String>,
}

/// An organisation as far as development certificates are concerned.
#[derive(Debug, Clone)]
pub struct DevOrg {
    pub id: String,
    pub name: String,
    pub san: String,
}

/// Reads just the ids, names and SAN identities from an organisations file (the full load needs
/// the keys this module is about to generate).
pub fn dev_orgs(organisations_toml: &str) -> Result<Vec<DevOrg>, DevkitError> {
    let f: LightFile = toml::from_str(organisations_toml)?;
    Ok(f.organisation
        .into_iter()
        .map(|o| {
            let san = o
                .identities
                .iter()
                .find_map(|i| i.san.clone())
                .unwrap_or_else(|| format!("{}.clients.postern.test", o.id));
            DevOrg {
                id: o.id,
                name: o.name,
                san,
            }
        })
        .collect())
}

/// The name the demo gateway's certificate carries as the peer `northshire-gateway` (it delivers
/// to itself); `config/demo/peers.toml` registers it.
pub const DEMO_PEER_NAME: &str = "northshire-gateway.peers.postern.test";

/// Paths of the generated material.
pub struct DevPaths {
    pub pki: PathBuf,
    pub keys: PathBuf,
}

impl DevPaths {
    pub fn new(state_dir: &Path) -> Self {
        DevPaths {
            pki: state_dir.join("pki"),
            keys: state_dir.join("keys"),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.pki.join("ca.crt")
    }

    pub fn client_identity(&self, org: &str) -> PathBuf {
        self.pki.join("clients").join(format!("{org}.pem"))
    }

    pub fn org_identity(&self, org: &str) -> PathBuf {
        self.keys.join("orgs").join(format!("{org}.age"))
    }
}

/// What was created on this run (empty when everything already existed).
#[derive(Debug, Default)]
pub struct Created(pub Vec<String>);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevkitError + '_ {
    move |source| DevkitError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Ensures every file the demo configuration refers to exists.
pub fn ensure(state_dir: &Path, orgs: &[DevOrg]) -> Result<Created, DevkitError> {
    let p = DevPaths::new(state_dir);
    let mut created = Created::default();
    std::fs::create_dir_all(&p.pki).map_err(io(&p.pki))?;

    let ca_key = p.pki.join("ca.key");
    let ca = if ca_key.exists() {
        Ca::load(&p.ca(), &ca_key)?
    } else {
        let ca = Ca::generate("Postern development CA")?;
        ca.save(&p.pki)?;
        created
            .0
            .push(format!("development CA {}", p.ca().display()));
        ca
    };
    // A server certificate from before the demo's peer had a name of its own is issued again.
    let server_crt = p.pki.join("server.crt");
    let named = crate::pki::read_certs(&server_crt).is_ok_and(|certs| {
        certs.first().is_some_and(|c| {
            crate::pki::subject_alt_names(c)
                .iter()
                .any(|n| n == DEMO_PEER_NAME)
        })
    });
    if !p.pki.join("server.key").exists() || !named {
        let _ = std::fs::remove_file(p.pki.join("server.key"));
        let _ = std::fs::remove_file(p.pki.join("server.pem"));
        // Client and server use: the gateway presents it when it delivers to a peer, too, and
        // the demo's peers.toml knows it by its peer name (not by "localhost", which many
        // CAs issue).
        let server = ca.issue_gateway(&[
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            DEMO_PEER_NAME.into(),
        ])?;
        server.save(&p.pki, "server")?;
        created.0.push(format!(
            "server certificate {}",
            p.pki.join("server.crt").display()
        ));
    }
    let clients = p.pki.join("clients");
    for org in orgs {
        if !clients.join(format!("{}.key", org.id)).exists() {
            let issued = ca.issue_client(&org.name, std::slice::from_ref(&org.san))?;
            issued.save(&clients, &org.id)?;
            created
                .0
                .push(format!("client certificate for {} ({})", org.id, org.san));
        }
        let identity = p.org_identity(&org.id);
        if !identity.exists() {
            let recipient = generate_identity_file(&identity)?;
            let public = p.keys.join("orgs").join(format!("{}.pub", org.id));
            std::fs::write(
                &public,
                format!("# age recipient of {}\n{recipient}\n", org.name),
            )
            .map_err(io(&public))?;
            created.0.push(format!("age key for {}", org.id));
        }
    }
    let spool = p.keys.join("spool.age");
    if !spool.exists() {
        generate_identity_file(&spool)?;
        created.0.push(format!("spool key {}", spool.display()));
    }
    let subject = p.keys.join("subject.key");
    if !subject.exists() {
        write_subject_key(&subject)?;
        created
            .0
            .push(format!("subject hashing key {}", subject.display()));
    } else {
        read_subject_key(&subject)?;
    }
    let checkpoint = p.keys.join("checkpoint.key");
    if crate::store::checkpoint::ensure_key_file(&checkpoint)?.is_some() {
        created
            .0
            .push(format!("checkpoint signing key {}", checkpoint.display()));
    }
    Ok(created)
}

/// Writes 32 random bytes as hex, mode 0600.
pub fn write_subject_key(path: &Path) -> Result<(), DevkitError> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key[..]).map_err(
        |_| DevkitError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other("the system random number generator failed"),
        },
    )?;
    let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(&key[..])));
    write_secret_file(path, text.as_bytes())?;
    Ok(())
}
