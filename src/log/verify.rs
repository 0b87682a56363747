//! Checking the transfer log: the pure logic behind `postern log verify` (and the check the
//! retention purge makes before it deletes anything). No IO: the store streams rows in and
//! answers the few look-ups a break needs ([`Lookup`]).
//!
//! Two kinds of evidence are checked:
//!
//! - **the chain**: every record's `hash` must equal `chain_hash(prev_hash, seq, body)` and its
//!   `prev_hash` the hash of the record before (or [`GENESIS`], or the signed checkpoint the log
//!   was purged up to). This catches a record altered, deleted, inserted or reordered.
//! - **signed checkpoints**: the chain's head at a moment, signed with the gateway's ed25519 key.
//!   Someone who rewrites the chain from some record on (recomputing every hash after it) is
//!   caught by the first checkpoint whose hash no longer matches, and cannot sign a new one.
//!
//! The first break is reported with its kind and where it is. Telling the kinds apart: when a
//! record does not verify where it stands, its content is tried at other positions (the chain
//! hash includes the position, so a record that verifies at position `c` was written there).
//! A record that belongs one place later, followed by one that belongs one place earlier, is a
//! swap; a run of records that all belong `n` places later means `n` records were deleted and the
//! rest renumbered; a record that belongs earlier means the records before it were inserted.
//!
//! What a checkpoint signs ([`signed_message`]): the bytes of [`CHECKPOINT_DOMAIN`], then the
//! checkpoint's `seq` as 8 bytes big-endian, the 32-byte chain hash of the record at `seq`, and
//! the checkpoint's time (`at`, RFC 3339 UTC, as stored) in UTF-8. The domain prefix keeps a
//! checkpoint signature from being valid as anything else signed with the same key.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::ids::TransferId;
use crate::log::{GENESIS, Index, RecordKind, chain_hash, index_of};

/// Prefix of every signed checkpoint message (domain separation).
pub const CHECKPOINT_DOMAIN: &[u8] = b"postern transfer log checkpoint v1\0";

/// How far either side of a record's own position its content is looked for, when the cheaper
/// candidates (its neighbours, the place after the record it chains from) fail. Bounded, so that
/// classifying a break costs milliseconds; beyond it a moved record is reported as altered.
const SEARCH_WINDOW: i64 = 4096;

/// The message a checkpoint's signature covers.
pub fn signed_message(seq: i64, hash: &[u8; 32], at: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32 + at.len());
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(at.as_bytes());
    m
}

/// An ed25519 public key (32 bytes), written as standard base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not an ed25519 public key: give its 32 bytes as base64 (44 characters) or hex (64 digits)"
)]
pub struct BadPublicKey;

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `SHA256:` and the unpadded base64 of the key's SHA-256, as OpenSSH prints key
    /// fingerprints: short enough to read out and compare with the one published.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(self.0)))
    }

    /// Whether `signature` is this key's signature of checkpoint `(seq, hash, at)`.
    pub fn verifies(&self, seq: i64, hash: &[u8; 32], at: &str, signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&signed_message(seq, hash, at), signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = BadPublicKey;

    fn from_str(s: &str) -> Result<Self, BadPublicKey> {
        let s = s.trim();
        let bytes = if s.len() == 64 {
            hex::decode(s).map_err(|_| BadPublicKey)?
        } else {
            STANDARD.decode(s).map_err(|_| BadPublicKey)?
        };
        bytes.try_into().map(PublicKey).map_err(|_| BadPublicKey)
    }
}

/// One log row as stored (borrowed from the database row, so that streaming a million of them
/// copies nothing). The hashes are whatever the columns hold: a tampered row may hold anything.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub seq: i64,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRow {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub body: Vec<u8>,
}

impl OwnedRow {
    pub fn as_row(&self) -> Row<'_> {
        Row {
            seq: self.seq,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            body: &self.body,
        }
    }
}

impl Row<'_> {
    pub fn to_owned_row(&self) -> OwnedRow {
        OwnedRow {
            seq: self.seq,
            prev_hash: self.prev_hash.to_vec(),
            hash: self.hash.to_vec(),
            body: self.body.to_vec(),
        }
    }

    /// Whether this row's content was written at position `seq`: its hash is its chain hash
    /// there. Says nothing about its link to the row before.
    pub fn fits_at(&self, seq: i64) -> bool {
        match <&[u8; 32]>::try_from(self.prev_hash) {
            Ok(prev) => chain_hash(prev, seq, self.body).as_slice() == self.hash,
            Err(_) => false,
        }
    }
}

/// A checkpoint row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub at: String,
    pub hash: Vec<u8>,
    /// The key that signed it, as recorded (base64): informative only, the signature is checked
    /// against the expected keys.
    pub public_key: String,
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// `None` if one of `keys` signed it; otherwise why not.
    pub fn fault(&self, keys: &[PublicKey]) -> Option<String> {
        let Ok(hash) = <[u8; 32]>::try_from(self.hash.as_slice()) else {
            return Some(format!(
                "the checkpoint of record {} holds no valid hash",
                self.seq
            ));
        };
        if keys
            .iter()
            .any(|k| k.verifies(self.seq, &hash, &self.at, &self.signature))
        {
            return None;
        }
        Some(match self.public_key.parse::<PublicKey>() {
            Ok(k) if !keys.contains(&k) => format!(
                "the checkpoint of record {} (at {}) is signed with key {}, not the expected key",
                self.seq,
                self.at,
                k.fingerprint()
            ),
            _ => format!(
                "the signature of the checkpoint of record {} (at {}) does not verify: the checkpoint was altered or forged",
                self.seq, self.at
            ),
        })
    }
}

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// A record's content no longer matches its hash (or its hash no longer matches what the
    /// next record was chained to).
    Altered,
    /// Records are missing: a gap in the sequence, records removed and the rest renumbered, or
    /// records missing before the first one or after the last that a checkpoint vouches for.
    Deleted,
    /// Records that are not part of the chain, with the records after them renumbered.
    Inserted,
    /// A record stands at another record's position (two records swapped, or one moved).
    Reordered,
    /// The chain is consistent but does not match a signed checkpoint: records up to the
    /// checkpoint were altered and every hash after them recomputed.
    Rewritten,
    /// A checkpoint whose signature does not verify under the expected key.
    BadCheckpoint,
    /// A search index (`log` columns, `log_facets`, `log_recipients`, `log_subjects`, the
    /// delivery states) disagrees with the chained record it is derived from: what a search
    /// answers was changed without changing the evidence.
    IndexAltered,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Altered => "altered",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::Reordered => "reordered",
            BreakKind::Rewritten => "rewritten",
            BreakKind::BadCheckpoint => "bad_checkpoint",
            BreakKind::IndexAltered => "index_altered",
        }
    }
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first break found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub kind: BreakKind,
    /// The first record affected.
    pub seq: i64,
    /// The last record affected (`seq` when it is one record).
    pub to_seq: i64,
    /// For a reordering: the position the record at `seq` was written at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_seq: Option<i64>,
    /// One sentence, for a person.
    pub message: String,
}

