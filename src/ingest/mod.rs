//! The API listener: HTTPS with mutual TLS. Accepts connections under a concurrency limit,
//! completes the TLS handshake (which already refused any client that is not exactly one
//! registered organisation), and serves the routes with the caller's identity attached.
//!
//! [`serve`] takes its listener and a shutdown future as arguments, so tests run it on port 0
//! and stop it when they like. Its TLS configuration is live ([`ListenerTls`]): each accepted
//! connection handshakes with the configuration current at that moment, so a reload (a rotated
//! certificate, a new CA or CRL) applies to new connections; established connections keep their
//! TLS session, but each of their requests is authenticated again against what is in force
//! (see `ConnectionAuth`), so a revoked certificate or a removed identity stops at once.
//!
//! One client address may hold only so many connections and unfinished handshakes
//! (`sources`), so that a flood from one address cannot starve the others.

pub(crate) mod caller;
pub mod decisions;
pub mod feedback;
pub mod inbound;
mod linger;
pub mod openapi;
mod parse_errors;
pub mod problem;
pub mod requests;
pub mod routes;
pub(crate) mod sources;

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
use crate::tls::server as tls;
use problem::{Problem, ProblemCode};
use rustls::pki_types::{CertificateDer, UnixTime};
use sources::Sources;
pub use tls::{Caller, ListenerTls};

/// What the handlers share.
pub struct App {
    pub registry: Live<Registry>,
    pub store: Store,
    /// The spool key: payloads and envelopes are sealed to it; a request's subject references
    /// too, opened for the holder while it answers.
    pub spool_key: Arc<crate::seal::SpoolKey>,
    pub subject_key: Arc<SubjectKey>,
    pub limits: Limits,
    /// Wakes the delivery worker when a transfer is accepted.
    pub wake: crate::store::queue::Wake,
    /// The largest payload an email recipient can be sent.
    pub max_email_bytes: u64,
    /// Tells a portal organisation's people that a peer's delivery is waiting (`None`: never).
    pub arrivals: Option<Arc<crate::deliver::Arrivals>>,
    /// The cap on what uploads in flight hold in memory.
    pub upload_memory: UploadMemory,
    /// Requests for information: the calendar and limits their clock runs on.
    pub requests: Arc<crate::config::RequestSettings>,
}

/// The cap on the memory uploads in flight hold together (`limits.upload_memory_bytes`), so
/// that many concurrent uploads (one sender's 256 connections, say) cannot exhaust the
/// machine. Each upload reserves what it may hold before a byte of its body is read: at most
/// [`UploadMemory::PER_UPLOAD`], less for a small declared length. One sender (an organisation
/// or a peer gateway) may hold at most a quarter of the cap, so that it cannot keep every other
/// sender out. When there is no room a new upload waits, unread (its bytes stay in the client's
/// TCP buffers), for at most `limits.upload_memory_wait_secs`, then is answered 503 `busy` with
/// Retry-After. (What is counted is reservations: an upload abandoned mid-way gives its room
/// back when its request ends, a moment before its sealing thread has let go of its buffers.)
#[derive(Clone)]
pub struct UploadMemory {
    units: Arc<Semaphore>,
    /// Each sender's share (authenticated identities from the registry, so the map is as
    /// bounded as the registry).
    shares: Arc<std::sync::Mutex<std::collections::HashMap<Sender, Arc<Semaphore>>>>,
    share_units: usize,
    wait: std::time::Duration,
}

/// Who an upload's room is reserved for: each has its own share of the cap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sender {
    Organisation(crate::domain::ids::OrgId),
    Peer(crate::domain::ids::PeerId),
}

/// Room reserved for one upload ([`UploadMemory::reserve`]); given back when dropped.
pub struct Room {
    _total: tokio::sync::OwnedSemaphorePermit,
    _share: tokio::sync::OwnedSemaphorePermit,
}

impl UploadMemory {
    /// The unit reservations are counted in.
    const UNIT: u64 = 64 * 1024;
    /// The most one upload reserves: what it holds in the hand-offs between the network, the
    /// sealing thread and the spool writer (measured at about 0.85 MiB for 1 MiB uploads, 16 in
    /// flight: docs/benchmarks.md, "Memory per upload"). An upload of 8 MiB or more, or of a
    /// length not announced (chunked, or a peer gateway's `/v1/inbound`), gets the deeper
    /// pipeline with digest threads and holds more than it reserves, an estimated 1.5 MiB (not
    /// yet measured); the cap's default leaves room for that.
    pub const PER_UPLOAD: u64 = 1 << 20;

