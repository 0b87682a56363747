//! One way for the store's queries to run on either backend: a query is written once, in the
//! SQL both SQLite and PostgreSQL take (the PostgreSQL schema has the SQLite store's tables,
//! names and meanings), with `?N` (or `?`) parameters, and runs through [`Db`] on a SQLite
//! connection or a PostgreSQL one. The few places where the dialects differ ask
//! [`Db::dialect`].
//!
//! It sits under the store's query modules: they take `&dyn Db`, and neither knows nor cares
//! which database answers. The PostgreSQL side is synchronous like rusqlite (the store's jobs are
//! synchronous closures run off the async threads): each query blocks its (blocking) thread on
//! the driver's future, which the runtime drives.

use super::StoreError;
use super::pg::PgError;

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Which SQL a query may use where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `group_concat(expr, sep)` in SQLite, `string_agg(expr, sep)` in PostgreSQL; `sep` is a
    /// SQL expression of type text.
    pub fn group_concat(self, expr: &str, sep: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat({expr}, {sep})"),
            Dialect::Postgres => format!("string_agg({expr}, {sep})"),
        }
    }

    /// A one-character text of this code point (`char(31)` / `chr(31)`).
    pub fn char(self, code: u32) -> String {
        match self {
            Dialect::Sqlite => format!("char({code})"),
            Dialect::Postgres => format!("chr({code})"),
        }
    }
}

/// One row of a result, its columns in the order selected.
#[derive(Debug, Clone)]
pub struct Row {
    values: Vec<Value>,
}

/// A column that is not of the type its reader expects (as rusqlite's `InvalidColumnType`).
fn damaged(i: usize, wanted: &str, got: &Value) -> StoreError {
    let got = match got {
        Value::Null => "null",
        Value::Int(_) => "an integer",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    };
    StoreError::ColumnType(format!("column {i} is {got}, not {wanted}"))
}

impl Row {
    pub fn new(values: Vec<Value>) -> Row {
        Row { values }
    }

    pub fn value(&self, i: usize) -> &Value {
        self.values.get(i).unwrap_or(&Value::Null)
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.value(i) {
            Value::Int(v) => Ok(*v),
            other => Err(damaged(i, "an integer", other)),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.value(i) {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.value(i) {
            Value::Text(v) => Ok(v.clone()),
            other => Err(damaged(i, "text", other)),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.value(i) {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.value(i) {
            Value::Blob(v) => Ok(v.clone()),
            other => Err(damaged(i, "a blob", other)),
        }
    }
}

/// A connection (or an open transaction) on either backend.
pub trait Db {
    fn dialect(&self) -> Dialect;

    /// The SQLite connection itself, for what only a single node's store does.
    fn sqlite(&self) -> Option<&rusqlite::Connection> {
        None
    }

    /// Runs a statement; returns the rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;

    /// Runs statements without parameters (transaction control: BEGIN, SAVEPOINT, COMMIT).
    fn batch(&self, sql: &str) -> Result<(), StoreError>;

    /// Runs several statements in order, stopping at the first that fails. On PostgreSQL they
    /// are sent together and their answers awaited together: one round trip to the database
    /// rather than one each (what a record and its index rows cost while the chain is locked).
    fn execute_all(&self, statements: &[(&str, Vec<Value>)]) -> Result<(), StoreError> {
        for (sql, params) in statements {
            self.execute(sql, params)?;
        }
        Ok(())
    }

    /// Every row of a query, in order, each handed to `f` as it is read (a large export never
    /// holds the whole result). `f` returns `false` to stop early. `f` must not query the same
    /// `Db`: on PostgreSQL the rows still to come hold the connection until the query ends.
    fn each(
        &self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// Every row of a query.
    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| {
            out.push(r);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row of a query, if any.
    fn row(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        let mut out = None;
        self.each(sql, params, &mut |r| {
            out = Some(r);
            Ok(false)
        })?;
        Ok(out)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

impl Db for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn sqlite(&self) -> Option<&rusqlite::Connection> {
        Some(self)
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let n = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params.iter()))?;
        Ok(n as u64)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }

    fn each(
        &self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    // The store keeps no floating-point columns; one here is read as its
                    // integer part rather than refused.
                    ValueRef::Real(v) => Value::Int(v as i64),
                    // Text that is not UTF-8 is a damaged row (as rusqlite reports it).
                    ValueRef::Text(v) => {
                        Value::Text(String::from_utf8(v.to_vec()).map_err(|_| {
                            StoreError::Damaged(format!("column {i} is not UTF-8 text"))
                        })?)
                    }
                    ValueRef::Blob(v) => Value::Blob(v.to_vec()),
                });
            }
            if !f(Row::new(values))? {
                break;
            }
        }
        Ok(())
    }
}

/// `?N` and `?` parameters as PostgreSQL's `$N` (a bare `?` takes the next number, as in
/// SQLite); nothing inside a quoted string or identifier is touched.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = match digits.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => next + 1,
                };
                // As SQLite numbers them: a bare `?` is one past the largest so far.
                next = next.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

