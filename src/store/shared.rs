//! The store of one node among several, on the shared PostgreSQL database: the same [`Store`]
//! handle as over SQLite (the same write jobs, the same reads), with a writer whose group
//! commit is one PostgreSQL transaction. Each batch locks the chain's head row (`log_head`,
//! `FOR UPDATE`) for the length of its transaction, so that the nodes' appends are serialised
//! into one chain and a batch that rolls back leaves no gap; every record says which node wrote
//! it.
//!
//! `postern serve` opens it when `[store]` names PostgreSQL. An upload is sealed into the node's
//! folder first, as over SQLite, and the write job that records it moves it into the database
//! (`payloads`); what a crash leaves in those folders is removed when the store opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::db::{Db, PgDb};
use super::payloads::Staged;
use super::pg::{PgError, Pool};
use super::{
    ChainHead, CommitFailure, Finisher, Job, Reading, StateDir, Store, StoreError, Tx, fail_all,
    finish_all, io, next_batch, prepare_state_dir, sync_dirs,
};
use crate::log::GENESIS;

impl Store {
    /// Opens this node's handle on the shared store (which must hold the schema this postern
    /// needs), with `state_dir` for the node's own files. `node` is written into every record
    /// this node appends.
    pub async fn open_shared(
        state_dir: &Path,
        pool: Pool,
        node: &str,
    ) -> Result<Store, StoreError> {
        let StateDir { lock, spool, inbox } = prepare_state_dir(state_dir)?;
        {
            let client = pool.get().await?;
            let status = super::pg::status(&client, pool.target()).await?;
            status.ready(pool.target())?;
        }
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let handle = tokio::runtime::Handle::current();
        let writer_pool = pool.clone();
        let writer_node = node.to_owned();
        let dirs = vec![spool.clone(), inbox.clone()];
        // Whatever is left in the node's folders is an upload cut off before its commit moved
        // it into the database (a crash): nothing that was answered as kept. Unless the folder
        // is a single node's (its SQLite store beside it): those files are that store's
        // payloads, which `postern store copy` reads, and are never swept from here.
        if super::db_path(state_dir).exists() {
            tracing::warn!(
                state_dir = %state_dir.display(),
                "this state directory holds a single node's store (postern.db); its spool and inbox files are left as they are: give each node of a shared store a state directory of its own"
            );
        } else {
            let swept = sweep_staged(&spool)? + sweep_staged(&inbox)?;
            if swept > 0 {
                tracing::info!(
                    removed = swept,
                    "removed files left by uploads cut off before their commit"
                );
            }
        }
        let staged = Staged {
            spool: spool.clone(),
            inbox: inbox.clone(),
            node: node.to_owned(),
        };
        // And what it had staged in the database for them (node names are each one node's).
        {
            let client = pool.get().await?;
            let prefix = super::payloads::staged_prefix(node);
            let removed = client
                .execute(
                    "DELETE FROM payload_chunks WHERE substr(name, 1, length($1)) = $1",
                    &[&prefix],
                )
                .await
                .map_err(|e| pool.err(e))?;
            if removed > 0 {
                tracing::info!(
                    chunks = removed,
                    "removed payload chunks staged by uploads cut off before their commit"
                );
            }
        }
        // As over SQLite: the writer ends when the last handle is dropped, and what it has not
        // committed was never answered as durable.
        std::thread::Builder::new()
            .name("postern-store-writer".into())
            .spawn(move || writer_loop(&writer_pool, &writer_node, &handle, &dirs, &staged, rx))
            .map_err(io(state_dir))?;
        Ok(Store {
            jobs: tx,
            reader: Reading::Postgres(pool),
            spool_dir: spool,
            inbox_dir: inbox,
            node: Some(Arc::from(node)),
            _lock: Arc::new(lock),
        })
    }
}

