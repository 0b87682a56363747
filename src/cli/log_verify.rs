//! `postern log verify`: checks every record of the transfer log (its hash, and its link to the
//! one before) and every signed checkpoint, and reports the first break: which record, and
//! whether it was altered, deleted, inserted, reordered or rewritten, or a checkpoint is bad.
//! Opens the store read only, so it works alongside a running gateway.
//!
//! The checkpoints are checked against the public half of the configured checkpoint key
//! (`--config`), against keys given with `--public-key`, or, with neither, against the key at
//! the default place in the state directory. Its fingerprint is printed: compare it with the one
//! published for the deployment, since whoever could rewrite the log could also swap the key
//! file.
//!
//! Checkpoints kept outside the database are checked too: the checkpoint file
//! (`log.checkpoint_file` with `--config`, else STATE_DIR/checkpoints/checkpoints.jsonl if it
//! exists, or `--checkpoints FILE`). The report says which it used. Heads an operator accepted
//! (`postern log accept-head`) are listed, loudly, though they are not breaks.
//!
//! Exit status (for scripts):
//!
//! | status | meaning |
//! |---|---|
//! | 0  | intact (records after the last checkpoint are reported, but are not a failure) |
//! | 1  | a break was found: evidence of tampering (or damage) |
//! | 64 | bad usage or configuration: no usable key, a malformed `--public-key` |
//! | 66 | the log could not be read: no database in the state directory, or a read failed |

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides};
use postern_gateway::log::verify::{PublicKey, Report};
use postern_gateway::store::Reader;
use postern_gateway::store::checkpoint::{self, CheckpointKey};

use super::{EX_USAGE, exit};

