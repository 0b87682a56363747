//! What the fuzz targets share: the demo marking scheme and registry, a fixed parse context, the
//! round trip of a parsed envelope back to its wire form, an in-process gateway (the real axum
//! router over a scratch store), and the encoding that turns a fuzz input into an HTTP request.
//!
//! Nothing here is part of the gateway: it only calls its public API, as a client would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, HeaderValue};
use postern_gateway::config::registry::{RegistrySources, load};
use postern_gateway::config::{Limits, Paths, Source, embedded_demo};
use postern_gateway::deliver::Wake;
use postern_gateway::domain::envelope::{Envelope, ParseContext, Practitioner, Request, Retention};
use postern_gateway::domain::ids::{OrgId, PeerId};
use postern_gateway::domain::marking::MarkingScheme;
use postern_gateway::domain::policy::Rule;
use postern_gateway::domain::registry::{CertFingerprint, Principal, Registry};
use postern_gateway::domain::subject::{SubjectKey, SubjectRef};
use postern_gateway::ingest::problem::{Problem, ProblemCode};
use postern_gateway::ingest::{App, Caller, router};
use postern_gateway::live::Live;
use postern_gateway::runtime::devkit;
use postern_gateway::store::Store;
use serde::Deserialize;
use serde_json::{Value, json};
use time::Date;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// The demo configuration.

/// The demo marking scale, read at compile time.
pub const MARKING_TOML: &str = include_str!("../../config/demo/marking.toml");

/// The organisation the fuzzed envelopes and decisions come from.
pub const SENDER: &str = "northshire-cc";
/// The peer gateway the fuzzed inbound deliveries come from (`config/demo/peers.toml`).
pub const PEER: &str = "northshire-gateway";

/// The day envelopes are parsed on (retention dates are checked against it).
pub const TODAY: Date = time::macros::date!(2026 - 11 - 22);

/// `marking.toml` as `src/config/registry.rs` reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarking {
    levels: Vec<String>,
    #[serde(default)]
    descriptors: Vec<String>,
    #[serde(default)]
    legacy: BTreeMap<String, String>,
}

/// The demo marking scheme, built the way the configuration loader builds it.
pub fn demo_scheme() -> MarkingScheme {
    let raw: RawMarking = toml::from_str(MARKING_TOML).expect("config/demo/marking.toml parses");
    let legacy: Vec<(String, String)> = raw.legacy.into_iter().collect();
    MarkingScheme::new(&raw.levels, &raw.descriptors, &legacy)
        .unwrap_or_else(|e| panic!("the demo marking scheme is invalid: {e:?}"))
}

pub static SCHEME: LazyLock<MarkingScheme> = LazyLock::new(demo_scheme);
pub static SENDER_ID: LazyLock<OrgId> = LazyLock::new(|| SENDER.parse().expect("an org id"));

/// The context every fuzzed envelope is parsed in.
pub fn parse_context() -> ParseContext<'static> {
    ParseContext {
        sender: &SENDER_ID,
        marking: &SCHEME,
        today: TODAY,
    }
}

/// The whole demo registry (`config/demo/`), loaded as `postern demo` loads it: the development
/// certificates and keys it refers to are generated under `state_dir` first.
pub fn demo_registry(state_dir: &Path) -> Registry {
    let orgs = devkit::dev_orgs(embedded_demo::ORGANISATIONS).expect("the demo organisations");
    devkit::ensure(state_dir, &orgs).expect("the demo's development material");
    let src = |name: &str, text: &str| {
        Some(Source {
            name: format!("config/demo/{name}"),
            text: text.to_owned(),
        })
    };
    let sources = RegistrySources {
        marking: src("marking.toml", embedded_demo::MARKING),
        purposes: src("purposes.toml", embedded_demo::PURPOSES),
        organisations: src("organisations.toml", embedded_demo::ORGANISATIONS),
        agreements: src("agreements.toml", embedded_demo::AGREEMENTS),
        peers: src("peers.toml", embedded_demo::PEERS),
        people: src("people.toml", embedded_demo::PEOPLE),
    };
    let paths = Paths {
        state_dir: state_dir.to_path_buf(),
        config_dir: None,
        credentials_dir: None,
        offline: false,
    };
    match load(&sources, &paths, None) {
        Ok(loaded) => loaded.registry,
        Err(e) => panic!("the demo registry does not load: {e:?}"),
    }
}

