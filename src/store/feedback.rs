//! Feedback on transfers, as the transfer log files it (`feedback_given` records, under the
//! transfer and the recipient that gave it): who may give it, what the sender sees, and the
//! report's share of transfers with feedback by recipient.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StoreError;
use super::db::Db;
use crate::domain::ids::OrgId;

/// The sender of the transfer `id`, if `org` is one of its recipients and it was delivered to
/// it: only a recipient that received a transfer can say what became of it.
pub fn sender_for_recipient(db: &dyn Db, id: &str, org: &str) -> Result<Option<OrgId>, StoreError> {
    let sender = db
        .row(
            "SELECT t.sender FROM transfers t JOIN deliveries d ON d.transfer_id = t.id
             WHERE t.id = ?1 AND d.recipient = ?2 AND d.state = 'delivered'",
            &[id.into(), org.into()],
        )?
        .map(|r| r.text(0))
        .transpose()?;
    Ok(sender.and_then(|s| s.parse().ok()))
}

/// One recipient's feedback, as its sender sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FeedbackLine {
    /// The recipient that gave it.
    pub from: String,
    pub status: crate::domain::feedback::FeedbackStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub at: String,
}

/// The feedback given on the transfer `id`, oldest first.
pub fn on_transfer(db: &dyn Db, id: &str) -> Result<Vec<FeedbackLine>, StoreError> {
    let rows = db.rows(
        "SELECT body FROM log WHERE transfer_id = ?1 AND kind = 'feedback_given' ORDER BY seq",
        &[id.into()],
    )?;
    let mut out = Vec::new();
    for row in rows {
        let r: crate::log::FeedbackRecord = serde_json::from_slice(&row.blob(0)?)?;
        out.push(FeedbackLine {
            from: r.sender.org.to_string(),
            status: r.status,
            comment: r.comment,
            at: r.at,
        });
    }
    Ok(out)
}

/// For each recipient: the transfers shared with it in the period, and how many of them it
/// gave feedback on.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct FeedbackShare {
    pub shared: u64,
    pub with_feedback: u64,
}

/// The share of transfers with feedback, by recipient, for shares accepted from `from` to `to`
/// (RFC 3339 bounds, either open) and, when given, sent or received by `party`.
pub fn share_by_recipient(
    db: &dyn Db,
    from: Option<&str>,
    to: Option<&str>,
    party: Option<&str>,
) -> Result<BTreeMap<String, FeedbackShare>, StoreError> {
    let rows = db.rows(
        "SELECT r.recipient,
                EXISTS (SELECT 1 FROM log l WHERE l.transfer_id = f.transfer_id
                        AND l.kind = 'feedback_given' AND l.sender = r.recipient)
         FROM log_facets f JOIN log_recipients r ON r.seq = f.seq
         WHERE f.decision = 'shared'
           AND (CAST(?1 AS TEXT) IS NULL OR f.at >= ?1) AND (CAST(?2 AS TEXT) IS NULL OR f.at < ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR f.sender = ?3 OR r.recipient = ?3)",
        &[from.into(), to.into(), party.into()],
    )?;
    let mut out: BTreeMap<String, FeedbackShare> = BTreeMap::new();
    for row in rows {
        let (recipient, given) = (row.text(0)?, row.int(1)? != 0);
        let e = out.entry(recipient).or_default();
        e.shared += 1;
        e.with_feedback += u64::from(given);
    }
    Ok(out)
}
