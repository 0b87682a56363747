//! What the web pages keep: sign-in codes (as hashes only), sessions (by the hash of their
//! cookie), the attempts that rate limits count, and the lists the pages show. Kept in the
//! store, not in memory, so that a restart forgets no limit and several processes would agree.
//!
//! Times are Unix seconds. Every function takes the connection or transaction it runs in.

use rusqlite::{Connection, OptionalExtension, params};

use super::{RecipientStatus, StoreError, recipient_statuses};
use crate::domain::ids::OrgId;

pub(super) const SCHEMA_V4: &str = "
-- A sign-in code waiting to be entered: keyed by the hash of the browser's pending token, so
-- that neither the code nor the token can be read back from the database.
CREATE TABLE web_codes (
    pending_hash TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    code_hash    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    tries        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX web_codes_email ON web_codes(email);

-- A signed-in person's session, keyed by the hash of its cookie.
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);

-- What the sign-in rate limits count: one row per event, per bucket (an address's hash or a
-- client address).
CREATE TABLE web_attempts (
    bucket TEXT NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX web_attempts_bucket ON web_attempts(bucket, at);
";

pub(super) const SCHEMA_V5: &str = "
-- A person's passkeys: the credential's public part and signature counter as webauthn-rs keeps
-- them (JSON; nothing in it is secret), under the credential's id, which belongs to one person.
CREATE TABLE web_passkeys (
    cred_id    TEXT PRIMARY KEY,
    email      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    passkey    TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX web_passkeys_email ON web_passkeys(email);

-- A passkey ceremony between its two requests (the challenge the browser must sign), keyed by
-- the hash of the id the browser holds; taken once.
CREATE TABLE web_ceremonies (
    id_hash    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    email      TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Keeps a new code for `email`, replacing any code sent to that address before (only the
/// newest code works).
pub fn code_issue(
    conn: &Connection,
    pending_hash: &str,
    email: &str,
    code_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM web_codes WHERE email = ?1 OR created_at < ?2")?
        .execute(params![email, now - 86_400])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO web_codes (pending_hash, email, code_hash, created_at, tries) VALUES (?1, ?2, ?3, ?4, 0)",
    )?
    .execute(params![pending_hash, email, code_hash, now])?;
    Ok(())
}

/// The outcome of entering a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right: the code is used up; the person with this address signs in.
    Right(String),
    /// Wrong: `tries_left` more may be made (0: the code is given up).
    Wrong { email: String, tries_left: u32 },
    /// Older than `max_age`: given up.
    Expired(String),
    /// No code is waiting for this browser.
    Unknown,
}

/// Checks an entered code against the one waiting for this browser, counting the try.
pub fn code_check(
    conn: &Connection,
    pending_hash: &str,
    code_hash: &str,
    now: i64,
    max_age: i64,
    max_tries: u32,
) -> Result<CodeCheck, StoreError> {
    let row: Option<(String, String, i64, i64)> = conn
        .prepare_cached(
            "SELECT email, code_hash, created_at, tries FROM web_codes WHERE pending_hash = ?1",
        )?
        .query_row(params![pending_hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((email, expected, created, tries)) = row else {
        return Ok(CodeCheck::Unknown);
    };
    let forget = |conn: &Connection| -> Result<(), StoreError> {
        conn.prepare_cached("DELETE FROM web_codes WHERE pending_hash = ?1")?
            .execute(params![pending_hash])?;
        Ok(())
    };
    if now - created > max_age {
        forget(conn)?;
        return Ok(CodeCheck::Expired(email));
    }
    // Both are SHA-256 of a secret 256-bit token and the code: timing reveals nothing useful.
    if expected == code_hash {
        forget(conn)?;
        return Ok(CodeCheck::Right(email));
    }
    let tries = u32::try_from(tries).unwrap_or(u32::MAX).saturating_add(1);
    let tries_left = max_tries.saturating_sub(tries);
    if tries_left == 0 {
        forget(conn)?;
    } else {
        conn.prepare_cached("UPDATE web_codes SET tries = ?2 WHERE pending_hash = ?1")?
            .execute(params![pending_hash, tries])?;
    }
    Ok(CodeCheck::Wrong { email, tries_left })
}

/// How many events `bucket` has had since `since`.
pub fn attempts(conn: &Connection, bucket: &str, since: i64) -> Result<u32, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM web_attempts WHERE bucket = ?1 AND at >= ?2")?
        .query_row(params![bucket, since], |r| r.get(0))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Counts one event for each bucket, and forgets events older than `forget_before`.
pub fn attempt(
    conn: &Connection,
    buckets: &[&str],
    now: i64,
    forget_before: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM web_attempts WHERE at < ?1")?
        .execute(params![forget_before])?;
    let mut ins = conn.prepare_cached("INSERT INTO web_attempts (bucket, at) VALUES (?1, ?2)")?;
    for b in buckets {
        ins.execute(params![b, now])?;
    }
    Ok(())
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub email: String,
    pub created_at: i64,
    pub seen_at: i64,
}

pub fn session_create(
    conn: &Connection,
    id_hash: &str,
    email: &str,
    now: i64,
    forget_before: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM web_sessions WHERE seen_at < ?1")?
        .execute(params![forget_before])?;
    conn.prepare_cached(
        "INSERT INTO web_sessions (id_hash, email, created_at, seen_at) VALUES (?1, ?2, ?3, ?3)",
    )?
    .execute(params![id_hash, email, now])?;
    Ok(())
}

pub fn session(conn: &Connection, id_hash: &str) -> Result<Option<Session>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT email, created_at, seen_at FROM web_sessions WHERE id_hash = ?1")?
        .query_row(params![id_hash], |r| {
            Ok(Session {
                email: r.get(0)?,
                created_at: r.get(1)?,
                seen_at: r.get(2)?,
            })
        })
        .optional()?)
}

pub fn session_touch(conn: &Connection, id_hash: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE web_sessions SET seen_at = ?2 WHERE id_hash = ?1")?
        .execute(params![id_hash, now])?;
    Ok(())
}

pub fn session_end(conn: &Connection, id_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM web_sessions WHERE id_hash = ?1")?
        .execute(params![id_hash])?;
    Ok(())
}

/// A passkey as stored: `passkey` is webauthn-rs's JSON of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    pub cred_id: String,
    pub user_id: String,
    pub passkey: String,
    pub name: String,
    pub created_at: i64,
    pub used_at: Option<i64>,
}

/// A person's passkeys, oldest first.
pub fn passkeys(conn: &Connection, email: &str) -> Result<Vec<StoredPasskey>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT cred_id, user_id, passkey, name, created_at, used_at FROM web_passkeys WHERE email = ?1 ORDER BY created_at, cred_id",
    )?;
    let rows = stmt
        .query_map(params![email], |r| {
            Ok(StoredPasskey {
                cred_id: r.get(0)?,
                user_id: r.get(1)?,
                passkey: r.get(2)?,
                name: r.get(3)?,
                created_at: r.get(4)?,
                used_at: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Keeps a new passkey for `email`. `false`: a passkey with this credential id is kept already
/// (for anyone), and nothing changed.
pub fn passkey_add(conn: &Connection, email: &str, p: &StoredPasskey) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO web_passkeys (cred_id, email, user_id, passkey, name, created_at, used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
        )?
        .execute(params![p.cred_id, email, p.user_id, p.passkey, p.name, p.created_at])?;
    Ok(n == 1)
}

/// After a sign-in with it: the passkey's new counter (if it changed) and when it was used.
pub fn passkey_used(
    conn: &Connection,
    cred_id: &str,
    passkey: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE web_passkeys SET passkey = COALESCE(?2, passkey), used_at = ?3 WHERE cred_id = ?1",
    )?
    .execute(params![cred_id, passkey, now])?;
    Ok(())
}

/// Removes one of `email`'s passkeys; `false` if they have none with this id.
pub fn passkey_remove(conn: &Connection, email: &str, cred_id: &str) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM web_passkeys WHERE email = ?1 AND cred_id = ?2")?
        .execute(params![email, cred_id])?;
    Ok(n == 1)
}

/// Keeps a passkey ceremony's state until its second request (forgetting any older than a day).
pub fn ceremony_put(
    conn: &Connection,
    id_hash: &str,
    kind: &str,
    email: &str,
    state: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM web_ceremonies WHERE created_at < ?1")?
        .execute(params![now - 86_400])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO web_ceremonies (id_hash, kind, email, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id_hash, kind, email, state, now])?;
    Ok(())
}