/// The input could not be read (sysexits `EX_NOINPUT`).
const EX_NOINPUT: u8 = 66;
/// A break was found.
const EX_BROKEN: u8 = 1;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 intact; 1 a break was found (evidence of tampering); \
64 bad usage or configuration (no usable key); 66 the log could not be read."
)]
pub struct VerifyArgs {
    /// The state directory (default: the configuration's `state_dir` with --config, else
    /// postern-state).
    #[arg(long, env = "POSTERN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Configuration directory: checkpoints are checked against its `log.checkpoint_key`.
    #[arg(long, conflicts_with = "public_key")]
    pub config: Option<PathBuf>,
    /// The checkpoint key's public half (base64 or hex, as `postern keys checkpoint-public`
    /// prints it); repeat to accept checkpoints signed by any of several keys.
    #[arg(long = "public-key", value_name = "KEY")]
    pub public_key: Vec<String>,
    /// A checkpoint file to check against (as the gateway writes it: `log.checkpoint_file`);
    /// default: the configuration's, else STATE_DIR/checkpoints/checkpoints.jsonl if present.
    #[arg(long, value_name = "FILE")]
    pub checkpoints: Option<PathBuf>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct AcceptArgs {
    /// Configuration directory: its state directory, checkpoint key and checkpoint file.
    #[arg(long, env = "POSTERN_CONFIG_DIR", default_value = "/etc/postern")]
    pub config: PathBuf,
    /// Overrides `state_dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Why the head is accepted (who checked what): recorded in the log.
    #[arg(long)]
    pub reason: String,
}

/// The expected keys, where they came from, the state directory and the checkpoint file.
struct Setup {
    keys: Vec<PublicKey>,
    source: String,
    state_dir: PathBuf,
    file: Option<PathBuf>,
    /// The configuration's `[store]` is PostgreSQL: the log is read there.
    postgres: Option<super::store::TargetArgs>,
}

fn key_file(path: &Path) -> Result<PublicKey, String> {
    CheckpointKey::from_file(path)
        .map(|k| *k.public())
        .map_err(|e| e.to_string())
}

fn setup(a: &VerifyArgs) -> Result<Setup, String> {
    let default_state = || {
        a.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("postern-state"))
    };
    if !a.public_key.is_empty() {
        let keys = a
            .public_key
            .iter()
            .map(|k| {
                k.parse::<PublicKey>()
                    .map_err(|e| format!("--public-key {k}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state_dir = default_state();
        return Ok(Setup {
            keys,
            source: "--public-key".into(),
            file: default_file(&state_dir),
            state_dir,
            postgres: None,
        });
    }
    if let Some(dir) = &a.config {
        let opts = LoadOptions {
            dir: ConfigDir::Dir(dir.clone()),
            overrides: Overrides {
                state_dir: a.state_dir.clone(),
                ..Overrides::default()
            },
            env: None,
        };
        let c =
            config::offline(&opts).map_err(|e| format!("the configuration has errors:\n{e}"))?;
        let path = c.daemon.log.checkpoint_key;
        let postgres = matches!(c.daemon.store, config::store::StoreSettings::Postgres(_))
            .then(|| super::store::TargetArgs::from_config(dir.clone()));
        return Ok(Setup {
            keys: vec![key_file(&path)?],
            source: path.display().to_string(),
            state_dir: c.daemon.state_dir,
            file: c.daemon.log.checkpoint_file,
            postgres,
        });
    }
    // Where the built-in configuration keeps it (what `postern demo` generates).
    let state_dir = default_state();
    let path = state_dir.join("keys").join("checkpoint.key");
    let key =
        key_file(&path).map_err(|e| format!("{e}\n(give --config DIR or --public-key KEY)"))?;
    Ok(Setup {
        keys: vec![key],
        source: path.display().to_string(),
        file: default_file(&state_dir),
        state_dir,
        postgres: None,
    })
}

/// Where the built-in configuration keeps the checkpoint file, if there is one there.
fn default_file(state_dir: &Path) -> Option<PathBuf> {
    let p = state_dir.join("checkpoints").join("checkpoints.jsonl");
    p.exists().then_some(p)
}

/// What the checkpoint file held and how much of it was used.
#[derive(serde::Serialize)]
struct FileUse {
    path: String,
    lines: usize,
    unreadable: usize,
    used: usize,
    last_seq: Option<i64>,
}

/// `1,234,567`.
fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seq(n: i64) -> String {
    u64::try_from(n).map_or_else(|_| n.to_string(), count)
}

fn print_text(
    out: &mut impl Write,
    s: &Setup,
    r: &Report,
    file: Option<&FileUse>,
) -> std::io::Result<()> {
    for k in &s.keys {
        writeln!(
            out,
            "checkpoint key       {} ({})",
            k.fingerprint(),
            s.source
        )?;
    }
    writeln!(
        out,
        "                     compare the fingerprint with the one published for this deployment"
    )?;
    let range = match (r.first_seq, r.last_seq) {
        (Some(f), Some(l)) => format!(" (seq {} to {})", seq(f), seq(l)),
        _ => String::new(),
    };
    writeln!(out, "records checked      {}{range}", count(r.records))?;
    writeln!(out, "checkpoints checked  {}", count(r.checkpoints))?;
    match file {
        Some(f) => writeln!(
            out,
            "checkpoint file      {} ({} line(s), {} used{}{})",
            f.path,
            count(f.lines as u64),
            count(f.used as u64),
            f.last_seq
                .map(|s| format!(", the last for record {}", seq(s)))
                .unwrap_or_default(),
            if f.unreadable > 0 {
                format!(", {} unreadable", f.unreadable)
            } else {
                String::new()
            }
        )?,
        None => writeln!(
            out,
            "checkpoint file      none (only the database's checkpoints were checked)"
        )?,
    }
    for a in &r.accepted {
        writeln!(
            out,
            "ACCEPTED HEAD        record {}: at {}, an operator accepted a log the gateway had not signed ({}: found record {}, last checkpoint at record {}); reason: {}",
            seq(a.seq),
            a.at,
            a.found,
            seq(a.found_seq),
            seq(a.checkpoint_seq),
            a.reason
        )?;
    }
    if let Some(a) = r.anchor_seq {
        writeln!(
            out,
            "purged               records up to {} (the chain continues from the signed checkpoint there)",
            seq(a)
        )?;
    }
    match &r.first_break {
        None => {
            writeln!(out, "intact")?;
            if r.uncovered > 0 {
                let since = r.covered_to.map_or_else(
                    || "there is no checkpoint yet".to_owned(),
                    |c| format!("the last checkpoint is at {}", seq(c)),
                );
                writeln!(
                    out,
                    "warning: {} record(s) are not yet covered by a signed checkpoint ({since}); the gateway signs its head every log.checkpoint_interval_secs and at shutdown",
                    count(r.uncovered)
                )?;
            }
        }
        Some(b) => {
            let at = if b.to_seq == b.seq {
                format!("record {}", seq(b.seq))
            } else {
                format!("records {} to {}", seq(b.seq), seq(b.to_seq))
            };
            writeln!(out, "BROKEN: {} at {at}", b.kind)?;
            writeln!(out, "{}", b.message)?;
        }
    }
    Ok(())
}

pub async fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    // Every failure maps to its own status here: returning an error would exit 1, which means
    // "a break was found".
    let s = match setup(&a) {
        Ok(s) => Setup {
            file: a.checkpoints.clone().or(s.file),
            ..s
        },
        Err(e) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_USAGE));
        }
    };
    let (external, file) = match &s.file {
        Some(path) => match checkpoint::CheckpointFile::new(path.clone()).read() {
            Ok(f) => (f, Some(path.display().to_string())),
            Err(e) => {
                eprintln!(
                    "postern: cannot read the checkpoint file {}: {e}",
                    path.display()
                );
                return Ok(exit(EX_NOINPUT));
            }
        },
        None => (Default::default(), None),
    };
    let checkpoints: Vec<_> = external
        .checkpoints
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    let read = match &s.postgres {
        None => Reader::open(&s.state_dir)
            .and_then(|r| checkpoint::verify_with(r.conn()?, &s.keys, &checkpoints))
            .map_err(|e| e.to_string()),
        Some(t) => {
            let pool = match super::store::open(t) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            postern_gateway::store::pg::verify::verify_log(&pool, &s.keys, &checkpoints)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let (report, used) = match read {
        Ok(r) => r,
        Err(e) => {
            eprintln!("postern: cannot read the transfer log: {e}");
            return Ok(exit(EX_NOINPUT));
        }
    };
    let file_use = file.map(|path| FileUse {
        path,
        lines: external.lines,
        unreadable: external.unreadable,
        used,
        last_seq: checkpoints.iter().map(|c| c.seq).max(),
    });
    let mut out = std::io::stdout().lock();
    if a.json {
        let keys: Vec<_> = s
            .keys
            .iter()
            .map(|k| serde_json::json!({"public_key": k.to_string(), "fingerprint": k.fingerprint()}))
            .collect();
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("intact".into(), report.intact().into());
            // Over PostgreSQL, the chain and the checkpoints only (for now).
            o.insert("indexes_checked".into(), true.into());
            o.insert("keys".into(), keys.into());
            o.insert("checkpoint_file".into(), serde_json::to_value(&file_use)?);
        }
        writeln!(out, "{v}")?;
    } else {
        print_text(&mut out, &s, &report, file_use.as_ref())?;
    }
    Ok(if report.intact() {
        ExitCode::SUCCESS
    } else {
        exit(EX_BROKEN)
    })
}

/// `postern log accept-head`: with the gateway stopped, records an operator's acceptance of a
/// head it did not sign, and signs the new head. Exit 0 when accepted or when there was nothing
/// to accept; 64 for a configuration that cannot be used; 69 when the state directory is in use
/// (the gateway is running) or the log cannot be written.
pub fn accept(a: AcceptArgs) -> anyhow::Result<ExitCode> {
    use postern_gateway::store::Store;
    use std::sync::Arc;
    if a.reason.trim().is_empty() {
        eprintln!("postern: give --reason: who checked what, and why the records are accepted");
        return Ok(exit(EX_USAGE));
    }
    let opts = LoadOptions {
        dir: ConfigDir::Dir(a.config.clone()),
        overrides: Overrides {
            state_dir: a.state_dir.clone(),
            ..Overrides::default()
        },
        env: None,
    };
    let c = match config::offline(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: the configuration has errors:\n{e}");
            return Ok(exit(EX_USAGE));
        }
    };
    let key = match CheckpointKey::from_file(&c.daemon.log.checkpoint_key) {
        Ok(k) => Arc::new(k),
        Err(e) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_USAGE));
        }
    };
    let file = c
        .daemon
        .log
        .checkpoint_file
        .clone()
        .map(checkpoint::CheckpointFile::new);
    let runtime = tokio::runtime::Handle::current();
    // On PostgreSQL, as this machine's node (its state directory's lock says the node is
    // stopped; the other nodes refuse to start on such a head too): the acceptance is
    // appended to the shared chain under its head lock, and says which node wrote it.
    let opened = match &c.daemon.store {
        config::store::StoreSettings::Sqlite => Store::open(&c.daemon.state_dir).map(|(s, _)| s),
        config::store::StoreSettings::Postgres(pg) => {
            let pool = match super::store::open(&super::store::TargetArgs::from_config(
                a.config.clone(),
            )) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            tokio::task::block_in_place(|| {
                runtime.block_on(Store::open_shared(&c.daemon.state_dir, pool, &pg.node))
            })
        }
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postern: {e} (stop the gateway first)");
            return Ok(exit(super::EX_UNAVAILABLE));
        }
    };
    let (reason, at) = (
        a.reason.trim().to_owned(),
        postern_gateway::clock::stamp(postern_gateway::clock::now()),
    );
    let job_file = file.clone();
    let done = tokio::task::block_in_place(|| {
        runtime.block_on(store.write(false, move |tx| {
            checkpoint::accept_head(tx, &key, job_file.as_ref(), &reason, &at)
        }))
    });
    match done {
        Ok(None) => {
            println!("nothing to accept: the log's head is one the gateway signed");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some((record, signed))) => {
            checkpoint::publish(file.as_ref(), &signed);
            println!(
                "accepted ({}): the head was record {}, the last checkpoint record {} (at {}); the acceptance is record {} and is signed",
                record.found,
                record.found_seq,
                record.checkpoint_seq,
                record.checkpoint_at,
                signed.seq
            );
            println!("`postern log verify` lists it; the gateway can start");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("postern: could not record the acceptance: {e}");
            Ok(exit(super::EX_UNAVAILABLE))
        }
    }
}
