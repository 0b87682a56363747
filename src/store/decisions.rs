//! The queries behind ingest's decision routes: a declined decision's record, whether an
//! organisation sent a transfer, an urgent share's pending rationale, and what a correction needs
//! to know of the transfer it corrects.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::domain::ids::OrgId;
use crate::domain::policy::Corrected;

/// The body of the `decision_declined` record `id` that `org` made, if it made one.
pub fn declined_body(
    conn: &Connection,
    id: &str,
    org: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT body FROM log WHERE transfer_id = ?1 AND kind = 'decision_declined' AND sender = ?2",
        )?
        .query_row(params![id, org], |r| r.get::<_, Vec<u8>>(0))
        .optional()?)
}

/// Whether `org` sent the accepted transfer `id`.
pub fn sent_by(conn: &Connection, id: &str, org: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM transfers WHERE id = ?1 AND sender = ?2")?
        .exists(params![id, org])?)
}

/// An accepted share's rationale, as far as the log's facets know it.
pub struct ShareRationale {
    /// Shared as urgent (the justification may follow).
    pub urgent: bool,
    /// The rationale has not been recorded yet.
    pub pending: bool,
}

/// The rationale state of the share `id`, or `None` when no share has that id.
pub fn share_rationale(conn: &Connection, id: &str) -> Result<Option<ShareRationale>, StoreError> {
    let row: Option<(Option<String>, bool)> = conn
        .prepare_cached(
            "SELECT urgency, rationale_pending FROM log_facets WHERE transfer_id = ?1 AND decision = 'shared'",
        )?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map(|(urgency, pending)| ShareRationale {
        urgent: urgency.as_deref() == Some("urgent"),
        pending,
    }))
}

/// Marks the share `id`'s rationale as recorded (in the write job that appends it).
pub fn rationale_recorded(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE log_facets SET rationale_pending = 0 WHERE transfer_id = ?1 AND decision = 'shared'",
    )?
    .execute(params![id])?;
    Ok(())
}

/// The transfer `id` as a correction of it needs to know it: its sender, its originator and
/// who received it (every recipient whose delivery is not dead), or `None` when no accepted
/// transfer has that id (a refused or rejected one has no row in `transfers`).
pub fn corrected(conn: &Connection, id: &str) -> Result<Option<Corrected>, StoreError> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT t.sender, f.originator FROM transfers t LEFT JOIN log_facets f ON f.seq = t.log_seq WHERE t.id = ?1",
        )?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((sender, originator)) = row else {
        return Ok(None);
    };
    let Ok(sender) = sender.parse::<OrgId>() else {
        return Ok(None);
    };
    let originator = originator
        .and_then(|o| o.parse::<OrgId>().ok())
        .unwrap_or_else(|| sender.clone());
    let mut stmt = conn.prepare_cached(
        // In the order they were named (rowid order), so the merged list reads naturally.
        "SELECT recipient FROM deliveries WHERE transfer_id = ?1 AND state <> 'dead' ORDER BY rowid",
    )?;
    let names = stmt
        .query_map(params![id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let recipients = names
        .into_iter()
        .filter_map(|s| s.parse::<OrgId>().ok())
        .collect();
    Ok(Some(Corrected {
        sender,
        originator,
        recipients,
    }))
}
