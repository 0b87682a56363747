//! `postern serve`, `postern demo`, `postern check-config`.
//!
//! `serve` and `demo` run as a service: SIGHUP reloads the configuration they were started with
//! (with the same command-line overrides), SIGTERM stops them, and under systemd they use its
//! notify protocol (see `daemon`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use postern_gateway::config::{self, ConfigDir, ConfigErrors, LoadOptions, Overrides};
use postern_gateway::runtime::daemon;
use postern_gateway::runtime::devkit::{self, DevPaths};
use postern_gateway::store::StoreError;

use super::{EX_DATAERR, EX_UNAVAILABLE, EX_USAGE, exit};

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration directory: postern.toml (optional) and the registry files.
    #[arg(long, env = "POSTERN_CONFIG_DIR", default_value = "/etc/postern")]
    config: PathBuf,
    /// Overrides `state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Overrides `api.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Where the store, spool, development certificates and keys go (created if missing).
    #[arg(long, default_value = "postern-state")]
    state_dir: PathBuf,
    /// The API listener (loopback).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The people's web pages (default: `web.listen`, 127.0.0.1:8444).
    #[arg(long)]
    web_listen: Option<SocketAddr>,
    /// Health and metrics (default: `ops.listen`, 127.0.0.1:9464). A second demo on the same
    /// machine needs its own: 127.0.0.1:0 picks a free port.
    #[arg(long)]
    ops_listen: Option<SocketAddr>,
    /// Registry directory; defaults to ./config/demo if present, else the copy built into the binary.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Where a demo-style command finds its registry: `--config`, else ./config/demo when run from
/// a checkout, else the copy built into the binary.
pub fn demo_config_dir(given: Option<PathBuf>) -> ConfigDir {
    match given {
        Some(d) => ConfigDir::Dir(d),
        None if Path::new("config/demo/organisations.toml").is_file() => {
            ConfigDir::Dir(PathBuf::from("config/demo"))
        }
        None => ConfigDir::EmbeddedDemo,
    }
}

pub fn print_errors(errors: &ConfigErrors) {
    eprintln!(
        "postern: the configuration has {} error(s):",
        errors.0.len()
    );
    for e in &errors.0 {
        eprintln!("  {e}");
    }
}

/// `postern check-config`: every error with file and line (exit 64), or a summary; with
/// `reload`, a clean configuration is then signalled to that running gateway (SIGHUP).
pub fn check_config(dir: &Path, reload: Option<i32>) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        dir: ConfigDir::Dir(dir.to_path_buf()),
        overrides: Overrides::default(),
        env: None,
    };
    match config::check(&opts) {
        Ok(c) => {
            println!(
                "{}: configuration is valid: {} organisations, {} purposes, {} agreements, {} people; API on {}; web pages {}; state in {}",
                dir.display(),
                c.registry.organisations().count(),
                c.registry.purposes().count(),
                c.registry.agreements().len(),
                c.registry.people().count(),
                c.daemon.listen,
                c.daemon
                    .web
                    .listen
                    .map_or_else(|| "off".to_owned(), |a| format!("on {a}")),
                c.daemon.state_dir.display()
            );
            let requests = &c.daemon.requests;
            let until = requests.calendar.covered_until();
            println!(
                "requests for information: due {} working days after the day received (urgent: {} hours); bank holidays: {}, listed until {}",
                requests.working_days,
                requests.urgent_hours,
                requests.calendar.name,
                until.map_or_else(|| "?".to_owned(), |d| d.to_string()),
            );
            for w in &c.warnings {
                println!("warning: {w}");
            }
            let today = postern_gateway::clock::now().date();
            if until.is_some_and(|u| (u - today).whole_days() < 120) {
                println!(
                    "warning: the calendar of bank holidays ends within four months: add the next year's holidays to it (requests.calendar; the built-in file says how), or requests due after it are counted with weekends only"
                );
            }
            if !c.unchecked.is_empty() {
                // Not an error: systemd shows a unit's credentials to the service only (and,
                // before systemd 260, not to ExecReload=). The gateway reads them itself at
                // start-up and reload, and refuses a configuration whose files are wrong.
                println!(
                    "not checked here (systemd credentials, visible only to the service; the gateway checks them when it starts or reloads):"
                );
                for u in &c.unchecked {
                    println!("  {u}");
                }
            }
            if let Some(pid) = reload {
                return signal_reload(pid);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            print_errors(&errors);
            Ok(exit(EX_USAGE))
        }
    }
}

