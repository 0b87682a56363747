//! The API listener: HTTPS with mutual TLS. Accepts connections under a concurrency limit,
//! completes the TLS handshake (which already refused any client that is not exactly one
//! registered organisation), and serves the routes with the caller's identity attached.
//!
//! [`serve`] takes its listener and a shutdown future as arguments, so tests run it on port 0
//! and stop it when they like. Its TLS configuration is [`Live`]: each accepted connection
//! handshakes with the configuration current at that moment, so a reload (a rotated certificate,
//! a new CA or CRL) applies to new connections and leaves established ones as they are.

pub mod caller;
pub mod decisions;
pub mod inbound;
mod linger;
pub mod problem;
pub mod routes;
pub mod tls;
pub mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Limits;
use crate::domain::registry::Registry;
use crate::domain::subject::SubjectKey;
use crate::live::Live;
use crate::store::Store;
use problem::Problem;
pub use tls::Caller;

/// What the handlers share.
pub struct App {
    pub registry: Live<Registry>,
    pub store: Store,
    pub spool_recipient: age::x25519::Recipient,
    pub subject_key: Arc<SubjectKey>,
    pub limits: Limits,
    /// Wakes the delivery worker when a transfer is accepted.
    pub wake: crate::deliver::Wake,
    /// The largest payload an email recipient can be sent.
    pub max_email_bytes: u64,
}

/// Every route the API serves, as (method, path template). The OpenAPI document must describe
/// exactly these (a test checks).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/transfers"),
    ("get", "/v1/transfers/{id}"),
    ("post", "/v1/transfers/{id}/rationale"),
    ("post", "/v1/decisions"),
    ("get", "/v1/decisions/{id}"),
    ("post", "/v1/inbound"),
    ("get", "/v1/inbox"),
    ("get", "/v1/inbox/{id}"),
    ("get", "/v1/inbox/{id}/payload"),
    ("post", "/v1/inbox/{id}/ack"),
];

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/transfers", post(routes::submit))
        .route("/v1/transfers/{id}", get(routes::status))
        .route("/v1/transfers/{id}/rationale", post(decisions::rationale))
        .route("/v1/decisions", post(decisions::decline))
        .route("/v1/decisions/{id}", get(decisions::show))
        .route("/v1/inbound", post(inbound::receive))
        .route("/v1/inbox", get(inbound::list))
        .route("/v1/inbox/{id}", get(inbound::get))
        .route("/v1/inbox/{id}/payload", get(inbound::payload))
        .route("/v1/inbox/{id}/ack", post(inbound::acknowledge))
        .fallback(|| async {
            Problem::new(
                404,
                "not_found",
                "There is no such endpoint. See the API document (docs/openapi.json).",
            )
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                405,
                "method_not_allowed",
                "This endpoint does not support that method.",
            )
        })
        .with_state(app)
}

/// How long in-flight requests may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the API until `shutdown` completes, then stops accepting, lets in-flight requests
/// finish (up to [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    tls: impl Into<Live<rustls::ServerConfig>>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router(app.clone());
    serve_router(
        listener,
        tls,
        router,
        &app.limits,
        app.registry.clone(),
        shutdown,
    )
    .await
}

/// A router that answers `POST /v1/transfers` with 202 after reading and discarding the body,
/// and does nothing else: the load generator's baseline, on the same TLS and HTTP stack.
pub fn null_router() -> Router {
    async fn drain(body: axum::body::Body) -> axum::response::Response {
        use futures_util::StreamExt;
        let mut s = body.into_data_stream();
        while let Some(chunk) = s.next().await {
            if chunk.is_err() {
                break;
            }
        }
        let mut r = axum::response::IntoResponse::into_response((
            axum::http::StatusCode::ACCEPTED,
            r#"{"status":"accepted"}"#,
        ));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        r
    }
    Router::new().route("/v1/transfers", post(drain))
}

/// The accept loop, TLS and HTTP/1.1 for any router.
pub async fn serve_router(
    listener: TcpListener,
    tls: impl Into<Live<rustls::ServerConfig>>,
    router: Router,
    limits: &Limits,
    registry: Live<Registry>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tls: Live<rustls::ServerConfig> = tls.into();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let handshake_timeout = limits.handshake_timeout;
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);

    loop {
        // The permit is taken before accepting: at the limit, new clients wait in the kernel's
        // backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Read at each accept: the configuration in force now is the one this client gets.
        let acceptor = TlsAcceptor::from(tls.current());
        let router = router.clone();
        let registry = registry.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            connection(
                tcp,
                remote,
                acceptor,
                handshake_timeout,
                router,
                registry,
                stop,
            )
            .await;
        });
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
    Ok(())
}

async fn connection(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: std::time::Duration,
    router: Router,
    registry: Live<Registry>,
    stop: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(
        handshake_timeout,
        acceptor.accept(linger::Lingering::new(tcp)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            crate::metrics::tls_handshake_failed(crate::metrics::HandshakeFailure::classify(&e));
            tracing::info!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            crate::metrics::tls_handshake_failed(crate::metrics::HandshakeFailure::Timeout);
            tracing::info!(%remote, "TLS handshake timed out");
            return;
        }
    };
    // The verifier already mapped the certificate; map it again for this connection (the
    // registry may have been reloaded in between, in which case the newer answer wins).
    let Some(caller) = tls::caller(&registry.current(), stream.get_ref().1.peer_certificates())
    else {
        crate::metrics::tls_handshake_failed(crate::metrics::HandshakeFailure::UnknownIdentity);
        tracing::info!(%remote, "client certificate no longer maps to an organisation or peer; closing");
        return;
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(caller.clone());
            router.clone().oneshot(req)
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
