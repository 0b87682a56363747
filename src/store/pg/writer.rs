//! A node's group commit to the shared log: every record waiting when the last commit ended
//! goes into the next transaction, so the chain's head lock is taken once per batch, not once
//! per record, and the nodes take turns at it batch by batch. An answer is given only after the
//! commit: what a 202 will wait for when the nodes serve from PostgreSQL.

use tokio::sync::{mpsc, oneshot};

use super::{PgError, Pool};
use crate::log::LogEntry;

/// Records per transaction at most.
const BATCH: usize = 256;

type Job = (LogEntry, oneshot::Sender<Result<i64, PgError>>);

/// The handle requests append through; the writer ends when the last handle is dropped.
#[derive(Clone)]
pub struct LogWriter {
    jobs: mpsc::Sender<Job>,
    target: String,
}

impl LogWriter {
    /// Starts this node's writer on the current runtime.
    pub fn start(pool: Pool, node: String) -> LogWriter {
        let (jobs, rx) = mpsc::channel::<Job>(4096);
        let target = pool.target().to_owned();
        tokio::spawn(run(pool, node, rx));
        LogWriter { jobs, target }
    }

    /// Appends one record; its sequence number once committed.
    pub async fn append(&self, e: LogEntry) -> Result<i64, PgError> {
        let gone = || PgError::Unavailable {
            target: self.target.clone(),
            why: "the node's log writer has stopped".into(),
        };
        let (tx, rx) = oneshot::channel();
        self.jobs.send((e, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run(pool: Pool, node: String, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let (entries, answers): (Vec<LogEntry>, Vec<_>) = batch.into_iter().unzip();
        match commit(&pool, &node, &entries).await {
            Ok(seqs) => {
                for (a, seq) in answers.into_iter().zip(seqs) {
                    let _ = a.send(Ok(seq));
                }
            }
            Err(e) => {
                for a in answers {
                    let _ = a.send(Err(e.again()));
                }
            }
        }
    }
}

async fn commit(pool: &Pool, node: &str, entries: &[LogEntry]) -> Result<Vec<i64>, PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(|e| pool.err(e))?;
    let seqs = super::log::append(&tx, pool.target(), node, entries).await?;
    tx.commit().await.map_err(|e| pool.err(e))?;
    Ok(seqs)
}
