//! The delivery worker: takes due (transfer, recipient) deliveries from the spool, reseals each
//! payload for its recipient, sends it by the recipient's channel, and records every attempt.
//!
//! - At-least-once: a delivery is claimed (state `delivering`) before it is attempted, and an
//!   attempt interrupted by a crash is retried after restart; the recipient side makes repeats
//!   harmless (the inbox stores a transfer once per recipient; emails carry a stable Message-ID).
//! - Bounded: at most `delivery.concurrency` attempts at once, and `delivery.per_recipient` to
//!   any one recipient, so a slow recipient does not hold up the others.
//! - Temporary failures are retried with exponential backoff and jitter until the delivery's
//!   lifetime ends; permanent failures (SMTP 5xx, HTTP 4xx other than 408/429, a certificate
//!   that does not verify) end it at once. Either way the end is `dead`, with its reason. A
//!   failure on this gateway's own side (disk, store, keys, resealing) is always temporary.
//! - An outcome that cannot be recorded (the disk is full, the store is busy) is tried again;
//!   a delivery left `delivering` without an attempt in flight is found by a sweep while the
//!   gateway runs and queued again, not only at the next start.
//! - Once every recipient of a transfer is delivered or dead, its sealed payload is deleted
//!   after a grace period.

pub(crate) mod email;
mod failure;
pub(crate) mod https;
pub(crate) mod reseal;
pub(crate) mod retry;
pub(crate) mod smtp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock;
use crate::config::{DeliverySettings, SmtpSettings};
use crate::domain::ids::TransferId;
use crate::domain::registry::{Channel, Registry};
use crate::inbox::{self, InboundMeta};
use crate::live::Live;
use crate::log::{DeliveryAttemptRecord, LogEntry, PayloadPurgedRecord, Receipt, RecordKind};
use crate::metrics;
use crate::seal::SpoolKey;
use crate::store::payloads::Area;
use crate::store::queue::{self, Due, Finish, Job};
use crate::store::{Store, StoreError};
use email::{EmailChannel, Letter};
use https::HttpsChannel;
use reseal::{Source, Target};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        receipt: Receipt,
        detail: String,
    },
    /// Worth trying again later.
    Temporary(Failure),
    /// Will not succeed by trying again.
    Permanent(Failure),
}

impl Outcome {
    pub fn temporary(cause: Cause, detail: impl Into<String>) -> Self {
        Outcome::Temporary(Failure {
            cause,
            detail: detail.into(),
        })
    }

    pub fn permanent(cause: Cause, detail: impl Into<String>) -> Self {
        Outcome::Permanent(Failure {
            cause,
            detail: detail.into(),
        })
    }
}

/// Everything an attempt needs.
pub struct Deliverer {
    pub store: Store,
    pub registry: Live<Registry>,
    pub spool_key: Arc<SpoolKey>,
    pub settings: DeliverySettings,
    pub email: Arc<EmailChannel>,
    pub https: HttpsChannel,
    /// This gateway's API port, for `${api_port}` in endpoint URLs.
    pub api_port: u16,
    /// "A secure delivery is waiting" for portal recipients' people.
    pub arrivals: Arc<Arrivals>,
}

pub use crate::store::queue::Wake;
pub use failure::{Cause, Failure, sentence};

/// Tells an organisation's people with `receive` that a delivery (or a request for information)
/// is waiting on the web pages,
/// when it arrives in the inbox for a portal organisation (from this gateway's worker or from a
/// peer gateway): the sending organisation's name and a link, no personal data; by email
/// through the relays, TLS required. After the delivery is recorded, so it never delays or
/// fails one.
pub struct Arrivals {
    email: Arc<EmailChannel>,
    /// The pages' address, set once their listener is bound; unset: no pages, no such emails.
    web_url: std::sync::OnceLock<String>,
}

impl Arrivals {
    pub fn new(email: Arc<EmailChannel>) -> Self {
        Arrivals {
            email,
            web_url: std::sync::OnceLock::new(),
        }
    }

    /// The pages' address for the links (once; a second call changes nothing).
    pub fn set_web_url(&self, url: String) {
        let _ = self.web_url.set(url);
    }

