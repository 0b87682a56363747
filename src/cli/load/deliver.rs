//! `postern load --deliver mtls|email`: end-to-end delivery. Transfers go in over the API and
//! out by the recipient's channel: to a second gateway's `/v1/inbound` over mutual TLS (the
//! police, whose endpoint is pointed at the peer), or by email to the load generator's own SMTP
//! server (the council). Two phases, each on fresh stores:
//!
//! 1. fixed rate (`--rate`, open loop): accepted-to-delivered latency, p50 and p99, from the
//!    gateway's own timestamps (`transfers.accepted_at`, `deliveries.delivered_at`);
//! 2. saturation (every connection submitting back to back): deliveries per second.
//!
//! The baseline, measured in the same run, is the submission itself: the 202 latency of the
//! same transfers at the same rate (one hop into a gateway and one durable commit). A delivery
//! is a reseal, one hop out and durable commits at both ends, so the ratio says what the trip
//! onward costs relative to the trip in.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::ValueEnum;
use postern_gateway::client::{self, Identity, Submission, Target};
use postern_gateway::config;
use postern_gateway::runtime::devkit::DevPaths;
use postern_gateway::store::Reader;
use postern_gateway::testkit::smtp_sink::SmtpSink;

use super::{LoadArgs, Payload, Scratch, ServerProcess, human, reset_state};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// To a second gateway over mutual TLS.
    Mtls,
    /// To an SMTP server over STARTTLS.
    Email,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Mtls => "mutual TLS to a peer gateway",
            Mode::Email => "email (STARTTLS) to a local SMTP server",
        }
    }
    /// Who sends, and to whom (a pair with an agreement for the envelope's purpose).
    fn parties(self) -> (&'static str, &'static str) {
        match self {
            Mode::Mtls => ("northshire-cc", "northshire-police"),
            Mode::Email => ("northshire-police", "northshire-cc"),
        }
    }
}

/// The police's endpoint in the demo registry: this gateway's own inbound URL.
const SELF_INBOUND: &str = "url = \"https://localhost:${api_port}/v1/inbound\"";

pub(super) fn envelope(to: &str) -> Bytes {
    let mut v: serde_json::Value =
        serde_json::from_slice(&super::envelope_json()).unwrap_or_default();
    v["recipients"] = serde_json::json!([to]);
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

struct Phase {
    name: String,
    submitted: usize,
    submit_latencies: Vec<Duration>,
    /// Accepted to delivered, per transfer.
    deliver_latencies: Vec<Duration>,
    /// Deliveries per second, first to last delivery.
    delivery_rate: f64,
}

pub(super) fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1e3
}

/// What each transfer of a phase carries.
pub(super) struct Work {
    pub envelope: Bytes,
    pub payload: Payload,
    pub size: u64,
}