impl Break {
    /// A search index that disagrees with record `seq`.
    pub fn index(seq: i64, message: String) -> Self {
        Break::one(BreakKind::IndexAltered, seq, message)
    }

    fn one(kind: BreakKind, seq: i64, message: String) -> Self {
        Break {
            kind,
            seq,
            to_seq: seq,
            other_seq: None,
            message,
        }
    }

    fn range(kind: BreakKind, seq: i64, to_seq: i64, message: String) -> Self {
        Break {
            kind,
            seq,
            to_seq,
            other_seq: None,
            message,
        }
    }
}

fn records(from: i64, to: i64) -> String {
    if from == to {
        format!("record {from}")
    } else {
        format!("records {from} to {to}")
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records whose hash and link verified (up to the break, if there is one).
    pub records: u64,
    /// Checkpoints whose signature (and, where the record is still there, hash) verified.
    pub checkpoints: u64,
    pub first_seq: Option<i64>,
    /// The last record verified.
    pub last_seq: Option<i64>,
    /// The signed checkpoint the first record chains from, when earlier records were purged.
    pub anchor_seq: Option<i64>,
    /// The last checkpoint that matched the chain: records up to here are covered by a
    /// signature.
    pub covered_to: Option<i64>,
    /// Records after `covered_to` (not yet covered by a signature: a warning, not a break).
    pub uncovered: u64,
    #[serde(rename = "break")]
    pub first_break: Option<Break>,
    /// Heads an operator accepted (`postern log accept-head`): records the gateway did not sign
    /// when they were written, or lost. Not a break (the acceptance is itself a chained, signed
    /// record), but always reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<Acceptance>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// The look-ups classifying a break needs (only then: a clean check never calls them).
pub trait Lookup {
    type Error;
    /// The row stored at `seq`.
    fn row(&mut self, seq: i64) -> Result<Option<OwnedRow>, Self::Error>;
    /// The position of a row whose stored hash is `hash`.
    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, Self::Error>;
}

/// A row that did not verify where it stands, with what was expected there.
#[derive(Debug, Clone)]
pub struct Suspect {
    pub row: OwnedRow,
    pub expected_seq: i64,
    pub expected_prev: [u8; 32],
    /// Whether a verified row precedes it (else it is the first row, chaining from
    /// [`GENESIS`] or from the anchor checkpoint).
    pub after_verified: bool,
}

/// Why the check stopped.
#[derive(Debug)]
pub enum Stop {
    /// A break, already classified.
    Break(Break),
    /// A row that does not verify: call [`classify`].
    Suspect(Box<Suspect>),
}

/// The streaming check. Feed every row in `seq` order with [`Verifier::row`]; stop at the first
/// `Err`; then [`Verifier::finish`] and [`Verifier::report`].
pub struct Verifier {
    checkpoints: Vec<Checkpoint>,
    /// Per checkpoint: why its signature does not verify, if it does not.
    faults: Vec<Option<String>>,
    next_checkpoint: usize,
    records: u64,
    checkpoints_checked: u64,
    first_seq: Option<i64>,
    last: Option<(i64, [u8; 32])>,
    anchor: Option<i64>,
    covered: Option<i64>,
}

impl Verifier {
    /// `checkpoints` must be sorted by `seq`. Their signatures are checked here, all at once
    /// and on every core: a six-year log holds hundreds of thousands of them.
    pub fn new(keys: &[PublicKey], checkpoints: Vec<Checkpoint>) -> Self {
        let faults = faults(keys, &checkpoints);
        Verifier {
            checkpoints,
            faults,
            next_checkpoint: 0,
            records: 0,
            checkpoints_checked: 0,
            first_seq: None,
            last: None,
            anchor: None,
            covered: None,
        }
    }

    /// The next checkpoint if its seq is below `bound`; a bad signature is a break.
    fn take_checkpoint(&mut self, bound: i64) -> Result<Option<usize>, Stop> {
        let i = self.next_checkpoint;
        match self.checkpoints.get(i) {
            Some(cp) if cp.seq < bound => {
                if let Some(why) = &self.faults[i] {
                    return Err(Stop::Break(Break::one(
                        BreakKind::BadCheckpoint,
                        cp.seq,
                        why.clone(),
                    )));
                }
                self.next_checkpoint += 1;
                Ok(Some(i))
            }
            _ => Ok(None),
        }
    }

    pub fn row(&mut self, r: Row<'_>) -> Result<(), Stop> {
        let (expected_seq, expected_prev) = match self.last {
            Some((seq, hash)) => (seq + 1, hash),
            None => self.start(r.seq)?,
        };
        let linked = r.seq == expected_seq && r.prev_hash == expected_prev.as_slice();
        if !(linked && r.fits_at(r.seq)) {
            return Err(Stop::Suspect(Box::new(Suspect {
                row: r.to_owned_row(),
                expected_seq,
                expected_prev,
                after_verified: self.last.is_some(),
            })));
        }
        let Ok(hash) = <[u8; 32]>::try_from(r.hash) else {
            // fits_at checked the length; unreachable, but not worth a panic.
            return Err(Stop::Break(Break::one(
                BreakKind::Altered,
                r.seq,
                format!("record {} holds no valid hash", r.seq),
            )));
        };
        self.records += 1;
        self.last = Some((r.seq, hash));
        while let Some(i) = self.take_checkpoint(r.seq + 1)? {
            self.checkpoints_checked += 1;
            let cp = &self.checkpoints[i];
            if cp.seq != r.seq {
                continue;
            }
            if cp.hash != hash {
                let from = self.covered.map_or(self.first_seq.unwrap_or(1), |c| c + 1);
                return Err(Stop::Break(Break::range(
                    BreakKind::Rewritten,
                    from,
                    r.seq,
                    format!(
                        "the chain's hash at record {} does not match its signed checkpoint (at {}): {} altered and every hash after it recomputed",
                        r.seq,
                        cp.at,
                        if from == r.seq {
                            format!("record {from} was")
                        } else {
                            format!("a record from {from} to {} was", r.seq)
                        },
                    ),
                )));
            }
            self.covered = Some(r.seq);
        }
        Ok(())
    }

    /// At the first row: the checkpoints before it, and what it must chain from.
    fn start(&mut self, first: i64) -> Result<(i64, [u8; 32]), Stop> {
        self.first_seq = Some(first);
        let mut before = None;
        while let Some(i) = self.take_checkpoint(first)? {
            self.checkpoints_checked += 1;
            before = Some(i);
        }
        if first == 1 {
            return Ok((1, GENESIS));
        }
        let anchor = before.map(|i| &self.checkpoints[i]);
        if let Some(cp) = anchor.filter(|cp| cp.seq == first - 1)
            && let Ok(hash) = <[u8; 32]>::try_from(cp.hash.as_slice())
        {
            self.anchor = Some(cp.seq);
            self.covered = Some(cp.seq);
            return Ok((first, hash));
        }
        let from = anchor.map_or(1, |cp| cp.seq + 1);
        Err(Stop::Break(Break::range(
            BreakKind::Deleted,
            from,
            first - 1,
            format!(
                "{} missing: the log starts at record {first}, and no signed checkpoint at record {} vouches for a purge",
                if from == first - 1 {
                    format!("record {from} is")
                } else {
                    format!("records {from} to {} are", first - 1)
                },
                first - 1
            ),
        )))
    }

    /// After the last row: checkpoints beyond it mean records were deleted from the end.
    pub fn finish(&mut self) -> Option<Break> {
        let last = self.last.map_or(0, |(s, _)| s);
        match self.take_checkpoint(i64::MAX) {
            Err(Stop::Break(b)) => Some(b),
            Err(Stop::Suspect(_)) | Ok(None) => None,
            Ok(Some(i)) => {
                let cp = &self.checkpoints[i];
                Some(Break::range(
                    BreakKind::Deleted,
                    last + 1,
                    cp.seq,
                    format!(
                        "{} missing: the log ends at record {last}, but a signed checkpoint (at {}) vouches for records up to {}",
                        if last + 1 == cp.seq {
                            format!("record {} is", cp.seq)
                        } else {
                            format!("records {} to {} are", last + 1, cp.seq)
                        },
                        cp.at,
                        cp.seq
                    ),
                ))
            }
        }
    }

    pub fn report(&self, first_break: Option<Break>) -> Report {
        let last_seq = self.last.map(|(s, _)| s);
        let uncovered = match (self.first_seq, last_seq, self.covered) {
            (_, Some(l), Some(c)) => l.saturating_sub(c),
            (Some(f), Some(l), None) => l - f + 1,
            _ => 0,
        };
        Report {
            records: self.records,
            checkpoints: self.checkpoints_checked,
            first_seq: self.first_seq,
            last_seq,
            anchor_seq: self.anchor,
            covered_to: self.covered,
            uncovered: u64::try_from(uncovered).unwrap_or(0),
            first_break,
            accepted: Vec::new(),
        }
    }
}

/// What the store files one record under besides its body, as read back (a tamperer may have
/// put anything there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredIndex {
    pub at: String,
    pub kind: String,
    pub transfer_id: Option<String>,
    pub sender: Option<String>,
    pub code: Option<String>,
    /// `log_subjects` rows of the record, sorted.
    pub subjects: Vec<String>,
    /// Its `log_facets` row, if it has one.
    pub facets: Option<StoredFacets>,
    /// `log_recipients` rows of the record, sorted.
    pub recipients: Vec<String>,
}

/// A `log_facets` row as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFacets {
    pub at: String,
    pub decision: String,
    pub transfer_id: Option<String>,
    pub sender: Option<String>,
    pub originator: Option<String>,
    pub purpose: Option<String>,
    pub lawful_basis: Option<String>,
    pub marking: Option<String>,
    pub urgency: Option<String>,
    pub correction_of: Option<String>,
    pub rationale_pending: bool,
}

