//! The gateway's operational metrics, in one process-wide Prometheus registry
//! (`prometheus-client`): what ingest decided, what the delivery worker did, and why TLS
//! handshakes failed. Instrumented code calls the small functions here; [`crate::runtime::ops`] serves
//! [`encode`] at `/metrics`, after reading the queue's gauges from the store.
//!
//! Label values come only from the gateway's own vocabularies (problem and refusal codes,
//! channel names, handshake failure kinds), never from what a client sent, so that no peer
//! can grow the number of series.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use crate::tls::HandshakeFailure;

use crate::domain::delivery::FailureCause;

/// What `/metrics` answers with: the OpenMetrics text format, which Prometheus reads natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The delivery channels, for labels known before anything happens.
const CHANNELS: [&str; 3] = ["email", "https", "inbox"];
/// How a delivery attempt ends, as the transfer log names it.
pub const ATTEMPT_OUTCOMES: [&str; 3] = ["delivered", "retrying", "dead"];
/// The delivery states that are still in the queue.
pub const PENDING_STATES: [&str; 3] = ["queued", "delivering", "retrying"];
/// How long open requests for information have been open, in working days since the day
/// received (fifteen is the protocols' limit): the age bands of `postern_requests_open`.
pub const REQUEST_AGE_BANDS: [&str; 4] = ["0-5", "6-10", "11-15", "over-15"];

