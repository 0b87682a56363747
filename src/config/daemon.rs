//! The daemon's own settings (`postern.toml`): listener, TLS material, limits, keys, state
//! directory. Layered with the `config` crate: built-in defaults, then the file, then
//! `POSTERN_*` environment variables, then command-line overrides. Every value that turns out
//! to be wrong is reported where it came from: a file and line, an environment variable, or a
//! command-line flag.
//!
//! Certificate revocation lists (`tls.client_crls`) are checked here, once: each must parse and
//! be signed by one of `tls.client_cas`, so a CRL that could never match fails the configuration
//! rather than silently revoking nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::Deserialize;
use toml::de::DeValue;

use super::delivery::{DeliverySettings, SmtpSettings};
use super::source::{ConfigError, Doc, Errors, Layer};
use super::{Mode, Overrides, Paths, Source};
use crate::domain::calendar::Calendar;
use crate::domain::ids::CaId;
use crate::domain::subject::SubjectKey;
use crate::log::key::CheckpointKey;
use crate::seal::SpoolKey;

/// Keys whose values are lists of tables, which an environment variable cannot carry.
const FILE_ONLY: &[&str] = &["smtp.relays"];

/// Environment variables with the `POSTERN_` prefix that are not configuration keys. (Variables
/// without the prefix, such as systemd's `CREDENTIALS_DIRECTORY`, are never taken for keys.)
pub const NON_CONFIG_ENV: &[&str] = &[
    "POSTERN_LOG",
    "POSTERN_LOG_FORMAT",
    "POSTERN_CONFIG_DIR",
    "POSTERN_SERVER",
    "POSTERN_CA",
    "POSTERN_IDENTITY",
    // the tests' switch that forbids skipping the browser tests (`.ci/run` sets it)
    "POSTERN_REQUIRE_BROWSER",
    // the PostgreSQL tests' database and the switch that forbids skipping them (`.ci/postgres`
    // starts one and `.ci/run` sets them)
    "POSTERN_REQUIRE_POSTGRES",
    "POSTERN_TEST_POSTGRES_URL",
    "POSTERN_TEST_POSTGRES_CA",
    "POSTERN_TEST_POSTGRES_PASSWORD_FILE",
    // set by the binary when it runs itself again with one malloc arena (`main.rs`)
    "POSTERN_MALLOC_ARENAS_SET",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<String>,
    api: Option<RawApi>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
    spool: Option<RawSpool>,
    subjects: Option<RawSubjects>,
    delivery: Option<super::delivery::RawDelivery>,
    smtp: Option<super::delivery::RawSmtp>,
    log: Option<RawLog>,
    ops: Option<RawOps>,
    web: Option<RawWeb>,
    requests: Option<RawRequests>,
    store: Option<super::store::RawStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequests {
    calendar: Option<String>,
    answer_within_working_days: Option<u64>,
    urgent_answer_within_hours: Option<u64>,
    clarification: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: Option<String>,
    public_url: Option<String>,
    session_idle_secs: Option<u64>,
    session_max_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOps {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Option<String>,
    private_key: Option<String>,
    client_cas: Option<Vec<RawCa>>,
    client_crls: Option<Vec<String>>,
    client_certificate: Option<String>,
    client_private_key: Option<String>,
}

/// One trusted client CA: `{ name = "northshire", file = "..." }`, or a bare path, named after
/// its file (`/etc/postern/pki/northshire.crt` is `northshire`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCa {
    Path(String),
    Named(RawNamedCa),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamedCa {
    name: String,
    file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_payload_bytes: Option<u64>,
    max_envelope_bytes: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_source: Option<u64>,
    max_handshakes_per_source: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    min_free_bytes: Option<u64>,
    inbound_max_retain_days: Option<u64>,
    upload_memory_bytes: Option<u64>,
    upload_memory_wait_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    identity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubjects {
    key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    checkpoint_key: Option<String>,
    checkpoint_file: Option<String>,
    checkpoint_interval_secs: Option<u64>,
    retain_days: Option<u64>,
}

/// `[log]`: the transfer log's signed checkpoints and retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The ed25519 key (PKCS#8 PEM) that signs checkpoints.
    pub checkpoint_key: PathBuf,
    /// Where every checkpoint is also appended, outside the database; `None`: nowhere.
    pub checkpoint_file: Option<PathBuf>,
    /// How often the chain's head is signed (when it has moved).
    pub checkpoint_interval: Duration,
    /// Records older than this many days are purged; 0: never.
    pub retain_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_payload_bytes: u64,
    pub max_envelope_bytes: usize,
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold at once.
    pub max_connections_per_source: usize,
    /// Unfinished TLS handshakes one client address may hold at once.
    pub max_handshakes_per_source: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Free space the state directory's filesystem keeps in reserve: below it, uploads are
    /// refused (507) before they are read, and the gateway reports itself not ready.
    pub min_free_bytes: u64,
    /// How far ahead a peer's delivery may say it is to be kept (`retain_until`).
    pub inbound_max_retain_days: u32,
    /// What uploads in flight may hold in memory together (see `ingest::UploadMemory`).
    pub upload_memory_bytes: u64,
    /// How long a new upload waits for room under that cap before it is refused (503 busy).
    pub upload_memory_wait: Duration,
}

/// A trusted client CA as configured: the name identities refer to, and its PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub id: CaId,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub client_cas: Vec<CaFile>,
    /// Revocation lists of the client CAs (PEM or DER), honoured on every handshake.
    pub client_crls: Vec<PathBuf>,
    /// What the gateway presents when it delivers to a peer: (certificate, key).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Validated daemon settings (paths expanded, not yet read).
#[derive(Debug, Clone)]
pub struct Daemon {
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    /// The health and metrics listener (plain HTTP); `None` when `ops.listen` is empty.
    pub ops_listen: Option<SocketAddr>,
    pub tls: TlsFiles,
    pub limits: Limits,
    pub spool_identity: PathBuf,
    pub subject_key: PathBuf,
    pub delivery: DeliverySettings,
    pub smtp: SmtpSettings,
    pub log: LogSettings,
    pub web: WebSettings,
    pub requests: RequestSettings,
    pub store: super::store::StoreSettings,
}

/// `[requests]`: requests for information between organisations, and their clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSettings {
    /// The bank holidays working days skip (the built-in England and Wales list, or the file
    /// `requests.calendar` names).
    pub calendar: Calendar,
    /// A routine request is due this many working days after it is received.
    pub working_days: u32,
    /// An urgent request is due this many hours after it is received.
    pub urgent_hours: u32,
    /// What asking for clarification does to the clock.
    pub clarification: crate::domain::info_request::ClarificationClock,
}

impl RequestSettings {
    /// What a configuration without `[requests]` gets: the built-in England and Wales
    /// calendar, fifteen working days, urgent requests within 24 hours. `None` only if the
    /// built-in calendar did not read (a test proves it does).
    pub fn builtin() -> Option<Self> {
        let mut errors = Errors::default();
        let calendar = super::calendar::parse(
            "the built-in calendar",
            super::calendar::ENGLAND_AND_WALES,
            &mut errors,
        )?;
        Some(RequestSettings {
            calendar,
            working_days: 15,
            urgent_hours: 24,
            clarification: crate::domain::info_request::ClarificationClock::Restarts,
        })
    }
}

/// `[web]`: the people's pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// `None` when `web.listen` is empty: no pages.
    pub listen: Option<SocketAddr>,
    /// The pages' address as people reach them, for links in emails; `None`: `https://` and
    /// the listen address.
    pub public_url: Option<String>,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however busy.
    pub session_max: Duration,
}

