//! Sealed payload files, wherever the store keeps them. A single node keeps them as files in its
//! spool and inbox folders. Nodes sharing PostgreSQL keep them in the database
//! (`payload_chunks`, named `spool/<file>` or `inbox/<file>`), so that any node can deliver, or
//! hand out, what another accepted.
//!
//! On a shared store an upload is still written (sealed, fsync'd) to the node's own folder
//! first, as on a single node. Then [`Store::stage`] copies it into the database under a name
//! of this node's (`staged/<node>/...`), in a transaction of its own, so that the copy of a
//! large payload does not hold the chain's head (which the transaction recording it locks).
//! The write job that records it renames the staged chunks to their name in the same
//! transaction as its rows ([`move_in`]) and removes the local copy. Nothing a node keeps
//! locally is needed by another; what a crash leaves in its folders, or staged in the database
//! under its name, is removed when it starts. Only sealed bytes are ever stored: nothing here
//! decrypts.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::db::{Db, Dialect, Value};
use super::pg::Pool;
use super::{Reading, Store, StoreError, io};

/// Which of a node's folders a payload file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// An accepted transfer's payload, until its deliveries are over.
    Spool,
    /// A received item's payload, until it is acknowledged.
    Inbox,
}

impl Area {
    /// The name of `file` in the database.
    fn name(self, file: &str) -> String {
        match self {
            Area::Spool => format!("spool/{file}"),
            Area::Inbox => format!("inbox/{file}"),
        }
    }
}

/// Where this node stages `file` of `area` in the database before the commit that records it.
pub(crate) fn staged_name(node: &str, area: Area, file: &str) -> String {
    format!("{}{}", staged_prefix(node), area.name(file))
}

/// Everything this node has staged.
pub(crate) fn staged_prefix(node: &str) -> String {
    format!("staged/{node}/")
}

/// Bytes per chunk in the database: large enough that a big payload is few rows, small enough
/// that one is never a burden to hold.
const CHUNK: usize = super::pg::payload::CHUNK;

/// The node's folders that uploads are written to before a shared store's commit moves them
/// into the database.
#[derive(Clone)]
pub(crate) struct Staged {
    pub spool: PathBuf,
    pub inbox: PathBuf,
    /// This node's name: what [`Store::stage`] copied in is under `staged/<node>/`.
    pub node: String,
}

impl Staged {
    fn dir(&self, area: Area) -> &Path {
        match area {
            Area::Spool => &self.spool,
            Area::Inbox => &self.inbox,
        }
    }
}

/// Moves the staged file `file` of `area` into the database, in the caller's transaction, and
/// removes the local copy (if the transaction then fails, the upload's owner answers with an
/// error: nothing was promised).
pub(crate) fn move_in(
    db: &dyn Db,
    staged: &Staged,
    area: Area,
    file: &str,
) -> Result<(), StoreError> {
    let path = staged.dir(area).join(file);
    let name = area.name(file);
    // Staged already (the usual way): renamed in this transaction, the data itself untouched.
    let renamed = db.execute(
        "UPDATE payload_chunks SET name = ?1 WHERE name = ?2",
        &[
            name.as_str().into(),
            staged_name(&staged.node, area, file).into(),
        ],
    )?;
    if renamed > 0 {
        std::fs::remove_file(&path).map_err(io(&path))?;
        return Ok(());
    }
    let mut f = std::fs::File::open(&path).map_err(io(&path))?;
    let mut buf = vec![0u8; CHUNK];
    let mut n: i64 = 0;
    loop {
        let filled = fill(&mut f, &mut buf).map_err(io(&path))?;
        // An empty payload is one empty chunk, so that it is still there to be read.
        if filled == 0 && n > 0 {
            break;
        }
        db.execute(
            "INSERT INTO payload_chunks (name, n, data) VALUES (?1, ?2, ?3)",
            &[
                name.as_str().into(),
                Value::Int(n),
                buf.get(..filled).unwrap_or_default().into(),
            ],
        )?;
        n += 1;
        if filled < CHUNK {
            break;
        }
    }
    std::fs::remove_file(&path).map_err(io(&path))?;
    Ok(())
}

/// Reads until `buf` is full or the source ends; how much was read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Deletes the payload `file` of `area` from the database in the caller's transaction (on a
/// single node's store the caller deletes the file once committed).
pub(crate) fn forget(db: &dyn Db, area: Area, file: &str) -> Result<(), StoreError> {
    if db.dialect() == Dialect::Postgres {
        db.execute(
            "DELETE FROM payload_chunks WHERE name = ?1",
            &[area.name(file).into()],
        )?;
    }
    Ok(())
}

