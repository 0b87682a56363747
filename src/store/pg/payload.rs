//! Sealed payloads in PostgreSQL (`payload_chunks`): what the spool and inbox folders hold on a
//! single node, here so that any node can deliver or hand out what another accepted. Written
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

/// The payload stored under `name`, chunk by chunk (nothing if there is none).
pub fn get(pool: Pool, name: String) -> impl Stream<Item = Result<Bytes, PgError>> {
    futures_util::stream::try_unfold((pool, name, 0i32), |(pool, name, n)| async move {
        let client = pool.get().await?;
        let row = client
            .query_opt(
                "SELECT data FROM payload_chunks WHERE name = $1 AND n = $2",
                &[&name, &n],
            )
            .await
            .map_err(|e| pool.err(e))?;
        drop(client);
        Ok(row.map(|r| {
            let data: Vec<u8> = r.get(0);
            (Bytes::from(data), (pool, name, n + 1))
        }))
    })
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