pub use crate::tls::{Crl, TlsMaterial, TrustedCa};

/// How files holding secrets are read: in [`Mode::Check`], a file under a `${credentials_dir}`
/// this process cannot see is listed in `unchecked` instead of being an error.
pub(super) struct Secrets<'a> {
    pub mode: Mode,
    pub credentials_dir: Option<PathBuf>,
    pub unchecked: &'a mut Vec<String>,
}

impl Secrets<'_> {
    /// Whether `path` (set at `key`) can be read here; if not, says so in the way the mode wants.
    fn visible(&mut self, path: &Path, key: &str, loc: &Locator<'_>, errors: &mut Errors) -> bool {
        if !super::hidden_credential(path) {
            return true;
        }
        match self.mode {
            Mode::Check => self
                .unchecked
                .push(format!("{key}: `{}`", path.display())),
            Mode::Load => errors.push(loc.at(
                key,
                format!(
                    "`{}` names a systemd credential, but {} is not set or is not a readable directory (systemd sets it for a unit with LoadCredential=)",
                    path.display(),
                    super::CREDENTIALS_ENV
                ),
            )),
            // Nothing is read: whatever asked does without it.
            Mode::Offline => {}
        }
        false
    }
}

/// Says where a key's value came from, for error messages.
pub(super) struct Locator<'a> {
    defaults: Option<Doc<'a>>,
    file: Option<Doc<'a>>,
    env: &'a HashMap<String, String>,
    overrides: &'a Overrides,
}

pub fn env_var_for(path: &str) -> String {
    format!("POSTERN_{}", path.to_uppercase().replace('.', "__"))
}

impl Locator<'_> {
    pub(super) fn at(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        if let Some(flag) = self.overrides.flag_for(path) {
            return ConfigError {
                origin: format!("command line ({flag})"),
                line: None,
                column: None,
                key: Some(path.to_owned()),
                message,
            };
        }
        let var = env_var_for(path);
        if self.env.contains_key(&var) {
            return ConfigError {
                origin: format!("environment variable {var}"),
                line: None,
                column: None,
                key: Some(path.to_owned()),
                message,
            };
        }
        for doc in [&self.file, &self.defaults].into_iter().flatten() {
            if has_key(doc, path) {
                return doc.error_key(path, message);
            }
        }
        ConfigError {
            origin: "configuration".into(),
            line: None,
            column: None,
            key: Some(path.to_owned()),
            message,
        }
    }
}

fn has_key(doc: &Doc<'_>, path: &str) -> bool {
    let mut table = doc.root.get_ref();
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let Some(v) = table.get(p) else { return false };
        if parts.peek().is_none() {
            return true;
        }
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return false,
        }
    }
    false
}

/// Every leaf key of the defaults, e.g. `limits.max_payload_bytes`.
fn known_keys(doc: &Doc<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in doc.root.get_ref().iter() {
        let k: &str = k.get_ref();
        match v.get_ref() {
            DeValue::Table(t) => {
                out.extend(t.iter().map(|(k2, _)| format!("{k}.{}", k2.get_ref())))
            }
            _ => out.push(k.to_owned()),
        }
    }
    out
}

