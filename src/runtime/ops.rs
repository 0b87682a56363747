//! The ops listener: `/healthz`, `/readyz` and `/metrics` over plain HTTP, on a listener of its
//! own (loopback by default) so that probes and Prometheus need no client certificate and the
//! API port exposes nothing but the API.
//!
//! - `/healthz`: the process is alive and serving (always 200).
//! - `/readyz`: the gateway could accept a transfer now: it is not draining for shutdown, the
//!   state directory's filesystem has its reserve of free space (`limits.min_free_bytes`), the
//!   store answers a read, its writer commits, and a file can be created, fsync'd and removed in
//!   the spool directory. 200 `ready`, or 503 with the reason.
//! - `/metrics`: [`crate::metrics`], with the queue's gauges read from the store at scrape time.
//!
//! Like the API, [`serve`] takes its listener and a shutdown future, so tests run it on port 0.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics;
use crate::store::{Store, StoreError, queue};

/// How long one readiness check (or the metrics' store read) may take before it counts as
/// failed: a probe that hangs is as bad as one that fails, and load balancers time out too.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long open connections (a scrape in progress) may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the gateway is not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the store cannot be read: {0}")]
    StoreRead(#[source] StoreError),
    #[error("the store cannot commit: {0}")]
    StoreWrite(#[source] StoreError),
    #[error("the spool directory {path} is not writable: {source}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the previous spool check has not finished (the disk may be hanging)")]
    SpoolBusy,
    #[error("{0} did not answer within {secs} s", secs = CHECK_TIMEOUT.as_secs())]
    Timeout(&'static str),
    #[error("shutting down: finishing requests in flight, accepting no more")]
    Draining,
    #[error(
        "the disk is short of space: {free} bytes free, below the reserve of {reserve} (limits.min_free_bytes); uploads are refused with 507 until space is freed"
    )]
    Disk { free: u64, reserve: u64 },
}

/// What the ops endpoints look at.
pub struct Ops {
    store: Store,
    spool_dir: PathBuf,
    /// Held by the spool probe's blocking task, even past its timeout: a hanging disk then
    /// costs one blocked thread, not one per probe.
    probing: Arc<tokio::sync::Mutex<()>>,
    /// The calendar open requests' ages are counted in (none: the gauge stays at zero).
    requests: Option<Arc<crate::config::RequestSettings>>,
    /// Whether the last readiness check passed, so that only changes are logged.
    was_ready: AtomicBool,
    /// Free space the state directory's filesystem keeps in reserve.
    reserve: u64,
    /// Set once the gateway has begun to shut down.
    draining: Arc<AtomicBool>,
}

impl Ops {
    pub fn new(store: Store, spool_dir: PathBuf) -> Self {
        Ops {
            store,
            spool_dir,
            probing: Arc::new(tokio::sync::Mutex::new(())),
            was_ready: AtomicBool::new(true),
            reserve: 0,
            draining: Arc::default(),
            requests: None,
        }
    }

    /// Bands open requests for information by working days with this calendar.
    pub fn with_requests(mut self, requests: Arc<crate::config::RequestSettings>) -> Self {
        self.requests = Some(requests);
        self
    }

    /// Not ready while the filesystem has less than `bytes` free.
    pub fn with_reserve(mut self, bytes: u64) -> Self {
        self.reserve = bytes;
        self
    }

    /// Not ready once `draining` is set (the gateway has begun to shut down).
    pub fn with_draining(mut self, draining: Arc<AtomicBool>) -> Self {
        self.draining = draining;
        self
    }

