//! `postern store`: the PostgreSQL store of a deployment of several nodes. `migrate` creates or
//! upgrades its schema (every version recorded), `status` shows it, and `copy` moves a single
//! node's SQLite store into it. The database comes from `--config`'s `[store]`, or from
//! `--url` (`copy`'s `--to`), `--ca` and `--password-file`, which override it.
//!
//! Exit status: 0 done; 64 bad usage or configuration; 65 the source holds what cannot be
//! copied; 69 the database cannot be reached, or the gateway is running on the source.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use postern_gateway::config::{self, ConfigDir, LoadOptions, Overrides, store::StoreSettings};
use postern_gateway::store::pg::{self, PgError, Pool, Target, copy::CopyError};

use super::{EX_DATAERR, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, exit};

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Create the PostgreSQL schema, or bring it to this version; safe to run again, and from
    /// two nodes at once.
    Migrate(#[command(flatten)] TargetArgs),
    /// Show the PostgreSQL schema's version and every version applied.
    Status(#[command(flatten)] TargetArgs),
    /// Copy a single node's store (SQLite, with its spool and inbox) into a freshly migrated
    /// PostgreSQL, in one transaction. Stop the gateway first.
    Copy(Box<CopyArgs>),
}

#[derive(Args, Clone)]
pub struct TargetArgs {
    /// Configuration directory: its `[store]` names the database.
    #[arg(long, env = "POSTERN_CONFIG_DIR")]
    pub config: Option<PathBuf>,
    /// The database, postgres://USER@HOST:PORT/DATABASE (no password): overrides `store.url`.
    #[arg(long)]
    pub url: Option<String>,
    /// The CA (PEM) that issued the database server's certificate: overrides `store.ca`.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// A file holding the database password: overrides `store.password_file`.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

impl TargetArgs {
    /// The database a configuration directory's `[store]` names, nothing overridden.
    pub fn from_config(dir: PathBuf) -> TargetArgs {
        TargetArgs {
            config: Some(dir),
            url: None,
            ca: None,
            password_file: None,
        }
    }
}

#[derive(Args)]
pub struct CopyArgs {
    /// The single node's store: `sqlite:STATE_DIR` (the state directory holding postern.db).
    #[arg(long)]
    pub from: String,
    /// The database: `postgres:postgres://USER@HOST/DATABASE` (or give --config).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(c: StoreCommand) -> anyhow::Result<ExitCode> {
    match c {
        StoreCommand::Migrate(t) => migrate(t).await,
        StoreCommand::Status(t) => status(t).await,
        StoreCommand::Copy(a) => copy(*a).await,
    }
}

/// The database the arguments (and the configuration they name) point at, or the exit status
/// and message for why not.
fn target(a: &TargetArgs) -> Result<Target, (u8, String)> {
    let usage = |m: String| (EX_USAGE, m);
    let mut settings = None;
    let mut pool_size = 4;
    if let Some(dir) = &a.config {
        let opts = LoadOptions {
            dir: ConfigDir::Dir(dir.clone()),
            overrides: Overrides::default(),
            env: None,
        };
        let c = config::offline(&opts)
            .map_err(|e| usage(format!("the configuration has errors:\n{e}")))?;
        match c.daemon.store {
            StoreSettings::Postgres(pg) => {
                pool_size = pg.pool_size.min(4);
                settings = Some(pg);
            }
            StoreSettings::Sqlite if a.url.is_none() => {
                return Err(usage(format!(
                    "{}: [store] backend is \"sqlite\": give --url, or set backend = \"postgres\"",
                    dir.display()
                )));
            }
            StoreSettings::Sqlite => {}
        }
    }
    let url = match (&a.url, &settings) {
        (Some(u), _) => config::store::parse_url(u).map_err(|m| usage(format!("--url {m}")))?,
        (None, Some(s)) => s.url.clone(),
        (None, None) => return Err(usage("give --config DIR or --url postgres://...".into())),
    };
    let ca =
        a.ca.clone()
            .or_else(|| settings.as_ref().map(|s| s.ca.clone()))
            .ok_or_else(|| {
                usage("give --ca: the CA that issued the database server's certificate".into())
            })?;
    let password_file = a
        .password_file
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.password_file.clone()));
    let material = config::store::read_material(&config::store::PostgresSettings {
        url: url.clone(),
        ca,
        password_file,
        pool_size,
        node: String::new(),
    })
    .map_err(|e| usage(e.to_string()))?;
    Ok(Target {
        url,
        roots: material.roots,
        password: material.password,
        pool_size,
    })
}

