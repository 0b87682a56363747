//! A browser's worth of HTTPS for the people's pages, and signing in through a real SMTP
//! server: what `tests/web.rs` and `tests/web_oversight.rs` share.

use std::net::SocketAddr;
use std::sync::Arc;

use postern_gateway::testkit::smtp_sink::SmtpSink;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Deployment, contains, eventually};

pub const SAM: &str = "sam@riverside-youth.example";
pub const ALEX: &str = "alex@northshire-mash.example";
/// Of Millbrook Academy, which requires passkeys (`sign_in = "passkey"`).
pub const JO: &str = "jo@millbrook-academy.example";

/// An answer: status, headers (lower-case names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value a Set-Cookie gives `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies().into_iter().find_map(|c| {
            c.split(';')
                .next()?
                .split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    }
}

/// A browser's worth of HTTPS: one request per connection, cookies kept by the caller.
pub struct Browser {
    pub addr: SocketAddr,
    pub tls: Arc<rustls::ClientConfig>,
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new(d: &Deployment, addr: SocketAddr) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(d.ca_path()).expect("ca") {
            roots.add(c.expect("ca cert")).expect("root");
        }
        let tls = rustls::ClientConfig::builder_with_provider(postern_gateway::tls::provider())
            .with_protocol_versions(postern_gateway::tls::PROTOCOLS)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Browser {
            addr,
            tls: Arc::new(tls),
            cookies: Vec::new(),
        }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut s = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("tls");
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr.port(),
            body.len()
        );
        if !cookie.is_empty() {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(body).await.expect("write body");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        let body = String::from_utf8_lossy(&body).to_string();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let answer = Answer {
            status,
            headers,
            body,
        };
        for c in answer.cookies() {
            if let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('=')) {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() && !c.contains("Max-Age=0") {
                    self.cookies.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        answer
    }

    /// JSON posted by the pages' script (same origin, as `fetch` says).
    pub async fn post_json(
        &mut self,
        path: &str,
        json: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let a = self
            .send(
                "POST",
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("Sec-Fetch-Site", "same-origin"),
                ],
                json.to_string().as_bytes(),
            )
            .await;
        let v = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("{path} answered no JSON ({e}): {}", a.body));
        (a.status, v)
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, &[], b"").await
    }

    /// A form posted from the pages themselves (as a browser says: same origin).
    pub async fn post(&mut self, path: &str, form: &str) -> Answer {
        self.send(
            "POST",
            path,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            form.as_bytes(),
        )
        .await
    }
}

/// A chunked body's content.
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A gateway whose codes go by STARTTLS to a real SMTP server in this process.
pub async fn gateway(extra: &str) -> (Deployment, super::Server, SmtpSink) {
    let (d, sink) = deployment(extra).await;
    let server = d.start().await;
    (d, server, sink)
}

/// A deployment (not started) whose relay is a real SMTP server in this process, and whose
/// MASH receives on the pages: this gateway holds its key (as in the demo).
pub async fn deployment(extra: &str) -> (Deployment, SmtpSink) {
    let (d, sink) = super::with_relay(extra).await;
    d.rewrite(
        "organisations.toml",
        "channel = \"https\"\nurl = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-mash.pub\"\n",
        "channel = \"portal\"\nidentity = \"${state_dir}/keys/orgs/northshire-mash.age\"\n",
    );
    (d, sink)
}

/// The codes emailed to `to` so far, oldest first.
pub fn codes(sink: &SmtpSink, to: &str) -> Vec<String> {
    sink.received()
        .into_iter()
        .filter(|m| m.to.iter().any(|t| t.contains(to)) && contains(&m.data, b"sign-in code"))
        .map(|m| {
            assert!(m.tls, "a sign-in code went over plaintext");
            let text = String::from_utf8_lossy(&m.data).to_string();
            text.lines()
                .map(str::trim)
                .find(|l| l.len() == 6 && l.chars().all(|c| c.is_ascii_digit()))
                .unwrap_or_else(|| panic!("no code in the message:\n{text}"))
                .to_owned()
        })
        .collect()
}

pub async fn next_code(sink: &SmtpSink, to: &str, before: usize) -> String {
    eventually(10, "a sign-in code arrives", || async {
        let c = codes(sink, to);
        (c.len() > before).then(|| c.last().cloned()).flatten()
    })
    .await
}

pub async fn sign_in(b: &mut Browser, sink: &SmtpSink, email: &str) {
    let before = codes(sink, email).len();
    let a = b.post("/sign-in", &format!("email={email}")).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let code = next_code(sink, email, before).await;
    let a = b.post("/sign-in/code", &format!("code={code}")).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/"));
}

pub fn person_events(d: &Deployment) -> Vec<(String, String)> {
    d.all_records()
        .into_iter()
        .filter(|r| r["kind"] == "person_access")
        .map(|r| {
            (
                r["sender"]["person"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["code"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