fn differs<T: PartialEq + fmt::Debug>(
    what: &str,
    stored: T,
    expected: T,
    out: &mut Option<String>,
) {
    if out.is_none() && stored != expected {
        *out = Some(format!(
            "{what} is {stored:?} where the record says {expected:?}"
        ));
    }
}

/// The first way `stored` differs from the index derived from the record, if any.
pub fn index_difference(expected: &Index, stored: &StoredIndex) -> Option<String> {
    let mut d = None;
    let text = |v: &Option<TransferId>| v.map(|t| t.to_string());
    differs(
        "log.kind",
        stored.kind.as_str(),
        expected.kind.as_str(),
        &mut d,
    );
    differs("log.at", stored.at.as_str(), expected.at.as_str(), &mut d);
    differs(
        "log.transfer_id",
        stored.transfer_id.clone(),
        text(&expected.transfer_id),
        &mut d,
    );
    // Delivery attempts written before their body carried the sender were filed under it
    // without it: there is nothing to compare that column with.
    let unrecorded_sender =
        expected.kind == RecordKind::DeliveryAttempt && expected.sender.is_none();
    if !unrecorded_sender {
        differs(
            "log.sender",
            stored.sender.as_deref(),
            expected.sender.as_ref().map(|s| s.as_str()),
            &mut d,
        );
    }
    differs(
        "log.code",
        stored.code.as_deref(),
        expected.code.as_deref(),
        &mut d,
    );
    let mut subjects: Vec<&str> = expected.subjects.iter().map(|s| s.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    differs(
        "log_subjects",
        stored
            .subjects
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        subjects,
        &mut d,
    );
    match (&expected.facets, &stored.facets) {
        (None, None) => {}
        (None, Some(_)) => differs("log_facets", "a row", "none", &mut d),
        (Some(_), None) => differs("log_facets", "no row", "one", &mut d),
        (Some(e), Some(f)) => {
            differs(
                "log_facets.decision",
                f.decision.as_str(),
                e.decision,
                &mut d,
            );
            differs("log_facets.at", f.at.as_str(), expected.at.as_str(), &mut d);
            differs(
                "log_facets.transfer_id",
                f.transfer_id.clone(),
                text(&expected.transfer_id),
                &mut d,
            );
            differs(
                "log_facets.sender",
                f.sender.as_deref(),
                expected.sender.as_ref().map(|s| s.as_str()),
                &mut d,
            );
            differs(
                "log_facets.originator",
                &f.originator,
                &e.originator,
                &mut d,
            );
            differs("log_facets.purpose", &f.purpose, &e.purpose, &mut d);
            differs(
                "log_facets.lawful_basis",
                &f.lawful_basis,
                &e.lawful_basis,
                &mut d,
            );
            differs("log_facets.marking", &f.marking, &e.marking, &mut d);
            differs("log_facets.urgency", &f.urgency, &e.urgency, &mut d);
            differs(
                "log_facets.correction_of",
                f.correction_of.clone(),
                text(&e.correction_of),
                &mut d,
            );
        }
    }
    let mut recipients: Vec<&str> = expected
        .facets
        .iter()
        .flat_map(|f| f.recipients.iter().map(|r| r.as_str()))
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    differs(
        "log_recipients",
        stored
            .recipients
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        recipients,
        &mut d,
    );
    d
}

/// Checks the search indexes record by record, against what each chained body says, and what
/// only the whole stream can say: whether an urgent share's rationale is still pending, and
/// what state each delivery should be in.
#[derive(Default)]
pub struct IndexChecker {
    /// Accepted urgent shares whose rationale was left to follow and has not been added since:
    /// transfer id → the share's seq.
    pending: HashMap<TransferId, i64>,
    /// Seqs whose stored facets say the rationale is pending.
    stored_pending: std::collections::BTreeSet<i64>,
    /// Every delivery an accepted transfer in the log queued, with the outcome of the last
    /// attempt recorded for it (0: none yet). Keyed compactly: a long log has millions.
    deliveries: HashMap<(u128, u16), u8>,
    /// The transfers whose acceptance (which names every delivery queued) is in the log.
    queued_transfers: std::collections::HashSet<u128>,
    recipient_ids: HashMap<String, u16>,
    checked: u64,
}

fn outcome_code(outcome: &str) -> u8 {
    match outcome {
        "retrying" => 1,
        "delivered" => 2,
        "dead" => 3,
        _ => 4,
    }
}

fn outcome_name(code: u8) -> Option<&'static str> {
    match code {
        1 => Some("retrying"),
        2 => Some("delivered"),
        3 => Some("dead"),
        4 => Some("unknown"),
        _ => None,
    }
}

