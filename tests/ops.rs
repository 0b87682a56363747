//! The ops listener over real sockets: `/metrics` counts what the gateway actually did (real
//! transfers over mutual TLS, real deliveries), `/healthz` and `/readyz` answer as they should,
//! TLS handshake failures are told apart by kind, and the real binary's JSON logs carry the
//! transfer id and nothing personal.
//!
//! The gateway here is assembled from its public parts, as `daemon::prepare` does, so that the
//! test holds the store handle the ops listener needs (the store's lock allows one opener).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Deployment, envelope, eventually, json, payload, submit};
use postern_gateway::client::{self, Identity, Submission};
use postern_gateway::deliver::{self, Deliverer};
use postern_gateway::ingest::{self, App};
use postern_gateway::live::Live;
use postern_gateway::metrics::HandshakeFailure;
use postern_gateway::runtime::ops::{self, Ops};
use postern_gateway::store::Store;
use postern_gateway::tls::server as tls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Email goes to a relay nobody listens on and is retried only after an hour, so that each
/// email delivery makes exactly one attempt while the test runs; envelopes are small enough
/// that an oversized one is cheap to send.
const SETTINGS: &str = "[delivery]\nretry_initial_ms = 3600000\nretry_max_ms = 3600000\nretry_jitter = 0.0\n\n[limits]\nmax_envelope_bytes = 8192\n";

/// A gateway running in this process, with its ops listener.
struct Gateway {
    api: SocketAddr,
    ops: SocketAddr,
    store: Store,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    async fn start(d: &Deployment) -> Gateway {
        let config = d.load();
        let daemon = config.daemon;
        let (store, _) = Store::open(&daemon.state_dir).expect("store");
        let registry = Live::new(config.registry);
        let server_tls = ingest::ListenerTls::new(&config.tls, registry.clone()).expect("tls");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api = listener.local_addr().expect("addr");
        let wake = deliver::Wake::default();
        let spool_key = Arc::new(config.spool_key);
        let deliverer = Deliverer::new(
            store.clone(),
            registry.clone(),
            spool_key.clone(),
            daemon.delivery.clone(),
            &daemon.smtp,
            &config.tls,
            api.port(),
        )
        .expect("deliverer");
        let app = Arc::new(App {
            registry,
            store: store.clone(),
            spool_key: spool_key.clone(),
            subject_key: Arc::new(config.subject_key),
            limits: daemon.limits.clone(),
            upload_memory: postern_gateway::ingest::UploadMemory::new(&daemon.limits),
            wake: wake.clone(),
            max_email_bytes: daemon.smtp.max_message_bytes,
            arrivals: None,
            requests: Arc::new(daemon.requests.clone()),
        });
        let ops_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ops");
        let ops_addr = ops_listener.local_addr().expect("ops addr");
        let ops = Arc::new(Ops::new(store.clone(), store.spool_dir().to_path_buf()));
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(deliver::run(Arc::new(deliverer), wake, stop.clone())),
            tokio::spawn({
                let stop = stop.clone().cancelled_owned();
                async move {
                    ingest::serve(listener, server_tls, app, stop)
                        .await
                        .expect("api");
                }
            }),
            tokio::spawn({
                let stop = stop.clone().cancelled_owned();
                async move { ops::serve(ops_listener, ops, stop).await.expect("ops") }
            }),
        ];
        Gateway {
            api,
            ops: ops_addr,
            store,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(40), t)
                .await
                .expect("stopped in time")
                .expect("task");
        }
    }
}

