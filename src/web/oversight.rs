//! What the DPO's and the IT team's pages share: who may see which records (`Scope`), the
//! transfer log's verification status (kept current by a background task, so that no page
//! recomputes it), the configuration's reload status, and the record every look at the log
//! leaves in the log itself.
//!
//! Sits under `log_pages` and `registry` in the flow; the runtime fills in the reload status.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;

use super::WebApp;
use super::pages;
use super::signin::{SignedIn, entry};
use crate::domain::ids::OrgId;
use crate::domain::registry::Role;
use crate::log::record::AccessEvent;
use crate::log::verify::{PublicKey, Report};
use crate::store::checkpoint::{self, CheckpointFile};
use crate::store::{LogSource, StoreError};

/// Which records a person may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// An auditor: every organisation's.
    All,
    /// A DPO: those their organisation is a party to.
    Org(OrgId),
}

impl Scope {
    /// The organisation the log is narrowed to (`None`: the whole log).
    pub fn party(&self) -> Option<String> {
        match self {
            Scope::All => None,
            Scope::Org(o) => Some(o.to_string()),
        }
    }
}

/// The transfer log's pages are for DPOs and auditors: anyone else gets a page saying so.
pub fn log_scope(s: &SignedIn) -> Result<Scope, Response> {
    if s.person.may(Role::Auditor) {
        Ok(Scope::All)
    } else if s.person.may(Role::Dpo) {
        Ok(Scope::Org(s.person.org.clone()))
    } else {
        Err(forbidden(
            "The transfer log is for data protection officers",
            "Your account does not have the DPO or auditor role. If you need to see the records, ask your organisation's data protection officer.",
        ))
    }
}

/// The registry's pages, explain and reload status are for the IT team (`admin`).
pub fn require_admin(s: &SignedIn) -> Result<(), Response> {
    if s.person.may(Role::Admin) {
        Ok(())
    } else {
        Err(forbidden(
            "These pages are for your IT team",
            "Your account does not have the admin role. Ask your IT team if you need to know who may share what.",
        ))
    }
}

/// Explain shows rules, not records: the IT team uses it, and so do the DPOs and auditors a
/// refusal in the log sends there ("why was this refused?").
pub fn may_explain(s: &SignedIn) -> Result<(), Response> {
    if [Role::Admin, Role::Dpo, Role::Auditor]
        .iter()
        .any(|r| s.person.may(*r))
    {
        Ok(())
    } else {
        Err(forbidden(
            "Explain is for your IT team and data protection officers",
            "Your account does not have the admin, DPO or auditor role. Ask your IT team why a share would be refused.",
        ))
    }
}

fn forbidden(title: &str, message: &str) -> Response {
    pages::problem(StatusCode::FORBIDDEN, title, message)
}

/// Records a DPO's or auditor's look at the log, before anything is shown: no record, no
/// access. `detail` never holds an identifier, only the filter or a subject's keyed hash.
pub async fn record_access(
    app: &WebApp,
    s: &SignedIn,
    ip: &str,
    event: AccessEvent,
    transfer: Option<crate::domain::ids::TransferId>,
    detail: Option<String>,
) -> Result<(), Response> {
    append(app, entry(&s.person, event, ip, transfer, None, detail)).await
}

/// Appends an access record to the transfer log, before anything is shown or sent: no record,
/// no access. `None` (a record that could not be made) is a server error.
pub async fn append(app: &WebApp, entry: Option<crate::log::LogEntry>) -> Result<(), Response> {
    let Some(entry) = entry else {
        return Err(pages::server_error());
    };
    app.api
        .store
        .write(false, move |tx| tx.append(&entry).map(|_| ()))
        .await
        .map_err(|e| pages::store_down(&e))
}

/// One full verification's outcome.
#[derive(Debug, Clone)]
pub struct Verification {
    /// When the check finished (RFC 3339, UTC).
    pub checked_at: String,
    pub report: Report,
    /// The newest signed checkpoint in the database: (record, when signed).
    pub checkpoint: Option<(i64, String)>,
    /// The checkpoint file that was checked too, if any.
    pub file: Option<String>,
    pub took: Duration,
}