impl IndexChecker {
    fn recipient_id(&mut self, r: &str) -> u16 {
        let next = u16::try_from(self.recipient_ids.len()).unwrap_or(u16::MAX);
        *self.recipient_ids.entry(r.to_owned()).or_insert(next)
    }

    /// One record that verified in the chain, and what the store files it under.
    pub fn record(&mut self, seq: i64, body: &[u8], stored: &StoredIndex) -> Result<(), Break> {
        let expected = index_of(body)
            .map_err(|e| Break::index(seq, format!("record {seq} cannot be filed: {e}")))?;
        if let Some(why) = index_difference(&expected, stored) {
            return Err(Break::index(
                seq,
                format!("the search index disagrees with record {seq}: {why}"),
            ));
        }
        if let (Some(f), Some(t)) = (&expected.facets, expected.transfer_id)
            && f.rationale_to_follow
        {
            self.pending.insert(t, seq);
        }
        if expected.kind == RecordKind::RationaleAdded
            && let Some(t) = expected.transfer_id
        {
            self.pending.remove(&t);
        }
        if stored.facets.as_ref().is_some_and(|f| f.rationale_pending) {
            self.stored_pending.insert(seq);
        }
        if let Some(t) = expected.transfer_id {
            if !expected.delivers_to.is_empty() {
                self.queued_transfers.insert(t.as_u128());
            }
            for r in &expected.delivers_to {
                let key = (t.as_u128(), self.recipient_id(r.as_str()));
                self.deliveries.entry(key).or_insert(0);
            }
            if let Some((r, outcome)) = &expected.attempt {
                let key = (t.as_u128(), self.recipient_id(r.as_str()));
                self.deliveries.insert(key, outcome_code(outcome));
            }
        }
        self.checked += 1;
        Ok(())
    }

    /// Records whose index was checked.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// After the last record: the pending rationales the index claims are the ones the records
    /// say. `prefix`: only part of the log was read (a purge checks what it removes), so a
    /// rationale still pending there may have been recorded after it: only an index that says
    /// pending where the records read say recorded is a disagreement.
    pub fn finish(&self, prefix: bool) -> Option<Break> {
        let expected: std::collections::BTreeSet<i64> = self.pending.values().copied().collect();
        let seq = if prefix {
            self.stored_pending.difference(&expected).next().copied()?
        } else {
            expected
                .symmetric_difference(&self.stored_pending)
                .next()
                .copied()?
        };
        let (is, should) = if self.stored_pending.contains(&seq) {
            ("pending", "recorded since (or never due)")
        } else {
            ("recorded", "still pending")
        };
        Some(Break::index(
            seq,
            format!(
                "the search index disagrees with record {seq}: log_facets.rationale_pending says the urgent share's rationale is {is}, where the records say it is {should}"
            ),
        ))
    }

    /// A delivery queue row, against the records: why its state is not the one the last
    /// recorded attempt implies, or why it should not exist (`None`: it agrees, or its
    /// transfer's acceptance was purged). Each row is taken once; [`IndexChecker::unqueued`]
    /// then names any left without one.
    pub fn delivery(&mut self, transfer: &str, recipient: &str, state: &str) -> Option<String> {
        let t = transfer.parse::<TransferId>().ok()?.as_u128();
        let last = self
            .recipient_ids
            .get(recipient)
            .and_then(|r| self.deliveries.remove(&(t, *r)));
        match last {
            Some(last) => delivery_difference(state, outcome_name(last)),
            // The acceptance is there and did not queue it: someone added the row.
            None if self.queued_transfers.contains(&t) => Some(
                "the transfer's acceptance record did not queue this delivery: the row was added"
                    .to_owned(),
            ),
            None => None,
        }
    }

    /// A delivery an accepted transfer in the log queued, whose queue row is gone: (transfer,
    /// recipient).
    pub fn unqueued(&self) -> Option<(String, String)> {
        let ((t, r), _) = self.deliveries.iter().min_by_key(|(k, _)| **k)?;
        let recipient = self
            .recipient_ids
            .iter()
            .find(|(_, id)| *id == r)
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        Some((
            TransferId::from_uuid(uuid::Uuid::from_u128(*t)).to_string(),
            recipient,
        ))
    }
}

