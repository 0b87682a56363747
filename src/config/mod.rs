//! Configuration: TOML files → raw structs (serde, unknown keys rejected) → validated domain
//! types, once, at start-up. Every error is collected and reported with its file and line
//! (`postern check-config` prints them and exits 64 before any port is bound).
//!
//! A configuration directory holds `postern.toml` (optional: the daemon settings, over built-in
//! defaults) and the registry: `marking.toml`, `purposes.toml`, `organisations.toml`,
//! `agreements.toml`, and optionally `peers.toml` (gateways allowed to deliver here).
//!
//! The running gateway loads the same way again on SIGHUP (see `daemon`); [`check`] is what
//! `postern check-config` runs, which may not be able to see the service's systemd credentials.

pub(crate) mod calendar;
pub mod daemon;
pub(crate) mod delivery;
pub mod registry;
pub(crate) mod source;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use daemon::{Daemon, Limits, RequestSettings, TlsMaterial, WebSettings};
pub use delivery::{DeliverySettings, Relay, SmtpSettings, SmtpTls};
pub use source::{ConfigError, ConfigErrors};

use crate::domain::registry::Registry;
use crate::domain::subject::SubjectKey;
use crate::seal::SpoolKey;
use registry::RegistrySources;
use source::Errors;

/// The built-in daemon defaults (`config/postern.toml`).
pub const DEFAULT_DAEMON: &str = include_str!("../../config/postern.toml");

/// The demo registry (`config/demo/`), embedded so that `postern demo` works from any directory.
pub mod embedded_demo {
    pub const MARKING: &str = include_str!("../../config/demo/marking.toml");
    pub const PURPOSES: &str = include_str!("../../config/demo/purposes.toml");
    pub const ORGANISATIONS: &str = include_str!("../../config/demo/organisations.toml");
    pub const AGREEMENTS: &str = include_str!("../../config/demo/agreements.toml");
    pub const PEERS: &str = include_str!("../../config/demo/peers.toml");
    pub const PEOPLE: &str = include_str!("../../config/demo/people.toml");
}

/// The text of one configuration file and the name to report it by.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

/// In a configured path: the directory systemd puts a unit's `LoadCredential=` files in.
pub const CREDENTIALS_DIR: &str = "${credentials_dir}";
/// Where systemd says that directory is.
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// Expands `${state_dir}`, `${config_dir}` and `${credentials_dir}` in configured paths.
#[derive(Debug, Clone)]
pub struct Paths {
    pub state_dir: PathBuf,
    pub config_dir: Option<PathBuf>,
    /// `None` where this process cannot see systemd credentials: `${credentials_dir}` then stays
    /// in the path, so that whatever reads it can say why.
    pub credentials_dir: Option<PathBuf>,
    /// The key and certificate files the registry names are left unread ([`offline`]).
    pub offline: bool,
}

impl Paths {
    pub fn expand(&self, s: &str) -> PathBuf {
        let mut out = s.replace("${state_dir}", &self.state_dir.display().to_string());
        if let Some(c) = &self.config_dir {
            out = out.replace("${config_dir}", &c.display().to_string());
        }
        if let Some(c) = &self.credentials_dir {
            out = out.replace(CREDENTIALS_DIR, &c.display().to_string());
        }
        PathBuf::from(out)
    }
}

/// A path that names a systemd credential this process cannot see.
pub fn hidden_credential(path: &Path) -> bool {
    path.to_string_lossy().contains(CREDENTIALS_DIR)
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    /// `demo --web-listen`.
    pub web_listen: Option<SocketAddr>,
    /// `demo --ops-listen`.
    pub ops_listen: Option<SocketAddr>,
    /// Where the configuration was loaded from, for `${config_dir}`.
    pub config_dir: Option<PathBuf>,
    /// `postern demo`: development-only settings (the email outbox folder) are allowed.
    pub demo: bool,
}

impl Overrides {
    fn flag_for(&self, path: &str) -> Option<&'static str> {
        match path {
            "state_dir" if self.state_dir.is_some() => Some("--state-dir"),
            "api.listen" if self.listen.is_some() => Some("--listen"),
            "web.listen" if self.web_listen.is_some() => Some("--web-listen"),
            "ops.listen" if self.ops_listen.is_some() => Some("--ops-listen"),
            _ => None,
        }
    }
}

/// Where the registry files come from.
#[derive(Debug, Clone)]
pub enum ConfigDir {
    /// A directory on disk (its `postern.toml` is optional).
    Dir(PathBuf),
    /// The demo registry compiled into the binary, with the built-in daemon defaults.
    EmbeddedDemo,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub dir: ConfigDir,
    pub overrides: Overrides,
    /// The `POSTERN_*` environment (and `CREDENTIALS_DIRECTORY`); `None` reads the process
    /// environment.
    pub env: Option<HashMap<String, String>>,
}

