//! `postern load`: the load generator. It builds a scratch deployment (development PKI, keys,
//! the demo registry) in a work directory, starts the real gateway as a child process, submits
//! N transfers of S bytes over C concurrent mutual-TLS connections, and reports accepted/s,
//! p50/p99 latency and the server's peak RSS. In the same run it does the same against the null
//! endpoint (same binary, TLS and HTTP stack; answers 202 without doing any work), so the
//! figures come with a baseline measured on the same machine at the same moment.
//! `--compare-age` also times the age crate encrypting the same payload file.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use postern_gateway::client::{self, Identity, Submission, Target};
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides};
use postern_gateway::ingest;
use postern_gateway::live::Live;
use postern_gateway::runtime::devkit::{self, DevPaths};
use postern_gateway::seal::SpoolKey;

mod cpu;
mod deliver;
mod flood;
mod latency;
mod log;
mod log_web;
mod nodes;
mod pg;
mod web;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Against {
    Gateway,
    Null,
    Both,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Transfers to submit (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    transfers: usize,
    /// Payload size: bytes, or with a suffix (KiB, MiB, GiB).
    #[arg(long, default_value = "4KiB", value_parser = parse_size)]
    size: u64,
    /// Concurrent mutual-TLS connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// What to measure: the gateway, the null endpoint, or both in one run (for the ratio).
    #[arg(long, value_enum, default_value_t = Against::Both)]
    against: Against,
    /// Seal benchmark: alternate the age crate encrypting the payload file and the gateway
    /// accepting it, `--rounds` times, and compare the medians (one connection, one transfer
    /// at a time; `--transfers` and `--connections` are ignored).
    #[arg(long)]
    compare_age: bool,
    /// Rounds of the seal benchmark.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Warm-up transfers per connection, not measured.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Delivery benchmark: accepted-to-delivered latency at `--rate` transfers/s, then
    /// deliveries/s at saturation, to a second gateway over mutual TLS (`mtls`) or to the load
    /// generator's own SMTP server (`email`).
    #[arg(long, value_enum)]
    deliver: Option<deliver::Mode>,
    /// Submissions per second for the fixed-rate phase of `--deliver`.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Flood benchmark: one address holds this many half-open connections while a client at
    /// another submits `--transfers` transfers (at most 1,000), a new connection each; measured
    /// without the flood, with it, and with it and the per-source limits lifted.
    #[arg(long)]
    flood: Option<usize>,
    /// Web benchmark: `--connections` people signed in to the web pages share `--transfers`
    /// files of `--size` through the share form, against the API path in the same run; then
    /// one upload of `--web-upload` through the pages, with the server's peak RSS.
    #[arg(long)]
    web: bool,
    /// The single large upload of `--web` (0: none).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    web_upload: u64,
    /// Transfer log benchmark: write this many generated decision records, then time `postern
    /// log subject`, filtered `log list`, `log verify` and `log export` on them.
    #[arg(long)]
    log_records: Option<u64>,
    /// Shared-log benchmark: append this many generated decision records through the SQLite
    /// store, one node's writer on PostgreSQL and two nodes' writers, `--connections` at a
    /// time, then verify the two-node chain (needs `--pg-url` and `--pg-ca`).
    #[arg(long)]
    pg_log: Option<u64>,
    /// Serving-nodes benchmark: `postern serve` on SQLite, one node on PostgreSQL and two
    /// nodes on one PostgreSQL (the connections split between them), in one run: accepted/s
    /// and p99 for `--transfers` of `--size`, then the accepted-to-delivered p99 at `--rate`
    /// (needs `--pg-url` and `--pg-ca`); with the CPU the nodes, every `postgres` process on
    /// this machine and the load generator spent per accepted transfer while saturated.
    #[arg(long)]
    nodes: bool,
    /// The PostgreSQL server for `--pg-log` and `--nodes`: a user that may create databases.
    #[arg(long)]
    pg_url: Option<String>,
    /// The CA that issued the PostgreSQL server's certificate.
    #[arg(long)]
    pg_ca: Option<PathBuf>,
    /// A file holding the PostgreSQL user's password.
    #[arg(long)]
    pg_password_file: Option<PathBuf>,
    /// Put the database "across a network" for `--nodes` and `--pg-log`: the nodes reach it
    /// through a relay in this process that adds this many milliseconds to every round trip
    /// (half each way). 0 (the default): straight to `--pg-url`.
    #[arg(long, default_value_t = 0.0)]
    pg_rtt_ms: f64,
    /// For `--nodes`: hold each node to this many cores' worth of CPU time (a CPU cgroup; needs
    /// root), as if each ran on a machine of its own while the database and the load generator
    /// share the rest. 0 (the default): no limit.
    #[arg(long, default_value_t = 0.0)]
    node_cpus: f64,
    /// Work directory for the scratch deployment (default: a temporary one, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a size"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => return Err(format!("unknown unit `{other}`; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A scratch deployment: configuration directory, state directory, development material.
struct Scratch {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Scratch {
    fn new(work_dir: Option<&Path>) -> anyhow::Result<Scratch> {
        let (tmp, root) = match work_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.to_path_buf())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("postern-load-")
                    .tempdir_in(std::env::temp_dir())?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let s = Scratch { _tmp: tmp, root };
        let cfg = s.config_dir();
        std::fs::create_dir_all(&cfg)?;
        let orgs = config::embedded_demo::ORGANISATIONS;
        devkit::ensure(&s.state_dir(), &devkit::dev_orgs(orgs)?)?;
        for (name, text) in [
            ("organisations.toml", orgs),
            ("agreements.toml", config::embedded_demo::AGREEMENTS),
            ("purposes.toml", config::embedded_demo::PURPOSES),
            ("marking.toml", config::embedded_demo::MARKING),
        ] {
            std::fs::write(cfg.join(name), text)?;
        }
        std::fs::write(cfg.join("peers.toml"), config::embedded_demo::PEERS)?;
        Ok(s)
    }

    /// Writes `postern.toml` for a gateway with this state directory: email goes to the SMTP
    /// server the load generator runs, over STARTTLS verified against the development CA.
    fn write_daemon(
        config_dir: &Path,
        state_dir: &Path,
        max_payload: u64,
        relay_port: u16,
    ) -> anyhow::Result<()> {
        let limit = max_payload.max(1 << 20) + (1 << 20);
        std::fs::write(
            config_dir.join("postern.toml"),
            format!(
                "state_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[ops]\nlisten = \"127.0.0.1:0\"\n[web]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_payload_bytes = {limit}\nmax_connections = 4096\n[smtp]\nrelays = [{{ host = \"localhost\", port = {relay_port}, tls = \"starttls\", ca = \"${{state_dir}}/pki/ca.crt\" }}]\n",
                state_dir.display()
            ),
        )?;
        Ok(())
    }

    fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// A fresh state directory per measured server, so that runs do not see each other's data.
    fn reset_store(&self) -> anyhow::Result<()> {
        reset_state(&self.state_dir())
    }
}

/// Removes a state directory's store, spool and inbox (keeping its PKI and keys).
fn reset_state(state_dir: &Path) -> anyhow::Result<()> {
    for name in ["postern.db", "postern.db-wal", "postern.db-shm"] {
        let _ = std::fs::remove_file(state_dir.join(name));
    }
    for dir in ["spool", "inbox", "checkpoints"] {
        let d = state_dir.join(dir);
        if d.exists() {
            std::fs::remove_dir_all(&d)?;
        }
    }
    Ok(())
}

/// The load generator's own SMTP server (the relay the gateways are configured with), with
/// STARTTLS on the development server certificate.
fn start_sink(
    state_dir: &Path,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<postern_gateway::testkit::smtp_sink::SmtpSink> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pki = state_dir.join("pki");
    let chain =
        CertificateDer::pem_file_iter(pki.join("server.crt"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key"))?;
    let tls = postern_gateway::testkit::smtp_sink::tls_config(chain, key)?;
    Ok(postern_gateway::testkit::smtp_sink::SmtpSink::start(
        listener,
        postern_gateway::testkit::smtp_sink::SinkOptions {
            starttls: Some(Arc::new(tls)),
            ..Default::default()
        },
    )?)
}

/// A server child process that is killed when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// The web pages' address, when the server has them.
    web: Option<SocketAddr>,
}

impl ServerProcess {
    fn spawn(subcommand: &str, config_dir: &Path) -> anyhow::Result<ServerProcess> {
        Self::spawn_with(subcommand, config_dir, &[])
    }

    /// As [`ServerProcess::spawn`], with `env` set (a node's name and state directory).
    fn spawn_with(
        subcommand: &str,
        config_dir: &Path,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(subcommand)
            .arg("--config")
            .arg(config_dir)
            .envs(env.iter().copied())
            .env("POSTERN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut web = None;
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("postern listening on https://") {
                        break a.trim().parse()?;
                    }
                }
                _ => bail!("the {subcommand} server did not start"),
            }
        };
        // `serve` names its web pages on the next line (the load generator's configuration
        // always has them).
        if subcommand == "serve"
            && let Some(Ok(l)) = lines.next()
            && let Some(a) = l.strip_prefix("postern web pages on https://")
        {
            web = Some(a.trim().parse()?);
        }
        Ok(ServerProcess { child, addr, web })
    }

    /// VmHWM: the peak resident set size, in bytes.
    fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a transfer's payload comes from.
#[derive(Clone)]
enum Payload {
    Memory(Bytes),
    File(PathBuf),
}

fn envelope_json() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "recipients": ["northshire-police"],
            "purpose": "child-protection-s47",
            "justification": "Load test: synthetic transfer.",
            "lawful_basis": "public_task",
            "special_category_condition": "safeguarding_children",
            "data_categories": ["personal", "special_category"],
            "marking": "OFFICIAL-SENSITIVE PERSONAL",
            "practitioner": {"name": "Load Generator", "role": "Benchmark", "contact": "load@postern.invalid"},
            "consent": {"status": "not_sought", "reason": "Synthetic data."},
            "subject_informed": {"informed": true},
            "urgency": {"level": "routine"},
            "disclosed_summary": "Synthetic payload.",
            "retention": {"days": 30},
            "subject_refs": ["case:LOAD-0001"]
        }))
        .unwrap_or_default(),
    )
}

