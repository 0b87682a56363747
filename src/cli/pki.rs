//! `postern pki` and `postern keys`: the project's own certificate and key tooling.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use postern_gateway::devkit;
use postern_gateway::pki::{self, Ca};
use postern_gateway::seal::{SpoolKey, generate_identity_file};
use postern_gateway::store::checkpoint::CheckpointKey;

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Create a certificate authority (ca.crt, ca.key) in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "Postern CA")]
        name: String,
    },
    /// Issue the gateway's certificate (server.crt, server.key) from the CA in DIR. It is valid
    /// for clients too, so the gateway can present it when delivering to a peer.
    Server {
        #[arg(long)]
        dir: PathBuf,
        /// DNS names and IP addresses the gateway is reached at (repeat).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
    /// Issue an organisation's client certificate (clients/ORG.crt, .key and .pem) from the CA in DIR.
    Client {
        #[arg(long)]
        dir: PathBuf,
        /// The organisation id (names the files).
        #[arg(long)]
        org: String,
        /// Subject alternative name to put in the certificate; defaults to ORG.clients.postern.test.
        #[arg(long)]
        san: Option<String>,
        /// Common name; defaults to the organisation id.
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a certificate's subject, issuer, validity, SANs and SHA-256 fingerprint.
    Show { file: PathBuf },
    /// Generate everything a development deployment needs under STATE_DIR, for the organisations
    /// in CONFIG/organisations.toml (what `postern demo` does on first start).
    Dev {
        #[arg(long, default_value = "postern-state")]
        state_dir: PathBuf,
        #[arg(long, default_value = "config/demo")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate an age X25519 identity file (mode 0600); prints its public recipient.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public recipient (age1...) of an identity file.
    Public { file: PathBuf },
    /// Generate the secret key for hashing subject references (64 hex digits, mode 0600).
    SubjectKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate the ed25519 key that signs transfer log checkpoints (PKCS#8 PEM, mode 0600);
    /// prints its public key and fingerprint, to publish for `postern log verify --public-key`.
    CheckpointKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key and fingerprint of a checkpoint key file.
    CheckpointPublic { file: PathBuf },
}

fn ca(dir: &Path) -> anyhow::Result<Ca> {
    Ca::load(&dir.join("ca.crt"), &dir.join("ca.key"))
        .with_context(|| format!("loading the CA from {}", dir.display()))
}

pub fn pki(cmd: PkiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PkiCommand::Init { dir, name } => {
            Ca::generate(&name)?.save(&dir)?;
            println!(
                "created {} and {}",
                dir.join("ca.crt").display(),
                dir.join("ca.key").display()
            );
        }
        PkiCommand::Server { dir, names } => {
            let issued = ca(&dir)?.issue_gateway(&names)?;
            issued.save(&dir, "server")?;
            println!(
                "created {} ({})",
                dir.join("server.crt").display(),
                issued.fingerprint
            );
        }
        PkiCommand::Client {
            dir,
            org,
            san,
            name,
        } => {
            let san = san.unwrap_or_else(|| format!("{org}.clients.postern.test"));
            let issued = ca(&dir)?
                .issue_client(name.as_deref().unwrap_or(&org), std::slice::from_ref(&san))?;
            let pem = issued.save(&dir.join("clients"), &org)?;
            println!("created {}", pem.display());
            println!("add to the organisation in organisations.toml, either");
            println!(
                "  identities = [{{ san = \"{san}\" }}]        # any certificate from this CA with that name"
            );
            println!(
                "  identities = [{{ fingerprint = \"{}\" }}]  # exactly this certificate",
                issued.fingerprint
            );
        }
        PkiCommand::Show { file } => {
            for cert in pki::read_certs(&file)? {
                let s = pki::summarise(&cert)?;
                println!(
                    "subject      {}\nissuer       {}\nvalid        {} to {}\nnames        {}\nfingerprint  {}\n",
                    s.subject,
                    s.issuer,
                    s.not_before,
                    s.not_after,
                    s.sans.join(", "),
                    s.fingerprint
                );
            }
        }
        PkiCommand::Dev { state_dir, config } => {
            let text =
                std::fs::read_to_string(config.join("organisations.toml")).with_context(|| {
                    format!("reading {}", config.join("organisations.toml").display())
                })?;
            let created = devkit::ensure(&state_dir, &devkit::dev_orgs(&text)?)?;
            if created.0.is_empty() {
                println!("everything already exists under {}", state_dir.display());
            }
            for c in created.0 {
                println!("created {c}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn keys(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out } => {
            let recipient = generate_identity_file(&out)?;
            println!("{recipient}");
        }
        KeysCommand::Public { file } => println!("{}", SpoolKey::from_file(&file)?.recipient()),
        KeysCommand::SubjectKey { out } => {
            devkit::write_subject_key(&out)?;
            println!("created {}", out.display());
        }
        KeysCommand::CheckpointKey { out } => {
            let public = CheckpointKey::generate_file(&out)?;
            println!("created {}", out.display());
            println!(
                "public key   {public}\nfingerprint  {}",
                public.fingerprint()
            );
        }
        KeysCommand::CheckpointPublic { file } => {
            let public = *CheckpointKey::from_file(&file)?.public();
            println!(
                "public key   {public}\nfingerprint  {}",
                public.fingerprint()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
