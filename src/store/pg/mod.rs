//! PostgreSQL, for a deployment of several nodes (`[store] backend = "postgres"`): the
//! connection pool (TLS 1.2+ on ring, the server's certificate verified against the configured
//! CA for the host named in the URL), the schema and its recorded versions (`postern store
//! migrate`), what a node asks of the database to know it can serve, and what the nodes share:
//! one log chain ([`log`], [`writer`]), the delivery queue's leases ([`queue`]), one-node-at-a-
//! time jobs ([`lease`], [`checkpoint`]). The store's own queries run here through `store::db`,
//! and a node's `Store` on this database is `store::shared`; `postern serve` does not open it
//! yet.
//!
//! It sits beside the SQLite store, at the same layer: the configuration hands the runtime a
//! validated URL and the CA's certificates, and the runtime builds a [`Target`] from them.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

pub mod checkpoint;
pub mod copy;
pub mod lease;
pub mod log;
pub mod payload;
pub mod queue;
mod schema;
pub mod verify;
pub mod writer;

pub use schema::{MigrateReport, SCHEMA_VERSION, Status, migrate, status};

/// Where the database is and how to trust it: what `[store]` says, with the password read.
pub struct Target {
    /// Host, port, user and database (from `store.url`); never a password.
    pub url: tokio_postgres::Config,
    /// The CA certificates that may issue the database server's certificate (`store.ca`).
    pub roots: Vec<CertificateDer<'static>>,
    /// From `store.password_file`, if any.
    pub password: Option<Zeroizing<String>>,
    /// Connections this node keeps open at most.
    pub pool_size: usize,
}

impl Target {
    /// `user@host:port/database`, for messages (no password, ever).
    pub fn describe(&self) -> String {
        describe(&self.url)
    }
}

/// `user@host:port/database` of a connection's settings.
pub fn describe(c: &tokio_postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("");
    let db = c.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database cannot be reached now (refused, timed out, shutting down, starting up, or
    /// the connection broke): temporary, answered 503 and retried, never a 500.
    #[error("the database {target} cannot be reached: {why}")]
    Unavailable { target: String, why: String },
    /// The database ended the transaction because it conflicted with another (a deadlock, a
    /// serialisation failure, a lock not granted in time): nothing of it was kept, and a
    /// retry will do. Answered 503 as [`PgError::Unavailable`] is, but said as what it is.
    #[error("the database {target} ended a transaction that conflicted with another: {why}")]
    Conflict { target: String, why: String },
    /// The server's certificate was not trusted, or TLS failed: a configuration fault.
    #[error("TLS to the database {target} failed: {why}")]
    Tls { target: String, why: String },
    /// The database refused the user or its password.
    #[error("the database {target} refused the sign-in: {why}")]
    Auth { target: String, why: String },
    #[error(
        "the database {target} holds schema version {found}, newer than this postern knows ({known}): upgrade postern on every node"
    )]
    TooNew {
        target: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the database {target} holds schema version {found}; this postern needs {known}: run `postern store migrate`"
    )]
    NotMigrated {
        target: String,
        found: i64,
        known: i64,
    },
    /// The chain's head row cannot be chained from: nothing is appended.
    #[error(
        "the transfer log's head (record {seq}) in {target} cannot be chained from; run `postern log verify`"
    )]
    BadHead { target: String, seq: i64 },
    #[error("the TLS configuration for the database could not be built: {0}")]
    Config(String),
    /// A driver error seen by another request of the same batch.
    #[error("database {target}: {why}")]
    Failed { target: String, why: String },
    #[error("database {target}: {}", in_words(source))]
    Sql {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PgError {
    /// The same error again, for every request of a batch that failed together (a driver error
    /// is kept as its words).
    pub fn again(&self) -> PgError {
        match self {
            PgError::Unavailable { target, why } => PgError::Unavailable {
                target: target.clone(),
                why: why.clone(),
            },
            PgError::Conflict { target, why } => PgError::Conflict {
                target: target.clone(),
                why: why.clone(),
            },
            PgError::Tls { target, why } => PgError::Tls {
                target: target.clone(),
                why: why.clone(),
            },
            PgError::Auth { target, why } => PgError::Auth {
                target: target.clone(),
                why: why.clone(),
            },
            PgError::TooNew {
                target,
                found,
                known,
            } => PgError::TooNew {
                target: target.clone(),
                found: *found,
                known: *known,
            },
            PgError::NotMigrated {
                target,
                found,
                known,
            } => PgError::NotMigrated {
                target: target.clone(),
                found: *found,
                known: *known,
            },
            PgError::BadHead { target, seq } => PgError::BadHead {
                target: target.clone(),
                seq: *seq,
            },
            PgError::Config(why) => PgError::Config(why.clone()),
            PgError::Sql { target, source } => PgError::Failed {
                target: target.clone(),
                why: in_words(source),
            },
            PgError::Failed { target, why } => PgError::Failed {
                target: target.clone(),
                why: why.clone(),
            },
        }
    }

    /// Whether waiting may mend it (the database restarting, a failover, a network blip, or
    /// a conflict with another transaction): a 503, never a 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PgError::Unavailable { .. } | PgError::Conflict { .. })
    }

    /// The same failure, said with `why` (what the store was doing when it came), for a
    /// failure that waiting may mend; `None` for any other.
    pub(crate) fn retryable_as(&self, why: String) -> Option<PgError> {
        match self {
            PgError::Unavailable { target, .. } => Some(PgError::Unavailable {
                target: target.clone(),
                why,
            }),
            PgError::Conflict { target, .. } => Some(PgError::Conflict {
                target: target.clone(),
                why,
            }),
            _ => None,
        }
    }

    /// Classifies a driver error: what a peer's answer and `/readyz` need to know.
    pub(crate) fn of(target: &str, e: tokio_postgres::Error) -> PgError {
        use tokio_postgres::error::SqlState;
        let target = target.to_owned();
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return PgError::Auth {
                    target,
                    why: db.message().to_owned(),
                };
            }
            // A conflict with another transaction, ended by the database: a serialisation
            // failure, a deadlock, a lock not granted in time.
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
            {
                return PgError::Conflict {
                    target,
                    why: db.message().to_owned(),
                };
            }
            // Class 08 (connection), 57P01-57P03 (shutting down, crashed, starting), class 53
            // (too many connections, out of memory or disk): the server cannot take us now...
            // ... and what passes on a retry: a statement that timed out, a server out of room
            // for a moment, and a primary that became a standby (a failover in progress:
            // 25006, read-only transaction).
            let c = code.code();
            if c.starts_with("08")
                || c.starts_with("57P")
                || c.starts_with("53")
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::QUERY_CANCELED
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            {
                return PgError::Unavailable {
                    target,
                    why: db.message().to_owned(),
                };
            }
            return PgError::Sql { target, source: e };
        }
        let chain: &(dyn std::error::Error + 'static) = &e;
        if let Some(tls) = crate::tls::find_tls_error(chain) {
            return PgError::Tls {
                why: crate::tls::in_words(tls, &format!("the database server {target}")),
                target,
            };
        }
        let why = in_words(chain);
        if why.contains("password missing") {
            return PgError::Auth {
                target,
                why: "the server asks for a password and none is configured (store.password_file)"
                    .into(),
            };
        }
        // No database error and no TLS error: the socket (refused, reset, timed out) or the
        // connection closed under us.
        if e.is_closed() || crate::tls::find_io_error(chain).is_some() || why.contains("timeout") {
            return PgError::Unavailable { target, why };
        }
        PgError::Sql { target, source: e }
    }
}

