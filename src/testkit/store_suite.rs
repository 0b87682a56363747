//! One suite of store checks for both backends: what ingest, the delivery queue, the inbox,
//! requests for information and the web pages' sign-in ask of the store, run through
//! [`Db`] against a migrated database (SQLite or PostgreSQL) and checked step by step. The
//! tests call [`run`] once per backend; a check that fails says which, and why.

use crate::domain::ids::{OrgId, RequestId, TransferId};
use crate::domain::info_request::RequestState;
use crate::seal::SealSummary;
use crate::store::db::{Db, Value};
use crate::store::inbox::{self, Inserted, NewInboxItem};
use crate::store::queue::{self, Due, Finish};
use crate::store::{
    IdempotencyClaim, NewDelivery, NewTransfer, StoreError, StoredPayload, decisions, feedback,
    requests, web,
};

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A check did not hold: which one, and what was found.
    #[error("{check}: {found}")]
    Check { check: String, found: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check(ok: bool, check: &str, found: impl std::fmt::Debug) -> Result<(), SuiteError> {
    if ok {
        Ok(())
    } else {
        Err(SuiteError::Check {
            check: check.into(),
            found: format!("{found:?}"),
        })
    }
}

fn same<T: PartialEq + std::fmt::Debug>(a: T, b: T, what: &str) -> Result<(), SuiteError> {
    let ok = a == b;
    check(ok, what, (a, b))
}

fn org(s: &str) -> Result<OrgId, SuiteError> {
    s.parse().map_err(|_| SuiteError::Check {
        check: "an organisation id".into(),
        found: s.into(),
    })
}

/// Runs every check in one database, which must hold the current schema; rows are keyed by
/// fresh ids, so the suite may run again in the same database. Returns the checks' names.
pub fn run(db: &dyn Db) -> Result<Vec<&'static str>, SuiteError> {
    sign_in(db)?;
    log_records(db)?;
    transfers_and_queue(db)?;
    inbox_items(db)?;
    information_requests(db)?;
    Ok(vec![
        "sign-in codes, attempts, sessions, passkeys, ceremonies",
        "log records with their subjects and facets, found by search",
        "transfers, idempotency, the delivery queue, status",
        "the inbox: new, repeat, conflict, acknowledged",
        "requests for information: made, listed, answered, reported",
    ])
}

fn fresh() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn sign_in(db: &dyn Db) -> Result<(), SuiteError> {
    let who = format!("{}@x.example", fresh());
    let (p1, p2) = (fresh(), fresh());
    web::code_issue(db, &p1, &who, "right", 1000)?;
    same(
        web::code_check(db, &p1, "right", 1601, 600, 5)?,
        web::CodeCheck::Expired(who.clone()),
        "a code older than its age is expired",
    )?;
    same(
        web::code_check(db, &p1, "right", 1602, 600, 5)?,
        web::CodeCheck::Unknown,
        "an expired code is gone",
    )?;
    web::code_issue(db, &p2, &who, "right", 2000)?;
    same(
        web::code_check(db, &p2, "wrong", 2001, 600, 2)?,
        web::CodeCheck::Wrong {
            email: who.clone(),
            tries_left: 1,
        },
        "a wrong code counts a try",
    )?;
    // Issued again for the same browser: the new code replaces the old, tries start again.
    web::code_issue(db, &p2, &who, "newer", 2002)?;
    same(
        web::code_check(db, &p2, "newer", 2003, 600, 2)?,
        web::CodeCheck::Right(who.clone()),
        "the newest code works, once",
    )?;
    same(
        web::code_check(db, &p2, "newer", 2004, 600, 2)?,
        web::CodeCheck::Unknown,
        "a used code is gone",
    )?;

    let bucket = format!("ip:{}", fresh());
    web::attempt(db, &[&bucket], 5_000_000, 0)?;
    web::attempt(db, &[&bucket], 5_000_100, 0)?;
    same(
        web::attempts(db, &bucket, 5_000_050)?,
        1,
        "attempts within the window",
    )?;

    let session = fresh();
    web::session_create(db, &session, &who, 7000, 0)?;
    web::session_touch(db, &session, 7100)?;
    same(
        web::session(db, &session)?,
        Some(web::Session {
            email: who.clone(),
            created_at: 7000,
            seen_at: 7100,
        }),
        "a session as kept",
    )?;
    web::session_end(db, &session)?;
    same(web::session(db, &session)?, None, "an ended session")?;

    let cred = fresh();
    let p = web::StoredPasskey {
        cred_id: cred.clone(),
        user_id: "u".into(),
        passkey: "{}".into(),
        name: "Work laptop".into(),
        created_at: 10,
        used_at: None,
    };
    check(web::passkey_add(db, &who, &p)?, "a passkey is kept", ())?;
    check(
        !web::passkey_add(db, "someone@else.example", &p)?,
        "a credential is one person's",
        (),
    )?;
    web::passkey_used(db, &cred, Some("{\"n\":1}"), 20)?;
    let kept = web::passkeys(db, &who)?;
    same(
        kept.iter()
            .map(|k| (k.passkey.as_str(), k.used_at))
            .collect::<Vec<_>>(),
        vec![("{\"n\":1}", Some(20))],
        "a passkey after use",
    )?;
    check(
        web::passkey_remove(db, &who, &cred)?,
        "a passkey removed",
        (),
    )?;

    let ceremony = fresh();
    web::ceremony_put(db, &ceremony, "register", &who, "s1", 9_000_000)?;
    web::ceremony_put(db, &ceremony, "register", &who, "s2", 9_000_001)?;
    same(
        web::ceremony_take(db, &ceremony, "register", 9_000_002, 300)?,
        Some((who.clone(), "s2".into())),
        "the newest ceremony state, taken",
    )?;
    same(
        web::ceremony_take(db, &ceremony, "register", 9_000_003, 300)?,
        None,
        "a ceremony is taken once",
    )?;
    Ok(())
}

