//! Generated transfer-log records, written through the real store (chain, search index,
//! subject hashes, delivery rows), for the log benchmark (`postern load --log-records N`) and
//! the search tests. Never used by a running gateway. The generator is deterministic in its
//! seed, and returns what it wrote so that a test can filter the same data by brute force.

use std::sync::Arc;

use rusqlite::params;

use crate::domain::ids::{OrgId, TransferId};
use crate::domain::subject::{SubjectKey, SubjectRef};
use crate::log::{
    AuthorisationRecord, DecisionRecord, EnvelopeRecord, LogEntry, PayloadRecord,
    PractitionerRecord, RecordKind, SenderRecord, StatusReason, TransferRecord,
};
use crate::store::{Store, StoreError};

const ORGS: [&str; 6] = [
    "northshire-cc",
    "northshire-police",
    "northshire-health",
    "millbrook-academy",
    "northshire-mash",
    "riverside-youth",
];
const PURPOSES: [&str; 4] = [
    "child-protection-s47",
    "early-help",
    "mash-triage",
    "crime-prevention-s115",
];
const BASES: [&str; 3] = ["public_task", "legal_obligation", "legitimate_interests"];
const MARKINGS: [&str; 3] = [
    "OFFICIAL",
    "OFFICIAL-SENSITIVE",
    "OFFICIAL-SENSITIVE PERSONAL",
];
const STATES: [&str; 5] = ["queued", "delivering", "retrying", "delivered", "dead"];
const REFUSALS: [&str; 3] = [
    "no_agreement",
    "purpose_not_in_agreement",
    "marking_above_clearance",
];

/// What one generated record says, in clear, for checking searches against.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub seq: i64,
    pub transfer_id: String,
    pub at: String,
    /// `shared`, `refused` or `rejected`.
    pub decision: &'static str,
    pub sender: String,
    pub recipients: Vec<String>,
    pub originator: String,
    pub purpose: String,
    pub lawful_basis: String,
    pub marking: String,
    pub urgency: &'static str,
    /// One per recipient, for shared transfers.
    pub delivery_states: Vec<&'static str>,
    /// The subject references, in clear (the log holds only their keyed hashes).
    pub subjects: Vec<String>,
}

/// splitmix64: a small, good-enough deterministic generator for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// A valid NHS number from a number below 10^9: the first check digit the project's own
/// validator ([`SubjectRef::parse`]) accepts, or, when none does, the next base's.
fn nhs_number(base: u64) -> String {
    let stem = format!("{:09}", base % 1_000_000_000);
    (0..=9)
        .map(|d| format!("{stem}{d}"))
        .find(|n| SubjectRef::parse(&format!("nhs:{n}")).is_ok())
        .unwrap_or_else(|| nhs_number(base + 1))
}

fn org(s: &str) -> Result<OrgId, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Task(format!("synthetic organisation id `{s}`")))
}