/// Everything the daemon needs, validated and loaded.
pub struct Config {
    pub daemon: Daemon,
    pub registry: Registry,
    pub tls: TlsMaterial,
    pub spool_key: SpoolKey,
    pub subject_key: SubjectKey,
    /// The database's CA and password, with `[store] backend = "postgres"`.
    pub postgres: Option<daemon::PostgresMaterial>,
    /// What is valid but weaker than it looks (logged at start-up and reload).
    pub warnings: Vec<ConfigError>,
}

/// What `postern check-config` found valid. Files it could not see are listed, not guessed at.
pub struct Checked {
    pub daemon: Daemon,
    pub registry: Registry,
    /// `key: path` of each file under `${credentials_dir}` that was not read: systemd shows a
    /// unit's credentials to the service only (and, before systemd 260, not to `ExecReload=`).
    /// The gateway reads them itself when it starts or reloads, and refuses what is wrong.
    pub unchecked: Vec<String>,
    /// What is valid but weaker than it looks, with file and line.
    pub warnings: Vec<ConfigError>,
}

/// Whether files under `${credentials_dir}` that this process cannot see are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The gateway itself: every file must be read.
    Load,
    /// `check-config`: list them as not checked.
    Check,
    /// A command that decides or looks without serving ([`offline`]): no key material is read.
    Offline,
}

fn process_env() -> HashMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("POSTERN_") || k == CREDENTIALS_ENV)
        .collect()
}

/// The credentials directory, if systemd gave this process one it can read.
fn credentials_dir(env: &HashMap<String, String>) -> Option<PathBuf> {
    env.get(CREDENTIALS_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
}

/// The names of `tls.client_cas` and the fingerprints of their certificates (a file that cannot
/// be read contributes its name only; its error is reported where it is loaded).
fn known_cas(cas: &[daemon::CaFile]) -> registry::KnownCas {
    let mut known = registry::KnownCas::default();
    for ca in cas {
        known.names.push(ca.id.clone());
        if let Ok(certs) = crate::pki::read_certs(&ca.path) {
            for c in certs {
                known
                    .fingerprints
                    .push((crate::pki::fingerprint(&c), ca.id.clone()));
            }
        }
    }
    known
}

fn read_file(path: &Path, required: bool, errors: &mut Errors) -> Option<Source> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(Source {
            name: path.display().to_string(),
            text,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => {
            errors.general(
                path.display().to_string(),
                None,
                format!("cannot read: {e}"),
            );
            None
        }
    }
}

/// Reads, validates and loads the whole configuration, reporting every error at once.
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    let parts = load_parts(opts, Mode::Load)?;
    match parts.materials {
        Some(m) => Ok(Config {
            daemon: parts.daemon,
            registry: parts.registry,
            tls: m.tls,
            spool_key: m.spool_key,
            subject_key: m.subject_key,
            postgres: m.postgres,
            warnings: parts.warnings,
        }),
        None => Err(ConfigErrors(vec![ConfigError {
            origin: "configuration".into(),
            line: None,
            column: None,
            key: None,
            message: "could not be loaded".into(),
        }])),
    }
}

/// Validates the whole configuration as [`load`] does, except that files under
/// `${credentials_dir}` this process cannot see are listed in [`Checked::unchecked`].
pub fn check(opts: &LoadOptions) -> Result<Checked, ConfigErrors> {
    let parts = load_parts(opts, Mode::Check)?;
    Ok(Checked {
        daemon: parts.daemon,
        registry: parts.registry,
        unchecked: parts.unchecked,
        warnings: parts.warnings,
    })
}

/// The settings and the registry for a command that decides or looks without serving
/// (`explain`, `log verify`, `log accept-head`): no TLS, spool, subject or endpoint key file is
/// read, and a recipient by email needs no relay, since nothing is sealed or delivered. Every
/// other rule is checked as [`load`] checks it.
pub fn offline(opts: &LoadOptions) -> Result<Checked, ConfigErrors> {
    let parts = load_parts(opts, Mode::Offline)?;
    Ok(Checked {
        daemon: parts.daemon,
        registry: parts.registry,
        unchecked: parts.unchecked,
        warnings: parts.warnings,
    })
}

struct Parts {
    daemon: Daemon,
    registry: Registry,
    /// `None` in [`Mode::Check`] when some files could not be seen, and in [`Mode::Offline`].
    materials: Option<daemon::Materials>,
    unchecked: Vec<String>,
    warnings: Vec<ConfigError>,
}