/// The age band of a request open for `working_days`.
pub fn request_age_band(working_days: u32) -> &'static str {
    match working_days {
        0..=5 => "0-5",
        6..=10 => "6-10",
        11..=15 => "11-15",
        _ => "over-15",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Band {
    age_working_days: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rejection {
    status: u16,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelCause {
    channel: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelOutcome {
    channel: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Channel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    accepted: Counter,
    refused: Family<Reason, Counter>,
    rejected: Family<Rejection, Counter>,
    errors: Family<Status, Counter>,
    inbound: Family<Outcome, Counter>,
    deliveries: Family<ChannelOutcome, Counter>,
    delivery_failures: Family<ChannelCause, Counter>,
    latency: Histograms<Channel>,
    attempt_duration: Histograms<ChannelOutcome>,
    queue_depth: Family<State, Gauge>,
    oldest_pending: Gauge<f64, AtomicU64>,
    requests_open: Family<Band, Gauge>,
    handshakes: Family<Kind, Counter>,
    refused_connections: Family<Kind, Counter>,
    reauthentication: Family<Kind, Counter>,
    head_wait: Counter<f64, AtomicU64>,
    head_held: Counter<f64, AtomicU64>,
    writer_busy: Counter<f64, AtomicU64>,
    write_batches: Counter,
    write_jobs: Counter,
}

/// From acceptance to delivery: seconds when all is well, hours while a recipient is down.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
    ])
}

/// One attempt: bounded by the attempt deadline, usually well under a second.
fn attempt_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("postern");
        let m = Metrics {
            accepted: Counter::default(),
            refused: Family::default(),
            rejected: Family::default(),
            errors: Family::default(),
            inbound: Family::default(),
            deliveries: Family::default(),
            delivery_failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            attempt_duration: Family::new_with_constructor(attempt_histogram),
            queue_depth: Family::default(),
            oldest_pending: Gauge::default(),
            requests_open: Family::default(),
            handshakes: Family::default(),
            refused_connections: Family::default(),
            reauthentication: Family::default(),
            head_wait: Counter::default(),
            head_held: Counter::default(),
            writer_busy: Counter::default(),
            write_batches: Counter::default(),
            write_jobs: Counter::default(),
            registry: Registry::default(),
        };
        r.register(
            "build",
            "The running version of Postern",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "transfers_accepted",
            "Transfers accepted (202) and durably spooled",
            m.accepted.clone(),
        );
        r.register(
            "transfers_refused",
            "Transfers refused by policy (403), by refusal code",
            m.refused.clone(),
        );
        r.register(
            "transfers_rejected",
            "Transfer requests rejected before a decision (malformed, too large, invalid), by HTTP status and problem code",
            m.rejected.clone(),
        );
        r.register(
            "transfer_errors",
            "Transfer requests that failed inside the gateway (500), while it shut down (503), or for want of disk space (507)",
            m.errors.clone(),
        );
        r.register(
            "inbound_deliveries",
            "Deliveries from peer gateways to POST /v1/inbound: stored, repeat (already held), rejected, error",
            m.inbound.clone(),
        );
        r.register(
            "deliveries",
            "Delivery attempts, by channel and outcome (delivered, retrying, dead)",
            m.deliveries.clone(),
        );
        r.register(
            "delivery_failures",
            "Failed delivery attempts (retrying or dead), by channel and cause (unreachable, timeout, tls_certificate, relay_refused, recipient_refused, ...)",
            m.delivery_failures.clone(),
        );
        r.register_with_unit(
            "delivery_latency",
            "Time from a transfer's acceptance to its delivery to one recipient",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register_with_unit(
            "delivery_attempt_duration",
            "How long one delivery attempt took, by channel and outcome",
            Unit::Seconds,
            m.attempt_duration.clone(),
        );
        r.register(
            "delivery_queue_depth",
            "Deliveries waiting or in flight, by state (read from the store at scrape time)",
            m.queue_depth.clone(),
        );
        r.register_with_unit(
            "delivery_oldest_pending_age",
            "Age of the oldest transfer with an undelivered recipient, since its acceptance (0 when none)",
            Unit::Seconds,
            m.oldest_pending.clone(),
        );
        r.register(
            "requests_open",
            "Requests for information not yet answered in full, declined or withdrawn, by working days since the day received (read from the store at scrape time)",
            m.requests_open.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "API connections whose TLS handshake failed, by kind",
            m.handshakes.clone(),
        );
        r.register(
            "connections_refused",
            "API connections closed at once because their source address already had too many connections (source_connections) or handshakes (source_handshakes) open",
            m.refused_connections.clone(),
        );
        r.register(
            "requests_refused_reauthentication",
            "Requests on connections already open whose client certificate no longer authenticates anyone (revoked, expired, or its identity removed by a reload), by kind",
            m.reauthentication.clone(),
        );
        r.register_with_unit(
            "log_head_wait",
            "On a shared store: time this node's commits spent asking for the transfer log's head (the lock every appending commit takes; one round trip to the database included)",
            Unit::Seconds,
            m.head_wait.clone(),
        );
        r.register_with_unit(
            "log_head_held",
            "On a shared store: time this node's commits held the transfer log's head, from the lock's answer to the commit's (the nodes' appends take turns for this long; summed over the nodes and divided by the time elapsed, the share of the chain's capacity in use)",
            Unit::Seconds,
            m.head_held.clone(),
        );
        r.register_with_unit(
            "store_writer_busy",
            "Time this node's store writers spent on their commits rather than waiting for work, summed over the writers (one on SQLite, two on PostgreSQL; divided by the time elapsed and the writers: how near they are to their limit, 1; every write of the node goes through them)",
            Unit::Seconds,
            m.writer_busy.clone(),
        );
        r.register(
            "store_write_batches",
            "Commits of this node's store writers (each carries every write job waiting when it began)",
            m.write_batches.clone(),
        );
        r.register(
            "store_write_jobs",
            "Write jobs this node's store writers ran (divided by store_write_batches: the jobs a commit carries)",
            m.write_jobs.clone(),
        );
        // Series that exist from the start, so that rates and alerts see a zero rather than
        // nothing until the first event.
        for kind in SourceLimit::ALL {
            let _ = m.refused_connections.get_or_create(&Kind {
                kind: kind.as_str(),
            });
        }
        for channel in CHANNELS {
            for outcome in ATTEMPT_OUTCOMES {
                let _ = m.deliveries.get_or_create(&ChannelOutcome {
                    channel: channel.into(),
                    outcome,
                });
            }
        }
        for outcome in [
            Inbound::Stored,
            Inbound::Repeat,
            Inbound::Rejected,
            Inbound::Error,
        ] {
            let _ = m.inbound.get_or_create(&Outcome {
                outcome: outcome.as_str(),
            });
        }
        for status in [500, 503, 507] {
            let _ = m.errors.get_or_create(&Status { status });
        }
        for state in PENDING_STATES {
            let _ = m.queue_depth.get_or_create(&State { state });
        }
        for kind in HandshakeFailure::ALL {
            let _ = m.handshakes.get_or_create(&Kind {
                kind: kind.as_str(),
            });
        }
        Metrics { registry: r, ..m }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// A commit on a shared store waited `wait` for the log's head and then held it for `held`.
pub fn log_head(wait: Duration, held: Duration) {
    METRICS.head_wait.inc_by(wait.as_secs_f64());
    METRICS.head_held.inc_by(held.as_secs_f64());
}

/// The store's writer took a batch of `jobs` write jobs.
pub fn store_batch(jobs: usize) {
    METRICS.write_batches.inc();
    METRICS
        .write_jobs
        .inc_by(u64::try_from(jobs).unwrap_or(u64::MAX));
}

/// The store's writer worked `d` on its last batch.
pub fn store_writer_busy(d: Duration) {
    METRICS.writer_busy.inc_by(d.as_secs_f64());
}

/// A transfer was accepted and committed.
pub fn transfer_accepted() {
    METRICS.accepted.inc();
}

/// A transfer was refused by policy; `reason` is the refusal code.
pub fn transfer_refused(reason: &str) {
    METRICS
        .refused
        .get_or_create(&Reason {
            reason: reason.to_owned(),
        })
        .inc();
}

/// A transfer request was answered with a client error before any decision.
pub fn transfer_rejected(status: u16, code: &str) {
    METRICS
        .rejected
        .get_or_create(&Rejection {
            status,
            code: code.to_owned(),
        })
        .inc();
}

/// A transfer request failed on the gateway's side (500, or 503 while shutting down).
pub fn transfer_error(status: u16) {
    METRICS.errors.get_or_create(&Status { status }).inc();
}

/// How a peer's delivery to `POST /v1/inbound` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Stored,
    Repeat,
    Rejected,
    Error,
}

impl Inbound {
    pub fn as_str(self) -> &'static str {
        match self {
            Inbound::Stored => "stored",
            Inbound::Repeat => "repeat",
            Inbound::Rejected => "rejected",
            Inbound::Error => "error",
        }
    }
}

