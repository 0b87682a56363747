//! `[delivery]` and `[smtp]` in `postern.toml`: how the delivery worker paces itself, and the
//! relays secure email goes through. Validated with the rest of the daemon settings; relay CA
//! files and passwords are read here too, so `check-config` finds a missing one.

use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::Paths;
use super::daemon::Locator;
use super::source::Errors;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    concurrency: Option<u64>,
    per_recipient: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    retry_jitter: Option<f64>,
    lifetime_secs: Option<u64>,
    attempt_timeout_secs: Option<u64>,
    attempt_min_rate_kib: Option<u64>,
    payload_grace_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRelay {
    host: String,
    port: u16,
    tls: String,
    ca: Option<String>,
    username: Option<String>,
    password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    relays: Option<Vec<RawRelay>>,
    from: Option<String>,
    max_message_bytes: Option<u64>,
    timeout_secs: Option<u64>,
    outbox_dir: Option<String>,
}

/// How the delivery worker paces itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    pub concurrency: usize,
    pub per_recipient: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub retry_jitter: f64,
    pub lifetime: Duration,
    pub attempt_timeout: Duration,
    /// The slowest sending rate allowed for: each attempt also gets the time its payload takes
    /// at this rate, so a large payload over a slow link is not cut off by `attempt_timeout`.
    pub attempt_min_rate_kib: u64,
    pub payload_grace: Duration,
}

impl DeliverySettings {
    /// How long an attempt at a payload of `size` bytes may take.
    pub fn attempt_deadline(&self, size: u64) -> Duration {
        let rate = self.attempt_min_rate_kib.max(1).saturating_mul(1024);
        self.attempt_timeout + Duration::from_secs(size.div_ceil(rate))
    }
}

/// TLS to a relay: STARTTLS on a plain connection (required, never optional), or TLS from the
/// first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
}

/// One SMTP relay, with what it needs loaded.
#[derive(Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The relay's certificate is verified against these instead of the system roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Relay({}:{}, {:?}, auth: {})",
            self.host,
            self.port,
            self.tls,
            self.username.is_some()
        )
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub relays: Vec<Relay>,
    pub from: String,
    pub max_message_bytes: u64,
    pub timeout: Duration,
    /// Development only: messages are written here as `.eml` files instead of being sent.
    pub outbox_dir: Option<PathBuf>,
}

fn range(
    v: Option<u64>,
    path: &str,
    min: u64,
    max: u64,
    loc: &Locator<'_>,
    errors: &mut Errors,
) -> Option<u64> {
    match v {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            errors.push(loc.at(path, format!("{n} is out of range ({min} to {max})")));
            None
        }
        None => {
            errors.push(loc.at(path, "is required"));
            None
        }
    }
}

pub(super) fn delivery(
    raw: RawDelivery,
    loc: &Locator<'_>,
    errors: &mut Errors,
) -> Option<DeliverySettings> {
    let before = errors.0.len();
    let concurrency = range(
        raw.concurrency,
        "delivery.concurrency",
        1,
        10_000,
        loc,
        errors,
    );
    let per_recipient = range(
        raw.per_recipient,
        "delivery.per_recipient",
        1,
        10_000,
        loc,
        errors,
    );
    let initial = range(
        raw.retry_initial_ms,
        "delivery.retry_initial_ms",
        1,
        86_400_000,
        loc,
        errors,
    );
    let max = range(
        raw.retry_max_ms,
        "delivery.retry_max_ms",
        1,
        7 * 86_400_000,
        loc,
        errors,
    );
    let lifetime = range(
        raw.lifetime_secs,
        "delivery.lifetime_secs",
        1,
        90 * 86_400,
        loc,
        errors,
    );
    let timeout = range(
        raw.attempt_timeout_secs,
        "delivery.attempt_timeout_secs",
        1,
        86_400,
        loc,
        errors,
    );
    let min_rate = range(
        raw.attempt_min_rate_kib,
        "delivery.attempt_min_rate_kib",
        1,
        100_000_000,
        loc,
        errors,
    );
    let grace = range(
        raw.payload_grace_secs,
        "delivery.payload_grace_secs",
        0,
        90 * 86_400,
        loc,
        errors,
    );
    let jitter = match raw.retry_jitter {
        Some(j) if (0.0..=1.0).contains(&j) => Some(j),
        Some(j) => {
            errors.push(loc.at(
                "delivery.retry_jitter",
                format!("{j} is out of range (0 to 1)"),
            ));
            None
        }
        None => {
            errors.push(loc.at("delivery.retry_jitter", "is required"));
            None
        }
    };
    if let (Some(i), Some(m)) = (initial, max)
        && m < i
    {
        errors.push(loc.at(
            "delivery.retry_max_ms",
            format!("must not be less than retry_initial_ms ({i})"),
        ));
    }
    if errors.0.len() > before {
        return None;
    }
    Some(DeliverySettings {
        concurrency: usize::try_from(concurrency?).ok()?,
        per_recipient: usize::try_from(per_recipient?).ok()?,
        retry_initial: Duration::from_millis(initial?),
        retry_max: Duration::from_millis(max?),
        retry_jitter: jitter?,
        lifetime: Duration::from_secs(lifetime?),
        attempt_timeout: Duration::from_secs(timeout?),
        attempt_min_rate_kib: min_rate?,
        payload_grace: Duration::from_secs(grace?),
    })
}