/// Decision records written as the chain writes them (with the node that wrote them, where
/// several share the store), then found by the DPO's search by person and by transfer.
fn log_records(db: &dyn Db) -> Result<(), SuiteError> {
    use crate::store::db::Dialect;
    use crate::store::search::{self, LogQuery};
    let key =
        crate::domain::subject::SubjectKey::new(vec![0x5a; 32]).map_err(|_| SuiteError::Check {
            check: "a subject key".into(),
            found: String::new(),
        })?;
    let start = time::OffsetDateTime::now_utc();
    let entries =
        super::synthetic::decision_entries(u64::from(start.nanosecond()), 12, 3, start, &key)?;
    let node = match db.dialect() {
        Dialect::Sqlite => None,
        Dialect::Postgres => Some("suite-node"),
    };
    let first = db
        .row("SELECT COALESCE(MAX(seq), 0) + 1 FROM log", &[])?
        .map_or(Ok(1), |r| r.int(0))?;
    let mut prev = crate::log::GENESIS;
    for (i, e) in entries.iter().enumerate() {
        let seq = first + i64::try_from(i).unwrap_or(0);
        let hash = crate::log::chain_hash(&prev, seq, &e.body);
        crate::store::append_row(db, seq, e, &prev, &hash, node)?;
        prev = hash;
    }
    let with_subject = entries
        .iter()
        .position(|e| !e.subjects.is_empty() && e.facets.is_some())
        .ok_or_else(|| SuiteError::Check {
            check: "a generated decision about a person".into(),
            found: String::new(),
        })?;
    let e = &entries[with_subject];
    let seq = first + i64::try_from(with_subject).unwrap_or(0);
    let found = search::decisions(
        db,
        &LogQuery {
            subject_hash: Some(e.subjects[0].as_str().to_owned()),
            ..LogQuery::default()
        },
    )?;
    check(
        found.iter().any(|r| r.seq == seq),
        "a decision found by the person it is about",
        found.iter().map(|r| r.seq).collect::<Vec<_>>(),
    )?;
    let by_transfer = search::decisions(
        db,
        &LogQuery {
            transfer: e.transfer_id.map(|t| t.to_string()),
            ..LogQuery::default()
        },
    )?;
    // (The generator's transfer ids repeat from one run to the next: a second run finds both.)
    let mine = by_transfer.iter().find(|r| r.seq == seq);
    let facets = e.facets.as_ref().map(|f| f.recipients.len()).unwrap_or(0);
    same(
        mine.map(|r| r.recipients.len()),
        Some(facets),
        "a decision found by its transfer, with its recipients as filed",
    )?;
    if let Some(n) = node {
        let wrote = db
            .row("SELECT node FROM log WHERE seq = ?1", &[Value::Int(seq)])?
            .map(|r| r.opt_text(0))
            .transpose()?
            .flatten();
        same(
            wrote.as_deref(),
            Some(n),
            "the record says which node wrote it",
        )?;
    }
    Ok(())
}

