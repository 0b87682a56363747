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
use postern_gateway::store::Reader;
use postern_gateway::store::checkpoint::{self, CheckpointKey};
use postern_gateway::verify::{PublicKey, Report};

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
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The expected keys, where they came from, and the state directory.
struct Setup {
    keys: Vec<PublicKey>,
    source: String,
    state_dir: PathBuf,
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
        return Ok(Setup {
            keys,
            source: "--public-key".into(),
            state_dir: default_state(),
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
        let c = config::load(&opts).map_err(|e| format!("the configuration has errors:\n{e}"))?;
        let path = c.daemon.log.checkpoint_key;
        return Ok(Setup {
            keys: vec![key_file(&path)?],
            source: path.display().to_string(),
            state_dir: c.daemon.state_dir,
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
        state_dir,
    })
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

fn print_text(out: &mut impl Write, s: &Setup, r: &Report) -> std::io::Result<()> {
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

pub fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    // Every failure maps to its own status here: returning an error would exit 1, which means
    // "a break was found".
    let s = match setup(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postern: {e}");
            return Ok(exit(EX_USAGE));
        }
    };
    let report =
        match Reader::open(&s.state_dir).and_then(|r| checkpoint::verify(r.conn(), &s.keys)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("postern: cannot read the transfer log: {e}");
                return Ok(exit(EX_NOINPUT));
            }
        };
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
            o.insert("keys".into(), keys.into());
        }
        writeln!(out, "{v}")?;
    } else {
        print_text(&mut out, &s, &report)?;
    }
    Ok(if report.intact() {
        ExitCode::SUCCESS
    } else {
        exit(EX_BROKEN)
    })
}
