//! Why a delivery attempt failed: the vocabulary the delivery worker reports in, the transfer
//! log records (`delivery_attempt` records' `cause`) and the metrics count by.

use serde::{Deserialize, Serialize};

/// What went wrong, in a bounded vocabulary (a metrics label and a field of the log record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// This gateway's configuration no longer allows the delivery: the recipient is no longer
    /// registered, has no endpoint, or no relay is configured. A reload may cure it.
    Configuration,
    /// This gateway's own storage: the spool, the store, the inbox, the outbox, the disk.
    LocalIo,
    /// The spooled envelope or payload could not be opened or resealed for the recipient.
    Reseal,
    /// The message or request could not be made (encoding, a bad endpoint URL).
    Compose,
    /// The endpoint or relay could not be reached, or the connection broke.
    Unreachable,
    /// The attempt ran past its deadline.
    Timeout,
    /// A certificate did not verify, either way: the endpoint's, or ours as the endpoint saw it.
    TlsCertificate,
    /// Another TLS failure (protocol, alert).
    Tls,
    /// The SMTP relay answered with an error reply.
    RelayRefused,
    /// The recipient's gateway answered with an error status.
    RecipientRefused,
    /// The recipient answered, but without a receipt for what was sent.
    ReceiptMismatch,
    /// The attempt failed unexpectedly inside the gateway.
    Internal,
}

impl FailureCause {
    pub const ALL: [FailureCause; 12] = [
        FailureCause::Configuration,
        FailureCause::LocalIo,
        FailureCause::Reseal,
        FailureCause::Compose,
        FailureCause::Unreachable,
        FailureCause::Timeout,
        FailureCause::TlsCertificate,
        FailureCause::Tls,
        FailureCause::RelayRefused,
        FailureCause::RecipientRefused,
        FailureCause::ReceiptMismatch,
        FailureCause::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Configuration => "configuration",
            FailureCause::LocalIo => "local_io",
            FailureCause::Reseal => "reseal",
            FailureCause::Compose => "compose",
            FailureCause::Unreachable => "unreachable",
            FailureCause::Timeout => "timeout",
            FailureCause::TlsCertificate => "tls_certificate",
            FailureCause::Tls => "tls",
            FailureCause::RelayRefused => "relay_refused",
            FailureCause::RecipientRefused => "recipient_refused",
            FailureCause::ReceiptMismatch => "receipt_mismatch",
            FailureCause::Internal => "internal",
        }
    }
}
