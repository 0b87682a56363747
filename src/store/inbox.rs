//! The inbox: what was delivered here for this gateway's organisations, kept sealed for the
//! recipient until it downloads and acknowledges it. Filled by peer gateways through
//! `POST /v1/inbound` and by this gateway's own worker for `inbox` endpoints.

use serde::{Deserialize, Serialize};

use super::db::{Db, Row, Value};
use super::{StoreError, StoredPayload, Tx};

/// A new item, ready to store.
pub struct NewInboxItem {
    pub id: String,
    pub transfer_id: String,
    pub recipient: String,
    pub sender: String,
    pub sender_name: String,
    /// The peer gateway it came through, or `local`.
    pub via: String,
    pub purpose: String,
    pub marking: String,
    pub retain_until: String,
    pub received_at: String,
    pub sealed_envelope: Vec<u8>,
    pub payload: StoredPayload,
    pub payload_size: u64,
    pub payload_sha256: String,
}

/// An inbox item as its recipient sees it listed. Every member is present; `acknowledged_at` is
/// null until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InboxItem {
    /// The item id (a UUID v7): the `receipt_id` the delivering gateway was given.
    pub id: String,
    /// The transfer id the sending gateway gave the transfer.
    #[schemars(with = "crate::domain::wire::Uuid")]
    pub transfer_id: String,
    /// The sending organisation's id, as the delivering gateway stated it.
    pub sender: String,
    /// The sending organisation's name, as the delivering gateway stated it.
    pub sender_name: String,
    /// The purpose id of the share.
    pub purpose: String,
    /// The protective marking, normalised.
    pub marking: String,
    /// Destroy it after this date (YYYY-MM-DD), as the delivering gateway stated it.
    pub retain_until: String,
    /// When this gateway received it (RFC 3339, UTC).
    #[schemars(with = "crate::domain::wire::DateTime")]
    pub received_at: String,
    /// The size of the sealed payload in bytes.
    #[schemars(with = "crate::domain::wire::Size")]
    pub payload_size: u64,
    /// The SHA-256 of the sealed payload as stored (the age file `GET /v1/inbox/{id}/payload`
    /// returns), lower-case hex.
    #[schemars(with = "crate::domain::wire::Sha256Hex")]
    pub payload_sha256: String,
    /// When the organisation acknowledged it (RFC 3339, UTC); null until then.
    #[schemars(with = "Option<crate::domain::wire::DateTime>")]
    pub acknowledged_at: Option<String>,
}

/// What storing an inbound item did.
#[derive(Debug)]
pub enum Inserted {
    /// Stored now.
    New(InboxItem),
    /// This transfer already reached this recipient with the same description: the earlier
    /// item, whose receipt a repeat gets (at-least-once delivery).
    Repeat(InboxItem),
    /// This transfer already reached this recipient with another description: nothing stored.
    /// The fields that differ.
    Conflict(Vec<&'static str>),
}

/// The description of a held item that a repeat must match (the sender's display name aside:
/// a peer may rename an organisation between two attempts).
pub struct Described<'a> {
    pub sender: &'a str,
    pub via: &'a str,
    pub purpose: &'a str,
    pub marking: &'a str,
    pub retain_until: &'a str,
}

/// The fields in which a held item's description differs from `d`.
pub fn differences(held: &InboxItem, held_via: &str, d: &Described<'_>) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (name, a, b) in [
        ("sender", held.sender.as_str(), d.sender),
        ("peer", held_via, d.via),
        ("purpose", held.purpose.as_str(), d.purpose),
        ("marking", held.marking.as_str(), d.marking),
        ("retain_until", held.retain_until.as_str(), d.retain_until),
    ] {
        if a != b {
            out.push(name);
        }
    }
    out
}