pub fn inbound(outcome: Inbound) {
    METRICS
        .inbound
        .get_or_create(&Outcome {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// A delivery attempt ended (and its outcome was recorded). `outcome` is one of
/// [`ATTEMPT_OUTCOMES`]; `took` is the attempt's own duration.
pub fn delivery_attempt(channel: &str, outcome: &'static str, took: Duration) {
    let labels = ChannelOutcome {
        channel: channel.to_owned(),
        outcome,
    };
    METRICS.deliveries.get_or_create(&labels).inc();
    METRICS
        .attempt_duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// A delivery attempt failed (and was recorded), for `cause` (a [`FailureCause`] label).
pub fn delivery_failed(channel: &str, cause: FailureCause) {
    METRICS
        .delivery_failures
        .get_or_create(&ChannelCause {
            channel: channel.to_owned(),
            cause: cause.as_str(),
        })
        .inc();
}

/// A delivery reached its recipient, `latency` after its transfer was accepted.
pub fn delivered(channel: &str, latency: Duration) {
    METRICS
        .latency
        .get_or_create(&Channel {
            channel: channel.to_owned(),
        })
        .observe(latency.as_secs_f64());
}

/// Which per-source limit closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLimit {
    Connections,
    Handshakes,
}

impl SourceLimit {
    pub const ALL: [SourceLimit; 2] = [Self::Connections, Self::Handshakes];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "source_connections",
            Self::Handshakes => "source_handshakes",
        }
    }
}

/// A connection was closed at once: its source address was at a limit.
pub fn connection_refused(limit: SourceLimit) {
    METRICS
        .refused_connections
        .get_or_create(&Kind {
            kind: limit.as_str(),
        })
        .inc();
}

/// A request on an open connection was refused: its certificate no longer authenticates.
pub fn reauthentication_refused(kind: HandshakeFailure) {
    METRICS
        .reauthentication
        .get_or_create(&Kind {
            kind: kind.as_str(),
        })
        .inc();
}

/// A TLS handshake on the API listener failed.
pub fn tls_handshake_failed(kind: HandshakeFailure) {
    METRICS
        .handshakes
        .get_or_create(&Kind {
            kind: kind.as_str(),
        })
        .inc();
}

/// The delivery queue as the store reports it at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queue {
    /// Deliveries per state, for each of [`PENDING_STATES`] (missing states count 0).
    pub depth: Vec<(&'static str, u64)>,
    pub oldest_pending_age: Duration,
    /// Open requests for information per age band, for each of [`REQUEST_AGE_BANDS`].
    pub requests_open: Vec<(&'static str, u64)>,
}

/// The whole exposition, with the queue gauges set from `queue` first.
pub fn encode(queue: &Queue) -> String {
    let m = &*METRICS;
    for state in PENDING_STATES {
        let n = queue
            .depth
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        m.queue_depth
            .get_or_create(&State { state })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    m.oldest_pending.set(queue.oldest_pending_age.as_secs_f64());
    for band in REQUEST_AGE_BANDS {
        let n = queue
            .requests_open
            .iter()
            .filter(|(b, _)| *b == band)
            .map(|(_, n)| *n)
            .sum::<u64>();
        m.requests_open
            .get_or_create(&Band {
                age_working_days: band,
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let mut out = String::new();
    // Writing to a String cannot fail; an error here would be a bug in the encoder.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        tracing::error!(error = %e, "could not encode the metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_types_are_as_documented() {
        transfer_accepted();
        transfer_refused("unit_test_reason");
        transfer_rejected(413, "unit_test_code");
        delivery_attempt("unit-test", "delivered", Duration::from_millis(20));
        delivered("unit-test", Duration::from_secs(2));
        tls_handshake_failed(HandshakeFailure::UnknownCa);
        log_head(Duration::from_millis(3), Duration::from_millis(5));
        store_batch(2);
        store_writer_busy(Duration::from_millis(4));
        let text = encode(&Queue {
            depth: vec![("retrying", 3)],
            oldest_pending_age: Duration::from_secs(90),
            requests_open: vec![(request_age_band(16), 2), (request_age_band(3), 1)],
        });
        for line in [
            "# TYPE postern_transfers_accepted counter",
            "postern_transfers_refused_total{reason=\"unit_test_reason\"} 1",
            "postern_transfers_rejected_total{status=\"413\",code=\"unit_test_code\"} 1",
            "postern_deliveries_total{channel=\"unit-test\",outcome=\"delivered\"} 1",
            "postern_delivery_latency_seconds_count{channel=\"unit-test\"} 1",
            "postern_delivery_attempt_duration_seconds_count{channel=\"unit-test\",outcome=\"delivered\"} 1",
            "postern_delivery_queue_depth{state=\"retrying\"} 3",
            "postern_delivery_queue_depth{state=\"queued\"} 0",
            "postern_delivery_oldest_pending_age_seconds 90.0",
            "postern_requests_open{age_working_days=\"over-15\"} 2",
            "postern_requests_open{age_working_days=\"0-5\"} 1",
            "postern_requests_open{age_working_days=\"6-10\"} 0",
            "postern_tls_handshake_failures_total{kind=\"timeout\"} 0",
            "postern_deliveries_total{channel=\"email\",outcome=\"dead\"} 0",
            "postern_build_info{version=",
            "postern_inbound_deliveries_total{outcome=\"repeat\"} 0",
            "postern_transfer_errors_total{status=\"503\"} 0",
            "# TYPE postern_log_head_held_seconds counter",
            "postern_log_head_wait_seconds_total 0.003",
            // Other unit tests' stores count here too: the types, not the values.
            "# TYPE postern_store_writer_busy_seconds counter",
            "# TYPE postern_store_write_batches counter",
            "# TYPE postern_store_write_jobs counter",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn handshake_errors_are_classified_through_their_io_wrapping() {
        let wrap = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            HandshakeFailure::classify(&wrap(rustls::Error::NoCertificatesPresented)),
            HandshakeFailure::NoClientCertificate
        );
        assert_eq!(
            HandshakeFailure::classify(&wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))),
            HandshakeFailure::UnknownCa
        );
        assert_eq!(
            HandshakeFailure::classify(&wrap(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))),
            HandshakeFailure::Revoked
        );
        assert_eq!(
            HandshakeFailure::classify(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            HandshakeFailure::Closed
        );
        let names: std::collections::HashSet<_> =
            HandshakeFailure::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), HandshakeFailure::ALL.len());
    }
}