/// Takes a ceremony of `kind` begun no more than `max_age` seconds ago: (email, state). It is
/// removed whatever the answer, so each challenge is answered once.
pub fn ceremony_take(
    conn: &Connection,
    id_hash: &str,
    kind: &str,
    now: i64,
    max_age: i64,
) -> Result<Option<(String, String)>, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT email, state, created_at FROM web_ceremonies WHERE id_hash = ?1 AND kind = ?2",
        )?
        .query_row(params![id_hash, kind], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    conn.prepare_cached("DELETE FROM web_ceremonies WHERE id_hash = ?1")?
        .execute(params![id_hash])?;
    Ok(found
        .filter(|(_, _, at)| now - at <= max_age)
        .map(|(email, state, _)| (email, state)))
}

/// One of an organisation's transfers, for its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTransfer {
    pub id: String,
    pub received_at: String,
    pub purpose: String,
    pub recipients: Vec<RecipientStatus>,
}

/// The organisation's newest transfers, newest first.
pub fn sent_by(
    conn: &Connection,
    sender: &OrgId,
    limit: usize,
) -> Result<Vec<SentTransfer>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_at, purpose FROM transfers WHERE sender = ?1 ORDER BY received_at DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(
            params![sender.as_str(), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<Vec<(String, String, String)>, _>>()?;
    rows.into_iter()
        .map(|(id, received_at, purpose)| {
            Ok(SentTransfer {
                recipients: recipient_statuses(conn, &id)?,
                id,
                received_at,
                purpose,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA_V4).unwrap();
        c.execute_batch(SCHEMA_V5).unwrap();
        c
    }

    #[test]
    fn a_code_is_single_use_expires_after_its_age_and_ends_after_its_tries() {
        let c = conn();
        code_issue(&c, "p1", "sam@x.org", "right", 1000).unwrap();
        // Ten minutes and one second later: expired, and gone.
        assert_eq!(
            code_check(&c, "p1", "right", 1601, 600, 5).unwrap(),
            CodeCheck::Expired("sam@x.org".into())
        );
        assert_eq!(
            code_check(&c, "p1", "right", 1602, 600, 5).unwrap(),
            CodeCheck::Unknown
        );

        code_issue(&c, "p2", "sam@x.org", "right", 2000).unwrap();
        for left in (1..5).rev() {
            assert_eq!(
                code_check(&c, "p2", "wrong", 2001, 600, 5).unwrap(),
                CodeCheck::Wrong {
                    email: "sam@x.org".into(),
                    tries_left: left
                }
            );
        }
        assert_eq!(
            code_check(&c, "p2", "wrong", 2001, 600, 5).unwrap(),
            CodeCheck::Wrong {
                email: "sam@x.org".into(),
                tries_left: 0
            }
        );
        // Given up: even the right code no longer works.
        assert_eq!(
            code_check(&c, "p2", "right", 2002, 600, 5).unwrap(),
            CodeCheck::Unknown
        );

        // A new code replaces the old one for the same address; each works once.
        code_issue(&c, "p3", "sam@x.org", "old", 3000).unwrap();
        code_issue(&c, "p4", "sam@x.org", "new", 3001).unwrap();
        assert_eq!(
            code_check(&c, "p3", "old", 3002, 600, 5).unwrap(),
            CodeCheck::Unknown
        );
        assert_eq!(
            code_check(&c, "p4", "new", 3002, 600, 5).unwrap(),
            CodeCheck::Right("sam@x.org".into())
        );
        assert_eq!(
            code_check(&c, "p4", "new", 3003, 600, 5).unwrap(),
            CodeCheck::Unknown
        );
    }

    #[test]
    fn attempts_are_counted_per_bucket_within_the_window() {
        let c = conn();
        attempt(&c, &["ip:1", "to:a"], 100, 0).unwrap();
        attempt(&c, &["ip:1"], 200, 0).unwrap();
        assert_eq!(attempts(&c, "ip:1", 0).unwrap(), 2);
        assert_eq!(attempts(&c, "ip:1", 150).unwrap(), 1);
        assert_eq!(attempts(&c, "to:a", 0).unwrap(), 1);
        // Old events are forgotten as new ones come.
        attempt(&c, &["ip:2"], 1000, 500).unwrap();
        assert_eq!(attempts(&c, "ip:1", 0).unwrap(), 0);
    }

    #[test]
    fn a_passkey_belongs_to_one_person_and_a_ceremony_is_taken_once_within_its_age() {
        let c = conn();
        let p = StoredPasskey {
            cred_id: "cred-1".into(),
            user_id: "u".into(),
            passkey: "{}".into(),
            name: "Work laptop".into(),
            created_at: 10,
            used_at: None,
        };
        assert!(passkey_add(&c, "a@x.example", &p).unwrap());
        assert!(
            !passkey_add(&c, "b@x.example", &p).unwrap(),
            "a credential id is kept for one person only"
        );
        assert!(passkeys(&c, "b@x.example").unwrap().is_empty());
        passkey_used(&c, "cred-1", Some("{\"n\":1}"), 20).unwrap();
        let kept = passkeys(&c, "a@x.example").unwrap();
        assert_eq!(kept[0].passkey, "{\"n\":1}");
        assert_eq!(kept[0].used_at, Some(20));
        assert!(
            !passkey_remove(&c, "b@x.example", "cred-1").unwrap(),
            "not theirs"
        );
        assert!(passkey_remove(&c, "a@x.example", "cred-1").unwrap());

        ceremony_put(&c, "h1", "register", "a@x.example", "state", 100).unwrap();
        assert_eq!(
            ceremony_take(&c, "h1", "sign_in", 101, 300).unwrap(),
            None,
            "other kind"
        );
        ceremony_put(&c, "h1", "register", "a@x.example", "state", 100).unwrap();
        assert_eq!(
            ceremony_take(&c, "h1", "register", 101, 300).unwrap(),
            Some(("a@x.example".into(), "state".into()))
        );
        assert_eq!(
            ceremony_take(&c, "h1", "register", 102, 300).unwrap(),
            None,
            "once"
        );
        ceremony_put(&c, "h2", "register", "a@x.example", "state", 100).unwrap();
        assert_eq!(
            ceremony_take(&c, "h2", "register", 401, 300).unwrap(),
            None,
            "too old"
        );
    }
}