pub(super) fn smtp(
    raw: RawSmtp,
    paths: &Paths,
    demo: bool,
    loc: &Locator<'_>,
    errors: &mut Errors,
) -> Option<SmtpSettings> {
    let before = errors.0.len();
    let mut relays = Vec::new();
    for (i, r) in raw.relays.unwrap_or_default().into_iter().enumerate() {
        let key = "smtp.relays";
        let tls = match r.tls.as_str() {
            "starttls" => Some(SmtpTls::StartTls),
            "implicit" => Some(SmtpTls::Implicit),
            other => {
                errors.push(loc.at(key, format!("relay {i} ({}): tls `{other}` must be \"starttls\" or \"implicit\"; plaintext SMTP is not supported", r.host)));
                None
            }
        };
        if r.host.trim().is_empty() {
            errors.push(loc.at(key, format!("relay {i}: `host` is empty")));
        }
        let ca = match &r.ca {
            Some(c) => {
                let p = paths.expand(c);
                match crate::pki::read_certs(&p) {
                    Ok(certs) => Some(certs),
                    Err(e) => {
                        errors.push(loc.at(
                            key,
                            format!(
                                "relay {i} ({}): cannot use `{}` as its CA: {e}",
                                r.host,
                                p.display()
                            ),
                        ));
                        None
                    }
                }
            }
            None => None,
        };
        let password = match (&r.username, &r.password_file) {
            (Some(_), Some(f)) => {
                let p = paths.expand(f);
                match std::fs::read_to_string(&p) {
                    Ok(text) => Some(Zeroizing::new(
                        text.trim_end_matches(['\r', '\n']).to_owned(),
                    )),
                    Err(e) => {
                        errors.push(loc.at(
                            key,
                            format!("relay {i} ({}): cannot read `{}`: {e}", r.host, p.display()),
                        ));
                        None
                    }
                }
            }
            (None, None) => None,
            _ => {
                errors.push(loc.at(
                    key,
                    format!(
                        "relay {i} ({}): give both `username` and `password_file`, or neither",
                        r.host
                    ),
                ));
                None
            }
        };
        if let Some(tls) = tls {
            relays.push(Relay {
                host: r.host.trim().to_owned(),
                port: r.port,
                tls,
                ca,
                username: r.username.clone(),
                password,
            });
        }
    }
    let from = raw.from.map(|f| f.trim().to_owned()).unwrap_or_default();
    if from.parse::<lettre::Address>().is_err() {
        errors.push(loc.at("smtp.from", format!("`{from}` is not an email address")));
    }
    let max = range(
        raw.max_message_bytes,
        "smtp.max_message_bytes",
        1024,
        1 << 30,
        loc,
        errors,
    );
    let timeout = range(raw.timeout_secs, "smtp.timeout_secs", 1, 3600, loc, errors);
    let mut outbox_dir = raw
        .outbox_dir
        .filter(|d| !d.trim().is_empty())
        .map(|d| paths.expand(&d));
    if outbox_dir.is_some() && !demo {
        errors.push(loc.at("smtp.outbox_dir", "is a development setting for `postern demo`: a real deployment sends email through `smtp.relays`"));
    }
    if demo && outbox_dir.is_none() && relays.is_empty() {
        outbox_dir = Some(paths.state_dir.join("outbox"));
    }
    if errors.0.len() > before {
        return None;
    }
    Some(SmtpSettings {
        relays,
        from,
        max_message_bytes: max?,
        timeout: Duration::from_secs(timeout?),
        outbox_dir,
    })
}