    pub fn new(limits: &Limits) -> Self {
        let units = usize::try_from(limits.upload_memory_bytes / Self::UNIT)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        let most = usize::try_from(Self::PER_UPLOAD / Self::UNIT).unwrap_or(16);
        UploadMemory {
            units: Arc::new(Semaphore::new(units)),
            shares: Arc::default(),
            // A quarter, but always room for one upload of any size.
            share_units: (units / 4).max(most).min(units),
            wait: limits.upload_memory_wait,
        }
    }

    /// Units one upload reserves: its declared length and one unit of hand-off, up to
    /// [`Self::PER_UPLOAD`] (a length not declared may be any size).
    fn units_for(declared: Option<u64>) -> u32 {
        let most = Self::PER_UPLOAD / Self::UNIT;
        let n = declared.map_or(most, |d| d.div_ceil(Self::UNIT).saturating_add(1));
        u32::try_from(n.min(most)).unwrap_or(1)
    }

    fn share(&self, sender: Sender) -> Arc<Semaphore> {
        let mut shares = self
            .shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shares
            .entry(sender)
            .or_insert_with(|| Arc::new(Semaphore::new(self.share_units)))
            .clone()
    }

    /// Reserves room for an upload of `declared` bytes from `sender`, waiting for it up to the
    /// configured time.
    pub async fn reserve(&self, sender: Sender, declared: Option<u64>) -> Result<Room, Problem> {
        let units = Self::units_for(declared);
        let share = self.share(sender.clone());
        let acquire = async {
            // The sender's share first: a sender at its share waits without holding any of
            // the total that others could use.
            let share = share.acquire_many_owned(units).await.ok()?;
            let total = self.units.clone().acquire_many_owned(units).await.ok()?;
            Some(Room {
                _total: total,
                _share: share,
            })
        };
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Some(room)) => Ok(room),
            // Timed out, or closed (never closed here): either way, busy.
            Ok(None) | Err(_) => {
                tracing::warn!(
                    ?sender,
                    waited_secs = self.wait.as_secs(),
                    "refusing an upload before reading it: uploads in flight hold the memory they may (limits.upload_memory_bytes; one sender at most a quarter)"
                );
                Err(Problem::new(
                    ProblemCode::Busy,
                    "The gateway is busy receiving other uploads and did not read this one. Nothing was kept; send it again after the Retry-After interval.",
                ))
            }
        }
    }
}

