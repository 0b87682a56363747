//! Signing in with a one-time code emailed to the registered address, sessions, signing out.
//!
//! A code is six digits, single use, valid for ten minutes, and kept only as the hash of itself
//! with the browser's pending token (a `__Host-` cookie set when it was asked for), so neither
//! can be read back from the store. A code may be tried five times; an address may be sent
//! five codes, and a client address may ask or try thirty times, per fifteen minutes, counted in
//! the store. Every answer is the same whether or not the address is registered, and the email
//! is sent after the answer, so that its time does not tell either.
//!
//! A session is a random token in a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict),
//! kept in the store as its hash, new at every sign-in, ended after `web.session_idle_secs`
//! unused or `web.session_max_secs` after sign-in, and at once when its person is removed
//! from `people.toml`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;

use super::pages::{self, CodePage, EmailPage, FieldError};
use super::{ClientAddr, WebApp, cookie, form_pairs, hash, see_other, set_cookie, token, unix_now};
use crate::domain::registry::Person;
use crate::log::{AccessEvent, LogEntry, PersonAccessRecord, RecordKind, SenderRecord};
use crate::store::StoreError;
use crate::store::web::{self as kept, CodeCheck};

pub(super) const SESSION_COOKIE: &str = "__Host-postern-session";
const PENDING_COOKIE: &str = "__Host-postern-signin";
/// A code lasts ten minutes.
const CODE_SECS: i64 = 600;
const CODE_TRIES: u32 = 5;
/// The window the rate limits count in, and their limits.
pub(super) const WINDOW_SECS: i64 = 900;
const CODES_PER_ADDRESS: u32 = 5;
pub(super) const ATTEMPTS_PER_CLIENT: u32 = 30;

/// A signed-in person, for the handlers that need one. Without a valid session the page asked
/// for is answered with the sign-in page.
pub struct SignedIn {
    pub person: Person,
    pub org_name: String,
}

impl FromRequestParts<Arc<WebApp>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<WebApp>,
    ) -> Result<Self, Self::Rejection> {
        // Back to this page once signed in (a link in an email lands here): GET pages only.
        let back = (parts.method == axum::http::Method::GET)
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten()
            .filter(|p| p != "/")
            .and_then(|p| safe_next(&p))
            .map(|p| format!("next={}", encode(&p)));
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(see_other(&match &back {
                Some(q) => format!("/sign-in?{q}"),
                None => "/sign-in".to_owned(),
            }));
        };
        let id_hash = hash(&["session", value]);
        let key = id_hash.clone();
        let found = app
            .api
            .store
            .read(move |c| kept::session(c, &key))
            .await
            .map_err(|e| pages::store_down(&e))?;
        let now = unix_now();
        let idle = i64::try_from(app.settings.session_idle.as_secs()).unwrap_or(i64::MAX);
        let max = i64::try_from(app.settings.session_max.as_secs()).unwrap_or(i64::MAX);
        let registry = app.api.registry.current();
        let live = found.filter(|s| now - s.seen_at < idle && now - s.created_at < max);
        let Some((s, person)) =
            live.and_then(|s| registry.person(&s.email).cloned().map(|p| (s, p)))
        else {
            let mut r = see_other(&match &back {
                Some(q) => format!("/sign-in?expired=1&{q}"),
                None => "/sign-in?expired=1".to_owned(),
            });
            set_cookie(&mut r, SESSION_COOKIE, "", Some(0));
            return Err(r);
        };
        // Written at most once a minute: the idle clock does not need more.
        if now - s.seen_at >= 60 {
            let _ = app
                .api
                .store
                .write(false, move |tx| kept::session_touch(tx.db(), &id_hash, now))
                .await;
        }
        // A person whose organisation requires passkeys, signed in with a code because they
        // have none yet, may do nothing but add one.
        if super::passkeys::required(&registry, &person)
            && !parts.uri.path().starts_with("/passkeys")
        {
            let email = person.email.clone();
            let has = app
                .api
                .store
                .read(move |c| kept::passkeys(c, &email).map(|l| !l.is_empty()))
                .await
                .map_err(|e| pages::store_down(&e))?;
            if !has {
                return Err(see_other("/passkeys?required=1"));
            }
        }
        let org_name = registry
            .organisation(&person.org)
            .map_or_else(|| person.org.to_string(), |o| o.name.clone());
        Ok(SignedIn { person, org_name })
    }
}