/// Sends SIGHUP to the gateway `pid` (what `kill -HUP` would, for systems without it).
fn signal_reload(pid: i32) -> anyhow::Result<ExitCode> {
    let Some(target) = rustix::process::Pid::from_raw(pid).filter(|_| pid > 0) else {
        eprintln!("postern: --reload {pid}: not a process id");
        return Ok(exit(EX_USAGE));
    };
    match rustix::process::kill_process(target, rustix::process::Signal::HUP) {
        Ok(()) => {
            println!("reload signalled to process {pid}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "postern: could not signal process {pid} to reload: {}",
                std::io::Error::from(e)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let opts = LoadOptions {
        dir: ConfigDir::Dir(a.config.clone()),
        overrides: Overrides {
            state_dir: a.state_dir,
            listen: a.listen,
            web_listen: None,
            ops_listen: None,
            config_dir: None,
            demo: false,
        },
        env: None,
    };
    // Every configuration error is reported before any port is bound.
    let config = match config::load(&opts) {
        Ok(c) => c,
        Err(errors) => {
            print_errors(&errors);
            return Ok(exit(EX_USAGE));
        }
    };
    let prepared = match daemon::prepare(config).await {
        Ok(p) => p,
        Err(daemon::DaemonError::LogHead(why)) => {
            eprintln!("postern: {why}");
            return Ok(exit(EX_DATAERR));
        }
        // Another process runs under this node's name (or its connection has not yet closed):
        // the name may come free, so a supervisor's restart is right; a distinct code lets a
        // script tell this from a broken configuration.
        Err(daemon::DaemonError::Store(e @ StoreError::NodeNameTaken { .. })) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_UNAVAILABLE));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(address = %prepared.addr, "postern is listening");
    // On stdout too, for scripts and supervisors that start it on port 0: the API's address
    // first (a reader may stop at the first line), then the pages'.
    println!("postern listening on https://{}", prepared.addr);
    if let Some(web) = prepared.web_addr {
        tracing::info!(address = %web, "the web pages are listening");
        println!("postern web pages on https://{web}");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    prepared.run_service(opts).await?;
    Ok(ExitCode::SUCCESS)
}

const EXAMPLE_PAYLOAD: &str = "Referral from Riverside Youth Club (FICTIONAL EXAMPLE DATA)\n\nA youth worker observed injuries consistent with physical harm on a 14-year-old member\nand the young person disclosed concerns about an adult at home. Full notes attached.\n";

/// A complete example envelope: the demo's commands override the fields that differ.
fn example_envelope() -> serde_json::Value {
    serde_json::json!({
        "justification": "A young person disclosed physical harm at home; the club's safeguarding lead judges there is reasonable cause to suspect significant harm, so the public interest in protecting the child outweighs confidentiality.",
        "data_categories": ["personal", "special_category"],
        "special_category_condition": "safeguarding_children",
        "practitioner": {"name": "Alex Morgan", "role": "Designated safeguarding lead", "contact": "alex.morgan@riverside-youth.example"},
        "consent": {"status": "not_sought", "reason": "Seeking consent from the family could place the young person at increased risk."},
        "subject_informed": {"informed": true},
        "urgency": {"level": "routine"},
        "disclosed_summary": "Youth worker's account of the disclosure and observed injuries (one page).",
        "retention": {"days": 365},
        "subject_refs": ["nhs:9434765919", "club-member:RY-0147"],
        "file_name": "referral.txt",
        "content_type": "text/plain"
    })
}

/// A complete envelope (for curl, which has no flags to fill gaps): the council's children's
/// services sharing strategy notes with the police for a s.47 enquiry.
fn complete_envelope() -> serde_json::Value {
    let mut v = example_envelope();
    let extra = serde_json::json!({
        "recipients": ["northshire-police"],
        "purpose": "child-protection-s47",
        "lawful_basis": "public_task",
        "marking": "OFFICIAL-SENSITIVE PERSONAL",
        "justification": "Strategy discussion held; a s.47 enquiry is under way and police hold relevant information about adults in the household.",
        "practitioner": {"name": "Sam Patel", "role": "Social worker", "contact": "sam.patel@northshire-cc.example"},
        "subject_informed": {"informed": false, "reason": "Informing the family now could prejudice the enquiry and increase the risk to the child."},
        "disclosed_summary": "Strategy discussion notes (two pages).",
        "request": {"reference": "NP-REQ-2026-0192", "requested": "Children's services involvement with the household"},
    });
    if let (Some(obj), Some(add)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in add {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}

fn write_if_missing(path: &Path, contents: &str) -> anyhow::Result<()> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub async fn demo(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = demo_config_dir(a.config);
    let organisations = match &dir {
        ConfigDir::Dir(d) => std::fs::read_to_string(d.join("organisations.toml"))
            .with_context(|| format!("reading {}", d.join("organisations.toml").display()))?,
        ConfigDir::EmbeddedDemo => config::embedded_demo::ORGANISATIONS.to_owned(),
    };
    let orgs = devkit::dev_orgs(&organisations)?;
    let created = devkit::ensure(&a.state_dir, &orgs)?;
    for c in &created.0 {
        tracing::info!("generated {c}");
    }
    let examples = a.state_dir.join("examples");
    let envelope_path = examples.join("referral-envelope.json");
    let payload_path = examples.join("referral.txt");
    let curl_envelope_path = examples.join("cc-to-police-envelope.json");
    write_if_missing(
        &envelope_path,
        &serde_json::to_string_pretty(&example_envelope())?,
    )?;
    write_if_missing(
        &curl_envelope_path,
        &serde_json::to_string_pretty(&complete_envelope())?,
    )?;
    write_if_missing(&payload_path, EXAMPLE_PAYLOAD)?;

    let opts = LoadOptions {
        dir: dir.clone(),
        overrides: Overrides {
            state_dir: Some(a.state_dir.clone()),
            listen: Some(a.listen),
            web_listen: a.web_listen,
            ops_listen: a.ops_listen,
            config_dir: None,
            demo: true,
        },
        env: None,
    };
    let config = match config::load(&opts) {
        Ok(c) => c,
        Err(errors) => {
            print_errors(&errors);
            return Ok(exit(EX_USAGE));
        }
    };
    let prepared = match daemon::prepare(config).await {
        Ok(p) => p,
        Err(daemon::DaemonError::LogHead(why)) => {
            eprintln!("postern: {why}");
            return Ok(exit(EX_DATAERR));
        }
        // Most often a second demo on the same machine: say which flag moves it.
        Err(daemon::DaemonError::Bind { addr, key, source }) => {
            let flag = match key {
                "web.listen" => "--web-listen",
                "ops.listen" => "--ops-listen",
                _ => "--listen",
            };
            eprintln!(
                "postern: cannot listen on {addr} ({key}): {source}. Is another gateway or demo running? Give this one a free port with {flag} (127.0.0.1:0 picks one)."
            );
            return Ok(exit(EX_UNAVAILABLE));
        }
        Err(e) => return Err(e.into()),
    };
    let prepared = prepared.print_sign_in_codes();
    print_banner(
        &a.state_dir,
        (prepared.addr, prepared.ops_addr),
        prepared.web_url.as_deref(),
        &envelope_path,
        &curl_envelope_path,
        &payload_path,
        &dir,
    );
    prepared.run_service(opts).await?;
    Ok(ExitCode::SUCCESS)
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn print_banner(
    state_dir: &Path,
    (addr, ops): (SocketAddr, Option<SocketAddr>),
    web: Option<&str>,
    envelope: &Path,
    curl_envelope: &Path,
    payload: &Path,
    dir: &ConfigDir,
) {
    let exe = std::env::current_exe().ok().and_then(|p| {
        let cwd = std::env::current_dir().ok()?;
        Some(p.strip_prefix(&cwd).map(Path::to_path_buf).unwrap_or(p))
    });
    let exe = exe.map_or_else(|| "postern".to_owned(), |p| p.display().to_string());
    let paths = DevPaths::new(state_dir);
    let url = format!("https://{addr}");
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let common = format!(
        "--server {url} --ca {} --identity {} --envelope {}",
        q(&paths.ca()),
        q(&paths.client_identity("riverside-youth")),
        q(envelope)
    );
    let registry = match dir {
        ConfigDir::Dir(d) => d.display().to_string(),
        ConfigDir::EmbeddedDemo => "built-in copy of config/demo".to_owned(),
    };
    let ops = ops.map_or_else(
        || "none ([ops] listen is empty)".to_owned(),
        |a| format!("http://{a}/healthz, /readyz, /metrics"),
    );
    let web = web.map_or_else(
        || "none ([web] listen is empty)".to_owned(),
        |a| format!("{a}/"),
    );
    println!(
        "
Postern demo gateway: {url}
  web pages        {web}
  state directory  {state}  (SQLite store, sealed spool, development PKI and keys)
  organisations    {registry}
  health, metrics  {ops}

In a browser (accept the development certificate's warning): open the web pages and sign in as
the Riverside Youth Club's volunteer, sam@riverside-youth.example. The sign-in code is printed
here (and written to the outbox), as an email would bring it. Then \"Share information about a
child\" with the MASH, and follow it in \"Your shares\" until it says Delivered. Then sign in as the
MASH's social worker, alex@northshire-mash.example: \"What has arrived\" lists it, and opens and
downloads it (this gateway holds the MASH's key: its endpoint is a portal).

The same from a terminal: a referral from Riverside Youth Club (voluntary) to the MASH, accepted
(it prints the transfer id), then delivered into the MASH's inbox on this gateway.

  {exe} send {common} --to northshire-mash --purpose safeguarding-referral --lawful-basis legitimate_interests --marking 'OFFICIAL-SENSITIVE PERSONAL' --wait {payload}

The MASH's system can also pull it with its certificate, decrypt it with its key, and
acknowledge it. What it decrypts goes to a folder of the MASH's, outside the gateway's state
directory: the gateway itself never holds a payload in plaintext.

  {exe} inbox list {mash}
  {exe} inbox get {mash} --decrypt-with {mash_key} --out {received} ITEM-ID
  {exe} inbox ack {mash} ITEM-ID

The same club sharing with the police under s.115 Crime and Disorder Act 1998: refused, because
that gateway only works between statutory bodies.

  {exe} send {common} --to northshire-police --purpose crime-prevention-s115 --lawful-basis public_task --data-category personal --marking OFFICIAL {payload}

The transfer log (every decision, accepted or refused):

  {exe} log list --state-dir {state}

With curl, as an agency system would (the council's children's services to the police):

  curl --cacert {ca} --cert {cert} -F 'envelope=<{env};type=application/json' -F 'payload=@{payload_raw}' {url}/v1/transfers

Recipients who receive by email (the council, the NHS trust, the school) get their messages in
{outbox}: the exact .eml files a relay would have been sent (no relay is configured here).

Ctrl-C stops the gateway.
",
        state = q(state_dir),
        payload = q(payload),
        ca = q(&paths.ca()),
        cert = q(&paths.client_identity("northshire-cc")),
        env = curl_envelope.display(),
        mash = format!("--server {url} --ca {} --identity {}", q(&paths.ca()), q(&paths.client_identity("northshire-mash"))),
        mash_key = q(&paths.org_identity("northshire-mash")),
        outbox = q(&state_dir.join("outbox")),
        received = q(&state_dir
            .parent()
            .unwrap_or(Path::new(""))
            .join("postern-received")),
        payload_raw = payload.display(),
    );
}
