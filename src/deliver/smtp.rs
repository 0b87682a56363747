//! The connections to one SMTP relay, opened by this gateway itself: the email channel's
//! transport under [`super::email`]. lettre 0.11 (its newest release) leaves Nagle's algorithm on
//! for the connections it opens, so every SMTP command waits for the relay's delayed ACK; here
//! the TCP connection is opened with `TCP_NODELAY` and handed to lettre's SMTP client, which
//! speaks the protocol. TLS stays required and verified as before: STARTTLS through lettre
//! with the relay's `TlsParameters` (the relay must offer it), or implicit TLS through rustls
//! with the same roots. A connection is reused for at most [`MAX_AGE`], and never after
//! [`RelayPool::drop_idle`] (a reload): a change at the relay (a new certificate, STARTTLS no
//! longer offered) is met by a new handshake soon, not by an old connection.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a connection is reused for, from when it was opened.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Idle connections kept per relay (as many as deliveries run at once, at most).
const MAX_IDLE: usize = 16;

/// How long closing a connection politely (QUIT) may take before it is simply dropped.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// How TLS is required with a relay.
pub enum RelayTls {
    /// Plain TCP, then STARTTLS before anything else; a relay that does not offer it is refused.
    StartTls(TlsParameters),
    /// TLS from the first byte, verified against the same roots.
    Implicit(Arc<rustls::ClientConfig>),
}

/// Why a message did not go through one relay.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay answered with an error reply, or lettre refused to go on (no STARTTLS).
    #[error("{0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The connection or the implicit TLS handshake failed (rustls errors arrive inside).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The relay did not answer in time.
    #[error("the relay did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

impl SendError {
    /// An SMTP reply: the relay's verdict on this message, not on the connection.
    pub fn is_reply(&self) -> bool {
        matches!(self, SendError::Smtp(e) if e.is_permanent() || e.is_transient())
    }
}

struct Pooled {
    conn: AsyncSmtpConnection,
    opened: Instant,
    generation: u64,
}

pub struct RelayPool {
    host: String,
    port: u16,
    tls: RelayTls,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<Pooled>>,
    /// Bumped by [`RelayPool::drop_idle`]: connections of an earlier generation are not reused.
    generation: AtomicU64,
}

impl RelayPool {
    pub fn new(
        host: String,
        port: u16,
        tls: RelayTls,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Self {
        RelayPool {
            host,
            port,
            tls,
            credentials,
            timeout,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Sends one message, once: over a kept connection known to be alive, else a new one.
    /// Once the message has started, a failure is returned as it is (never sent again here:
    /// the relay may have taken it; the delivery's own retry decides).
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        let mut p = match self.ready().await {
            Some(p) => p,
            None => self.open().await?,
        };
        match self.transmit(&mut p, envelope, message).await {
            Ok(r) => {
                self.checkin(p);
                Ok(r)
            }
            // A timed-out connection is in an unknown state: dropped, not spoken to.
            Err(e @ SendError::Timeout(_)) => Err(e),
            Err(e) => {
                close(p).await;
                Err(e)
            }
        }
    }

    /// A kept connection that is young enough and still answers (NOOP: relays close idle
    /// connections, or after a number of messages, and a message must not be sent into one
    /// that is gone); the ones that do not are dropped.
    async fn ready(&self) -> Option<Pooled> {
        while let Some(mut p) = self.checkout() {
            if tokio::time::timeout(self.timeout, p.conn.test_connected())
                .await
                .unwrap_or(false)
            {
                return Some(p);
            }
            // No time limit is left to honour: the connection is simply dropped.
        }
        None
    }

    /// Forgets every idle connection and every one in use (they are closed, not reused): after
    /// a reload, the next message opens a new connection and handshake.
    pub fn drop_idle(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// The newest idle connection still young enough, dropping the stale ones.
    fn checkout(&self) -> Option<Pooled> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|p| p.generation == generation && p.opened.elapsed() < MAX_AGE);
        idle.pop()
    }

    fn checkin(&self, p: Pooled) {
        if p.generation != self.generation.load(Ordering::SeqCst)
            || p.opened.elapsed() >= MAX_AGE
            || p.conn.has_broken()
        {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(p);
        }
    }

    /// The message over one connection, within a time that grows with its size (a large
    /// message to a slow relay is not cut off at the per-command timeout).
    async fn transmit(
        &self,
        p: &mut Pooled,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, SendError> {
        let extra = u32::try_from(message.len() / (8 << 20)).unwrap_or(u32::MAX);
        let limit = self.timeout.saturating_mul(extra.saturating_add(1));
        tokio::time::timeout(limit, p.conn.send(envelope, message))
            .await
            .map_err(|_| SendError::Timeout(limit))?
            .map_err(SendError::from)
    }

    async fn open(&self) -> Result<Pooled, SendError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            // The reason this module exists: each SMTP command is a small write that must
            // not wait for the previous one's ACK.
            tcp.set_nodelay(true)?;
            let mut conn = match &self.tls {
                RelayTls::StartTls(params) => {
                    let mut c =
                        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                            .await?;
                    c.starttls(params.clone(), &self.hello).await?;
                    c
                }
                RelayTls::Implicit(config) => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await?;
                    AsyncSmtpConnection::connect_with_transport(
                        Box::new(TlsStream(tls)),
                        &self.hello,
                    )
                    .await?
                }
            };
            if let Some(c) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, c).await?;
            }
            Ok::<_, SendError>(conn)
        };
        let conn = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))??;
        Ok(Pooled {
            conn,
            opened: Instant::now(),
            generation,
        })
    }
}

/// Says QUIT and closes, or gives up after [`CLOSE_WITHIN`] (a relay that stalled).
async fn close(mut p: Pooled) {
    let _ = tokio::time::timeout(CLOSE_WITHIN, p.conn.abort()).await;
}

/// A client TLS stream in the form lettre's SMTP client takes a stream it did not open.
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}
