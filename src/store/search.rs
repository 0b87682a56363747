//! Searching the transfer log for data protection officers: decision records (shared, refused,
//! rejected, declined) found through the `log_facets` index, by time, party, purpose, basis,
//! marking, decision, urgency, delivery state or subject; read from a read-only connection, so
//! alongside a running gateway. Rows are handed to a callback one at a time, so exporting the
//! whole log does not hold it in memory.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StoreError;
use super::db::{Db, Dialect, Row, Value};

/// A cell for a CSV export that a spreadsheet will not run as a formula: one that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP's "CSV injection"
/// advice), so that text a sender wrote (a justification, a name) is shown, never evaluated.
pub fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// The columns of `log export --format csv`: the filing columns, then the record's own fields a
/// spreadsheet needs; `record` holds the whole record as chained (JSON).
pub const CSV_HEADER: [&str; 24] = [
    "seq",
    "at",
    "kind",
    "decision",
    "transfer_id",
    "sender",
    "recipients",
    "originator",
    "purpose",
    "lawful_basis",
    "marking",
    "urgency",
    "code",
    "correction_of",
    "rationale_pending",
    "justification",
    "reasons",
    "later_rationale",
    "data_categories",
    "consent",
    "subject_informed",
    "practitioner",
    "hash",
    "record",
];

pub fn csv_row(r: &DecisionRow) -> Vec<String> {
    let e = |path: &[&str]| {
        let v = path.iter().try_fold(&r.record, |v, k| v.get(k));
        match v {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(";"),
            Some(other) => other.to_string(),
        }
    };
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        r.seq.to_string(),
        r.at.clone(),
        r.kind.clone(),
        r.decision.clone(),
        o(&r.transfer_id),
        o(&r.sender),
        r.recipients.join(";"),
        o(&r.originator),
        o(&r.purpose),
        o(&r.lawful_basis),
        o(&r.marking),
        o(&r.urgency),
        o(&r.code),
        o(&r.correction_of),
        r.rationale_pending.to_string(),
        e(&["envelope", "justification"]),
        // A decision not to share gives its reasons; an urgent share its rationale afterwards.
        e(&["reasons"]),
        r.later_rationale
            .as_ref()
            .and_then(|v| v.get("justification"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        e(&["envelope", "data_categories"]),
        e(&["envelope", "consent", "status"]),
        e(&["envelope", "subject_informed", "status"]),
        e(&["envelope", "practitioner", "name"]),
        r.hash.clone(),
        r.record.to_string(),
    ]
}

/// A `from`/`to` bound as a DPO gives it (a date, `YYYY-MM-DD`, or an RFC 3339 time) in the
/// stored form (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC), which compares correctly as text. An `end`
/// date means the end of that day (the bound is exclusive). `None`: neither form.
pub fn time_bound(v: &str, end: bool) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let date = time::macros::format_description!("[year]-[month]-[day]");
    let at = if let Ok(d) = time::Date::parse(v.trim(), date) {
        let d = if end { d.next_day()? } else { d };
        d.midnight().assume_utc()
    } else {
        time::OffsetDateTime::parse(v.trim(), &Rfc3339)
            .ok()?
            .to_offset(time::UtcOffset::UTC)
    };
    Some(crate::clock::stamp(at))
}

/// Which decision records to find. Every field set narrows the result (AND).
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Inclusive lower bound on the record's time (RFC 3339, UTC, as stored).
    pub from: Option<String>,
    /// Exclusive upper bound.
    pub to: Option<String>,
    pub transfer: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub originator: Option<String>,
    pub purpose: Option<String>,
    pub lawful_basis: Option<String>,
    /// The normalised marking, e.g. `OFFICIAL-SENSITIVE PERSONAL`.
    pub marking: Option<String>,
    /// A marking level, with or without a descriptor: `OFFICIAL-SENSITIVE` finds
    /// `OFFICIAL-SENSITIVE` and `OFFICIAL-SENSITIVE PERSONAL`.
    pub marking_level: Option<String>,
    /// `shared`, `refused`, `rejected`, `declined` or `inbound_refused`.
    pub decision: Option<String>,
    /// `routine` or `urgent`.
    pub urgency: Option<String>,
    /// Transfers with at least one recipient in this state (`queued`, `delivering`,
    /// `retrying`, `delivered`, `dead`).
    pub delivery_state: Option<String>,
    /// The keyed hash of a subject reference (`SubjectRef::hash`).
    pub subject_hash: Option<String>,
    /// Records this organisation is a party to: it sent them (or made the decision), or is
    /// among their recipients. A DPO's view of the log is always narrowed by this.
    pub party: Option<String>,
    /// Only records before this sequence number (the next page of a newest-first listing).
    pub before: Option<i64>,
    pub limit: Option<usize>,
    /// Oldest first (exports) rather than newest first (listings).
    pub oldest_first: bool,
}