pub fn client(parts: Option<&ClientAddr>) -> String {
    parts.map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

pub async fn email_page(
    State(app): State<Arc<WebApp>>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let q = q.unwrap_or_default();
    let note = if q.contains("expired=1") {
        Some("Your session ended. Sign in again to go on.")
    } else if q.contains("signed-out=1") {
        Some("You have signed out.")
    } else if q.contains("again=1") {
        Some("Enter your email address to get a new code.")
    } else {
        None
    };
    let mut page = EmailPage::new(Vec::new(), String::new(), note);
    page.passkeys = app.passkeys.is_some();
    page.next = next_in(q.as_bytes());
    pages::render(&page)
}

/// The answer to an email address: always the "check your email" step, registered or not.
pub async fn email_sent(
    State(app): State<Arc<WebApp>>,
    client_addr: Option<axum::Extension<ClientAddr>>,
    body: axum::body::Bytes,
) -> Response {
    let email = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let next = next_in(&body);
    if !plausible_email(&email) {
        let message = if email.is_empty() {
            "Enter your email address"
        } else {
            "Enter an email address in the correct format, like name@example.org"
        };
        let mut page = EmailPage::new(vec![FieldError::new("email", message)], email, None);
        page.passkeys = app.passkeys.is_some();
        page.next = next;
        return pages::render_status(axum::http::StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let ip = client(client_addr.as_deref());
    let now = unix_now();
    let (Some(pending), Some(code)) = (token(), six_digits()) else {
        return pages::server_error();
    };
    let registry = app.api.registry.current();
    let person = registry.person(&email).cloned();
    let address_bucket = format!("to:{}", hash(&["address", &email]));
    let ip_bucket = format!("ip:{ip}");
    let pending_hash = hash(&["pending", &pending]);
    let code_hash = hash(&["code", &pending, &code]);
    let record = person
        .as_ref()
        .and_then(|p| access_entry(p, AccessEvent::CodeSent, &ip));
    let withheld_record = person
        .as_ref()
        .and_then(|p| access_entry(p, AccessEvent::CodeWithheld, &ip));
    let passkey_only = person
        .as_ref()
        .is_some_and(|p| super::passkeys::required(&registry, p));
    let for_store = person.as_ref().map(|p| p.email.clone());
    let written = app
        .api
        .store
        .write(false, move |tx| {
            let since = now - WINDOW_SECS;
            if kept::attempts(tx.db(), &ip_bucket, since)? >= ATTEMPTS_PER_CLIENT {
                return Ok(Limited::Client);
            }
            let sent = kept::attempts(tx.db(), &address_bucket, since)?;
            kept::attempt(tx.db(), &[&ip_bucket, &address_bucket], now, since)?;
            if sent >= CODES_PER_ADDRESS {
                return Ok(Limited::Address);
            }
            if let Some(email) = for_store {
                // Their organisation requires passkeys and they have one: no code.
                if passkey_only && !kept::passkeys(tx.db(), &email)?.is_empty() {
                    if let Some(entry) = &withheld_record {
                        tx.append(entry)?;
                    }
                    return Ok(Limited::No { withheld: true });
                }
                kept::code_issue(tx.db(), &pending_hash, &email, &code_hash, now)?;
                if let Some(entry) = &record {
                    tx.append(entry)?;
                }
            }
            Ok(Limited::No { withheld: false })
        })
        .await;
    let withheld = match written {
        Ok(Limited::No { withheld }) => withheld,
        Ok(Limited::Client) => {
            return pages::problem(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "Too many tries",
                "There have been too many sign-in attempts from your network. Wait 15 minutes, then try again.",
            );
        }
        Ok(Limited::Address) => {
            return pages::problem(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "Too many codes",
                "Too many codes have been sent to this address. Wait 15 minutes, then ask for a new one. Use the newest code you were sent.",
            );
        }
        Err(e) => return pages::store_down(&e),
    };
    match person {
        Some(p) if withheld => send_passkey_reminder(app.clone(), p),
        Some(p) => send_code(app.clone(), p, code),
        None => {}
    }
    let mut r = see_other(&if next.is_empty() {
        "/sign-in/code".to_owned()
    } else {
        format!("/sign-in/code?next={}", encode(&next))
    });
    set_cookie(
        &mut r,
        PENDING_COOKIE,
        &pending,
        Some(CODE_SECS.unsigned_abs()),
    );
    r
}

enum Limited {
    /// Within the limits: a code was issued, or `withheld` for a passkey.
    No {
        withheld: bool,
    },
    Client,
    Address,
}

/// Sends the code after the answer has gone (its time must not tell whether the address is
/// registered). A failure is logged, without the code; the person asks for a new one.
fn send_code(app: Arc<WebApp>, person: Person, code: String) {
    tokio::spawn(async move {
        if app.print_codes {
            // The demo's terminal only (`postern serve` never sets this).
            println!("postern demo: sign-in code for {}: {code}", person.email);
        }
        let Some(mail) = app.mail.clone() else {
            tracing::warn!("web: no email channel: a sign-in code could not be sent");
            return;
        };
        let body = format!(
            "Hello {name},\n\nYour code to sign in to Postern is:\n\n    {code}\n\nIt works once, for 10 minutes. If you did not ask for it, you can ignore this email:\nnobody can sign in without the code.\n",
            name = person.name
        );
        let name = match super::token() {
            Some(t) => t,
            None => return,
        };
        if let Err(e) = mail
            .notice(&person.email, "Your Postern sign-in code", body, &name)
            .await
        {
            tracing::warn!(error = %e, org = %person.org, "web: a sign-in code could not be sent");
        }
    });
}

/// Tells a person whose organisation requires passkeys, and who has one, to use it: the page
/// said "check your email" as for anyone, so the email says why no code came.
fn send_passkey_reminder(app: Arc<WebApp>, person: Person) {
    tokio::spawn(async move {
        let Some(mail) = app.mail.clone() else {
            return;
        };
        let body = format!(
            "Hello {name},\n\nSomeone asked for a code to sign in to Postern as you. Your organisation asks you to sign in\nwith your passkey instead, so no code was sent. On the sign-in page, enter your email address\nand choose \"Sign in with a passkey\".\n\nIf you have lost your passkey, ask your IT team to remove it; then you can sign in with a code\nand add a new one. If it was not you who asked, you can ignore this email.\n",
            name = person.name
        );
        let Some(name) = super::token() else { return };
        if let Err(e) = mail
            .notice(
                &person.email,
                "Sign in to Postern with your passkey",
                body,
                &name,
            )
            .await
        {
            tracing::warn!(error = %e, org = %person.org, "web: a passkey reminder could not be sent");
        }
    });
}

pub async fn code_page(axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let next = next_in(q.unwrap_or_default().as_bytes());
    pages::render(&CodePage::new(Vec::new(), next))
}

pub async fn code_entered(
    State(app): State<Arc<WebApp>>,
    client_addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(pending) = cookie(&headers, PENDING_COOKIE).map(str::to_owned) else {
        return see_other("/sign-in?again=1");
    };
    let next = next_in(&body);
    let code: String = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let wrong = |message: &'static str| {
        pages::render_status(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            &CodePage::new(vec![FieldError::new("code", message)], next.clone()),
        )
    };
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return wrong("Enter the 6-digit code from the email, like 123456");
    }
    let ip = client(client_addr.as_deref());
    let now = unix_now();
    let Some(session) = token() else {
        return pages::server_error();
    };
    let registry = app.api.registry.current();
    let pending_hash = hash(&["pending", &pending]);
    let code_hash = hash(&["code", &pending, &code]);
    let session_hash = hash(&["session", &session]);
    let ip_bucket = format!("ip:{ip}");
    let idle = i64::try_from(app.settings.session_idle.as_secs()).unwrap_or(i64::MAX);
    let ip_for_log = ip.clone();
    let outcome =
        app.api
            .store
            .write(false, move |tx| {
                let since = now - WINDOW_SECS;
                if kept::attempts(tx.db(), &ip_bucket, since)? >= ATTEMPTS_PER_CLIENT {
                    return Ok(Entered::Limited);
                }
                let checked = kept::code_check(
                    tx.db(),
                    &pending_hash,
                    &code_hash,
                    now,
                    CODE_SECS,
                    CODE_TRIES,
                )?;
                let log_detail = |tx: &mut crate::store::Tx<'_>,
                                  email: &str,
                                  event,
                                  detail: Option<&str>|
                 -> Result<(), StoreError> {
                    if let Some(entry) = registry.person(email).and_then(|p| {
                        detail_entry(p, event, &ip_for_log, detail.map(str::to_owned))
                    }) {
                        tx.append(&entry)?;
                    }
                    Ok(())
                };
                let log = |tx: &mut crate::store::Tx<'_>, email: &str, event| {
                    log_detail(tx, email, event, None)
                };
                match checked {
                    // A passkey added since the code was sent (by a person whose organisation
                    // requires them) makes the code worthless.
                    CodeCheck::Right(email)
                        if registry.person(&email).is_some_and(|p| {
                            super::passkeys::required(&registry, p)
                                && !kept::passkeys(tx.db(), &email).is_ok_and(|l| l.is_empty())
                        }) =>
                    {
                        kept::attempt(tx.db(), &[&ip_bucket], now, since)?;
                        Ok(Entered::Wrong)
                    }
                    CodeCheck::Right(email) if registry.person(&email).is_some() => {
                        kept::session_create(tx.db(), &session_hash, &email, now, now - idle)?;
                        log_detail(tx, &email, AccessEvent::SignedIn, Some("code"))?;
                        Ok(Entered::SignedIn)
                    }
                    CodeCheck::Wrong { email, tries_left } => {
                        kept::attempt(tx.db(), &[&ip_bucket], now, since)?;
                        log(tx, &email, AccessEvent::CodeWrong)?;
                        if tries_left == 0 {
                            log(tx, &email, AccessEvent::CodeLocked)?;
                        }
                        Ok(Entered::Wrong)
                    }
                    // Expired, unknown, or a person removed since: the same answer as a wrong code.
                    _ => {
                        kept::attempt(tx.db(), &[&ip_bucket], now, since)?;
                        Ok(Entered::Wrong)
                    }
                }
            })
            .await;
    match outcome {
        Ok(Entered::SignedIn) => {
            let mut r = see_other(if next.is_empty() { "/" } else { &next });
            set_cookie(&mut r, PENDING_COOKIE, "", Some(0));
            set_cookie(&mut r, super::signin::SESSION_COOKIE, &session, None);
            r
        }
        Ok(Entered::Wrong) => wrong(
            "The code is not right, or it has expired. Check the newest email and try again, or send a new code",
        ),
        Ok(Entered::Limited) => pages::problem(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Too many tries",
            "There have been too many sign-in attempts from your network. Wait 15 minutes, then ask for a new code.",
        ),
        Err(e) => pages::store_down(&e),
    }
}

