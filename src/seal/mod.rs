//! age encryption at the gateway's edges. Ingest streams each payload through a [`Sealer`] to
//! the spool key as it arrives, so plaintext never touches disk; delivery opens the spool file
//! and reseals it for the recipient. The sealer also computes the SHA-256 digests and sizes
//! that go into the transfer log, in the same pass.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("cannot encrypt: {0}")]
    Encrypt(#[from] age::EncryptError),
    #[error("cannot decrypt: {0}")]
    Decrypt(#[from] age::DecryptError),
    #[error("`{path}` holds no age X25519 identity (an AGE-SECRET-KEY-1... line)")]
    NoIdentity { path: String },
    #[error("`{path}` already exists; refusing to overwrite a key")]
    Exists { path: String },
}

/// The gateway's own age key: payloads rest in the spool sealed to it.
pub struct SpoolKey {
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
}

impl std::fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpoolKey({})", self.recipient)
    }
}

impl SpoolKey {
    pub fn from_identity(identity: age::x25519::Identity) -> Self {
        let recipient = identity.to_public();
        SpoolKey {
            identity,
            recipient,
        }
    }

    /// Reads the first `AGE-SECRET-KEY-1...` line of an identity file (the format `age-keygen`
    /// writes; comments and blank lines are skipped).
    pub fn from_file(path: &Path) -> Result<Self, SealError> {
        let text = Zeroizing::new(std::fs::read_to_string(path)?);
        let identity = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .find_map(|l| age::x25519::Identity::from_str(l).ok())
            .ok_or_else(|| SealError::NoIdentity {
                path: path.display().to_string(),
            })?;
        Ok(Self::from_identity(identity))
    }

    pub fn recipient(&self) -> &age::x25519::Recipient {
        &self.recipient
    }

    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }
}

/// Generates a new X25519 identity and writes it as an age identity file, readable by its owner
/// only. Refuses to overwrite: replacing a key would strand everything sealed to the old one.
pub fn generate_identity_file(path: &Path) -> Result<age::x25519::Recipient, SealError> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let secret = identity.to_string();
    let body = Zeroizing::new(format!(
        "# created by postern\n# public key: {recipient}\n{}\n",
        secret.expose_secret()
    ));
    write_secret_file(path, body.as_bytes())?;
    Ok(recipient)
}

/// Creates a file with mode 0600, failing if it exists, and syncs it.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), SealError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => SealError::Exists {
            path: path.display().to_string(),
        },
        _ => SealError::Io(e),
    })?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// Sizes and SHA-256 digests of what was sealed, for the transfer log.
/// Gathers bytes into batches of exactly `size` bytes (fewer for the last), each its own
/// allocation, for the hand-offs between threads. A batch cut from a growing buffer would keep
/// the whole buffer (twice the batch, once grown) alive while it waits in a queue
/// (docs/benchmarks.md, "Memory per upload").
pub struct Batch {
    buf: Vec<u8>,
    size: usize,
    /// What the sender announced is still to come, if anything: a small payload's batch is
    /// only as large as the payload.
    announced_rest: Option<u64>,
}

impl Batch {
    pub fn new(size: usize) -> Self {
        Self::expecting(size, None)
    }

    /// As [`Batch::new`], expecting `announced` bytes in all.
    pub fn expecting(size: usize, announced: Option<u64>) -> Self {
        Batch {
            buf: Vec::new(),
            size,
            announced_rest: announced,
        }
    }

    /// Takes as much of `data` as fits in the batch; returns how much, and the batch once full.
    pub fn fill(&mut self, data: &[u8]) -> (usize, Option<bytes::Bytes>) {
        let n = (self.size - self.buf.len()).min(data.len());
        if self.buf.capacity() - self.buf.len() < n {
            // The first bytes: as many as are announced, up to a batch. More than announced:
            // what is needed (never past a batch), not a doubling.
            let want = match self.announced_rest {
                Some(r) if self.buf.capacity() == 0 => {
                    usize::try_from(r).unwrap_or(self.size).clamp(n, self.size)
                }
                Some(_) => self.buf.len() + n,
                None => self.size,
            };
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..n]);
        let full = if self.buf.len() == self.size {
            self.take()
        } else {
            None
        };
        (n, full)
    }

    /// The batch so far, if it holds anything.
    pub fn take(&mut self) -> Option<bytes::Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        let batch = std::mem::take(&mut self.buf);
        self.announced_rest = self
            .announced_rest
            .map(|r| r.saturating_sub(batch.len() as u64));
        Some(bytes::Bytes::from(batch))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealSummary {
    pub plaintext_size: u64,
    pub plaintext_sha256: [u8; 32],
    pub sealed_size: u64,
    pub sealed_sha256: [u8; 32],
}