/// Submits `n` transfers over `conns` connections (spread over `targets` in turn): at `rate`
/// per second (transfer i is due at i/rate seconds), or back to back when `rate` is `None`.
/// Returns the 202 latencies.
pub(super) async fn submit_all(
    targets: &[Target],
    tls: Arc<rustls::ClientConfig>,
    conns: usize,
    n: usize,
    rate: Option<u32>,
    work: &Work,
) -> anyhow::Result<Vec<Duration>> {
    let Payload::Memory(body) = work.payload.clone() else {
        bail!("--deliver uses payloads of at most 64 MiB");
    };
    let (envelope, size) = (work.envelope.clone(), work.size);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let Some(target) = targets.get(c % targets.len().max(1)) else {
            bail!("no gateway to submit to");
        };
        let mut conn = client::connect(target, tls.clone()).await?;
        let (envelope, body) = (envelope.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (c..n).step_by(conns) {
                if let Some(r) = rate {
                    let due = start + Duration::from_secs_f64(i as f64 / f64::from(r));
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                let a = conn
                    .submit(Submission {
                        envelope_json: envelope.clone(),
                        payload: futures_util::stream::iter([Ok::<_, std::io::Error>(
                            body.clone(),
                        )]),
                        payload_len: Some(size),
                        file_name: None,
                        content_type: None,
                        idempotency_key: None,
                    })
                    .await?;
                if a.status != 202 {
                    bail!(
                        "the gateway answered {}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                }
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all)
}

/// Waits until every delivery is delivered (or fails if any dies or it takes too long), then
/// reads accepted-to-delivered latencies and the delivery rate from the store.
async fn collect(state_dir: &Path, n: usize) -> anyhow::Result<(Vec<Duration>, f64)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = Reader::open(state_dir)?;
        let (delivered, dead): (i64, i64) = r.conn()?.query_row(
            "SELECT COALESCE(SUM(state = 'delivered'), 0), COALESCE(SUM(state = 'dead'), 0) FROM deliveries",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if dead > 0 {
            let why: String = r.conn()?.query_row(
                "SELECT COALESCE(last_error, '') FROM deliveries WHERE state = 'dead' LIMIT 1",
                [],
                |row| row.get(0),
            )?;
            bail!("{dead} deliveries failed for good: {why}");
        }
        if usize::try_from(delivered)? >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {delivered} of {n} delivered after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = Reader::open(state_dir)?;
    let mut stmt = r.conn()?.prepare(
        "SELECT t.accepted_at, d.delivered_at FROM deliveries d JOIN transfers t ON t.id = d.transfer_id",
    )?;
    let rows: Vec<(String, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let parse = |s: &str| postern_gateway::clock::parse(s).context("a bad timestamp in the store");
    let mut lat = Vec::with_capacity(rows.len());
    let (mut first, mut last) = (None, None);
    for (accepted, delivered) in &rows {
        let (a, d) = (parse(accepted)?, parse(delivered)?);
        lat.push(Duration::try_from(d - a).unwrap_or_default());
        first = Some(first.map_or(d, |f: time::OffsetDateTime| f.min(d)));
        last = Some(last.map_or(d, |l: time::OffsetDateTime| l.max(d)));
    }
    lat.sort();
    let rate = match (first, last) {
        (Some(f), Some(l)) if l > f => (rows.len() - 1) as f64 / (l - f).as_seconds_f64(),
        _ => 0.0,
    };
    Ok((lat, rate))
}

pub(super) async fn benchmark(
    a: &LoadArgs,
    mode: Mode,
    scratch: &Scratch,
    relay_port: u16,
    sink: &SmtpSink,
    payload: &Payload,
) -> anyhow::Result<ExitCode> {
    if a.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let (from, to) = mode.parties();
    let paths = DevPaths::new(&scratch.state_dir());
    let roots = client::read_roots(&paths.ca())?;
    let identity = Identity::from_pem_file(&paths.client_identity(from))?;
    let tls = Arc::new(client::tls_config(&roots, Some(&identity))?);
    let n = a.transfers;
    println!(
        "postern load --deliver: {n} transfers of {} from {from} to {to} by {}; first at {}/s over {} connections, then back to back; {} CPUs",
        human(a.size),
        mode.name(),
        a.rate,
        a.connections,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // The peer gateway shares the development PKI and keys (so it trusts the sending gateway's
    // certificate as the demo's peer `northshire-gateway`), with its own store.
    let peer_root = scratch.root.join("peer");
    let (peer_config, peer_state) = (peer_root.join("config"), peer_root.join("state"));
    if mode == Mode::Mtls {
        std::fs::create_dir_all(&peer_config)?;
        std::fs::create_dir_all(&peer_state)?;
        for dir in ["pki", "keys"] {
            copy_dir(&scratch.state_dir().join(dir), &peer_state.join(dir))?;
        }
        for entry in std::fs::read_dir(scratch.config_dir())? {
            let entry = entry?;
            std::fs::copy(entry.path(), peer_config.join(entry.file_name()))?;
        }
        Scratch::write_daemon(&peer_config, &peer_state, a.size, relay_port)?;
    }
    let organisations = config::embedded_demo::ORGANISATIONS;

    let mut phases = Vec::new();
    for (name, rate) in [
        (format!("{}/s", a.rate), Some(a.rate)),
        ("saturation".to_owned(), None),
    ] {
        scratch.reset_store()?;
        let before = sink.received().len();
        let _peer = if mode == Mode::Mtls {
            reset_state(&peer_state)?;
            let peer = ServerProcess::spawn("serve", &peer_config)?;
            let url = format!(
                "url = \"https://localhost:{}/v1/inbound\"",
                peer.addr.port()
            );
            // The first https endpoint in the demo registry is the police's.
            std::fs::write(
                scratch.config_dir().join("organisations.toml"),
                organisations.replacen(SELF_INBOUND, &url, 1),
            )?;
            Some(peer)
        } else {
            None
        };
        let server = ServerProcess::spawn("serve", &scratch.config_dir())?;
        let target = Target {
            host: "localhost".into(),
            port: server.addr.port(),
        };
        let work = Work {
            envelope: envelope(to),
            payload: payload.clone(),
            size: a.size,
        };
        let submit = submit_all(
            std::slice::from_ref(&target),
            tls.clone(),
            a.connections,
            n,
            rate,
            &work,
        )
        .await?;
        let (deliver, delivery_rate) = collect(&scratch.state_dir(), n).await?;
        if mode == Mode::Email {
            let got = sink.received().len() - before;
            if got != n {
                bail!("the SMTP server received {got} messages for {n} transfers");
            }
        }
        phases.push(Phase {
            name,
            submitted: submit.len(),
            submit_latencies: submit,
            deliver_latencies: deliver,
            delivery_rate,
        });
    }
    std::fs::write(
        scratch.config_dir().join("organisations.toml"),
        organisations,
    )?;

    println!(
        "{:<12} {:>9} {:>11} {:>11} {:>12} {:>12} {:>13}",
        "phase",
        "delivered",
        "202 p50 ms",
        "202 p99 ms",
        "deliv p50 ms",
        "deliv p99 ms",
        "deliveries/s"
    );
    for p in &phases {
        println!(
            "{:<12} {:>9} {:>11.2} {:>11.2} {:>12.2} {:>12.2} {:>13.0}",
            p.name,
            p.submitted,
            pct(&p.submit_latencies, 0.50),
            pct(&p.submit_latencies, 0.99),
            pct(&p.deliver_latencies, 0.50),
            pct(&p.deliver_latencies, 0.99),
            p.delivery_rate
        );
    }
    if let Some(p) = phases.first() {
        println!(
            "at {}/s: accepted-to-delivered p99 {:.2} ms = {:.1}x the submission's own p99 ({:.2} ms)",
            a.rate,
            pct(&p.deliver_latencies, 0.99),
            pct(&p.deliver_latencies, 0.99) / pct(&p.submit_latencies, 0.99).max(1e-9),
            pct(&p.submit_latencies, 0.99)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