enum Entered {
    SignedIn,
    Wrong,
    Limited,
}

pub async fn sign_out(
    State(app): State<Arc<WebApp>>,
    client_addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        let id_hash = hash(&["session", value]);
        let registry = app.api.registry.current();
        let ip = client(client_addr.as_deref());
        let _ = app
            .api
            .store
            .write(false, move |tx| {
                if let Some(s) = kept::session(tx.db(), &id_hash)? {
                    kept::session_end(tx.db(), &id_hash)?;
                    if let Some(entry) = registry
                        .person(&s.email)
                        .and_then(|p| access_entry(p, AccessEvent::SignedOut, &ip))
                    {
                        tx.append(&entry)?;
                    }
                }
                Ok(())
            })
            .await;
    }
    let mut r = see_other("/sign-in?signed-out=1");
    set_cookie(&mut r, SESSION_COOKIE, "", Some(0));
    r
}

/// The transfer log's record of a person's access (never the code).
fn access_entry(p: &Person, event: AccessEvent, ip: &str) -> Option<LogEntry> {
    item_entry(p, event, ip, None)
}

/// As `access_entry`, with a word on how (`passkey`, a passkey's name).
pub fn detail_entry(
    p: &Person,
    event: AccessEvent,
    ip: &str,
    detail: Option<String>,
) -> Option<LogEntry> {
    entry(p, event, ip, None, None, detail)
}