/// The length a request declares (Content-Length), if any.
pub(crate) fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuses an upload before anything of it is read when the state directory's filesystem would
/// be left with less than `limits.min_free_bytes` free once the request's declared length
/// (Content-Length, when there is one) is written: 507 with Retry-After, instead of a 500 after
/// the whole upload was read. A filesystem whose free space cannot be read is not refused: a
/// write that then fails for want of space is answered 507 too.
pub(crate) fn storage_short(app: &App, headers: &axum::http::HeaderMap) -> Option<Short> {
    let declared = declared_length(headers).unwrap_or(0);
    let reserve = app.limits.min_free_bytes;
    match app.store.free_bytes() {
        Ok(free) if free >= declared.saturating_add(reserve) => None,
        Ok(free) => {
            tracing::warn!(
                free,
                declared,
                reserve,
                "refusing an upload before reading it: the disk would fall below its reserve (limits.min_free_bytes)"
            );
            Some(Short {
                problem: Problem::insufficient_storage(),
                recordable: free >= reserve / 2,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the free space of the state directory");
            None
        }
    }
}

/// An upload refused for want of space ([`storage_short`]).
pub(crate) struct Short {
    pub problem: Problem,
    /// Whether the refusal may still be recorded in the transfer log. The reserve is there so
    /// that the records of work already accepted can be written; refusals, which a client
    /// repeats every Retry-After, may use its first half only, or retries alone would exhaust
    /// it. Below that they are counted (metrics) and logged, not recorded.
    pub recordable: bool,
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
    ("post", "/v1/requests"),
    ("get", "/v1/requests"),
    ("get", "/v1/requests/{id}"),
    ("post", "/v1/requests/{id}/withdraw"),
    ("post", "/v1/requests/{id}/clarification"),
    ("post", "/v1/transfers/{id}/feedback"),
];

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/transfers", post(routes::submit))
        .route("/v1/transfers/{id}", get(routes::status))
        .route("/v1/transfers/{id}/rationale", post(decisions::rationale))
        .route("/v1/transfers/{id}/feedback", post(feedback::give))
        .route("/v1/decisions", post(decisions::decline))
        .route("/v1/decisions/{id}", get(decisions::show))
        .route("/v1/requests", post(requests::make).get(requests::list))
        .route("/v1/requests/{id}", get(requests::show))
        .route("/v1/requests/{id}/withdraw", post(requests::withdraw))
        .route(
            "/v1/requests/{id}/clarification",
            post(requests::clarification),
        )
        .route("/v1/inbound", post(inbound::receive))
        .route("/v1/inbox", get(inbound::list))
        .route("/v1/inbox/{id}", get(inbound::get))
        .route("/v1/inbox/{id}/payload", get(inbound::payload))
        .route("/v1/inbox/{id}/ack", post(inbound::acknowledge))
        .fallback(|| async {
            Problem::new(
                ProblemCode::NotFound,
                "There is no such endpoint. See the API document (docs/openapi.json).",
            )
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                ProblemCode::MethodNotAllowed,
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
    tls: ListenerTls,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router(app.clone());
    serve_router(listener, tls, router, &app.limits, shutdown).await
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
    tls: ListenerTls,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = tls.config.clone();
    accept_loop(listener, &config, limits, shutdown, "", move |a| {
        connection(a, router.clone(), tls.clone())
    })
    .await
}

/// A connection the accept loop admitted, with what its handling needs.
pub(crate) struct Admitted {
    pub tcp: tokio::net::TcpStream,
    pub remote: SocketAddr,
    /// Built from the TLS configuration in force at the accept.
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: std::time::Duration,
    /// The connection's place in its source's allowance: held as long as the connection, and
    /// told when its handshake is over.
    pub slot: sources::Slot,
    /// Cancelled when shutdown begins: finish the request in flight, then close.
    pub stop: CancellationToken,
}

/// The accept loop both HTTPS listeners (the API's and the web pages') run: a connection permit
/// taken before accepting, the per-address limits, the TLS configuration in force at each
/// accept, and on shutdown no new connections and [`SHUTDOWN_GRACE`] for those in flight.
/// `serve` handles one admitted connection (handshake, HTTP) in a task of its own. `name`
/// prefixes its log lines (`""` for the API).
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    config: &Live<rustls::ServerConfig>,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
    name: &'static str,
    serve: F,
) -> std::io::Result<()>
where
    F: Fn(Admitted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Sources::new(
        limits.max_connections_per_source,
        limits.max_handshakes_per_source,
    );
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
                    tracing::warn!(error = %e, "{name}accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A source at its limit is closed at once, and its permit goes back to the others.
        let slot = match sources.admit(remote.ip()) {
            Ok(s) => s,
            Err(limit) => {
                crate::metrics::connection_refused(limit);
                tracing::debug!(%remote, limit = limit.as_str(), "{name}connection refused: its source is at a limit");
                drop(tcp);
                continue;
            }
        };
        // Read at each accept: the configuration in force now is the one this client gets.
        let handling = serve(Admitted {
            tcp,
            remote,
            acceptor: TlsAcceptor::from(config.current()),
            handshake_timeout: limits.handshake_timeout,
            slot,
            stop: stop.clone(),
        });
        tracker.spawn(async move {
            let _permit = permit;
            handling.await;
        });
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("{name}in-flight requests did not finish within the grace period");
    }
    Ok(())
}

/// Serves HTTP/1.1 on an established connection until the client closes it, or, once `stop`
/// is cancelled, until the request in flight is answered.
pub(crate) async fn serve_http1<I, S, B>(
    io: I,
    service: S,
    remote: SocketAddr,
    stop: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        // hyper's read buffer grows to 400 KiB by default: 64 KiB per connection took the peak
        // RSS at 16 uploads of 1 MiB in flight from 95 to 65 MiB, and 32 KiB saved about 0.2 MiB
        // more per upload with no loss in the 1 GiB seal beyond the noise (docs/benchmarks.md;
        // TLS hands over at most 16 KiB at a time anyway). A request refused before its body
        // is read leaves more of it unread, so its connection is more often closed after the
        // answer (src/ingest/linger.rs), as HTTP allows: the next request needs a new one.
        // It also bounds a request's head (431 beyond it), far above any head sent here.
        .max_buf_size(32 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
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

/// How often a connection's certificate is checked again even when nothing was reloaded (it
/// may have expired since the handshake).
const REAUTHENTICATE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Who a connection's client certificate authenticates, checked again before a request when the
/// trust or the registry in force has changed since the last check (a reload: a new CRL, a
/// removed identity), and at least every [`REAUTHENTICATE_EVERY`]. Checking per request rather
/// than capping connection age means a revocation takes effect at the next request, whatever
/// the client's keep-alive, and costs nothing while the configuration is unchanged.
struct ConnectionAuth {
    tls: ListenerTls,
    chain: Vec<CertificateDer<'static>>,
    last: std::sync::Mutex<Checked>,
}

struct Checked {
    trust: Arc<tls::ClientTrust>,
    registry: Arc<Registry>,
    at: std::time::Instant,
    caller: Caller,
}

impl ConnectionAuth {
    /// Authenticates a new connection's chain against what is in force now.
    fn new(tls: ListenerTls, chain: Vec<CertificateDer<'static>>) -> Result<Self, tls::Refused> {
        let (trust, registry) = (tls.trust.current(), tls.registry.current());
        let caller = tls::authenticate_chain(&trust, &registry, &chain, UnixTime::now())?;
        Ok(ConnectionAuth {
            tls,
            chain,
            last: std::sync::Mutex::new(Checked {
                trust,
                registry,
                at: std::time::Instant::now(),
                caller,
            }),
        })
    }

    fn caller(&self) -> Result<Caller, tls::Refused> {
        let (trust, registry) = (self.tls.trust.current(), self.tls.registry.current());
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::ptr_eq(&last.trust, &trust)
            && Arc::ptr_eq(&last.registry, &registry)
            && last.at.elapsed() < REAUTHENTICATE_EVERY
        {
            return Ok(last.caller.clone());
        }
        let caller = tls::authenticate_chain(&trust, &registry, &self.chain, UnixTime::now())?;
        *last = Checked {
            trust,
            registry,
            at: std::time::Instant::now(),
            caller: caller.clone(),
        };
        Ok(caller)
    }
}

/// The answer to a request whose connection no longer authenticates anyone; the connection is
/// closed after it.
fn reauthentication_refused(refused: &tls::Refused) -> axum::response::Response {
    use axum::response::IntoResponse;
    let kind = match refused {
        tls::Refused::Untrusted(e) => crate::metrics::HandshakeFailure::of_tls(e),
        tls::Refused::Unknown | tls::Refused::Ambiguous(_) => {
            crate::metrics::HandshakeFailure::UnknownIdentity
        }
    };
    crate::metrics::reauthentication_refused(kind);
    tracing::info!(
        kind = kind.as_str(),
        "request refused: the connection's client certificate no longer authenticates an organisation or peer"
    );
    let mut r = Problem::new(ProblemCode::CertificateNoLongerAccepted,
        "Your client certificate is no longer accepted by this gateway (revoked, expired, or its registration removed). Nothing was done. Connect again with a valid certificate.",
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

async fn connection(a: Admitted, router: Router, tls: ListenerTls) {
    let Admitted {
        tcp,
        remote,
        acceptor,
        handshake_timeout,
        mut slot,
        stop,
    } = a;
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(
        handshake_timeout,
        acceptor.accept(linger::Lingering::new(tcp)),
    )
    .await;
    slot.handshake_done();
    let stream = match handshake {
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
    // The verifier already authenticated the certificate; authenticate it again for this
    // connection (the configuration may have been reloaded in between, in which case the
    // newer answer wins), keeping the chain for the checks before later requests.
    let chain: Vec<CertificateDer<'static>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
        .unwrap_or_default();
    let auth = match ConnectionAuth::new(tls, chain) {
        Ok(a) => Arc::new(a),
        Err(_) => {
            crate::metrics::tls_handshake_failed(crate::metrics::HandshakeFailure::UnknownIdentity);
            tracing::info!(%remote, "client certificate no longer maps to an organisation or peer; closing");
            return;
        }
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let (auth, router) = (auth.clone(), router.clone());
            async move {
                match auth.caller() {
                    Ok(caller) => {
                        req.extensions_mut().insert(caller);
                        router.oneshot(req).await
                    }
                    Err(refused) => Ok(reauthentication_refused(&refused)),
                }
            }
        });
    serve_http1(
        TokioIo::new(parse_errors::ProblemAnswers::new(stream)),
        service,
        remote,
        stop,
    )
    .await;
}