/// A running SHA-256: computed inline, or on a thread of its own so that hashing a large payload
/// (twice: plaintext and sealed) overlaps with encrypting it instead of adding to it.
enum Digest256 {
    Inline(Sha256),
    Offloaded {
        tx: std::sync::mpsc::SyncSender<Vec<bytes::Bytes>>,
        done: std::thread::JoinHandle<[u8; 32]>,
        /// Chunks gathered into one message: one hand-off per batch, not per TLS record.
        batch: Vec<bytes::Bytes>,
        batched: usize,
        /// Borrowed data is copied here first (`update`).
        staging: Batch,
    },
}

/// How much data one hand-off to a digest thread carries.
const DIGEST_BATCH: usize = 64 * 1024;

impl Digest256 {
    fn inline() -> Self {
        Digest256::Inline(Sha256::new())
    }

    fn offloaded() -> io::Result<Self> {
        // Bounded: at most a few batches wait, so memory stays flat whatever the payload size.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<bytes::Bytes>>(2);
        let done = std::thread::Builder::new()
            .name("postern-digest".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for batch in rx {
                    for chunk in batch {
                        h.update(&chunk);
                    }
                }
                h.finalize().into()
            })?;
        Ok(Digest256::Offloaded {
            tx,
            done,
            batch: Vec::new(),
            batched: 0,
            staging: Batch::new(DIGEST_BATCH),
        })
    }

    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Digest256::Inline(h) => {
                h.update(data);
                Ok(())
            }
            Digest256::Offloaded { .. } => {
                let mut rest = data;
                while let Digest256::Offloaded { staging, .. } = self
                    && !rest.is_empty()
                {
                    let (n, full) = staging.fill(rest);
                    rest = &rest[n..];
                    if let Some(full) = full {
                        self.update_bytes(full)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn update_bytes(&mut self, data: bytes::Bytes) -> io::Result<()> {
        match self {
            Digest256::Inline(h) => {
                h.update(&data);
                Ok(())
            }
            Digest256::Offloaded {
                tx, batch, batched, ..
            } => {
                *batched += data.len();
                batch.push(data);
                if *batched >= DIGEST_BATCH {
                    *batched = 0;
                    tx.send(std::mem::take(batch))
                        .map_err(|_| io::Error::other("the digest thread stopped"))?;
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> io::Result<[u8; 32]> {
        match self {
            Digest256::Inline(h) => Ok(h.finalize().into()),
            Digest256::Offloaded {
                tx,
                done,
                mut batch,
                mut staging,
                ..
            } => {
                if let Some(last) = staging.take() {
                    batch.push(last);
                }
                if !batch.is_empty() {
                    tx.send(batch)
                        .map_err(|_| io::Error::other("the digest thread stopped"))?;
                }
                drop(tx);
                done.join()
                    .map_err(|_| io::Error::other("the digest thread failed"))
            }
        }
    }
}

/// Counts and hashes what passes through to the inner writer.
pub struct Tee<W> {
    inner: W,
    hash: Digest256,
    size: u64,
}

impl<W: Write> Tee<W> {
    /// `parallel`: hash on a helper thread (for large streams).
    pub fn new(inner: W, parallel: bool) -> io::Result<Self> {
        Ok(Tee {
            inner,
            hash: if parallel {
                Digest256::offloaded()?
            } else {
                Digest256::inline()
            },
            size: 0,
        })
    }

    /// Like `write_all`, without copying the chunk for an offloaded digest.
    pub fn write_bytes(&mut self, chunk: bytes::Bytes) -> io::Result<()> {
        self.inner.write_all(&chunk)?;
        self.size += chunk.len() as u64;
        self.hash.update_bytes(chunk)
    }

    /// The inner writer, the byte count and the SHA-256 of what passed.
    pub fn finish(mut self) -> io::Result<(W, u64, [u8; 32])> {
        self.inner.flush()?;
        let digest = self.hash.finish()?;
        Ok((self.inner, self.size, digest))
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n])?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streaming age encryption with digests of both sides.
pub struct Sealer<W: Write> {
    stream: age::stream::StreamWriter<Tee<W>>,
    plain: Digest256,
    size: u64,
}

impl<W: Write> Sealer<W> {
    /// Digests computed inline: right for small payloads.
    pub fn new<'a>(
        out: W,
        recipients: impl IntoIterator<Item = &'a dyn age::Recipient>,
    ) -> Result<Self, SealError> {
        Self::build(out, recipients, Digest256::inline(), Digest256::inline())
    }

    /// Digests computed on two helper threads: right for large payloads, where hashing twice
    /// would otherwise double the time the sealing thread needs.
    pub fn with_parallel_digests<'a>(
        out: W,
        recipients: impl IntoIterator<Item = &'a dyn age::Recipient>,
    ) -> Result<Self, SealError> {
        Self::build(
            out,
            recipients,
            Digest256::offloaded()?,
            Digest256::offloaded()?,
        )
    }

    fn build<'a>(
        out: W,
        recipients: impl IntoIterator<Item = &'a dyn age::Recipient>,
        plain: Digest256,
        sealed: Digest256,
    ) -> Result<Self, SealError> {
        let encryptor = age::Encryptor::with_recipients(recipients.into_iter())?;
        let tee = Tee {
            inner: out,
            hash: sealed,
            size: 0,
        };
        Ok(Sealer {
            stream: encryptor.wrap_output(tee)?,
            plain,
            size: 0,
        })
    }

    pub fn write_all(&mut self, chunk: &[u8]) -> Result<(), SealError> {
        self.plain.update(chunk)?;
        self.size += chunk.len() as u64;
        self.stream.write_all(chunk)?;
        Ok(())
    }

    /// Like [`Sealer::write_all`], without copying the chunk for an offloaded digest.
    pub fn write_bytes(&mut self, chunk: bytes::Bytes) -> Result<(), SealError> {
        self.size += chunk.len() as u64;
        self.stream.write_all(&chunk)?;
        self.plain.update_bytes(chunk)?;
        Ok(())
    }

    pub fn plaintext_size(&self) -> u64 {
        self.size
    }

    /// Writes the final authenticated chunk. Without this the file is truncated and will not
    /// open, so it is part of durability, not a formality.
    pub fn finish(self) -> Result<(W, SealSummary), SealError> {
        let mut tee = self.stream.finish()?;
        tee.flush()?;
        let summary = SealSummary {
            plaintext_size: self.size,
            plaintext_sha256: self.plain.finish()?,
            sealed_size: tee.size,
            sealed_sha256: tee.hash.finish()?,
        };
        Ok((tee.inner, summary))
    }
}

/// Seals a small value (an envelope) in memory.
pub fn seal_bytes<'a>(
    data: &[u8],
    recipients: impl IntoIterator<Item = &'a dyn age::Recipient>,
) -> Result<Vec<u8>, SealError> {
    let mut s = Sealer::new(Vec::with_capacity(data.len() + 256), recipients)?;
    s.write_all(data)?;
    Ok(s.finish()?.0)
}

/// Opens sealed bytes from a reader with one identity.
pub fn open<R: Read>(
    input: R,
    identity: &dyn age::Identity,
) -> Result<age::stream::StreamReader<BufReader<R>>, SealError> {
    let d = age::Decryptor::new_buffered(BufReader::new(input))?;
    Ok(d.decrypt(std::iter::once(identity))?)
}

/// Opens a sealed file.
pub fn open_file(
    path: &Path,
    identity: &dyn age::Identity,
) -> Result<age::stream::StreamReader<BufReader<File>>, SealError> {
    open(File::open(path)?, identity)
}

/// Reads an age recipients file (one `age1...` per line; `#` comments).
pub fn read_recipients<R: BufRead>(r: R) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for line in r.lines() {
        let line = line?;
        let l = line.trim();
        if !l.is_empty() && !l.starts_with('#') {
            out.push(l.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_exact_in_order_and_sized_to_what_is_announced() {
        let data: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let mut b = Batch::expecting(100, Some(30));
        let mut out = Vec::new();
        for piece in data.chunks(7) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, full) = b.fill(rest);
                rest = &rest[n..];
                out.extend(full);
            }
        }
        out.extend(b.take());
        assert!(b.take().is_none(), "taken once");
        let sizes: Vec<usize> = out.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(out.concat(), data);

        // The first allocation is what was announced, not a whole batch.
        let mut small = Batch::expecting(100, Some(30));
        assert_eq!(small.fill(&[1; 10]).0, 10);
        assert_eq!(small.buf.capacity(), 30);
    }

    #[test]
    fn sealed_data_opens_only_with_its_key_and_digests_match() {
        let key = SpoolKey::from_identity(age::x25519::Identity::generate());
        let other = age::x25519::Identity::generate();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = Sealer::new(Vec::new(), [key.recipient() as &dyn age::Recipient]).unwrap();
        for chunk in data.chunks(7_919) {
            s.write_all(chunk).unwrap();
        }
        let (sealed, summary) = s.finish().unwrap();
        assert_eq!(summary.plaintext_size, data.len() as u64);
        assert_eq!(
            summary.plaintext_sha256,
            <[u8; 32]>::from(Sha256::digest(&data))
        );
        assert_eq!(summary.sealed_size, sealed.len() as u64);
        assert_eq!(
            summary.sealed_sha256,
            <[u8; 32]>::from(Sha256::digest(&sealed))
        );
        assert!(
            !sealed
                .windows(64)
                .any(|w| data.windows(64).next() == Some(w)),
            "no plaintext in the sealed bytes"
        );

        let mut out = Vec::new();
        open(&sealed[..], key.identity())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert!(open(&sealed[..], &other).is_err());
    }

    /// Shares the written bytes with the test after the sealer is dropped.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parallel_digests_equal_inline_ones() {
        let key = SpoolKey::from_identity(age::x25519::Identity::generate());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut s =
            Sealer::with_parallel_digests(Vec::new(), [key.recipient() as &dyn age::Recipient])
                .unwrap();
        for chunk in data.chunks(100_003) {
            s.write_bytes(bytes::Bytes::copy_from_slice(chunk)).unwrap();
        }
        let (sealed, summary) = s.finish().unwrap();
        assert_eq!(
            summary.plaintext_sha256,
            <[u8; 32]>::from(Sha256::digest(&data))
        );
        assert_eq!(
            summary.sealed_sha256,
            <[u8; 32]>::from(Sha256::digest(&sealed))
        );
        let mut out = Vec::new();
        open(&sealed[..], key.identity())
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn an_unfinished_or_truncated_stream_does_not_open() {
        let key = SpoolKey::from_identity(age::x25519::Identity::generate());
        let out = Shared::default();
        let mut s = Sealer::new(out.clone(), [key.recipient() as &dyn age::Recipient]).unwrap();
        s.write_all(&[1u8; 200_000]).unwrap();
        drop(s); // as a crash would: finish() never called
        let partial = out.0.lock().unwrap().clone();
        assert!(partial.len() > 100_000, "full chunks were written");
        let mut buf = Vec::new();
        let r = open(&partial[..], key.identity())
            .and_then(|mut r| r.read_to_end(&mut buf).map_err(SealError::Io));
        assert!(r.is_err(), "an unfinished age file must fail to open");

        let sealed = seal_bytes(&[2u8; 1000], [key.recipient() as &dyn age::Recipient]).unwrap();
        let mut buf = Vec::new();
        let r = open(&sealed[..sealed.len() - 1], key.identity())
            .and_then(|mut r| r.read_to_end(&mut buf).map_err(SealError::Io));
        assert!(r.is_err(), "a truncated age file must fail to open");
    }

    #[test]
    fn identity_files_round_trip_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/spool.age");
        let recipient = generate_identity_file(&path).unwrap();
        let key = SpoolKey::from_file(&path).unwrap();
        assert_eq!(key.recipient().to_string(), recipient.to_string());
        assert!(matches!(
            generate_identity_file(&path),
            Err(SealError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(dir.path().join("empty"), "# nothing\n").unwrap();
        assert!(matches!(
            SpoolKey::from_file(&dir.path().join("empty")),
            Err(SealError::NoIdentity { .. })
        ));
    }
}