fn summary() -> SealSummary {
    SealSummary {
        plaintext_size: 4096,
        plaintext_sha256: [7; 32],
        sealed_size: 4300,
        sealed_sha256: [9; 32],
    }
}

fn transfers_and_queue(db: &dyn Db) -> Result<(), SuiteError> {
    let id = TransferId::from_uuid(uuid::Uuid::now_v7());
    let sender = org("northshire-police")?;
    let (a, b) = (org("northshire-cc")?, org("riverside-youth")?);
    let at = "2026-12-01T10:00:00.000000Z";
    let t = NewTransfer {
        id,
        sender: sender.clone(),
        received_at: at.into(),
        purpose: "child-protection-s47".into(),
        marking: "OFFICIAL-SENSITIVE".into(),
        payload: StoredPayload::Inline(vec![1, 2, 3]),
        summary: summary(),
        sealed_envelope: vec![4, 5, 6],
        deliveries: vec![
            NewDelivery {
                recipient: a.clone(),
                agreement: "northshire-isa".parse().map_err(|_| SuiteError::Check {
                    check: "an agreement id".into(),
                    found: String::new(),
                })?,
                channel: "https",
            },
            NewDelivery {
                recipient: b.clone(),
                agreement: "youth-isa".parse().map_err(|_| SuiteError::Check {
                    check: "an agreement id".into(),
                    found: String::new(),
                })?,
                channel: "inbox",
            },
        ],
    };
    crate::store::insert_transfer(db, &t, 1)?;

    // The idempotency key: the first claim is kept, a second gets the first answer back.
    let key = IdempotencyClaim {
        sender: sender.clone(),
        key: fresh(),
        request_sha256: "abc".into(),
        at: at.into(),
    };
    same(
        crate::store::claim_key(db, &key, 202, "{\"first\":1}".into())?,
        None,
        "a new key is claimed",
    )?;
    let again = crate::store::claim_key(db, &key, 202, "{\"second\":1}".into())?;
    same(
        again.map(|a| (a.status, a.response)),
        Some((202, "{\"first\":1}".to_owned())),
        "a repeated key answers as the first time",
    )?;

    let status = crate::store::transfer_status(db, &id.to_string(), &sender)?;
    let Some(status) = status else {
        return Err(SuiteError::Check {
            check: "the sender sees its transfer".into(),
            found: "nothing".into(),
        });
    };
    same(status.recipients.len(), 2, "one delivery per recipient")?;
    same(status.payload_size, 4096, "the size as accepted")?;
    same(
        crate::store::transfer_status(db, &id.to_string(), &a)?,
        None,
        "no one else sees it",
    )?;
    check(
        decisions::sent_by(db, &id.to_string(), sender.as_str())?,
        "sent by its sender",
        (),
    )?;
    let corrected = decisions::corrected(db, &id.to_string())?;
    same(
        corrected.map(|c| {
            let mut r = c.recipients;
            r.sort();
            (c.sender, r)
        }),
        Some((sender.clone(), vec![a.clone(), b.clone()])),
        "what a correction needs to know",
    )?;

    // The queue: due, claimed, the job loaded, one delivered and one dead, then purged.
    let mine = |v: Vec<Due>| -> Vec<String> {
        v.into_iter()
            .filter(|d| d.transfer_id == id.to_string())
            .map(|d| d.recipient)
            .collect()
    };
    let later = "2026-12-01T10:00:01.000000Z";
    // On PostgreSQL the queue is shared: each claim is a node's lease, until a time.
    let shared = db.dialect() == crate::store::db::Dialect::Postgres;
    let (node_a, node_b) = if shared {
        (Some("suite-a"), Some("suite-b"))
    } else {
        (None, None)
    };
    let until = "2026-12-01T10:00:31.000000Z";
    let lapsed = "2026-12-01T10:00:40.000000Z";
    let lease = |node: Option<&'static str>| node.map(|node| queue::Lease { node, until });
    let by = |node: Option<&'static str>, n: i64| {
        node.map(|node| queue::Attempt {
            node,
            number: Some(n),
        })
    };
    let due = mine(queue::due(db, later, 1_000_000, shared)?);
    same(due.len(), 2, "both deliveries are due")?;
    let first = Due {
        transfer_id: id.to_string(),
        recipient: a.to_string(),
    };
    check(
        queue::claim_delivery(db, &first, later, lease(node_a))?,
        "a due delivery is claimed",
        (),
    )?;
    check(
        !queue::claim_delivery(db, &first, later, lease(node_b))?,
        "a claimed delivery is not claimed twice",
        (),
    )?;
    let job = queue::job(db, &first.transfer_id, &first.recipient)?;
    same(
        job.map(|j| (j.attempt, j.payload_inline, j.sealed_envelope, j.sender)),
        Some((1, Some(vec![1, 2, 3]), vec![4, 5, 6], sender.clone())),
        "the job as accepted",
    )?;
    same(
        mine(queue::stale_in_flight(
            db,
            "2026-12-01T11:00:00.000000Z",
            node_a,
        )?),
        vec![a.to_string()],
        "the attempt in flight",
    )?;
    if shared {
        same(
            mine(queue::stale_in_flight(
                db,
                "2026-12-01T11:00:00.000000Z",
                node_b,
            )?),
            Vec::<String>::new(),
            "another node's attempt is not this node's to recover",
        )?;
        check(
            !queue::requeue(db, &first, later, node_b)?,
            "nor to queue again",
            (),
        )?;
        // A renewal keeps the attempt from falling due when its first lease would have lapsed.
        check(
            queue::renew_leases(
                db,
                queue::Lease {
                    node: "suite-a",
                    until: "2026-12-01T10:00:35.000000Z",
                },
            )? >= 1,
            "a node renews its leases",
            (),
        )?;
        same(
            mine(queue::due(
                db,
                "2026-12-01T10:00:33.000000Z",
                1_000_000,
                true,
            )?),
            vec![b.to_string()],
            "a renewed lease is not due",
        )?;
        let mut due = mine(queue::due(db, lapsed, 1_000_000, true)?);
        due.sort();
        same(
            due,
            vec![a.to_string(), b.to_string()],
            "an attempt whose lease lapsed is due again",
        )?;
        check(
            queue::claim_delivery(db, &first, lapsed, lease(node_b))?,
            "and another node takes it over",
            (),
        )?;
        check(
            !queue::finish_delivery(
                db,
                &first.transfer_id,
                &first.recipient,
                &Finish::Delivered {
                    receipt: "{}".into(),
                },
                lapsed,
                by(node_a, 1),
            )?,
            "the node whose lease lapsed records no outcome",
            (),
        )?;
        check(
            queue::requeue(db, &first, later, node_b)?,
            "the holder queues it again",
            (),
        )?;
    } else {
        check(
            queue::requeue(db, &first, later, None)?,
            "an attempt without an outcome is queued again",
            (),
        )?;
    }
    check(
        queue::claim_delivery(db, &first, later, lease(node_b))?,
        "and claimed again",
        (),
    )?;
    if shared {
        check(
            !queue::finish_delivery(
                db,
                &first.transfer_id,
                &first.recipient,
                &Finish::Dead {
                    error: "stale".into(),
                },
                later,
                by(node_b, 2),
            )?,
            "an earlier attempt on the same node records no outcome over the newer one",
            (),
        )?;
    }
    check(
        queue::finish_delivery(
            db,
            &first.transfer_id,
            &first.recipient,
            &Finish::Delivered {
                receipt: "{\"receipt_id\":\"r1\"}".into(),
            },
            later,
            by(node_b, if shared { 3 } else { 2 }),
        )?,
        "its holder records the outcome",
        (),
    )?;
    check(
        queue::purgeable(db, "2027-01-01T00:00:00.000000Z", 1_000_000)?
            .iter()
            .all(|(t, _)| *t != id.to_string()),
        "not complete while a delivery is open",
        (),
    )?;
    let second = Due {
        transfer_id: id.to_string(),
        recipient: b.to_string(),
    };
    check(
        queue::claim_delivery(db, &second, later, lease(node_a))?,
        "claimed",
        (),
    )?;
    queue::finish_delivery(
        db,
        &second.transfer_id,
        &second.recipient,
        &Finish::Dead {
            error: "refused".into(),
        },
        later,
        by(node_a, 1),
    )?;
    let states: Vec<(String, String, i64)> = crate::store::recipient_statuses(db, &id.to_string())?
        .into_iter()
        .map(|r| (r.recipient, r.state, r.attempts))
        .collect();
    same(
        states,
        vec![
            (
                a.to_string(),
                "delivered".into(),
                if shared { 3 } else { 2 },
            ),
            (b.to_string(), "dead".into(), 1),
        ],
        "the deliveries' final states",
    )?;
    check(
        feedback::sender_for_recipient(db, &id.to_string(), a.as_str())?.as_ref() == Some(&sender),
        "a recipient that received it may give feedback",
        (),
    )?;
    same(
        feedback::sender_for_recipient(db, &id.to_string(), b.as_str())?,
        None,
        "one that did not, may not",
    )?;
    check(
        queue::purgeable(db, "2027-01-01T00:00:00.000000Z", 1_000_000)?
            .iter()
            .any(|(t, _)| *t == id.to_string()),
        "complete once every delivery is final",
        (),
    )?;
    check(
        queue::mark_purged(db, &id, "2027-01-01T00:00:00.000000Z")?,
        "the payload is purged",
        (),
    )?;
    check(
        !queue::mark_purged(db, &id, "2027-01-01T00:00:01.000000Z")?,
        "and only once (another node's purge finds it done)",
        (),
    )?;
    same(
        queue::job(db, &first.transfer_id, &first.recipient)?.and_then(|j| j.payload_inline),
        None,
        "the payload is gone once purged",
    )?;
    check(
        web::sent_by(db, &sender, 1000)?
            .iter()
            .any(|s| s.id == id.to_string()),
        "listed among its sender's transfers",
        (),
    )?;
    let depth = queue::depth(db)?;
    check(
        depth.by_state.iter().all(|(s, _)| s != "dead"),
        "the depth counts only what is pending",
        &depth,
    )?;
    Ok(())
}

