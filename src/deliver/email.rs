//! Delivery by secure email through the configured relays (lettre composes the message and
//! speaks SMTP over connections [`super::smtp`] opens and keeps). TLS is always required:
//! STARTTLS that must succeed, or TLS from the first byte; the relay's certificate is verified
//! against its configured CA or the system roots; there is never a plaintext fallback.
//!
//! The message carries no personal data in clear: the subject starts with the marking and
//! names the transfer and the sending organisation; the body says what it is and how to open
//! it; the envelope and payload are attached as age files, sealed to the recipient's keys. A
//! `tls_only` recipient (an accredited secure email domain whose users cannot run age) instead
//! gets them unencrypted inside the message, which policy allows only up to that endpoint's
//! ceiling.
//!
//! In development (`postern demo` without a relay) messages are written as `.eml` files to an
//! outbox folder instead: the exact messages that would have been sent.

use std::path::{Path, PathBuf};

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};

use super::failure::sentence;
use super::smtp::{RelayPool, RelayTls, SendError};
use super::{Cause, Outcome};
use crate::config::{SmtpSettings, SmtpTls};
use crate::domain::envelope::RecipientEnvelope;
use crate::log::Receipt;

/// What one message says.
pub struct Letter<'a> {
    pub transfer_id: &'a str,
    pub recipient_id: &'a str,
    pub to: &'a str,
    pub tls_only: bool,
    pub envelope: &'a RecipientEnvelope,
    pub sender_name: &'a str,
    pub recipient_name: &'a str,
    /// The envelope (JSON) and payload, sealed to the recipient or, for `tls_only`, plain.
    pub envelope_bytes: Vec<u8>,
    pub payload_bytes: Vec<u8>,
}

/// Room for the headers, the plain text body and the sealed envelope (a few KiB) in a message.
const MESSAGE_OVERHEAD: u64 = 64 * 1024;

/// The size of the message that carries a sealed payload of `sealed_payload` bytes, as a relay
/// counts it: base64 (4 bytes per 3, in lines of 76 plus CRLF) plus the rest of the message.
/// What `smtp.max_message_bytes` is compared with, so that a relay whose limit is that value
/// never refuses the message with a 5xx (which would make the delivery dead).
pub fn message_bytes(sealed_payload: u64) -> u64 {
    let encoded = sealed_payload.div_ceil(3).saturating_mul(4);
    encoded
        .saturating_add(encoded.div_ceil(76).saturating_mul(2))
        .saturating_add(MESSAGE_OVERHEAD)
}

struct Relay {
    name: String,
    pool: RelayPool,
}

/// Why the email channel cannot be set up from `[smtp]`.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("smtp.from: {0}")]
    From(#[source] lettre::address::AddressError),
    #[error("relay {relay}: CA: {source}")]
    Ca {
        relay: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("relay {relay}: TLS: {source}")]
    Tls {
        relay: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("relay {relay}: TLS: {source}")]
    ImplicitTls {
        relay: String,
        #[source]
        source: rustls::Error,
    },
}

