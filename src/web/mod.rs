//! The people's pages: a second HTTPS listener (`[web] listen`) for people without a client
//! certificate, such as a volunteer at a youth club. They sign in with a code emailed to their
//! registered address (`signin`), then share through a question flow (`share`) that offers only
//! what the agreements in force allow and sends through the very path `POST /v1/transfers`
//! takes (`ingest::routes::submit_from_web`), follow what they shared (`transfers`), and open
//! what arrived for their organisation (`inbox`).
//!
//! Sits beside `ingest` in the flow: it uses ingest's decision and sealing path, the store and
//! the email channel, and nothing uses it but the runtime. Pages are server-rendered (askama)
//! and work without JavaScript; every answer carries the security headers (`headers`), and
//! every POST must come from these pages (`same_origin`).

// A handler's early answer (a redirect to sign in, a "not found" page) is a whole response;
// these paths are rare, and boxing each would only add noise to every handler.
#![allow(clippy::result_large_err)]

mod decline;
mod inbox;
mod log_pages;
pub(crate) mod oversight;
mod pages;
mod passkeys;
mod registry;
mod requests;
mod share;
mod signin;
mod transfers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::WebSettings;
use crate::deliver::email::EmailChannel;
use crate::ingest::{Admitted, App, accept_loop, serve_http1};
use crate::live::Live;

/// What the pages share.
#[derive(Clone)]
pub struct WebApp {
    /// The API's state: the registry, the store, the sealing keys, the limits.
    pub api: Arc<App>,
    pub settings: WebSettings,
    /// Sends sign-in codes (through the relays, TLS required, or the demo's outbox).
    pub mail: Option<Arc<EmailChannel>>,
    /// `postern demo` only: sign-in codes are also printed on its terminal.
    pub print_codes: bool,
    /// The pages' address as people reach them: `web.public_url`, or the listener's
    /// (`localhost` for a loopback address, so that passkeys work there).
    pub address: String,
    /// The passkey relying party: `None` when the address is an IP address.
    pub passkeys: Option<Arc<webauthn_rs::Webauthn>>,
    /// The log's verification and the configuration's reload status, for the DPO's and IT
    /// team's pages (`None`: those pages say the status is unknown).
    pub oversight: Option<Arc<oversight::Oversight>>,
}

impl WebApp {
    /// The pages' state for a listener bound to `bound`.
    pub fn new(
        api: Arc<App>,
        settings: WebSettings,
        mail: Option<Arc<EmailChannel>>,
        bound: SocketAddr,
    ) -> WebApp {
        let address = settings.public_url.clone().unwrap_or_else(|| {
            if bound.ip().is_loopback() {
                format!("https://localhost:{}", bound.port())
            } else {
                format!("https://{bound}")
            }
        });
        let passkeys = passkeys::relying_party(&address).map(Arc::new);
        WebApp {
            api,
            settings,
            mail,
            print_codes: false,
            address,
            passkeys,
            oversight: None,
        }
    }
}

/// The client's address, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