fn load_parts(opts: &LoadOptions, mode: Mode) -> Result<Parts, ConfigErrors> {
    let mut errors = Errors::default();
    let env = opts.env.clone().unwrap_or_else(process_env);
    let credentials_dir = credentials_dir(&env);
    let mut unchecked = Vec::new();
    let mut overrides = opts.overrides.clone();

    let defaults = Source {
        name: "built-in defaults (config/postern.toml)".into(),
        text: DEFAULT_DAEMON.into(),
    };
    let (file, registry_sources) = match &opts.dir {
        ConfigDir::Dir(dir) => {
            if overrides.config_dir.is_none() {
                overrides.config_dir = Some(dir.clone());
            }
            if !dir.is_dir() {
                errors.general(
                    dir.display().to_string(),
                    None,
                    "is not a configuration directory",
                );
                return Err(ConfigErrors(errors.0));
            }
            let file = read_file(&dir.join("postern.toml"), false, &mut errors);
            let [m, p, o, a] =
                RegistrySources::FILES.map(|f| read_file(&dir.join(f), true, &mut errors));
            (
                file,
                Some(RegistrySources {
                    marking: m,
                    purposes: p,
                    organisations: o,
                    agreements: a,
                    peers: read_file(&dir.join("peers.toml"), false, &mut errors),
                    people: read_file(&dir.join("people.toml"), false, &mut errors),
                }),
            )
        }
        ConfigDir::EmbeddedDemo => {
            let src = |f: &str, text: &str| Source {
                name: format!("config/demo/{f} (embedded)"),
                text: text.to_owned(),
            };
            (
                None,
                Some(RegistrySources {
                    marking: Some(src("marking.toml", embedded_demo::MARKING)),
                    purposes: Some(src("purposes.toml", embedded_demo::PURPOSES)),
                    organisations: Some(src("organisations.toml", embedded_demo::ORGANISATIONS)),
                    agreements: Some(src("agreements.toml", embedded_demo::AGREEMENTS)),
                    peers: Some(src("peers.toml", embedded_demo::PEERS)),
                    people: Some(src("people.toml", embedded_demo::PEOPLE)),
                }),
            )
        }
    };

    let secrets = daemon::Secrets {
        mode,
        credentials_dir: credentials_dir.clone(),
        unchecked: &mut unchecked,
    };
    let loaded = daemon::load(
        &defaults,
        file.as_ref(),
        &env,
        &overrides,
        secrets,
        &mut errors,
    );
    let daemon_and_materials = loaded.daemon;

    // The registry is read even when the daemon settings failed, so that one run reports both.
    let state_dir = daemon_and_materials
        .as_ref()
        .map_or(loaded.state_dir_hint, |(d, _)| d.state_dir.clone());
    let paths = Paths {
        state_dir,
        config_dir: overrides.config_dir.clone(),
        credentials_dir,
        offline: mode == Mode::Offline,
    };
    // The CAs identities may name; unknown if the daemon settings failed (already reported).
    let cas = daemon_and_materials
        .as_ref()
        .map(|(d, _)| known_cas(&d.tls.client_cas));
    let mut warnings = Vec::new();
    let registry = registry_sources.and_then(|s| match registry::load(&s, &paths, cas.as_ref()) {
        Ok(r) => {
            warnings = r.warnings;
            Some(r.registry)
        }
        Err(ConfigErrors(e)) => {
            errors.0.extend(e);
            None
        }
    });

    // Email recipients need somewhere for their messages to go (when something is delivered).
    if let (Some((d, _)), Some(r)) = (&daemon_and_materials, &registry)
        && mode != Mode::Offline
        && d.smtp.relays.is_empty()
        && d.smtp.outbox_dir.is_none()
    {
        for org in r.organisations() {
            if let Some(ep) = &org.endpoint
                && ep.channel.kind() == "email"
            {
                errors.general(
                    "organisations.toml",
                    Some(format!("organisation `{}`", org.id)),
                    "receives by email, but no SMTP relay is configured (smtp.relays in postern.toml)",
                );
            }
        }
    }

    match (daemon_and_materials, registry) {
        (Some((daemon, materials)), Some(registry))
            if errors.0.is_empty() && (materials.is_some() || mode != Mode::Load) =>
        {
            Ok(Parts {
                daemon,
                registry,
                materials,
                unchecked,
                warnings,
            })
        }
        _ => {
            if errors.0.is_empty() {
                errors.general("configuration", None, "could not be loaded");
            }
            Err(ConfigErrors(errors.0))
        }
    }
}
