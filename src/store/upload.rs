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

const WRITE_BUFFER: usize = 256 * 1024;
/// Sealed payloads up to this size are stored inline in the database.
pub const INLINE_MAX: usize = 64 * 1024;
/// Payloads at least this large (or of unknown size) get the [`Pipeline::LARGE`] pipeline.
pub const LARGE_FROM: u64 = 8 << 20;

/// How deep one upload's pipeline (network, sealing thread, digests, spool writer) is, chosen
/// from the size the client announced. One large upload needs depth to keep both cores and the
/// disk busy at once; the many smaller uploads of a busy day keep the cores busy between them,
/// and what each holds is what limits how many the gateway can take (docs/benchmarks.md,
/// "Memory per upload").
#[derive(Debug, Clone, Copy)]
struct Pipeline {
    /// Batches that may wait between the network and the sealing thread. Bounded, so a fast
    /// client cannot fill memory faster than the disk drains it (backpressure reaches TCP).
    queue: usize,
    /// SHA-256 of the plaintext and of the sealed bytes on two helper threads, in parallel with
    /// encryption, so that one upload is not held to one core's speed (their queues hold about
    /// 450 KiB).
    parallel_digests: bool,
    /// Direct-IO buffers: their size, and how many (one being filled, one being written, and
    /// for a large upload a spare so that sealing runs ahead of a slow write).
    direct_buffer: usize,
    direct_buffers: usize,
}

impl Pipeline {
    const LARGE: Pipeline = Pipeline {
        queue: 2,
        parallel_digests: true,
        direct_buffer: 128 * 1024,
        direct_buffers: 3,
    };
    const COMPACT: Pipeline = Pipeline {
        queue: 1,
        parallel_digests: false,
        direct_buffer: 64 * 1024,
        direct_buffers: 2,
    };

    fn for_size(expected: Option<u64>) -> Pipeline {
        match expected {
            Some(n) if n < LARGE_FROM => Pipeline::COMPACT,
            _ => Pipeline::LARGE,
        }
    }
}

enum Msg {
    /// [`BATCH`] bytes of the payload (fewer at its end).
    Chunk(Bytes),
    Finish,
}

/// Bytes per hand-off to the sealing thread. The network's chunks are copied into batches
/// ([`crate::seal::Batch`]) rather than handed on: each of them keeps alive the whole buffer it
/// was cut from (the multipart parser's, often twice the chunk or more) until it is sealed,
/// which at 16 uploads in flight held about 200 KiB more per upload than the copy costs.
const BATCH: usize = 64 * 1024;

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
/// Used where direct IO is not available.
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

/// A buffer whose usable region starts on an [`DirectFile::ALIGN`] boundary.
struct Aligned {
    raw: Vec<u8>,
    start: usize,
}

impl Aligned {
    /// `size` is a multiple of [`DirectFile::ALIGN`].
    fn new(size: usize) -> Option<Aligned> {
        let raw = vec![0u8; size + DirectFile::ALIGN];
        let start = raw.as_ptr().align_offset(DirectFile::ALIGN);
        // Always true for a byte buffer; checked so that a surprise means no direct IO, not a
        // misaligned write.
        (start <= DirectFile::ALIGN).then_some(Aligned { raw, start })
    }

    fn region(&mut self, size: usize) -> &mut [u8] {
        &mut self.raw[self.start..self.start + size]
    }
}

enum ToWriter {
    Block(Aligned, usize),
    /// The last (padded) block if any, then truncate to the true length and fsync.
    Finish(Option<(Aligned, usize)>, u64),
}

