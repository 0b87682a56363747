//! Resealing for one recipient: the spool copy (sealed to the gateway's key) is opened and
//! sealed again to the recipient's keys only, as a stream, in a blocking thread; plaintext
//! exists only in that thread's buffers. For a `tls_only` email recipient the plaintext itself
//! is streamed (it is then sent only over verified TLS).

use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::envelope::RecipientEnvelope;
use crate::seal::{self, SealError, SealSummary, Sealer, SpoolKey};

/// Where the spool copy is.
pub enum Source {
    /// The sealed bytes as the store keeps them (a file, or chunks in the shared database),
    /// read on the resealing thread.
    Stored(Box<dyn Read + Send>),
    Inline(Vec<u8>),
}

/// What the recipient's copy is sealed to: its age recipients, or nothing (`tls_only`).
#[derive(Clone)]
pub enum Target {
    Recipients(Vec<age::x25519::Recipient>),
    Plaintext,
}

impl Target {
    pub fn parse(recipients: &[String], tls_only: bool) -> Result<Target, SealError> {
        if tls_only {
            return Ok(Target::Plaintext);
        }
        let parsed: Result<Vec<age::x25519::Recipient>, _> = recipients
            .iter()
            .map(|r| r.parse::<age::x25519::Recipient>())
            .collect();
        match parsed {
            Ok(v) if !v.is_empty() => Ok(Target::Recipients(v)),
            _ => Err(SealError::Io(io::Error::other(
                "the recipient has no usable age recipient",
            ))),
        }
    }
}

/// Sends what is written as chunks over a bounded channel (backpressure: the thread waits for
/// the network).
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: seal::Batch,
}

/// Bytes per chunk handed to the network. Each delivery in flight holds its queue of chunks,
/// one being filled and one being sent: 64 KiB keeps that near 200 KiB (at 256 KiB with a
/// queue of four it was about 1.5 MiB, a whole 1 MiB payload per delivery).
const CHUNK: usize = 64 * 1024;
/// Chunks waiting for the network: one, so that resealing runs a chunk ahead of it.
const QUEUE: usize = 1;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChannelWriter {
            tx,
            buf: seal::Batch::new(CHUNK),
        }
    }

    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::other("the receiving side went away"))
    }
}

impl Write for ChannelWriter {
    /// Takes all of `data` (age writes its header expecting that), sending each chunk as it
    /// fills.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let (n, full) = self.buf.fill(rest);
            rest = &rest[n..];
            if let Some(chunk) = full {
                self.send(chunk)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.buf.take() {
            Some(chunk) => self.send(chunk),
            None => Ok(()),
        }
    }
}

/// A resealed payload as a stream, and the thread producing it (which reports the size and
/// SHA-256 of what it streamed).
pub struct Resealed {
    pub chunks: mpsc::Receiver<io::Result<Bytes>>,
    pub done: JoinHandle<Result<SealSummary, SealError>>,
}

impl Resealed {
    pub fn into_stream(
        self,
    ) -> (
        impl futures_util::Stream<Item = io::Result<Bytes>> + Send + Sync + 'static,
        JoinHandle<Result<SealSummary, SealError>>,
    ) {
        let mut rx = self.chunks;
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        (stream, self.done)
    }
}

fn open_source(source: Source, key: &SpoolKey) -> Result<Box<dyn Read + Send>, SealError> {
    Ok(match source {
        Source::Stored(r) => Box::new(seal::open(r, key.identity())?),
        Source::Inline(b) => Box::new(seal::open(io::Cursor::new(b), key.identity())?),
    })
}

/// Starts resealing `source` for `target`.
pub fn payload(source: Source, key: Arc<SpoolKey>, target: Target) -> Resealed {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
    let done = tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let result: Result<SealSummary, SealError> = (|| {
            let mut plain = open_source(source, &key)?;
            let out = ChannelWriter::new(tx);
            // Small: the sealer (or the channel writer) gathers whole chunks itself.
            let mut buf = [0u8; 16 * 1024];
            match target {
                Target::Recipients(rs) => {
                    let mut sealer = Sealer::new(out, rs.iter().map(|r| r as &dyn age::Recipient))?;
                    loop {
                        let n = plain.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        sealer.write_all(&buf[..n])?;
                    }
                    let (mut out, summary) = sealer.finish()?;
                    out.flush()?;
                    Ok(summary)
                }
                Target::Plaintext => {
                    let mut tee = seal::Tee::new(out, false)?;
                    loop {
                        let n = plain.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        tee.write_all(&buf[..n])?;
                    }
                    let (_, size, sha) = tee.finish()?;
                    Ok(SealSummary {
                        plaintext_size: size,
                        plaintext_sha256: sha,
                        sealed_size: size,
                        sealed_sha256: sha,
                    })
                }
            }
        })();
        if let Err(e) = &result {
            // The body must fail too, or the receiving side would take a truncated stream for
            // a complete one.
            let _ = errors.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    Resealed { chunks: rx, done }
}

/// Collects a resealed payload in memory (email), refusing more than `max` bytes.
pub async fn collect(r: Resealed, max: u64) -> Result<(Vec<u8>, SealSummary), SealError> {
    let Resealed { mut chunks, done } = r;
    let mut out = Vec::new();
    while let Some(c) = chunks.recv().await {
        let c = c.map_err(SealError::Io)?;
        if (out.len() + c.len()) as u64 > max {
            return Err(SealError::Io(io::Error::other(format!(
                "the payload is larger than the email limit ({max} bytes)"
            ))));
        }
        out.extend_from_slice(&c);
    }
    let summary = done
        .await
        .map_err(|e| SealError::Io(io::Error::other(e.to_string())))??;
    Ok((out, summary))
}

/// Opens the spool copy of the envelope; returns it parsed and sealed for `target` (as JSON).
pub fn envelope(
    sealed: &[u8],
    key: &SpoolKey,
    target: &Target,
) -> Result<(RecipientEnvelope, Vec<u8>), SealError> {
    let mut json = zeroize::Zeroizing::new(Vec::new());
    seal::open(sealed, key.identity())?.read_to_end(&mut json)?;
    let parsed: RecipientEnvelope = serde_json::from_slice(&json).map_err(|e| {
        SealError::Io(io::Error::other(format!(
            "the spooled envelope is not valid: {e}"
        )))
    })?;
    let out = match target {
        Target::Recipients(rs) => {
            seal::seal_bytes(&json, rs.iter().map(|r| r as &dyn age::Recipient))?
        }
        Target::Plaintext => json.to_vec(),
    };
    Ok((parsed, out))
}