/// Type-checks the user's own file section by section, so each bad section is reported at its
/// line (the merged view below knows no lines).
fn check_file(doc: &Doc<'_>, errors: &mut Errors) {
    for (k, v) in doc.root.get_ref().iter() {
        let key: &str = k.get_ref();
        match key {
            "state_dir" => {
                let _ = doc.deserialize::<String>(v, key, errors);
            }
            "api" => {
                let _ = doc.deserialize::<RawApi>(v, key, errors);
            }
            "tls" => {
                let _ = doc.deserialize::<RawTls>(v, key, errors);
            }
            "limits" => {
                let _ = doc.deserialize::<RawLimits>(v, key, errors);
            }
            "spool" => {
                let _ = doc.deserialize::<RawSpool>(v, key, errors);
            }
            "subjects" => {
                let _ = doc.deserialize::<RawSubjects>(v, key, errors);
            }
            "delivery" => {
                let _ = doc.deserialize::<super::delivery::RawDelivery>(v, key, errors);
            }
            "smtp" => {
                let _ = doc.deserialize::<super::delivery::RawSmtp>(v, key, errors);
            }
            "log" => {
                let _ = doc.deserialize::<RawLog>(v, key, errors);
            }
            "ops" => {
                let _ = doc.deserialize::<RawOps>(v, key, errors);
            }
            "web" => {
                let _ = doc.deserialize::<RawWeb>(v, key, errors);
            }
            "requests" => {
                let _ = doc.deserialize::<RawRequests>(v, key, errors);
            }
            "store" => {
                let _ = doc.deserialize::<super::store::RawStore>(v, key, errors);
            }
            other => errors.push(doc.error_at(
                Some(k.span()),
                Some(other.to_owned()),
                "unknown key; expected state_dir, api, tls, limits, delivery, smtp, spool, subjects, log, ops, web, requests, store",
            )),
        }
    }
}

/// The key material a valid configuration names.
pub struct Materials {
    /// The database's CA and password, with `backend = "postgres"`.
    pub postgres: Option<PostgresMaterial>,
    pub tls: TlsMaterial,
    pub spool_key: SpoolKey,
    pub subject_key: SubjectKey,
    pub checkpoint_key: CheckpointKey,
}

/// What `[store]` names for PostgreSQL, read.
pub struct PostgresMaterial {
    pub roots: Vec<CertificateDer<'static>>,
    pub password: Option<zeroize::Zeroizing<String>>,
}

/// Reads and validates the daemon settings, then the files they name. `env` is the `POSTERN_*`
/// environment. The materials are `None` if any of them failed (with the errors recorded).
/// The state directory as configured, even when other settings are wrong, so that paths under
/// it (key files named in the registry) are checked where they really are.
fn state_dir_hint(
    defaults: Option<&Layer>,
    file: Option<&Layer>,
    env: &HashMap<String, String>,
    overrides: &Overrides,
) -> PathBuf {
    overrides
        .state_dir
        .clone()
        .or_else(|| env.get(&env_var_for("state_dir")).map(PathBuf::from))
        .or_else(|| file.and_then(|l| l.string("state_dir")).map(PathBuf::from))
        .or_else(|| {
            defaults
                .and_then(|l| l.string("state_dir"))
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("postern-state"))
}

/// What reading the daemon settings gave: the settings and their files' contents if all is
/// well, and in any case the state directory as far as it is known.
pub(super) struct Loaded {
    pub daemon: Option<(Daemon, Option<Materials>)>,
    pub state_dir_hint: PathBuf,
}

pub(super) fn load(
    defaults: &Source,
    file: Option<&Source>,
    env: &HashMap<String, String>,
    overrides: &Overrides,
    secrets: Secrets<'_>,
    errors: &mut Errors,
) -> Loaded {
    let defaults_doc = Doc::parse(&defaults.name, &defaults.text, errors);
    let file_doc = file.and_then(|f| Doc::parse(&f.name, &f.text, errors));
    // Each file is parsed once: the same trees give the `config` layers and the lines.
    let defaults_layer = defaults_doc.as_ref().map(Layer::of);
    let file_layer = file_doc.as_ref().map(Layer::of);
    let state_dir_hint =
        state_dir_hint(defaults_layer.as_ref(), file_layer.as_ref(), env, overrides);
    let daemon = settings(
        (defaults_doc, defaults_layer),
        (file_doc, file_layer),
        env,
        overrides,
        secrets,
        errors,
    );
    Loaded {
        daemon,
        state_dir_hint,
    }
}

type Parsed<'a> = (Option<Doc<'a>>, Option<Layer>);