/// The spool file written with direct IO (O_DIRECT): ciphertext goes from aligned buffers to
/// the disk without being copied into the page cache, which is most of the cost of writing a
/// large payload (and would fill the cache with data nobody reads soon). A writer thread does
/// the IO, so the sealing thread encrypts the next buffer while the disk takes the last one.
/// Writes are whole aligned blocks; the last block is padded and the file then truncated to its
/// true length.
struct DirectFile {
    current: Aligned,
    len: usize,
    total: u64,
    to_writer: std::sync::mpsc::SyncSender<ToWriter>,
    returned: std::sync::mpsc::Receiver<Aligned>,
    allocated: usize,
    /// Bytes per buffer (and per write), and how many buffers at most.
    buffer: usize,
    buffers: usize,
    /// `None` once joined (after it failed).
    writer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl DirectFile {
    /// Alignment and size unit of direct writes: covers 512-byte and 4 KiB logical blocks.
    const ALIGN: usize = 4096;

    /// Opens `path` (which must not exist) for direct IO, or `None` if the filesystem does not
    /// support it (tmpfs, for one).
    fn create(path: &Path, pipeline: Pipeline) -> std::io::Result<Option<DirectFile>> {
        let (buffer, buffers) = (pipeline.direct_buffer, pipeline.direct_buffers);
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path);
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let Some(current) = Aligned::new(buffer) else {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Ok(None);
        };
        let (to_writer, jobs) = std::sync::mpsc::sync_channel::<ToWriter>(buffers - 1);
        let (give_back, returned) = std::sync::mpsc::channel::<Aligned>();
        let writer = std::thread::Builder::new()
            .name("postern-spool-io".into())
            .spawn(move || {
                let mut write_block = |buf: &Aligned, n: usize| -> std::io::Result<()> {
                    let written = file.write(&buf.raw[buf.start..buf.start + n])?;
                    if written != n {
                        // A short direct write would leave the next one misaligned. A regular
                        // file is written short when its filesystem (or quota) runs out of
                        // space, which is how the caller must hear of it.
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::StorageFull,
                            format!(
                                "short direct write ({written} of {n} bytes): the disk is full"
                            ),
                        ));
                    }
                    Ok(())
                };
                for job in jobs {
                    match job {
                        ToWriter::Block(buf, n) => {
                            write_block(&buf, n)?;
                            let _ = give_back.send(buf);
                        }
                        ToWriter::Finish(tail, total) => {
                            if let Some((buf, n)) = tail {
                                write_block(&buf, n)?;
                            }
                            file.set_len(total)?;
                            return file.sync_all();
                        }
                    }
                }
                // Dropped without `finish`: the upload failed; the guard removes the file.
                Ok(())
            })?;
        Ok(Some(DirectFile {
            current,
            len: 0,
            total: 0,
            to_writer,
            returned,
            allocated: 1,
            buffer,
            buffers,
            writer: Some(writer),
        }))
    }

    /// The writer thread's own error, once it has stopped (it stops only on an error, or when
    /// told to finish): a full disk must reach the caller as itself, not as "stopped".
    fn writer_error(&mut self) -> std::io::Error {
        match self.writer.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => std::io::Error::other("the spool writer stopped"),
        }
    }

    fn writer_failed(mut self) -> std::io::Error {
        let (dead, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.to_writer, dead));
        self.writer_error()
    }

    fn next_buffer(&mut self) -> std::io::Result<Aligned> {
        if let Ok(b) = self.returned.try_recv() {
            return Ok(b);
        }
        if self.allocated < self.buffers {
            self.allocated += 1;
            return Aligned::new(self.buffer)
                .ok_or_else(|| std::io::Error::other("cannot align a buffer"));
        }
        match self.returned.recv() {
            Ok(b) => Ok(b),
            Err(_) => Err(self.writer_error()),
        }
    }

    /// Writes the rest, cuts the padding off and fsyncs.
    fn finish(mut self) -> std::io::Result<()> {
        let tail = if self.len > 0 {
            let padded = self.len.div_ceil(Self::ALIGN) * Self::ALIGN;
            let len = self.len;
            self.current.region(self.buffer)[len..padded].fill(0);
            let buf = std::mem::replace(
                &mut self.current,
                Aligned {
                    raw: Vec::new(),
                    start: 0,
                },
            );
            Some((buf, padded))
        } else {
            None
        };
        if self
            .to_writer
            .send(ToWriter::Finish(tail, self.total))
            .is_err()
        {
            return Err(self.writer_failed());
        }
        let (dead, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.to_writer, dead));
        match self.writer.take() {
            Some(w) => w
                .join()
                .map_err(|_| std::io::Error::other("the spool writer failed"))?,
            None => Err(std::io::Error::other("the spool writer stopped")),
        }
    }
}

impl Write for DirectFile {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.buffer - self.len;
        let n = room.min(data.len());
        let len = self.len;
        self.current.region(self.buffer)[len..len + n].copy_from_slice(&data[..n]);
        self.len += n;
        self.total += n as u64;
        if self.len == self.buffer {
            let next = self.next_buffer()?;
            let full = std::mem::replace(&mut self.current, next);
            self.len = 0;
            if self
                .to_writer
                .send(ToWriter::Block(full, self.buffer))
                .is_err()
            {
                return Err(self.writer_error());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Partial blocks can only be written at the end (see `finish`).
        Ok(())
    }
}

/// A spool file being written: directly where possible, through the page cache otherwise.
enum SpoolWriter {
    Direct(DirectFile),
    Buffered(BufWriter<WritebackFile>),
}

impl SpoolWriter {
    /// `direct` is the pipeline whose buffers a direct-IO file uses; `None` for the page cache.
    fn create(path: &Path, direct: Option<Pipeline>) -> std::io::Result<SpoolWriter> {
        if let Some(pipeline) = direct
            && let Some(d) = DirectFile::create(path, pipeline)?
        {
            return Ok(SpoolWriter::Direct(d));
        }
        let file = File::create_new(path)?;
        Ok(SpoolWriter::Buffered(BufWriter::with_capacity(
            WRITE_BUFFER,
            WritebackFile {
                file,
                written: 0,
                flushed_to: 0,
            },
        )))
    }

