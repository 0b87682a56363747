//! The store of one node among several, on the shared PostgreSQL database: the same [`Store`]
//! handle as over SQLite (the same write jobs, the same reads), with writers (two, side by
//! side: [`WRITERS`]) whose group commit is one PostgreSQL transaction. A batch runs its jobs first, keeping the records they
//! append, and then locks the chain's head row (`log_head`) and appends them all, one statement
//! per table, in its last round trip before the commit: the nodes' appends are serialised into
//! one chain, a batch that rolls back leaves no gap, and the nodes' batches run their jobs side
//! by side rather than in turn. Every record says which node wrote it. A job that reads or
//! moves the head (a checkpoint, an acceptance, a purge) runs alone, with the head locked
//! first.
//!
//! `postern serve` opens it when `[store]` names PostgreSQL. An upload is sealed into the node's
//! folder first, as over SQLite, and the write job that records it moves it into the database
//! (`payloads`); what a crash leaves in those folders is removed when the store opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::db::{Db, PgDb};
use super::payloads::Staged;
use super::pg::log::{Chained, Param};
use super::pg::{PgError, Pool};
use super::{
    ChainHead, CommitFailure, Finisher, Job, Later, Reading, StateDir, Store, StoreError, Tx,
    count_work, fail_all, finish_all, io, next_batch, prepare_state_dir, sync_dirs,
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
        let name = hold_name(&pool, node).await?;
        let (tx, rx) = mpsc::channel::<Job>(4096);
        // The writers' connections are driven by a runtime of their own: on the node's runtime
        // each of their round trips waited behind whatever else its threads were doing (TLS
        // handshakes, sealing), and a writer makes several per batch while the batch waits.
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("postern-store-db")
                .enable_all()
                .build()
                .map_err(io(state_dir))?,
        );
        let handle = runtime.handle().clone();
        let writer_pool = pool.sibling(WRITERS)?;
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
        // As over SQLite: the writers end when the last handle is dropped, and what they have
        // not committed was never answered as durable.
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            let (pool, node, handle, dirs, staged, rx, runtime) = (
                writer_pool.clone(),
                writer_node.clone(),
                handle.clone(),
                dirs.clone(),
                staged.clone(),
                rx.clone(),
                runtime.clone(),
            );
            std::thread::Builder::new()
                .name("postern-store-writer".into())
                .spawn(move || {
                    writer_loop(&pool, &node, &handle, &dirs, &staged, &rx);
                    // The last writer to end takes the runtime down (outside it: a blocking
                    // thread may).
                    drop(pool);
                    drop(runtime);
                })
                .map_err(io(state_dir))?;
        }
        Ok(Store {
            jobs: tx,
            reader: Reading::Postgres(pool),
            spool_dir: spool,
            inbox_dir: inbox,
            node: Some(Arc::from(node)),
            _lock: Arc::new(lock),
            _name: Some(Arc::new(name)),
        })
    }
}

/// How many writers commit a node's batches side by side, each with a connection of its own.
/// On PostgreSQL a writer spends most of a batch waiting for the database's answers (a round
/// trip per job, then the commit's flush), so one writer caps a node's writes (`postern load
/// --nodes` measured one node's writer busy 95 - 101% while the machine was 69% busy); a
/// second overlaps one batch's waits with another's work. Two writers of one node behave
/// toward each other as two nodes do (the chain's head serialises their appends, and every
/// row they might both write is guarded in the database), so nothing here assumes one.
pub const WRITERS: usize = 2;

/// How often the name's connection is looked at (a flag on the client: no round trip).
const NAME_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds `node`'s name on the database while the store is open, or refuses: another process
/// runs as that node. A task keeps it: should the name's connection be lost (the database
/// restarted, a failover), which frees the name, the task takes it again on a new connection,
/// and says so loudly if another process took it in between. Dropping the returned guard (the
/// last store handle gone) ends the task and closes the connection, which frees the name.
async fn hold_name(pool: &Pool, node: &str) -> Result<tokio_util::sync::DropGuard, StoreError> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("postern node name\n{node}").as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    let key = i64::from_be_bytes(key);
    let client = take_name(pool, node, key).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(keep_name(
        pool.clone(),
        node.to_owned(),
        key,
        client,
        stop.clone(),
    ));
    Ok(stop.drop_guard())
}

