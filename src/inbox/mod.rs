//! Receiving into the inbox: a transfer, already sealed for one of this gateway's organisations,
//! arrives (from a peer gateway's delivery worker over `POST /v1/inbound`, or from this
//! gateway's own worker for an `inbox` endpoint) and is kept until the organisation downloads
//! and acknowledges it. At-least-once delivery means repeats arrive: each (transfer, recipient)
//! is stored once, and a repeat gets the first one's receipt.
//!
//! The inbound contract ([`InboundMeta`] plus the sealed envelope and payload) is in
//! `docs/openapi.json`, so an agency can implement it without running Postern.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{OrgId, TransferId};
use crate::log::{InboundRefusedRecord, InboxRecord, LogEntry, PeerRecord, Receipt, RecordKind};
use crate::store::inbox::{InboxItem, Inserted, NewInboxItem};
use crate::store::upload::{Sealed, SpoolUpload, UploadError};
use crate::store::{Store, StoreError, StoredPayload};

/// The `meta` part of `POST /v1/inbound`: what travels in clear with a delivery, enough to file it
/// and for the recipient to triage it, and nothing about the person it concerns (that is in the
/// sealed envelope). Members other than these are refused (422 `invalid_inbound`, `field` `meta`);
/// every member is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(title = "InboundMeta")]
#[serde(deny_unknown_fields)]
pub struct InboundMeta {
    /// The transfer id the sending gateway gave the transfer. With `recipient`, identifies the
    /// delivery: a repeat is stored once.
    pub transfer_id: TransferId,
    /// The organisation it is for: one that receives through the receiving gateway's inbox. On a
    /// Postern gateway, a registered organisation whose endpoint's channel is `inbox` or `https`;
    /// any other (unknown, `email`, or without an endpoint) is refused with 422
    /// `recipient_not_here`.
    pub recipient: OrgId,
    /// The sending organisation's id, as the sending gateway registered it. The receiving gateway
    /// must list it among the organisations the delivering peer may deliver for (the peer's
    /// `senders`), else 403 `sender_not_permitted`.
    pub sender: OrgId,
    /// The sending organisation's name, for people reading the inbox.
    pub sender_name: String,
    /// The purpose id of the share.
    pub purpose: String,
    /// The protective marking, normalised (e.g. `OFFICIAL-SENSITIVE PERSONAL`).
    pub marking: String,
    /// The date after which the recipient must destroy it, YYYY-MM-DD (else 422 `invalid_inbound`,
    /// `field` `meta.retain_until`). Stored as given.
    #[schemars(with = "crate::domain::wire::Date")]
    pub retain_until: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Upload(#[from] UploadError),
    #[error("the payload stream failed: {0}")]
    Stream(std::io::Error),
    /// This transfer is already held for this recipient with another description; nothing was
    /// stored, and the refusal is recorded. The fields that differ.
    #[error("a delivery of this transfer is already held with a different {}", .0.join(", "))]
    Conflict(Vec<&'static str>),
}

/// Who brought a delivery into the inbox.
#[derive(Debug, Clone)]
pub enum Via {
    /// This gateway's own worker (an `inbox` endpoint).
    Local,
    /// A peer gateway, over `POST /v1/inbound`.
    Peer(PeerRecord),
}

impl Via {
    pub fn name(&self) -> &str {
        match self {
            Via::Local => crate::domain::ids::LOCAL_VIA,
            Via::Peer(p) => p.peer.as_str(),
        }
    }
}

/// The refusal of a repeat whose description differs from what is held (409 `inbound_conflict`).
pub fn conflict_record(
    meta: &InboundMeta,
    via: PeerRecord,
    differ: &[&str],
    at: &str,
) -> InboundRefusedRecord {
    InboundRefusedRecord {
        kind: RecordKind::InboundRefused,
        transfer_id: meta.transfer_id,
        at: at.to_owned(),
        via,
        sender: meta.sender.clone(),
        recipient: meta.recipient.clone(),
        purpose: meta.purpose.clone(),
        marking: meta.marking.clone(),
        retain_until: meta.retain_until.clone(),
        rule: "repeat_matches".into(),
        code: "inbound_conflict".into(),
        field: Some("meta".into()),
        detail: conflict_detail(meta, differ),
    }
}

/// The sentence a conflicting repeat is answered and recorded with.
pub fn conflict_detail(meta: &InboundMeta, differ: &[&str]) -> String {
    format!(
        "Transfer {} is already held here for `{}` with a different {}. A repeat must describe the delivery as the first did; nothing was kept.",
        meta.transfer_id,
        meta.recipient,
        differ.join(", ")
    )
}

/// The outcome of one delivery into the inbox.
pub struct Received {
    pub item: InboxItem,
    /// False for a repeat of something already here.
    pub new: bool,
    /// Of the payload bytes in *this* delivery (what the receipt reports).
    pub sha256: String,
}

impl Received {
    pub fn receipt(&self) -> Receipt {
        Receipt {
            receipt_id: self.item.id.clone(),
            sha256: self.sha256.clone(),
            received_at: self.item.received_at.clone(),
        }
    }
}

/// Stores a delivery brought by `via`.
pub async fn receive<S>(
    store: &Store,
    meta: &InboundMeta,
    via: &Via,
    sealed_envelope: Vec<u8>,
    payload: S,
    expected: Option<u64>,
) -> Result<Received, InboxError>
where
    S: Stream<Item = std::io::Result<Bytes>>,
{
    let id = uuid::Uuid::now_v7().to_string();
    let mut upload = SpoolUpload::start_store(store.inbox_path(&id), expected);
    let mut payload = std::pin::pin!(payload);
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(c) => upload.write(c).await?,
            Err(e) => {
                upload.abort().await;
                return Err(InboxError::Stream(e));
            }
        }
    }
    let (summary, sealed) = upload.finish().await?;
    let sha256 = hex::encode(summary.sealed_sha256);
    let (stored, file) = match sealed {
        Sealed::File(f) => (StoredPayload::File(format!("{id}.age")), Some(f)),
        Sealed::Inline(b) => (StoredPayload::Inline(b), None),
    };
    let staged = file.as_ref().map(|_| format!("{id}.age"));
    let now = crate::clock::stamp(crate::clock::now());
    let item = NewInboxItem {
        id: id.clone(),
        transfer_id: meta.transfer_id.to_string(),
        recipient: meta.recipient.to_string(),
        sender: meta.sender.to_string(),
        sender_name: meta.sender_name.clone(),
        via: via.name().to_owned(),
        purpose: meta.purpose.clone(),
        marking: meta.marking.clone(),
        retain_until: meta.retain_until.clone(),
        received_at: now.clone(),
        sealed_envelope,
        payload: stored,
        payload_size: summary.sealed_size,
        payload_sha256: sha256.clone(),
    };
    let record = InboxRecord {
        kind: RecordKind::InboxReceived,
        transfer_id: meta.transfer_id,
        at: now.clone(),
        inbox_id: id,
        recipient: meta.recipient.clone(),
        sender: meta.sender.clone(),
        via: via.name().to_owned(),
        payload_size: summary.sealed_size,
        payload_sha256: sha256.clone(),
    };
    let entry = LogEntry::new(&record).map_err(StoreError::from)?;
    // A conflicting repeat is refused in the same transaction that finds it, and recorded.
    let conflict = match via {
        Via::Peer(p) => Some((meta.clone(), p.clone(), now.clone())),
        Via::Local => None,
    };
    // As at ingest: the commit and the keeping of its file happen together in a task of their
    // own, whatever becomes of the request that brought them.
    let store = store.clone();
    let commit = tokio::spawn(async move {
        // On a shared store the sealed file is copied into the database first, on its own.
        if let Some(f) = &staged {
            store.stage(crate::store::payloads::Area::Inbox, f).await?;
        }
        let written = store
            .write_late(file.is_some(), move |tx| {
                let inserted = tx.insert_inbox(&item)?;
                match &inserted {
                    Inserted::New(_) => {
                        tx.append(&entry)?;
                    }
                    Inserted::Conflict(differ) => {
                        if let Some((meta, peer, at)) = &conflict {
                            let record = conflict_record(meta, peer.clone(), differ, at);
                            tx.append(&LogEntry::new(&record)?)?;
                        }
                    }
                    Inserted::Repeat(_) => {}
                }
                Ok(inserted)
            })
            .await;
        if let (Ok(Inserted::New(_)), Some(f)) = (&written, file) {
            f.keep();
        } else if let Some(f) = &staged {
            // A repeat's file, a conflict's, or one whose commit failed, is dropped here and
            // deleted; so is its staged copy.
            store.unstage(crate::store::payloads::Area::Inbox, f).await;
        }
        written
    });
    let inserted = commit
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
    match inserted {
        Inserted::New(item) => Ok(Received {
            item,
            new: true,
            sha256,
        }),
        Inserted::Repeat(item) => Ok(Received {
            item,
            new: false,
            sha256,
        }),
        Inserted::Conflict(differ) => Err(InboxError::Conflict(differ)),
    }
}
