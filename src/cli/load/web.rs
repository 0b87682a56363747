//! `postern load --web`: the people's pages under load. `--connections` people (generated in
//! `people.toml` for the youth club) sign in with the code the gateway emails to the load
//! generator's own SMTP server, then share `--transfers` files of `--size` through the share
//! form (`POST /share/send`, multipart: the answers, then the file), each on their own kept-alive
//! HTTPS connection. In the same run the API path is measured as `postern load` measures it
//! (the same connections, transfers and size over mutual TLS), so the figures come with their
//! baseline. Then one `--web-upload` (1 GiB by default) goes through the pages to a fresh server,
//! whose peak RSS says whether the upload streamed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use postern_gateway::client::{self, Part, Target};
use postern_gateway::testkit::smtp_sink::SmtpSink;

use super::{LoadArgs, Payload, RunResult, Scratch, ServerProcess, drive, human, measure};

/// The answers of the share the journey makes (the youth club to the MASH), as the check
/// page's form carries them.
const ANSWERS: &[(&str, &str)] = &[
    ("to", "northshire-mash"),
    ("purpose", "safeguarding-referral"),
    ("basis", "legitimate_interests"),
    ("cat", "personal"),
    ("consent", "not_sought"),
    ("consent_reason", "Synthetic data."),
    ("informed", "yes"),
    ("urgency", "routine"),
    ("request", "no"),
    ("summary", "Load test: synthetic share."),
    ("ref_scheme", "case"),
    ("ref_value", "LOAD-0001"),
    ("justification", "Load test."),
    ("marking", "OFFICIAL"),
    ("days", "30"),
];

fn person(i: usize) -> String {
    format!("load-{i}@riverside-youth.example")
}

fn people_toml(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[person]]\nemail = \"{}\"\nname = \"Load {i}\"\ntitle = \"Benchmark\"\norganisation = \"riverside-youth\"\nroles = [\"share\"]\n\n",
                person(i)
            )
        })
        .collect()
}