pub fn router(app: Arc<WebApp>) -> Router {
    let upload_limit =
        usize::try_from(app.api.limits.max_payload_bytes.saturating_add(1024 * 1024))
            .unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(transfers::home))
        .route("/sign-in", get(signin::email_page).post(signin::email_sent))
        .route(
            "/sign-in/code",
            get(signin::code_page).post(signin::code_entered),
        )
        .route("/sign-in/passkey/options", post(passkeys::sign_in_options))
        .route("/sign-in/passkey", post(passkeys::sign_in))
        .route("/sign-out", post(signin::sign_out))
        .route("/passkeys", get(passkeys::page))
        .route("/passkeys/options", post(passkeys::add_options))
        .route("/passkeys/add", post(passkeys::add))
        .route("/passkeys/remove", post(passkeys::remove))
        .route("/share", get(share::start).post(share::answer))
        .route(
            "/share/send",
            post(share::send).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/inbox", get(inbox::list))
        .route("/inbox/{id}", get(inbox::item))
        .route("/inbox/{id}/file", get(inbox::file))
        .route("/inbox/{id}/sealed", get(inbox::sealed))
        .route("/inbox/{id}/ack", post(inbox::acknowledge))
        .route("/inbox/{id}/feedback", post(inbox::feedback))
        .route("/transfers", get(transfers::list))
        .route("/transfers/{id}", get(transfers::detail))
        .route("/transfers/{id}/rationale", post(decline::rationale))
        .route("/decline", get(decline::start).post(decline::record))
        .route("/requests", get(requests::list))
        .route("/requests/new", get(requests::new).post(requests::ask))
        .route("/requests/{id}", get(requests::show))
        .route("/requests/{id}/withdraw", post(requests::withdraw))
        .route("/requests/{id}/clarification", post(requests::clarify))
        .route("/log", get(log_pages::list))
        .route("/log/transfer/{id}", get(log_pages::record))
        .route(
            "/log/subject",
            get(log_pages::subject_form).post(log_pages::subject),
        )
        .route("/log/export", get(log_pages::export))
        .route("/log/report", get(log_pages::report))
        .route("/log/access", get(log_pages::access))
        .route("/log/verify", post(log_pages::verify))
        .route("/registry", get(registry::overview))
        .route("/registry/{org}", get(registry::organisation))
        .route("/explain", get(registry::explain))
        .route("/status", get(registry::status))
        .route("/accessibility", get(pages::accessibility))
        .route("/assets/postern.css", get(pages::stylesheet))
        .route("/assets/postern.js", get(pages::script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(same_origin))
        .layer(axum::middleware::from_fn(headers))
        .with_state(app)
}

/// The headers every answer carries: HSTS, a strict Content-Security-Policy (no inline script
/// or style, no framing), no referrer, no sniffing, and no caching of pages (they may show
/// personal data; the stylesheet alone may be cached).
async fn headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    );
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !asset {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// Refuses a POST that did not come from these pages: a browser says where a request comes
/// from in `Sec-Fetch-Site` (every current browser), which must be `same-origin`; without it,
/// `Origin` must be this site. (With `Referrer-Policy: no-referrer`, browsers send `Origin:
/// null` on form posts, so `Sec-Fetch-Site` is what they are judged by.) A POST that says
/// neither is refused, before any handler runs.
async fn same_origin(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let h = req.headers();
    let fetch_site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let allowed = match (fetch_site, origin, host) {
        (Some(site), _, _) => site == "same-origin",
        (None, Some(o), Some(host)) => o == format!("https://{host}"),
        _ => false,
    };
    if allowed {
        return next.run(req).await;
    }
    tracing::info!(
        fetch_site = fetch_site.unwrap_or("-"),
        "web: a cross-site POST was refused"
    );
    pages::problem(
        StatusCode::FORBIDDEN,
        "This form did not come from this site",
        "For your safety, Postern only accepts forms sent from its own pages. Go back to the page, reload it, and try again.",
    )
}

/// Serves the pages until `shutdown` completes, with the API's accept loop (connection permits,
/// per-address limits, shutdown grace). TLS is the web configuration in force at each accept
/// (`tls`), so a certificate reload applies to new connections.
pub async fn serve(
    listener: TcpListener,
    tls: Live<rustls::ServerConfig>,
    app: Arc<WebApp>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.api.limits.clone();
    // The log's verification status, kept current for the DPO's pages; ends with the pages.
    let verifying = app
        .oversight
        .clone()
        .map(|o| tokio::spawn(o.keep_current()));
    let router = router(app);
    let served = accept_loop(listener, &tls, &limits, shutdown, "web: ", move |a| {
        connection(a, router.clone())
    })
    .await;
    if let Some(v) = verifying {
        v.abort();
    }
    served
}

/// One connection: the TLS handshake (no client certificate), then HTTP/1.1 with the client's
/// address on each request.
async fn connection(a: Admitted, router: Router) {
    let Admitted {
        tcp,
        remote,
        acceptor,
        handshake_timeout,
        mut slot,
        stop,
    } = a;
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
    slot.handshake_done();
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "web: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ClientAddr(remote));
            router.clone().oneshot(req)
        });
    serve_http1(TokioIo::new(stream), service, remote, stop).await;
}

/// Now, in Unix seconds, for the store's session and code times.
fn unix_now() -> i64 {
    crate::clock::now().unix_timestamp()
}

/// A fresh random token, URL-safe base64 of 32 bytes. `None` only if the system's random
/// source fails, which the caller answers as a server error.
fn token() -> Option<String> {
    use base64::Engine;
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// SHA-256, hex: what the store keeps instead of a token or a code.
fn hash(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// A cookie's value from the request, by name.
fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `__Host-` cookie: Secure, HttpOnly, SameSite=Strict, whole site, this host only.
/// `max_age` 0 removes it; `None` makes it last until the browser closes.
fn set_cookie(resp: &mut Response, name: &str, value: &str, max_age: Option<u64>) {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A 303 to `to` (after a POST, so that reloading does not post again).
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Reads an urlencoded form body, keeping repeated names (checkboxes) in order.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}