/// An index row for a record that does not exist, or that is not filed that way.
pub fn orphan_index(table: &str, seq: i64) -> Break {
    Break::index(
        seq,
        format!(
            "{table} holds a row for record {seq}, which the chained records do not file there: the row was added"
        ),
    )
}

/// A delivery's state, checked against the last attempt the chained records hold for it.
pub fn delivery_difference(state: &str, last_outcome: Option<&str>) -> Option<String> {
    let fits = match state {
        "delivered" => last_outcome == Some("delivered"),
        "dead" => last_outcome == Some("dead"),
        "queued" => last_outcome.is_none(),
        "retrying" | "delivering" => matches!(last_outcome, None | Some("retrying")),
        _ => false,
    };
    (!fits).then(|| {
        format!(
            "its state is `{state}` where the last attempt recorded for it {}",
            last_outcome.map_or_else(|| "does not exist".to_owned(), |o| format!("ended `{o}`"))
        )
    })
}

/// Where the log's head stands against the last checkpoint the gateway signed (in the database
/// or the checkpoint file), at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadState {
    /// Nothing was signed yet, or the head is the last checkpoint.
    Signed,
    /// Records after the last checkpoint, which was not a clean shutdown's: the gateway wrote
    /// them before it stopped uncleanly, and signs them now.
    AfterUncleanStop { checkpoint: i64, head: i64 },
    /// Records after the checkpoint the gateway signed at a clean shutdown: written while it
    /// was stopped, by something else.
    Appended { checkpoint: i64, head: i64 },
    /// The log ends before the last checkpoint: records were deleted.
    Truncated { checkpoint: i64, head: i64 },
    /// The record at the last checkpoint's seq is not the one that was signed.
    Diverged { checkpoint: i64 },
}

impl HeadState {
    /// Whether the gateway may start on this log (and sign what follows).
    pub fn may_start(&self) -> bool {
        matches!(self, HeadState::Signed | HeadState::AfterUncleanStop { .. })
    }

    /// Whether a node of a shared store may start on this log. There the other nodes go on
    /// appending while one is stopped, so records after its clean shutdown's checkpoint are
    /// expected; records deleted or rewritten are not.
    pub fn may_start_shared(&self) -> bool {
        self.may_start() || matches!(self, HeadState::Appended { .. })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            HeadState::Signed => "signed",
            HeadState::AfterUncleanStop { .. } => "after_unclean_stop",
            HeadState::Appended { .. } => "appended",
            HeadState::Truncated { .. } => "truncated",
            HeadState::Diverged { .. } => "diverged",
        }
    }

    /// One sentence for an operator.
    pub fn describe(&self) -> String {
        match self {
            HeadState::Signed => "the log's head is the last checkpoint signed".into(),
            HeadState::AfterUncleanStop { checkpoint, head } => format!(
                "records {} to {head} were written after the last checkpoint (record {checkpoint}) before the gateway stopped uncleanly",
                checkpoint + 1
            ),
            HeadState::Appended { checkpoint, head } => format!(
                "records {} to {head} were added to the transfer log while the gateway was stopped: at its last clean shutdown it signed record {checkpoint} as the head",
                checkpoint + 1
            ),
            HeadState::Truncated { checkpoint, head } => format!(
                "the transfer log ends at record {head}, but the gateway signed record {checkpoint} as the head: records were deleted"
            ),
            HeadState::Diverged { checkpoint } => format!(
                "record {checkpoint} is not the record the gateway signed at that position: the log was rewritten"
            ),
        }
    }
}

/// The head against the last checkpoint. `head`: the last record's seq and hash; `at_checkpoint`:
/// the hash of the record at the checkpoint's seq, if there is one; `clean`: whether the
/// checkpoint was signed at a clean shutdown.
pub fn head_state(
    head: Option<(i64, [u8; 32])>,
    last: Option<&Checkpoint>,
    at_checkpoint: Option<&[u8]>,
    clean: bool,
) -> HeadState {
    let Some(cp) = last else {
        return HeadState::Signed;
    };
    let head_seq = head.map_or(0, |(s, _)| s);
    if head_seq < cp.seq {
        return HeadState::Truncated {
            checkpoint: cp.seq,
            head: head_seq,
        };
    }
    if at_checkpoint != Some(cp.hash.as_slice()) {
        return HeadState::Diverged { checkpoint: cp.seq };
    }
    if head_seq == cp.seq {
        return HeadState::Signed;
    }
    if clean {
        HeadState::Appended {
            checkpoint: cp.seq,
            head: head_seq,
        }
    } else {
        HeadState::AfterUncleanStop {
            checkpoint: cp.seq,
            head: head_seq,
        }
    }
}

/// An operator's acceptance of a head the gateway had not signed, as it bears on checkpoints:
/// those signed before it for records after `valid_to` vouch for nothing any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acceptance {
    /// The `head_accepted` record.
    pub seq: i64,
    pub at: String,
    pub found: String,
    pub found_seq: i64,
    pub checkpoint_seq: i64,
    pub valid_to: Option<i64>,
    pub reason: String,
}

impl Acceptance {
    /// The acceptance a `head_accepted` record at `seq` holds; `None` if its body is not one
    /// (a break the chain check reports).
    pub fn parse(seq: i64, body: &[u8]) -> Option<Acceptance> {
        let a: crate::log::HeadAcceptedRecord = serde_json::from_slice(body).ok()?;
        Some(Acceptance {
            seq,
            at: a.at,
            found: a.found,
            found_seq: a.found_seq,
            checkpoint_seq: a.checkpoint_seq,
            valid_to: a.valid_to,
            reason: a.reason,
        })
    }

    /// Whether the gateway's key vouches for this acceptance: `postern log accept-head` signs
    /// the head it appends, so a genuine acceptance has a checkpoint of its own record (same
    /// seq, time and hash) under one of `keys`. Anyone who can write to the database can append
    /// a record that parses as an acceptance; only the key holder can sign one, and an
    /// acceptance that is not signed voids nothing.
    pub fn is_signed(&self, record_hash: &[u8], cps: &[Checkpoint], keys: &[PublicKey]) -> bool {
        cps.iter().any(|c| {
            c.seq == self.seq
                && c.at == self.at
                && c.hash.as_slice() == record_hash
                && c.fault(keys).is_none()
        })
    }

    pub fn voids(&self, cp: &Checkpoint) -> bool {
        self.valid_to
            .is_some_and(|v| cp.seq > v && cp.at.as_str() < self.at.as_str())
    }
}