/// One decision record with the columns it is filed under.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRow {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub decision: String,
    pub transfer_id: Option<String>,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub originator: Option<String>,
    pub purpose: Option<String>,
    pub lawful_basis: Option<String>,
    pub marking: Option<String>,
    pub urgency: Option<String>,
    /// The refusal rule or rejection code.
    pub code: Option<String>,
    pub correction_of: Option<String>,
    pub rationale_pending: bool,
    pub hash: String,
    /// The record exactly as chained.
    pub record: serde_json::Value,
    /// For an urgent share, the `rationale_added` record that gave its justification later,
    /// as chained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub later_rationale: Option<serde_json::Value>,
}

/// The columns a [`DecisionRow`] is read from.
fn columns(d: Dialect) -> String {
    format!(
        "f.seq, f.at, l.kind, f.decision, f.transfer_id, f.sender, \
    (SELECT {} FROM log_recipients r WHERE r.seq = f.seq), \
    f.originator, f.purpose, f.lawful_basis, f.marking, f.urgency, l.code, f.correction_of, \
    f.rationale_pending, l.hash, l.body, \
    CASE WHEN f.urgency = 'urgent' THEN (SELECT r.body FROM log r \
        WHERE r.transfer_id = f.transfer_id AND r.kind = 'rationale_added' ORDER BY r.seq LIMIT 1) END",
        d.group_concat("recipient", "','")
    )
}

fn row(r: &Row) -> Result<DecisionRow, StoreError> {
    let filed = r.opt_text(6)?;
    let hash = r.blob(15)?;
    let body = r.blob(16)?;
    // A body that is not JSON is shown as null here; `log verify` is what judges it.
    let record: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    // In the order the sender named them, as recorded; the index keeps them sorted.
    let named = record
        .get("envelope")
        .and_then(|e| e.get("recipients"))
        .or_else(|| record.get("recipients"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        });
    let recipients = named.unwrap_or_else(|| {
        filed
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    });
    Ok(DecisionRow {
        seq: r.int(0)?,
        at: r.text(1)?,
        kind: r.text(2)?,
        decision: r.text(3)?,
        transfer_id: r.opt_text(4)?,
        sender: r.opt_text(5)?,
        recipients,
        originator: r.opt_text(7)?,
        purpose: r.opt_text(8)?,
        lawful_basis: r.opt_text(9)?,
        marking: r.opt_text(10)?,
        urgency: r.opt_text(11)?,
        code: r.opt_text(12)?,
        correction_of: r.opt_text(13)?,
        rationale_pending: r.int(14)? != 0,
        hash: hex::encode(hash),
        record,
        later_rationale: match r.value(17) {
            Value::Blob(b) => serde_json::from_slice(b).ok(),
            _ => None,
        },
    })
}

