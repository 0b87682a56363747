//! A lingering close for API connections. When the gateway refuses an upload early (too large,
//! refused by policy before the payload is read), it answers and closes while the client is
//! still sending. Closing a socket with unread data makes the kernel send a reset, and the
//! client, still writing, sees "broken pipe" instead of the answer. So the connection's final
//! shutdown first closes the gateway's side for writing, then reads and discards what the
//! client still sends, for a bounded time, as web servers do (nginx's `lingering_close`).
//!
//! It wraps the TCP stream under TLS: the TLS layer sends its close_notify, then calls this
//! shutdown.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The longest a closing connection is kept to drain the client's remaining upload.
const LINGER: Duration = Duration::from_secs(3);

pub struct Lingering {
    inner: TcpStream,
    /// Set once the write side is shut: the deadline for draining.
    draining: Option<Pin<Box<Sleep>>>,
}

impl Lingering {
    pub fn new(inner: TcpStream) -> Self {
        Lingering {
            inner,
            draining: None,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.draining.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.draining = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if let Some(deadline) = this.draining.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                // The client finished or went away: done.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