impl tokio_postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        let refused = || -> Box<dyn std::error::Error + Sync + Send> {
            format!(
                "a {} value cannot be bound to a parameter of type {ty}",
                self.kind()
            )
            .into()
        };
        match self {
            Value::Null => Ok(tokio_postgres::types::IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(refused()),
            },
            Value::Text(v) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    v.as_str().to_sql(ty, out)
                }
                // SQLite takes a number written as text where an integer is compared; so does
                // this.
                Type::INT8 => v.parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => v.parse::<i32>()?.to_sql(ty, out),
                _ => Err(refused()),
            },
            Value::Blob(v) => match *ty {
                Type::BYTEA => v.as_slice().to_sql(ty, out),
                _ => Err(refused()),
            },
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Reads a PostgreSQL row into the backend-neutral form.
fn pg_row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    use tokio_postgres::types::Type;
    let mut values = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let bad = |e: tokio_postgres::Error| StoreError::Damaged(format!("column {i}: {e}"));
        let v = match *col.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(|v| Value::Int(v.into())),
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)
                .map_err(bad)?
                .map(Value::Blob),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map_err(bad)?
                .map(Value::Text),
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row::new(values))
}

/// A PostgreSQL connection as a [`Db`]: each call blocks on the driver, so it is used only off
/// the async threads (a blocking task, the store's own threads, a command-line tool's).
pub struct PgDb {
    client: deadpool_postgres::Object,
    target: String,
    handle: tokio::runtime::Handle,
    /// Transaction control ([`PgDb::defer`]) to send with the next statement.
    deferred: std::sync::Mutex<Option<String>>,
    /// Whether a transaction may be open on the connection: a BEGIN has gone out and no
    /// COMMIT or ROLLBACK has been answered since (see [`transaction_control`]).
    open: std::sync::atomic::AtomicBool,
}