/// The WHERE clause and its arguments for a query.
fn conditions(q: &LogQuery, dialect: Dialect) -> (String, Vec<Value>) {
    let mut sql = String::from(" WHERE 1=1");
    let mut args: Vec<Value> = Vec::new();
    let mut push = |clause: &str, v: Option<Value>| {
        if let Some(v) = v {
            args.push(v);
            sql.push_str(&clause.replace("?", &format!("?{}", args.len())));
        }
    };
    push(" AND f.at >= ?", q.from.clone().map(Value::Text));
    push(" AND f.at < ?", q.to.clone().map(Value::Text));
    push(
        " AND f.transfer_id = ?",
        q.transfer.clone().map(Value::Text),
    );
    push(" AND f.sender = ?", q.sender.clone().map(Value::Text));
    push(
        " AND f.seq IN (SELECT seq FROM log_recipients WHERE recipient = ?)",
        q.recipient.clone().map(Value::Text),
    );
    push(
        " AND f.originator = ?",
        q.originator.clone().map(Value::Text),
    );
    push(" AND f.purpose = ?", q.purpose.clone().map(Value::Text));
    push(
        " AND f.lawful_basis = ?",
        q.lawful_basis.clone().map(Value::Text),
    );
    push(" AND f.marking = ?", q.marking.clone().map(Value::Text));
    // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE is the same.
    let like = match dialect {
        Dialect::Sqlite => " AND (f.marking = ? OR f.marking LIKE ? || ' %')",
        Dialect::Postgres => " AND (f.marking = ? OR f.marking ILIKE ? || ' %')",
    };
    push(like, q.marking_level.clone().map(Value::Text));
    push(" AND f.decision = ?", q.decision.clone().map(Value::Text));
    push(" AND f.urgency = ?", q.urgency.clone().map(Value::Text));
    push(
        " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.transfer_id = f.transfer_id AND d.state = ?)",
        q.delivery_state.clone().map(Value::Text),
    );
    push(
        " AND f.seq IN (SELECT seq FROM log_subjects WHERE subject_hash = ?)",
        q.subject_hash.clone().map(Value::Text),
    );
    // Both `?` become the same numbered parameter.
    push(
        " AND (f.sender = ? OR EXISTS (SELECT 1 FROM log_recipients r WHERE r.recipient = ? AND r.seq = f.seq))",
        q.party.clone().map(Value::Text),
    );
    push(" AND f.seq < ?", q.before.map(Value::Int));
    (sql, args)
}

/// Calls `each` with every decision record matching `q`, in order, one at a time; stops early
/// if `each` returns an error.
pub fn for_each_decision<E>(
    db: &dyn Db,
    q: &LogQuery,
    mut each: impl FnMut(DecisionRow) -> Result<(), E>,
) -> Result<(), SearchError<E>> {
    let (cond, mut args) = conditions(q, db.dialect());
    let mut sql = format!(
        "SELECT {} FROM log_facets f JOIN log l ON l.seq = f.seq{cond}",
        columns(db.dialect())
    );
    sql.push_str(if q.oldest_first {
        " ORDER BY f.seq"
    } else {
        " ORDER BY f.seq DESC"
    });
    // A bound parameter, not text: the statement stays one (and cached once) whatever the limit.
    if let Some(n) = q.limit {
        args.push(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let mut failed = None;
    db.each(&sql, &args, &mut |r| match each(row(&r)?) {
        Ok(()) => Ok(true),
        Err(e) => {
            failed = Some(e);
            Ok(false)
        }
    })?;
    match failed {
        Some(e) => Err(SearchError::Output(e)),
        None => Ok(()),
    }
}

/// A search failed in the store, or the caller's output failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Output(E),
}

/// Matching decision records, collected (for listings with a limit).
pub fn decisions(db: &dyn Db, q: &LogQuery) -> Result<Vec<DecisionRow>, StoreError> {
    let mut out = Vec::new();
    for_each_decision(db, q, |r| {
        out.push(r);
        Ok::<_, std::convert::Infallible>(())
    })
    .map_err(|e| match e {
        SearchError::Store(s) => s,
        SearchError::Output(never) => match never {},
    })?;
    Ok(out)
}

/// Every decision record filed under any of `hashes` (a person's, see
/// `SubjectRef::search_hashes`), oldest first, narrowed to `party`'s when given.
pub fn about(
    db: &dyn Db,
    hashes: &[String],
    party: Option<&str>,
) -> Result<Vec<DecisionRow>, StoreError> {
    let mut all = Vec::new();
    for h in hashes {
        let q = LogQuery {
            subject_hash: Some(h.clone()),
            party: party.map(str::to_owned),
            oldest_first: true,
            ..LogQuery::default()
        };
        all.extend(decisions(db, &q)?);
    }
    all.sort_by_key(|r| r.seq);
    all.dedup_by_key(|r| r.seq);
    Ok(all)
}

/// The shares that tried to correct a transfer, split by outcome: a DPO must not read a
/// refused attempt (by an organisation not allowed to correct it, say) as a correction.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Corrections {
    /// Accepted corrections (decision `shared`), oldest first.
    pub accepted: Vec<String>,
    /// Attempts that were refused or rejected, oldest first: the transfer id and the decision.
    pub refused: Vec<(String, String)>,
}

