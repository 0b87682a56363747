//! The client side of the API, over mutual TLS: what `postern send` uses (the way a small
//! organisation without its own system shares), what the load generator drives, and what the
//! integration tests call. The payload is streamed from its source into a multipart body; it is
//! never held whole in memory.
//!
//! Every HTTPS connection this crate opens comes from [`Connector`]: [`connect`] holds one (a
//! command's conversation with one gateway, a test's known connection, one of the load
//! generator's), and the delivery worker pools them with hyper-util's client over the same
//! connector.

mod connector;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;

pub use crate::tls::{Identity, PemError, client_config as tls_config, read_roots};
pub use connector::{Connector, TlsIo};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("`{0}` is not an https:// URL with a host")]
    BadUrl(String),
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The system random number generator failed: no unpredictable multipart boundary can be
    /// made (a predictable one lets a payload close the part early).
    #[error("the system random number generator failed")]
    Random,
}

/// Where to connect: host and port from an `https://` base URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| ClientError::BadUrl(url.to_owned()))?;
        Self::from_uri(&uri)
    }

    /// Host and port of an `https://` URI (a `BadUrl` for any other scheme).
    pub fn from_uri(uri: &hyper::Uri) -> Result<Self, ClientError> {
        let url = || uri.to_string();
        if uri.scheme_str() != Some("https") {
            return Err(ClientError::BadUrl(url()));
        }
        let host = uri.host().ok_or_else(|| ClientError::BadUrl(url()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Target {
            host,
            port: uri.port_u16().unwrap_or(443),
        })
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

pub type Body = BoxBody<Bytes, std::io::Error>;

/// An HTTP/1.1 connection over mutual TLS, reused for many requests.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Body>,
    authority: String,
    /// Cancelled when the task driving the connection ends. hyper can lose a request handed
    /// to it just as the connection fails (the request lands in its queue after the driver
    /// has drained it for the last time), and its answer then never comes: waiting for this
    /// as well turns that into an error instead of a wait without end.
    closed: tokio_util::sync::CancellationToken,
}

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// One connection to `target`, over [`Connector`].
pub async fn connect(
    target: &Target,
    config: Arc<rustls::ClientConfig>,
) -> Result<Connection, ClientError> {
    let io = Connector::new(config).open(target).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let closed = tokio_util::sync::CancellationToken::new();
    let driver_done = closed.clone().drop_guard();
    tokio::spawn(async move {
        let _done = driver_done;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "client connection ended");
        }
    });
    Ok(Connection {
        sender,
        authority: target.addr(),
        closed,
    })
}

/// The envelope and payload of one transfer, as a multipart/form-data body.
pub struct Submission<S> {
    pub envelope_json: Bytes,
    pub payload: S,
    /// The payload's length, if known: lets the body carry a Content-Length.
    pub payload_len: Option<u64>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
}