/// The item held for a transfer and recipient, and the peer it came through.
pub fn held(
    db: &dyn Db,
    transfer_id: &str,
    recipient: &str,
) -> Result<Option<(InboxItem, String)>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, via FROM inbox WHERE transfer_id = ?1 AND recipient = ?2");
    db.row(&sql, &[transfer_id.into(), recipient.into()])?
        .map(|r| Ok((item(&r)?, r.text(11)?)))
        .transpose()
}

/// Where an item's sealed payload is.
pub enum InboxPayload {
    File(String),
    Inline(Vec<u8>),
    /// Acknowledged: deleted.
    Gone,
}

const COLUMNS: &str = "id, transfer_id, sender, sender_name, purpose, marking, retain_until, received_at, payload_size, payload_sha256, acknowledged_at";

fn item(r: &Row) -> Result<InboxItem, StoreError> {
    Ok(InboxItem {
        id: r.text(0)?,
        transfer_id: r.text(1)?,
        sender: r.text(2)?,
        sender_name: r.text(3)?,
        purpose: r.text(4)?,
        marking: r.text(5)?,
        retain_until: r.text(6)?,
        received_at: r.text(7)?,
        payload_size: u64::try_from(r.int(8)?).unwrap_or(0),
        payload_sha256: r.text(9)?,
        acknowledged_at: r.opt_text(10)?,
    })
}

pub fn list(
    db: &dyn Db,
    recipient: &str,
    include_acknowledged: bool,
) -> Result<Vec<InboxItem>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM inbox WHERE recipient = ?1 {} ORDER BY received_at",
        if include_acknowledged {
            ""
        } else {
            "AND acknowledged_at IS NULL"
        }
    );
    db.rows(&sql, &[recipient.into()])?
        .iter()
        .map(item)
        .collect()
}

/// An item and its sealed envelope, if it belongs to `recipient`.
pub fn get(
    db: &dyn Db,
    recipient: &str,
    id: &str,
) -> Result<Option<(InboxItem, Vec<u8>)>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS}, sealed_envelope FROM inbox WHERE recipient = ?1 AND id = ?2");
    db.row(&sql, &[recipient.into(), id.into()])?
        .map(|r| Ok((item(&r)?, r.blob(11)?)))
        .transpose()
}

/// The existing item for a transfer and recipient (a repeat delivery).
pub fn for_transfer(
    db: &dyn Db,
    transfer_id: &str,
    recipient: &str,
) -> Result<Option<InboxItem>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM inbox WHERE transfer_id = ?1 AND recipient = ?2");
    db.row(&sql, &[transfer_id.into(), recipient.into()])?
        .map(|r| item(&r))
        .transpose()
}

pub fn payload(db: &dyn Db, recipient: &str, id: &str) -> Result<Option<InboxPayload>, StoreError> {
    let Some(r) = db.row(
        "SELECT payload_file, payload_inline, acknowledged_at FROM inbox WHERE recipient = ?1 AND id = ?2",
        &[recipient.into(), id.into()],
    )?
    else {
        return Ok(None);
    };
    let inline = match r.value(1) {
        Value::Null => None,
        _ => Some(r.blob(1)?),
    };
    Ok(Some(match (r.opt_text(0)?, inline, r.opt_text(2)?) {
        (_, _, Some(_)) => InboxPayload::Gone,
        (Some(f), _, None) => InboxPayload::File(f),
        (None, Some(b), None) => InboxPayload::Inline(b),
        (None, None, None) => InboxPayload::Gone,
    }))
}

