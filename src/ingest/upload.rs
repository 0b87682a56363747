//! Streaming a payload into the spool while it arrives: chunks go over a small bounded channel
//! to a blocking thread that seals them with age and writes the file, so network reading and
//! encryption overlap and memory stays flat whatever the payload size. Dropping the upload
//! before [`SpoolUpload::finish`] (a failed or abandoned request) deletes the partial file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::seal::{SealError, SealSummary, Sealer};

/// How many chunks may wait between the network and the sealing thread. Bounded, so a fast
/// client cannot fill memory faster than the disk drains it (backpressure reaches TCP).
const QUEUE: usize = 8;
const WRITE_BUFFER: usize = 256 * 1024;

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

pub struct SpoolUpload {
    tx: Option<mpsc::Sender<Msg>>,
    task: Option<JoinHandle<Result<SealSummary, UploadError>>>,
    path: PathBuf,
}

impl SpoolUpload {
    /// Starts sealing to `path` (which must not exist) for the given recipient.
    pub fn start(path: PathBuf, recipient: age::x25519::Recipient) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let file_path = path.clone();
        let task = tokio::task::spawn_blocking(move || {
            let guard = SpoolFile {
                path: file_path.clone(),
                keep: false,
            };
            let file = File::create_new(&file_path).map_err(SealError::Io)?;
            let mut sealer = Sealer::new(
                BufWriter::with_capacity(WRITE_BUFFER, file),
                [&recipient as &dyn age::Recipient],
            )?;
            loop {
                match rx.blocking_recv() {
                    Some(Msg::Chunk(c)) => sealer.write_all(&c)?,
                    Some(Msg::Finish) => break,
                    // The request went away before the end of the payload: nothing is kept.
                    None => return Err(UploadError::Abandoned),
                }
            }
            let (buffered, summary) = sealer.finish()?;
            let file = buffered
                .into_inner()
                .map_err(|e| SealError::Io(e.into_error()))?;
            // Durability step 1: the sealed bytes are on disk before anything is recorded.
            file.sync_all().map_err(SealError::Io)?;
            guard.keep();
            Ok(summary)
        });
        SpoolUpload {
            tx: Some(tx),
            task: Some(task),
            path,
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

    async fn join(&mut self) -> Result<SealSummary, UploadError> {
        self.tx = None;
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Err(UploadError::Lost)),
            None => Err(UploadError::Lost),
        }
    }

    /// Abandons the upload and waits until the partial file has been removed.
    pub async fn abort(mut self) {
        let _ = self.join().await;
    }

    /// Ends the payload: seals the final chunk and fsyncs the file. The returned [`SpoolFile`]
    /// deletes it again unless kept once its record is committed.
    pub async fn finish(mut self) -> Result<(SealSummary, SpoolFile), UploadError> {
        if let Some(tx) = &self.tx {
            tx.send(Msg::Finish).await.map_err(|_| UploadError::Lost)?;
        }
        let path = self.path.clone();
        let summary = self.join().await?;
        Ok((summary, SpoolFile { path, keep: false }))
    }
}

impl Drop for SpoolUpload {
    fn drop(&mut self) {
        // Closing the channel without `Finish` makes the thread delete the partial file.
        self.tx = None;
    }
}
