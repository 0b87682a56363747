//! `postern load --log-records N`: the transfer log benchmark. Writes N generated decision
//! records through the real store (chain, search index, subject hashes, delivery rows) into a
//! scratch state directory, then times the real `postern log ...` commands a data protection
//! officer runs, each as a fresh process (median of several runs), against baselines measured in
//! the same run: the process starting and answering `--version`, and reading every record's
//! columns from SQLite without checking anything.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postern_gateway::config::daemon::read_subject_key;
use postern_gateway::store::Store;
use postern_gateway::testkit::synthetic::{self, Plan};

use super::Scratch;

/// Wall time of one run of the real binary, and its peak RSS (VmHWM, sampled while it runs).
fn time_command(args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kib * 1024);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("postern {args:?} failed ({status}): {err}");
    }
    Ok((elapsed, peak))
}

/// The median wall time and the largest peak RSS over `runs` runs.
fn median(args: &[&str], runs: usize) -> anyhow::Result<(Duration, u64)> {
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..runs {
        let (t, p) = time_command(args)?;
        times.push(t);
        peak = peak.max(p);
    }
    times.sort();
    Ok((times[times.len() / 2], peak))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The baseline for `log verify`: every record's chained columns read, nothing checked.
fn read_all(state: &Path) -> anyhow::Result<(Duration, u64)> {
    let conn = rusqlite::Connection::open_with_flags(
        postern_gateway::store::db_path(state),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let start = Instant::now();
    let mut stmt = conn.prepare("SELECT seq, body, prev_hash, hash FROM log ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut bytes = 0u64;
    while let Some(r) = rows.next()? {
        bytes += r.get_ref(1)?.as_bytes()?.len() as u64;
    }
    Ok((start.elapsed(), bytes))
}

pub async fn benchmark(records: u64, scratch: &Scratch) -> anyhow::Result<ExitCode> {
    let state = scratch.state_dir();
    let key = read_subject_key(&state.join("keys").join("subject.key"))
        .map_err(|e| anyhow::anyhow!("subject key: {e}"))?;
    let plan = Plan {
        records,
        seed: 42,
        // About six decisions per person, as a busy MASH might record.
        people: (records / 6).max(1),
        start: time::macros::datetime!(2026-01-01 00:00 UTC),
        batch: 5_000,
    };
    let mut someone = None;
    let mut sender_purpose = None;
    let mut transfer = None;
    let started = Instant::now();
    {
        let (store, _) = Store::open(&state)?;
        let existing: u64 = store
            .read(|c| {
                c.row("SELECT COUNT(*) FROM log", &[])?
                    .map_or(Ok(0), |r| r.int(0))
            })
            .await? as u64;
        if existing != 0 {
            bail!(
                "the work directory already holds a transfer log ({existing} records): use an empty --work-dir"
            );
        }
        synthetic::generate(&store, plan, Arc::new(key), |g| {
            if someone.is_none() && g.decision == "shared" {
                someone = g.subjects.first().cloned();
                sender_purpose = Some((g.sender.clone(), g.purpose.clone()));
            }
            // One the youth club's DPO may open too (it sent it).
            if transfer.is_none() && g.decision == "shared" && g.sender == "riverside-youth" {
                transfer = Some(g.transfer_id.clone());
            }
        })
        .await?;
    }
    let generated = started.elapsed();
    let db_bytes = std::fs::metadata(postern_gateway::store::db_path(&state))?.len();
    let someone = someone.context("no shared record was generated")?;
    let (sender, purpose) = sender_purpose.context("no shared record was generated")?;
    println!(
        "postern load --log-records: {records} decision records written in {:.1} s ({:.0}/s), database {:.0} MiB",
        generated.as_secs_f64(),
        records as f64 / generated.as_secs_f64(),
        db_bytes as f64 / (1 << 20) as f64
    );

    let state_arg = state.to_string_lossy().into_owned();
    let s = state_arg.as_str();
    let runs = 5;
    let (startup, _) = median(&["--version"], runs)?;
    let (scan, scanned) = read_all(&state)?;
    let (scan2, _) = read_all(&state)?;
    let scan = scan.min(scan2);
    println!(
        "baselines: process start {:.1} ms; reading every record's chained columns ({:.0} MiB) {:.0} ms",
        ms(startup),
        scanned as f64 / (1 << 20) as f64,
        ms(scan)
    );
    println!(
        "{:<64} {:>10} {:>14}",
        "command (median of 5, wall time incl. process start)", "ms", "peak RSS MiB"
    );
    let show = |label: &str, args: &[&str], runs: usize| -> anyhow::Result<(Duration, u64)> {
        let (t, peak) = median(args, runs)?;
        println!(
            "{label:<64} {:>10.1} {:>14.1}",
            ms(t),
            peak as f64 / (1 << 20) as f64
        );
        Ok((t, peak))
    };
    let (subject, _) = show(
        "log subject <one person>",
        &["log", "subject", &someone, "--state-dir", s, "--json"],
        runs,
    )?;
    let (list1, _) = show(
        "log list --sender S --purpose P (50 newest)",
        &[
            "log",
            "list",
            "--state-dir",
            s,
            "--sender",
            &sender,
            "--purpose",
            &purpose,
            "--json",
        ],
        runs,
    )?;
    let (list2, _) = show(
        "log list --recipient R --decision refused --from --to (one week)",
        &[
            "log",
            "list",
            "--state-dir",
            s,
            "--recipient",
            "riverside-youth",
            "--decision",
            "refused",
            "--from",
            "2026-01-03",
            "--to",
            "2026-01-09",
            "--json",
        ],
        runs,
    )?;
    let (list3, _) = show(
        "log list --delivery-state dead --marking OFFICIAL (50 newest)",
        &[
            "log",
            "list",
            "--state-dir",
            s,
            "--delivery-state",
            "dead",
            "--marking",
            "OFFICIAL",
            "--json",
        ],
        runs,
    )?;
    let (verify, _) = show("log verify", &["log", "verify", "--state-dir", s], 1)?;
    // Memory against size: a one-day export (a small fraction of the log) and the whole log.
    let (_, small_peak) = show(
        "log export --format jsonl --to 2026-01-01 (first day)",
        &[
            "log",
            "export",
            "--state-dir",
            s,
            "--format",
            "jsonl",
            "--to",
            "2026-01-01",
        ],
        1,
    )?;
    let (export, full_peak) = show(
        "log export --format jsonl (everything)",
        &["log", "export", "--state-dir", s, "--format", "jsonl"],
        1,
    )?;
    let (csv, csv_peak) = show(
        "log export --format csv (everything)",
        &["log", "export", "--state-dir", s, "--format", "csv"],
        1,
    )?;
    let day = records.min(86_400);
    println!(
        "subject {:.0} ms, lists {:.0}/{:.0}/{:.0} ms ({:.1}x process start); verify {:.2} s ({:.1}x the plain read); export {:.1} s jsonl / {:.1} s csv; export peak RSS {:.1} MiB for {records} records vs {:.1} MiB for {day} (ratio {:.2}; csv {:.1} MiB)",
        ms(subject),
        ms(list1),
        ms(list2),
        ms(list3),
        ms(list1.max(list2).max(list3).max(subject)) / ms(startup),
        verify.as_secs_f64(),
        verify.as_secs_f64() / scan.as_secs_f64(),
        export.as_secs_f64(),
        csv.as_secs_f64(),
        full_peak as f64 / (1 << 20) as f64,
        small_peak as f64 / (1 << 20) as f64,
        full_peak as f64 / small_peak.max(1) as f64,
        csv_peak as f64 / (1 << 20) as f64,
    );
    super::log_web::benchmark(
        scratch,
        &super::log_web::Sample {
            someone: someone.clone(),
            sender: sender.clone(),
            purpose: purpose.clone(),
            transfer: transfer.context("no shared record was generated")?,
            middle_seq: i64::try_from(records / 2).unwrap_or(i64::MAX),
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