/// The exit status for a database error.
fn status_of(e: &PgError) -> u8 {
    match e {
        PgError::Unavailable { .. } => EX_UNAVAILABLE,
        // Ended by the database for conflicting with another transaction: try again.
        PgError::Conflict { .. } => EX_TEMPFAIL,
        PgError::NotMigrated { .. } | PgError::TooNew { .. } => EX_DATAERR,
        _ => EX_USAGE,
    }
}

/// The pool for the database the arguments name, or the exit status (its reason printed).
pub fn open(a: &TargetArgs) -> Result<Pool, ExitCode> {
    let t = target(a).map_err(|(code, m)| {
        eprintln!("postern: {m}");
        exit(code)
    })?;
    Pool::new(&t).map_err(|e| {
        eprintln!("postern: {e}");
        exit(EX_USAGE)
    })
}

async fn migrate(a: TargetArgs) -> anyhow::Result<ExitCode> {
    let pool = match open(&a) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let done = async {
        let mut client = pool.get().await?;
        pg::migrate(&mut client, pool.target()).await
    }
    .await;
    match done {
        Ok(r) if r.from == r.to => {
            println!("{}: schema version {} (nothing to do)", pool.target(), r.to);
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            println!("{}: schema version {} -> {}", pool.target(), r.from, r.to);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("postern: {e}");
            Ok(exit(status_of(&e)))
        }
    }
}

async fn status(a: TargetArgs) -> anyhow::Result<ExitCode> {
    let pool = match open(&a) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let done = async {
        let client = pool.get().await?;
        pg::status(&client, pool.target()).await
    }
    .await;
    match done {
        Ok(s) => {
            println!(
                "{}: schema version {} (this postern needs {})",
                pool.target(),
                s.version,
                pg::SCHEMA_VERSION
            );
            for (v, at, by) in &s.history {
                println!("  version {v} applied {at} by {by}");
            }
            Ok(match s.ready(pool.target()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("postern: {e}");
                    exit(status_of(&e))
                }
            })
        }
        Err(e) => {
            eprintln!("postern: {e}");
            Ok(exit(status_of(&e)))
        }
    }
}

async fn copy(a: CopyArgs) -> anyhow::Result<ExitCode> {
    let Some(state_dir) = a.from.strip_prefix("sqlite:") else {
        eprintln!("postern: --from sqlite:STATE_DIR (the folder that holds postern.db)");
        return Ok(exit(EX_USAGE));
    };
    let mut t = a.target.clone();
    if let Some(to) = &a.to {
        let Some(url) = to.strip_prefix("postgres:") else {
            eprintln!("postern: --to postgres:postgres://USER@HOST/DATABASE");
            return Ok(exit(EX_USAGE));
        };
        t.url = Some(url.to_owned());
    }
    let pool = match open(&t) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let state_dir = PathBuf::from(state_dir);
    if !postern_gateway::store::db_path(&state_dir).exists() {
        eprintln!(
            "postern: no store at {} (expected {})",
            state_dir.display(),
            postern_gateway::store::db_path(&state_dir).display()
        );
        return Ok(exit(EX_USAGE));
    }
    match pg::copy::copy_from_sqlite(&state_dir, &pool).await {
        Ok(r) => {
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for (table, rows) in &r.tables {
                    println!("{table:<16} {rows} row(s)");
                }
                println!(
                    "payloads         {} ({} bytes, sealed)",
                    r.payloads, r.payload_bytes
                );
                match r.head {
                    Some(h) => println!("the log's head is record {h}"),
                    None => println!("the log is empty"),
                }
                println!(
                    "copied into {}; check it with `postern log verify --config DIR` on a configuration whose [store] names it",
                    pool.target()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("postern: {e}");
            let code = match &e {
                CopyError::Target(p) => status_of(p),
                CopyError::Source(postern_gateway::store::StoreError::Locked(_)) => EX_UNAVAILABLE,
                CopyError::NotEmpty(_) => EX_USAGE,
                _ => EX_DATAERR,
            };
            Ok(exit(code))
        }
    }
}