/// Removes the files in `dir` (a node's staging folder); how many.
fn sweep_staged(dir: &Path) -> Result<usize, StoreError> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() {
            std::fs::remove_file(&path).map_err(io(&path))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The chain's head, locked until the transaction ends; made, for the first append to an empty
/// database. One statement: the upsert that finds the row takes its lock, as `FOR UPDATE`
/// would. Every batch takes it first, before any other row: batches that locked a delivery's
/// row and then waited for the head could deadlock with one holding the head.
fn lock_head(db: &dyn Db, target: &str) -> Result<ChainHead, StoreError> {
    let row = db.row(
        "INSERT INTO log_head (id, seq, hash) VALUES (1, 0, ?1) ON CONFLICT (id) DO UPDATE SET id = log_head.id RETURNING seq, hash",
        &[GENESIS.as_slice().into()],
    )?;
    let Some(row) = row else {
        return Err(StoreError::Damaged(
            "the chain's head row is missing".into(),
        ));
    };
    let seq = row.int(0)?;
    let hash = <[u8; 32]>::try_from(row.blob(1)?.as_slice()).map_err(|_| {
        StoreError::Pg(PgError::BadHead {
            target: target.to_owned(),
            seq,
        })
    })?;
    Ok(ChainHead { seq, hash })
}

fn writer_loop(
    pool: &Pool,
    node: &str,
    handle: &tokio::runtime::Handle,
    dirs: &[PathBuf],
    staged: &Staged,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(batch) = next_batch(&mut rx) {
        let dir_synced = sync_dirs(&batch, dirs);
        let client = match handle.block_on(pool.get()) {
            Ok(c) => c,
            Err(e) => {
                fail_all(
                    batch,
                    &CommitFailure::store("no connection to the database", &StoreError::Pg(e)),
                );
                continue;
            }
        };
        let db = PgDb::new(client, pool.target(), handle.clone());
        // BEGIN goes out with the head's lock, and each job's savepoint with its first
        // statement (PgDb::defer): one round trip to open the batch, none of its own per job.
        db.defer("BEGIN");
        let mut head = match lock_head(&db, pool.target()) {
            Ok(h) => h,
            Err(e) => {
                let _ = db.batch("ROLLBACK");
                fail_all(
                    batch,
                    &CommitFailure::store("cannot begin a transaction", &e),
                );
                continue;
            }
        };
        let start = head;
        db.defer("SAVEPOINT job");
        let mut finishers: Vec<(Option<CommitFailure>, Finisher)> = Vec::with_capacity(batch.len());
        // Set when a job's writes could not be kept apart or undone: the transaction is then
        // in doubt, and nothing of the batch may be reported committed.
        let mut aborted: Option<CommitFailure> = None;
        for (needs_dir, job) in batch {
            if aborted.is_some() {
                let (_, finish) = job(None);
                finishers.push((None, finish));
                continue;
            }
            let forced = if needs_dir {
                dir_synced.as_ref().err().cloned()
            } else {
                None
            };
            let before = head;
            let (ok, finish) = job(Some(&mut Tx {
                db: &db,
                sqlite: None,
                head: &mut head,
                node: Some(node),
                staged: Some(staged),
            }));
            // What is still deferred was never sent: the job ran no statement, and its
            // savepoint is still to open.
            let wrote = db.deferred().is_none();
            if ok && forced.is_none() {
                if wrote {
                    db.defer("RELEASE SAVEPOINT job; SAVEPOINT job");
                }
                finishers.push((None, finish));
            } else {
                // The job failed (it reports its own error), or its file's folder entry is not
                // durable: undo exactly its writes. A job that ran no statement may still have
                // failed on the server (a statement's preparation goes out before what is
                // deferred, and its failure aborts the transaction): the savepoint is sent now,
                // alone, and if it cannot be, the transaction is in doubt and so is the batch.
                let undone = if wrote {
                    db.batch("ROLLBACK TO SAVEPOINT job")
                } else {
                    db.flush()
                };
                if let Err(undo) = undone {
                    aborted = Some(CommitFailure::store("cannot undo a failed job", &undo));
                }
                head = before;
                finishers.push((forced, finish));
            }
        }
        // A savepoint still deferred was never opened: nothing to say about it.
        db.forget_deferred();
        if let Some(failure) = aborted {
            let _ = db.batch("ROLLBACK");
            for (_, finish) in finishers {
                finish(Err(failure.clone()));
            }
            continue;
        }
        // The head moved and the commit, in one message (the values are a number and hex).
        // PostgreSQL answers COMMIT in a failed transaction by rolling back, without an error:
        // a statement before it fails instead, so that such a batch is never reported durable.
        let commit = if head == start {
            "SELECT 1; COMMIT".to_owned()
        } else {
            format!(
                "UPDATE log_head SET seq = {}, hash = '\\x{}'::bytea WHERE id = 1; COMMIT",
                head.seq,
                hex::encode(head.hash)
            )
        };
        let committed = db
            .batch(&commit)
            .map_err(|e| CommitFailure::store("commit failed", &e));
        if committed.is_err() {
            let _ = db.batch("ROLLBACK");
        }
        finish_all(finishers, &committed);
    }
}