/// A verification that could not be run (the log could not be read).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the transfer log could not be read: {0}")]
    Store(#[from] StoreError),
    #[error("the checkpoint file {0} could not be read: {1}")]
    File(String, std::io::Error),
    /// Asked while another check ran, which ended without an outcome.
    #[error("the check that was running did not finish")]
    Unfinished,
    /// The check's thread ended without an outcome.
    #[error("the check stopped: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// A verification's outcome, kept and shared between the pages (so the error is shared too).
pub type Outcome = Result<Verification, Arc<VerifyError>>;

/// What the pages need to verify the log: where it is and whose signatures to expect.
pub struct Oversight {
    /// Where a check opens the log: the state directory's, or the shared database.
    pub source: LogSource,
    /// The runtime a check on the shared database waits on (from its blocking thread).
    pub runtime: tokio::runtime::Handle,
    /// The checkpoint key's public half.
    pub keys: Vec<PublicKey>,
    pub checkpoint_file: Option<PathBuf>,
    /// The last verification (background or "verify now").
    last: Mutex<Option<Outcome>>,
    /// Held while a verification runs: one at a time, however many ask.
    running: tokio::sync::Mutex<()>,
    /// Kept by the runtime: when the configuration was last loaded, and how.
    pub reloads: ReloadStatus,
    /// How often the background task verifies the whole log.
    pub every: Duration,
}

impl Oversight {
    /// Call from within the runtime (a check waits on it).
    pub fn new(
        source: LogSource,
        keys: Vec<PublicKey>,
        checkpoint_file: Option<PathBuf>,
        reloads: ReloadStatus,
    ) -> Self {
        Oversight {
            source,
            runtime: tokio::runtime::Handle::current(),
            keys,
            checkpoint_file,
            last: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
            reloads,
            every: Duration::from_secs(600),
        }
    }

    /// The full check `postern log verify` runs, on a connection of its own (so that pages are
    /// not held up while it reads the whole log).
    pub fn verify(&self) -> Result<Verification, VerifyError> {
        let started = std::time::Instant::now();
        let (external, file) = match &self.checkpoint_file {
            Some(p) => match CheckpointFile::new(p.clone()).read() {
                Ok(f) => (f.checkpoints, Some(p.display().to_string())),
                // A missing file is one the gateway has not written yet.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
                Err(e) => return Err(VerifyError::File(p.display().to_string(), e)),
            },
            None => (Vec::new(), None),
        };
        let external: Vec<_> = external.into_iter().map(|(c, _)| c).collect();
        let reader = self.source.open(&self.runtime)?;
        let (report, _) = match &self.source {
            LogSource::Dir(_) => checkpoint::verify_with(reader.conn()?, &self.keys, &external)?,
            LogSource::Shared(pool) => self
                .runtime
                .block_on(crate::store::pg::verify::verify_log(
                    pool, &self.keys, &external,
                ))
                .map_err(StoreError::from)?,
        };
        let checkpoint = checkpoint::newest(reader.db())?;
        Ok(Verification {
            checked_at: crate::clock::stamp(crate::clock::now()),
            report,
            checkpoint,
            file,
            took: started.elapsed(),
        })
    }

    /// Verifies now (off the async threads) and keeps the outcome as the current status. A
    /// caller who asks while a check is running waits for that check and gets its outcome: the
    /// whole log is never read twice at once, however often "verify now" is pressed.
    pub async fn verify_and_keep(self: &Arc<Self>) -> Outcome {
        let _turn = match self.running.try_lock() {
            Ok(turn) => turn,
            Err(_) => {
                let _done = self.running.lock().await;
                return self
                    .last()
                    .unwrap_or_else(|| Err(Arc::new(VerifyError::Unfinished)));
            }
        };
        let me = self.clone();
        let out = tokio::task::spawn_blocking(move || me.verify().map_err(Arc::new))
            .await
            .unwrap_or_else(|e| Err(Arc::new(VerifyError::Stopped(e))));
        match &out {
            Ok(v) if !v.report.intact() => tracing::error!(
                kind = v.report.first_break.as_ref().map(|b| b.kind.as_str()),
                seq = v.report.first_break.as_ref().map(|b| b.seq),
                "the transfer log did not verify: see `postern log verify`"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the transfer log could not be verified"),
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(out.clone());
        out
    }

    /// The last outcome, if a check has finished.
    pub fn last(&self) -> Option<Outcome> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps the status current: a check at start, then again whenever records were added
    /// (and at least every `every`), pausing sixty times as long as the last check took, so
    /// that checking a large log takes at most a sixtieth of a core.
    pub async fn keep_current(self: Arc<Self>) {
        let mut checked: Option<(Option<i64>, std::time::Instant)> = None;
        loop {
            let head = self.head().await;
            let due = match &checked {
                None => true,
                Some((h, at)) => *h != head || at.elapsed() >= self.every,
            };
            let mut pause = Duration::from_secs(5);
            if due {
                // A check that fails is paced like one that succeeds.
                let started = std::time::Instant::now();
                let _ = self.verify_and_keep().await;
                pause = pause.max(started.elapsed().saturating_mul(60));
                checked = Some((head, std::time::Instant::now()));
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The log's last record, read cheaply (`None`: empty or unreadable).
    async fn head(&self) -> Option<i64> {
        let (source, runtime) = (self.source.clone(), self.runtime.clone());
        tokio::task::spawn_blocking(move || {
            let r = source.open(&runtime).ok()?;
            checkpoint::head_seq(r.db()).ok().flatten()
        })
        .await
        .ok()
        .flatten()
    }

    /// The status line every log page and every export carries.
    pub fn status_line(&self) -> StatusLine {
        StatusLine::of(self.last().as_ref())
    }
}

/// The verification status, in words, with whether it is good news.
#[derive(Debug, Clone)]
pub struct StatusLine {
    /// `ok`, `bad` or `wait`: the banner's look.
    pub class: &'static str,
    pub text: String,
}

impl StatusLine {
    pub fn of(v: Option<&Outcome>) -> Self {
        match v {
            None => StatusLine {
                class: "wait",
                text: "The log is being verified; the result will show here shortly.".into(),
            },
            Some(Err(e)) => StatusLine {
                class: "bad",
                text: format!("The log could not be verified: {e}."),
            },
            Some(Ok(v)) => {
                let checked = when(&v.checked_at);
                match &v.report.first_break {
                    Some(b) => StatusLine {
                        class: "bad",
                        // Where and what kind; "Verify now" shows what the check found.
                        text: format!(
                            "BROKEN: the log is not intact: {} at {} (checked {checked}).",
                            break_words(b.kind),
                            records(b.seq, b.to_seq),
                        ),
                    },
                    None => {
                        let upto = v.report.last_seq.map_or_else(
                            || "the start (it is empty)".to_owned(),
                            |s| format!("record {s}"),
                        );
                        let signed = match &v.checkpoint {
                            Some((seq, at)) => {
                                format!(", checkpoint signed at {} (record {seq})", when(at))
                            }
                            None => ", no checkpoint signed yet".to_owned(),
                        };
                        StatusLine {
                            class: "ok",
                            text: format!(
                                "Verified intact up to {upto}{signed}; checked {checked}."
                            ),
                        }
                    }
                }
            }
        }
    }
}

/// A break's kind in plain words.
pub fn break_words(k: crate::log::verify::BreakKind) -> &'static str {
    use crate::log::verify::BreakKind as K;
    match k {
        K::Altered => "a record was altered",
        K::Deleted => "records were deleted",
        K::Inserted => "records were inserted",
        K::Reordered => "records were reordered",
        K::Rewritten => "records were rewritten (the chain no longer matches a signed checkpoint)",
        K::BadCheckpoint => "a checkpoint's signature does not verify",
        K::IndexAltered => "a search index was altered",
    }
}

pub(super) fn records(from: i64, to: i64) -> String {
    if from == to {
        format!("record {from}")
    } else {
        format!("records {from} to {to}")
    }
}

/// "2026-12-02T17:05:09.123Z" as "2026-12-02 17:05 UTC".
pub fn when(stamp: &str) -> String {
    match (stamp.get(..10), stamp.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => stamp.to_owned(),
    }
}

/// The configuration's load history as the pages show it. Clones share it; the runtime writes.
#[derive(Clone, Default)]
pub struct ReloadStatus(Arc<Mutex<Reloads>>);

#[derive(Debug, Clone, Default)]
pub struct Reloads {
    /// When the configuration in force was loaded, and how (`start-up`, `SIGHUP`).
    pub loaded_at: Option<String>,
    pub loaded_by: String,
    /// The last attempt, if it was refused: when, how, and every error with file and line.
    pub refused: Option<Refused>,
    /// Settings changed by the last reload that only a restart applies.
    pub needs_restart: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Refused {
    pub at: String,
    pub by: String,
    pub errors: Vec<String>,
}

impl ReloadStatus {
    /// The configuration in force was loaded at start-up.
    pub fn started(&self) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.loaded_at = Some(crate::clock::stamp(crate::clock::now()));
        r.loaded_by = "start-up".into();
    }

    /// A reload by `by` was applied.
    pub fn loaded(&self, by: &str, needs_restart: &[&str]) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.loaded_at = Some(crate::clock::stamp(crate::clock::now()));
        r.loaded_by = by.to_owned();
        r.refused = None;
        r.needs_restart = needs_restart.iter().map(|s| (*s).to_owned()).collect();
    }

    /// A reload by `by` was refused; the configuration in force stays.
    pub fn refused(&self, by: &str, errors: Vec<String>) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.refused = Some(Refused {
            at: crate::clock::stamp(crate::clock::now()),
            by: by.to_owned(),
            errors,
        });
    }

    pub fn get(&self) -> Reloads {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
