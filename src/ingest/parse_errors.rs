//! Problem answers for requests hyper cannot parse. A request whose head is not valid HTTP (a
//! malformed header, a request line hyper does not understand) never reaches a handler: hyper
//! answers it itself, with an empty `400 Bad Request` (or `431` when the headers are too large),
//! and closes the connection. Every other answer of this API is problem+json with a stable
//! `code`, so this stream, between hyper and TLS, recognises those bodiless answers as hyper
//! writes them and sends the problem document in their place.
//!
//! Only a write that is exactly such a head is replaced: every answer a handler makes has a
//! body (they are all problem documents or JSON), so nothing else matches.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::problem::{Problem, ProblemCode};

pub struct ProblemAnswers<S> {
    inner: S,
    /// A replacement being written: its bytes, how many are written, and the length of the
    /// write it replaces (reported to hyper once all of it is written).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ProblemAnswers<S> {
    pub fn new(inner: S) -> Self {
        ProblemAnswers {
            inner,
            pending: None,
        }
    }
}

/// The problem answer that replaces hyper's own bodiless answer in `head`, if it is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let (status, problem) = if head.starts_with(b"HTTP/1.1 400 Bad Request\r\n") {
        (
            "400 Bad Request",
            Problem::new(
                ProblemCode::MalformedRequest,
                "The request could not be read: its request line or one of its headers is not valid HTTP. Nothing was done.",
            ),
        )
    } else if head.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") {
        (
            "431 Request Header Fields Too Large",
            Problem::new(
                ProblemCode::HeadersTooLarge,
                "The request's headers are larger than this gateway accepts. Nothing was done.",
            ),
        )
    } else {
        return None;
    };
    // The whole head and nothing after it, saying it has no body.
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    let bodiless = lower
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w == b"\r\ncontent-length: 0\r\n");
    if !bodiless {
        return None;
    }
    let body = serde_json::to_vec(&problem).ok()?;
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<S: AsyncWrite + Unpin> ProblemAnswers<S> {
    /// Writes the pending replacement; ready with the length of the write it replaced.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, reported)) = &mut self.pending {
            if *written == bytes.len() {
                let n = *reported;
                self.pending = None;
                return Poll::Ready(Ok(n));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemAnswers<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemAnswers<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none()
            && let Some(r) = replacement(buf)
        {
            this.pending = Some((r, 0, buf.len()));
        }
        if this.pending.is_some() {
            return this.drive(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
            if let (Some(only), None) = (nonempty.next(), nonempty.next())
                && let Some(r) = replacement(only)
            {
                this.pending = Some((r, 0, only.len()));
            }
        }
        if this.pending.is_some() {
            return this.drive(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_some() {
            ready!(self.drive(cx))?;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_some() {
            ready!(self.drive(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_error_heads_are_replaced() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        let r = replacement(hyper_400).expect("replaced");
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\n"
            )
        );
        assert!(text.contains("\"code\":\"malformed_request\""));
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(
            String::from_utf8(replacement(hyper_431).unwrap())
                .unwrap()
                .contains("\"code\":\"headers_too_large\"")
        );
        // A handler's own answers always have a body.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 120\r\n\r\n";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}").is_none());
        assert!(replacement(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