    pub fn tell(
        &self,
        registry: &Registry,
        recipient: &crate::domain::ids::OrgId,
        sender_name: &str,
        transfer: &str,
    ) {
        let sender = sender_name.to_owned();
        self.tell_receivers(
            registry,
            recipient,
            "A secure delivery is waiting for you",
            transfer,
            move |name, url| {
                format!(
                    "Hello {name},\n\n{sender} has shared information with your organisation through Postern, a secure\ngateway for safeguarding information sharing. It is waiting for you:\n\n    {url}/inbox\n\nSign in with this email address to open it. This email contains no personal data.\n"
                )
            },
        );
    }

    /// Tells the holder's people with `receive` that another organisation has asked it for
    /// information: the requester's name and a link, no personal data.
    pub fn tell_request(
        &self,
        registry: &Registry,
        holder: &crate::domain::ids::OrgId,
        requester_name: &str,
        request: &str,
        due_date: &str,
    ) {
        let (requester, id, due) = (
            requester_name.to_owned(),
            request.to_owned(),
            due_date.to_owned(),
        );
        self.tell_receivers(
            registry,
            holder,
            "A request for information is waiting for you",
            request,
            move |name, url| {
                format!(
                    "Hello {name},\n\n{requester} has asked your organisation for information through Postern, a secure\ngateway for safeguarding information sharing. The protocols ask for an answer in writing by\n{due}. The request is waiting for you:\n\n    {url}/requests/{id}\n\nSign in with this email address to read it, and to answer or decline it. This email contains\nno personal data.\n"
                )
            },
        );
    }

    /// Emails `org`'s people with `receive` (by name, with the pages' address), in the
    /// background; each message's id is `key` and a hash of the address.
    fn tell_receivers(
        &self,
        registry: &Registry,
        org: &crate::domain::ids::OrgId,
        subject: &'static str,
        key: &str,
        body: impl Fn(&str, &str) -> String + Send + 'static,
    ) {
        let Some(url) = self.web_url.get().cloned() else {
            return;
        };
        let people: Vec<(String, String)> = registry
            .people()
            .filter(|p| &p.org == org && p.may(crate::domain::registry::Role::Receive))
            .map(|p| (p.email.clone(), p.name.clone()))
            .collect();
        if people.is_empty() {
            return;
        }
        let email = self.email.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            for (to, name) in people {
                let id = format!(
                    "{key}-{}",
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(to.as_bytes()))
                        .get(..12)
                        .unwrap_or_default()
                );
                if let Err(e) = email.notice(&to, subject, body(&name, &url), &id).await {
                    tracing::warn!(error = %e, subject, "could not email a receiver");
                }
            }
        });
    }
}

impl Deliverer {
    pub fn new(
        store: Store,
        registry: Live<Registry>,
        spool_key: Arc<SpoolKey>,
        settings: DeliverySettings,
        smtp: &SmtpSettings,
        tls: &crate::config::TlsMaterial,
        api_port: u16,
    ) -> Result<Self, email::EmailSetupError> {
        let email = Arc::new(EmailChannel::new(smtp)?);
        Ok(Deliverer {
            arrivals: Arc::new(Arrivals::new(email.clone())),
            email,
            https: HttpsChannel::new(tls.client_chain.clone(), tls.client_key.clone_key()),
            store,
            registry,
            spool_key,
            settings,
            api_port,
        })
    }

