//! Sealed payloads in PostgreSQL (`payload_chunks`, named `spool/<file>` and `inbox/<file>`
//! after the file a single node keeps): what the spool and inbox folders hold on a single node, here so that any node can deliver or hand out what another accepted. Written
//! in chunks of [`CHUNK`] bytes in the caller's transaction (committed with the transfer's rows,
//! as the spool file is fsync'd before them), read back chunk by chunk so a large payload is
//! never held whole. Only ever sealed bytes: nothing here decrypts.

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{PgError, Pool};

/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;

/// Stores what `source` yields under `name` (replacing nothing: a name is written once); its
/// size. `io` names the source in an error.
pub async fn put(
    tx: &tokio_postgres::Transaction<'_>,
    target: &str,
    name: &str,
    source: &mut (impl AsyncRead + Unpin),
) -> Result<u64, PutError> {
    let stmt = tx
        .prepare("INSERT INTO payload_chunks (name, n, data) VALUES ($1, $2, $3)")
        .await
        .map_err(|e| PgError::of(target, e))?;
    let mut total = 0u64;
    let mut n: i32 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Fill the chunk (a read may return less), so that every chunk but the last is full.
        let mut filled = 0;
        while filled < CHUNK {
            let read = source
                .read(buf.get_mut(filled..).unwrap_or_default())
                .await
                .map_err(PutError::Source)?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        // An empty payload is one empty chunk, so that it is still there to be read.
        if filled == 0 && n > 0 {
            break;
        }
        let data = buf.get(..filled).unwrap_or_default();
        tx.execute(&stmt, &[&name, &n, &data])
            .await
            .map_err(|e| PgError::of(target, e))?;
        total += filled as u64;
        n += 1;
        if filled < CHUNK {
            break;
        }
    }
    Ok(total)
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error(transparent)]
    Db(#[from] PgError),
    #[error("reading the payload: {0}")]
    Source(#[source] std::io::Error),
}

/// The payload stored under `name`, chunk by chunk. It must come to `size` bytes (what the
/// transfer's row records): a payload missing, or removed while it was being read (purged, or
/// acknowledged through another node), is an error, never a short or empty delivery.
pub fn get(pool: Pool, name: String, size: u64) -> impl Stream<Item = Result<Bytes, PgError>> {
    futures_util::stream::try_unfold(
        (pool, name, 0i32, 0u64, false),
        move |(pool, name, n, read, done)| async move {
            if done {
                return Ok(None);
            }
            let client = pool.get().await?;
            let row = client
                .query_opt(
                    "SELECT data FROM payload_chunks WHERE name = $1 AND n = $2",
                    &[&name, &n],
                )
                .await
                .map_err(|e| pool.err(e))?;
            drop(client);
            let data: Option<Vec<u8>> = match row {
                Some(r) => Some(r.try_get(0).map_err(|e| pool.err(e))?),
                None => None,
            };
            match data {
                Some(d) => {
                    let read = read + d.len() as u64;
                    if read > size {
                        return Err(short(&pool, &name, read, size));
                    }
                    // The last chunk is the one that completes the size (an empty payload
                    // is one empty chunk).
                    let last = read == size;
                    Ok(Some((Bytes::from(d), (pool, name, n + 1, read, last))))
                }
                None => Err(short(&pool, &name, read, size)),
            }
        },
    )
}

fn short(pool: &Pool, name: &str, read: u64, size: u64) -> PgError {
    PgError::Failed {
        target: pool.target().to_owned(),
        why: format!("the sealed payload {name} holds {read} bytes where {size} are recorded"),
    }
}

/// Removes the payload under `name` in the caller's transaction (after delivery and its grace
/// period, or an inbox acknowledgement); how many chunks there were.
pub async fn delete(
    tx: &tokio_postgres::Transaction<'_>,
    target: &str,
    name: &str,
) -> Result<u64, PgError> {
    tx.execute("DELETE FROM payload_chunks WHERE name = $1", &[&name])
        .await
        .map_err(|e| PgError::of(target, e))
}
