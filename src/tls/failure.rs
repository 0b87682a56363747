//! Why a TLS handshake or connection failed, in a bounded vocabulary: what the API listener's
//! metrics count handshakes by, and what the delivery worker reads a failed attempt's cause from.

/// Why a TLS handshake on the API listener failed. A bounded set: each is a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client presented no certificate.
    NoClientCertificate,
    /// The client's certificate was not issued by a trusted CA.
    UnknownCa,
    /// A trusted certificate that maps to no registered organisation or peer (or to several).
    UnknownIdentity,
    Revoked,
    /// Expired, or not yet valid.
    Expired,
    /// Any other certificate problem (bad signature, wrong purpose, bad encoding...).
    BadCertificate,
    /// The client sent an alert: usually it does not trust this gateway's certificate.
    PeerAlert,
    /// Not TLS, or TLS this gateway does not speak (versions, cipher suites, bad messages).
    Protocol,
    /// The client closed or reset the connection mid-handshake (port scans, TCP health checks).
    Closed,
    /// Another I/O error.
    Io,
    /// The handshake did not finish within `limits.handshake_timeout`.
    Timeout,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 11] = [
        Self::NoClientCertificate,
        Self::UnknownCa,
        Self::UnknownIdentity,
        Self::Revoked,
        Self::Expired,
        Self::BadCertificate,
        Self::PeerAlert,
        Self::Protocol,
        Self::Closed,
        Self::Io,
        Self::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoClientCertificate => "no_client_certificate",
            Self::UnknownCa => "unknown_ca",
            Self::UnknownIdentity => "unknown_identity",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::BadCertificate => "bad_certificate",
            Self::PeerAlert => "peer_alert",
            Self::Protocol => "protocol",
            Self::Closed => "closed",
            Self::Io => "io",
            Self::Timeout => "timeout",
        }
    }

    /// Classifies the error a TLS accept (tokio-rustls) failed with. rustls errors arrive
    /// wrapped in an `io::Error`; anything else is the connection itself failing.
    pub fn classify(e: &std::io::Error) -> Self {
        if let Some(tls) = find_tls_error(e) {
            return Self::of_tls(tls);
        }
        use std::io::ErrorKind as K;
        match e.kind() {
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                Self::Closed
            }
            K::TimedOut => Self::Timeout,
            _ => Self::Io,
        }
    }

    pub fn of_tls(e: &rustls::Error) -> Self {
        use rustls::CertificateError as C;
        match e {
            rustls::Error::NoCertificatesPresented => Self::NoClientCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                // A bad signature is what a certificate from an untrusted CA that happens to
                // share a trusted CA's name gets: either way, not issued by a CA we trust.
                C::UnknownIssuer | C::BadSignature => Self::UnknownCa,
                // What the registry check in `tls::server` refuses with.
                C::ApplicationVerificationFailure => Self::UnknownIdentity,
                C::Revoked => Self::Revoked,
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => Self::Expired,
                _ => Self::BadCertificate,
            },
            rustls::Error::AlertReceived(_) => Self::PeerAlert,
            _ => Self::Protocol,
        }
    }
}

/// A TLS failure in a person's words, for a delivery's timeline, naming the other side
/// (`them`: "the relay", "the endpoint"). The cause code beside it says the same for machines.
pub fn in_words(e: &rustls::Error, them: &str) -> String {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => format!("{them}'s certificate is not valid for the name this gateway connected to"),
        rustls::Error::InvalidCertificate(_) => match HandshakeFailure::of_tls(e) {
            HandshakeFailure::UnknownCa => {
                format!("{them}'s certificate was not issued by a CA this gateway trusts for it")
            }
            HandshakeFailure::Revoked => format!("{them}'s certificate has been revoked"),
            HandshakeFailure::Expired => {
                format!("{them}'s certificate has expired or is not yet valid")
            }
            _ => format!("{them}'s certificate could not be verified"),
        },
        rustls::Error::NoCertificatesPresented => format!("{them} presented no certificate"),
        rustls::Error::AlertReceived(A::CertificateRevoked) => {
            format!("{them} says this gateway's certificate is revoked")
        }
        rustls::Error::AlertReceived(A::CertificateExpired) => {
            format!("{them} says this gateway's certificate has expired")
        }
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied
            | A::DecryptError,
        ) => format!("{them} refused this gateway's certificate"),
        rustls::Error::AlertReceived(A::ProtocolVersion | A::HandshakeFailure) => format!(
            "{them} and this gateway share no TLS version or cipher suite (TLS 1.2 or later is required)"
        ),
        _ => format!("{them} and this gateway could not agree a TLS connection"),
    };
    format!("TLS handshake failed: {why}")
}

/// A connection failure in a person's words, naming the other side.
pub fn io_in_words(e: &std::io::Error, them: &str) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => format!("{them} refused the connection (is it listening?)"),
        K::TimedOut => format!("the connection to {them} timed out"),
        K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
            format!("{them} closed the connection")
        }
        K::AddrNotAvailable | K::HostUnreachable | K::NetworkUnreachable => {
            format!("{them} cannot be reached from this gateway's network")
        }
        _ => format!("{them} could not be reached: {e}"),
    }
}

/// The I/O error somewhere in an error's chain, if there is one.
pub fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = err.source();
    }
    None
}

/// The TLS error somewhere in an error's chain, if there is one. Libraries wrap rustls errors
/// in `io::Error`s (sometimes twice), and `io::Error::source` skips the wrapped error itself,
/// so each `io::Error` is opened with `get_ref` as well as followed by `source`.
pub fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut pending = vec![e];
    while let Some(err) = pending.pop() {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(inner);
        }
        if let Some(next) = err.source() {
            pending.push(next);
        }
    }
    None
}
