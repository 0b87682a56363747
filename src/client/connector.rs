//! The one way this crate opens an HTTPS connection: TCP by hyper-util's connector (every
//! address a name resolves to, IPv6 and IPv4 raced as "happy eyeballs" does, so a broken IPv6
//! route does not hang a delivery), without Nagle's delay; then TLS with rustls on ring
//! (`tls::client_config`: TLS 1.2+, the given roots, the identity presented), the server's name
//! checked against its certificate. [`super::connect`] holds one connection
//! over it; as a [`tower::Service`] it is the connector of hyper-util's pooled client, which the
//! delivery worker uses. So both kinds of client fail, and are classified, alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ClientError, Target};

/// Opens connections with one TLS configuration.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    tls: TlsConnector,
}

impl Connector {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        let mut tcp = HttpConnector::new();
        // A request goes out as headers then body chunks; waiting for the peer's delayed ACK
        // between them would add tens of milliseconds to each.
        tcp.set_nodelay(true);
        // The scheme is checked here (`Target`), and TLS is layered on below.
        tcp.enforce_http(false);
        Connector {
            tcp,
            tls: TlsConnector::from(config),
        }
    }

    /// A connection to `target`, its TLS handshake done. A refused or unreachable address is
    /// [`ClientError::Connect`]; a handshake that fails (either side's certificate) is
    /// [`ClientError::Handshake`], with the TLS error inside.
    pub async fn open(&self, target: &Target) -> Result<TlsIo, ClientError> {
        let addr = target.addr();
        let uri: hyper::Uri = format!("http://{addr}")
            .parse()
            .map_err(|_| ClientError::BadUrl(target.host.clone()))?;
        let tcp = tower::Service::call(&mut self.tcp.clone(), uri)
            .await
            .map_err(|e| ClientError::Connect {
                addr: addr.clone(),
                source: connect_io(e),
            })?
            .into_inner();
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| ClientError::BadUrl(target.host.clone()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Handshake { addr, source })?;
        Ok(TlsIo(TokioIo::new(tls)))
    }
}

impl tower::Service<hyper::Uri> for Connector {
    type Response = TlsIo;
    type Error = ClientError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsIo, ClientError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move {
            let target = Target::from_uri(&uri)?;
            connector.open(&target).await
        })
    }
}

/// The connect error as the socket's own `io::Error` (refused, unreachable, timed out), which is
/// how the failure is put in words and classified; hyper-util's wrapper says only "tcp connect
/// error".
fn connect_io(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()) {
        Some(io) => std::io::Error::new(io.kind(), io.to_string()),
        None => std::io::Error::other(e),
    }
}

/// A TLS connection as hyper reads and writes it.
pub struct TlsIo(TokioIo<TlsStream<TcpStream>>);

impl Connection for TlsIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for TlsIo {
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

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
