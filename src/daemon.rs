//! Assembles a running gateway from a loaded configuration: open the store (sweeping orphans),
//! build TLS, bind the listener, then serve until shutdown. Used by `postern serve` and
//! `postern demo`, and by the integration tests.
//!
//! Alongside the listener and the delivery worker runs the transfer log's upkeep: a signed
//! checkpoint of the chain every `log.checkpoint_interval_secs`, and the retention purge (and the
//! thinning of old checkpoints) at start-up and daily. At shutdown, once requests and delivery
//! attempts in flight have finished, a last checkpoint signs everything they recorded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::config::daemon::LogSettings;
use crate::deliver::{self, Deliverer};
use crate::ingest::{self, App, tls};
use crate::live::Live;
use crate::store::checkpoint::{self, CheckpointKey, KeyError, Purge};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("delivery: {0}")]
    Delivery(String),
    #[error("log.checkpoint_key: {0}")]
    CheckpointKey(#[from] KeyError),
}

/// A gateway that has opened its store and bound its listener, ready to serve.
pub struct Prepared {
    pub addr: SocketAddr,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    deliverer: Arc<Deliverer>,
    wake: deliver::Wake,
    upkeep: Upkeep,
}

/// Opens the store and binds the listener (in that order: nothing is accepted before the
/// spool has been swept).
pub async fn prepare(config: Config) -> Result<Prepared, DaemonError> {
    let Config {
        daemon,
        registry,
        tls: material,
        spool_key,
        subject_key,
    } = config;
    let checkpoint_key = Arc::new(CheckpointKey::from_file(&daemon.log.checkpoint_key)?);
    let (store, sweep) = Store::open(&daemon.state_dir)?;
    if sweep.orphans_removed > 0 {
        tracing::info!(
            removed = sweep.orphans_removed,
            "removed spool files left by interrupted uploads"
        );
    }
    let registry = Live::new(registry);
    let tls = Arc::new(tls::server_config(&material, registry.clone())?);
    let listener = TcpListener::bind(daemon.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: daemon.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    let wake = deliver::Wake::default();
    let spool_key = Arc::new(spool_key);
    let deliverer = Deliverer::new(
        store.clone(),
        registry.clone(),
        spool_key.clone(),
        daemon.delivery.clone(),
        &daemon.smtp,
        &material,
        addr.port(),
    )
    .map_err(DaemonError::Delivery)?;
    let app = Arc::new(App {
        registry,
        store: store.clone(),
        spool_recipient: spool_key.recipient().clone(),
        subject_key: Arc::new(subject_key),
        limits: daemon.limits.clone(),
        wake: wake.clone(),
        max_email_bytes: daemon.smtp.max_message_bytes,
    });
    tracing::info!(
        key = %checkpoint_key.public(),
        fingerprint = %checkpoint_key.public().fingerprint(),
        "transfer log checkpoints are signed with this key"
    );
    Ok(Prepared {
        addr,
        listener,
        tls,
        app,
        deliverer: Arc::new(deliverer),
        wake,
        upkeep: Upkeep {
            store,
            key: checkpoint_key,
            settings: daemon.log,
        },
    })
}

impl Prepared {
    /// Serves until `shutdown` completes; in-flight requests finish first.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let Prepared {
            listener,
            tls,
            app,
            deliverer,
            wake,
            upkeep,
            ..
        } = self;
        let stop = CancellationToken::new();
        let worker = tokio::spawn(deliver::run(deliverer, wake, stop.clone()));
        let (store, key) = (upkeep.store.clone(), upkeep.key.clone());
        let upkeep = tokio::spawn(upkeep.run(stop.clone()));
        let served = ingest::serve(listener, tls, app, shutdown).await;
        // Attempts in flight finish (within their own timeout); what is still queued waits in
        // the spool for the next start.
        stop.cancel();
        if tokio::time::timeout(ingest::SHUTDOWN_GRACE, worker)
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery attempts did not finish within the grace period; they will be retried at the next start"
            );
        }
        // A purge under way finishes (it is one write job); nothing else is waited for.
        let _ = upkeep.await;
        // Last, so that it signs every record the requests and attempts above wrote.
        match checkpoint::checkpoint(&store, key).await {
            Ok(Some(c)) => tracing::info!(seq = c.seq, "signed the transfer log's head"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not sign the transfer log's head"),
        }
        served?;
        Ok(())
    }
}

/// How often the retention purge and checkpoint thinning run.
const PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The transfer log's upkeep: periodic checkpoints, the retention purge, checkpoint thinning.
struct Upkeep {
    store: Store,
    key: Arc<CheckpointKey>,
    settings: LogSettings,
}

impl Upkeep {
    async fn run(self, stop: CancellationToken) {
        // Both tick at once at start-up: the purge first (it signs its own anchor), then a
        // checkpoint of whatever the last run left unsigned (after a crash, say).
        let mut purge = tokio::time::interval(PURGE_EVERY);
        let mut sign = tokio::time::interval(self.settings.checkpoint_interval);
        for t in [&mut purge, &mut sign] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = purge.tick() => self.purge().await,
                _ = sign.tick() => {
                    if let Err(e) = checkpoint::checkpoint(&self.store, self.key.clone()).await {
                        tracing::error!(error = %e, "could not sign the transfer log's head");
                    }
                }
            }
        }
    }

    async fn purge(&self) {
        match checkpoint::thin(&self.store, crate::clock::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "thinned old transfer log checkpoints to one a day"
            ),
            Err(e) => tracing::error!(error = %e, "could not thin the transfer log's checkpoints"),
        }
        let days = self.settings.retain_days;
        if days == 0 {
            return;
        }
        match checkpoint::purge(&self.store, self.key.clone(), days, crate::clock::now()).await {
            Ok(Purge::Nothing) => {}
            Ok(Purge::Done { seq, record }) => tracing::info!(
                records = record.records,
                from_seq = record.from_seq,
                to_seq = record.to_seq,
                transfers = record.transfers,
                log_seq = seq,
                "purged transfer log records older than the retention period"
            ),
            Ok(Purge::Refused(b)) => tracing::error!(
                kind = %b.kind,
                seq = b.seq,
                detail = %b.message,
                "the transfer log records due for purging do not verify; nothing was purged (run `postern log verify`)"
            ),
            Err(e) => tracing::error!(error = %e, "could not purge the transfer log"),
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
}