/// As `access_entry`, about an inbox item: (transfer, item, what).
pub fn item_entry(
    p: &Person,
    event: AccessEvent,
    ip: &str,
    item: Option<(crate::domain::ids::TransferId, String, Option<String>)>,
) -> Option<LogEntry> {
    let (transfer_id, inbox_id, detail) = match item {
        Some((t, i, d)) => (Some(t), Some(i), d),
        None => (None, None, None),
    };
    entry(p, event, ip, transfer_id, inbox_id, detail)
}

pub(super) fn entry(
    p: &Person,
    event: AccessEvent,
    ip: &str,
    transfer_id: Option<crate::domain::ids::TransferId>,
    inbox_id: Option<String>,
    detail: Option<String>,
) -> Option<LogEntry> {
    let record = PersonAccessRecord {
        kind: RecordKind::PersonAccess,
        at: crate::clock::stamp(crate::clock::now()),
        sender: SenderRecord {
            org: p.org.clone(),
            certificate: String::new(),
            person: Some(p.email.clone()),
        },
        code: event,
        client: ip.to_owned(),
        transfer_id,
        inbox_id,
        detail,
    };
    LogEntry::new(&record).ok()
}

/// A page of this site to go to after signing in: a path (never another site's address, nor
/// the sign-in pages), or `None`.
pub(super) fn safe_next(p: &str) -> Option<String> {
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && !p.starts_with("/sign-")
        && p.len() <= 300
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~?=&%".contains(&b));
    ok.then(|| p.to_owned())
}

