//! The inbox: what was delivered here for this gateway's organisations, kept sealed for the
//! recipient until it downloads and acknowledges it. Filled by peer gateways through
//! `POST /v1/inbound` and by this gateway's own worker for `inbox` endpoints.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

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
    conn: &Connection,
    transfer_id: &str,
    recipient: &str,
) -> Result<Option<(InboxItem, String)>, StoreError> {
    let Some(item) = for_transfer(conn, transfer_id, recipient)? else {
        return Ok(None);
    };
    let via: String = conn
        .prepare_cached("SELECT via FROM inbox WHERE id = ?1")?
        .query_row(params![item.id], |r| r.get(0))?;
    Ok(Some((item, via)))
}

/// Where an item's sealed payload is.
pub enum InboxPayload {
    File(String),
    Inline(Vec<u8>),
    /// Acknowledged: deleted.
    Gone,
}

const COLUMNS: &str = "id, transfer_id, sender, sender_name, purpose, marking, retain_until, received_at, payload_size, payload_sha256, acknowledged_at";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboxItem> {
    Ok(InboxItem {
        id: r.get(0)?,
        transfer_id: r.get(1)?,
        sender: r.get(2)?,
        sender_name: r.get(3)?,
        purpose: r.get(4)?,
        marking: r.get(5)?,
        retain_until: r.get(6)?,
        received_at: r.get(7)?,
        payload_size: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
        payload_sha256: r.get(9)?,
        acknowledged_at: r.get(10)?,
    })
}

pub fn list(
    conn: &Connection,
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
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![recipient], item)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An item and its sealed envelope, if it belongs to `recipient`.
pub fn get(
    conn: &Connection,
    recipient: &str,
    id: &str,
) -> Result<Option<(InboxItem, Vec<u8>)>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS}, sealed_envelope FROM inbox WHERE recipient = ?1 AND id = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![recipient, id], |r| Ok((item(r)?, r.get(11)?)))
        .optional()?)
}

/// The existing item for a transfer and recipient (a repeat delivery).
pub fn for_transfer(
    conn: &Connection,
    transfer_id: &str,
    recipient: &str,
) -> Result<Option<InboxItem>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM inbox WHERE transfer_id = ?1 AND recipient = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![transfer_id, recipient], item)
        .optional()?)
}

pub fn payload(
    conn: &Connection,
    recipient: &str,
    id: &str,
) -> Result<Option<InboxPayload>, StoreError> {
    // (payload_file, payload_inline, acknowledged_at)
    type Row = (Option<String>, Option<Vec<u8>>, Option<String>);
    let row: Option<Row> = conn
        .prepare_cached("SELECT payload_file, payload_inline, acknowledged_at FROM inbox WHERE recipient = ?1 AND id = ?2")?
        .query_row(params![recipient, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(
        row.map(|(file, inline, acked)| match (file, inline, acked) {
            (_, _, Some(_)) => InboxPayload::Gone,
            (Some(f), _, None) => InboxPayload::File(f),
            (None, Some(b), None) => InboxPayload::Inline(b),
            (None, None, None) => InboxPayload::Gone,
        }),
    )
}

impl Tx<'_> {
    /// Stores an item unless this transfer already reached this recipient: a repeat with the
    /// same description gets the earlier item, one with another description is a conflict.
    pub fn insert_inbox(&mut self, i: &NewInboxItem) -> Result<Inserted, StoreError> {
        if let Some((existing, via)) = held(self.conn, &i.transfer_id, &i.recipient)? {
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
            return Ok(if differ.is_empty() {
                Inserted::Repeat(existing)
            } else {
                Inserted::Conflict(differ)
            });
        }
        let (file, inline) = match &i.payload {
            StoredPayload::File(f) => (Some(f.as_str()), None),
            StoredPayload::Inline(b) => (None, Some(b.as_slice())),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO inbox (id, transfer_id, recipient, sender, sender_name, via, purpose, marking, retain_until, received_at, sealed_envelope, payload_file, payload_inline, payload_size, payload_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?
            .execute(params![
                i.id,
                i.transfer_id,
                i.recipient,
                i.sender,
                i.sender_name,
                i.via,
                i.purpose,
                i.marking,
                i.retain_until,
                i.received_at,
                i.sealed_envelope,
                file,
                inline,
                i64::try_from(i.payload_size).unwrap_or(i64::MAX),
                i.payload_sha256
            ])?;
        let stored = for_transfer(self.conn, &i.transfer_id, &i.recipient)?.ok_or_else(|| {
            StoreError::Task("an inbox item was not found right after it was inserted".into())
        })?;
        Ok(Inserted::New(stored))
    }

    /// Acknowledges an item and forgets its payload. Returns the item as it was and its spool
    /// file (for the caller to delete after the commit), or `None` if it is not the
    /// recipient's. Acknowledging twice is harmless.
    pub fn acknowledge(
        &mut self,
        recipient: &str,
        id: &str,
        now: &str,
    ) -> Result<Option<(InboxItem, Option<String>)>, StoreError> {
        let Some((before, _)) = get(self.conn, recipient, id)? else {
            return Ok(None);
        };
        if before.acknowledged_at.is_some() {
            return Ok(Some((before, None)));
        }
        let file: Option<String> = self
            .conn
            .prepare_cached("SELECT payload_file FROM inbox WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))?;
        self.conn
            .prepare_cached("UPDATE inbox SET acknowledged_at = ?2, payload_file = NULL, payload_inline = NULL WHERE id = ?1")?
            .execute(params![id, now])?;
        Ok(Some((before, file)))
    }
}