fn quote(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| {
            if c == '"' || c == '\\' {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

fn boundary() -> Result<String, ClientError> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| ClientError::Random)?;
    Ok(format!("postern-{}", hex::encode(b)))
}

impl Connection {
    /// Sends a request and waits for the answer's head, or fails if the connection ends first.
    async fn request(
        &mut self,
        req: hyper::Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        self.sender.ready().await?;
        tokio::select! {
            // An answer the connection delivered before it ended still counts.
            biased;
            r = self.sender.send_request(req) => Ok(r?),
            () = self.closed.cancelled() => Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the connection closed before an answer came",
            ))),
        }
    }

    async fn send(&mut self, req: hyper::Request<Body>) -> Result<Answer, ClientError> {
        let resp = self.request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// `POST /v1/transfers`, streaming the payload.
    pub async fn submit<S>(&mut self, s: Submission<S>) -> Result<Answer, ClientError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    {
        let payload_part = Part {
            name: "payload",
            file_name: s.file_name.clone(),
            content_type: s
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        };
        let envelope_part = Part {
            name: "envelope",
            file_name: None,
            content_type: "application/json".into(),
        };
        let m = multipart(
            vec![(envelope_part, s.envelope_json)],
            payload_part,
            s.payload,
            s.payload_len,
        )?;
        let mut req = hyper::Request::post("/v1/transfers")
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, m.content_type);
        if let Some(len) = m.length {
            req = req.header(hyper::header::CONTENT_LENGTH, len);
        }
        if let Some(k) = &s.idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let req = req.body(m.body)?;
        self.send(req).await
    }

    /// A POST of a multipart body (the web pages' share form), with extra headers.
    pub async fn post_multipart(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        m: Multipart,
    ) -> Result<Answer, ClientError> {
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, m.content_type);
        if let Some(len) = m.length {
            req = req.header(hyper::header::CONTENT_LENGTH, len);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(m.body)?).await
    }

    /// A GET of an API path, e.g. `/v1/transfers/{id}`.
    pub async fn get(&mut self, path: &str) -> Result<Answer, ClientError> {
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.authority)
            .body(BodyExt::boxed(
                Full::new(Bytes::new()).map_err(|never| match never {}),
            ))?;
        self.send(req).await
    }

    /// A POST of a JSON body (a decision not to share, a rationale), with an Idempotency-Key
    /// if given.
    pub async fn post_json(
        &mut self,
        path: &str,
        json: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(k) = idempotency_key {
            headers.push(("idempotency-key", k));
        }
        self.raw("POST", path, &headers, json).await
    }

    /// A POST without a body (e.g. acknowledging an inbox item).
    pub async fn post_empty(&mut self, path: &str) -> Result<Answer, ClientError> {
        self.raw("POST", path, &[], Bytes::new()).await
    }

    /// A GET whose body is streamed into `out` when the answer is 200; any other answer is
    /// returned whole (a problem document) and nothing is written.
    pub async fn download<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        path: &str,
        out: &mut W,
    ) -> Result<Answer, ClientError> {
        self.download_with(path, &[], out).await
    }

    /// As [`Connection::download`], with extra request headers (a session cookie).
    pub async fn download_with<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        out: &mut W,
    ) -> Result<Answer, ClientError> {
        use tokio::io::AsyncWriteExt;
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, &self.authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(BodyExt::boxed(
            Full::new(Bytes::new()).map_err(|never| match never {}),
        ))?;
        let resp = self.request(req).await?;
        let (parts, mut body) = resp.into_parts();
        if parts.status != hyper::StatusCode::OK {
            let body = body.collect().await?.to_bytes();
            return Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            });
        }
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        Ok(Answer {
            status: 200,
            headers: parts.headers,
            body: Bytes::new(),
        })
    }

    /// Any request with a fixed body (used by tests for malformed input).
    pub async fn raw(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(BodyExt::boxed(
            Full::new(body).map_err(|never| match never {}),
        ))?;
        self.send(req).await
    }
}

/// One part of a multipart/form-data body.
pub struct Part {
    pub name: &'static str,
    pub file_name: Option<String>,
    pub content_type: String,
}

/// A multipart/form-data body, ready to send.
pub struct Multipart {
    /// The Content-Type header value, with its boundary.
    pub content_type: String,
    /// The whole body's length, when the streamed part's length is known.
    pub length: Option<u64>,
    pub body: Body,
}

fn part_header(b: &str, p: &Part, first: bool) -> String {
    let file_name = p
        .file_name
        .as_deref()
        .map(|f| format!("; filename=\"{}\"", quote(f)))
        .unwrap_or_default();
    format!(
        "{}--{b}\r\nContent-Disposition: form-data; name=\"{}\"{file_name}\r\nContent-Type: {}\r\n\r\n",
        if first { "" } else { "\r\n" },
        p.name,
        quote(&p.content_type)
    )
}

/// Builds a multipart body: the `fixed` parts in order, then `last`, streamed. Fails only if no
/// random boundary can be made.
pub fn multipart<S>(
    fixed: Vec<(Part, Bytes)>,
    last: Part,
    stream_body: S,
    last_len: Option<u64>,
) -> Result<Multipart, ClientError>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
{
    let b = boundary()?;
    let mut head: Vec<Bytes> = Vec::new();
    for (i, (part, bytes)) in fixed.into_iter().enumerate() {
        head.push(Bytes::from(part_header(&b, &part, i == 0)));
        head.push(bytes);
    }
    let first = head.is_empty();
    head.push(Bytes::from(part_header(&b, &last, first)));
    let tail = Bytes::from(format!("\r\n--{b}--\r\n"));
    let fixed_len: u64 = head.iter().map(|x| x.len() as u64).sum::<u64>() + tail.len() as u64;
    let body = stream::iter(head.into_iter().map(Ok))
        .chain(stream_body)
        .chain(stream::iter([Ok(tail)]))
        .map(|r| r.map(Frame::data));
    Ok(Multipart {
        content_type: format!("multipart/form-data; boundary={b}"),
        length: last_len.map(|n| fixed_len + n),
        body: BodyExt::boxed(StreamBody::new(body)),
    })
}

/// Streams a file in large chunks.
pub async fn file_stream(
    path: &Path,
) -> std::io::Result<(
    impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    u64,
)> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    Ok((
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
        len,
    ))
}