/// One record, and its facts. `people` is how many distinct subjects records are about.
fn make(
    rng: &mut Rng,
    i: u64,
    at: &str,
    people: u64,
    key: &SubjectKey,
) -> Result<(TransferRecord, Generated), StoreError> {
    let sender = rng.pick(&ORGS);
    let n = 1 + rng.below(2);
    let mut recipients: Vec<&str> = Vec::new();
    while recipients.len() < n {
        let r = rng.pick(&ORGS);
        if r != sender && !recipients.contains(&r) {
            recipients.push(r);
        }
    }
    let roll = rng.below(10);
    let decision = match roll {
        0 => "rejected",
        1 | 2 => "refused",
        _ => "shared",
    };
    let originator = if rng.below(4) == 0 {
        rng.pick(&ORGS)
    } else {
        sender
    };
    let purpose = rng.pick(&PURPOSES);
    let basis = rng.pick(&BASES);
    let marking = rng.pick(&MARKINGS);
    let urgency = if rng.below(8) == 0 {
        "urgent"
    } else {
        "routine"
    };
    let subjects: Vec<String> = (0..1 + rng.below(2))
        .map(|_| {
            let p = rng.next() % people.max(1);
            if p.is_multiple_of(3) {
                format!("case:NS{p:07}")
            } else {
                format!("nhs:{}", nhs_number(400_000_000 + p))
            }
        })
        .collect();
    let mut hashes = Vec::new();
    for s in &subjects {
        let r = SubjectRef::parse(s).map_err(|e| StoreError::Task(e.to_string()))?;
        hashes.push(r.hash(key));
    }
    let id = TransferId::from_uuid(uuid::Uuid::from_u64_pair(0x5157_4e54_4845_5449, i));
    let recipients_ids = recipients
        .iter()
        .map(|r| org(r))
        .collect::<Result<Vec<_>, _>>()?;
    let code = match decision {
        "refused" => Some(rng.pick(&REFUSALS).to_owned()),
        "rejected" => Some("invalid_envelope".to_owned()),
        _ => None,
    };
    let originator_id = org(originator)?;
    let envelope = (decision != "rejected").then(|| EnvelopeRecord {
        recipients: recipients_ids.clone(),
        purpose: purpose.to_owned(),
        justification: format!(
            "Generated record {i}: concerns raised by a practitioner indicate a risk of significant harm; sharing is necessary and proportionate."
        ),
        lawful_basis: basis.to_owned(),
        special_category_condition: None,
        data_categories: vec!["personal".to_owned()],
        marking: marking.to_owned(),
        marking_normalised: marking.to_owned(),
        originator: originator_id,
        originator_permission_ref: None,
        practitioner: PractitionerRecord {
            name: "A. Practitioner".into(),
            role: "Social worker".into(),
            contact: "duty.team@example.gov.uk".into(),
        },
        consent: StatusReason {
            status: "not_sought".into(),
            reason: Some("Seeking consent may place the child at increased risk.".into()),
        },
        subject_informed: StatusReason {
            status: "not_informed".into(),
            reason: Some("Telling the family may increase the risk.".into()),
        },
        urgency: StatusReason {
            status: urgency.into(),
            reason: (urgency == "urgent").then(|| "Immediate risk of harm.".into()),
        },
        request: None,
        disclosed_summary: "Chronology of concerns and the most recent referral.".into(),
        retain_until: "2033-01-01".into(),
        subject_ref_hashes: hashes,
        file_name: Some("referral.pdf".into()),
        content_type: Some("application/pdf".into()),
        correction_of: None,
    });
    let decision_record = match decision {
        "shared" => DecisionRecord {
            outcome: "accepted".into(),
            code: None,
            recipient: None,
            agreement: None,
            detail: None,
            errors: Vec::new(),
            authorisations: recipients_ids
                .iter()
                .map(|r| AuthorisationRecord {
                    recipient: r.clone(),
                    agreement: "northshire-safeguarding-isa".into(),
                })
                .collect(),
        },
        _ => DecisionRecord {
            outcome: decision.into(),
            code: code.clone(),
            recipient: recipients_ids.first().cloned(),
            agreement: None,
            detail: Some("Generated refusal.".into()),
            errors: Vec::new(),
            authorisations: Vec::new(),
        },
    };
    let record = TransferRecord {
        kind: match decision {
            "shared" => RecordKind::TransferAccepted,
            "refused" => RecordKind::TransferRefused,
            _ => RecordKind::TransferRejected,
        },
        transfer_id: id,
        at: at.to_owned(),
        sender: SenderRecord {
            org: org(sender)?,
            certificate: format!("sha256:{:064x}", i),
            person: None,
        },
        envelope,
        payload: (decision == "shared").then(|| PayloadRecord {
            size: 4096,
            sha256: format!("{:064x}", rng.next()),
            sealed_size: 4297,
            sealed_sha256: format!("{:064x}", rng.next()),
        }),
        decision: decision_record,
        idempotency_key: None,
    };
    let delivery_states = if decision == "shared" {
        recipients.iter().map(|_| rng.pick(&STATES)).collect()
    } else {
        Vec::new()
    };
    let generated = Generated {
        seq: 0,
        transfer_id: id.to_string(),
        at: at.to_owned(),
        decision,
        sender: sender.to_owned(),
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        originator: if decision == "rejected" {
            String::new()
        } else {
            originator.to_owned()
        },
        purpose: purpose.to_owned(),
        lawful_basis: basis.to_owned(),
        marking: marking.to_owned(),
        urgency,
        delivery_states,
        subjects,
    };
    Ok((record, generated))
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How many decision records.
    pub records: u64,
    pub seed: u64,
    /// How many distinct people the records are about.
    pub people: u64,
    /// The first record's time; each next one is a second later.
    pub start: time::OffsetDateTime,
    /// Records per transaction.
    pub batch: u64,
}