/// A connection leaves with its transaction ended. The pool hands a connection back out as it
/// is (it checks only that it is not closed), so one dropped mid-transaction (a job or a read
/// that panicked, a path that returned early) would carry its uncommitted writes into the
/// next user's transaction, whose COMMIT would keep them: half a batch. A ROLLBACK is sent
/// first, without waiting for its answer (as tokio-postgres's own `Transaction` does when
/// dropped): the connection's requests run in order, so it ends the transaction before
/// anything the next user sends.
impl Drop for PgDb {
    fn drop(&mut self) {
        if self.open.load(std::sync::atomic::Ordering::Relaxed) {
            use futures_util::FutureExt;
            // Polled once: the request is queued on the connection, and its answer dropped.
            // On a closed connection it fails at once, and the pool discards the connection.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// What `sql` (the store's own simple-query text, statements separated by `;`) does to the
/// connection's transaction, by its last statement that begins or ends one: `Some(true)` it
/// begins one, `Some(false)` it ends it (`ROLLBACK [WORK | TRANSACTION] TO ...` does not, nor
/// does `... AND CHAIN`, which begins the next), `None` neither.
fn transaction_control(sql: &str) -> Option<bool> {
    sql.split(';').fold(None, |effect, statement| {
        let words: Vec<String> = statement
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        let word = |i: usize| words.get(i).map_or("", String::as_str);
        let chained = word(words.len().saturating_sub(1)) == "CHAIN"
            && word(words.len().saturating_sub(2)) == "AND";
        match word(0) {
            "BEGIN" | "START" => Some(true),
            "COMMIT" | "END" | "ABORT" | "ROLLBACK" if chained => Some(true),
            "COMMIT" | "END" | "ABORT" => Some(false),
            "ROLLBACK" => {
                let at = if matches!(word(1), "WORK" | "TRANSACTION") {
                    2
                } else {
                    1
                };
                if word(at) == "TO" {
                    effect
                } else {
                    Some(false)
                }
            }
            _ => effect,
        }
    })
}

impl PgDb {
    pub fn new(
        client: deadpool_postgres::Object,
        target: &str,
        handle: tokio::runtime::Handle,
    ) -> PgDb {
        PgDb {
            client,
            target: target.to_owned(),
            handle,
            deferred: std::sync::Mutex::new(None),
            open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Notes what `sql`, sent, did to the transaction. Only an answer without error says for
    /// sure: after an error the connection may be left in a transaction (a BEGIN before the
    /// failed statement ran, its COMMIT did not), so it counts as open until a ROLLBACK or
    /// COMMIT is answered (a ROLLBACK with none open costs the server a warning, nothing more).
    fn sent(&self, sql: &str, answered_ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if !answered_ok {
            self.open.store(true, Relaxed);
            return;
        }
        if let Some(open) = transaction_control(sql) {
            self.open.store(open, Relaxed);
        }
    }

    /// Sends `sql` (simple-query text) and waits for its answer, noting what it did to the
    /// transaction.
    fn send_text(&self, sql: &str) -> Result<(), StoreError> {
        let out = self.handle.block_on(self.client.batch_execute(sql));
        self.sent(sql, out.is_ok());
        out.map_err(|e| self.err(e))
    }

    /// Queues transaction control (`BEGIN`, `SAVEPOINT ...`) to go out with the next statement,
    /// in the same round trip, rather than on its own: the store's writer opens each job's
    /// savepoint so. Nothing is sent if no statement follows.
    pub fn defer(&self, sql: &str) {
        let mut d = self
            .deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *d = Some(match d.take() {
            Some(before) => format!("{before}; {sql}"),
            None => sql.to_owned(),
        });
    }

    /// What is queued by [`PgDb::defer`] and not yet sent.
    pub fn deferred(&self) -> Option<String> {
        self.deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends what is queued, alone (nothing, if nothing is).
    pub fn flush(&self) -> Result<(), StoreError> {
        match self.take_deferred() {
            Some(sql) => self.send_text(&sql),
            None => Ok(()),
        }
    }

    /// Forgets what is queued (a transaction that sent nothing ends without a word).
    pub fn forget_deferred(&self) {
        *self
            .deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn take_deferred(&self) -> Option<String> {
        self.deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Runs `f`, sending what is deferred first on the same connection without waiting for its
    /// answer (tokio-postgres pipelines requests polled together, in the order polled).
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        match self.take_deferred() {
            None => self.handle.block_on(f).map_err(|e| self.err(e)),
            Some(first) => {
                let (sent, out) = self
                    .handle
                    .block_on(async { futures_util::join!(self.client.batch_execute(&first), f) });
                self.sent(&first, sent.is_ok());
                sent.map_err(|e| self.err(e))?;
                out.map_err(|e| self.err(e))
            }
        }
    }

    /// Sends `statements` (PostgreSQL's own text, `$1`...) and then `last` (simple-query text,
    /// a commit, say) in one round trip, in that order, and waits for every answer: each
    /// statement's rows changed, or the first error. `last` is sent only once every statement
    /// has been: one that fails before it goes out (its parameters cannot be encoded) stops
    /// it, so a COMMIT in `last` never follows a statement the server did not get.
    pub fn pipeline(
        &self,
        statements: &[(&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>)],
        last: &str,
    ) -> (Result<Vec<u64>, StoreError>, Option<std::time::Instant>) {
        // When the first statement was answered (the caller's measure of a lock it takes).
        let first_answered = std::cell::Cell::new(None);
        let out = self.pipeline_inner(statements, last, &first_answered);
        (out, first_answered.get())
    }

    fn pipeline_inner(
        &self,
        statements: &[(&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>)],
        last: &str,
        first_answered: &std::cell::Cell<Option<std::time::Instant>>,
    ) -> Result<Vec<u64>, StoreError> {
        // Anything deferred goes out first, on its own (nothing is dropped).
        let first = self.take_deferred();
        // Prepared first (each once per connection, then cached): a statement given as text
        // would be prepared when first polled, and go out after `last`.
        let prepared = self.prepare_all(statements)?;
        self.handle.block_on(async {
            if let Some(sql) = &first {
                let sent = self.client.batch_execute(sql).await;
                self.sent(sql, sent.is_ok());
                sent.map_err(|e| self.err(e))?;
            }
            let mut sent: Vec<_> = prepared
                .iter()
                .zip(statements)
                .map(|(stmt, (_, p))| Box::pin(self.client.execute(stmt, p)))
                .collect();
            // A request goes out when its future is first polled; one that cannot be encoded
            // is ready at once with its error, having sent nothing.
            let mut early = Vec::new();
            for f in &mut sent {
                early.push(futures_util::poll!(f.as_mut()));
            }
            // Which are still to answer (a finished future must not be polled again).
            let went_out: Vec<bool> = early.iter().map(std::task::Poll::is_pending).collect();
            let failed = early.iter_mut().find_map(|r| {
                match std::mem::replace(r, std::task::Poll::Pending) {
                    std::task::Poll::Ready(Err(e)) => Some(e),
                    other => {
                        *r = other;
                        None
                    }
                }
            });
            if let Some(e) = failed {
                // What went out is answered before the caller's ROLLBACK; no `last`.
                for (f, out) in sent.iter_mut().zip(&went_out) {
                    if *out {
                        let _ = f.as_mut().await;
                    }
                }
                return Err(self.err(e));
            }
            let (rest, ended) = futures_util::future::join(
                futures_util::future::join_all(sent.iter_mut().zip(early).enumerate().map(
                    |(i, (f, r))| async move {
                        let done = match r {
                            std::task::Poll::Ready(done) => done,
                            std::task::Poll::Pending => f.as_mut().await,
                        };
                        if i == 0 {
                            first_answered.set(Some(std::time::Instant::now()));
                        }
                        done
                    },
                )),
                self.client.batch_execute(last),
            )
            .await;
            let counts = rest
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err(e));
            self.sent(last, counts.is_ok() && ended.is_ok());
            let counts = counts?;
            ended.map_err(|e| self.err(e))?;
            Ok(counts)
        })
    }

    /// Runs `statements` (PostgreSQL's own text, `$1`..., with parameters of any type the
    /// driver takes: arrays, say) in order, in one round trip; each one's rows changed. Polled
    /// together, they go out on the connection in order without waiting for each other's
    /// answers (tokio-postgres pipelines them); the server runs them in that order.
    pub fn execute_typed(
        &self,
        statements: &[(&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>)],
    ) -> Result<Vec<u64>, StoreError> {
        let prepared = self.prepare_all(statements)?;
        self.run(futures_util::future::try_join_all(
            prepared
                .iter()
                .zip(statements)
                .map(|(stmt, (_, p))| self.client.execute(stmt, p)),
        ))
    }

    /// Each of `statements` prepared (once per connection, then cached).
    fn prepare_all(
        &self,
        statements: &[(&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>)],
    ) -> Result<Vec<tokio_postgres::Statement>, StoreError> {
        statements
            .iter()
            .map(|(sql, _)| {
                self.handle
                    .block_on(self.client.prepare_cached(sql))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }

    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Pg(PgError::of(&self.target, e))
    }

    fn statement(&self, sql: &str) -> Result<tokio_postgres::Statement, StoreError> {
        let sql = numbered(sql);
        self.handle
            .block_on(self.client.prepare_cached(&sql))
            .map_err(|e| self.err(e))
    }
}

fn as_params(params: &[Value]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        self.run(self.client.execute(&stmt, &as_params(params)))
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        let sql = match self.take_deferred() {
            Some(first) => format!("{first}; {sql}"),
            None => sql.to_owned(),
        };
        self.send_text(&sql)
    }

    fn execute_all(&self, statements: &[(&str, Vec<Value>)]) -> Result<(), StoreError> {
        let texts: Vec<String> = statements.iter().map(|(sql, _)| numbered(sql)).collect();
        let typed: Vec<(&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>)> = texts
            .iter()
            .zip(statements)
            .map(|(sql, (_, p))| (sql.as_str(), as_params(p)))
            .collect();
        self.execute_typed(&typed).map(|_| ())
    }

    fn each(
        &self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let stmt = self.statement(sql)?;
        let stream = self.run(self.client.query_raw(&stmt, params.iter()))?;
        let mut stream = std::pin::pin!(stream);
        while let Some(r) = self.handle.block_on(stream.next()) {
            let r = r.map_err(|e| self.err(e))?;
            if !f(pg_row(&r)?)? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_outside_quotes() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?2 AND c = ?1"),
            "SELECT a FROM t WHERE b = $2 AND c = $1"
        );
        assert_eq!(
            numbered("SELECT '?' , x FROM t WHERE a = ? AND b LIKE ? || ' %'"),
            "SELECT '?' , x FROM t WHERE a = $1 AND b LIKE $2 || ' %'"
        );
        assert_eq!(numbered("a = ?3 AND b = ?"), "a = $3 AND b = $4");
        assert_eq!(
            numbered("a = ?3 AND b = ?1 AND c = ?"),
            "a = $3 AND b = $1 AND c = $4"
        );
    }

    #[test]
    fn transaction_control_is_read_from_the_last_statement_that_begins_or_ends_one() {
        assert_eq!(
            transaction_control("BEGIN ISOLATION LEVEL READ COMMITTED; SAVEPOINT job"),
            Some(true)
        );
        assert_eq!(transaction_control("SELECT 1; COMMIT"), Some(false));
        assert_eq!(
            transaction_control("UPDATE log_head SET seq = 3 WHERE id = 1; COMMIT"),
            Some(false)
        );
        assert_eq!(transaction_control("rollback"), Some(false));
        assert_eq!(transaction_control("ROLLBACK TO SAVEPOINT job"), None);
        assert_eq!(transaction_control("ROLLBACK TO job; RELEASE job"), None);
        assert_eq!(
            transaction_control("RELEASE SAVEPOINT job; SAVEPOINT job"),
            None
        );
        assert_eq!(transaction_control("COMMIT; BEGIN"), Some(true));
        assert_eq!(transaction_control("ROLLBACK WORK TO SAVEPOINT job"), None);
        assert_eq!(transaction_control("rollback transaction to job"), None);
        assert_eq!(transaction_control("ROLLBACK WORK"), Some(false));
        assert_eq!(transaction_control("COMMIT AND CHAIN"), Some(true));
        assert_eq!(transaction_control("COMMIT AND NO CHAIN"), Some(false));
        assert_eq!(transaction_control(""), None);
    }

    #[test]
    fn sqlite_rows_read_back_as_written() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)")
            .unwrap();
        let n = Db::execute(
            &c,
            "INSERT INTO t VALUES (?1, ?2, ?3), (?4, NULL, NULL)",
            &[
                Value::Int(7),
                "seven".into(),
                Value::Blob(vec![1, 2]),
                Value::Int(8),
            ],
        )
        .unwrap();
        assert_eq!(n, 2);
        let rows = Db::rows(&c, "SELECT a, b, c FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].int(0).unwrap(), 7);
        assert_eq!(rows[0].text(1).unwrap(), "seven");
        assert_eq!(rows[0].blob(2).unwrap(), vec![1, 2]);
        assert_eq!(rows[1].opt_text(1).unwrap(), None);
        assert!(matches!(rows[1].text(1), Err(StoreError::ColumnType(_))));
        let first = Db::row(&c, "SELECT a FROM t WHERE a > ?", &[Value::Int(7)]).unwrap();
        assert_eq!(first.map(|r| r.int(0).unwrap()), Some(8));
        // Text that is not UTF-8 is a damaged row, as rusqlite reports it.
        c.execute_batch("INSERT INTO t VALUES (9, CAST(x'ff' AS TEXT), NULL)")
            .unwrap();
        assert!(matches!(
            Db::rows(&c, "SELECT b FROM t WHERE a = 9", &[]),
            Err(StoreError::Damaged(_))
        ));
    }
}
