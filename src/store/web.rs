//! What the web pages keep: sign-in codes (as hashes only), sessions (by the hash of their
//! cookie), the attempts that rate limits count, and the lists the pages show. Kept in the
//! store, not in memory, so that a restart forgets no limit and several processes would agree.
//!
//! Times are Unix seconds. Every function takes the connection or transaction it runs in.

use super::db::{Db, Value};
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
    db: &dyn Db,
    pending_hash: &str,
    email: &str,
    code_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM web_codes WHERE email = ?1 OR created_at < ?2",
        &[email.into(), Value::Int(now - 86_400)],
    )?;
    db.execute(
        "INSERT INTO web_codes (pending_hash, email, code_hash, created_at, tries) VALUES (?1, ?2, ?3, ?4, 0)
         ON CONFLICT (pending_hash) DO UPDATE SET email = excluded.email, code_hash = excluded.code_hash, created_at = excluded.created_at, tries = 0",
        &[pending_hash.into(), email.into(), code_hash.into(), Value::Int(now)],
    )?;
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
    db: &dyn Db,
    pending_hash: &str,
    code_hash: &str,
    now: i64,
    max_age: i64,
    max_tries: u32,
) -> Result<CodeCheck, StoreError> {
    let Some(r) = db.row(
        "SELECT email, code_hash, created_at, tries FROM web_codes WHERE pending_hash = ?1",
        &[pending_hash.into()],
    )?
    else {
        return Ok(CodeCheck::Unknown);
    };
    let (email, expected, created, tries) = (r.text(0)?, r.text(1)?, r.int(2)?, r.int(3)?);
    let forget = || -> Result<(), StoreError> {
        db.execute(
            "DELETE FROM web_codes WHERE pending_hash = ?1",
            &[pending_hash.into()],
        )?;
        Ok(())
    };
    if now - created > max_age {
        forget()?;
        return Ok(CodeCheck::Expired(email));
    }
    // Both are SHA-256 of a secret 256-bit token and the code: timing reveals nothing useful.
    if expected == code_hash {
        forget()?;
        return Ok(CodeCheck::Right(email));
    }
    let tries = u32::try_from(tries).unwrap_or(u32::MAX).saturating_add(1);
    let tries_left = max_tries.saturating_sub(tries);
    if tries_left == 0 {
        forget()?;
    } else {
        db.execute(
            "UPDATE web_codes SET tries = ?2 WHERE pending_hash = ?1",
            &[pending_hash.into(), Value::Int(tries.into())],
        )?;
    }
    Ok(CodeCheck::Wrong { email, tries_left })
}

/// How many events `bucket` has had since `since`.
pub fn attempts(db: &dyn Db, bucket: &str, since: i64) -> Result<u32, StoreError> {
    let n = db
        .row(
            "SELECT COUNT(*) FROM web_attempts WHERE bucket = ?1 AND at >= ?2",
            &[bucket.into(), Value::Int(since)],
        )?
        .map_or(Ok(0), |r| r.int(0))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Counts one event for each bucket, and forgets events older than `forget_before`.
pub fn attempt(
    db: &dyn Db,
    buckets: &[&str],
    now: i64,
    forget_before: i64,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM web_attempts WHERE at < ?1",
        &[Value::Int(forget_before)],
    )?;
    for b in buckets {
        db.execute(
            "INSERT INTO web_attempts (bucket, at) VALUES (?1, ?2)",
            &[(*b).into(), Value::Int(now)],
        )?;
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
    db: &dyn Db,
    id_hash: &str,
    email: &str,
    now: i64,
    forget_before: i64,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM web_sessions WHERE seen_at < ?1",
        &[Value::Int(forget_before)],
    )?;
    db.execute(
        "INSERT INTO web_sessions (id_hash, email, created_at, seen_at) VALUES (?1, ?2, ?3, ?3)",
        &[id_hash.into(), email.into(), Value::Int(now)],
    )?;
    Ok(())
}

pub fn session(db: &dyn Db, id_hash: &str) -> Result<Option<Session>, StoreError> {
    db.row(
        "SELECT email, created_at, seen_at FROM web_sessions WHERE id_hash = ?1",
        &[id_hash.into()],
    )?
    .map(|r| {
        Ok(Session {
            email: r.text(0)?,
            created_at: r.int(1)?,
            seen_at: r.int(2)?,
        })
    })
    .transpose()
}

pub fn session_touch(db: &dyn Db, id_hash: &str, now: i64) -> Result<(), StoreError> {
    db.execute(
        "UPDATE web_sessions SET seen_at = ?2 WHERE id_hash = ?1",
        &[id_hash.into(), Value::Int(now)],
    )?;
    Ok(())
}