    /// One attempt at one delivery. Everything that can go wrong on this gateway's side (its
    /// registry, its keys, its spool, its disk, resealing) is temporary: only what the recipient's
    /// side says, or a certificate that does not verify, ends a delivery at once (see the
    /// channels). A failure here that a reload or freed space cures is retried until the
    /// delivery's lifetime ends.
    pub async fn attempt(&self, job: &Job) -> Outcome {
        let registry = self.registry.current();
        let rid = job.recipient.clone();
        let Some(recipient) = registry.organisation(&rid) else {
            return Outcome::temporary(
                Cause::Configuration,
                format!("`{rid}` is no longer a registered organisation"),
            );
        };
        let Some(endpoint) = &recipient.endpoint else {
            return Outcome::temporary(
                Cause::Configuration,
                format!("`{rid}` no longer has a delivery endpoint"),
            );
        };
        let sender_name = registry
            .organisation(&job.sender)
            .map_or_else(|| job.sender.to_string(), |o| o.name.clone());
        let tls_only = matches!(endpoint.channel, Channel::Email { tls_only: true, .. });
        let target = match Target::parse(&endpoint.age_recipients, tls_only) {
            Ok(t) => t,
            Err(e) => return Outcome::temporary(Cause::Configuration, e.to_string()),
        };
        let (envelope, envelope_bytes) =
            match reseal::envelope(&job.sealed_envelope, &self.spool_key, &target) {
                Ok(x) => x,
                Err(e) => {
                    return Outcome::temporary(
                        Cause::Reseal,
                        format!("the spooled envelope could not be opened: {e}"),
                    );
                }
            };
        let source = match (&job.payload_file, &job.payload_inline) {
            (Some(f), _) => match self.store.open_payload(Area::Spool, f) {
                Ok(r) => Source::Stored(r),
                Err(e) => {
                    return Outcome::temporary(
                        Cause::LocalIo,
                        format!("the payload cannot be read from the spool: {e}"),
                    );
                }
            },
            (None, Some(b)) => Source::Inline(b.clone()),
            (None, None) => {
                return Outcome::temporary(Cause::LocalIo, "the payload is no longer in the spool");
            }
        };
        let transfer_id = job.transfer_id;
        let meta = InboundMeta {
            transfer_id,
            recipient: rid.clone(),
            sender: envelope.sender.clone(),
            sender_name: sender_name.clone(),
            purpose: job.purpose.clone(),
            marking: job.marking.clone(),
            retain_until: envelope.retain_until.clone(),
        };
        let payload = reseal::payload(source, self.spool_key.clone(), target);
        match &endpoint.channel {
            Channel::Https { url, ca_file } => {
                let url = url.replace(
                    crate::config::registry::API_PORT,
                    &self.api_port.to_string(),
                );
                self.https
                    .deliver(&url, ca_file, &meta, envelope_bytes, payload)
                    .await
            }
            Channel::Inbox | Channel::Portal { .. } => {
                let (stream, done) = payload.into_stream();
                match inbox::receive(
                    &self.store,
                    &meta,
                    &inbox::Via::Local,
                    envelope_bytes,
                    stream,
                    Some(job.payload_size),
                )
                .await
                {
                    Ok(received) => match done.await {
                        Ok(Ok(_)) => {
                            if received.new && matches!(endpoint.channel, Channel::Portal { .. }) {
                                self.arrivals.tell(
                                    &registry,
                                    &rid,
                                    &meta.sender_name,
                                    &job.transfer_id.to_string(),
                                );
                            }
                            Outcome::Delivered {
                                receipt: received.receipt(),
                                detail: if received.new {
                                    "stored in this gateway's inbox".into()
                                } else {
                                    "already in this gateway's inbox".into()
                                },
                            }
                        }
                        Ok(Err(e)) => Outcome::temporary(
                            Cause::Reseal,
                            format!("the spooled payload could not be resealed: {e}"),
                        ),
                        Err(e) => {
                            Outcome::temporary(Cause::Reseal, format!("resealing stopped: {e}"))
                        }
                    },
                    Err(e) => Outcome::temporary(
                        Cause::LocalIo,
                        format!("could not store in the inbox: {e}"),
                    ),
                }
            }
            Channel::Email { address, tls_only } => {
                let (payload_bytes, _) =
                    match reseal::collect(payload, self.email.max_message_bytes).await {
                        Ok(x) => x,
                        Err(e) => {
                            return Outcome::temporary(
                                Cause::Reseal,
                                format!("cannot prepare the message: {e}"),
                            );
                        }
                    };
                self.email
                    .deliver(Letter {
                        transfer_id: &job.transfer_id.to_string(),
                        recipient_id: rid.as_str(),
                        to: address,
                        tls_only: *tls_only,
                        envelope: &envelope,
                        sender_name: &sender_name,
                        recipient_name: &recipient.name,
                        envelope_bytes,
                        payload_bytes,
                    })
                    .await
            }
        }
    }
}

/// Keeps track of attempts in flight: how many per recipient, and which deliveries.
#[derive(Default)]
struct InFlight {
    per_recipient: Mutex<HashMap<String, usize>>,
    deliveries: Mutex<std::collections::HashSet<(String, String)>>,
}

impl InFlight {
    fn count(&self, r: &str) -> usize {
        self.per_recipient
            .lock()
            .map(|m| m.get(r).copied().unwrap_or(0))
            .unwrap_or(usize::MAX)
    }

