//! The one way this crate opens an HTTPS connection: TCP without Nagle's delay, then TLS with
//! rustls on ring (`tls::client_config`: TLS 1.2+, the given roots, the identity presented),
//! the server's name checked against its certificate. [`super::connect`] holds one connection
//! over it; as a [`tower::Service`] it is the connector of hyper-util's pooled client, which the
//! delivery worker uses. So both kinds of client fail, and are classified, alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ClientError, Target};

/// Opens connections with one TLS configuration.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
}

impl Connector {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Connector {
            tls: TlsConnector::from(config),
        }
    }

    /// A connection to `target`, its TLS handshake done. A refused or unreachable address is
    /// [`ClientError::Connect`]; a handshake that fails (either side's certificate) is
    /// [`ClientError::Handshake`], with the TLS error inside.
    pub async fn open(&self, target: &Target) -> Result<TlsIo, ClientError> {
        let addr = target.addr();
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        // A request goes out as headers then body chunks; waiting for the peer's delayed ACK
        // between them would add tens of milliseconds to each.
        let _ = tcp.set_nodelay(true);
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