/// A plain HTTP/1.1 GET: (status, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect ops");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// One sample: its name and labels.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (
                    n,
                    rest.trim_end_matches('}')
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect(),
                ),
                None => (series, Vec::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The sum of `name`'s samples whose labels include all of `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

/// Deliveries per state, as the store has them.
fn states(d: &Deployment) -> HashMap<String, u64> {
    let r = d.reader();
    let mut stmt = r
        .conn()
        .unwrap()
        .prepare("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
        .expect("query");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("states")
}

async fn submit_raw(
    conn: &mut postern_gateway::client::Connection,
    envelope_json: Vec<u8>,
) -> postern_gateway::client::Answer {
    conn.submit(Submission {
        envelope_json: Bytes::from(envelope_json),
        payload: futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from_static(
            b"payload",
        ))]),
        payload_len: Some(7),
        file_name: None,
        content_type: None,
        idempotency_key: None,
    })
    .await
    .expect("submit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_and_deliveries_and_the_queue_matches_the_store() {
    let started = std::time::Instant::now();
    let d = Deployment::with_daemon(SETTINGS);
    let gw = Gateway::start(&d).await;
    // The registry is process-wide: counters are compared with a scrape taken now, so whatever
    // another test in this process counted before this one does not matter.
    let before = samples(&get(gw.ops, "/metrics").await.2);
    let mut council = d.connect(gw.api, "northshire-cc").await;
    let mut police = d.connect(gw.api, "northshire-police").await;

    // Accepted: to the police (mutual TLS to this gateway's own inbound endpoint) and to the
    // youth club (this gateway's inbox); both are delivered.
    let to_police = submit(&mut council, &envelope(json!({})), payload(2000, 1), None).await;
    assert_eq!(
        to_police.status,
        202,
        "{}",
        String::from_utf8_lossy(&to_police.body)
    );
    let to_club = submit(
        &mut council,
        &envelope(json!({
            "recipients": ["riverside-youth"],
            "purpose": "early-help",
            "marking": "OFFICIAL",
            "data_categories": ["personal"],
            "special_category_condition": null,
        })),
        payload(2000, 2),
        None,
    )
    .await;
    assert_eq!(
        to_club.status,
        202,
        "{}",
        String::from_utf8_lossy(&to_club.body)
    );
    // Accepted: to the council by email, whose relay is down: one failed attempt, then a wait.
    let to_council = submit(
        &mut police,
        &envelope(json!({"recipients": ["northshire-cc"]})),
        payload(2000, 3),
        None,
    )
    .await;
    assert_eq!(
        to_council.status,
        202,
        "{}",
        String::from_utf8_lossy(&to_council.body)
    );

    // Refused by policy.
    let refused = submit(
        &mut council,
        &envelope(json!({"marking": "SECRET"})),
        payload(100, 4),
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    let refusal_code = json(&refused)["code"].as_str().expect("code").to_owned();
    // Invalid (422), not JSON (400), too large (413).
    let invalid = submit(
        &mut council,
        &envelope(json!({"subject_refs": ["nhs:1234567890"]})),
        payload(100, 5),
        None,
    )
    .await;
    assert_eq!(invalid.status, 422);
    let invalid_code = json(&invalid)["code"].as_str().expect("code").to_owned();
    let not_json = submit_raw(&mut council, b"{not json".to_vec()).await;
    assert_eq!(not_json.status, 400);
    assert_eq!(json(&not_json)["code"], "envelope_not_json");
    let mut big = envelope(json!({}));
    big["padding"] = json!("x".repeat(10_000));
    let too_large = submit_raw(&mut council, serde_json::to_vec(&big).expect("json")).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(json(&too_large)["code"], "envelope_too_large");

    // Let the deliveries run: two delivered, the email one retrying.
    let settled = |s: &HashMap<String, u64>| {
        s.get("delivered") == Some(&2) && s.get("retrying") == Some(&1) && s.len() == 2
    };
    eventually(20, "two deliveries and one retry", || {
        let s = states(&d);
        async move { settled(&s).then_some(()) }
    })
    .await;

    let (status, content_type, text) = get(gw.ops, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"));
    let m = samples(&text);
    let delta = |name: &str, want: &[(&str, &str)]| sum(&m, name, want) - sum(&before, name, want);

    assert_eq!(
        delta("postern_transfers_accepted_total", &[]),
        3.0,
        "{text}"
    );
    assert_eq!(delta("postern_transfers_refused_total", &[]), 1.0, "{text}");
    assert_eq!(
        delta(
            "postern_transfers_refused_total",
            &[("reason", &refusal_code)]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        delta("postern_transfers_rejected_total", &[]),
        3.0,
        "{text}"
    );
    for (status, code) in [
        ("422", invalid_code.as_str()),
        ("400", "envelope_not_json"),
        ("413", "envelope_too_large"),
    ] {
        assert_eq!(
            delta(
                "postern_transfers_rejected_total",
                &[("status", status), ("code", code)]
            ),
            1.0,
            "{status} {code}:\n{text}"
        );
    }
    assert_eq!(delta("postern_transfer_errors_total", &[]), 0.0);
    // The store's writer: at least the three acceptances went through it, in commits that
    // carry one job or more, and it spent some time on them (other tests in this process may
    // have added theirs, hence no exact figures).
    let (jobs, batches) = (
        delta("postern_store_write_jobs_total", &[]),
        delta("postern_store_write_batches_total", &[]),
    );
    assert!(jobs >= 3.0 && batches >= 1.0 && jobs >= batches, "{text}");
    assert!(
        delta("postern_store_writer_busy_seconds_total", &[]) > 0.0,
        "{text}"
    );
    // The https delivery arrived at this gateway's own inbound endpoint.
    assert_eq!(
        delta("postern_inbound_deliveries_total", &[("outcome", "stored")]),
        1.0,
        "{text}"
    );
    assert_eq!(delta("postern_inbound_deliveries_total", &[]), 1.0);
    // The email attempt failed because nobody listens at the relay's address.
    assert_eq!(
        delta(
            "postern_delivery_failures_total",
            &[("channel", "email"), ("cause", "unreachable")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(delta("postern_delivery_failures_total", &[]), 1.0, "{text}");

    // Deliveries: exactly the attempts the transfer log recorded, by channel and outcome.
    let attempts: Vec<Value> = d
        .all_records()
        .into_iter()
        .filter(|r| r["kind"] == "delivery_attempt")
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for channel in ["email", "https", "inbox"] {
        for outcome in ["delivered", "retrying", "dead"] {
            let logged = attempts
                .iter()
                .filter(|a| a["channel"] == channel && a["outcome"] == outcome)
                .count() as f64;
            assert_eq!(
                delta(
                    "postern_deliveries_total",
                    &[("channel", channel), ("outcome", outcome)]
                ),
                logged,
                "{channel} {outcome}:\n{text}"
            );
        }
    }
    assert_eq!(
        delta(
            "postern_deliveries_total",
            &[("channel", "https"), ("outcome", "delivered")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "postern_deliveries_total",
            &[("channel", "inbox"), ("outcome", "delivered")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "postern_deliveries_total",
            &[("channel", "email"), ("outcome", "retrying")]
        ),
        1.0
    );
    // The latency histogram has one observation per delivery, the attempt histogram one per attempt.
    assert_eq!(
        delta("postern_delivery_latency_seconds_count", &[]),
        2.0,
        "{text}"
    );
    assert_eq!(
        delta(
            "postern_delivery_latency_seconds_count",
            &[("channel", "https")]
        ),
        1.0
    );
    let latency_sum = delta("postern_delivery_latency_seconds_sum", &[]);
    assert!(
        latency_sum > 0.0 && latency_sum < 2.0 * started.elapsed().as_secs_f64(),
        "{latency_sum}"
    );
    assert_eq!(
        delta("postern_delivery_attempt_duration_seconds_count", &[]),
        3.0,
        "{text}"
    );

    // The queue, as the store has it.
    let store_states = states(&d);
    for state in ["queued", "delivering", "retrying"] {
        assert_eq!(
            sum(&m, "postern_delivery_queue_depth", &[("state", state)]),
            store_states.get(state).copied().unwrap_or(0) as f64,
            "{state}:\n{text}"
        );
    }
    assert_eq!(
        sum(&m, "postern_delivery_queue_depth", &[("state", "retrying")]),
        1.0
    );
    let age = sum(&m, "postern_delivery_oldest_pending_age_seconds", &[]);
    assert!(
        age >= 0.0 && age <= started.elapsed().as_secs_f64() + 1.0,
        "the oldest pending delivery is the email one, accepted during this test: {age}"
    );
    // Every handshake failure kind is exported from the start (at zero until one happens).
    for kind in HandshakeFailure::ALL {
        assert!(
            m.iter()
                .any(|s| s.name == "postern_tls_handshake_failures_total"
                    && s.labels
                        .iter()
                        .any(|(k, v)| k == "kind" && v == kind.as_str())),
            "{}:\n{text}",
            kind.as_str()
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_alive_and_readyz_follows_the_spool() {
    let d = Deployment::new();
    let gw = Gateway::start(&d).await;
    let (status, _, body) = get(gw.ops, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = get(gw.ops, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _, _) = get(gw.ops, "/nothing-here").await;
    assert_eq!(status, 404);

    let spool = gw.store.spool_dir().to_path_buf();
    // An unwritable spool directory. Root ignores permission bits (and these tests often run
    // as root in containers), so this part only proves something for other users; the
    // replacement below fails for root too.
    if !rustix::process::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let (status, _, body) = get(gw.ops, "/readyz").await;
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("spool"), "{body}");
    }
    // A spool path that is no longer a directory: no file can be created in it, whoever asks.
    let away = spool.with_file_name("spool.away");
    std::fs::rename(&spool, &away).expect("move the spool away");
    std::fs::write(&spool, b"not a directory").expect("file in its place");
    let (status, _, body) = get(gw.ops, "/readyz").await;
    std::fs::remove_file(&spool).expect("remove");
    std::fs::rename(&away, &spool).expect("restore the spool");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: the spool directory") && body.contains("spool"),
        "{body}"
    );
    // The liveness probe does not care.
    let (status, _, _) = get(gw.ops, "/healthz").await;
    assert_eq!(status, 200);

    let (status, _, body) = get(gw.ops, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert!(
        std::fs::read_dir(&spool).expect("spool").next().is_none(),
        "the probe leaves nothing behind"
    );

    // Shutdown ends the ops listener too.
    let ops_addr = gw.ops;
    gw.stop().await;
    assert!(TcpStream::connect(ops_addr).await.is_err());
}

/// The handshake failures the API listener sees, classified as the listener's counter will
/// count them: real clients against the gateway's own TLS configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_failures_are_told_apart_by_kind() {
    let d = Deployment::new();
    let other = Deployment::new();
    let config = d.load();
    let registry = Live::new(config.registry);
    let server = Arc::new(tls::server_config(&config.tls, registry).expect("tls"));
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let roots = client::read_roots(&d.ca_path()).expect("roots");

    let issued = d
        .ca()
        .issue_client("stranger", &["stranger.clients.postern.test".into()])
        .expect("issue");
    let stranger = Identity {
        chain: vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")],
        key: PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key"),
    };
    // A registered organisation's name, from another deployment's CA (which has the same name
    // as this one's) and from a CA of another name.
    let foreign = Identity::from_pem_file(&other.identity_path("northshire-cc")).expect("id");
    let elsewhere = postern_gateway::pki::Ca::generate("Elsewhere CA")
        .expect("ca")
        .issue_client(
            "northshire-cc",
            &["northshire-cc.clients.postern.test".into()],
        )
        .expect("issue");
    let elsewhere = Identity {
        chain: vec![CertificateDer::from_pem_slice(elsewhere.cert_pem.as_bytes()).expect("cert")],
        key: PrivateKeyDer::from_pem_slice(elsewhere.key_pem.as_bytes()).expect("key"),
    };

    enum Client {
        Tls(Option<Identity>),
        Plain(&'static [u8]),
    }
    let cases = [
        (Client::Tls(None), HandshakeFailure::NoClientCertificate),
        (Client::Tls(Some(foreign)), HandshakeFailure::UnknownCa),
        (Client::Tls(Some(elsewhere)), HandshakeFailure::UnknownCa),
        (
            Client::Tls(Some(stranger)),
            HandshakeFailure::UnknownIdentity,
        ),
        (
            Client::Plain(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            HandshakeFailure::Protocol,
        ),
        (Client::Plain(b""), HandshakeFailure::Closed),
    ];
    for (client, want) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = acceptor.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            acceptor.accept(tcp).await.map(|_| ())
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        match client {
            Client::Tls(identity) => {
                let mut config = client::tls_config(&roots, identity.as_ref()).expect("config");
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = ServerName::try_from("localhost").expect("name");
                // With TLS 1.3 the client may finish before the server has judged its
                // certificate; keep the stream open until the server has.
                let _client = connector.connect(name, tcp).await;
                let got = tokio::time::timeout(Duration::from_secs(10), server)
                    .await
                    .expect("server done")
                    .expect("task");
                let e = got.expect_err("the handshake fails");
                assert_eq!(HandshakeFailure::classify(&e), want, "{e}");
            }
            Client::Plain(bytes) => {
                let mut tcp = tcp;
                if !bytes.is_empty() {
                    tcp.write_all(bytes).await.expect("write");
                }
                tcp.shutdown().await.expect("shutdown");
                let got = tokio::time::timeout(Duration::from_secs(10), server)
                    .await
                    .expect("server done")
                    .expect("task");
                let e = got.expect_err("the handshake fails");
                assert_eq!(HandshakeFailure::classify(&e), want, "{e}");
                drop(tcp);
            }
        }
    }
    assert_eq!(HandshakeFailure::Timeout.as_str(), "timeout");
}

/// The messages that are about one transfer, and so must carry its id.
const TRANSFER_MESSAGES: &[&str] = &[
    "transfer accepted",
    "transfer refused by policy",
    "transfer rejected",
    "envelope invalid",
    "delivered",
    "delivery will be retried",
    "delivery dead",
    "inbound delivery received",
    "inbound delivery rejected",
];

/// The transfer id a JSON log line carries: its own field, or its span's. Where both are
/// present they must agree (one transfer per line).
fn line_transfer_id(line: &Value) -> Option<String> {
    let own = line["transfer_id"].as_str();
    let span = line["span"]["transfer_id"].as_str();
    if let (Some(a), Some(b)) = (own, span) {
        assert_eq!(a, b, "two transfer ids on one line: {line}");
    }
    own.or(span).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_transfer_id_and_nothing_personal() {
    let d = Deployment::new();
    // stderr is a pipe, not a terminal: the binary must choose JSON by itself.
    let server = d.spawn_with_env(&[("POSTERN_LOG", "debug")]);
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let mut ids = Vec::new();
    for (patch, status) in [
        (json!({}), 202),
        (json!({"marking": "SECRET"}), 403),
        (json!({"subject_refs": ["nhs:1234567890"]}), 422),
        (json!({"practitioner": null}), 422),
    ] {
        let a = submit(&mut council, &envelope(patch), payload(5000, 7), None).await;
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
        ids.push(json(&a)["transfer_id"].as_str().expect("id").to_owned());
    }
    let not_json = submit_raw(&mut council, b"[".to_vec()).await;
    assert_eq!(not_json.status, 400);
    ids.push(
        json(&not_json)["transfer_id"]
            .as_str()
            .expect("id")
            .to_owned(),
    );
    // The accepted one is delivered (over mutual TLS to this gateway's inbound endpoint).
    eventually(20, "the delivery", || {
        let done = d
            .reader()
            .conn()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1;
        async move { done.then_some(()) }
    })
    .await;
    let stderr = server.terminate();

    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() > 5, "{stderr}");
    for line in &lines {
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
        let text = line.to_string();
        for secret in [
            "JUSTIFICATION-SENTINEL",
            "SUBJECT-SENTINEL",
            "9434765919",
            "1234567890",
            "Telling the family",
            "Sam Patel",
        ] {
            assert!(!text.contains(secret), "{secret} in a log line: {text}");
        }
        let carried = line_transfer_id(line);
        if let Some(message) = line["message"].as_str()
            && TRANSFER_MESSAGES.contains(&message)
        {
            assert!(
                carried.is_some(),
                "a line about a transfer without its id: {line}"
            );
        }
        // A line that names one of the transfers is tagged with that transfer, and only it.
        for id in &ids {
            if text.contains(id.as_str()) {
                assert_eq!(carried.as_deref(), Some(id.as_str()), "{line}");
            }
        }
    }
    for (id, message) in ids.iter().zip([
        "transfer accepted",
        "transfer refused by policy",
        "envelope invalid",
        "envelope invalid",
        "transfer rejected",
    ]) {
        assert!(
            lines
                .iter()
                .any(|l| l["message"] == message
                    && line_transfer_id(l).as_deref() == Some(id.as_str())),
            "no {message:?} line for {id}:\n{stderr}"
        );
    }
    // The delivery's lines, in the worker and on the receiving side, carry the id too.
    for message in ["delivered", "inbound delivery received"] {
        assert!(
            lines.iter().any(|l| l["message"] == message
                && line_transfer_id(l).as_deref() == Some(ids[0].as_str())),
            "no {message:?} line for {}:\n{stderr}",
            ids[0]
        );
    }
}
