//! `postern inbox`: what other organisations sent to yours through this gateway, for an
//! organisation without a system of its own. List, download (optionally decrypting with your
//! organisation's age identity), acknowledge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use clap::Subcommand;
use postern_gateway::ingest::inbound::{InboxEntry, InboxList};
use postern_gateway::seal::{self, SpoolKey};

use super::send::{Connect, report_problem};
use super::{EX_UNAVAILABLE, exit};

#[derive(Subcommand)]
pub enum InboxCommand {
    /// List items waiting for your organisation.
    List {
        #[command(flatten)]
        connect: Connect,
        /// Include items already acknowledged.
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download an item's envelope and payload into a folder.
    Get {
        #[command(flatten)]
        connect: Connect,
        /// The inbox item id (from `postern inbox list`).
        id: String,
        /// Where to write the files (created if need be).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Your organisation's age identity file: decrypt as well, writing envelope.json and the
        /// payload under its original file name. Without it, the .age files are written as they
        /// arrived, to open with `age -d -i`.
        #[arg(long, value_name = "IDENTITY_FILE")]
        decrypt_with: Option<PathBuf>,
    },
    /// Acknowledge an item: the gateway then deletes its copy of the payload.
    Ack {
        #[command(flatten)]
        connect: Connect,
        /// The inbox item id (from `postern inbox list`) whose payload you have stored safely.
        id: String,
    },
}

async fn open(
    c: &Connect,
) -> anyhow::Result<Result<postern_gateway::client::Connection, ExitCode>> {
    Ok(match c.open().await? {
        Ok(conn) => Ok(conn),
        Err(e) => {
            eprintln!("postern: {e}");
            Err(exit(EX_UNAVAILABLE))
        }
    })
}

/// Files of an `inbox get` not yet complete: removed when dropped, unless kept.
struct Partial(Vec<PathBuf>);

impl Partial {
    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A file name from the sender's envelope, reduced to a plain name.
fn plain(name: &str) -> Option<String> {
    let n = Path::new(name).file_name()?.to_str()?.trim();
    (!n.is_empty() && !n.starts_with('.')).then(|| n.to_owned())
}

pub async fn run(cmd: InboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InboxCommand::List { connect, all, json } => {
            let mut conn = match open(&connect).await? {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let answer = conn
                .get(if all {
                    "/v1/inbox?all=true"
                } else {
                    "/v1/inbox"
                })
                .await?;
            if answer.status != 200 {
                return Ok(report_problem(&answer.body, answer.status, json));
            }
            if json {
                println!("{}", String::from_utf8_lossy(&answer.body));
                return Ok(ExitCode::SUCCESS);
            }
            let list: InboxList = answer.json()?;
            if list.items.is_empty() {
                eprintln!("(nothing waiting)");
            }
            for i in &list.items {
                println!(
                    "{}  received {}  from {} ({})  purpose {}  marking {}  {} bytes  destroy by {}{}",
                    i.id,
                    i.received_at,
                    i.sender_name,
                    i.sender,
                    i.purpose,
                    i.marking,
                    i.payload_size,
                    i.retain_until,
                    if i.acknowledged_at.is_some() {
                        "  (acknowledged)"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Get {
            connect,
            id,
            out,
            decrypt_with,
        } => {
            let mut conn = match open(&connect).await? {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let answer = conn.get(&format!("/v1/inbox/{id}")).await?;
            if answer.status != 200 {
                return Ok(report_problem(&answer.body, answer.status, false));
            }
            let entry: InboxEntry = answer.json()?;
            // An acknowledged item's payload is gone: say when, and write nothing.
            if let Some(at) = &entry.item.acknowledged_at {
                eprintln!(
                    "Already acknowledged on {}: the gateway deleted the payload then, so there is nothing to download. Nothing was written to {}.",
                    at.get(..10).unwrap_or(at),
                    out.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            let sealed_envelope = base64::engine::general_purpose::STANDARD
                .decode(&entry.envelope_age_base64)
                .context("the envelope is not valid base64")?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let env_path = out.join(format!("{}-envelope.json.age", entry.item.transfer_id));
            let pay_path = out.join(format!("{}-payload.age", entry.item.transfer_id));
            // Until everything is written, whatever was written is removed again on the way
            // out: a failed download leaves nothing that looks like a whole item.
            let mut partial = Partial(vec![env_path.clone(), pay_path.clone()]);
            std::fs::write(&env_path, &sealed_envelope)
                .with_context(|| format!("writing {}", env_path.display()))?;
            let mut file = tokio::fs::File::create(&pay_path)
                .await
                .with_context(|| format!("writing {}", pay_path.display()))?;
            let answer = conn
                .download(&format!("/v1/inbox/{id}/payload"), &mut file)
                .await?;
            drop(file);
            if answer.status != 200 {
                return Ok(report_problem(&answer.body, answer.status, false));
            }
            // Both sealed files are whole: they stay, whatever happens to decrypting them.
            partial.keep();
            let Some(identity_path) = decrypt_with else {
                println!("{}\n{}", env_path.display(), pay_path.display());
                eprintln!(
                    "Open them with: age -d -i YOUR-IDENTITY-FILE -o envelope.json {}",
                    env_path.display()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let key = SpoolKey::from_file(&identity_path)
                .with_context(|| format!("reading {}", identity_path.display()))?;
            let mut json = Vec::new();
            std::io::Read::read_to_end(
                &mut seal::open(&sealed_envelope[..], key.identity())
                    .context("the envelope does not open with this identity")?,
                &mut json,
            )?;
            let env: serde_json::Value =
                serde_json::from_slice(&json).context("the envelope is not JSON")?;
            let json_path = out.join(format!("{}-envelope.json", entry.item.transfer_id));
            let mut partial = Partial(vec![json_path.clone()]);
            std::fs::write(&json_path, serde_json::to_vec_pretty(&env)?)?;
            let name = env
                .get("file_name")
                .and_then(|f| f.as_str())
                .and_then(plain)
                .unwrap_or_else(|| "payload".to_owned());
            let mut plain_path = out.join(format!("{}-{name}", entry.item.transfer_id));
            // The sender names the file: it must not overwrite the files written above.
            if [&env_path, &pay_path, &json_path].contains(&&plain_path) {
                plain_path = out.join(format!("{}-file-{name}", entry.item.transfer_id));
            }
            partial.0.push(plain_path.clone());
            let mut reader = seal::open_file(&pay_path, key.identity())
                .context("the payload does not open with this identity")?;
            let mut writer = std::fs::File::create(&plain_path)?;
            std::io::copy(&mut reader, &mut writer).context("decrypting the payload")?;
            partial.keep();
            println!("{}\n{}", json_path.display(), plain_path.display());
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Ack { connect, id } => {
            let mut conn = match open(&connect).await? {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let answer = conn.post_empty(&format!("/v1/inbox/{id}/ack")).await?;
            if answer.status != 200 {
                return Ok(report_problem(&answer.body, answer.status, false));
            }
            eprintln!("acknowledged {id}: the gateway no longer holds its payload");
            Ok(ExitCode::SUCCESS)
        }
    }
}