    fn start(&self, d: &Due) {
        self.add(&d.recipient, 1);
        if let Ok(mut s) = self.deliveries.lock() {
            s.insert((d.transfer_id.clone(), d.recipient.clone()));
        }
    }

    fn end(&self, d: &Due) {
        self.add(&d.recipient, -1);
        if let Ok(mut s) = self.deliveries.lock() {
            s.remove(&(d.transfer_id.clone(), d.recipient.clone()));
        }
    }

    fn holds(&self, d: &Due) -> bool {
        self.deliveries
            .lock()
            .map(|s| s.contains(&(d.transfer_id.clone(), d.recipient.clone())))
            .unwrap_or(true)
    }

    fn add(&self, r: &str, delta: isize) {
        if let Ok(mut m) = self.per_recipient.lock() {
            let e = m.entry(r.to_owned()).or_insert(0);
            *e = e.saturating_add_signed(delta);
            if *e == 0 {
                m.remove(r);
            }
        }
    }
}

/// How often the worker looks for deliveries left `delivering` with no attempt in flight.
const STRANDED_SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A delivery claimed this long ago with no attempt in flight is stranded (the claim is written
/// before the attempt is registered in flight, within the same loop turn, so any age would do;
/// a margin keeps the sweep from ever racing a claim).
const STRANDED_AFTER: Duration = Duration::from_secs(5);
/// On a shared store, how long a claim holds without renewal: how long another node waits
/// before retrying the attempts of a node that died. Renewed every [`RENEW_EVERY`], so that a
/// renewal or two may fail (the database briefly away) without losing the lease.
const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);

fn lease_until() -> String {
    clock::stamp(clock::now() + LEASE)
}

/// Extends this node's leases on the attempts it is running (a shared store only).
async fn renew_leases(d: &Deliverer) {
    let until = lease_until();
    if let Err(e) = d.store.renew_leases(until).await {
        tracing::warn!(error = %e, "could not renew the leases on this node's delivery attempts; will try again");
    }
}

/// Queues again the deliveries left `delivering` whose attempt is over but whose outcome could
/// not be recorded (a full disk, a store that failed): while the gateway runs, not only at the
/// next start.
async fn requeue_stranded(d: &Deliverer, in_flight: &InFlight) {
    let before = clock::stamp(clock::now() - STRANDED_AFTER);
    let node = d.store.node().map(str::to_owned);
    let stale = match d
        .store
        .read(move |c| queue::stale_in_flight(c, &before, node.as_deref()))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for stranded deliveries");
            return;
        }
    };
    let stranded: Vec<Due> = stale.into_iter().filter(|x| !in_flight.holds(x)).collect();
    if stranded.is_empty() {
        return;
    }
    let now = clock::stamp(clock::now());
    let n = stranded.len();
    match d
        .store
        .write(false, move |tx| {
            let mut done = 0;
            for s in &stranded {
                if tx.requeue(s, &now)? {
                    done += 1;
                }
            }
            Ok(done)
        })
        .await
    {
        Ok(done) => tracing::warn!(
            deliveries = done,
            "queued again deliveries whose last outcome could not be recorded"
        ),
        Err(e) => {
            tracing::error!(deliveries = n, error = %e, "could not queue stranded deliveries again; will try again")
        }
    }
}

/// A uniform sample in [-1, 1] for the retry delay's jitter. If the system random number
/// generator fails, the delay gets no jitter (0), and the failure is logged as the error it is:
/// never a made-up "random" value that would synchronise retries while claiming to spread them.
fn jitter_sample() -> f64 {
    let mut b = [0u8; 8];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b) {
        Ok(()) => (u64::from_le_bytes(b) as f64 / u64::MAX as f64) * 2.0 - 1.0,
        Err(_) => {
            tracing::error!(
                "the system random number generator failed; this retry is scheduled without jitter"
            );
            0.0
        }
    }
}