/// Looks at the name's connection every [`NAME_CHECK_EVERY`] until `stop`, and takes the name
/// again when it was lost. Each change is logged once.
async fn keep_name(
    pool: Pool,
    node: String,
    key: i64,
    client: deadpool_postgres::ClientWrapper,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut held = Some(client);
    let mut said: Option<String> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(NAME_CHECK_EVERY) => {}
        }
        if held.as_ref().is_some_and(|c| !c.is_closed()) {
            continue;
        }
        if held.take().is_some() {
            tracing::warn!(node = %node, "the database connection holding this node's name was lost; taking the name again");
        }
        match take_name(&pool, &node, key).await {
            Ok(c) => {
                held = Some(c);
                said = None;
                tracing::info!(node = %node, "this node holds its name on the database again");
            }
            Err(e @ StoreError::NodeNameTaken { .. }) => {
                let now = e.to_string();
                if said.as_deref() != Some(now.as_str()) {
                    tracing::error!(node = %node, error = %now, "another process holds this node's name since its connection was lost: two nodes with one name take each other's delivery attempts; stop one (trying again every second). If the holder named is this node's own address, the database has not yet noticed the old connection gone, and frees the name within about 30 s");
                    said = Some(now);
                }
            }
            // The database still away: the next look tries again.
            Err(_) => {}
        }
    }
}

/// Takes `node`'s name (advisory lock `key`) on a connection of its own, taken out of the
/// pool so that closing it (the store dropped, or the process gone) frees the name; or
/// refuses, saying who holds it.
async fn take_name(
    pool: &Pool,
    node: &str,
    key: i64,
) -> Result<deadpool_postgres::ClientWrapper, StoreError> {
    let client = deadpool_postgres::Object::take(pool.get().await?);
    // The server finds this connection dead within about 25 s if the node's machine goes
    // without closing it (power lost, a partition), and frees the name, rather than after the
    // operating system's two hours: a node restarted after a crash is let in.
    client
        .batch_execute(
            "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
        )
        .await
        .map_err(|e| pool.err(e))?;
    let held: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(|e| pool.err(e))?
        .try_get(0)
        .map_err(|e| pool.err(e))?;
    if held {
        return Ok(client);
    }
    // Who holds it, for the message (the database's view of the other connection).
    let (class, object) = ((key >> 32) as u32, (key & 0xffff_ffff) as u32);
    let holder = client
        .query_opt(
            "SELECT COALESCE(host(a.client_addr), 'a local socket') || ' since ' || to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
            &[&class, &object],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.try_get::<_, String>(0).ok());
    Err(StoreError::NodeNameTaken {
        node: node.to_owned(),
        holder: holder.unwrap_or_else(|| "another connection".into()),
    })
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
/// would. A batch takes it either first (a job that needs the head) or last, when it holds
/// rows of its own and writes, under the head, only rows no other transaction can hold (see
/// `Writer::commit`).
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
    rx: &std::sync::Mutex<mpsc::Receiver<Job>>,
) {
    let w = Writer {
        pool,
        node,
        handle,
        staged,
    };
    let mut worked: Option<Instant> = None;
    loop {
        // The last batch's work is counted now, before this writer waits for its turn at the
        // queue: the time it waits there while another writer waits for jobs is idle time.
        count_work(&mut worked);
        // One writer at a time waits for the next batch; the others are committing theirs.
        let batch = match rx.lock() {
            Ok(mut rx) => next_batch(&mut rx, &mut worked),
            // A writer panicked while waiting (a bug): this one stops too, and the jobs waiting
            // are answered as not committed when the channel closes.
            Err(_) => None,
        };
        let Some(batch) = batch else { break };
        let dir_synced = sync_dirs(&batch, dirs);
        // The jobs run in order, each run of jobs of one kind in a transaction: those that may
        // run alongside the other nodes' appending at the end, the others with the chain's
        // head locked first.
        let mut run: Vec<Job> = Vec::with_capacity(batch.len());
        for job in batch {
            if run.first().is_some_and(|first| first.0.late != job.0.late) {
                let late = run[0].0.late;
                w.commit(std::mem::take(&mut run), !late, &dir_synced);
            }
            run.push(job);
        }
        if let Some(first) = run.first() {
            let late = first.0.late;
            w.commit(run, !late, &dir_synced);
        }
    }
}

/// What a node's writer commits with.
struct Writer<'a> {
    pool: &'a Pool,
    node: &'a str,
    handle: &'a tokio::runtime::Handle,
    staged: &'a Staged,
}