/// Merges checkpoints from the database and the checkpoint file: one entry for each distinct
/// checkpoint, sorted by seq, without those an acceptance voided. Of the file's old checkpoints
/// (older than [`KEEP_EVERY_DAYS`] before the newest), one a day is kept: each vouches for every
/// record before it, and checking hundreds of thousands of signatures would cost more than it
/// tells. Returns the checkpoints and how many of the file's were used.
pub fn merge_checkpoints(
    db: Vec<Checkpoint>,
    file: Vec<Checkpoint>,
    accepted: &[Acceptance],
    first_seq: Option<i64>,
) -> (Vec<Checkpoint>, usize) {
    let mut file: Vec<Checkpoint> = file
        .into_iter()
        // Before the log's first record, only the anchor it chains from matters.
        .filter(|c| first_seq.is_none_or(|f| c.seq >= f - 1))
        .collect();
    file.sort_by(|a, b| (a.seq, &a.at).cmp(&(b.seq, &b.at)));
    let newest = file
        .iter()
        .map(|c| c.at.as_str())
        .max()
        .unwrap_or("")
        .to_owned();
    let recent_from = crate::clock::parse(&newest)
        .map(|t| crate::clock::stamp(t - time::Duration::days(KEEP_EVERY_DAYS)))
        .unwrap_or_default();
    let last_seq = file.last().map(|c| c.seq);
    let mut kept_days: std::collections::HashMap<String, usize> = Default::default();
    let mut thinned = Vec::new();
    for c in file {
        if c.at.as_str() >= recent_from.as_str()
            || Some(c.seq) == last_seq
            || Some(c.seq + 1) == first_seq
        {
            thinned.push(c);
            continue;
        }
        let day = c.at.get(..10).unwrap_or("").to_owned();
        // The last of each day (the file is in seq order).
        match kept_days.get(&day) {
            Some(&i) => thinned[i] = c,
            None => {
                kept_days.insert(day, thinned.len());
                thinned.push(c);
            }
        }
    }
    let used = thinned.len();
    let mut all: Vec<Checkpoint> = db.into_iter().chain(thinned).collect();
    all.retain(|c| !accepted.iter().any(|a| a.voids(c)));
    all.sort_by(|a, b| (a.seq, &a.at, &a.signature).cmp(&(b.seq, &b.at, &b.signature)));
    all.dedup_by(|a, b| {
        a.seq == b.seq && a.at == b.at && a.hash == b.hash && a.signature == b.signature
    });
    (all, used)
}

/// How many days of the checkpoint file's newest checkpoints are all checked.
pub const KEEP_EVERY_DAYS: i64 = 7;

