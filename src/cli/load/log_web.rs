//! The DPO's pages on the benchmark's log (`postern load --log-records N`, after the command
//! line's figures): a gateway serves the generated state directory; a DPO (the youth club's,
//! whose view is narrowed to its own records) and an auditor (the whole log) sign in, and 100
//! requests of varied filters and pages are timed one at a time on kept-alive connections, with
//! the same connections' static page (`/accessibility`) as the baseline. Then the whole log is
//! exported through the pages while the server's resident memory is sampled, against a one-day
//! export: flat memory means the export streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use postern_gateway::client::{self, Target};

use super::{Scratch, ServerProcess};

const DPO: &str = "dpo@riverside-youth.example";
const AUDITOR: &str = "auditor@northshire-mash.example";

const PEOPLE: &str = "[[person]]\nemail = \"dpo@riverside-youth.example\"\nname = \"Benchmark DPO\"\ntitle = \"Data protection officer\"\norganisation = \"riverside-youth\"\nroles = [\"dpo\"]\n\n[[person]]\nemail = \"auditor@northshire-mash.example\"\nname = \"Benchmark auditor\"\ntitle = \"Caldicott Guardian\"\norganisation = \"northshire-mash\"\nroles = [\"auditor\"]\n";

/// What the generated log offers to look for.
pub(super) struct Sample {
    pub someone: String,
    pub sender: String,
    pub purpose: String,
    pub transfer: String,
    pub middle_seq: i64,
}

/// One kind of page, as (label, method, path, form body).
fn requests(s: &Sample) -> Vec<(&'static str, &'static str, String, String)> {
    let subject = form_urlencoded::Serializer::new(String::new())
        .append_pair("kind", "other")
        .append_pair("identifier", &s.someone)
        .finish();
    vec![
        ("list, newest 50", "GET", "/log".into(), String::new()),
        (
            "list, sender and purpose",
            "GET",
            format!("/log?sender={}&purpose={}", s.sender, s.purpose),
            String::new(),
        ),
        (
            "list, recipient, refused, one week",
            "GET",
            "/log?recipient=riverside-youth&decision=refused&from=2026-01-03&to=2026-01-09".into(),
            String::new(),
        ),
        (
            "list, delivery dead, marking OFFICIAL",
            "GET",
            "/log?delivery=dead&marking=OFFICIAL".into(),
            String::new(),
        ),
        (
            "list, basis public task",
            "GET",
            "/log?basis=public_task".into(),
            String::new(),
        ),
        (
            "list, urgent",
            "GET",
            "/log?urgency=urgent".into(),
            String::new(),
        ),
        (
            "list, originator police, shared",
            "GET",
            "/log?originator=northshire-police&decision=shared".into(),
            String::new(),
        ),
        (
            "list, a page in the middle",
            "GET",
            format!("/log?before={}", s.middle_seq),
            String::new(),
        ),
        (
            "a record's page",
            "GET",
            format!("/log/transfer/{}", s.transfer),
            String::new(),
        ),
        ("subject access", "POST", "/log/subject".into(), subject),
        // A month of a gateway whose log reaches a million decisions in six years: ~14,000.
        (
            "report, 14,400 decisions",
            "GET",
            "/log/report?from=2026-01-05T00:00:00Z&to=2026-01-05T04:00:00Z".into(),
            String::new(),
        ),
        ("who looked", "GET", "/log/access".into(), String::new()),
    ]
}