/// Stores an item unless this transfer already reached this recipient: a repeat with the
/// same description gets the earlier item, one with another description is a conflict.
pub fn insert(db: &dyn Db, i: &NewInboxItem) -> Result<Inserted, StoreError> {
    if let Some(found) = already(db, i)? {
        return Ok(found);
    }
    let (file, inline) = match &i.payload {
        StoredPayload::File(f) => (Value::from(f.as_str()), Value::Null),
        StoredPayload::Inline(b) => (Value::Null, Value::from(b.as_slice())),
    };
    // Another node may be storing the same delivery (an attempt taken over) in a transaction
    // of its own: the insert then waits for it, and if it committed, this is a repeat of it.
    let stored = db.execute(
        "INSERT INTO inbox (id, transfer_id, recipient, sender, sender_name, via, purpose, marking, retain_until, received_at, sealed_envelope, payload_file, payload_inline, payload_size, payload_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (transfer_id, recipient) DO NOTHING",
        &[
            (&i.id).into(),
            (&i.transfer_id).into(),
            (&i.recipient).into(),
            (&i.sender).into(),
            (&i.sender_name).into(),
            (&i.via).into(),
            (&i.purpose).into(),
            (&i.marking).into(),
            (&i.retain_until).into(),
            (&i.received_at).into(),
            i.sealed_envelope.as_slice().into(),
            file,
            inline,
            Value::Int(i64::try_from(i.payload_size).unwrap_or(i64::MAX)),
            (&i.payload_sha256).into(),
        ],
    )?;
    if stored == 0 {
        return already(db, i)?
            .ok_or_else(|| StoreError::Task("an inbox item was held and then not found".into()));
    }
    let stored = for_transfer(db, &i.transfer_id, &i.recipient)?.ok_or_else(|| {
        StoreError::Task("an inbox item was not found right after it was inserted".into())
    })?;
    Ok(Inserted::New(stored))
}

/// What storing `i` again is, if this transfer already reached this recipient: a repeat (the
/// same description) or a conflict.
fn already(db: &dyn Db, i: &NewInboxItem) -> Result<Option<Inserted>, StoreError> {
    let Some((existing, via)) = held(db, &i.transfer_id, &i.recipient)? else {
        return Ok(None);
    };
    let differ = differences(
        &existing,
        &via,
        &Described {
            sender: &i.sender,
            via: &i.via,
            purpose: &i.purpose,
            marking: &i.marking,
            retain_until: &i.retain_until,
        },
    );
    Ok(Some(if differ.is_empty() {
        Inserted::Repeat(existing)
    } else {
        Inserted::Conflict(differ)
    }))
}

/// Acknowledges an item and forgets its payload. Returns the item as it was and its spool
/// file (for the caller to delete after the commit), or `None` if it is not the
/// recipient's. Acknowledging twice is harmless.
pub fn acknowledge(
    db: &dyn Db,
    recipient: &str,
    id: &str,
    now: &str,
) -> Result<Option<(InboxItem, Option<String>)>, StoreError> {
    let Some((before, _)) = get(db, recipient, id)? else {
        return Ok(None);
    };
    if before.acknowledged_at.is_some() {
        return Ok(Some((before, None)));
    }
    let file = db
        .row("SELECT payload_file FROM inbox WHERE id = ?1", &[id.into()])?
        .map_or(Ok(None), |r| r.opt_text(0))?;
    if let Some(f) = &file {
        super::payloads::forget(db, super::payloads::Area::Inbox, f)?;
    }
    db.execute(
        "UPDATE inbox SET acknowledged_at = ?2, payload_file = NULL, payload_inline = NULL WHERE id = ?1",
        &[id.into(), now.into()],
    )?;
    Ok(Some((before, file)))
}

impl Tx<'_> {
    /// Stores an item (see [`insert`]); on a shared store a new item's payload file moves into
    /// the database with it.
    pub fn insert_inbox(&mut self, i: &NewInboxItem) -> Result<Inserted, StoreError> {
        let inserted = insert(self.db(), i)?;
        if let (Some(staged), Inserted::New(_), StoredPayload::File(file)) =
            (self.staged, &inserted, &i.payload)
        {
            super::payloads::move_in(self.db(), staged, super::payloads::Area::Inbox, file)?;
        }
        Ok(inserted)
    }

    pub fn acknowledge(
        &mut self,
        recipient: &str,
        id: &str,
        now: &str,
    ) -> Result<Option<(InboxItem, Option<String>)>, StoreError> {
        acknowledge(self.db(), recipient, id, now)
    }
}