/// Runs the worker until `stop` is cancelled, then lets attempts in flight finish.
pub async fn run(d: Arc<Deliverer>, wake: Wake, stop: CancellationToken) {
    let now = clock::stamp(clock::now());
    match d
        .store
        .write(false, move |tx| tx.recover_in_flight(&now))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            deliveries = n,
            "retrying deliveries that were in flight when the gateway stopped"
        ),
        Err(e) => tracing::error!(error = %e, "could not recover in-flight deliveries"),
    }
    let permits = Arc::new(Semaphore::new(d.settings.concurrency));
    let in_flight = Arc::new(InFlight::default());
    let tracker = TaskTracker::new();
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    let mut last_sweep = std::time::Instant::now();
    // On a shared store, this node's leases are renewed by a task of their own, until the
    // last attempt has finished (through the drain at shutdown too, and however long a purge
    // or a claim takes in the loop below).
    let renewing = CancellationToken::new();
    let renewer = d.store.node().is_some().then(|| {
        let (d, done) = (d.clone(), renewing.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = done.cancelled() => break,
                    () = tokio::time::sleep(RENEW_EVERY) => renew_leases(&d).await,
                }
            }
        })
    });
    loop {
        // An indexed query: cheap enough to run often, so that a short grace period is honoured.
        if last_purge.elapsed() >= Duration::from_secs(1) {
            purge(&d).await;
            last_purge = std::time::Instant::now();
        }
        // In this loop, never alongside a claim: a claimed delivery is registered in flight
        // before the loop turns again.
        if last_sweep.elapsed() >= STRANDED_SWEEP_EVERY {
            requeue_stranded(&d, &in_flight).await;
            last_sweep = std::time::Instant::now();
        }
        let free = permits.available_permits();
        if free > 0 {
            match claim(&d, &in_flight, free).await {
                Ok(jobs) => {
                    for due in jobs {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            break;
                        };
                        in_flight.start(&due);
                        let (d, wake, in_flight) = (d.clone(), wake.clone(), in_flight.clone());
                        // Every line logged about this attempt, here or in a channel, carries
                        // the transfer id.
                        let span = tracing::info_span!(
                            "delivery",
                            transfer_id = %due.transfer_id,
                            recipient = %due.recipient
                        );
                        tracker.spawn(
                            async move {
                                run_one(&d, &due).await;
                                in_flight.end(&due);
                                drop(permit);
                                wake.now();
                            }
                            .instrument(span),
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not read the delivery queue"),
            }
        }
        // Sleep until something is due, something is accepted, an attempt ends, or a second
        // passes (for the purge).
        let next = d
            .store
            .read(|c| queue::next_due(c))
            .await
            .ok()
            .flatten()
            .and_then(|t| clock::parse(&t));
        let wait = next.map_or(Duration::from_secs(1), |t| {
            let s = (t - clock::now()).as_seconds_f64();
            Duration::from_secs_f64(s.clamp(0.0, 1.0))
        });
        tokio::select! {
            () = stop.cancelled() => break,
            () = wake.rung() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(if free == 0 { 50 } else { 0 }))) => {}
        }
    }
    tracker.close();
    tracker.wait().await;
    renewing.cancel();
    if let Some(r) = renewer {
        let _ = r.await;
    }
}

/// Claims up to `free` due deliveries, skipping recipients already at their limit.
async fn claim(d: &Deliverer, in_flight: &InFlight, free: usize) -> Result<Vec<Due>, StoreError> {
    let now = clock::stamp(clock::now());
    let now2 = now.clone();
    let shared = d.store.node().is_some();
    let candidates = d
        .store
        .read(move |c| queue::due(c, &now2, free * 4, shared))
        .await?;
    let mut chosen = Vec::new();
    let mut planned: HashMap<String, usize> = HashMap::new();
    for c in candidates {
        // One attempt at a time per delivery: on a shared store this node's own attempt whose
        // lease lapsed (its renewals failed) is due again, and must not be attempted twice here.
        if in_flight.holds(&c) {
            continue;
        }
        let p = planned.entry(c.recipient.clone()).or_insert(0);
        if in_flight.count(&c.recipient) + *p < d.settings.per_recipient && chosen.len() < free {
            *p += 1;
            chosen.push(c);
        }
    }
    if chosen.is_empty() {
        return Ok(chosen);
    }
    let until = lease_until();
    d.store
        .write_late(false, move |tx| {
            let mut claimed = Vec::new();
            for c in chosen {
                if tx.claim_delivery(&c, &now, &until)? {
                    claimed.push(c);
                }
            }
            Ok(claimed)
        })
        .await
}