/// Pseudo-random bytes (xorshift): fast to make, incompressible enough.
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let b = seed.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

fn make_payload(size: u64, dir: &Path) -> anyhow::Result<Payload> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    if size <= 64 << 20 {
        let mut b = vec![0u8; usize::try_from(size)?];
        fill(&mut b, &mut seed);
        return Ok(Payload::Memory(Bytes::from(b)));
    }
    let path = dir.join("payload.bin");
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        fill(&mut block[..n], &mut seed);
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(Payload::File(path))
}

struct RunResult {
    name: &'static str,
    ok: usize,
    errors: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    peak_rss: Option<u64>,
}

impl RunResult {
    fn pct(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i]
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64()
    }
}

async fn one(conn: &mut client::Connection, payload: &Payload, size: u64) -> anyhow::Result<u16> {
    let answer = match payload {
        Payload::Memory(b) => {
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(b.clone())]);
            conn.submit(Submission {
                envelope_json: envelope_json(),
                payload: body,
                payload_len: Some(size),
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await?
        }
        Payload::File(p) => {
            let (body, len) = client::file_stream(p).await?;
            conn.submit(Submission {
                envelope_json: envelope_json(),
                payload: body,
                payload_len: Some(len),
                file_name: None,
                content_type: None,
                idempotency_key: None,
            })
            .await?
        }
    };
    Ok(answer.status)
}