async fn sign_in(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    sink: &postern_gateway::testkit::smtp_sink::SmtpSink,
    email: &str,
) -> anyhow::Result<(client::Connection, String)> {
    super::web::sign_in(target, tls, sink, email).await
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// VmRSS: the server's resident memory now, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Counts what it is given and keeps nothing.
struct Count(u64);

impl tokio::io::AsyncWrite for Count {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0 += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Exports `path` through the pages; (bytes, seconds, the server's largest VmRSS meanwhile).
async fn export(
    c: &mut client::Connection,
    session: &str,
    path: &str,
    pid: u32,
) -> anyhow::Result<(u64, f64, u64)> {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(r) = rss(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut out = Count(0);
    let t = Instant::now();
    let a = c
        .download_with(path, &[("cookie", session)], &mut out)
        .await?;
    let took = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    if a.status != 200 {
        bail!("{path} answered {}", a.status);
    }
    Ok((out.0, took, peak.load(Ordering::Relaxed)))
}

pub(super) async fn benchmark(scratch: &Scratch, sample: &Sample) -> anyhow::Result<()> {
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_port = relay.local_addr()?.port();
    let sink = super::start_sink(&scratch.state_dir(), relay)?;
    Scratch::write_daemon(
        &scratch.config_dir(),
        &scratch.state_dir(),
        1 << 20,
        relay_port,
    )?;
    std::fs::write(scratch.config_dir().join("people.toml"), PEOPLE)?;
    let server = ServerProcess::spawn("serve", &scratch.config_dir())?;
    let pid = server.child.id();
    let web = server.web.context("the gateway has no web pages")?;
    let target = Target {
        host: "localhost".into(),
        port: web.port(),
    };
    let roots = client::read_roots(
        &postern_gateway::runtime::devkit::DevPaths::new(&scratch.state_dir()).ca(),
    )?;
    let tls = Arc::new(client::tls_config(&roots, None)?);
    // The delivery worker gives up on the generated deliveries still pending (their sealed
    // files were never written): waited for, so that it is not measured with the pages.
    let db = postern_gateway::store::db_path(&scratch.state_dir());
    let t = Instant::now();
    loop {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let pending: i64 = conn.query_row(
            "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'delivering', 'retrying')",
            [],
            |r| r.get(0),
        )?;
        if pending == 0 || t.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Signed in once the worker is done: an idle kept-alive connection is closed meanwhile.
    let mut people = Vec::new();
    for email in [DPO, AUDITOR] {
        let (c, s) = sign_in(&target, tls.clone(), &sink, email).await?;
        people.push((email, c, s));
    }
    // The first full verification, in the background at start-up, is waited for: it is not
    // what a page costs (pages show its result, they do not compute it).
    let t = Instant::now();
    loop {
        // Both connections kept busy: the server closes one idle for 30 s.
        let (_, c, s) = &mut people[0];
        c.raw("GET", "/accessibility", &[("cookie", s)], Bytes::new())
            .await?;
        let (_, c, s) = &mut people[1];
        let a = c
            .raw("GET", "/log/access", &[("cookie", s)], Bytes::new())
            .await?;
        if String::from_utf8_lossy(&a.body).contains("Verified intact") {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the log was not verified within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let verified_after = t.elapsed();
    let idle_rss = rss(pid).unwrap_or(0);

    let kinds = requests(sample);
    let mut baseline = Vec::new();
    let mut times = Vec::new();
    let mut by_kind: Vec<(&str, Duration)> = Vec::new();
    for i in 0..100 {
        let (label, method, path, body) = &kinds[i % kinds.len()];
        let (who, c, s) = &mut people[i % 2];
        let headers = [
            ("cookie", s.as_str()),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let t = Instant::now();
        let a = c
            .raw(method, path, &headers, Bytes::from(body.clone()))
            .await?;
        let took = t.elapsed();
        if a.status != 200 {
            bail!("{method} {path} as {who} answered {}", a.status);
        }
        times.push(took);
        by_kind.push((label, took));
        let t = Instant::now();
        let a = c
            .raw(
                "GET",
                "/accessibility",
                &[("cookie", s.as_str())],
                Bytes::new(),
            )
            .await?;
        baseline.push(t.elapsed());
        if a.status != 200 {
            bail!("/accessibility answered {}", a.status);
        }
    }
    times.sort();
    baseline.sort();
    println!(
        "DPO pages on {} records (a DPO, narrowed to one organisation, and an auditor, alternately; the first background verification was waited for, {:.1} s after sign-in)",
        sample.middle_seq * 2,
        verified_after.as_secs_f64()
    );
    println!(
        "{:<40} {:>10} {:>10}",
        "page (each kind 8 or 9 times)", "worst ms", "median ms"
    );
    for (label, _, _, _) in &kinds {
        let mut t: Vec<Duration> = by_kind
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, d)| *d)
            .collect();
        t.sort();
        println!(
            "{label:<40} {:>10.1} {:>10.1}",
            ms(*t.last().unwrap_or(&Duration::ZERO)),
            ms(pct(&t, 0.5))
        );
    }
    println!(
        "log pages: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} requests (target p99 < 200 ms); baseline /accessibility on the same connections: p50 {:.2} ms, p99 {:.2} ms (p99 ratio {:.1}x)",
        ms(pct(&times, 0.5)),
        ms(pct(&times, 0.99)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        times.len(),
        ms(pct(&baseline, 0.5)),
        ms(pct(&baseline, 0.99)),
        ms(pct(&times, 0.99)) / ms(pct(&baseline, 0.99)).max(1e-9)
    );

    // The report over a whole day of the synthetic log (86,400 decisions: years of a real
    // gateway's), as the auditor and as the DPO: shown apart, not one of the 100.
    for (who, label) in [(1, "auditor"), (0, "DPO")] {
        let (_, c, s) = &mut people[who];
        let mut t = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let a = c
                .raw(
                    "GET",
                    "/log/report?from=2026-01-05&to=2026-01-05",
                    &[("cookie", s.as_str())],
                    Bytes::new(),
                )
                .await?;
            t.push(start.elapsed());
            if a.status != 200 {
                bail!("the one-day report answered {}", a.status);
            }
        }
        t.sort();
        println!(
            "report over one day (86,400 decisions), as the {label}: median {:.0} ms, worst {:.0} ms (of 5)",
            ms(pct(&t, 0.5)),
            ms(*t.last().unwrap_or(&Duration::ZERO))
        );
    }

    // Memory: a one-day export, then the whole log, through the pages, as the auditor.
    let (_, c, s) = &mut people[1];
    let (day_bytes, day_s, day_peak) = export(
        c,
        s,
        "/log/export?format=jsonl&from=2026-01-01&to=2026-01-01",
        pid,
    )
    .await?;
    let (all_bytes, all_s, all_peak) = export(c, s, "/log/export?format=jsonl", pid).await?;
    let (csv_bytes, csv_s, csv_peak) = export(c, s, "/log/export?format=csv", pid).await?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "export through the pages: one day {:.0} MiB in {:.1} s, server RSS at most {:.1} MiB; everything {:.0} MiB jsonl in {:.1} s ({:.0} MiB/s), RSS at most {:.1} MiB; csv {:.0} MiB in {:.1} s, RSS at most {:.1} MiB; idle after start-up {:.1} MiB; whole-log / one-day RSS ratio {:.2}",
        mib(day_bytes),
        day_s,
        mib(day_peak),
        mib(all_bytes),
        all_s,
        mib(all_bytes) / all_s.max(1e-9),
        mib(all_peak),
        mib(csv_bytes),
        csv_s,
        mib(csv_peak),
        mib(idle_rss),
        all_peak as f64 / day_peak.max(1) as f64
    );
    drop(server);
    Ok(())
}