/// Ends a delivery whose queued row cannot be read, as dead, with why.
async fn end_damaged(d: &Deliverer, due: &Due, why: &str) {
    tracing::error!(transfer_id = %due.transfer_id, error = %why, "a queued delivery's row is damaged; it is marked dead");
    let (t, r) = (due.transfer_id.clone(), due.recipient.clone());
    let at = clock::stamp(clock::now());
    let finish = Finish::Dead {
        error: format!("the queued delivery's row is damaged: {why}"),
    };
    if let Err(e) = d
        .store
        .write(false, move |tx| {
            tx.finish_delivery(&t, &r, &finish, &at, None)
        })
        .await
        .map(|_| ())
    {
        tracing::error!(transfer_id = %due.transfer_id, error = %e, "could not end a damaged delivery");
    }
}

async fn run_one(d: &Arc<Deliverer>, due: &Due) {
    let (t, r) = (due.transfer_id.clone(), due.recipient.clone());
    let job = match d.store.read(move |c| queue::job(c, &t, &r)).await {
        Ok(Some(j)) => j,
        Ok(None) => return,
        Err(e) => {
            match e.damaged_row() {
                // A damaged row (an id or time that does not parse) will not mend by retrying:
                // end it, so that it does not come round again every sweep. `log verify`
                // reports the damage itself.
                Some(why) => end_damaged(d, due, &why).await,
                None => {
                    tracing::error!(transfer_id = %due.transfer_id, error = %e, "could not load a delivery");
                }
            }
            return;
        }
    };
    // The attempt runs as a task of its own, so that even a panic inside it (a bug) ends as a
    // recorded, retried failure rather than a delivery stuck in flight.
    let started = std::time::Instant::now();
    let attempt = {
        let (d, job) = (d.clone(), job.clone());
        tokio::spawn(
            async move {
                tokio::time::timeout(
                    d.settings.attempt_deadline(job.payload_size),
                    d.attempt(&job),
                )
                .await
            }
            .instrument(tracing::Span::current()),
        )
    };
    let outcome = match attempt.await {
        Ok(Ok(o)) => o,
        Ok(Err(_)) => Outcome::temporary(
            Cause::Timeout,
            format!(
                "the attempt took longer than {} s",
                d.settings.attempt_deadline(job.payload_size).as_secs()
            ),
        ),
        Err(e) => {
            tracing::error!(transfer_id = %job.transfer_id, error = %e, "a delivery attempt failed unexpectedly");
            Outcome::temporary(
                Cause::Internal,
                "the attempt failed unexpectedly inside the gateway",
            )
        }
    };
    if let Err(e) = record(d, &job, &outcome, started.elapsed()).await {
        // The delivery stays `delivering`; once this attempt is no longer in flight, the
        // worker's sweep queues it again (the recipient side makes a repeat harmless).
        tracing::error!(transfer_id = %job.transfer_id, error = %e, "could not record a delivery attempt; it will be attempted again");
    }
}