/// An error and its sources, as one sentence ("error connecting to server: Connection refused").
fn in_words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// The pool of connections to the database. Connections are opened when first needed, so
/// building a pool does not reach the database; [`Pool::get`] does.
#[derive(Clone)]
pub struct Pool {
    inner: deadpool_postgres::Pool,
    target: String,
    /// What the connections are opened with, for [`Pool::sibling`].
    opened_with: Arc<(
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    )>,
}

/// How long a request waits for a connection, and for one to open, before the database counts
/// as unavailable.
const WAIT: Duration = Duration::from_secs(5);

impl Pool {
    pub fn new(t: &Target) -> Result<Pool, PgError> {
        let mut tls = crate::tls::client_config(&t.roots, None)
            .map_err(|e| PgError::Config(e.to_string()))?;
        // PostgreSQL 17 checks the ALPN a client offers; older servers ignore it.
        tls.alpn_protocols = vec![b"postgresql".to_vec()];
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let mut config = t.url.clone();
        // Always TLS, whatever the URL said (the configuration refuses a weaker sslmode).
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        config.connect_timeout(WAIT);
        config.application_name("postern");
        // A node that vanishes mid-transaction (power, partition) must not hold the chain's
        // head lock, or a delivery's row, for the hours TCP takes to notice: the server ends an
        // idle transaction after 30 s, keepalives find a dead peer in about 25 s, and a wait
        // for a lock gives up after 10 s (a 503, and the request is retried).
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        config.options("-c idle_in_transaction_session_timeout=30s -c lock_timeout=10s");
        // With several hosts in the URL, the primary: after a failover, the new one.
        config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        if let Some(p) = &t.password {
            config.password(p.as_bytes());
        }
        Pool::build(config, connector, t.pool_size, t.describe())
    }

    fn build(
        config: tokio_postgres::Config,
        connector: tokio_postgres_rustls::MakeRustlsConnect,
        size: usize,
        target: String,
    ) -> Result<Pool, PgError> {
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            connector.clone(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let inner = deadpool_postgres::Pool::builder(manager)
            .max_size(size.max(1))
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Config(e.to_string()))?;
        Ok(Pool {
            inner,
            target,
            opened_with: Arc::new((config, connector)),
        })
    }

    /// Another pool of at most `size` connections to the same database, opened the same way
    /// (on the runtime it is first used from).
    pub fn sibling(&self, size: usize) -> Result<Pool, PgError> {
        let (config, connector) = &*self.opened_with;
        Pool::build(config.clone(), connector.clone(), size, self.target.clone())
    }

    /// `user@host:port/database`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A connection from the pool, opening one if none is idle.
    pub async fn get(&self) -> Result<deadpool_postgres::Object, PgError> {
        use deadpool_postgres::PoolError as P;
        self.inner.get().await.map_err(|e| match e {
            P::Backend(e) => PgError::of(&self.target, e),
            P::Timeout(_) => PgError::Unavailable {
                target: self.target.clone(),
                why: format!("no connection within {} s", WAIT.as_secs()),
            },
            other => PgError::Unavailable {
                target: self.target.clone(),
                why: other.to_string(),
            },
        })
    }

    /// Whether the database answers and holds the schema this node needs: what `/readyz` asks.
    pub async fn probe(&self) -> Result<(), PgError> {
        let client = self.get().await?;
        let s = status(&client, &self.target).await?;
        s.ready(&self.target)
    }

    /// Wraps a driver error with this pool's target.
    pub fn err(&self, e: tokio_postgres::Error) -> PgError {
        PgError::of(&self.target, e)
    }
}
