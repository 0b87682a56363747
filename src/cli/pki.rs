//! `postern pki` and `postern keys`: the project's own certificate and key tooling.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use postern_gateway::pki::{self, Ca};
use postern_gateway::runtime::devkit;
use postern_gateway::seal::{SpoolKey, generate_identity_file};
use postern_gateway::store::checkpoint::CheckpointKey;

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Create a certificate authority (ca.crt, ca.key) in DIR.
    Init {
        /// The folder for the CA (created if missing; ca.key is written with mode 0600).
        #[arg(long)]
        dir: PathBuf,
        /// The CA certificate's common name.
        #[arg(long, default_value = "Postern CA")]
        name: String,
    },
    /// Issue the gateway's certificate (server.crt, server.key) from the CA in DIR. It is valid
    /// for clients too, so the gateway can present it when delivering to a peer.
    Server {
        /// The CA's folder (what `pki init --dir` made).
        #[arg(long)]
        dir: PathBuf,
        /// DNS names and IP addresses the gateway is reached at (repeat).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Days the certificate is valid for (at most 825).
        #[arg(long, default_value_t = pki::DEFAULT_LEAF_DAYS, value_parser = leaf_days)]
        days: i64,
    },
    /// Issue an organisation's client certificate (clients/ORG.crt, .key and .pem) from the CA in DIR.
    Client {
        /// The CA's folder (what `pki init --dir` made).
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
        /// Days the certificate is valid for (at most 825).
        #[arg(long, default_value_t = pki::DEFAULT_LEAF_DAYS, value_parser = leaf_days)]
        days: i64,
        /// This CA's name in `tls.client_cas`, for the identity line printed.
        #[arg(long, default_value = "local")]
        ca_name: String,
    },
    /// Revoke certificates issued by the CA in DIR: writes the complete revocation list (PEM),
    /// keeping every certificate the previous list at the same place revoked, with a higher
    /// list number. Name the list in `tls.client_crls` and reload the gateway (SIGHUP): new
    /// connections with a revoked certificate fail their handshake, and open ones are refused
    /// at their next request. Without --cert or --serial, the list is signed again with a
    /// fresh nextUpdate (publish one before the last one's nextUpdate passes).
    Revoke {
        /// The CA's folder (what `pki init --dir` made).
        #[arg(long)]
        dir: PathBuf,
        /// A certificate to revoke (PEM; repeat).
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// The serial number of a certificate to revoke, in hex as `pki show` prints it (repeat).
        #[arg(long = "serial")]
        serials: Vec<String>,
        /// Where the list is written; defaults to DIR/crl.pem.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days until the list's nextUpdate.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=366))]
        next_update_days: i64,
    },
    /// Print a certificate's subject, issuer, validity, SANs and SHA-256 fingerprint.
    Show {
        /// A PEM certificate file.
        file: PathBuf,
    },
    /// Generate everything a development deployment needs under STATE_DIR, for the organisations
    /// in CONFIG/organisations.toml (what `postern demo` does on first start).
    Dev {
        /// Where the certificates and keys go.
        #[arg(long, default_value = "postern-state")]
        state_dir: PathBuf,
        /// The configuration directory whose organisations get keys.
        #[arg(long, default_value = "config/demo")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate an age X25519 identity file (mode 0600); prints its public recipient.
    Generate {
        /// The identity file to write (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public recipient (age1...) of an identity file.
    Public {
        /// An age identity file.
        file: PathBuf,
    },
    /// Generate the secret key for hashing subject references (64 hex digits, mode 0600).
    SubjectKey {
        /// The key file to write (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate the ed25519 key that signs transfer log checkpoints (PKCS#8 PEM, mode 0600);
    /// prints its public key and fingerprint, to publish for `postern log verify --public-key`.
    CheckpointKey {
        /// The key file to write (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key and fingerprint of a checkpoint key file.
    CheckpointPublic {
        /// A checkpoint key file.
        file: PathBuf,
    },
}

fn leaf_days(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(d) if (1..=pki::MAX_LEAF_DAYS).contains(&d) => Ok(d),
        _ => Err(format!(
            "give a number of days from 1 to {}",
            pki::MAX_LEAF_DAYS
        )),
    }
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
        PkiCommand::Server { dir, names, days } => {
            let issued = ca(&dir)?.issue_gateway_for(&names, days)?;
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
            days,
            ca_name,
        } => {
            let san = san.unwrap_or_else(|| format!("{org}.clients.postern.test"));
            let issued = ca(&dir)?.issue_client_for(
                name.as_deref().unwrap_or(&org),
                std::slice::from_ref(&san),
                days,
            )?;
            let pem = issued.save(&dir.join("clients"), &org)?;
            println!("created {}", pem.display());
            println!(
                "add to the organisation in organisations.toml (`{ca_name}`: this CA's name in tls.client_cas), either"
            );
            println!(
                "  identities = [{{ san = \"{san}\", ca = \"{ca_name}\" }}]   # any certificate from this CA with that name"
            );
            println!(
                "  identities = [{{ fingerprint = \"{}\", ca = \"{ca_name}\" }}]   # exactly this certificate",
                issued.fingerprint
            );
        }
        PkiCommand::Revoke {
            dir,
            certs,
            serials,
            out,
            next_update_days,
        } => return revoke(&dir, &certs, &serials, out, next_update_days),
        PkiCommand::Show { file } => {
            for cert in pki::read_certs(&file)? {
                let s = pki::summarise(&cert)?;
                println!(
                    "subject      {}\nissuer       {}\nserial       {}\nvalid        {} to {}\nnames        {}\nfingerprint  {}\n",
                    s.subject,
                    s.issuer,
                    s.serial,
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

/// `postern pki revoke`: the previous list's revocations, plus the new ones, as a new list.
fn revoke(
    dir: &Path,
    certs: &[PathBuf],
    serials: &[String],
    out: Option<PathBuf>,
    next_update_days: i64,
) -> anyhow::Result<ExitCode> {
    use postern_gateway::pki::crl::{self, Revoked};
    let ca_cert = std::fs::read_to_string(dir.join("ca.crt"))
        .with_context(|| format!("reading {}", dir.join("ca.crt").display()))?;
    let ca_key = zeroize::Zeroizing::new(
        std::fs::read_to_string(dir.join("ca.key"))
            .with_context(|| format!("reading {}", dir.join("ca.key").display()))?,
    );
    let out = out.unwrap_or_else(|| dir.join("crl.pem"));
    let existing = match std::fs::read(&out) {
        Ok(pem) => crl::read_existing(&ca_cert, &pem)
            .with_context(|| format!("reading the existing list {}", out.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crl::Existing::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    let now = time::OffsetDateTime::now_utc();
    let mut revoked = existing.revoked.clone();
    let mut added = 0;
    let mut add = |r: Revoked, revoked: &mut Vec<Revoked>| {
        if !revoked.iter().any(|x| x.serial == r.serial) {
            revoked.push(r);
            added += 1;
        }
    };
    for path in certs {
        let ders = pki::read_certs(path)?;
        let Some(leaf) = ders.first() else { continue };
        let new = crl::serials(&ca_cert, std::slice::from_ref(leaf), now)
            .with_context(|| format!("{}", path.display()))?;
        for r in new {
            add(r, &mut revoked);
        }
    }
    for s in serials {
        let digits: String = s
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        let serial = hex::decode(&digits)
            .ok()
            .filter(|b| !b.is_empty())
            .with_context(|| format!("`{s}` is not a serial number in hex"))?;
        add(Revoked { serial, at: now }, &mut revoked);
    }
    let number = existing.number.saturating_add(1);
    let pem = crl::sign_list(
        &ca_cert,
        &ca_key,
        &revoked,
        number,
        now,
        time::Duration::days(next_update_days),
    )?;
    // Written whole, then renamed: the gateway never reads half a list.
    let tmp = out.with_extension("pem.tmp");
    postern_gateway::pki::write_public_file(&tmp, pem.as_bytes())?;
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {}: list number {number}, {} certificate(s) revoked ({added} new), next update due {}",
        out.display(),
        revoked.len(),
        postern_gateway::clock::stamp(now + time::Duration::days(next_update_days))
    );
    println!(
        "name it in tls.client_crls (postern.toml) if it is not there yet, then reload the gateway (systemctl reload postern, or SIGHUP)"
    );
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