impl Writer<'_> {
    /// Runs `jobs` in one transaction and commits it. `at_head`: the chain's head is locked
    /// first and each record appended as it is made, so the batch runs alone among the
    /// nodes' (as every batch did before `Store::write_late`); otherwise the records are
    /// appended at the end, so that the head is locked only for the last round trips of the
    /// transaction and the nodes' batches run their jobs side by side.
    ///
    /// Deadlocks: a late batch takes the head last, and holding it writes only rows no other
    /// transaction can hold (new records, its own transfers' `log_seq`), so it never waits on
    /// another batch while holding the head. The rows late batches may both want (the
    /// transfers whose deliveries they finish) they lock in one step, in one order, before the
    /// head ([`complete_later`]). A late batch and one holding the head can still lock two rows
    /// in opposite orders (a purge deleting a row a late job locked): the database then ends
    /// one of the two (an answer of 503, or an outcome recorded again later), never both
    /// waiting.
    fn commit(&self, jobs: Vec<Job>, at_head: bool, dir_synced: &Result<(), CommitFailure>) {
        let target = self.pool.target();
        let client = match self.handle.block_on(self.pool.get()) {
            Ok(c) => c,
            Err(e) => {
                fail_all(
                    jobs,
                    &CommitFailure::store("no connection to the database", &StoreError::Pg(e)),
                );
                return;
            }
        };
        let db = PgDb::new(client, target, self.handle.clone());
        // BEGIN goes out with the first statement, and each job's savepoint with its first
        // statement (PgDb::defer): no round trip of their own.
        db.defer("BEGIN ISOLATION LEVEL READ COMMITTED");
        let asked = Instant::now();
        let mut locked = None;
        let mut head = if at_head {
            let h = lock_head(&db, target);
            locked = Some(Instant::now());
            match h {
                Ok(h) => h,
                Err(e) => {
                    let _ = db.batch("ROLLBACK");
                    fail_all(
                        jobs,
                        &CommitFailure::store("cannot begin a transaction", &e),
                    );
                    return;
                }
            }
        } else {
            // Not read: the batch's records are chained from the head it locks at the end.
            ChainHead {
                seq: 0,
                hash: GENESIS,
            }
        };
        let start = head;
        let mut later = Later::default();
        // Whether BEGIN has gone out (a batch whose jobs sent nothing has not begun).
        let mut begun = at_head;
        db.defer("SAVEPOINT job");
        let mut finishers: Vec<(Option<CommitFailure>, Finisher)> = Vec::with_capacity(jobs.len());
        // Set when a job's writes could not be kept apart or undone: the transaction is then
        // in doubt, and nothing of the batch may be reported committed.
        let mut aborted: Option<CommitFailure> = None;
        for (needs, job) in jobs {
            if aborted.is_some() {
                let (_, finish) = job(None);
                finishers.push((None, finish));
                continue;
            }
            let forced = if needs.dir {
                dir_synced.as_ref().err().cloned()
            } else {
                None
            };
            let before = (
                head,
                later.entries.len(),
                later.transfers.len(),
                later.completions.len(),
            );
            let (ok, finish) = job(Some(&mut Tx {
                db: &db,
                sqlite: None,
                head: &mut head,
                node: Some(self.node),
                staged: Some(self.staged),
                later: (!at_head).then_some(&mut later),
            }));
            // What is still deferred was never sent: the job ran no statement, and its
            // savepoint is still to open.
            let wrote = db.deferred().is_none();
            begun |= wrote;
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
                // What was deferred (BEGIN with it, if it was) went out with the undo.
                begun = true;
                head = before.0;
                later.entries.truncate(before.1);
                later.transfers.truncate(before.2);
                later.completions.truncate(before.3);
                finishers.push((forced, finish));
            }
        }
        // A savepoint still deferred was never opened: nothing to say about it (nor BEGIN, if
        // nothing went out: it goes with the head's lock, if anything is appended).
        db.forget_deferred();
        if let Some(failure) = aborted {
            let _ = db.batch("ROLLBACK");
            for (_, finish) in finishers {
                finish(Err(failure.clone()));
            }
            return;
        }
        // Only a job that wrote leaves a completion to settle (it recorded an outcome): the
        // transaction has begun.
        let committed = complete_later(&db, &later.completions)
            .and_then(|()| {
                if !later.entries.is_empty() {
                    if !begun {
                        db.defer("BEGIN ISOLATION LEVEL READ COMMITTED");
                    }
                    append_later(&db, self.node, &later)
                } else if !begun {
                    // Nothing was written.
                    Ok(())
                } else if head == start {
                    // PostgreSQL answers COMMIT in a failed transaction by rolling back,
                    // without an error: a statement before it fails instead, so that such a
                    // batch is never reported durable.
                    db.batch("SELECT 1; COMMIT")
                } else {
                    // The head moved: its update and the commit, in one message.
                    db.batch(&move_head_and_commit(head))
                }
            })
            .map_err(|e| CommitFailure::store("commit failed", &e));
        if let Some(at) = locked {
            crate::metrics::log_head(at - asked, at.elapsed());
        }
        if committed.is_err() {
            let _ = db.batch("ROLLBACK");
        }
        finish_all(finishers, &committed);
    }
}

