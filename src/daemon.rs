//! Assembles a running gateway from a loaded configuration: open the store (sweeping orphans),
//! build TLS, bind the listener, then serve until shutdown. Used by `postern serve` and
//! `postern demo`, and by the integration tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deliver::{self, Deliverer};
use crate::ingest::{self, App, tls};
use crate::live::Live;
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
}

/// A gateway that has opened its store and bound its listener, ready to serve.
pub struct Prepared {
    pub addr: SocketAddr,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    deliverer: Arc<Deliverer>,
    wake: deliver::Wake,
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
    Ok(Prepared {
        addr,
        listener,
        tls,
        app,
        deliverer: Arc::new(deliverer),
        wake,
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
            ..
        } = self;
        let stop = CancellationToken::new();
        let worker = tokio::spawn(deliver::run(deliverer, wake, stop.clone()));
        ingest::serve(listener, tls, app, shutdown).await?;
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
        Ok(())
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