/// Where scratch state goes: in memory where the system has it (the store fsyncs every commit).
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

const SCRATCH_PREFIX: &str = "postern-fuzz-";

static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn remove_scratch() {
    if let Ok(dirs) = SCRATCH.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A scratch directory for this process, removed when it exits. The statics that use it are
/// never dropped and a crash skips exit handlers, so directories left by processes that are
/// gone are removed here first (each name carries its process id).
pub fn scratch_dir() -> PathBuf {
    let base = scratch_base();
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir_in(&base)
        .expect("a scratch directory")
        .keep();
    let mut dirs = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: registers a plain function with no arguments, as atexit(3) expects.
        unsafe {
            atexit(remove_scratch);
        }
    }
    dirs.push(dir.clone());
    dir
}

/// The demo registry alone, for the parsers that need one (decisions).
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| demo_registry(&scratch_dir()));

// ---------------------------------------------------------------------------------------------
// Round trips.

/// A JSON object of the members that are present (a member left out is not `null`).
pub fn object(members: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect(),
    )
}

pub fn practitioner_json(p: &Practitioner) -> Value {
    json!({"name": p.name, "role": p.role, "contact": p.contact})
}

/// The request a share (or a decision) answers. `answer` is written only when it is not the
/// default, since a decision (which declines a request whole) may not say it.
pub fn request_json(r: &Request) -> Value {
    let mut v = json!({"reference": r.reference});
    if let Some(q) = &r.requested {
        v["requested"] = json!(q.expose());
    }
    if let Some((id, extent)) = r.answers {
        v["request_id"] = json!(id.to_string());
        if extent == postern_gateway::domain::envelope::AnswerExtent::InPart {
            v["answer"] = json!(extent.as_str());
        }
    }
    v
}

