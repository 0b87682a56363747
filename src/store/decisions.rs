//! The queries behind ingest's decision routes: a declined decision's record, whether an
//! organisation sent a transfer, an urgent share's pending rationale, and what a correction needs
//! to know of the transfer it corrects.

use super::StoreError;
use super::db::{Db, Dialect, Value};
use crate::domain::ids::OrgId;
use crate::domain::policy::Corrected;

/// The body of the `decision_declined` record `id` that `org` made, if it made one.
pub fn declined_body(db: &dyn Db, id: &str, org: &str) -> Result<Option<Vec<u8>>, StoreError> {
    db.row(
        "SELECT body FROM log WHERE transfer_id = ?1 AND kind = 'decision_declined' AND sender = ?2",
        &[id.into(), org.into()],
    )?
    .map(|r| r.blob(0))
    .transpose()
}

/// Whether `org` sent the accepted transfer `id`.
pub fn sent_by(db: &dyn Db, id: &str, org: &str) -> Result<bool, StoreError> {
    Ok(db
        .row(
            "SELECT 1 FROM transfers WHERE id = ?1 AND sender = ?2",
            &[id.into(), org.into()],
        )?
        .is_some())
}

/// An accepted share's rationale, as far as the log's facets know it.
pub struct ShareRationale {
    /// Shared as urgent (the justification may follow).
    pub urgent: bool,
    /// The rationale has not been recorded yet.
    pub pending: bool,
}

/// The rationale state of the share `id`, or `None` when no share has that id.
pub fn share_rationale(db: &dyn Db, id: &str) -> Result<Option<ShareRationale>, StoreError> {
    let Some(r) = db.row(
        "SELECT urgency, rationale_pending FROM log_facets WHERE transfer_id = ?1 AND decision = 'shared'",
        &[id.into()],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(ShareRationale {
        urgent: r.opt_text(0)?.as_deref() == Some("urgent"),
        pending: r.int(1)? != 0,
    }))
}

/// Marks the share `id`'s rationale as recorded (in the write job that appends it).
pub fn rationale_recorded(db: &dyn Db, id: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE log_facets SET rationale_pending = 0 WHERE transfer_id = ?1 AND decision = 'shared'",
        &[id.into()],
    )?;
    Ok(())
}

/// The transfer `id` as a correction of it needs to know it: its sender, its originator and
/// who received it (every recipient whose delivery is not dead), or `None` when no accepted
/// transfer has that id (a refused or rejected one has no row in `transfers`).
pub fn corrected(db: &dyn Db, id: &str) -> Result<Option<Corrected>, StoreError> {
    let Some(r) = db.row(
        "SELECT t.sender, f.originator FROM transfers t LEFT JOIN log_facets f ON f.seq = t.log_seq WHERE t.id = ?1",
        &[id.into()],
    )?
    else {
        return Ok(None);
    };
    let (sender, originator) = (r.text(0)?, r.opt_text(1)?);
    let Ok(sender) = sender.parse::<OrgId>() else {
        return Ok(None);
    };
    let originator = originator
        .and_then(|o| o.parse::<OrgId>().ok())
        .unwrap_or_else(|| sender.clone());
    // In the order they were named (SQLite's rowid order), so the merged list reads naturally;
    // PostgreSQL keeps no insertion order, and lists them by name.
    let order = match db.dialect() {
        Dialect::Sqlite => "rowid",
        Dialect::Postgres => "recipient",
    };
    let recipients = db
        .rows(
            &format!(
                "SELECT recipient FROM deliveries WHERE transfer_id = ?1 AND state <> 'dead' ORDER BY {order}"
            ),
            &[Value::from(id)],
        )?
        .iter()
        .filter_map(|r| r.text(0).ok()?.parse::<OrgId>().ok())
        .collect();
    Ok(Some(Corrected {
        sender,
        originator,
        recipients,
    }))
}