/// Why a message could not be made (this gateway's side: the attempt is retried).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("recipient address `{address}`: {source}")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("{0}")]
    ContentType(#[from] lettre::message::header::ContentTypeErr),
    #[error("{0}")]
    HeaderName(#[from] lettre::message::header::InvalidHeaderName),
    #[error("cannot compose the message: {0}")]
    Message(#[source] lettre::error::Error),
}

pub struct EmailChannel {
    from: Mailbox,
    relays: Vec<Relay>,
    outbox: Option<PathBuf>,
    pub max_message_bytes: u64,
}

impl EmailChannel {
    pub fn new(s: &SmtpSettings) -> Result<Self, EmailSetupError> {
        let from: Mailbox = s.from.parse().map_err(EmailSetupError::From)?;
        let mut relays = Vec::new();
        for r in &s.relays {
            let tls = match r.tls {
                SmtpTls::StartTls => {
                    let mut tls = TlsParameters::builder(r.host.clone());
                    if let Some(ca) = &r.ca {
                        // A configured CA replaces the system roots for this relay.
                        tls = tls.certificate_store(CertificateStore::None);
                        for der in ca {
                            tls = tls.add_root_certificate(
                                Certificate::from_der(der.to_vec()).map_err(|source| {
                                    EmailSetupError::Ca {
                                        relay: r.host.clone(),
                                        source,
                                    }
                                })?,
                            );
                        }
                    }
                    RelayTls::StartTls(tls.build_rustls().map_err(|source| {
                        EmailSetupError::Tls {
                            relay: r.host.clone(),
                            source,
                        }
                    })?)
                }
                SmtpTls::Implicit => {
                    // The same roots: the configured CA, or the system's (skipping any the
                    // verifier cannot parse, as lettre does for STARTTLS).
                    let setup = |source| EmailSetupError::ImplicitTls {
                        relay: r.host.clone(),
                        source,
                    };
                    let mut store = rustls::RootCertStore::empty();
                    match &r.ca {
                        Some(ca) => {
                            for der in ca {
                                store.add(der.clone()).map_err(setup)?;
                            }
                        }
                        None => {
                            let (_, skipped) = store.add_parsable_certificates(
                                rustls_native_certs::load_native_certs().certs,
                            );
                            if skipped > 0 {
                                tracing::warn!(relay = %r.host, skipped, "system root certificates that cannot be used were skipped");
                            }
                        }
                    }
                    let config =
                        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                            .with_protocol_versions(crate::tls::PROTOCOLS)
                            .map_err(setup)?
                            .with_root_certificates(store)
                            .with_no_client_auth();
                    RelayTls::Implicit(std::sync::Arc::new(config))
                }
            };
            let credentials = match (&r.username, &r.password) {
                (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.to_string())),
                _ => None,
            };
            relays.push(Relay {
                name: format!("{}:{}", r.host, r.port),
                pool: RelayPool::new(r.host.clone(), r.port, tls, credentials, s.timeout),
            });
        }
        Ok(EmailChannel {
            from,
            relays,
            outbox: s.outbox_dir.clone(),
            max_message_bytes: s.max_message_bytes,
        })
    }

    /// Closes the kept relay connections (a reload): the next message opens new ones.
    pub fn drop_idle(&self) {
        for r in &self.relays {
            r.pool.drop_idle();
        }
    }

    pub fn compose(&self, l: &Letter<'_>) -> Result<Message, ComposeError> {
        let to: Mailbox = l.to.parse().map_err(|source| ComposeError::Address {
            address: l.to.to_owned(),
            source,
        })?;
        let e = l.envelope;
        let subject = format!(
            "{}: secure transfer {} from {}",
            e.marking_normalised, l.transfer_id, l.sender_name
        );
        let ext = e
            .file_name
            .as_deref()
            .and_then(|f| Path::new(f).extension())
            .and_then(|x| x.to_str())
            .filter(|x| x.len() <= 8 && x.chars().all(|c| c.is_ascii_alphanumeric()));
        let (envelope_name, payload_name, how) = if l.tls_only {
            (
                format!("transfer-{}-envelope.json", l.transfer_id),
                format!("transfer-{}-payload{}", l.transfer_id, ext.map(|x| format!(".{x}")).unwrap_or_default()),
                "Both attachments are in clear: your organisation's secure email domain received them over verified TLS only.\nStore and handle them according to their marking.".to_owned(),
            )
        } else {
            let env = format!("transfer-{}-envelope.json.age", l.transfer_id);
            let pay = format!("transfer-{}-payload.age", l.transfer_id);
            let how = format!(
                "Both attachments are encrypted with age (https://age-encryption.org) to your organisation's key.\nTo open them with the standard age command-line tool and your identity file:\n\n    age -d -i YOUR-IDENTITY-FILE -o envelope.json {env}\n    age -d -i YOUR-IDENTITY-FILE -o payload{} {pay}\n\nenvelope.json records why this was shared, on what lawful basis, what it contains and its\noriginal file name.",
                ext.map(|x| format!(".{x}")).unwrap_or_default()
            );
            (env, pay, how)
        };
        let body = format!(
            "{sender} has shared information with {recipient} through Postern, a secure gateway for\nsafeguarding information sharing.\n\nTransfer:     {id}\nFrom:         {sender} ({sender_id})\nPurpose:      {purpose}\nMarking:      {marking}\nDestroy by:   {until} (do not keep it after this date)\n\n{how}\n\nThis message contains no personal data outside its attachments.\n",
            sender = l.sender_name,
            recipient = l.recipient_name,
            id = l.transfer_id,
            sender_id = e.sender,
            purpose = e.purpose,
            marking = e.marking_normalised,
            until = e.retain_until,
        );
        let octet = ContentType::parse("application/octet-stream")?;
        let json = ContentType::parse(if l.tls_only {
            "application/json"
        } else {
            "application/octet-stream"
        })?;
        let mut msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            // A stable Message-ID: a repeat delivery is the same message, which mail systems and
            // people can recognise.
            .message_id(Some(format!(
                "<{}.{}@postern>",
                l.transfer_id, l.recipient_id
            )))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(envelope_name).body(l.envelope_bytes.clone(), json))
                    .singlepart(Attachment::new(payload_name).body(l.payload_bytes.clone(), octet)),
            )
            .map_err(ComposeError::Message)?;
        for (name, value) in [
            ("X-Postern-Transfer-Id", l.transfer_id),
            ("X-Postern-Recipient", l.recipient_id),
        ] {
            let name = HeaderName::new_from_ascii(name.to_owned())?;
            msg.headers_mut()
                .insert_raw(HeaderValue::new(name, value.to_owned()));
        }
        Ok(msg)
    }

    pub async fn deliver(&self, l: Letter<'_>) -> Outcome {
        // Composing is this gateway's work: a failure is temporary.
        let msg = match self.compose(&l) {
            Ok(m) => m,
            Err(e) => return Outcome::temporary(Cause::Compose, e.to_string()),
        };
        let now = crate::clock::stamp(crate::clock::now());
        if let Some(dir) = &self.outbox {
            return match write_outbox(dir, l.transfer_id, l.recipient_id, &msg.formatted()) {
                Ok(path) => Outcome::Delivered {
                    receipt: Receipt {
                        receipt_id: format!("outbox:{}", path.display()),
                        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                            &l.payload_bytes,
                        )),
                        received_at: now,
                    },
                    detail: format!("written to the development outbox {}", path.display()),
                },
                Err(e) => {
                    Outcome::temporary(Cause::LocalIo, format!("cannot write to the outbox: {e}"))
                }
            };
        }
        if self.relays.is_empty() {
            return Outcome::temporary(Cause::Configuration, "no SMTP relay is configured");
        }
        let mut failures = Vec::new();
        let mut permanent = true;
        // The cause of the last relay tried (the one the delivery ended with).
        let mut cause = Cause::Unreachable;
        let bytes = msg.formatted();
        for relay in &self.relays {
            match relay.pool.send(msg.envelope(), &bytes).await {
                Ok(response) => {
                    let reply = format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    );
                    return Outcome::Delivered {
                        receipt: Receipt {
                            receipt_id: format!("smtp:{}:{}", relay.name, reply.trim()),
                            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                                &l.payload_bytes,
                            )),
                            received_at: now,
                        },
                        detail: format!("accepted by relay {}: {}", relay.name, reply.trim()),
                    };
                }
                Err(e) => {
                    // Only a 5xx reply is a verdict on the message; anything else (including a
                    // relay that does not offer STARTTLS, or a certificate it cannot prove) is
                    // the relay's state and may change, unless it is a TLS verification
                    // failure, which is treated as permanent below.
                    let this_permanent = is_permanent(&e);
                    permanent &= this_permanent;
                    cause = smtp_cause(&e);
                    failures.push(format!("relay {}: {}", relay.name, smtp_words(&e)));
                }
            }
        }
        let why = failures.join("; ");
        if permanent {
            Outcome::permanent(cause, why)
        } else {
            Outcome::temporary(cause, why)
        }
    }
}