fn settings(
    (defaults_doc, defaults_layer): Parsed<'_>,
    (file_doc, file_layer): Parsed<'_>,
    env: &HashMap<String, String>,
    overrides: &Overrides,
    mut secrets: Secrets<'_>,
    errors: &mut Errors,
) -> Option<(Daemon, Option<Materials>)> {
    let before = errors.0.len();
    if let Some(doc) = &file_doc {
        check_file(doc, errors);
    }
    let known = defaults_doc.as_ref().map(known_keys).unwrap_or_default();
    let known_vars: Vec<String> = known
        .iter()
        .filter(|k| !FILE_ONLY.contains(&k.as_str()))
        .map(|k| env_var_for(k))
        .collect();
    for var in env.keys() {
        if let Some(key) = FILE_ONLY.iter().find(|k| env_var_for(k) == *var) {
            errors.general(
                format!("environment variable {var}"),
                None,
                format!("`{key}` is a list of tables ({{ host, port, tls, ... }}) and cannot be given in the environment: set it in postern.toml"),
            );
        } else if var.starts_with("POSTERN_")
            && !known_vars.contains(var)
            && !NON_CONFIG_ENV.contains(&var.as_str())
        {
            errors.general(
                format!("environment variable {var}"),
                None,
                format!(
                    "not a configuration key; the settable keys are {}",
                    known_vars.join(", ")
                ),
            );
        }
    }
    if errors.0.len() > before {
        return None;
    }

    let mut builder = config::Config::builder().add_source(defaults_layer?);
    if let Some(layer) = file_layer {
        builder = builder.add_source(layer);
    }
    let env_source = config::Environment::with_prefix("POSTERN")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("tls.client_cas")
        .with_list_parse_key("tls.client_crls")
        .source(Some(
            env.iter()
                .filter(|(k, _)| known_vars.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    builder = builder.add_source(env_source);
    if let Some(dir) = &overrides.state_dir {
        builder = builder
            .set_override("state_dir", dir.display().to_string())
            .ok()?;
    }
    if let Some(addr) = overrides.listen {
        builder = builder.set_override("api.listen", addr.to_string()).ok()?;
    }
    if let Some(addr) = overrides.web_listen {
        builder = builder.set_override("web.listen", addr.to_string()).ok()?;
    }
    if let Some(addr) = overrides.ops_listen {
        builder = builder.set_override("ops.listen", addr.to_string()).ok()?;
    }
    let locator = Locator {
        defaults: defaults_doc,
        file: file_doc,
        env,
        overrides,
    };
    let raw: RawDaemon = match builder.build().and_then(config::Config::try_deserialize) {
        Ok(r) => r,
        Err(e) => {
            errors.general(
                "configuration (after environment overrides)",
                None,
                e.to_string(),
            );
            return None;
        }
    };
    let daemon = validate(raw, &locator, secrets.credentials_dir.clone(), errors)?;
    let materials = if secrets.mode == Mode::Offline {
        None
    } else {
        materials(&daemon, &locator, &mut secrets, errors)
    };
    Some((daemon, materials))
}

/// `tls.client_cas` as (name, file) pairs: every entry named (explicitly, or after its file),
/// each name once.
fn ca_entries(raw: Vec<RawCa>, loc: &Locator<'_>, errors: &mut Errors) -> Vec<(CaId, String)> {
    let mut out: Vec<(CaId, String)> = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let (name, file) = match entry {
            RawCa::Named(RawNamedCa { name, file }) => (name.trim().to_owned(), file),
            RawCa::Path(file) => {
                let stem = Path::new(file.trim())
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (stem, file)
            }
        };
        if file.trim().is_empty() {
            errors.push(loc.at(
                "tls.client_cas",
                format!("tls.client_cas[{i}]: the CA file is empty"),
            ));
            continue;
        }
        match name.parse::<CaId>() {
            Ok(id) if out.iter().any(|(o, _)| *o == id) => errors.push(loc.at(
                "tls.client_cas",
                format!("tls.client_cas[{i}]: the name `{id}` is used twice; give each CA its own, e.g. {{ name = \"westshire\", file = \"{}\" }}", file.trim()),
            )),
            Ok(id) => out.push((id, file.trim().to_owned())),
            Err(_) => errors.push(loc.at(
                "tls.client_cas",
                format!("tls.client_cas[{i}]: `{name}` cannot name a CA (identities refer to it as `ca = \"...\"`); write the entry as {{ name = \"northshire\", file = \"{}\" }}", file.trim()),
            )),
        }
    }
    out
}

/// What the section checks share: where a key was set (for file and line) and the errors found
/// so far. Each check is pure: it reads raw values and reports, never touching a file.
struct Check<'a, 'b> {
    loc: &'a Locator<'b>,
    errors: &'a mut Errors,
}

impl Check<'_, '_> {
    fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.loc.at(path, message));
    }

    /// A setting that must be present and not blank, trimmed.
    fn required(&mut self, v: Option<String>, path: &str) -> Option<String> {
        match v.filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(s.trim().to_owned()),
            None => {
                self.fail(path, "is required and must not be empty");
                None
            }
        }
    }

    /// A number that must be present and within `min..=max`.
    fn range(&mut self, v: Option<u64>, path: &str, min: u64, max: u64) -> Option<u64> {
        match v {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.fail(path, format!("{n} is out of range ({min} to {max})"));
                None
            }
            None => {
                self.fail(path, "is required");
                None
            }
        }
    }

    fn address(&mut self, text: &str, path: &str, example: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.fail(
                    path,
                    format!("`{text}` is not an address and port such as {example}"),
                );
                None
            }
        }
    }
}

/// `[api]` and `[ops]`: the API's address, and the ops listener's (empty: none).
fn listeners(
    api: RawApi,
    ops: RawOps,
    c: &mut Check<'_, '_>,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let listen = c
        .required(api.listen, "api.listen")
        .and_then(|l| c.address(&l, "api.listen", "127.0.0.1:8443"));
    let ops = match ops.listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(l) => c.address(l, "ops.listen", "127.0.0.1:9464 (or empty for none)"),
    };
    (listen, ops)
}

/// `[web]`: the pages' address (empty: none) and how long sessions last.
fn web_section(web: RawWeb, c: &mut Check<'_, '_>) -> Option<WebSettings> {
    // Every key is checked, whatever the others say, so that one run reports them all.
    let listen = match web.listen.as_deref().map(str::trim) {
        None | Some("") => Some(None),
        Some(l) => c
            .address(l, "web.listen", "127.0.0.1:8444 (or empty for none)")
            .map(Some),
    };
    // At most a day: a session is a person at a desk.
    let idle = c.range(web.session_idle_secs, "web.session_idle_secs", 1, 86_400);
    let max = c.range(web.session_max_secs, "web.session_max_secs", 1, 86_400);
    let public_url = match web.public_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) if u.starts_with("https://") => Some(u.trim_end_matches('/').to_owned()),
        Some(u) => {
            c.errors.push(c.loc.at(
                "web.public_url",
                format!("`{u}` is not an https:// address: the pages are served over HTTPS only"),
            ));
            None
        }
    };
    Some(WebSettings {
        listen: listen?,
        public_url,
        session_idle: Duration::from_secs(idle?),
        session_max: Duration::from_secs(max?),
    })
}

/// `[tls]`, its paths not yet expanded.
struct TlsSection {
    certificate: String,
    private_key: String,
    client_cas: Vec<(CaId, String)>,
    client_crls: Vec<String>,
    client_identity: Option<(String, String)>,
}

