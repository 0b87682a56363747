//! Signed checkpoints of the transfer log's chain, the retention purge, and the streaming read
//! behind `postern log verify` (the checking itself is pure: [`crate::verify`]).
//!
//! - A **checkpoint** signs the chain's head (seq, hash, time) with the gateway's ed25519 key
//!   ([`CheckpointKey`], a PKCS#8 PEM file held like the spool and subject keys). The daemon
//!   writes one every `log.checkpoint_interval_secs` when the head has moved, and one at
//!   shutdown. What is signed: [`crate::verify::signed_message`].
//! - The **purge** deletes records older than `log.retain_days` as one write job: it checks the
//!   records it is about to delete (retention must not destroy evidence of tampering), makes sure
//!   a signed checkpoint stands exactly at the last of them (the anchor the rest chains from),
//!   deletes them with their index rows and the finished transfers they describe, and records
//!   itself as a `log_purged` record. Checkpoints older than a week are thinned to one a day
//!   ([`thin_in`]).
//! - **Verification** reads the log in `seq` order in one read transaction, row by row, so a
//!   log of millions of records is checked without holding it in memory.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use super::{Store, StoreError, Tx};
use crate::seal::{SealError, write_secret_file};
pub use crate::transfer_log::{Anchor, LogPurgedRecord};
use crate::transfer_log::{LogEntry, RecordKind};
use crate::verify::{self, Break, Checkpoint, Lookup, OwnedRow, PublicKey, Report, Row, Stop};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` holds no ed25519 private key (a PKCS#8 `BEGIN PRIVATE KEY` block): {why}")]
    Format { path: String, why: String },
    #[error(
        "`{path}` already exists; refusing to overwrite a key (the checkpoints signed with it would no longer verify)"
    )]
    Exists { path: String },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random number generator failed")]
    Random,
}

/// The key that signs checkpoints. Its public half is what a data protection officer checks
/// them against.
pub struct CheckpointKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey({})", self.public.fingerprint())
    }
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// `OneAsymmetricKey` version 0, algorithm id-Ed25519, then the 32-byte private key as an OCTET
/// STRING inside the privateKey OCTET STRING (RFC 8410, section 7).
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl CheckpointKey {
    /// A PKCS#8 document (v1, as `openssl genpkey -algorithm ed25519` writes, or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| e.to_string())?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| "the public key is not 32 bytes".to_owned())?;
        Ok(CheckpointKey {
            pair,
            public: PublicKey::from_bytes(public),
        })
    }

    /// Reads a PEM file (`BEGIN PRIVATE KEY`; lines outside the block are ignored).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let format = |why: String| KeyError::Format {
            path: path.display().to_string(),
            why,
        };
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let (Some(begin), Some(end)) = (text.find(PEM_BEGIN), text.find(PEM_END)) else {
            return Err(format("no PEM block".into()));
        };
        let b64: Zeroizing<String> = Zeroizing::new(
            text.get(begin + PEM_BEGIN.len()..end)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        );
        let der = Zeroizing::new(
            STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| format("the block is not base64".into()))?,
        );
        Self::from_pkcs8(&der).map_err(format)
    }

    /// Generates a key and writes it, readable by its owner only. Refuses to overwrite: a new
    /// key would no longer verify the checkpoints signed with the old one.
    pub fn generate_file(path: &Path) -> Result<PublicKey, KeyError> {
        // PKCS#8 v1 as RFC 8410 gives it (the private key's 32-byte seed, no public key), which
        // OpenSSL and other tools read; ring's own v2 encoding is not read by OpenSSL 3.0.
        let mut doc = Zeroizing::new(PKCS8_V1_PREFIX.to_vec());
        let mut seed = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed[..])
            .map_err(|_| KeyError::Random)?;
        doc.extend_from_slice(&seed[..]);
        let key = Self::from_pkcs8(&doc).map_err(|why| KeyError::Format {
            path: path.display().to_string(),
            why,
        })?;
        let b64 = Zeroizing::new(STANDARD.encode(&doc[..]));
        let mut text = Zeroizing::new(format!(
            "# postern transfer log checkpoint key (ed25519)\n# public key: {}\n# fingerprint: {}\n{PEM_BEGIN}\n",
            key.public,
            key.public.fingerprint()
        ));
        for line in b64.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(line).unwrap_or_default());
            text.push('\n');
        }
        text.push_str(PEM_END);
        text.push('\n');
        write_secret_file(path, text.as_bytes()).map_err(|e| {
            let path = path.display().to_string();
            match e {
                SealError::Exists { .. } => KeyError::Exists { path },
                SealError::Io(source) => KeyError::Write { path, source },
                other => KeyError::Write {
                    path,
                    source: std::io::Error::other(other.to_string()),
                },
            }
        })?;
        Ok(key.public)
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, seq: i64, hash: &[u8; 32], at: &str) -> Vec<u8> {
        self.pair
            .sign(&verify::signed_message(seq, hash, at))
            .as_ref()
            .to_vec()
    }
}

/// Creates the key file unless it exists (development deployments); the public key if created.
pub fn ensure_key_file(path: &Path) -> Result<Option<PublicKey>, KeyError> {
    if path.exists() {
        CheckpointKey::from_file(path)?;
        return Ok(None);
    }
    CheckpointKey::generate_file(path).map(Some)
}

/// A checkpoint just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub seq: i64,
    pub at: String,
    pub hash: [u8; 32],
}

fn sign_at(
    conn: &Connection,
    key: &CheckpointKey,
    seq: i64,
    hash: [u8; 32],
    at: &str,
) -> Result<Signed, StoreError> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (seq, at, hash, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        seq,
        at,
        &hash[..],
        key.public().to_string(),
        key.sign(seq, &hash, at)
    ])?;
    Ok(Signed {
        seq,
        at: at.to_owned(),
        hash,
    })
}

/// Signs the chain's head in the caller's write job, unless it is signed already (or the log is
/// empty). The writer is single-threaded, so the last row is the head.
pub fn sign_head(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    at: &str,
) -> Result<Option<Signed>, StoreError> {
    let conn = tx.conn();
    let head: Option<(i64, [u8; 32])> = conn
        .query_row(
            "SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((seq, hash)) = head else {
        return Ok(None);
    };
    let last: Option<i64> = conn.query_row("SELECT MAX(seq) FROM checkpoints", [], |r| r.get(0))?;
    if last.is_some_and(|l| l >= seq) {
        return Ok(None);
    }
    sign_at(conn, key, seq, hash, at).map(Some)
}

/// Writes a checkpoint of the head now, as one write job, if the head moved since the last.
pub async fn checkpoint(
    store: &Store,
    key: Arc<CheckpointKey>,
) -> Result<Option<Signed>, StoreError> {
    let at = crate::clock::stamp(crate::clock::now());
    store.write(false, move |tx| sign_head(tx, &key, &at)).await
}

/// Checkpoints younger than this many days are all kept; older ones are thinned to one a day.
pub const KEEP_EVERY_CHECKPOINT_DAYS: i64 = 7;

/// Thins old checkpoints, in the caller's write job: of those older than
/// [`KEEP_EVERY_CHECKPOINT_DAYS`], only the last of each day is kept (and the anchor of a purge).
/// Each checkpoint vouches for every record before it, so a later one makes the earlier ones
/// redundant for detection; they only narrow down where a rewrite happened, and a day is narrow
/// enough. Without thinning, six years of five-minute checkpoints would cost `log verify`
/// more time checking signatures than hashing a million records.
pub fn thin_in(tx: &mut Tx<'_>, now: time::OffsetDateTime) -> Result<usize, StoreError> {
    let before = crate::clock::stamp(now - time::Duration::days(KEEP_EVERY_CHECKPOINT_DAYS));
    Ok(tx.conn().execute(
        "DELETE FROM checkpoints
         WHERE at < ?1
           AND seq NOT IN (SELECT MAX(seq) FROM checkpoints WHERE at < ?1 GROUP BY substr(at, 1, 10))
           AND seq != (SELECT IFNULL(MIN(seq), 1) - 1 FROM log)",
        [before],
    )?)
}

/// Thins old checkpoints as one write job (see [`thin_in`]).
pub async fn thin(store: &Store, now: time::OffsetDateTime) -> Result<usize, StoreError> {
    store.write(false, move |tx| thin_in(tx, now)).await
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Nothing is older than the retention period (or retention is off).
    Nothing,
    /// Records were purged; `seq` is the `log_purged` record.
    Done { seq: i64, record: LogPurgedRecord },
    /// The records due do not verify: nothing was deleted, so that the evidence stays.
    Refused(Break),
}

/// Purges records older than `retain_days` before `now`, in the caller's write job. 0 days:
/// retention is off.
pub fn purge_in(
    tx: &mut Tx<'_>,
    key: &CheckpointKey,
    retain_days: u32,
    now: time::OffsetDateTime,
) -> Result<Purge, StoreError> {
    if retain_days == 0 {
        return Ok(Purge::Nothing);
    }
    let at = crate::clock::stamp(now);
    let cutoff = crate::clock::stamp(now - time::Duration::days(i64::from(retain_days)));
    let conn = tx.conn();
    // Records are stamped in about the order they are appended; a prefix of the chain goes, up
    // to the last record due.
    let due: Option<i64> =
        conn.query_row("SELECT MAX(seq) FROM log WHERE at < ?1", [&cutoff], |r| {
            r.get(0)
        })?;
    let Some(to) = due else {
        return Ok(Purge::Nothing);
    };
    let from: i64 = conn.query_row("SELECT MIN(seq) FROM log", [], |r| r.get(0))?;
    let checked = check(conn, std::slice::from_ref(key.public()), Some(to))?;
    if let Some(b) = checked.first_break {
        return Ok(Purge::Refused(b));
    }
    let hash: [u8; 32] =
        conn.query_row("SELECT hash FROM log WHERE seq = ?1", [to], |r| r.get(0))?;
    // An existing checkpoint at `to` was just verified (signature and hash).
    let existing: Option<String> = conn
        .query_row("SELECT at FROM checkpoints WHERE seq = ?1", [to], |r| {
            r.get(0)
        })
        .optional()?;
    let anchor_at = match existing {
        Some(a) => a,
        None => sign_at(conn, key, to, hash, &at)?.at,
    };
    for sql in [
        "DELETE FROM log_subjects WHERE seq <= ?1",
        "DELETE FROM log_facets WHERE seq <= ?1",
        "DELETE FROM log_recipients WHERE seq <= ?1",
    ] {
        conn.execute(sql, [to])?;
    }
    let records = conn.execute("DELETE FROM log WHERE seq <= ?1", [to])?;
    // They vouch for records that are gone; the anchor vouches for everything before it.
    conn.execute("DELETE FROM checkpoints WHERE seq < ?1", [to])?;
    let deliveries = conn.execute(
        "DELETE FROM deliveries WHERE transfer_id IN (
             SELECT t.id FROM transfers t
             WHERE t.log_seq <= ?1 AND t.payload_purged_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM log l WHERE l.transfer_id = t.id)
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.transfer_id = t.id AND d.state NOT IN ('delivered', 'dead')))",
        [to],
    )?;
    let transfers = conn.execute(
        "DELETE FROM transfers
         WHERE log_seq <= ?1 AND payload_purged_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM log l WHERE l.transfer_id = transfers.id)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.transfer_id = transfers.id)",
        [to],
    )?;
    let record = LogPurgedRecord {
        kind: RecordKind::LogPurged,
        at: at.clone(),
        retain_days,
        cutoff,
        from_seq: from,
        to_seq: to,
        records: u64::try_from(records).unwrap_or(u64::MAX),
        anchor: Anchor {
            seq: to,
            at: anchor_at,
            hash: hex::encode(hash),
        },
        transfers: u64::try_from(transfers).unwrap_or(u64::MAX),
        deliveries: u64::try_from(deliveries).unwrap_or(u64::MAX),
    };
    let seq = tx.append(&LogEntry::new(&record)?)?;
    Ok(Purge::Done { seq, record })
}

/// Purges as one write job (see [`purge_in`]).
pub async fn purge(
    store: &Store,
    key: Arc<CheckpointKey>,
    retain_days: u32,
    now: time::OffsetDateTime,
) -> Result<Purge, StoreError> {
    store
        .write(false, move |tx| purge_in(tx, &key, retain_days, now))
        .await
}

/// Checks the whole log against `keys`, in one read transaction (so that a purge or checkpoint
/// committed meanwhile is seen entirely or not at all). Works on a read-only connection,
/// alongside a running gateway.
pub fn verify(conn: &Connection, keys: &[PublicKey]) -> Result<Report, StoreError> {
    conn.execute_batch("BEGIN")?;
    let report = check(conn, keys, None);
    // Nothing was written: ending the read cannot lose anything.
    let _ = conn.execute_batch("ROLLBACK");
    report
}

/// A column as bytes, whatever a tamperer stored in it.
fn bytes<'a>(v: ValueRef<'a>) -> &'a [u8] {
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    }
}

fn checkpoints(conn: &Connection, up_to: i64) -> Result<Vec<Checkpoint>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, hash, public_key, signature FROM checkpoints WHERE seq <= ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([up_to])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(Checkpoint {
            seq: r.get(0)?,
            at: String::from_utf8_lossy(bytes(r.get_ref(1)?)).into_owned(),
            hash: bytes(r.get_ref(2)?).to_vec(),
            public_key: String::from_utf8_lossy(bytes(r.get_ref(3)?)).into_owned(),
            signature: bytes(r.get_ref(4)?).to_vec(),
        });
    }
    Ok(out)
}

/// Streams the records up to `up_to` (all, if `None`) through the verifier.
fn check(conn: &Connection, keys: &[PublicKey], up_to: Option<i64>) -> Result<Report, StoreError> {
    let bound = up_to.unwrap_or(i64::MAX);
    let mut v = verify::Verifier::new(keys, checkpoints(conn, bound)?);
    let mut stop = None;
    {
        let mut stmt = conn
            .prepare("SELECT seq, prev_hash, hash, body FROM log WHERE seq <= ?1 ORDER BY seq")?;
        let mut rows = stmt.query([bound])?;
        while let Some(r) = rows.next()? {
            let row = Row {
                seq: r.get(0)?,
                prev_hash: bytes(r.get_ref(1)?),
                hash: bytes(r.get_ref(2)?),
                body: bytes(r.get_ref(3)?),
            };
            if let Err(s) = v.row(row) {
                stop = Some(s);
                break;
            }
        }
    }
    let first_break = match stop {
        None => v.finish(),
        Some(Stop::Break(b)) => Some(b),
        Some(Stop::Suspect(s)) => Some(verify::classify(
            &s,
            &mut StoreLookup {
                conn,
                by_hash: None,
            },
        )?),
    };
    Ok(v.report(first_break))
}

/// Look-ups for classifying a break. The hash index is built only then, with one scan.
struct StoreLookup<'c> {
    conn: &'c Connection,
    by_hash: Option<HashMap<[u8; 32], i64>>,
}

impl Lookup for StoreLookup<'_> {
    type Error = StoreError;

    fn row(&mut self, seq: i64) -> Result<Option<OwnedRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, prev_hash, hash, body FROM log WHERE seq = ?1",
                [seq],
                |r| {
                    Ok(OwnedRow {
                        seq: r.get(0)?,
                        prev_hash: bytes(r.get_ref(1)?).to_vec(),
                        hash: bytes(r.get_ref(2)?).to_vec(),
                        body: bytes(r.get_ref(3)?).to_vec(),
                    })
                },
            )
            .optional()?)
    }

    fn seq_of_hash(&mut self, hash: &[u8]) -> Result<Option<i64>, StoreError> {
        if self.by_hash.is_none() {
            let mut map = HashMap::new();
            let mut stmt = self
                .conn
                .prepare("SELECT seq, hash FROM log ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                if let Ok(h) = <[u8; 32]>::try_from(bytes(r.get_ref(1)?)) {
                    map.entry(h).or_insert(r.get(0)?);
                }
            }
            self.by_hash = Some(map);
        }
        Ok(<[u8; 32]>::try_from(hash)
            .ok()
            .and_then(|h| self.by_hash.as_ref()?.get(&h).copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_is_private_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("checkpoint.key");
        let public = CheckpointKey::generate_file(&path).unwrap();
        assert_eq!(*CheckpointKey::from_file(&path).unwrap().public(), public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            CheckpointKey::generate_file(&path),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(ensure_key_file(&path).unwrap(), None, "kept as it is");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&public.to_string()),
            "the file names its public key"
        );
    }

    #[test]
    fn keys_from_other_tools_are_read_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // `openssl genpkey -algorithm ed25519`: PKCS#8 v1, RFC 8410's example key.
        let openssl = dir.path().join("openssl.pem");
        std::fs::write(
            &openssl,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let key = CheckpointKey::from_file(&openssl).unwrap();
        assert_eq!(
            key.public().to_string(),
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
        );
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "AGE-SECRET-KEY-1...\n").unwrap();
        assert!(matches!(
            CheckpointKey::from_file(&bad),
            Err(KeyError::Format { .. })
        ));
        assert!(matches!(
            CheckpointKey::from_file(&dir.path().join("missing")),
            Err(KeyError::Read { .. })
        ));
    }
}