/// Why a notice (a sign-in code, "something is waiting") could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the address `{0}` cannot be written to")]
    Address(String),
    #[error("cannot compose the message: {0}")]
    Compose(#[source] lettre::error::Error),
    #[error("cannot write to the outbox: {0}")]
    Outbox(#[source] std::io::Error),
    #[error("no SMTP relay is configured")]
    NoRelay,
    #[error("{0}")]
    Relays(String),
}

impl EmailChannel {
    /// Sends a short plain-text notice to a person (a sign-in code, "a delivery is waiting"),
    /// through the relays with TLS required like every delivery, or into the development
    /// outbox as `notice-<name>.eml`. `name` must be unique per message.
    pub async fn notice(
        &self,
        to: &str,
        subject: &str,
        body: String,
        name: &str,
    ) -> Result<(), NoticeError> {
        let to_box: Mailbox = to
            .parse()
            .map_err(|_| NoticeError::Address(to.to_owned()))?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject)
            .singlepart(SinglePart::plain(body))
            .map_err(NoticeError::Compose)?;
        if let Some(dir) = &self.outbox {
            return write_outbox(dir, "notice", name, &msg.formatted())
                .map(|_| ())
                .map_err(NoticeError::Outbox);
        }
        if self.relays.is_empty() {
            return Err(NoticeError::NoRelay);
        }
        let mut failures = Vec::new();
        let bytes = msg.formatted();
        for relay in &self.relays {
            match relay.pool.send(msg.envelope(), &bytes).await {
                Ok(_) => return Ok(()),
                Err(e) => failures.push(format!("relay {}: {}", relay.name, smtp_words(&e))),
            }
        }
        Err(NoticeError::Relays(failures.join("; ")))
    }
}