/// Before a batch's end: marks complete each transfer in `done` (its id, and the time of an
/// outcome its batch recorded) that has no delivery left open. Their rows are locked first, in
/// one order (the transfers' ids), and then counted, by a statement that starts once the locks
/// are held: a batch finishing another delivery of the same transfer at once, on this node or
/// another, takes its turn after this one's commit and sees its outcome (so the later of the
/// two completes the transfer), and two such batches never hold each other's rows. The head is
/// not yet held here. A batch that holds the head from its start and then finishes a delivery
/// (a damaged row ended, rare) locks a transfer's row too: should the two meet in opposite
/// orders, the database ends one of them, and with it that batch (an outcome recorded again
/// later, or an answer of 503). (The transfers named here have a delivery just finished, so
/// none is one a purge takes.)
fn complete_later(db: &PgDb, done: &[(String, String)]) -> Result<(), StoreError> {
    if done.is_empty() {
        return Ok(());
    }
    // Once per transfer (two of its recipients finished in one batch: the later time).
    let mut latest: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (id, at) in done {
        let kept = latest.entry(id.as_str()).or_insert(at.as_str());
        if at.as_str() > *kept {
            *kept = at.as_str();
        }
    }
    let ids: Vec<&str> = latest.keys().copied().collect();
    let ats: Vec<&str> = latest.values().copied().collect();
    db.execute_typed(&[
        (
            "SELECT 1 FROM transfers WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            vec![&ids],
        ),
        (
            "UPDATE transfers t SET completed_at = v.at FROM UNNEST($1::text[], $2::text[]) AS v(id, at)
             WHERE t.id = v.id AND t.completed_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.transfer_id = t.id AND d.state NOT IN ('delivered', 'dead'))",
            vec![&ids, &ats],
        ),
    ])
    .map(|_| ())
}

/// The end of a batch that appends, in one round trip: locks the chain's head and writes the
/// batch's records chained from it (the hashes made by the database: [`Chained::inserts_at_head`]),
/// sets the `log_seq` of the transfers that name them, moves the head and commits. The head is
/// held from the first statement to the commit's flush, with no answer to wait for in between.
fn append_later(db: &PgDb, node: &str, later: &Later) -> Result<(), StoreError> {
    let unchained = Chained::unchained(&later.entries);
    let node = node.to_owned();
    let (mut ids, mut places) = (Vec::new(), Vec::new());
    for (id, i) in &later.transfers {
        let place = *unchained.seqs.get(*i).ok_or_else(|| {
            StoreError::Task("a row names a record its batch does not append".into())
        })?;
        ids.push(id.clone());
        places.push(place);
    }
    let mut statements: Vec<(&str, Vec<Param<'_>>)> = unchained.inserts_at_head(&node).into();
    // Every transfer named must be found (a job's rows are its own, written in this
    // transaction), or the transaction fails here: a row left with 0 would be lost to the
    // pages and taken by the next purge. The count is checked in the statement, so that the
    // COMMIT after it is not run.
    let linked = i64::try_from(ids.len()).unwrap_or(i64::MAX);
    if !ids.is_empty() {
        statements.push((
            "WITH u AS (
                 UPDATE transfers SET log_seq = head.seq + v.n
                 FROM UNNEST($1::text[], $2::bigint[]) AS v(id, n), (SELECT seq FROM log_head WHERE id = 1) AS head
                 WHERE transfers.id = v.id RETURNING 1)
             SELECT CAST(CASE WHEN COUNT(*) = $3 THEN '1' ELSE 'a transfer named by a record appended is missing' END AS INTEGER) FROM u",
            vec![&ids, &places, &linked],
        ));
    }
    // The head moved and the commit, last. Should anything before fail at the server, the
    // UPDATE fails too and the COMMIT is not run; should one fail before it is sent, neither
    // is sent (PgDb::pipeline).
    let commit = format!("{}; COMMIT", unchained.move_head());
    let asked = Instant::now();
    let (done, locked) = db.pipeline(&statements, &commit);
    // The head is taken by the first statement, alone: held, as this node sees it, from its
    // answer to the commit's (as when it was a round trip of its own).
    if let Some(locked) = locked {
        crate::metrics::log_head(locked - asked, locked.elapsed());
    }
    done.map(|_| ())
}

/// The head moved to `head` and the commit, in one message (the values are a number and hex).
/// In a transaction a statement has failed in, the UPDATE fails and the COMMIT is not run
/// (PostgreSQL would answer a COMMIT there by rolling back, without an error).
fn move_head_and_commit(head: ChainHead) -> String {
    format!(
        "UPDATE log_head SET seq = {}, hash = '\\x{}'::bytea WHERE id = 1; COMMIT",
        head.seq,
        hex::encode(head.hash)
    )
}