fn item(transfer: &str, recipient: &str, marking: &str) -> NewInboxItem {
    NewInboxItem {
        id: uuid::Uuid::now_v7().to_string(),
        transfer_id: transfer.into(),
        recipient: recipient.into(),
        sender: "northshire-police".into(),
        sender_name: "Northshire Police".into(),
        via: "peer-a".into(),
        purpose: "early-help".into(),
        marking: marking.into(),
        retain_until: "2027-12-01".into(),
        received_at: "2026-12-01T10:00:00.000000Z".into(),
        sealed_envelope: vec![1],
        payload: StoredPayload::Inline(vec![8, 9]),
        payload_size: 2,
        payload_sha256: "ff".into(),
    }
}

fn inbox_items(db: &dyn Db) -> Result<(), SuiteError> {
    let transfer = uuid::Uuid::now_v7().to_string();
    let recipient = format!("org-{}", &fresh()[..12]);
    let first = inbox::insert(db, &item(&transfer, &recipient, "OFFICIAL"))?;
    let Inserted::New(held) = first else {
        return Err(SuiteError::Check {
            check: "a new item is stored".into(),
            found: format!("{first:?}"),
        });
    };
    let repeat = inbox::insert(db, &item(&transfer, &recipient, "OFFICIAL"))?;
    check(
        matches!(&repeat, Inserted::Repeat(i) if i.id == held.id),
        "a repeat gets the first item",
        &repeat,
    )?;
    let conflict = inbox::insert(db, &item(&transfer, &recipient, "OFFICIAL-SENSITIVE"))?;
    check(
        matches!(&conflict, Inserted::Conflict(f) if f == &vec!["marking"]),
        "a different description conflicts",
        &conflict,
    )?;
    same(
        inbox::list(db, &recipient, false)?
            .into_iter()
            .map(|i| i.id)
            .collect::<Vec<_>>(),
        vec![held.id.clone()],
        "listed once",
    )?;
    check(
        matches!(
            inbox::payload(db, &recipient, &held.id)?,
            Some(inbox::InboxPayload::Inline(ref b)) if b == &vec![8, 9]
        ),
        "its payload",
        (),
    )?;
    same(
        inbox::get(db, "someone-else", &held.id)?.map(|(i, _)| i.id),
        None,
        "not another organisation's",
    )?;
    let acked = inbox::acknowledge(db, &recipient, &held.id, "2026-12-02T00:00:00.000000Z")?;
    same(
        acked.map(|(i, f)| (i.id, f)),
        Some((held.id.clone(), None)),
        "acknowledged",
    )?;
    check(
        matches!(
            inbox::payload(db, &recipient, &held.id)?,
            Some(inbox::InboxPayload::Gone)
        ),
        "an acknowledged payload is gone",
        (),
    )?;
    same(
        inbox::list(db, &recipient, false)?.len(),
        0,
        "no longer waiting",
    )?;
    same(
        inbox::list(db, &recipient, true)?.len(),
        1,
        "still listed with the acknowledged ones",
    )?;
    Ok(())
}