/// The `next` of a query or a form, if it is a safe one; else empty.
fn next_in(form: &[u8]) -> String {
    form_pairs(form)
        .into_iter()
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| safe_next(&v))
        .unwrap_or_default()
}

/// Percent-encodes for a query's value.
fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

pub(super) fn plausible_email(a: &str) -> bool {
    crate::domain::registry::email_address(a) && a.len() <= 254
}

/// Six random digits, uniformly (rejection sampling: no digit is likelier than another).
fn six_digits() -> Option<String> {
    let rng = ring::rand::SystemRandom::new();
    loop {
        let mut b = [0u8; 4];
        ring::rand::SecureRandom::fill(&rng, &mut b).ok()?;
        let n = u32::from_le_bytes(b);
        // The largest multiple of 10^6 that fits: values above it would favour low codes.
        if n < 4_294_000_000 {
            return Some(format!("{:06}", n % 1_000_000));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_addresses_are_checked() {
        for _ in 0..100 {
            let c = six_digits().unwrap();
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
        assert!(plausible_email("sam@riverside-youth.example"));
        assert!(!plausible_email("sam"));
        assert!(!plausible_email("sam@localhost"));
        assert!(!plausible_email("s am@x.org"));
    }

    #[test]
    fn only_a_page_of_this_site_is_gone_to_after_signing_in() {
        assert_eq!(safe_next("/inbox/abc-1").as_deref(), Some("/inbox/abc-1"));
        assert_eq!(
            safe_next("/transfers?page=2").as_deref(),
            Some("/transfers?page=2")
        );
        for bad in [
            "//evil.example/x",
            "https://evil.example",
            "/sign-in",
            "inbox",
            "/a\\b",
            "/<script>",
            "",
        ] {
            assert_eq!(safe_next(bad), None, "{bad}");
        }
    }
}