/// Decision records that name the given transfer as the one they correct (`correction_of`).
pub fn corrections_of(db: &dyn Db, transfer_id: &str) -> Result<Corrections, StoreError> {
    let rows = db.rows(
        "SELECT transfer_id, decision FROM log_facets WHERE correction_of = ?1 AND transfer_id IS NOT NULL ORDER BY seq",
        &[transfer_id.into()],
    )?;
    let mut out = Corrections::default();
    for row in rows {
        let (id, decision) = (row.text(0)?, row.text(1)?);
        if decision == "shared" {
            out.accepted.push(id);
        } else {
            out.refused.push((id, decision));
        }
    }
    Ok(out)
}

/// What `postern log report` shows for a period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Decision records by decision (shared, refused, rejected, declined).
    pub decisions: BTreeMap<String, i64>,
    /// Shared transfers by purpose, recipient, marking and lawful basis.
    pub shared_by_purpose: BTreeMap<String, i64>,
    pub shared_by_recipient: BTreeMap<String, i64>,
    pub shared_by_marking: BTreeMap<String, i64>,
    pub shared_by_lawful_basis: BTreeMap<String, i64>,
    /// Refusals by the rule that refused them.
    pub refused_by_reason: BTreeMap<String, i64>,
    /// Urgent shares accepted before the cutoff whose rationale has not been recorded.
    pub rationale_overdue: Vec<OverdueRationale>,
    /// Deliveries of transfers in the period that ended dead.
    pub dead_deliveries: Vec<DeadDelivery>,
    /// There were more dead deliveries than the report was asked to list.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dead_more: bool,
    /// Requests for information received in the period: overdue and answered late, by the
    /// organisation asked, with the median time to answer.
    pub requests: super::requests::RequestsReport,
    /// Shares in the period, by recipient, and how many the recipient gave feedback on.
    pub feedback_by_recipient: BTreeMap<String, super::feedback::FeedbackShare>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverdueRationale {
    pub transfer_id: String,
    pub sender: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadDelivery {
    pub transfer_id: String,
    pub recipient: String,
    pub channel: String,
    pub attempts: i64,
    pub reason: Option<String>,
}

/// Counts over the period (and the party) of `period`; urgent shares accepted before
/// `rationale_cutoff` still without their rationale; deliveries that died (at most
/// `dead_limit`, when given: `dead_more` says whether there were more).
///
/// One pass over the period's decisions, read from an index that holds every column counted
/// (`log_facets_period`), with the recipients of shares and the rule of refusals looked up for
/// those rows only; the counting is done here rather than by one GROUP BY per count.
pub fn report(
    db: &dyn Db,
    period: &LogQuery,
    rationale_cutoff: &str,
    dead_limit: Option<usize>,
    as_of: &str,
) -> Result<Report, StoreError> {
    // The period and the party only: a report is a whole picture of both.
    let q = LogQuery {
        from: period.from.clone(),
        to: period.to.clone(),
        party: period.party.clone(),
        ..LogQuery::default()
    };
    let (cond, args) = conditions(&q, db.dialect());
    let mut r = Report {
        from: q.from.clone(),
        to: q.to.clone(),
        ..Report::default()
    };
    let dialect = db.dialect();
    // SQLite is told which index to read (its planner otherwise picks a narrower one); a
    // database not yet migrated to schema 6 (read by `postern log report` before the new
    // gateway first opened it) has no such index, and then the planner chooses. PostgreSQL's
    // planner always chooses.
    let period_index = dialect == Dialect::Sqlite
        && db
            .row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'log_facets_period')",
                &[],
            )?
            .map(|row| row.int(0))
            .transpose()?
            == Some(1);
    let indexed = if period_index {
        " INDEXED BY log_facets_period"
    } else {
        ""
    };
    let bump = |m: &mut BTreeMap<String, i64>, k: Option<String>| {
        *m.entry(k.unwrap_or_else(|| "-".into())).or_default() += 1;
    };
    db.each(
        &format!(
            "SELECT f.decision, f.purpose, f.marking, f.lawful_basis, \
             CASE WHEN f.decision = 'shared' THEN (SELECT {} FROM log_recipients r WHERE r.seq = f.seq) END, \
             CASE WHEN f.decision = 'refused' THEN (SELECT code FROM log l WHERE l.seq = f.seq) END \
             FROM log_facets f{indexed}{cond}",
            dialect.group_concat("recipient", &dialect.char(31))
        ),
        &args,
        &mut |row| {
            let decision = row.text(0)?;
            if decision == "shared" {
                bump(&mut r.shared_by_purpose, row.opt_text(1)?);
                bump(&mut r.shared_by_marking, row.opt_text(2)?);
                bump(&mut r.shared_by_lawful_basis, row.opt_text(3)?);
                let recipients = row.opt_text(4)?;
                for x in recipients.iter().flat_map(|s| s.split('\u{1f}')) {
                    bump(&mut r.shared_by_recipient, Some(x.to_owned()));
                }
            } else if decision == "refused" {
                bump(&mut r.refused_by_reason, row.opt_text(5)?);
            }
            bump(&mut r.decisions, Some(decision));
            Ok(true)
        },
    )?;
    let mut with_cutoff = args.clone();
    with_cutoff.push(rationale_cutoff.into());
    r.rationale_overdue = db
        .rows(
            &format!(
                "SELECT f.transfer_id, f.sender, f.at FROM log_facets f{cond} AND f.rationale_pending = 1 AND f.at < ?{} ORDER BY f.seq",
                args.len() + 1
            ),
            &with_cutoff,
        )?
        .iter()
        .map(|row| {
            Ok(OverdueRationale {
                transfer_id: row.opt_text(0)?.unwrap_or_default(),
                sender: row.opt_text(1)?.unwrap_or_default(),
                at: row.text(2)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let mut limited = args.clone();
    let limit = match dead_limit {
        Some(n) => {
            limited.push(Value::Int(
                i64::try_from(n).unwrap_or(i64::MAX).saturating_add(1),
            ));
            format!(" LIMIT ?{}", limited.len())
        }
        None => String::new(),
    };
    r.dead_deliveries = db
        .rows(
            &format!(
                "SELECT d.transfer_id, d.recipient, d.channel, d.attempts, d.last_error FROM log_facets f{indexed} JOIN deliveries d ON d.transfer_id = f.transfer_id AND d.state = 'dead'{cond} AND f.decision = 'shared' ORDER BY f.seq, d.recipient{limit}"
            ),
            &limited,
        )?
        .iter()
        .map(|row| {
            Ok(DeadDelivery {
                transfer_id: row.text(0)?,
                recipient: row.text(1)?,
                channel: row.text(2)?,
                attempts: row.int(3)?,
                reason: row.opt_text(4)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    if let Some(n) = dead_limit
        && r.dead_deliveries.len() > n
    {
        r.dead_deliveries.truncate(n);
        r.dead_more = true;
    }
    r.requests = super::requests::report(
        db,
        q.from.as_deref(),
        q.to.as_deref(),
        q.party.as_deref(),
        as_of,
    )?;
    r.feedback_by_recipient = super::feedback::share_by_recipient(
        db,
        q.from.as_deref(),
        q.to.as_deref(),
        q.party.as_deref(),
    )?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        for (given, out) in [
            ("=1+2", "'=1+2"),
            ("+44 20 7946 0000", "'+44 20 7946 0000"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("plain", "plain"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(spreadsheet_safe(given.to_owned()), out, "{given:?}");
        }
    }
}