impl Store {
    /// On a shared store, copies the sealed file `file` of `area` (written and fsync'd in the
    /// node's folder) into the database under this node's staging name, in a transaction of its
    /// own, ahead of the write job that records it. Nothing on a single node's store.
    pub async fn stage(&self, area: Area, file: &str) -> Result<(), StoreError> {
        let (Reading::Postgres(pool), Some(node)) = (&self.reader, &self.node) else {
            return Ok(());
        };
        let dir = match area {
            Area::Spool => &self.spool_dir,
            Area::Inbox => &self.inbox_dir,
        };
        let path = dir.join(file);
        let mut source = tokio::fs::File::open(&path).await.map_err(io(&path))?;
        let name = staged_name(node, area, file);
        let mut client = pool.get().await?;
        let tx = client.transaction().await.map_err(|e| pool.err(e))?;
        // A copy left by an attempt that failed part-way is replaced, never added to.
        tx.execute("DELETE FROM payload_chunks WHERE name = $1", &[&name])
            .await
            .map_err(|e| pool.err(e))?;
        super::pg::payload::put(&tx, pool.target(), &name, &mut source)
            .await
            .map_err(|e| match e {
                super::pg::payload::PutError::Db(e) => StoreError::Pg(e),
                super::pg::payload::PutError::Source(e) => StoreError::Io {
                    path: path.display().to_string(),
                    source: e,
                },
            })?;
        tx.commit().await.map_err(|e| pool.err(e))?;
        Ok(())
    }

    /// Removes what [`Store::stage`] copied in for `file` of `area` when the write job did not
    /// record it (a repeat, a replay, a failed commit). Best effort: what cannot be removed now
    /// is removed when the node next starts.
    pub async fn unstage(&self, area: Area, file: &str) {
        let (Reading::Postgres(pool), Some(node)) = (&self.reader, &self.node) else {
            return;
        };
        let name = staged_name(node, area, file);
        let removed = match pool.get().await {
            Ok(client) => client
                .execute("DELETE FROM payload_chunks WHERE name = $1", &[&name])
                .await
                .map_err(|e| pool.err(e)),
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, "could not remove a staged payload that was not recorded; it goes when the node next starts");
        }
    }

    /// The sealed bytes of the payload file `file` of `area`. Blocking: read it from a blocking
    /// thread. From the database it is read a chunk at a time, never held whole.
    pub fn open_payload(&self, area: Area, file: &str) -> Result<Box<dyn Read + Send>, StoreError> {
        match &self.reader {
            Reading::Sqlite(_) => {
                let dir = match area {
                    Area::Spool => &self.spool_dir,
                    Area::Inbox => &self.inbox_dir,
                };
                let path = dir.join(file);
                let f = std::fs::File::open(&path).map_err(io(&path))?;
                Ok(Box::new(f))
            }
            Reading::Postgres(pool) => Ok(Box::new(Chunks {
                pool: pool.clone(),
                handle: tokio::runtime::Handle::current(),
                name: area.name(file),
                next: 0,
                count: None,
                buf: Vec::new(),
                pos: 0,
            })),
        }
    }
}

/// What `open` gives, as a stream of bytes read on a blocking thread (a file, or chunks from the
/// database). An error ends the stream with that error, so that the receiving side sees a broken
/// transfer, never a truncated "complete" one.
pub fn read_stream(
    open: impl FnOnce() -> std::io::Result<Box<dyn Read + Send>> + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut input = match open() {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let chunk = bytes::Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A payload read from the database chunk by chunk, on a blocking thread.
struct Chunks {
    pool: Pool,
    handle: tokio::runtime::Handle,
    name: String,
    next: i32,
    /// How many chunks there are, read with the first: a chunk missing from the middle, or the
    /// payload removed while it was read (purged, acknowledged through another node), is an
    /// error, never a short read taken for the whole.
    count: Option<i64>,
    buf: Vec<u8>,
    pos: usize,
}

impl Chunks {
    fn fetch(&mut self) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        let (name, n, first) = (self.name.clone(), self.next, self.count.is_none());
        let (count, data) = self.handle.block_on(async move {
            let client = pool.get().await?;
            let count: Option<i64> = if first {
                let row = client
                    .query_one(
                        "SELECT COUNT(*) FROM payload_chunks WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .map_err(|e| pool.err(e))?;
                Some(row.try_get(0).map_err(|e| pool.err(e))?)
            } else {
                None
            };
            let row = client
                .query_opt(
                    "SELECT data FROM payload_chunks WHERE name = $1 AND n = $2",
                    &[&name, &n],
                )
                .await
                .map_err(|e| pool.err(e))?;
            let data: Option<Vec<u8>> = match row {
                Some(r) => Some(r.try_get(0).map_err(|e| pool.err(e))?),
                None => None,
            };
            Ok::<_, StoreError>((count, data))
        })?;
        if let Some(c) = count {
            if c == 0 {
                return Err(StoreError::Damaged(format!(
                    "the sealed payload {} is not in the database",
                    self.name
                )));
            }
            self.count = Some(c);
        }
        let total = self.count.unwrap_or(0);
        match data {
            Some(d) => {
                self.buf = d;
                self.pos = 0;
                self.next += 1;
                Ok(true)
            }
            None if i64::from(self.next) >= total => Ok(false),
            None => Err(StoreError::Damaged(format!(
                "the sealed payload {} lost chunk {} of {total} while it was read",
                self.name, self.next
            ))),
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.count.is_some_and(|c| i64::from(self.next) >= c) {
                return Ok(0);
            }
            if !self.fetch().map_err(std::io::Error::other)? {
                return Ok(0);
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let k = rest.len().min(out.len());
        out.get_mut(..k)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..k).unwrap_or_default());
        self.pos += k;
        Ok(k)
    }
}
