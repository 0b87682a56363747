//! Floods and bad input: one address flooding the listener with half-open handshakes does not
//! starve other clients, and every answer to input the gateway cannot use is problem+json with a
//! stable code (a malformed query string, a malformed header, headers too large, a `null` where
//! a decision needs a value). Real sockets and real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Deployment, envelope, json, submit};
use postern_gateway::client::{self, Identity};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes over a TLS connection as `org`, and reads the whole answer (the gateway
/// closes the connection after it).
async fn raw_exchange(d: &Deployment, addr: SocketAddr, org: &str, request: &[u8]) -> String {
    let roots = client::read_roots(&d.ca_path()).expect("roots");
    let id = Identity::from_pem_file(&d.identity_path(org)).expect("identity");
    let config = Arc::new(client::tls_config(&roots, Some(&id)).expect("tls"));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    s.write_all(request).await.expect("write");
    s.flush().await.expect("flush");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_and_body(answer: &str) -> (u16, serde_json::Value, String) {
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let v = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, v, head.to_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_unusable_input_is_a_problem_document() {
    let d = Deployment::new();
    let server = d.start().await;

    // A query string that does not parse.
    let mut youth = d.connect(server.addr, "riverside-youth").await;
    let a = youth.get("/v1/inbox?all=null").await.expect("get");
    assert_eq!(a.status, 400);
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(
        (json(&a)["code"].as_str(), json(&a)["field"].as_str()),
        (Some("malformed_request"), Some("all"))
    );

    // A header that is not HTTP: hyper refuses it before any handler runs.
    let answer = raw_exchange(
        &d,
        server.addr,
        "riverside-youth",
        b"GET /v1/inbox HTTP/1.1\r\nHost: localhost\r\nthis is not a header\r\n\r\n",
    )
    .await;
    let (status, body, head) = status_and_body(&answer);
    assert_eq!(status, 400, "{answer}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert_eq!(body["code"], "malformed_request", "{answer}");

    // Headers larger than hyper reads.
    let mut big = b"GET /v1/inbox HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..200 {
        big.extend_from_slice(format!("x-filler-{i}: {}\r\n", "y".repeat(2000)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let answer = raw_exchange(&d, server.addr, "riverside-youth", &big).await;
    let (status, body, _) = status_and_body(&answer);
    assert!(
        matches!(status, 400 | 431) && body["code"].is_string(),
        "an oversized head is a problem document too: {answer}"
    );

    // `null` where a decision needs a value (or nothing) is refused, not taken for "left out".
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let decision = json!({
        "recipients": ["northshire-police"],
        "reasons": "The information is not needed for the enquiry.",
        "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam.patel@northshire-cc.example"},
        "data_categories": null
    });
    let a = council
        .post_json(
            "/v1/decisions",
            bytes::Bytes::from(serde_json::to_vec(&decision).expect("json")),
            None,
        )
        .await
        .expect("post");
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(json(&a)["field"], "data_categories");
    server.stop().await;
}

/// One address opening many connections and never finishing a handshake holds at most its own
/// share of the listener: a legitimate client from another address keeps getting its 202s.
/// (Without per-source limits the flood holds every connection permit until the handshake
/// timeout, and the client waits in the backlog.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_handshakes_from_one_address_does_not_starve_others() {
    let d = Deployment::with_daemon(
        "[limits]\nmax_connections = 64\nhandshake_timeout_secs = 60\nmax_handshakes_per_source = 8\n",
    );
    let server = d.start().await;
    // 300 connections from 127.0.0.2 that send nothing.
    let mut flood = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind 127.0.0.2");
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(server.addr)).await
        {
            flood.push(s);
        }
    }
    assert!(flood.len() >= 64, "the flood is larger than the listener");
    // The legitimate client, from 127.0.0.1.
    let start = Instant::now();
    for i in 0..5u8 {
        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            d.connect(server.addr, "northshire-cc"),
        )
        .await
        .expect("a connection despite the flood");
        let a = tokio::time::timeout(
            Duration::from_secs(10),
            submit(&mut conn, &envelope(json!({})), vec![i; 2000], None),
        )
        .await
        .expect("an answer despite the flood");
        assert_eq!(a.status, 202);
    }
    eprintln!(
        "five transfers accepted in {:?} while 300 half-open connections came from one address",
        start.elapsed()
    );
    drop(flood);
    server.stop().await;
}

/// Submits a small share again and again until one is not accepted (an upload held open
/// elsewhere has reserved its room by then); returns that answer, how long it took, and how
/// many were accepted before it.
async fn until_refused(conn: &mut client::Connection) -> (client::Answer, Duration, usize) {
    let mut accepted = 0;
    loop {
        let started = Instant::now();
        let answer = submit(conn, &envelope(json!({})), vec![1; 4096], None).await;
        if answer.status != 202 {
            return (answer, started.elapsed(), accepted);
        }
        accepted += 1;
        assert!(accepted < 100, "never refused while the cap was held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uploads in flight may hold only `limits.upload_memory_bytes` together: with room for one
/// upload of unknown length, a second waits unread and, when no room comes within
/// `upload_memory_wait_secs`, is answered 503 `busy` with Retry-After and nothing recorded. One
/// that starts waiting shortly before the first ends is accepted once it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_memory_cap_wait_then_are_refused_busy() {
    let d = Deployment::with_daemon(
        "[limits]\nupload_memory_bytes = 1048576\nupload_memory_wait_secs = 2\n",
    );
    let server = d.start().await;

    // A holds the whole cap: its length is not declared, and its payload is held open.
    let (more, a) = common::held_upload(&d, server.addr, "northshire-cc").await;

    // Until A has reserved its room, B may slip through; once it has, B is busy.
    let mut b_conn = d.connect(server.addr, "northshire-cc").await;
    let (b, waited, accepted_first) = until_refused(&mut b_conn).await;
    let p = json(&b);
    assert_eq!((b.status, p["code"].as_str()), (503, Some("busy")), "{p}");
    assert_eq!(
        b.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    assert!(
        waited >= Duration::from_millis(1900),
        "B waited for room before it was refused ({waited:?})"
    );
    assert!(
        p["transfer_id"].is_null(),
        "nothing was read, nothing recorded: {p}"
    );
    assert_eq!(
        d.transfers(),
        accepted_first,
        "the busy refusal recorded nothing"
    );

    // C starts waiting; A ends within C's wait; both are accepted.
    let mut c_conn = d.connect(server.addr, "northshire-cc").await;
    let c = tokio::spawn(async move {
        submit(&mut c_conn, &envelope(json!({})), vec![2; 4096], None).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.is_finished(), "C waits while A holds the cap");
    more.send(Ok(bytes::Bytes::from(vec![8u8; 1000])))
        .await
        .unwrap();
    drop(more);
    let a = a.await.unwrap();
    assert_eq!(a.status, 202, "{}", String::from_utf8_lossy(&a.body));
    let c = c.await.unwrap();
    assert_eq!(c.status, 202, "{}", String::from_utf8_lossy(&c.body));
    assert_eq!(d.transfers(), accepted_first + 2);
    server.stop().await;
}

/// One sender may hold at most a quarter of the upload memory: with room for four uploads of
/// unknown length, the council's second waits and is refused busy while the police, another
/// sender, is read and answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sender_holds_at_most_a_quarter_of_the_upload_memory() {
    let d = Deployment::with_daemon(
        "[limits]\nupload_memory_bytes = 4194304\nupload_memory_wait_secs = 1\n",
    );
    let server = d.start().await;
    let (more, held) = common::held_upload(&d, server.addr, "northshire-cc").await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let (refused, _, _) = until_refused(&mut council).await;
    assert_eq!(
        (refused.status, json(&refused)["code"].as_str()),
        (503, Some("busy"))
    );
    let mut police = d.connect(server.addr, "northshire-police").await;
    let started = Instant::now();
    let p = submit(
        &mut police,
        &envelope(json!({"recipients": ["northshire-cc"]})),
        vec![2; 4096],
        None,
    )
    .await;
    assert_ne!(p.status, 503, "{}", String::from_utf8_lossy(&p.body));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "another sender did not wait"
    );
    drop(more);
    let _ = held.await;
    server.stop().await;
}