async fn drive(
    name: &'static str,
    server: &ServerProcess,
    a: &LoadArgs,
    payload: &Payload,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<RunResult> {
    let target = Target {
        host: "localhost".into(),
        port: server.addr.port(),
    };
    let mut conns = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        conns.push(client::connect(&target, tls.clone()).await?);
    }
    let (payload, size) = (payload.clone(), a.size);
    measure(name, server, a, conns, move |mut c| {
        let payload = payload.clone();
        async move {
            let ok = matches!(one(&mut c, &payload, size).await, Ok(202));
            (c, ok)
        }
    })
    .await
}

/// Runs `--warmup` attempts per client (not measured), then `--transfers` attempts shared
/// among the clients, each client one attempt at a time; `attempt` takes a client and gives it
/// back with whether the attempt succeeded. The intake and web benchmarks both measure so.
async fn measure<C, F, Fut>(
    name: &'static str,
    server: &ServerProcess,
    a: &LoadArgs,
    clients: Vec<C>,
    attempt: F,
) -> anyhow::Result<RunResult>
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (C, bool)> + Send,
{
    // Warm-up (not measured): sessions established, caches and the store's first pages hot.
    let mut warm = Vec::new();
    for c in clients {
        let (attempt, n) = (attempt.clone(), a.warmup);
        warm.push(tokio::spawn(async move {
            let mut c = c;
            for _ in 0..n {
                c = attempt(c).await.0;
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for w in warm {
        clients.push(w.await?);
    }

    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in clients {
        let (next, attempt, total) = (next.clone(), attempt.clone(), a.transfers);
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut ok, mut err) = (Vec::new(), 0usize, 0usize);
            let mut c = c;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t = Instant::now();
                let (back, done) = attempt(c).await;
                c = back;
                if done {
                    ok += 1;
                    lat.push(t.elapsed());
                } else {
                    err += 1;
                }
            }
            (lat, ok, err)
        }));
    }
    let (mut latencies, mut ok, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, o, e) = t.await?;
        latencies.extend(l);
        ok += o;
        errors += e;
    }
    let wall = start.elapsed();
    latencies.sort();
    Ok(RunResult {
        name,
        ok,
        errors,
        wall,
        latencies,
        peak_rss: server.peak_rss(),
    })
}