/// Appends the planned decision records (with delivery rows for the shared ones) and calls
/// `keep` with each record's facts.
pub async fn generate(
    store: &Store,
    plan: Plan,
    key: Arc<SubjectKey>,
    mut keep: impl FnMut(Generated),
) -> Result<(), StoreError> {
    let Plan {
        records: n,
        seed,
        people,
        start,
        batch,
    } = plan;
    let mut rng = Rng(seed);
    let mut i = 0;
    while i < n {
        let end = (i + batch.max(1)).min(n);
        let mut records = Vec::with_capacity((end - i) as usize);
        for j in i..end {
            let at = crate::clock::stamp(start + time::Duration::seconds(j as i64));
            records.push(make(&mut rng, j, &at, people, &key)?);
        }
        let written = store
            .write(false, move |tx| {
                let mut out = Vec::with_capacity(records.len());
                for (record, mut g) in records {
                    let seq = tx.append_now(&LogEntry::new(&record)?)?;
                    g.seq = seq;
                    if g.decision == "shared" {
                        tx.conn()?.prepare_cached(
                            "INSERT INTO transfers (id, sender, received_at, purpose, marking, payload_size, plaintext_sha256, sealed_sha256, sealed_envelope, log_seq, accepted_at, payload_purged_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, 4096, '', '', x'', ?6, ?3, ?3)",
                        )?
                        .execute(params![g.transfer_id, g.sender, g.at, g.purpose, g.marking, seq])?;
                        let mut d = tx.conn()?.prepare_cached(
                            "INSERT INTO deliveries (transfer_id, recipient, agreement, state, channel, next_attempt_at, updated_at)
                             VALUES (?1, ?2, 'northshire-safeguarding-isa', ?3, 'https', ?4, ?4)",
                        )?;
                        for (r, s) in g.recipients.iter().zip(&g.delivery_states) {
                            d.execute(params![g.transfer_id, r, s, g.at])?;
                        }
                        drop(d);
                        // A delivery that was attempted has its attempt recorded, as the
                        // worker records it (what `log verify` checks the state against).
                        let (Ok(tid), Ok(sender)) = (
                            g.transfer_id.parse::<crate::domain::ids::TransferId>(),
                            g.sender.parse::<crate::domain::ids::OrgId>(),
                        ) else {
                            return Err(StoreError::Task("a generated id does not parse".into()));
                        };
                        for (r, s) in g.recipients.iter().zip(&g.delivery_states) {
                            if !matches!(*s, "delivered" | "dead" | "retrying") {
                                continue;
                            }
                            let Ok(recipient) = r.parse() else { continue };
                            let attempt = crate::log::DeliveryAttemptRecord {
                                kind: crate::log::RecordKind::DeliveryAttempt,
                                transfer_id: tid,
                                at: g.at.clone(),
                                recipient,
                                attempt: 1,
                                channel: "https".into(),
                                sender: Some(sender.clone()),
                                outcome: (*s).to_owned(),
                                cause: (*s != "delivered").then_some(
                                    crate::domain::delivery::FailureCause::RecipientRefused,
                                ),
                                detail: "HTTP 201".into(),
                                receipt: None,
                                next_attempt_at: None,
                            };
                            tx.append(&LogEntry::new(&attempt)?)?;
                        }
                    }
                    out.push(g);
                }
                Ok(out)
            })
            .await?;
        written.into_iter().for_each(&mut keep);
        i = end;
    }
    Ok(())
}

/// `n` generated decision records as log entries (their chain position not yet given), for
/// benchmarks that append them through something other than the SQLite store.
pub fn decision_entries(
    seed: u64,
    n: u64,
    people: u64,
    start: time::OffsetDateTime,
    key: &SubjectKey,
) -> Result<Vec<LogEntry>, StoreError> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|j| {
            let at = crate::clock::stamp(start + time::Duration::seconds(j as i64));
            let (record, _) = make(&mut rng, j, &at, people, key)?;
            Ok(LogEntry::new(&record)?)
        })
        .collect()
}