fn tls_section(tls: RawTls, c: &mut Check<'_, '_>) -> Option<TlsSection> {
    let certificate = c.required(tls.certificate, "tls.certificate");
    let private_key = c.required(tls.private_key, "tls.private_key");
    let client_cas = ca_entries(tls.client_cas.unwrap_or_default(), c.loc, c.errors);
    // An empty string (as an empty POSTERN_TLS__CLIENT_CRLS gives) is no list at all.
    let client_crls: Vec<String> = tls
        .client_crls
        .unwrap_or_default()
        .into_iter()
        .map(|crl| crl.trim().to_owned())
        .filter(|crl| !crl.is_empty())
        .collect();
    let client_identity = match (
        tls.client_certificate.filter(|s| !s.trim().is_empty()),
        tls.client_private_key.filter(|s| !s.trim().is_empty()),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            c.fail("tls.client_certificate", "give both `client_certificate` and `client_private_key`, or neither (to use the server certificate)");
            None
        }
    };
    if client_cas.is_empty() {
        c.fail(
            "tls.client_cas",
            "name at least one CA file: a client certificate is always required",
        );
    }
    Some(TlsSection {
        certificate: certificate?,
        private_key: private_key?,
        client_cas,
        client_crls,
        client_identity,
    })
}

/// `[limits]`.
fn limits_section(lim: RawLimits, c: &mut Check<'_, '_>) -> Option<Limits> {
    let max_payload = c.range(
        lim.max_payload_bytes,
        "limits.max_payload_bytes",
        1,
        1 << 40,
    );
    let max_envelope = c.range(
        lim.max_envelope_bytes,
        "limits.max_envelope_bytes",
        1024,
        16 << 20,
    );
    let max_conn = c.range(lim.max_connections, "limits.max_connections", 1, 100_000);
    let per_source = c.range(
        lim.max_connections_per_source,
        "limits.max_connections_per_source",
        1,
        100_000,
    );
    let handshakes_per_source = c.range(
        lim.max_handshakes_per_source,
        "limits.max_handshakes_per_source",
        1,
        100_000,
    );
    let min_free = c.range(lim.min_free_bytes, "limits.min_free_bytes", 0, 1 << 50);
    let inbound_retain = c.range(
        lim.inbound_max_retain_days,
        "limits.inbound_max_retain_days",
        1,
        36_500,
    );
    let handshake = c.range(
        lim.handshake_timeout_secs,
        "limits.handshake_timeout_secs",
        1,
        3600,
    );
    let idle = c.range(lim.idle_timeout_secs, "limits.idle_timeout_secs", 1, 3600);
    // At least one upload's worth (1 MiB), or no upload could ever start.
    let upload_memory = c.range(
        lim.upload_memory_bytes,
        "limits.upload_memory_bytes",
        1 << 20,
        1 << 40,
    );
    let upload_wait = c.range(
        lim.upload_memory_wait_secs,
        "limits.upload_memory_wait_secs",
        0,
        300,
    );
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Some(Limits {
        max_payload_bytes: max_payload?,
        max_envelope_bytes: size(max_envelope?),
        max_connections: size(max_conn?),
        max_connections_per_source: size(per_source?),
        max_handshakes_per_source: size(handshakes_per_source?),
        handshake_timeout: Duration::from_secs(handshake?),
        idle_timeout: Duration::from_secs(idle?),
        min_free_bytes: min_free?,
        inbound_max_retain_days: u32::try_from(inbound_retain?).unwrap_or(u32::MAX),
        upload_memory_bytes: upload_memory?,
        upload_memory_wait: Duration::from_secs(upload_wait?),
    })
}

/// `[log]`, its paths not yet expanded.
struct LogSection {
    checkpoint_key: String,
    checkpoint_file: Option<String>,
    checkpoint_interval: Duration,
    retain_days: u32,
}

fn log_section(log: RawLog, c: &mut Check<'_, '_>) -> Option<LogSection> {
    let checkpoint_key = c.required(log.checkpoint_key, "log.checkpoint_key");
    let checkpoint_file = log
        .checkpoint_file
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    let interval = c.range(
        log.checkpoint_interval_secs,
        "log.checkpoint_interval_secs",
        1,
        86_400,
    );
    // 0 turns retention off; at most a century.
    let retain_days = c.range(log.retain_days, "log.retain_days", 0, 36_500);
    Some(LogSection {
        checkpoint_key: checkpoint_key?,
        checkpoint_file,
        checkpoint_interval: Duration::from_secs(interval?),
        retain_days: u32::try_from(retain_days?).unwrap_or(u32::MAX),
    })
}