/// The wire form of a parsed envelope: parsing it again must give the same envelope. Built as
/// JSON (the contract), not from the crate's wire structs.
pub fn envelope_json(e: &Envelope) -> Value {
    let list = |items: Vec<String>| Some(json!(items));
    object(vec![
        (
            "recipients",
            list(e.recipients.iter().map(ToString::to_string).collect()),
        ),
        ("purpose", Some(json!(e.purpose.to_string()))),
        ("justification", Some(json!(e.justification.expose()))),
        ("lawful_basis", Some(json!(e.lawful_basis.as_str()))),
        (
            "special_category_condition",
            e.special_category_condition.map(|c| json!(c.as_str())),
        ),
        (
            "data_categories",
            list(
                e.data_categories
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            ),
        ),
        ("marking", Some(json!(e.marking.given))),
        ("originator", Some(json!(e.originator.to_string()))),
        (
            "originator_permission_ref",
            e.originator_permission_ref.clone().map(Value::from),
        ),
        ("practitioner", Some(practitioner_json(&e.practitioner))),
        (
            "consent",
            Some(object(vec![
                ("status", Some(json!(e.consent.status()))),
                ("reason", e.consent.reason().map(Value::from)),
            ])),
        ),
        (
            "subject_informed",
            Some(object(vec![
                ("informed", Some(json!(e.subject_informed.informed()))),
                ("reason", e.subject_informed.reason().map(Value::from)),
            ])),
        ),
        (
            "urgency",
            Some(object(vec![
                ("level", Some(json!(e.urgency.level()))),
                ("reason", e.urgency.reason().map(Value::from)),
            ])),
        ),
        ("request", e.request.as_ref().map(request_json)),
        (
            "disclosed_summary",
            Some(json!(e.disclosed_summary.expose())),
        ),
        (
            "retention",
            Some(match e.retention {
                Retention::Days(n) => json!({"days": n}),
                Retention::Until(d) => json!({"until": d.to_string()}),
            }),
        ),
        (
            "subject_refs",
            list(e.subject_refs.iter().map(SubjectRef::expose).collect()),
        ),
        ("file_name", e.file_name.clone().map(Value::from)),
        ("content_type", e.content_type.clone().map(Value::from)),
        (
            "correction_of",
            e.correction_of.map(|id| json!(id.to_string())),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// The in-process gateway.

/// The real router over a scratch store and the demo registry, with a runtime to drive it.
pub struct Gateway {
    pub runtime: tokio::runtime::Runtime,
    pub app: Arc<App>,
    router: axum::Router,
}

pub static GATEWAY: LazyLock<Gateway> = LazyLock::new(Gateway::new);

/// An answer, read to its end.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Gateway {
    fn new() -> Self {
        let state = scratch_dir();
        let registry = demo_registry(&state);
        let (store, _) = Store::open(&state).expect("a scratch store");
        let limits = Limits {
            max_payload_bytes: 1 << 20,
            max_envelope_bytes: 64 * 1024,
            max_connections: 8,
            max_connections_per_source: 8,
            max_handshakes_per_source: 8,
            handshake_timeout: Duration::from_secs(10),
            // The whole body is in memory: nothing should ever wait this long.
            idle_timeout: Duration::from_secs(5),
            min_free_bytes: 0,
            inbound_max_retain_days: 3650,
            upload_memory_bytes: 256 << 20,
            upload_memory_wait: Duration::from_secs(5),
        };
        let app = Arc::new(App {
            registry: Live::new(registry),
            store,
            spool_key: std::sync::Arc::new(postern_gateway::seal::SpoolKey::from_identity(
                age::x25519::Identity::generate(),
            )),
            subject_key: Arc::new(SubjectKey::new(vec![7; 32]).expect("a subject key")),
            limits: limits.clone(),
            upload_memory: postern_gateway::ingest::UploadMemory::new(&limits),
            wake: Wake::default(),
            max_email_bytes: 1 << 20,
            arrivals: None,
            requests: Arc::new(
                postern_gateway::config::RequestSettings::builtin().expect("the built-in calendar"),
            ),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Gateway {
            runtime,
            router: router(app.clone()),
            app,
        }
    }

    /// One request through the router, as `principal` (what the TLS layer would attach).
    pub fn call(&self, principal: Principal, uri: &str, wire: Wire) -> Answer {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(uri)
            .extension(Caller {
                principal,
                fingerprint: CertFingerprint([0; 32]),
            });
        for (k, v) in wire.headers {
            req = req.header(k, v);
        }
        let req = req.body(Body::from(wire.body)).expect("a request");
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let resp = router.oneshot(req).await.expect("the router is infallible");
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("the answer's body")
                .to_vec();
            Answer {
                status,
                content_type,
                body,
            }
        })
    }
}

pub fn organisation(id: &str) -> Principal {
    Principal::Organisation(id.parse::<OrgId>().expect("an org id"))
}

pub fn peer(id: &str) -> Principal {
    Principal::Peer(id.parse::<PeerId>().expect("a peer id"))
}

/// What every answer of the API must be, whatever was sent: never an internal error, never
/// "unavailable" (the store is open), and every refusal a problem document whose status is the
/// HTTP status and whose code is one the API documents for that status.
///
/// With `POSTERN_FUZZ_DEBUG` set, every answer is printed (to see what the seeds reach).
pub fn check_answer(a: &Answer) {
    if std::env::var_os("POSTERN_FUZZ_DEBUG").is_some() {
        eprintln!("{} {}", a.status, String::from_utf8_lossy(&a.body));
    }
    assert_ne!(
        a.status,
        500,
        "internal error for a client's request: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert_ne!(
        a.status,
        503,
        "unavailable although the store is open: {}",
        String::from_utf8_lossy(&a.body)
    );
    if a.status >= 400 {
        assert_eq!(a.content_type, "application/problem+json", "{a:?}");
        let p: Problem = serde_json::from_slice(&a.body)
            .unwrap_or_else(|e| panic!("a {} answer is not a problem document: {e}", a.status));
        assert_eq!(p.status, a.status, "{p:?}");
        let documented = ProblemCode::ALL
            .iter()
            .any(|c| c.code() == p.code && c.status() == p.status)
            || (p.status == 403 && Rule::ALL.iter().any(|r| r.refusal_code() == p.code));
        assert!(documented, "undocumented problem code: {p:?}");
    } else {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&a.body).is_ok(),
            "a {} answer is not JSON",
            a.status
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz input → request.

/// The multipart boundary every fuzzed request declares.
pub const BOUNDARY: &str = "postern-fuzz-boundary";

/// The headers and body of one fuzzed request.
pub struct Wire {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

/// Part names a descriptor's low three bits choose (see [`decode`]).
const NAMES: [&str; 4] = ["meta", "envelope", "payload", "unexpected"];

/// Turns a fuzz input into a request. The first byte controls the rest:
///
/// - bit 0: 0 = the remaining bytes are the raw body; 1 = they are parts, separated by 0xFF,
///   each starting with a descriptor byte (below) followed by the part's content;
/// - bits 1-2: `Content-Length`: none, the true length, the true length + 64 KiB (a client that
///   announces more than it sends), or 16 MiB (more than the gateway accepts);
/// - bit 3: send an `Idempotency-Key`, one of four chosen by bits 4-5 (so that repeats happen);
/// - bit 6: quote the boundary in `Content-Type`;
/// - bit 7: in parts mode, leave out the closing boundary.
///
/// A part's descriptor byte: bits 0-2 choose the name (`meta`, `envelope`, `payload`,
/// `unexpected`, an empty name, no name parameter, `payload` with a file name and a
/// `Content-Type`, or no headers at all: the content carries its own); bit 3 adds
/// `Content-Type: application/json`.
pub fn decode(input: &[u8]) -> Wire {
    let Some((&control, rest)) = input.split_first() else {
        return Wire {
            headers: vec![content_type(false)],
            body: Vec::new(),
        };
    };
    let body = if control & 1 == 0 {
        rest.to_vec()
    } else {
        let mut body = Vec::new();
        for segment in rest.split(|b| *b == 0xFF) {
            let Some((&d, content)) = segment.split_first() else {
                continue;
            };
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let json = if d & 8 != 0 {
                "Content-Type: application/json\r\n"
            } else {
                ""
            };
            let headers = match d & 7 {
                n @ 0..=3 => format!(
                    "Content-Disposition: form-data; name=\"{}\"\r\n{json}",
                    NAMES[usize::from(n)]
                ),
                4 => format!("Content-Disposition: form-data; name=\"\"\r\n{json}"),
                5 => format!("Content-Disposition: form-data\r\n{json}"),
                6 => "Content-Disposition: form-data; name=\"payload\"; filename=\"notes.pdf\"\r\nContent-Type: application/pdf\r\n".to_owned(),
                _ => String::new(),
            };
            body.extend_from_slice(headers.as_bytes());
            if d & 7 != 7 {
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        if control & 0x80 == 0 {
            body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        }
        body
    };
    let mut headers = vec![content_type(control & 0x40 != 0)];
    let length = match (control >> 1) & 3 {
        0 => None,
        1 => Some(body.len() as u64),
        2 => Some(body.len() as u64 + 65_536),
        _ => Some(16 << 20),
    };
    if let Some(n) = length {
        headers.push((http::header::CONTENT_LENGTH, HeaderValue::from(n)));
    }
    if control & 8 != 0 {
        let key = format!("fuzz-key-{}", (control >> 4) & 3);
        headers.push((
            HeaderName::from_static("idempotency-key"),
            HeaderValue::from_str(&key).expect("a header value"),
        ));
    }
    Wire { headers, body }
}

fn content_type(quoted: bool) -> (HeaderName, HeaderValue) {
    let value = if quoted {
        format!("multipart/form-data; boundary=\"{BOUNDARY}\"")
    } else {
        format!("multipart/form-data; boundary={BOUNDARY}")
    };
    (
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(&value).expect("a header value"),
    )
}