pub fn session_end(db: &dyn Db, id_hash: &str) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM web_sessions WHERE id_hash = ?1",
        &[id_hash.into()],
    )?;
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
pub fn passkeys(db: &dyn Db, email: &str) -> Result<Vec<StoredPasskey>, StoreError> {
    db.rows(
        "SELECT cred_id, user_id, passkey, name, created_at, used_at FROM web_passkeys WHERE email = ?1 ORDER BY created_at, cred_id",
        &[email.into()],
    )?
    .iter()
    .map(|r| {
        Ok(StoredPasskey {
            cred_id: r.text(0)?,
            user_id: r.text(1)?,
            passkey: r.text(2)?,
            name: r.text(3)?,
            created_at: r.int(4)?,
            used_at: r.opt_int(5)?,
        })
    })
    .collect()
}

/// Keeps a new passkey for `email`. `false`: a passkey with this credential id is kept already
/// (for anyone), and nothing changed.
pub fn passkey_add(db: &dyn Db, email: &str, p: &StoredPasskey) -> Result<bool, StoreError> {
    let n = db.execute(
        "INSERT INTO web_passkeys (cred_id, email, user_id, passkey, name, created_at, used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL) ON CONFLICT DO NOTHING",
        &[
            (&p.cred_id).into(),
            email.into(),
            (&p.user_id).into(),
            (&p.passkey).into(),
            (&p.name).into(),
            Value::Int(p.created_at),
        ],
    )?;
    Ok(n == 1)
}

/// After a sign-in with it: the passkey's new counter (if it changed) and when it was used.
pub fn passkey_used(
    db: &dyn Db,
    cred_id: &str,
    passkey: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE web_passkeys SET passkey = COALESCE(?2, passkey), used_at = ?3 WHERE cred_id = ?1",
        &[cred_id.into(), passkey.into(), Value::Int(now)],
    )?;
    Ok(())
}

/// Removes one of `email`'s passkeys; `false` if they have none with this id.
pub fn passkey_remove(db: &dyn Db, email: &str, cred_id: &str) -> Result<bool, StoreError> {
    let n = db.execute(
        "DELETE FROM web_passkeys WHERE email = ?1 AND cred_id = ?2",
        &[email.into(), cred_id.into()],
    )?;
    Ok(n == 1)
}

/// Keeps a passkey ceremony's state until its second request (forgetting any older than a day).
pub fn ceremony_put(
    db: &dyn Db,
    id_hash: &str,
    kind: &str,
    email: &str,
    state: &str,
    now: i64,
) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM web_ceremonies WHERE created_at < ?1",
        &[Value::Int(now - 86_400)],
    )?;
    db.execute(
        "INSERT INTO web_ceremonies (id_hash, kind, email, state, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id_hash) DO UPDATE SET kind = excluded.kind, email = excluded.email, state = excluded.state, created_at = excluded.created_at",
        &[
            id_hash.into(),
            kind.into(),
            email.into(),
            state.into(),
            Value::Int(now),
        ],
    )?;
    Ok(())
}

/// Takes a ceremony of `kind` begun no more than `max_age` seconds ago: (email, state). It is
/// removed whatever the answer, so each challenge is answered once.
pub fn ceremony_take(
    db: &dyn Db,
    id_hash: &str,
    kind: &str,
    now: i64,
    max_age: i64,
) -> Result<Option<(String, String)>, StoreError> {
    let found = db
        .row(
            "SELECT email, state, created_at FROM web_ceremonies WHERE id_hash = ?1 AND kind = ?2",
            &[id_hash.into(), kind.into()],
        )?
        .map(|r| Ok::<_, StoreError>((r.text(0)?, r.text(1)?, r.int(2)?)))
        .transpose()?;
    db.execute(
        "DELETE FROM web_ceremonies WHERE id_hash = ?1",
        &[id_hash.into()],
    )?;
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
pub fn sent_by(db: &dyn Db, sender: &OrgId, limit: usize) -> Result<Vec<SentTransfer>, StoreError> {
    let rows = db.rows(
        "SELECT id, received_at, purpose FROM transfers WHERE sender = ?1 ORDER BY received_at DESC, id DESC LIMIT ?2",
        &[
            sender.as_str().into(),
            Value::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    )?;
    rows.iter()
        .map(|r| {
            let id = r.text(0)?;
            Ok(SentTransfer {
                recipients: recipient_statuses(db, &id)?,
                id,
                received_at: r.text(1)?,
                purpose: r.text(2)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

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