/// Every section checked (each reports all its errors), then assembled with paths expanded
/// against the state directory; `None` if any section failed.
fn validate(
    raw: RawDaemon,
    loc: &Locator<'_>,
    credentials_dir: Option<PathBuf>,
    errors: &mut Errors,
) -> Option<Daemon> {
    let before = errors.0.len();
    let mut c = Check { loc, errors };
    let state_dir = c.required(raw.state_dir, "state_dir").map(PathBuf::from);
    let (listen, ops_listen) = listeners(
        raw.api.unwrap_or_default(),
        raw.ops.unwrap_or_default(),
        &mut c,
    );
    let tls = tls_section(raw.tls.unwrap_or_default(), &mut c);
    let spool_identity = c.required(raw.spool.unwrap_or_default().identity, "spool.identity");
    let subject_key = c.required(raw.subjects.unwrap_or_default().key, "subjects.key");
    let log = log_section(raw.log.unwrap_or_default(), &mut c);
    let limits = limits_section(raw.limits.unwrap_or_default(), &mut c);
    let web = web_section(raw.web.unwrap_or_default(), &mut c);
    let requests = requests_section(raw.requests.unwrap_or_default(), &mut c);

    // Paths in [delivery] and [smtp] expand against the state directory too.
    let paths = Paths {
        state_dir: state_dir.clone().unwrap_or_default(),
        config_dir: loc.overrides.config_dir.clone(),
        credentials_dir,
        offline: false,
    };
    let delivery = super::delivery::delivery(raw.delivery.unwrap_or_default(), loc, errors);
    let smtp = super::delivery::smtp(
        raw.smtp.unwrap_or_default(),
        &paths,
        loc.overrides.demo,
        loc,
        errors,
    );
    let store = super::store::store(raw.store.unwrap_or_default(), &paths, loc, errors);
    // Read with the rest, so that its errors are reported with every other.
    let calendar = requests
        .as_ref()
        .and_then(|r| read_calendar(r.calendar.as_deref(), &paths, errors));
    if errors.0.len() > before {
        return None;
    }
    let (state_dir, listen, tls, spool_identity, subject_key, log, limits, web, requests) = (
        state_dir?,
        listen?,
        tls?,
        spool_identity?,
        subject_key?,
        log?,
        limits?,
        web?,
        requests?,
    );
    let paths = Paths { state_dir, ..paths };
    let calendar = calendar?;
    let store = store?;
    Some(Daemon {
        store,
        listen,
        ops_listen,
        tls: TlsFiles {
            certificate: paths.expand(&tls.certificate),
            private_key: paths.expand(&tls.private_key),
            client_cas: tls
                .client_cas
                .iter()
                .map(|(id, file)| CaFile {
                    id: id.clone(),
                    path: paths.expand(file),
                })
                .collect(),
            client_crls: tls.client_crls.iter().map(|c| paths.expand(c)).collect(),
            client_identity: tls
                .client_identity
                .map(|(c, k)| (paths.expand(&c), paths.expand(&k))),
        },
        limits,
        spool_identity: paths.expand(&spool_identity),
        subject_key: paths.expand(&subject_key),
        delivery: delivery?,
        smtp: smtp?,
        log: LogSettings {
            checkpoint_key: paths.expand(&log.checkpoint_key),
            checkpoint_file: log.checkpoint_file.map(|f| paths.expand(&f)),
            checkpoint_interval: log.checkpoint_interval,
            retain_days: log.retain_days,
        },
        state_dir: paths.state_dir,
        web,
        requests: RequestSettings {
            calendar,
            working_days: requests.working_days,
            urgent_hours: requests.urgent_hours,
            clarification: requests.clarification,
        },
    })
}

/// `[requests]`, its calendar not yet read.
struct RequestsSection {
    calendar: Option<String>,
    working_days: u32,
    urgent_hours: u32,
    clarification: crate::domain::info_request::ClarificationClock,
}

fn requests_section(r: RawRequests, c: &mut Check<'_, '_>) -> Option<RequestsSection> {
    let calendar = r
        .calendar
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    // At most a year of working days, and a week of hours: beyond that a request is not urgent.
    let days = c.range(
        r.answer_within_working_days,
        "requests.answer_within_working_days",
        1,
        260,
    );
    let hours = c.range(
        r.urgent_answer_within_hours,
        "requests.urgent_answer_within_hours",
        1,
        168,
    );
    let clarification = match r.clarification.as_deref().map(str::trim) {
        None | Some("restarts") => Some(crate::domain::info_request::ClarificationClock::Restarts),
        Some("continues") => Some(crate::domain::info_request::ClarificationClock::Continues),
        Some(other) => {
            c.fail(
                "requests.clarification",
                format!("`{other}` is not \"restarts\" or \"continues\""),
            );
            None
        }
    };
    Some(RequestsSection {
        calendar,
        working_days: u32::try_from(days?).unwrap_or(u32::MAX),
        urgent_hours: u32::try_from(hours?).unwrap_or(u32::MAX),
        clarification: clarification?,
    })
}

/// The calendar `requests.calendar` names (its errors reported with that file's lines), or the
/// built-in one.
fn read_calendar(file: Option<&str>, paths: &Paths, errors: &mut Errors) -> Option<Calendar> {
    let Some(file) = file else {
        return super::calendar::parse(
            "the built-in calendar (config/calendars/england-and-wales.toml)",
            super::calendar::ENGLAND_AND_WALES,
            errors,
        );
    };
    let path = paths.expand(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => super::calendar::parse(&path.display().to_string(), &text, errors),
        Err(e) => {
            errors.general(
                path.display().to_string(),
                Some("requests.calendar".into()),
                format!("the calendar file could not be read: {e}"),
            );
            None
        }
    }
}

/// Why a PEM file could not be read, in words; a missing file (on a new installation, what the
/// operator has yet to make) with the `hint` that says how to make it.
fn pem_problem(e: &rustls_pki_types::pem::Error, hint: &str) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            format!("the file does not exist ({hint})")
        }
        rustls_pki_types::pem::Error::Io(io)
            if io.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            "permission denied (the gateway runs as the user `postern`)".to_owned()
        }
        other => other.to_string(),
    }
}

/// Reads the certificates and keys the settings name. Each failure is reported at the key that
/// names the file.
/// The database's CA and password file, read (each error at `store.ca` or
/// `store.password_file`).
fn postgres_material(
    pg: &super::store::PostgresSettings,
    loc: &Locator<'_>,
    secrets: &mut Secrets<'_>,
    errors: &mut Errors,
) -> Option<PostgresMaterial> {
    let roots = if secrets.visible(&pg.ca, "store.ca", loc, errors) {
        match crate::tls::read_roots(&pg.ca) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(loc.at(
                    "store.ca",
                    format!("cannot use it as the database's CA: {e}"),
                ));
                None
            }
        }
    } else {
        None
    };
    let password = match &pg.password_file {
        Some(f) if secrets.visible(f, "store.password_file", loc, errors) => {
            match std::fs::read_to_string(f) {
                Ok(text) => {
                    let text = zeroize::Zeroizing::new(text);
                    Some(Some(zeroize::Zeroizing::new(
                        text.trim_end_matches(['\r', '\n']).to_owned(),
                    )))
                }
                Err(e) => {
                    errors.push(loc.at(
                        "store.password_file",
                        format!("cannot read `{}`: {e}", f.display()),
                    ));
                    None
                }
            }
        }
        Some(_) => None,
        None => Some(None),
    };
    Some(PostgresMaterial {
        roots: roots?,
        password: password?,
    })
}