/// Checks every checkpoint's signature, spread over the available cores (ed25519 verification
/// is the costly part of a check with many checkpoints).
fn faults(keys: &[PublicKey], checkpoints: &[Checkpoint]) -> Vec<Option<String>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || checkpoints.len() < 256 {
        return checkpoints.iter().map(|c| c.fault(keys)).collect();
    }
    let chunk = checkpoints.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = checkpoints
            .chunks(chunk)
            .map(|part| {
                let handle = s.spawn(move || part.iter().map(|c| c.fault(keys)).collect());
                (part, handle)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(part, handle)| {
                // A panicking check (there is none to expect) must not pass for a valid one.
                handle.join().unwrap_or_else(|_| {
                    part.iter()
                        .map(|_| Some("the signature could not be checked".to_owned()))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    })
}

/// Where a row's content was written: a position other than its own at which it verifies.
fn home<L: Lookup>(r: &OwnedRow, lookup: &mut L) -> Result<Option<i64>, L::Error> {
    let row = r.as_row();
    let p = r.seq;
    for c in [p - 1, p + 1] {
        if c >= 1 && row.fits_at(c) {
            return Ok(Some(c));
        }
    }
    // The place after the record it chains from: finds a record moved any distance.
    if r.prev_hash == GENESIS && p != 1 && row.fits_at(1) {
        return Ok(Some(1));
    }
    if let Some(s) = lookup.seq_of_hash(&r.prev_hash)?
        && s + 1 != p
        && row.fits_at(s + 1)
    {
        return Ok(Some(s + 1));
    }
    for d in 2..=SEARCH_WINDOW {
        for c in [p - d, p + d] {
            if c >= 1 && row.fits_at(c) {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

fn fits<L: Lookup>(lookup: &mut L, at: i64, seq: i64) -> Result<Option<bool>, L::Error> {
    Ok(lookup.row(at)?.map(|r| r.as_row().fits_at(seq)))
}

/// Says what happened at a row that did not verify.
pub fn classify<L: Lookup>(s: &Suspect, lookup: &mut L) -> Result<Break, L::Error> {
    let r = &s.row;
    let p = r.seq;
    if r.as_row().fits_at(p) {
        if p > s.expected_seq {
            let (from, to) = (s.expected_seq, p - 1);
            return Ok(Break::range(
                BreakKind::Deleted,
                from,
                to,
                format!(
                    "{} missing: the sequence jumps from {} to {p}",
                    if from == to {
                        format!("record {from} is")
                    } else {
                        format!("records {from} to {to} are")
                    },
                    from - 1
                ),
            ));
        }
        // Intact where it stands, but not chained to the record before it.
        if !s.after_verified {
            let from = if p == 1 {
                "the start of the log".to_owned()
            } else {
                format!("the signed checkpoint of record {}", p - 1)
            };
            return Ok(Break::one(
                BreakKind::Altered,
                p,
                format!(
                    "record {p} does not chain from {from}: its link was altered and its hash recomputed"
                ),
            ));
        }
        return Ok(match lookup.seq_of_hash(&r.prev_hash)? {
            Some(other) if other != p - 1 => Break {
                kind: BreakKind::Reordered,
                seq: p - 1,
                to_seq: p - 1,
                other_seq: Some(other),
                message: format!(
                    "record {p} was chained to the record now at {other}, not to record {}",
                    p - 1
                ),
            },
            _ => Break::one(
                BreakKind::Altered,
                p - 1,
                format!(
                    "record {} is not the record that record {p} was chained to: it was altered and its hash recomputed",
                    p - 1
                ),
            ),
        });
    }
    let Some(c) = home(r, lookup)? else {
        // New content, or altered content. If the next record belongs here, this one was put
        // in front of it.
        if fits(lookup, p + 1, p)? == Some(true) {
            return Ok(Break::one(
                BreakKind::Inserted,
                p,
                format!(
                    "record {p} is not part of the chain: the record after it was written at {p}, so it was inserted and the records after it renumbered"
                ),
            ));
        }
        return Ok(Break::one(
            BreakKind::Altered,
            p,
            format!("record {p} was altered: its content no longer matches its hash"),
        ));
    };
    if c < p {
        return Ok(Break::range(
            BreakKind::Inserted,
            c,
            p - 1,
            format!(
                "{} not part of the chain: the record now at {p} was written at {c}, so {} inserted before it and the records after renumbered",
                if c == p - 1 {
                    format!("record {c} is")
                } else {
                    format!("records {c} to {} are", p - 1)
                },
                if c == p - 1 { "one was" } else { "they were" }
            ),
        ));
    }
    let n = c - p;
    let swapped = Break {
        kind: BreakKind::Reordered,
        seq: p,
        to_seq: p,
        other_seq: Some(c),
        message: format!("records {p} and {c} were swapped"),
    };
    if fits(lookup, c, p)? == Some(true) {
        return Ok(swapped);
    }
    match fits(lookup, p + 1, p + 1 + n)? {
        Some(true) | None => Ok(Break::range(
            BreakKind::Deleted,
            p,
            c - 1,
            format!(
                "{} deleted and the records after renumbered: the record now at {p} was written at {c}",
                if n == 1 {
                    format!("record {p} was")
                } else {
                    format!("{} were", records(p, c - 1))
                }
            ),
        )),
        Some(false) => Ok(Break {
            message: format!("the record now at {p} was written at {c}: it was moved"),
            ..swapped
        }),
    }
}

/// Checks rows held in memory (tests; small logs).
pub fn verify_rows(rows: &[OwnedRow], checkpoints: Vec<Checkpoint>, keys: &[PublicKey]) -> Report {
    let mut v = Verifier::new(keys, checkpoints);
    let mut lookup = MemoryLookup {
        rows,
        by_hash: None,
    };
    for r in rows {
        match v.row(r.as_row()) {
            Ok(()) => {}
            Err(Stop::Break(b)) => return v.report(Some(b)),
            Err(Stop::Suspect(s)) => {
                let b = match classify(&s, &mut lookup) {
                    Ok(b) => b,
                    Err(never) => match never {},
                };
                return v.report(Some(b));
            }
        }
    }
    let b = v.finish();
    v.report(b)
}

struct MemoryLookup<'a> {
    rows: &'a [OwnedRow],
    by_hash: Option<HashMap<Vec<u8>, i64>>,
}

impl Lookup for MemoryLookup<'_> {
    type Error = std::convert::Infallible;

    fn row(&mut self, seq: i64) -> Result<Option<OwnedRow>, Self::Error> {
        Ok(self.rows.iter().find(|r| r.seq == seq).cloned())
    }

    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, Self::Error> {
        let map = self.by_hash.get_or_insert_with(|| {
            let mut m = HashMap::new();
            for r in self.rows {
                m.entry(r.hash.clone()).or_insert(r.seq);
            }
            m
        });
        Ok(map.get(hash).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap()
    }

    fn public(k: &Ed25519KeyPair) -> PublicKey {
        PublicKey::from_bytes(k.public_key().as_ref().try_into().unwrap())
    }

    /// A chain of `n` records, numbered from 1.
    fn chain(n: i64) -> Vec<OwnedRow> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let body = format!("{{\"n\":{seq}}}").into_bytes();
                let hash = chain_hash(&prev, seq, &body);
                let r = OwnedRow {
                    seq,
                    prev_hash: prev.to_vec(),
                    hash: hash.to_vec(),
                    body,
                };
                prev = hash;
                r
            })
            .collect()
    }

    fn sign(k: &Ed25519KeyPair, row: &OwnedRow) -> Checkpoint {
        let at = format!("2026-11-22T00:00:{:02}.000000Z", row.seq % 60);
        let hash: [u8; 32] = row.hash.clone().try_into().unwrap();
        Checkpoint {
            seq: row.seq,
            signature: k
                .sign(&signed_message(row.seq, &hash, &at))
                .as_ref()
                .to_vec(),
            at,
            hash: row.hash.clone(),
            public_key: public(k).to_string(),
        }
    }

    fn check(rows: &[OwnedRow], cps: Vec<Checkpoint>) -> Report {
        verify_rows(rows, cps, &[public(&key())])
    }

    fn broken(rows: &[OwnedRow]) -> (BreakKind, i64, i64, Option<i64>) {
        let b = check(rows, Vec::new()).first_break.expect("a break");
        (b.kind, b.seq, b.to_seq, b.other_seq)
    }

    fn renumber(rows: &mut [OwnedRow], from_index: usize, by: i64) {
        for r in &mut rows[from_index..] {
            r.seq += by;
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_what_is_not_yet_signed() {
        let rows = chain(10);
        let r = check(&rows, vec![sign(&key(), &rows[6])]);
        assert!(r.intact(), "{r:?}");
        assert_eq!((r.records, r.checkpoints), (10, 1));
        assert_eq!((r.covered_to, r.uncovered), (Some(7), 3));
        let empty = check(&[], Vec::new());
        assert!(empty.intact());
        assert_eq!(empty.records, 0);
    }

    #[test]
    fn an_altered_byte_is_located() {
        let mut rows = chain(10);
        rows[4].body[3] ^= 1;
        assert_eq!(broken(&rows), (BreakKind::Altered, 5, 5, None));
        // A hash or link altered is the same finding.
        let mut rows = chain(10);
        rows[0].hash[0] ^= 1;
        assert_eq!(broken(&rows).0, BreakKind::Altered);
        assert_eq!(broken(&rows).1, 1);
    }

    #[test]
    fn an_altered_record_with_its_hash_recomputed_is_located_by_the_next_link() {
        let mut rows = chain(10);
        rows[4].body[3] ^= 1;
        let prev: [u8; 32] = rows[4].prev_hash.clone().try_into().unwrap();
        rows[4].hash = chain_hash(&prev, 5, &rows[4].body).to_vec();
        assert_eq!(broken(&rows), (BreakKind::Altered, 5, 5, None));
    }

    #[test]
    fn deletions_are_located_with_or_without_renumbering() {
        let mut rows = chain(10);
        rows.remove(3);
        assert_eq!(broken(&rows), (BreakKind::Deleted, 4, 4, None));
        let mut rows = chain(10);
        rows.drain(3..6);
        assert_eq!(broken(&rows), (BreakKind::Deleted, 4, 6, None));
        let mut rows = chain(10);
        rows.remove(3);
        renumber(&mut rows, 3, -1);
        assert_eq!(broken(&rows), (BreakKind::Deleted, 4, 4, None));
        let mut rows = chain(10);
        rows.drain(3..6);
        renumber(&mut rows, 3, -3);
        assert_eq!(broken(&rows), (BreakKind::Deleted, 4, 6, None));
        // The last record deleted, and the one before renumbered into its place: nothing after.
        let mut rows = chain(10);
        rows.remove(8);
        renumber(&mut rows, 8, -1);
        assert_eq!(broken(&rows), (BreakKind::Deleted, 9, 9, None));
        // The first records deleted.
        let rows = chain(10);
        assert_eq!(broken(&rows[3..]), (BreakKind::Deleted, 1, 3, None));
    }

    #[test]
    fn insertions_are_located_whether_or_not_their_hash_looks_right() {
        for good_hash in [true, false] {
            let mut rows = chain(10);
            renumber(&mut rows, 4, 1);
            let prev = rows[3].hash.clone();
            let body = b"{\"forged\":true}".to_vec();
            let hash = if good_hash {
                chain_hash(&prev.clone().try_into().unwrap(), 5, &body).to_vec()
            } else {
                vec![9; 32]
            };
            rows.insert(
                4,
                OwnedRow {
                    seq: 5,
                    prev_hash: prev,
                    hash,
                    body,
                },
            );
            assert_eq!(
                broken(&rows),
                (BreakKind::Inserted, 5, 5, None),
                "{good_hash}"
            );
        }
        // Two inserted with good hashes.
        let mut rows = chain(10);
        renumber(&mut rows, 4, 2);
        let mut prev: [u8; 32] = rows[3].hash.clone().try_into().unwrap();
        for seq in [5, 6] {
            let body = format!("{{\"forged\":{seq}}}").into_bytes();
            let hash = chain_hash(&prev, seq, &body);
            rows.insert(
                usize::try_from(seq - 1).unwrap(),
                OwnedRow {
                    seq,
                    prev_hash: prev.to_vec(),
                    hash: hash.to_vec(),
                    body,
                },
            );
            prev = hash;
        }
        assert_eq!(broken(&rows), (BreakKind::Inserted, 5, 6, None));
    }

    #[test]
    fn swaps_are_located_near_or_far() {
        for (a, b) in [(4usize, 5usize), (2, 8), (0, 9)] {
            let mut rows = chain(10);
            let (sa, sb) = (rows[a].seq, rows[b].seq);
            rows[a].seq = sb;
            rows[b].seq = sa;
            rows.sort_by_key(|r| r.seq);
            assert_eq!(
                broken(&rows),
                (BreakKind::Reordered, sa, sa, Some(sb)),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_its_checkpoint() {
        let k = key();
        let original = chain(10);
        let cps = vec![sign(&k, &original[2]), sign(&k, &original[7])];
        // Record 5 altered and every hash from it recomputed: the chain itself is consistent.
        let mut rows = original.clone();
        rows[4].body[3] ^= 1;
        let mut prev: [u8; 32] = rows[4].prev_hash.clone().try_into().unwrap();
        for r in &mut rows[4..] {
            r.prev_hash = prev.to_vec();
            prev = chain_hash(&prev, r.seq, &r.body);
            r.hash = prev.to_vec();
        }
        assert!(check(&rows, Vec::new()).intact());
        let b = check(&rows, cps.clone()).first_break.unwrap();
        assert_eq!((b.kind, b.seq, b.to_seq), (BreakKind::Rewritten, 4, 8));
        // Re-signing needs the key: a checkpoint altered to match is a bad checkpoint.
        let mut forged = cps;
        forged[1].hash = rows[7].hash.clone();
        let b = check(&rows, forged).first_break.unwrap();
        assert_eq!((b.kind, b.seq), (BreakKind::BadCheckpoint, 8));
        // As is one signed by another key.
        let other = Ed25519KeyPair::from_seed_unchecked(&[8; 32]).unwrap();
        let b = check(&original, vec![sign(&other, &original[2])])
            .first_break
            .unwrap();
        assert_eq!((b.kind, b.seq), (BreakKind::BadCheckpoint, 3));
        assert!(b.message.contains(&public(&other).fingerprint()));
    }

    #[test]
    fn a_purged_log_verifies_from_its_anchor_and_only_from_it() {
        let k = key();
        let rows = chain(10);
        let anchor = sign(&k, &rows[3]);
        let r = check(&rows[4..], vec![anchor.clone()]);
        assert!(r.intact(), "{r:?}");
        assert_eq!(
            (r.first_seq, r.anchor_seq, r.records, r.uncovered),
            (Some(5), Some(4), 6, 6)
        );
        // Records deleted after the anchor.
        let b = check(&rows[6..], vec![anchor]).first_break.unwrap();
        assert_eq!((b.kind, b.seq, b.to_seq), (BreakKind::Deleted, 5, 6));
        // Records deleted from the end, below a checkpoint.
        let b = check(&rows[..6], vec![sign(&k, &rows[8])])
            .first_break
            .unwrap();
        assert_eq!((b.kind, b.seq, b.to_seq), (BreakKind::Deleted, 7, 9));
    }

    #[test]
    fn public_keys_read_as_base64_or_hex_and_print_a_fingerprint() {
        let k = public(&key());
        assert_eq!(k.to_string().parse::<PublicKey>(), Ok(k));
        assert_eq!(hex::encode(k.as_bytes()).parse::<PublicKey>(), Ok(k));
        assert_eq!("AAAA".parse::<PublicKey>(), Err(BadPublicKey));
        assert!(k.fingerprint().starts_with("SHA256:"));
        assert_eq!(k.fingerprint().len(), 7 + 43);
    }

    #[test]
    fn the_signed_message_is_domain_separated_and_covers_every_field() {
        let m = signed_message(5, &[1; 32], "2026-11-22T00:00:00.000000Z");
        assert!(m.starts_with(CHECKPOINT_DOMAIN));
        assert_ne!(
            m,
            signed_message(6, &[1; 32], "2026-11-22T00:00:00.000000Z")
        );
        assert_ne!(
            m,
            signed_message(5, &[2; 32], "2026-11-22T00:00:00.000000Z")
        );
        assert_ne!(
            m,
            signed_message(5, &[1; 32], "2026-11-22T00:00:01.000000Z")
        );
    }
}