/// A cookie's `name=value` from an answer's Set-Cookie headers.
fn cookie(a: &client::Answer, name: &str) -> Option<String> {
    a.headers
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The newest code the sink received for `to`, once there are more than `before`.
async fn code_for(sink: &SmtpSink, to: &str, before: usize) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let codes: Vec<String> = sink
            .received()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.contains(to)))
            .filter_map(|m| {
                String::from_utf8_lossy(&m.data)
                    .lines()
                    .map(str::trim)
                    .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
                    .map(str::to_owned)
            })
            .collect();
        if codes.len() > before
            && let Some(c) = codes.last()
        {
            return Ok(c.clone());
        }
        if Instant::now() > deadline {
            bail!("no sign-in code for {to} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Signs `email` in on a connection of its own; returns it with the session cookie.
pub(super) async fn sign_in(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    sink: &SmtpSink,
    email: &str,
) -> anyhow::Result<(client::Connection, String)> {
    let mut c = client::connect(target, tls).await?;
    let before = sink
        .received()
        .iter()
        .filter(|m| m.to.iter().any(|t| t.contains(email)))
        .count();
    let a = c
        .raw(
            "POST",
            "/sign-in",
            &[FORM, SAME_ORIGIN],
            Bytes::from(format!("email={email}")),
        )
        .await?;
    let pending = cookie(&a, "__Host-postern-signin").context("no pending sign-in cookie")?;
    let code = code_for(sink, email, before).await?;
    let a = c
        .raw(
            "POST",
            "/sign-in/code",
            &[FORM, SAME_ORIGIN, ("cookie", &pending)],
            Bytes::from(format!("code={code}")),
        )
        .await?;
    let session = cookie(&a, "__Host-postern-session")
        .with_context(|| format!("sign-in failed ({}) for {email}", a.status))?;
    Ok((c, session))
}

/// One share through the form: true when the confirmation page came back.
async fn share(
    c: &mut client::Connection,
    session: &str,
    payload: &Payload,
    size: u64,
) -> anyhow::Result<bool> {
    let fixed: Vec<(Part, Bytes)> = ANSWERS
        .iter()
        .map(|(k, v)| {
            (
                Part {
                    name: k,
                    file_name: None,
                    content_type: "text/plain".into(),
                },
                Bytes::from_static(v.as_bytes()),
            )
        })
        .collect();
    let file = Part {
        name: "payload",
        file_name: Some("share.bin".into()),
        content_type: "application/octet-stream".into(),
    };
    let m = match payload {
        Payload::Memory(b) => client::multipart(
            fixed,
            file,
            futures_util::stream::iter([Ok::<_, std::io::Error>(b.clone())]),
            Some(size),
        )?,
        Payload::File(p) => {
            let (body, len) = client::file_stream(p).await?;
            client::multipart(fixed, file, body, Some(len))?
        }
    };
    let a = c
        .post_multipart("/share/send", &[SAME_ORIGIN, ("cookie", session)], m)
        .await?;
    const SHARED: &[u8] = b"<h1>Shared</h1>";
    let shared = a.status == 200 && a.body.windows(SHARED.len()).any(|w| w == SHARED);
    if !shared {
        tracing::warn!(
            status = a.status,
            "a share through the web pages was not confirmed"
        );
    }
    Ok(shared)
}

async fn drive_web(
    server: &ServerProcess,
    a: &LoadArgs,
    sink: &SmtpSink,
    payload: &Payload,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<RunResult> {
    let web = server.web.context("the gateway has no web pages")?;
    let target = Target {
        host: "localhost".into(),
        port: web.port(),
    };
    let mut sessions = Vec::new();
    for i in 0..a.connections {
        sessions.push(sign_in(&target, tls.clone(), sink, &person(i)).await?);
    }
    let (payload, size) = (payload.clone(), a.size);
    measure("web", server, a, sessions, move |(mut c, s)| {
        let payload = payload.clone();
        async move {
            let ok = matches!(share(&mut c, &s, &payload, size).await, Ok(true));
            ((c, s), ok)
        }
    })
    .await
}

pub(super) async fn benchmark(
    a: &LoadArgs,
    scratch: &Scratch,
    sink: &SmtpSink,
    payload: &Payload,
    api_tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<ExitCode> {
    std::fs::write(
        scratch.config_dir().join("people.toml"),
        people_toml(a.connections.max(1)),
    )?;
    let roots = client::read_roots(
        &postern_gateway::runtime::devkit::DevPaths::new(&scratch.state_dir()).ca(),
    )?;
    let web_tls = Arc::new(client::tls_config(&roots, None)?);
    println!(
        "postern load --web: {} shares of {} by {} signed-in people, each on a kept-alive HTTPS connection (+{} warm-up each); the API path in the same run; {} CPUs",
        a.transfers,
        human(a.size),
        a.connections,
        a.warmup,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    scratch.reset_store()?;
    let server = ServerProcess::spawn("serve", &scratch.config_dir())?;
    results.push(drive("api", &server, a, payload, api_tls).await?);
    drop(server);
    scratch.reset_store()?;
    let server = ServerProcess::spawn("serve", &scratch.config_dir())?;
    results.push(drive_web(&server, a, sink, payload, web_tls.clone()).await?);
    drop(server);

    println!(
        "{:<8} {:>10} {:>8} {:>12} {:>10} {:>10} {:>16}",
        "path", "shared", "errors", "shares/s", "p50 ms", "p99 ms", "server peak RSS"
    );
    for r in &results {
        println!(
            "{:<8} {:>10} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>12} MiB",
            r.name,
            r.ok,
            r.errors,
            r.rate(),
            r.pct(0.50).as_secs_f64() * 1e3,
            r.pct(0.99).as_secs_f64() * 1e3,
            r.peak_rss.map_or(0, |b| b >> 20)
        );
    }
    if let [api, web] = &results[..] {
        println!(
            "web / API: {:.2}x the rate (target >= 0.5), p99 {:.2}x",
            web.rate() / api.rate(),
            web.pct(0.99).as_secs_f64() / api.pct(0.99).as_secs_f64().max(1e-9)
        );
    }

    // One large upload through the pages, to a fresh server: its peak RSS.
    if a.web_upload > 0 {
        let big = super::make_payload(a.web_upload, &scratch.root)?;
        Scratch::write_daemon(
            &scratch.config_dir(),
            &scratch.state_dir(),
            a.web_upload,
            sink.addr.port(),
        )?;
        scratch.reset_store()?;
        let server = ServerProcess::spawn("serve", &scratch.config_dir())?;
        let idle_rss = server.peak_rss().unwrap_or(0);
        let web = server.web.context("the gateway has no web pages")?;
        let target = Target {
            host: "localhost".into(),
            port: web.port(),
        };
        let (mut c, s) = sign_in(&target, web_tls, sink, &person(0)).await?;
        let t = Instant::now();
        let ok = share(&mut c, &s, &big, a.web_upload).await?;
        let took = t.elapsed();
        let peak = server.peak_rss().unwrap_or(0);
        println!(
            "one {} upload through the web pages: {} in {:.1} s ({:.0} MiB/s); server peak RSS {} MiB (after start-up: {} MiB; target <= 64 MiB)",
            human(a.web_upload),
            if ok { "shared" } else { "FAILED" },
            took.as_secs_f64(),
            a.web_upload as f64 / took.as_secs_f64() / f64::from(1 << 20),
            peak >> 20,
            idle_rss >> 20
        );
        if let Payload::File(p) = big {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(ExitCode::SUCCESS)
}
