//! `[store]` in `postern.toml`: where the gateway keeps everything. SQLite under the state
//! directory (the default: one node, nothing to install) or one PostgreSQL shared by several
//! nodes. The URL is checked here (TLS always, no password in it); the CA and the password file
//! are read with the other key material, so `check-config` finds a missing one.

use std::path::PathBuf;

use serde::Deserialize;

use super::Paths;
use super::daemon::Locator;
use super::source::Errors;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    backend: Option<String>,
    url: Option<String>,
    ca: Option<String>,
    password_file: Option<String>,
    pool_size: Option<u64>,
    node: Option<String>,
}

/// The validated `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// `postern.db` and the spool under the state directory.
    Sqlite,
    /// One PostgreSQL for every node.
    Postgres(Box<PostgresSettings>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// Host, port, user and database; never a password (its `Debug` shows none either).
    pub url: tokio_postgres::Config,
    /// The CA file the database server's certificate must chain to.
    pub ca: PathBuf,
    /// The file holding the password, if the database wants one.
    pub password_file: Option<PathBuf>,
    pub pool_size: usize,
    /// This node's name in the records it writes and the leases it holds.
    pub node: String,
}

pub(super) fn store(
    raw: RawStore,
    paths: &Paths,
    loc: &Locator<'_>,
    errors: &mut Errors,
) -> Option<StoreSettings> {
    let before = errors.0.len();
    let backend = raw.backend.as_deref().map(str::trim).unwrap_or("sqlite");
    let text = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    match backend {
        "sqlite" => return Some(StoreSettings::Sqlite),
        "postgres" => {}
        other => {
            errors.push(loc.at(
                "store.backend",
                format!("`{other}` is not \"sqlite\" or \"postgres\""),
            ));
            return None;
        }
    }
    let url = match text(raw.url) {
        None => {
            errors.push(loc.at(
                "store.url",
                "is required with backend = \"postgres\", e.g. \"postgres://postern@db.example.org:5432/postern\"",
            ));
            None
        }
        Some(u) => url(&u, loc, errors),
    };
    let ca = match text(raw.ca) {
        Some(c) => Some(paths.expand(&c)),
        None => {
            errors.push(loc.at(
                "store.ca",
                "is required with backend = \"postgres\": the CA (PEM) that issued the database server's certificate, which is always verified",
            ));
            None
        }
    };
    let pool_size = match raw.pool_size.unwrap_or(16) {
        n @ 1..=1000 => Some(usize::try_from(n).unwrap_or(16)),
        n => {
            errors.push(loc.at(
                "store.pool_size",
                format!("{n} is out of range (1 to 1000)"),
            ));
            None
        }
    };
    let node = match text(raw.node) {
        Some(n)
            if n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Some(n)
        }
        Some(n) => {
            errors.push(loc.at(
                "store.node",
                format!("`{n}` is not a node name (letters, digits, `-`, `_` and `.`, at most 64)"),
            ));
            None
        }
        None => Some(host_name()),
    };
    if errors.0.len() > before {
        return None;
    }
    Some(StoreSettings::Postgres(Box::new(PostgresSettings {
        url: url?,
        ca: ca?,
        password_file: text(raw.password_file).map(|p| paths.expand(&p)),
        pool_size: pool_size?,
        node: node?,
    })))
}

/// This machine's name: a node's default name.
fn host_name() -> String {
    let n = rustix::system::uname();
    let name = n.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "postern".to_owned()
    } else {
        name
    }
}

/// A `postgres://` URL (or `key=value` string) that names hosts over TCP and carries no
/// password, and that does not ask for less than TLS. Several hosts are allowed: a node
/// connects to the one that accepts writes (the primary after a failover).
fn url(text: &str, loc: &Locator<'_>, errors: &mut Errors) -> Option<tokio_postgres::Config> {
    match parse_url(text) {
        Ok(c) => Some(c),
        Err(m) => {
            errors.push(loc.at("store.url", m.to_string()));
            None
        }
    }
}

/// What is wrong with a database URL, said without repeating it (it might hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("is not a PostgreSQL URL such as \"postgres://postern@db.example.org:5432/postern\"")]
    NotAUrl,
    #[error(
        "holds a password: remove it from the URL and put it in the file `store.password_file` names (a systemd credential)"
    )]
    Password,
    #[error("names no user, e.g. \"postgres://postern@db.example.org/postern\"")]
    NoUser,
    #[error("names no host")]
    NoHost,
    #[error("names a Unix socket: the database is reached over TCP with TLS, by host name")]
    UnixSocket,
    #[error(
        "says sslmode=disable: the connection to the database is always TLS, verified against `store.ca`"
    )]
    NoTls,
}

/// What [`url`] checks, for a URL given on the command line too.
pub fn parse_url(text: &str) -> Result<tokio_postgres::Config, UrlProblem> {
    let config: tokio_postgres::Config = text.trim().parse().map_err(|_| UrlProblem::NotAUrl)?;
    if config.get_password().is_some() {
        return Err(UrlProblem::Password);
    }
    if config.get_user().is_none() {
        return Err(UrlProblem::NoUser);
    }
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return Err(UrlProblem::NoHost);
    }
    #[cfg(unix)]
    if hosts
        .iter()
        .any(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
    {
        return Err(UrlProblem::UnixSocket);
    }
    if matches!(
        config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Disable
    ) {
        return Err(UrlProblem::NoTls);
    }
    Ok(config)
}

/// Why the database's CA or password could not be read outside the service.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error(
        "{key}: `{path}` names a systemd credential, which only the service sees: set CREDENTIALS_DIRECTORY to the folder that holds it (e.g. /etc/credstore) for this command"
    )]
    Hidden { key: &'static str, path: PathBuf },
    #[error("store.ca: cannot use it as the database's CA: {0}")]
    Ca(#[source] crate::tls::PemError),
    #[error("store.password_file: cannot read `{path}`: {source}")]
    Password {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads what `[store]` names for PostgreSQL (the CA, the password file) outside the daemon: for
/// `postern store` commands, run by an operator beside the service.
pub fn read_material(
    pg: &PostgresSettings,
) -> Result<super::daemon::PostgresMaterial, MaterialError> {
    if super::hidden_credential(&pg.ca) {
        return Err(MaterialError::Hidden {
            key: "store.ca",
            path: pg.ca.clone(),
        });
    }
    let roots = crate::tls::read_roots(&pg.ca).map_err(MaterialError::Ca)?;
    let password = match &pg.password_file {
        None => None,
        Some(f) if super::hidden_credential(f) => {
            return Err(MaterialError::Hidden {
                key: "store.password_file",
                path: f.clone(),
            });
        }
        Some(f) => {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                MaterialError::Password {
                    path: f.clone(),
                    source: e,
                }
            })?);
            Some(zeroize::Zeroizing::new(
                text.trim_end_matches(['\r', '\n']).to_owned(),
            ))
        }
    };
    Ok(super::daemon::PostgresMaterial { roots, password })
}