fn materials(
    d: &Daemon,
    loc: &Locator<'_>,
    secrets: &mut Secrets<'_>,
    errors: &mut Errors,
) -> Option<Materials> {
    let before = errors.0.len();
    let unseen = secrets.unchecked.len();
    let chain: Vec<CertificateDer<'static>> =
        if secrets.visible(&d.tls.certificate, "tls.certificate", loc, errors) {
            match CertificateDer::pem_file_iter(&d.tls.certificate)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    errors.push(loc.at(
                        "tls.certificate",
                        format!(
                            "`{}` contains no PEM certificate",
                            d.tls.certificate.display()
                        ),
                    ));
                    Vec::new()
                }
                Err(e) => {
                    errors.push(loc.at(
                        "tls.certificate",
                        format!(
                            "cannot read certificates from `{}`: {}",
                            d.tls.certificate.display(),
                            pem_problem(&e, "issue one with `postern pki server`")
                        ),
                    ));
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
    let key = if secrets.visible(&d.tls.private_key, "tls.private_key", loc, errors) {
        match PrivateKeyDer::from_pem_file(&d.tls.private_key) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(loc.at(
                    "tls.private_key",
                    format!(
                        "cannot read a private key from `{}`: {e}",
                        d.tls.private_key.display()
                    ),
                ));
                None
            }
        }
    } else {
        None
    };
    if let (Some(key), Some(leaf)) = (&key, chain.first()) {
        match rustls::crypto::ring::sign::any_supported_type(key) {
            Ok(signer) => {
                let ck = rustls::sign::CertifiedKey::new(vec![leaf.clone()], signer);
                if ck.keys_match().is_err() {
                    errors.push(loc.at(
                        "tls.private_key",
                        format!(
                            "`{}` is not the key of the certificate in `{}`",
                            d.tls.private_key.display(),
                            d.tls.certificate.display()
                        ),
                    ));
                }
            }
            Err(e) => {
                errors.push(loc.at("tls.private_key", format!("unsupported private key: {e}")))
            }
        }
    }
    let mut client_cas: Vec<TrustedCa> = Vec::new();
    for (i, ca) in d.tls.client_cas.iter().enumerate() {
        let key_path = format!("tls.client_cas[{i}]");
        if !secrets.visible(&ca.path, "tls.client_cas", loc, errors) {
            continue;
        }
        match CertificateDer::pem_file_iter(&ca.path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(roots) if !roots.is_empty() => client_cas.push(TrustedCa {
                id: ca.id.clone(),
                roots,
                crls: Vec::new(),
            }),
            Ok(_) => errors.push(loc.at(
                "tls.client_cas",
                format!(
                    "{key_path} (`{}`): `{}` contains no PEM certificate",
                    ca.id,
                    ca.path.display()
                ),
            )),
            Err(e) => errors.push(loc.at(
                "tls.client_cas",
                format!(
                    "{key_path} (`{}`): cannot read `{}`: {}",
                    ca.id,
                    ca.path.display(),
                    pem_problem(
                        &e,
                        "make a CA with `postern pki init`, or copy in the CA that issues your clients' certificates"
                    )
                ),
            )),
        }
    }
    for (i, path) in d.tls.client_crls.iter().enumerate() {
        if !secrets.visible(path, "tls.client_crls", loc, errors) {
            continue;
        }
        match read_crls(path, &client_cas) {
            Ok(crls) => {
                for crl in crls {
                    if let Some(ca) = client_cas.iter_mut().find(|c| c.id == crl.ca) {
                        ca.crls.push(crl);
                    }
                }
            }
            Err(msg) => errors.push(loc.at(
                "tls.client_crls",
                format!("tls.client_crls[{i}]: `{}`: {msg}", path.display()),
            )),
        }
    }
    let spool = if secrets.visible(&d.spool_identity, "spool.identity", loc, errors) {
        match SpoolKey::from_file(&d.spool_identity) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(loc.at(
                    "spool.identity",
                    format!("cannot load `{}`: {e}", d.spool_identity.display()),
                ));
                None
            }
        }
    } else {
        None
    };
    let subject = if secrets.visible(&d.subject_key, "subjects.key", loc, errors) {
        match read_subject_key(&d.subject_key) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(loc.at("subjects.key", e.to_string()));
                None
            }
        }
    } else {
        None
    };
    let checkpoint = if secrets.visible(&d.log.checkpoint_key, "log.checkpoint_key", loc, errors) {
        match CheckpointKey::from_file(&d.log.checkpoint_key) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(loc.at(
                    "log.checkpoint_key",
                    format!("{e}; `postern keys checkpoint-key --out FILE` makes one"),
                ));
                None
            }
        }
    } else {
        None
    };
    let client = match &d.tls.client_identity {
        Some((cert, key_path)) => {
            let seen = secrets.visible(cert, "tls.client_certificate", loc, errors);
            if seen && secrets.visible(key_path, "tls.client_private_key", loc, errors) {
                match crate::tls::Identity::from_files(cert, key_path) {
                    Ok(id) => Some((id.chain, id.key)),
                    Err(e) => {
                        errors.push(loc.at(
                            "tls.client_certificate",
                            format!("cannot load the outbound client identity: {e}"),
                        ));
                        None
                    }
                }
            } else {
                None
            }
        }
        None => key.as_ref().map(|k| (chain.clone(), k.clone_key())),
    };
    let postgres = match &d.store {
        super::store::StoreSettings::Sqlite => None,
        super::store::StoreSettings::Postgres(pg) => postgres_material(pg, loc, secrets, errors),
    };
    if errors.0.len() > before || secrets.unchecked.len() > unseen {
        return None;
    }
    let (client_chain, client_key) = client?;
    Some(Materials {
        postgres,
        tls: TlsMaterial {
            chain,
            key: key?,
            client_cas,
            client_chain,
            client_key,
        },
        spool_key: spool?,
        subject_key: subject?,
        checkpoint_key: checkpoint?,
    })
}