    /// Durability step 1: the sealed bytes are on disk before anything is recorded.
    fn finish(self) -> std::io::Result<()> {
        match self {
            SpoolWriter::Direct(d) => d.finish(),
            SpoolWriter::Buffered(b) => b.into_inner().map_err(|e| e.into_error())?.file.sync_all(),
        }
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            SpoolWriter::Direct(d) => d.write(data),
            SpoolWriter::Buffered(b) => b.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SpoolWriter::Direct(d) => d.flush(),
            SpoolWriter::Buffered(b) => b.flush(),
        }
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
        direct: Option<Pipeline>,
    },
    File {
        out: SpoolWriter,
        guard: SpoolFile,
    },
}

impl Sink {
    fn file(path: PathBuf, direct: Option<Pipeline>) -> std::io::Result<Sink> {
        let out = SpoolWriter::create(&path, direct)?;
        let guard = SpoolFile { path, keep: false };
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
            Sink::Memory { buf, path, direct } => {
                let mut spilled = Sink::file(path.clone(), *direct)?;
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
    batch: crate::seal::Batch,
}

impl SpoolUpload {
    /// Starts sealing for the given recipient; if the payload outgrows [`INLINE_MAX`] it goes to
    /// `path` (which must not exist). `expected` is the size the client announced, if any.
    pub fn start(path: PathBuf, recipient: age::x25519::Recipient, expected: Option<u64>) -> Self {
        Self::start_with(path, recipient, expected, true)
    }

    /// Stores bytes that are already sealed (for someone else: an inbox item), digesting them
    /// on the way; the summary's plaintext and sealed fields are then the same.
    pub fn start_store(path: PathBuf, expected: Option<u64>) -> Self {
        Self::spawn(path, None, expected, true)
    }

    /// As [`SpoolUpload::start`]; `direct` false forces the page-cache path (for tests).
    pub fn start_with(
        path: PathBuf,
        recipient: age::x25519::Recipient,
        expected: Option<u64>,
        direct: bool,
    ) -> Self {
        Self::spawn(path, Some(recipient), expected, direct)
    }

    fn spawn(
        path: PathBuf,
        recipient: Option<age::x25519::Recipient>,
        expected: Option<u64>,
        direct: bool,
    ) -> Self {
        let pipeline = Pipeline::for_size(expected);
        let direct = direct.then_some(pipeline);
        let (tx, mut rx) = mpsc::channel::<Msg>(pipeline.queue);
        let task = tokio::task::spawn_blocking(move || {
            let sink = match expected {
                Some(n) if n > INLINE_MAX as u64 => {
                    Sink::file(path, direct).map_err(SealError::Io)?
                }
                _ => Sink::Memory {
                    buf: Vec::new(),
                    path,
                    direct,
                },
            };
            let parallel = pipeline.parallel_digests;
            // Seal (ingest) or only digest (bytes already sealed for their recipient).
            // One per upload, on this thread's stack: the size difference does not matter.
            #[allow(clippy::large_enum_variant)]
            enum Processor {
                Seal(Sealer<Sink>),
                Store(crate::seal::Tee<Sink>),
            }
            let mut p = match &recipient {
                Some(r) => {
                    let recipients = [r as &dyn age::Recipient];
                    Processor::Seal(if parallel {
                        Sealer::with_parallel_digests(sink, recipients)?
                    } else {
                        Sealer::new(sink, recipients)?
                    })
                }
                None => {
                    Processor::Store(crate::seal::Tee::new(sink, parallel).map_err(SealError::Io)?)
                }
            };
            loop {
                match rx.blocking_recv() {
                    Some(Msg::Chunk(c)) => match &mut p {
                        Processor::Seal(s) => s.write_bytes(c)?,
                        Processor::Store(t) => t.write_bytes(c).map_err(SealError::Io)?,
                    },
                    Some(Msg::Finish) => break,
                    // The request went away before the end of the payload: nothing is kept
                    // (dropping the sink deletes a spilled file).
                    None => return Err(UploadError::Abandoned),
                }
            }
            let (sink, summary) = match p {
                Processor::Seal(s) => s.finish()?,
                Processor::Store(t) => {
                    let (sink, size, sha) = t.finish().map_err(SealError::Io)?;
                    (
                        sink,
                        SealSummary {
                            plaintext_size: size,
                            plaintext_sha256: sha,
                            sealed_size: size,
                            sealed_sha256: sha,
                        },
                    )
                }
            };
            let sealed = match sink {
                Sink::Memory { buf, .. } => Sealed::Inline(buf),
                Sink::File { out, guard } => {
                    out.finish().map_err(SealError::Io)?;
                    Sealed::File(guard)
                }
            };
            Ok((summary, sealed))
        });
        SpoolUpload {
            tx: Some(tx),
            task: Some(task),
            batch: crate::seal::Batch::expecting(BATCH, expected),
        }
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let (n, full) = self.batch.fill(rest);
            rest = &rest[n..];
            if let Some(batch) = full {
                self.send_batch(batch).await?;
            }
        }
        Ok(())
    }

    async fn send_batch(&mut self, batch: Bytes) -> Result<(), UploadError> {
        let Some(tx) = &self.tx else {
            return Err(UploadError::Lost);
        };
        if tx.send(Msg::Chunk(batch)).await.is_err() {
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
        if let Some(last) = self.batch.take() {
            self.send_batch(last).await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Seals `size` bytes written in `chunk`-sized pieces, announcing `announced` bytes.
    async fn seal_through(
        direct: bool,
        size: usize,
        announced: Option<u64>,
        chunk: usize,
    ) -> (Vec<u8>, Vec<u8>, bool, usize) {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::seal::SpoolKey::from_identity(age::x25519::Identity::generate());
        let path = dir.path().join("x.age");
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let mut up =
            SpoolUpload::start_with(path.clone(), key.recipient().clone(), announced, direct);
        for c in data.chunks(chunk) {
            up.write(Bytes::copy_from_slice(c)).await.unwrap();
        }
        let (summary, sealed) = up.finish().await.unwrap();
        let (bytes, in_file) = match sealed {
            Sealed::Inline(b) => (b, false),
            Sealed::File(f) => {
                let b = std::fs::read(f.path()).unwrap();
                f.keep();
                (b, true)
            }
        };
        assert_eq!(
            summary.sealed_size,
            bytes.len() as u64,
            "the file is exactly the sealed length"
        );
        let mut opened = Vec::new();
        crate::seal::open(&bytes[..], key.identity())
            .unwrap()
            .read_to_end(&mut opened)
            .unwrap();
        (data, opened, in_file, bytes.len())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_and_buffered_spool_files_open_to_the_payload() {
        // Sizes that end on, just after and just before the direct-IO block and buffer sizes.
        let (small, large) = (
            Pipeline::COMPACT.direct_buffer,
            Pipeline::LARGE.direct_buffer,
        );
        for size in [
            INLINE_MAX + 1,
            small,
            small + 1,
            3 * small - 5,
            large,
            large + 1,
            3 * large - 5,
            2_500_000,
            LARGE_FROM as usize + 100_001,
        ] {
            for direct in [true, false] {
                for declared in [true, false] {
                    let announced = declared.then_some(size as u64);
                    let (data, opened, in_file, _) =
                        seal_through(direct, size, announced, 100_000).await;
                    assert!(in_file, "size {size} spills to a file");
                    assert_eq!(
                        opened, data,
                        "size {size} direct {direct} declared {declared}"
                    );
                }
            }
        }
        // As TLS hands them over (16 KiB at most), and a client that announced half of what
        // it then sent.
        for direct in [true, false] {
            let size = 3 * Pipeline::COMPACT.direct_buffer + 12_345;
            for announced in [Some(size as u64), Some(size as u64 / 2)] {
                let (data, opened, in_file, _) =
                    seal_through(direct, size, announced, 16_384).await;
                assert!(in_file);
                assert_eq!(opened, data, "direct {direct} announced {announced:?}");
            }
        }
        let (data, opened, in_file, _) = seal_through(true, 1000, None, 100_000).await;
        assert!(!in_file);
        assert_eq!(opened, data);
    }

    /// The direct writer with lengths that end exactly on a buffer (no padded tail to write),
    /// just before and just after one, for both pipelines' buffers.
    #[test]
    fn the_direct_writer_keeps_exactly_what_it_was_given() {
        for pipeline in [Pipeline::COMPACT, Pipeline::LARGE] {
            let b = pipeline.direct_buffer;
            for len in [b, 2 * b, 3 * b, 2 * b - 1, 2 * b + 1, 5] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("x");
                let Some(mut f) = DirectFile::create(&path, pipeline).unwrap() else {
                    eprintln!("SKIPPED: no direct IO on this filesystem");
                    return;
                };
                let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
                for c in data.chunks(10_000) {
                    f.write_all(c).unwrap();
                }
                f.finish().unwrap();
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    data,
                    "buffer {b} length {len}"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_spilled_upload_leaves_no_file() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let key = crate::seal::SpoolKey::from_identity(age::x25519::Identity::generate());
            let path = dir.path().join("x.age");
            let mut up =
                SpoolUpload::start_with(path.clone(), key.recipient().clone(), None, direct);
            up.write(Bytes::from(vec![1u8; 3 * INLINE_MAX]))
                .await
                .unwrap();
            up.abort().await;
            assert!(!path.exists(), "direct {direct}");
        }
    }
}
