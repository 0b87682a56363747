//! Streaming a payload into the spool while it arrives: chunks go over a small bounded channel
//! to a blocking thread that seals them with age, so network reading and encryption overlap and
//! memory stays flat whatever the payload size.
//!
//! Where the sealed bytes go depends on their size. Up to [`INLINE_MAX`] they stay in memory
//! and are committed into the store in the same transaction as the transfer's records (one
//! fsync for a whole batch, no file to create, sync and later delete). Beyond that they spill
//! to a spool file, which is fsync'd before the records are committed. Either way plaintext
//! never touches disk, and dropping the upload before [`SpoolUpload::finish`] (a failed or
//! abandoned request) leaves nothing behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::seal::{SealError, SealSummary, Sealer};

/// How many chunks may wait between the network and the sealing thread. Bounded, so a fast
/// client cannot fill memory faster than the disk drains it (backpressure reaches TCP).
const QUEUE: usize = 8;
const WRITE_BUFFER: usize = 256 * 1024;
/// Sealed payloads up to this size are stored inline in the database.
pub const INLINE_MAX: usize = 64 * 1024;
/// Payloads at least this large hash on helper threads, in parallel with encryption.
pub const PARALLEL_DIGESTS_FROM: u64 = 1 << 20;

enum Msg {
    Chunk(Bytes),
    Finish,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("sealing failed: {0}")]
    Seal(#[from] SealError),
    #[error("the upload was abandoned")]
    Abandoned,
    #[error("the sealing thread stopped unexpectedly")]
    Lost,
}

/// The spool file, starting writeback as it grows. Without this, a large payload's pages are
/// all still dirty when the upload ends and the final fsync (before the 202) writes them all at
/// once; with it, the disk works while the network and the cipher do, and little is left.
struct WritebackFile {
    file: File,
    written: u64,
    flushed_to: u64,
}

impl WritebackFile {
    const STEP: u64 = 8 << 20;
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed_to >= Self::STEP {
            // Linux starts asynchronous writeback for DONTNEED (and drops the pages once clean:
            // the spool has no use for a cached copy of ciphertext). Advice only: errors ignored.
            let _ = rustix::fs::fadvise(
                &self.file,
                self.flushed_to,
                std::num::NonZeroU64::new(self.written - self.flushed_to),
                rustix::fs::Advice::DontNeed,
            );
            self.flushed_to = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A sealed file on disk that is deleted when dropped, unless kept.
pub struct SpoolFile {
    path: PathBuf,
    keep: bool,
}

impl SpoolFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file is now owned by a committed record.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove an unused spool file; the next start-up sweep will");
        }
    }
}

/// Where sealed bytes are going: memory until they outgrow [`INLINE_MAX`], then a file.
enum Sink {
    Memory {
        buf: Vec<u8>,
        path: PathBuf,
    },
    File {
        out: BufWriter<WritebackFile>,
        guard: SpoolFile,
    },
}

impl Sink {
    fn file(path: PathBuf) -> std::io::Result<Sink> {
        let file = File::create_new(&path)?;
        let guard = SpoolFile { path, keep: false };
        let out = BufWriter::with_capacity(
            WRITE_BUFFER,
            WritebackFile {
                file,
                written: 0,
                flushed_to: 0,
            },
        );
        Ok(Sink::File { out, guard })
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Memory { buf, .. } if buf.len() + data.len() <= INLINE_MAX => {
                buf.extend_from_slice(data);
                Ok(data.len())
            }
            Sink::Memory { buf, path } => {
                let mut spilled = Sink::file(path.clone())?;
                spilled.write_all(buf)?;
                *self = spilled;
                self.write(data)
            }
            Sink::File { out, .. } => out.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Memory { .. } => Ok(()),
            Sink::File { out, .. } => out.flush(),
        }
    }
}

/// A sealed payload, durable once its record commits.
pub enum Sealed {
    /// Small: the sealed bytes, to be committed with the records.
    Inline(Vec<u8>),
    /// Large: an fsync'd spool file, deleted unless kept after the commit.
    File(SpoolFile),
}

pub struct SpoolUpload {
    tx: Option<mpsc::Sender<Msg>>,
    task: Option<JoinHandle<Result<(SealSummary, Sealed), UploadError>>>,
}

impl SpoolUpload {
    /// Starts sealing for the given recipient; if the payload outgrows [`INLINE_MAX`] it goes to
    /// `path` (which must not exist). `expected` is the size the client announced, if any.
    pub fn start(path: PathBuf, recipient: age::x25519::Recipient, expected: Option<u64>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let sink = match expected {
                Some(n) if n > INLINE_MAX as u64 => Sink::file(path).map_err(SealError::Io)?,
                _ => Sink::Memory {
                    buf: Vec::new(),
                    path,
                },
            };
            let recipients = [&recipient as &dyn age::Recipient];
            let mut sealer = match expected {
                Some(n) if n < PARALLEL_DIGESTS_FROM => Sealer::new(sink, recipients)?,
                _ => Sealer::with_parallel_digests(sink, recipients)?,
            };
            loop {
                match rx.blocking_recv() {
                    Some(Msg::Chunk(c)) => sealer.write_bytes(c)?,
                    Some(Msg::Finish) => break,
                    // The request went away before the end of the payload: nothing is kept
                    // (dropping the sink deletes a spilled file).
                    None => return Err(UploadError::Abandoned),
                }
            }
            let (sink, summary) = sealer.finish()?;
            let sealed = match sink {
                Sink::Memory { buf, .. } => Sealed::Inline(buf),
                Sink::File { out, guard } => {
                    let file = out
                        .into_inner()
                        .map_err(|e| SealError::Io(e.into_error()))?
                        .file;
                    // Durability step 1: the sealed bytes are on disk before anything is recorded.
                    file.sync_all().map_err(SealError::Io)?;
                    Sealed::File(guard)
                }
            };
            Ok((summary, sealed))
        });
        SpoolUpload {
            tx: Some(tx),
            task: Some(task),
        }
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        let Some(tx) = &self.tx else {
            return Err(UploadError::Lost);
        };
        if tx.send(Msg::Chunk(chunk)).await.is_err() {
            // The thread stopped early: take its error.
            return Err(self.join().await.err().unwrap_or(UploadError::Lost));
        }
        Ok(())
    }

    async fn join(&mut self) -> Result<(SealSummary, Sealed), UploadError> {
        self.tx = None;
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Err(UploadError::Lost)),
            None => Err(UploadError::Lost),
        }
    }

    /// Abandons the upload and waits until any partial file has been removed.
    pub async fn abort(mut self) {
        let _ = self.join().await;
    }

    /// Ends the payload: seals the final chunk and, for a spool file, fsyncs it.
    pub async fn finish(mut self) -> Result<(SealSummary, Sealed), UploadError> {
        if let Some(tx) = &self.tx {
            tx.send(Msg::Finish).await.map_err(|_| UploadError::Lost)?;
        }
        self.join().await
    }
}

impl Drop for SpoolUpload {
    fn drop(&mut self) {
        // Closing the channel without `Finish` makes the thread discard what it has.
        self.tx = None;
    }
}