/// The CRLs in one file: PEM (`X509 CRL` blocks, any number) or a single DER list. Each must be
/// signed by a certificate in `tls.client_cas`; webpki would otherwise just never match it,
/// revoking nothing.
fn read_crls(path: &Path, cas: &[TrustedCa]) -> Result<Vec<Crl>, CrlFileError> {
    let bytes = std::fs::read(path).map_err(CrlFileError::Read)?;
    let is_pem = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'-');
    let ders: Vec<CertificateRevocationListDer<'static>> = if is_pem {
        let ders = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(CrlFileError::Pem)?;
        if ders.is_empty() {
            return Err(CrlFileError::Empty);
        }
        ders
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    ders.into_iter()
        .map(|der| check_crl(path, der, cas))
        .collect()
}

fn check_crl(
    path: &Path,
    der: CertificateRevocationListDer<'static>,
    cas: &[TrustedCa],
) -> Result<Crl, CrlFileError> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
        .map_err(|e| CrlFileError::NotAList(e.to_string()))?;
    let issuer = crl.issuer().to_string();
    let certs: Vec<(&CaId, x509_parser::certificate::X509Certificate<'_>)> = cas
        .iter()
        .flat_map(|ca| {
            ca.roots.iter().filter_map(move |r| {
                x509_parser::parse_x509_certificate(r)
                    .ok()
                    .map(|(_, cert)| (&ca.id, cert))
            })
        })
        .collect();
    // Two CAs may share a name (two deployments' development CAs do): the issuer is the one
    // whose key signed the list.
    let mut named = false;
    let found = certs.iter().find(|(_, cert)| {
        let same = cert.subject().as_raw() == crl.issuer().as_raw();
        named |= same;
        same && crl.verify_signature(cert.public_key()).is_ok()
    });
    let Some((ca_id, issuer_cert)) = found else {
        return Err(if named {
            CrlFileError::BadSignature(issuer)
        } else {
            CrlFileError::UnknownIssuer(issuer)
        });
    };
    let applies_to = cas
        .iter()
        .filter(|ca| issued_within(issuer_cert, &ca.id, &certs, 0))
        .map(|ca| ca.id.clone())
        .collect();
    let next_update = crl.next_update().map(|t| t.to_datetime());
    let revoked = crl.iter_revoked_certificates().count();
    let issuer_name = crl.issuer().as_raw().to_vec();
    let ca = (*ca_id).clone();
    drop(crl);
    Ok(Crl {
        path: path.to_path_buf(),
        der,
        issuer,
        ca,
        applies_to,
        issuer_name,
        next_update,
        revoked,
    })
}

/// Whether `cert` is in the entry `ca`'s file, or was issued (name and signature) by a
/// certificate in `certs` that is, at most a few issuers up.
fn issued_within(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    ca: &CaId,
    certs: &[(&CaId, x509_parser::certificate::X509Certificate<'_>)],
    depth: usize,
) -> bool {
    if certs
        .iter()
        .any(|(id, c)| *id == ca && c.as_raw() == cert.as_raw())
    {
        return true;
    }
    if depth >= 4 || cert.subject().as_raw() == cert.issuer().as_raw() {
        return false;
    }
    certs.iter().any(|(_, parent)| {
        parent.subject().as_raw() == cert.issuer().as_raw()
            && parent.as_raw() != cert.as_raw()
            && cert.verify_signature(Some(parent.public_key())).is_ok()
            && issued_within(parent, ca, certs, depth + 1)
    })
}

/// Why the subject key file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SubjectKeyError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` must contain hex digits only")]
    NotHex(String),
    #[error("`{path}`: {source}")]
    Short {
        path: String,
        #[source]
        source: crate::domain::subject::ShortKey,
    },
}

/// The subject key file holds hex digits (whitespace ignored), at least 32 bytes' worth.
pub fn read_subject_key(path: &std::path::Path) -> Result<SubjectKey, SubjectKeyError> {
    let shown = || path.display().to_string();
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
        SubjectKeyError::Read {
            path: shown(),
            source,
        }
    })?);
    let digits: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    let bytes = hex::decode(digits.as_bytes()).map_err(|_| SubjectKeyError::NotHex(shown()))?;
    SubjectKey::new(bytes).map_err(|source| SubjectKeyError::Short {
        path: shown(),
        source,
    })
}

/// Why a file of `tls.client_crls` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CrlFileError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("not a PEM CRL: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("contains no PEM `X509 CRL` block")]
    Empty,
    #[error("not a certificate revocation list: {0}")]
    NotAList(String),
    #[error(
        "its signature does not verify with the key of any certificate named `{0}` in tls.client_cas"
    )]
    BadSignature(String),
    #[error(
        "is issued by `{0}`, which is not one of tls.client_cas (the certificate of an issuing CA belongs in the file of its root's entry, or an entry of its own)"
    )]
    UnknownIssuer(String),
}