    /// Whether the gateway could accept a transfer now.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(NotReady::Draining);
        }
        if let Ok(free) = self.store.free_bytes()
            && free < self.reserve
        {
            return Err(NotReady::Disk {
                free,
                reserve: self.reserve,
            });
        }
        let read = self.store.read(crate::store::probe);
        within("the store", read)
            .await?
            .map_err(NotReady::StoreRead)?;
        // A write job that changes nothing: it proves the single writer is alive and can take
        // the write lock (an empty transaction writes nothing to the WAL).
        let write = self.store.write(false, |_| Ok(()));
        within("the store's writer", write)
            .await?
            .map_err(NotReady::StoreWrite)?;
        let Ok(guard) = self.probing.clone().try_lock_owned() else {
            return Err(NotReady::SpoolBusy);
        };
        let dir = self.spool_dir.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            probe_dir(&dir)
        });
        match within("the spool directory", probe).await? {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(NotReady::Spool {
                path: self.spool_dir.display().to_string(),
                source,
            }),
            Err(e) => Err(NotReady::Spool {
                path: self.spool_dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// The metrics exposition, with the queue gauges read from the store now.
    pub async fn metrics(&self) -> Result<String, NotReady> {
        let depth = within("the store", self.store.read(|c| queue::depth(c)))
            .await?
            .map_err(NotReady::StoreRead)?;
        let now = crate::clock::now();
        let oldest_pending_age = depth
            .oldest_pending_accepted_at
            .as_deref()
            .and_then(crate::clock::parse)
            .map_or(Duration::ZERO, |t| {
                Duration::try_from(now - t).unwrap_or(Duration::ZERO)
            });
        let queue = metrics::Queue {
            depth: metrics::PENDING_STATES
                .iter()
                .map(|s| {
                    let n = depth
                        .by_state
                        .iter()
                        .find(|(state, _)| state == s)
                        .map_or(0, |(_, n)| *n);
                    (*s, n)
                })
                .collect(),
            oldest_pending_age,
            requests_open: self.requests_open(now).await?,
        };
        Ok(metrics::encode(&queue))
    }
}

impl Ops {
    /// Open requests for information per age band, in working days since the day received.
    async fn requests_open(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<Vec<(&'static str, u64)>, NotReady> {
        let Some(settings) = &self.requests else {
            return Ok(Vec::new());
        };
        let received = within(
            "the store",
            self.store
                .read(|c| crate::store::requests::open_received(c)),
        )
        .await?
        .map_err(NotReady::StoreRead)?;
        let today = crate::domain::calendar::uk_day(now);
        let mut bands: Vec<(&'static str, u64)> =
            metrics::REQUEST_AGE_BANDS.iter().map(|b| (*b, 0)).collect();
        for at in received.iter().filter_map(|r| crate::clock::parse(r)) {
            let days = settings
                .calendar
                .working_days_between(crate::domain::calendar::uk_day(at), today);
            let band = metrics::request_age_band(days);
            if let Some(slot) = bands.iter_mut().find(|(b, _)| *b == band) {
                slot.1 += 1;
            }
        }
        Ok(bands)
    }
}

async fn within<T>(what: &'static str, f: impl Future<Output = T>) -> Result<T, NotReady> {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .map_err(|_| NotReady::Timeout(what))
}

/// Creates, fsyncs and removes a file in `dir`: what accepting a transfer will need. A probe
/// left behind by a crash is an orphan like any other, and the start-up sweep removes it.
fn probe_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix(".readyz-")
        .tempfile_in(dir)?;
    f.write_all(b"ready\n")?;
    f.as_file().sync_all()?;
    f.close()
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n".into())
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    match ops.readiness().await {
        Ok(()) => {
            if !ops.was_ready.swap(true, Ordering::Relaxed) {
                tracing::info!("ready again");
            }
            text(StatusCode::OK, "ready\n".into())
        }
        Err(e) => {
            if ops.was_ready.swap(false, Ordering::Relaxed) {
                tracing::warn!(reason = %e, "not ready");
            }
            text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n"))
        }
    }
}

async fn scrape(State(ops): State<Arc<Ops>>) -> Response {
    match ops.metrics().await {
        Ok(body) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            r
        }
        // Better no scrape (Prometheus marks the target down) than gauges that look current
        // but are not.
        Err(e) => {
            tracing::warn!(error = %e, "metrics unavailable");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("metrics unavailable: {e}\n"),
            )
        }
    }
}

fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(scrape))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found: this listener serves /healthz, /readyz and /metrics\n".into(),
            )
        })
        .with_state(ops)
}

/// Serves /healthz, /readyz and /metrics over plain HTTP until `shutdown` completes, then
/// lets open requests finish (up to a few seconds) and returns.
pub async fn serve(
    listener: TcpListener,
    ops: Arc<Ops>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(ops))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(());
        })
        .into_future();
    // Graceful shutdown waits for every connection to close; a client that never does must not
    // hold up the gateway's exit.
    let grace = async move {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!("ops requests did not finish within the grace period");
            Ok(())
        }
    }
}