/// Records an attempt's outcome (`took`: how long the attempt ran) and, once committed, counts it.
async fn record(
    d: &Deliverer,
    job: &Job,
    outcome: &Outcome,
    took: Duration,
) -> Result<(), StoreError> {
    let now = clock::now();
    let at = clock::stamp(now);
    let accepted = job.accepted_at;
    let (finish, outcome_name, detail, receipt, next) = match outcome {
        Outcome::Delivered { receipt, detail } => (
            Finish::Delivered {
                receipt: serde_json::to_string(receipt)?,
            },
            "delivered",
            detail.clone(),
            Some(receipt.clone()),
            None,
        ),
        Outcome::Permanent(e) => (
            Finish::Dead {
                error: e.detail.clone(),
            },
            "dead",
            e.detail.clone(),
            None,
            None,
        ),
        Outcome::Temporary(e) => match retry::after_failure(
            &d.settings,
            u32::try_from(job.attempt).unwrap_or(u32::MAX),
            accepted,
            now,
            jitter_sample(),
        ) {
            retry::Next::RetryAt(t) => {
                let t = clock::stamp(t);
                (
                    Finish::Retry {
                        at: t.clone(),
                        error: e.detail.clone(),
                    },
                    "retrying",
                    e.detail.clone(),
                    None,
                    Some(t),
                )
            }
            retry::Next::Expired => {
                let why = format!(
                    "expired after {} attempts over the delivery lifetime; last error: {e}",
                    job.attempt
                );
                (Finish::Dead { error: why.clone() }, "dead", why, None, None)
            }
        },
    };
    let cause = match outcome {
        Outcome::Delivered { .. } => None,
        Outcome::Temporary(f) | Outcome::Permanent(f) => Some(f.cause),
    };
    let (transfer_id, recipient) = (job.transfer_id, job.recipient.clone());
    match outcome_name {
        "delivered" => {
            tracing::info!(transfer_id = %transfer_id, recipient = %recipient, channel = %job.channel, attempt = job.attempt, "delivered")
        }
        "dead" => {
            tracing::warn!(transfer_id = %transfer_id, recipient = %recipient, channel = %job.channel, attempt = job.attempt, cause = cause.map(Cause::as_str), reason = %detail, "delivery dead")
        }
        _ => {
            tracing::info!(transfer_id = %transfer_id, recipient = %recipient, channel = %job.channel, attempt = job.attempt, cause = cause.map(Cause::as_str), error = %detail, "delivery will be retried")
        }
    }
    let rec = DeliveryAttemptRecord {
        kind: RecordKind::DeliveryAttempt,
        transfer_id,
        at: at.clone(),
        recipient: recipient.clone(),
        attempt: job.attempt,
        channel: job.channel.clone(),
        sender: Some(job.sender.clone()),
        outcome: outcome_name.to_owned(),
        cause,
        detail,
        receipt,
        next_attempt_at: next,
    };
    let entry = LogEntry::new(&rec)?;
    let (t, r) = (job.transfer_id.to_string(), job.recipient.to_string());
    let attempt = job.attempt;
    let kept = d
        .store
        .write_late(false, move |tx| {
            tx.append(&entry)?;
            tx.finish_delivery(&t, &r, &finish, &at, Some(attempt))
        })
        .await?;
    if !kept && d.store.node().is_some() {
        // Recorded in the log as the attempt it was; the queue keeps the newer attempt's.
        tracing::warn!(transfer_id = %transfer_id, recipient = %recipient, "this node's lease on the delivery lapsed and another node took it over; that attempt's outcome stands");
    }
    // Counted only once recorded, so that the metrics agree with the transfer log.
    metrics::delivery_attempt(&job.channel, outcome_name, took);
    if let Some(cause) = cause {
        metrics::delivery_failed(&job.channel, cause);
    }
    if outcome_name == "delivered" {
        metrics::delivered(
            &job.channel,
            Duration::try_from(now - accepted).unwrap_or(Duration::ZERO),
        );
    }
    Ok(())
}

/// Deletes the sealed payloads of transfers finished longer ago than the grace period.
async fn purge(d: &Deliverer) {
    let cutoff = clock::stamp(clock::now() - d.settings.payload_grace);
    let due = match d
        .store
        .read(move |c| queue::purgeable(c, &cutoff, 1000))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "could not list payloads to purge");
            return;
        }
    };
    for (id, file) in due {
        let Ok(tid) = id.parse::<TransferId>() else {
            continue;
        };
        let at = clock::stamp(clock::now());
        let rec = PayloadPurgedRecord {
            kind: RecordKind::PayloadPurged,
            transfer_id: tid,
            at: at.clone(),
        };
        let Ok(entry) = LogEntry::new(&rec) else {
            continue;
        };
        let written = d
            .store
            .write(false, move |tx| {
                // Another node may have purged it since the list was read: recorded once.
                let purged = tx.mark_purged(&tid, &at)?;
                if purged {
                    tx.append(&entry)?;
                }
                Ok(purged)
            })
            .await;
        match written {
            Ok(false) => {}
            Ok(true) => {
                if let Some(f) = file {
                    let path = d.store.spool_dir().join(f);
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(transfer_id = %tid, error = %e, "could not delete a purged payload file; the start-up sweep will");
                    }
                }
                tracing::info!(transfer_id = %tid, "payload deleted: every recipient delivered or dead");
            }
            Err(e) => tracing::error!(transfer_id = %tid, error = %e, "could not purge a payload"),
        }
    }
}

/// The time until a delivery lifetime ends, for tests and status.
pub fn lifetime_end(s: &DeliverySettings, accepted: OffsetDateTime) -> OffsetDateTime {
    accepted + s.lifetime
}