/// The age crate alone: encrypt the payload file to a file in the same directory, fsync'd, as
/// the gateway does. Returns bytes per second.
fn age_baseline(payload: &Payload, dir: &Path, size: u64) -> anyhow::Result<f64> {
    let key = SpoolKey::from_identity(age::x25519::Identity::generate());
    let out_path = dir.join("age-baseline.age");
    let start = Instant::now();
    let out = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&out_path)?);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(key.recipient() as &dyn age::Recipient))?;
    let mut w = encryptor.wrap_output(out)?;
    match payload {
        Payload::Memory(b) => w.write_all(b)?,
        Payload::File(p) => {
            let mut r = std::fs::File::open(p)?;
            std::io::copy(&mut r, &mut w)?;
        }
    }
    w.finish()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&out_path);
    Ok(size as f64 / elapsed.as_secs_f64())
}

pub async fn run(a: LoadArgs) -> anyhow::Result<ExitCode> {
    if a.connections == 0 || a.transfers == 0 {
        bail!("--connections and --transfers must be at least 1");
    }
    if !(0.0..=1000.0).contains(&a.pg_rtt_ms) {
        bail!("--pg-rtt-ms must be between 0 and 1000");
    }
    if a.pg_rtt_ms > 0.0 && a.pg_log.is_none() && !a.nodes {
        bail!("--pg-rtt-ms is for --pg-log and --nodes");
    }
    if !(0.0..=1024.0).contains(&a.node_cpus) || (a.node_cpus > 0.0 && a.node_cpus < 0.1) {
        bail!("--node-cpus must be 0 (no limit) or between 0.1 and 1024");
    }
    if a.node_cpus > 0.0 && !a.nodes {
        bail!("--node-cpus is for --nodes");
    }
    let scratch = Scratch::new(a.work_dir.as_deref())?;
    if let Some(n) = a.log_records {
        return log::benchmark(n, &scratch).await;
    }
    let pg_args = || {
        let (Some(url), Some(ca)) = (a.pg_url.clone(), a.pg_ca.clone()) else {
            bail!(
                "--pg-log and --nodes need --pg-url and --pg-ca (and --pg-password-file if the server asks)"
            );
        };
        let url = if a.pg_rtt_ms > 0.0 {
            let rtt = std::time::Duration::from_secs_f64(a.pg_rtt_ms / 1000.0);
            let relayed = latency::start(&url, rtt)?;
            println!(
                "the database is reached through a relay adding {} ms to each round trip",
                a.pg_rtt_ms
            );
            relayed
        } else {
            url
        };
        anyhow::Ok(pg::PgArgs {
            url,
            ca,
            password_file: a.pg_password_file.clone(),
        })
    };
    if let Some(n) = a.pg_log {
        return pg::benchmark(n, a.connections, &pg_args()?, &scratch).await;
    }
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_port = relay.local_addr()?.port();
    let sink = start_sink(&scratch.state_dir(), relay)?;
    Scratch::write_daemon(
        &scratch.config_dir(),
        &scratch.state_dir(),
        a.size,
        relay_port,
    )?;
    let payload = make_payload(a.size, &scratch.root)?;
    let paths = DevPaths::new(&scratch.state_dir());
    let roots = client::read_roots(&paths.ca())?;
    let identity = Identity::from_pem_file(&paths.client_identity("northshire-cc"))?;
    let tls = Arc::new(client::tls_config(&roots, Some(&identity))?);

    if a.compare_age {
        return seal_benchmark(&a, &scratch, &payload, tls).await;
    }
    if a.nodes {
        return nodes::benchmark(&a, &pg_args()?, &scratch, relay_port, &payload, tls).await;
    }
    if let Some(mode) = a.deliver {
        return deliver::benchmark(&a, mode, &scratch, relay_port, &sink, &payload).await;
    }
    if a.web {
        return web::benchmark(&a, &scratch, &sink, &payload, tls).await;
    }
    if let Some(n) = a.flood {
        return flood::benchmark(
            n,
            (a.transfers.min(1000), a.size),
            &scratch.config_dir(),
            &scratch.state_dir(),
            &payload,
            tls,
        )
        .await;
    }
    println!(
        "postern load: {} transfers of {} over {} mutual-TLS connections (+{} warm-up per connection); {} CPUs",
        a.transfers,
        human(a.size),
        a.connections,
        a.warmup,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    let targets: &[(&'static str, &str)] = match a.against {
        Against::Gateway => &[("gateway", "serve")],
        Against::Null => &[("null", "null-server")],
        Against::Both => &[("gateway", "serve"), ("null", "null-server")],
    };
    for (name, sub) in targets {
        scratch.reset_store()?;
        let server = ServerProcess::spawn(sub, &scratch.config_dir())?;
        results.push(drive(name, &server, &a, &payload, tls.clone()).await?);
    }

    println!(
        "{:<8} {:>10} {:>8} {:>12} {:>10} {:>10} {:>12} {:>16}",
        "target",
        "accepted",
        "errors",
        "accepted/s",
        "p50 ms",
        "p99 ms",
        "MiB/s",
        "server peak RSS"
    );
    for r in &results {
        let mibs = r.ok as f64 * a.size as f64 / r.wall.as_secs_f64() / f64::from(1 << 20);
        println!(
            "{:<8} {:>10} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>12.1} {:>12} MiB",
            r.name,
            r.ok,
            r.errors,
            r.rate(),
            r.pct(0.50).as_secs_f64() * 1e3,
            r.pct(0.99).as_secs_f64() * 1e3,
            mibs,
            r.peak_rss.map_or_else(
                || "?".into(),
                |b| format!("{:.1}", b as f64 / f64::from(1 << 20))
            )
        );
    }
    if let [g, n] = &results[..] {
        println!("ratio gateway/null accepted/s: {:.2}", g.rate() / n.rate());
    }
    Ok(ExitCode::SUCCESS)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Alternates the age crate and the gateway on the same payload file, so that both see the
/// same machine and disk conditions, and compares the medians.
async fn seal_benchmark(
    a: &LoadArgs,
    scratch: &Scratch,
    payload: &Payload,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<ExitCode> {
    let mib = f64::from(1 << 20);
    println!(
        "postern load --compare-age: {} rounds of one {} transfer; each round times the age crate encrypting the payload file to a file (fsync'd), then the gateway accepting it (upload to durable 202)",
        a.rounds,
        human(a.size)
    );
    scratch.reset_store()?;
    let server = ServerProcess::spawn("serve", &scratch.config_dir())?;
    let target = Target {
        host: "localhost".into(),
        port: server.addr.port(),
    };
    let mut conn = client::connect(&target, tls).await?;
    let (mut age_rates, mut gw_rates) = (Vec::new(), Vec::new());
    println!("{:>5} {:>16} {:>16}", "round", "age MiB/s", "gateway MiB/s");
    for round in 1..=a.rounds.max(1) {
        // Alternate which goes first, so that neither always inherits the other's dirty pages.
        let mut gateway = async || -> anyhow::Result<f64> {
            let t = Instant::now();
            let status = one(&mut conn, payload, a.size).await?;
            if status != 202 {
                bail!("the gateway answered {status}");
            }
            Ok(a.size as f64 / t.elapsed().as_secs_f64())
        };
        let (age_bps, gw_bps) = if round % 2 == 1 {
            let age = age_baseline(payload, &scratch.root, a.size)?;
            (age, gateway().await?)
        } else {
            let gw = gateway().await?;
            (age_baseline(payload, &scratch.root, a.size)?, gw)
        };
        println!("{round:>5} {:>16.1} {:>16.1}", age_bps / mib, gw_bps / mib);
        age_rates.push(age_bps);
        gw_rates.push(gw_bps);
    }
    // On a shared machine the least-disturbed run of each is the best estimate of what it can
    // do (both sides are treated alike); the medians are printed too.
    let best = |v: &[f64]| v.iter().copied().fold(0.0_f64, f64::max);
    let (age_b, gw_b) = (best(&age_rates), best(&gw_rates));
    let (age_m, gw_m) = (median(&age_rates), median(&gw_rates));
    println!(
        "best:   age crate {:.1} MiB/s, gateway {:.1} MiB/s = {:.0}% of the age crate",
        age_b / mib,
        gw_b / mib,
        100.0 * gw_b / age_b
    );
    println!(
        "median: age crate {:.1} MiB/s, gateway {:.1} MiB/s = {:.0}% of the age crate",
        age_m / mib,
        gw_m / mib,
        100.0 * gw_m / age_m
    );
    if let Some(rss) = server.peak_rss() {
        println!("server peak RSS: {:.1} MiB", rss as f64 / mib);
    }
    Ok(ExitCode::SUCCESS)
}

/// `postern null-server --config DIR`: the baseline server.
pub async fn null_server(config_dir: &Path) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        dir: ConfigDir::Dir(config_dir.to_path_buf()),
        overrides: Overrides::default(),
        env: None,
    };
    let config = config::load(&opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let registry = Live::new(config.registry);
    let tls = ingest::ListenerTls::new(&config.tls, registry)?;
    let listener = tokio::net::TcpListener::bind(config.daemon.listen).await?;
    println!("postern listening on https://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    ingest::serve_router(
        listener,
        tls,
        ingest::null_router(),
        &config.daemon.limits,
        postern_gateway::runtime::daemon::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