/// A log row of the suite's own, past any the chain holds (requests are joined to their
/// record).
fn record(db: &dyn Db, kind: &str, transfer: &str, body: &str) -> Result<i64, SuiteError> {
    let seq = db
        .row("SELECT COALESCE(MAX(seq), 0) + 1000 FROM log", &[])?
        .map_or(Ok(1000), |r| r.int(0))?;
    db.execute(
        "INSERT INTO log (seq, at, kind, transfer_id, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        &[
            Value::Int(seq),
            "2026-12-01T10:00:00.000000Z".into(),
            kind.into(),
            transfer.into(),
            body.as_bytes().into(),
            Value::Blob(vec![0; 32]),
        ],
    )?;
    Ok(seq)
}

fn information_requests(db: &dyn Db) -> Result<(), SuiteError> {
    let id = RequestId::from_uuid(uuid::Uuid::now_v7());
    let requester = org("riverside-youth")?;
    let holder = org(&format!("holder-{}", &fresh()[..12]))?;
    let seq = record(
        db,
        "request_made",
        &id.to_string(),
        "{\"kind\":\"request_made\"}",
    )?;
    requests::insert(
        db,
        &requests::NewRequest {
            id,
            requester: requester.clone(),
            holder: holder.clone(),
            purpose: "early-help".into(),
            urgency: "routine",
            received_at: "2026-12-01T10:00:00.000000Z".into(),
            due_at: "2026-12-15T17:00:00.000000Z".into(),
            due_date: "2026-12-15".into(),
            sealed_refs: vec![1, 2],
        },
        seq,
    )?;
    let got = requests::get(db, id, holder.as_str())?;
    same(
        got.as_ref()
            .map(|r| (r.state, r.sealed_refs.clone(), r.clock_stopped)),
        Some((RequestState::Open, Some(vec![1, 2]), false)),
        "a request as made",
    )?;
    same(
        requests::get(db, id, "northshire-cc")?.map(|r| r.id),
        None,
        "not another organisation's",
    )?;
    same(
        requests::list(db, holder.as_str(), requests::Side::Received, true, 10)?
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![id],
        "listed as received",
    )?;
    requests::clarification(db, id, Some(("2026-12-02T10:00:00.000000Z", true)), None)?;
    check(
        requests::get(db, id, holder.as_str())?.is_some_and(|r| r.clock_stopped),
        "the clock stops for a clarification",
        (),
    )?;
    requests::clarification(
        db,
        id,
        None,
        Some(("2026-12-16T17:00:00.000000Z", "2026-12-16")),
    )?;
    let answer = TransferId::from_uuid(uuid::Uuid::now_v7());
    requests::change(
        db,
        &requests::Change {
            id,
            state: RequestState::Answered,
            at: "2026-12-03T10:00:00.000000Z",
            link: Some((answer, "answer", Some("in_full"))),
            working_days_taken: Some(2),
        },
    )?;
    let after = requests::get(db, id, requester.as_str())?;
    same(
        after.map(|r| {
            (
                r.state,
                r.due_date,
                r.first_answer_at,
                r.closed_at.is_some(),
                r.sealed_refs,
            )
        }),
        Some((
            RequestState::Answered,
            "2026-12-16".to_owned(),
            Some("2026-12-03T10:00:00.000000Z".to_owned()),
            true,
            None,
        )),
        "answered in full: closed, its references dropped",
    )?;
    same(
        requests::links(db, id)?
            .into_iter()
            .map(|l| (l.transfer_id, l.kind, l.answer))
            .collect::<Vec<_>>(),
        vec![(answer, "answer".to_owned(), Some("in_full".to_owned()))],
        "the answer linked",
    )?;
    same(
        requests::answered_by(db, answer)?,
        Some(id),
        "the share knows what it answered",
    )?;
    let report = requests::report(
        db,
        Some("2026-12-01T00:00:00.000000Z"),
        Some("2026-12-02T00:00:00.000000Z"),
        Some(holder.as_str()),
        "2026-12-20T00:00:00.000000Z",
    )?;
    same(
        report
            .by_holder
            .get(holder.as_str())
            .map(|f| (f.received, f.answered, f.median_working_days)),
        Some((1, 1, Some(2.0))),
        "the report's figures for the holder",
    )?;
    Ok(())
}

/// A node's lease renewal (`queue::renew_leases`), for a test that holds one of its rows from
/// another connection.
pub fn renew_leases(db: &dyn Db, node: &str, until: &str) -> Result<u64, StoreError> {
    queue::renew_leases(db, queue::Lease { node, until })
}
