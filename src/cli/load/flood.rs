//! `postern load --flood N`: one address (127.0.0.2) keeps N half-open connections to the
//! gateway (TCP connected, no TLS handshake ever sent; each one closed is opened again) while a
//! legitimate client at 127.0.0.1 opens a fresh mutual-TLS connection per transfer and submits.
//! Measured three ways in one run: without the flood (the baseline), with the flood and the
//! shipped per-source limits, and with the flood and the per-source limits lifted (what the
//! gateway did before it had them). Each legitimate attempt gives up after 15 s.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postern_gateway::client::{self, Target};

use super::{Payload, ServerProcess, one};

/// A legitimate attempt that takes longer than this counts as failed.
const GIVE_UP: Duration = Duration::from_secs(15);

struct Phase {
    name: &'static str,
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
    flood_open: usize,
}

impl Phase {
    fn pct(&self, p: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let i =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        Some(self.latencies[i])
    }
}

/// Holds `n` connections from 127.0.0.2, opening again each one the gateway closes, until
/// `stop`. Returns how many are open (sampled by the caller).
fn start_flood(
    addr: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (stop, open) = (stop.clone(), open.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                        return;
                    };
                    let Ok(from) = "127.0.0.2:0".parse() else {
                        return;
                    };
                    if socket.bind(from).is_err() {
                        return;
                    }
                    let Ok(Ok(mut s)) =
                        tokio::time::timeout(Duration::from_secs(5), socket.connect(addr)).await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    open.fetch_add(1, Ordering::Relaxed);
                    // Sit on it, sending nothing, until the gateway closes it (or the end).
                    let mut buf = [0u8; 64];
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(
                            Duration::from_millis(200),
                            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
                        )
                        .await
                        {
                            break;
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

async fn legitimate(
    name: &'static str,
    server: &ServerProcess,
    (transfers, size): (usize, u64),
    payload: &Payload,
    tls: Arc<rustls::ClientConfig>,
    flood_open: &AtomicUsize,
) -> Phase {
    let target = Target {
        host: "localhost".into(),
        port: server.addr.port(),
    };
    let mut phase = Phase {
        name,
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
        flood_open: flood_open.load(Ordering::Relaxed),
    };
    for _ in 0..transfers {
        let t = Instant::now();
        let attempt = async {
            let mut c = client::connect(&target, tls.clone()).await.ok()?;
            one(&mut c, payload, size).await.ok()
        };
        match tokio::time::timeout(GIVE_UP, attempt).await {
            Ok(Some(202)) => {
                phase.ok += 1;
                phase.latencies.push(t.elapsed());
            }
            _ => phase.failed += 1,
        }
    }
    phase.latencies.sort();
    phase
}

pub async fn benchmark(
    flood: usize,
    (transfers, size): (usize, u64),
    config_dir: &Path,
    state_dir: &Path,
    payload: &Payload,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<ExitCode> {
    // Both sides need a file descriptor per connection.
    if let Some(max) = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    println!(
        "postern load --flood {flood}: one address (127.0.0.2) holds {flood} half-open connections while a client at 127.0.0.1 submits {transfers} transfers of {}, a new mutual-TLS connection each (max_connections 512, handshake timeout 10 s)",
        super::human(size)
    );
    let daemon = std::fs::read_to_string(config_dir.join("postern.toml"))?;
    let mut phases = Vec::new();
    for (name, limits, flooded) in [
        ("no flood (baseline)", "", false),
        ("flood, per-source limits", "", true),
        (
            "flood, no per-source limits",
            "max_connections_per_source = 100000\nmax_handshakes_per_source = 100000\n",
            true,
        ),
    ] {
        super::reset_state(state_dir)?;
        std::fs::write(
            config_dir.join("postern.toml"),
            daemon.replace(
                "max_connections = 4096\n",
                &format!("max_connections = 512\nhandshake_timeout_secs = 10\n{limits}"),
            ),
        )?;
        let server = ServerProcess::spawn("serve", config_dir)?;
        let (stop, open) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let tasks = if flooded {
            let t = start_flood(server.addr, flood, stop.clone(), open.clone());
            // Let the flood build up before measuring.
            tokio::time::sleep(Duration::from_secs(3)).await;
            t
        } else {
            Vec::new()
        };
        phases.push(
            legitimate(
                name,
                &server,
                (transfers, size),
                payload,
                tls.clone(),
                &open,
            )
            .await,
        );
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    }
    std::fs::write(config_dir.join("postern.toml"), daemon)?;
    println!(
        "{:<30} {:>10} {:>8} {:>10} {:>10} {:>10} {:>16}",
        "phase", "accepted", "failed", "p50 ms", "p99 ms", "max ms", "flood sockets"
    );
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1}", d.as_secs_f64() * 1e3),
        )
    };
    for p in &phases {
        println!(
            "{:<30} {:>10} {:>8} {:>10} {:>10} {:>10} {:>16}",
            p.name,
            p.ok,
            p.failed,
            ms(p.pct(0.5)),
            ms(p.pct(0.99)),
            ms(p.latencies.last().copied()),
            p.flood_open
        );
    }
    if let (Some(base), Some(limited)) = (phases.first(), phases.get(1))
        && let (Some(b), Some(l)) = (base.pct(0.99), limited.pct(0.99))
    {
        println!(
            "p99 with the flood and per-source limits / without the flood: {:.2}",
            l.as_secs_f64() / b.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