/// Whether a failure is a certificate that does not verify (as opposed to, say, a relay
/// that closed the connection mid-handshake).
fn tls_verification(e: &SendError) -> bool {
    matches!(
        crate::tls::find_tls_error(e),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

/// Only a 5xx reply is a verdict on the message; anything else (including a relay that does not
/// offer STARTTLS) is the relay's state and may change, except a certificate that does not
/// verify, which will not start verifying on its own.
fn is_permanent(e: &SendError) -> bool {
    matches!(e, SendError::Smtp(s) if s.is_permanent()) || tls_verification(e)
}

/// A relay's failure in one plain sentence: the relay's own reply when it answered, otherwise
/// what went wrong in words (the library's wording repeats itself and names its internals).
fn smtp_words(e: &SendError) -> String {
    if e.is_reply() {
        return format!("the relay refused the message ({})", sentence(e));
    }
    if let Some(tls) = crate::tls::find_tls_error(e) {
        return crate::tls::in_words(tls, "the relay");
    }
    match e {
        SendError::Smtp(s) if s.is_client() && s.to_string().contains("STARTTLS") => {
            "the relay does not offer STARTTLS, and this gateway sends email only over TLS"
                .to_owned()
        }
        SendError::Timeout(_) => "the relay did not answer in time".to_owned(),
        SendError::Smtp(s) if s.is_timeout() => "the relay did not answer in time".to_owned(),
        _ => match crate::tls::find_io_error(e) {
            Some(io) => crate::tls::io_in_words(io, "the relay"),
            None => sentence(e),
        },
    }
}

/// What a relay's failure was: a reply, a certificate, TLS, time, or the connection.
fn smtp_cause(e: &SendError) -> Cause {
    let tls = crate::tls::find_tls_error(e).is_some();
    match e {
        _ if e.is_reply() => Cause::RelayRefused,
        _ if tls_verification(e) => Cause::TlsCertificate,
        _ if tls => Cause::Tls,
        // lettre's "client" errors are what it refuses to go on without: for Postern, which
        // requires TLS, a relay that does not offer STARTTLS.
        SendError::Smtp(s) if s.is_tls() || s.is_client() => Cause::Tls,
        SendError::Smtp(s) if s.is_timeout() => Cause::Timeout,
        SendError::Timeout(_) => Cause::Timeout,
        _ => Cause::Unreachable,
    }
}

/// Writes a message atomically (temporary name, fsync, rename) as `<transfer>-<recipient>.eml`:
/// a repeat overwrites, so the outbox never holds a duplicate.
fn write_outbox(
    dir: &Path,
    transfer_id: &str,
    recipient: &str,
    bytes: &[u8],
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{transfer_id}-{recipient}.eml"));
    let tmp = dir.join(format!(".{transfer_id}-{recipient}.eml.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_a_third_larger_than_its_payload_plus_room_for_the_rest() {
        assert_eq!(message_bytes(0), MESSAGE_OVERHEAD);
        // 3 bytes → 4 characters, one line, CRLF.
        assert_eq!(message_bytes(3), 4 + 2 + MESSAGE_OVERHEAD);
        // 57 bytes fill one 76-character line exactly.
        assert_eq!(message_bytes(57), 76 + 2 + MESSAGE_OVERHEAD);
        let mib = 1 << 20;
        let m = message_bytes(15 * mib);
        assert!(m > 20 * mib && m < 21 * mib, "{m}");
    }
}
