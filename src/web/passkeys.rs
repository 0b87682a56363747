//! Passkeys (WebAuthn, checked by webauthn-rs): a signed-in person adds one on `/passkeys`, then
//! signs in with it from the sign-in page instead of a code. An organisation may require them
//! (`sign_in = "passkey"` in organisations.toml): its people are then sent a code only until they
//! have added a passkey, and a person signed in with a code but without a passkey can do nothing
//! but add one (`SignedIn` sends every other page here).
//!
//! The ceremonies need the browser's WebAuthn API, so these pages use the one script served
//! from the binary (`/assets/postern.js`); without JavaScript the code sign-in still works.
//! The relying party is the pages' address (`web.public_url`, or `localhost` for a loopback
//! listener): WebAuthn needs a name, not an IP address, so with only an IP address there are no
//! passkeys and the pages say so. Each challenge is kept in the store between its two requests
//! and answered once, within five minutes. Asking with an address that has no passkey gets a
//! challenge that looks like a real one (webauthn-rs's decoy credentials, the same for an address
//! each time, from a key derived from the subject-hashing key), so the answer does not tell who
//! is registered. Adding, removing, signing in with and failing
//! with a passkey are recorded in the transfer log.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use webauthn_rs::fake::{FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::pages::{self, PasskeyRow, PasskeysPage};
use super::signin::{
    self, ATTEMPTS_PER_CLIENT, SESSION_COOKIE, SignedIn, WINDOW_SECS, client, detail_entry,
};
use super::{ClientAddr, WebApp, form_pairs, hash, see_other, set_cookie, token, unix_now};
use crate::domain::registry::{Person, Registry, SignIn};
use crate::log::AccessEvent;
use crate::store::web::{self as kept, StoredPasskey};

/// A challenge must be answered within five minutes.
const CEREMONY_SECS: i64 = 300;
const REGISTER: &str = "register";
const SIGN_IN: &str = "sign_in";

/// The relying party for the pages at `address`, or `None` when its host is an IP address
/// (WebAuthn needs a domain name) or the address is not a URL.
pub fn relying_party(address: &str) -> Option<Webauthn> {
    let url = Url::parse(address).ok()?;
    let domain = url.domain()?.to_owned();
    WebauthnBuilder::new(&domain, &url)
        .ok()?
        .rp_name("Postern")
        .build()
        .ok()
}

/// Whether `person`'s organisation requires passkeys.
pub fn required(registry: &Registry, person: &Person) -> bool {
    registry
        .organisation(&person.org)
        .is_some_and(|o| o.sign_in == SignIn::Passkey)
}

/// A JSON answer for the script.
fn json(status: StatusCode, body: &impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A refusal the script shows as it is: one sentence a person can act on.
fn refused(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

fn unavailable() -> Response {
    refused(
        StatusCode::CONFLICT,
        "Passkeys are not available on this gateway. Sign in with a code instead.",
    )
}

fn unreadable() -> Response {
    refused(
        StatusCode::BAD_REQUEST,
        "Your browser's answer could not be read. Reload the page and try again.",
    )
}

fn store_down() -> Response {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "Postern is not available right now. Nothing was changed. Try again in a few minutes.",
    )
}

/// What the script sends back to finish a ceremony.
#[derive(Deserialize)]
struct Finish<C> {
    ceremony: String,
    credential: C,
    #[serde(default)]
    name: String,
    /// Sign-in only: the page to go to afterwards.
    #[serde(default)]
    next: String,
}

/// A registration's state between its two requests, with the user handle to keep.
#[derive(Serialize, Deserialize)]
struct Registering {
    user: Uuid,
    state: PasskeyRegistration,
}

/// The people's own passkeys: the list, with "remove", and "add a passkey".
pub async fn page(
    State(app): State<Arc<WebApp>>,
    who: SignedIn,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let email = who.person.email.clone();
    let list = match app.api.store.read(move |c| kept::passkeys(c, &email)).await {
        Ok(l) => l,
        Err(e) => return pages::store_down(&e),
    };
    let q = q.unwrap_or_default();
    let note = if q.contains("added=1") {
        Some("Your passkey was added. Next time, choose \"Sign in with a passkey\".")
    } else if q.contains("removed=1") {
        Some("The passkey was removed. It can no longer be used to sign in to Postern.")
    } else if q.contains("last=1") {
        Some(
            "Your organisation asks you to sign in with a passkey, so your only one cannot be removed. Add another first.",
        )
    } else {
        None
    };
    let registry = app.api.registry.current();
    pages::render(&PasskeysPage {
        title: "Your passkeys",
        passkeys: list
            .iter()
            .map(|p| PasskeyRow {
                id: p.cred_id.clone(),
                name: p.name.clone(),
                added: day(p.created_at),
                used: p.used_at.map_or_else(|| "Not yet".to_owned(), day),
            })
            .collect(),
        required: required(&registry, &who.person),
        org: who.org_name.clone(),
        available: app.passkeys.is_some(),
        note,
        errors: Vec::new(),
        who: super::transfers::who(&who),
    })
}

/// "2 December 2026", from Unix seconds.
fn day(unix: i64) -> String {
    let format = time::macros::format_description!("[day padding:none] [month repr:long] [year]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Begins adding a passkey: the challenge for the browser, kept in the store.
pub async fn add_options(State(app): State<Arc<WebApp>>, who: SignedIn) -> Response {
    let Some(rp) = app.passkeys.clone() else {
        return unavailable();
    };
    let email = who.person.email.clone();
    let existing = match app.api.store.read(move |c| kept::passkeys(c, &email)).await {
        Ok(l) => l,
        Err(_) => return store_down(),
    };
    // One user handle per person, kept with each of their passkeys: random, so that it tells
    // an authenticator nothing about the person.
    let user = existing
        .first()
        .and_then(|p| Uuid::parse_str(&p.user_id).ok())
        .or_else(random_uuid);
    let Some(user) = user else {
        return went_wrong();
    };
    // The passkeys they have already: their authenticator will not make a second one.
    let exclude = existing
        .iter()
        .filter_map(|p| serde_json::from_str::<Passkey>(&p.passkey).ok())
        .map(|p| p.cred_id().clone())
        .collect();
    let started =
        rp.start_passkey_registration(user, &who.person.email, &who.person.name, Some(exclude));
    let Ok((options, state)) = started else {
        return went_wrong();
    };
    let state = Registering { user, state };
    keep_ceremony(&app, REGISTER, who.person.email.clone(), &state, &options).await
}

/// Keeps a ceremony's state in the store under a new id, and answers the script with that id
/// and the options for the browser's WebAuthn call.
async fn keep_ceremony(
    app: &WebApp,
    kind: &'static str,
    email: String,
    state: &impl Serialize,
    options: &impl Serialize,
) -> Response {
    let (Ok(state), Some(ceremony)) = (serde_json::to_string(state), token()) else {
        return went_wrong();
    };
    let id_hash = hash(&["ceremony", &ceremony]);
    let now = unix_now();
    let kept = app
        .api
        .store
        .write(false, move |tx| {
            kept::ceremony_put(tx.db(), &id_hash, kind, &email, &state, now)
        })
        .await;
    if kept.is_err() {
        return store_down();
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "ceremony": ceremony, "options": options }),
    )
}

fn went_wrong() -> Response {
    refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong. Try again.",
    )
}

/// Finishes adding a passkey: the browser's answer checked against the kept challenge.
pub async fn add(
    State(app): State<Arc<WebApp>>,
    who: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let Some(rp) = app.passkeys.clone() else {
        return unavailable();
    };
    let Ok(finish) = serde_json::from_slice::<Finish<RegisterPublicKeyCredential>>(&body) else {
        return unreadable();
    };
    let id_hash = hash(&["ceremony", &finish.ceremony]);
    let now = unix_now();
    let taken = app
        .api
        .store
        .write(false, move |tx| {
            kept::ceremony_take(tx.db(), &id_hash, REGISTER, now, CEREMONY_SECS)
        })
        .await;
    let state = match taken {
        Ok(Some((email, state))) if email == who.person.email => state,
        Ok(_) => return expired(),
        Err(_) => return store_down(),
    };
    let Ok(Registering { user, state }) = serde_json::from_str::<Registering>(&state) else {
        return expired();
    };
    let passkey = match rp.finish_passkey_registration(&finish.credential, &state) {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, org = %who.person.org, "web: a passkey could not be added");
            return refused(
                StatusCode::BAD_REQUEST,
                "Your passkey could not be checked, so it was not added. Try again, or use another device or security key.",
            );
        }
    };
    let Ok(json_passkey) = serde_json::to_string(&passkey) else {
        return went_wrong();
    };
    let name = passkey_name(&finish.name, now);
    let stored = StoredPasskey {
        cred_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
        user_id: user.to_string(),
        passkey: json_passkey,
        name: name.clone(),
        created_at: now,
        used_at: None,
    };
    let entry = detail_entry(
        &who.person,
        AccessEvent::PasskeyAdded,
        &client(client_addr.as_deref()),
        Some(name),
    );
    let email = who.person.email.clone();
    let added = app
        .api
        .store
        .write(false, move |tx| {
            let added = kept::passkey_add(tx.db(), &email, &stored)?;
            if added && let Some(entry) = &entry {
                tx.append(entry)?;
            }
            Ok(added)
        })
        .await;
    match added {
        Ok(true) => json(
            StatusCode::OK,
            &serde_json::json!({ "to": "/passkeys?added=1" }),
        ),
        Ok(false) => refused(
            StatusCode::CONFLICT,
            "This passkey is registered already. Use it to sign in, or add a different one.",
        ),
        Err(_) => store_down(),
    }
}

fn expired() -> Response {
    refused(
        StatusCode::BAD_REQUEST,
        "That took too long, or was done already. Try again.",
    )
}

/// The name a person gave, tidied; or the day it was added.
fn passkey_name(given: &str, now: i64) -> String {
    let name: String = given
        .chars()
        .filter(|c| !c.is_control())
        .take(60)
        .collect::<String>()
        .trim()
        .to_owned();
    if name.is_empty() {
        format!("Passkey added on {}", day(now))
    } else {
        name
    }
}

/// Removes one of the person's passkeys (a form: works without JavaScript). The last one of a
/// person whose organisation requires passkeys stays: removing it would let a code alone in.
pub async fn remove(
    State(app): State<Arc<WebApp>>,
    who: SignedIn,
    client_addr: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let Some(cred) = form_pairs(&body)
        .into_iter()
        .find(|(k, _)| k == "passkey")
        .map(|(_, v)| v)
    else {
        return see_other("/passkeys");
    };
    let keep_one = required(&app.api.registry.current(), &who.person);
    let person = who.person.clone();
    let ip = client(client_addr.as_deref());
    let removed = app
        .api
        .store
        .write(false, move |tx| {
            let list = kept::passkeys(tx.db(), &person.email)?;
            let Some(p) = list.iter().find(|p| p.cred_id == cred) else {
                return Ok(Removed::NotTheirs);
            };
            if keep_one && list.len() == 1 {
                return Ok(Removed::Last);
            }
            kept::passkey_remove(tx.db(), &person.email, &cred)?;
            let entry = detail_entry(
                &person,
                AccessEvent::PasskeyRemoved,
                &ip,
                Some(p.name.clone()),
            );
            if let Some(entry) = &entry {
                tx.append(entry)?;
            }
            Ok(Removed::Yes)
        })
        .await;
    match removed {
        Ok(Removed::Yes) => see_other("/passkeys?removed=1"),
        Ok(Removed::Last) => see_other("/passkeys?last=1"),
        // Someone else's, or gone already: nothing to say about it.
        Ok(Removed::NotTheirs) => see_other("/passkeys"),
        Err(e) => pages::store_down(&e),
    }
}

enum Removed {
    Yes,
    Last,
    NotTheirs,
}

/// Begins a passkey sign-in for an address: the challenge, naming that person's passkeys, or
/// a decoy for an address with none (registered or not), so that the answer looks the same.
pub async fn sign_in_options(
    State(app): State<Arc<WebApp>>,
    client_addr: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let Some(rp) = app.passkeys.clone() else {
        return unavailable();
    };
    #[derive(Deserialize)]
    struct Begin {
        email: String,
    }
    let Ok(begin) = serde_json::from_slice::<Begin>(&body) else {
        return unreadable();
    };
    let email = begin.email.trim().to_ascii_lowercase();
    if !signin::plausible_email(&email) {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your email address in the correct format, like name@example.org, then choose \"Sign in with a passkey\".",
        );
    }
    let registry = app.api.registry.current();
    let known = registry.person(&email).is_some();
    let ip_bucket = format!("ip:{}", client(client_addr.as_deref()));
    let now = unix_now();
    let for_store = email.clone();
    let found = app
        .api
        .store
        .write(false, move |tx| {
            let since = now - WINDOW_SECS;
            if kept::attempts(tx.db(), &ip_bucket, since)? >= ATTEMPTS_PER_CLIENT {
                return Ok(None);
            }
            kept::attempt(tx.db(), &[&ip_bucket], now, since)?;
            if known {
                kept::passkeys(tx.db(), &for_store).map(Some)
            } else {
                Ok(Some(Vec::new()))
            }
        })
        .await;
    let list = match found {
        Ok(Some(l)) => l,
        Ok(None) => {
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                "There have been too many sign-in attempts from your network. Wait 15 minutes, then try again.",
            );
        }
        Err(_) => return store_down(),
    };
    let creds: Vec<Passkey> = list
        .iter()
        .filter_map(|p| serde_json::from_str(&p.passkey).ok())
        .collect();
    let Ok((options, state)) = rp.start_passkey_authentication(&creds) else {
        return went_wrong();
    };
    let Ok(mut options) = serde_json::to_value(&options) else {
        return went_wrong();
    };
    if let Some(allowed) = options["publicKey"]["allowCredentials"].as_array_mut() {
        // Real and decoy challenges alike name their credentials without transports.
        for c in allowed.iter_mut() {
            if let Some(c) = c.as_object_mut() {
                c.remove("transports");
            }
        }
        if creds.is_empty() {
            let key = app.api.subject_key.derive("passkey-decoy", "");
            let decoys = WebauthnFakeCredentialGenerator::<FakePasskeyDistribution>::new(&key)
                .and_then(|g| g.generate(email.as_bytes()))
                .unwrap_or_default();
            for id in decoys {
                allowed.push(serde_json::json!({ "type": "public-key", "id": id }));
            }
            // The generator gives some addresses none, as if they had no passkey; a list that
            // is never empty says nothing about that either.
            if allowed.is_empty() {
                let id =
                    URL_SAFE_NO_PAD.encode(app.api.subject_key.derive("passkey-decoy-id", &email));
                allowed.push(serde_json::json!({ "type": "public-key", "id": id }));
            }
        }
    }
    keep_ceremony(&app, SIGN_IN, email, &state, &options).await
}

/// Finishes a passkey sign-in: the signature checked against the kept challenge and the
/// person's passkey; then a new session, as after a right code.
pub async fn sign_in(
    State(app): State<Arc<WebApp>>,
    client_addr: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let Some(rp) = app.passkeys.clone() else {
        return unavailable();
    };
    let Ok(finish) = serde_json::from_slice::<Finish<PublicKeyCredential>>(&body) else {
        return unreadable();
    };
    let id_hash = hash(&["ceremony", &finish.ceremony]);
    let now = unix_now();
    let taken = app
        .api
        .store
        .write(false, move |tx| {
            let Some((email, state)) =
                kept::ceremony_take(tx.db(), &id_hash, SIGN_IN, now, CEREMONY_SECS)?
            else {
                return Ok(None);
            };
            let list = kept::passkeys(tx.db(), &email)?;
            Ok(Some((email, state, list)))
        })
        .await;
    let (email, state, list) = match taken {
        Ok(Some(t)) => t,
        Ok(None) => return expired(),
        Err(_) => return store_down(),
    };
    let ip = client(client_addr.as_deref());
    let registry = app.api.registry.current();
    let person = registry.person(&email).cloned();
    let used = URL_SAFE_NO_PAD.encode(finish.credential.get_credential_id());
    let stored = list.iter().find(|p| p.cred_id == used);
    let checked = match (person.as_ref(), stored) {
        (Some(person), Some(stored)) => {
            let passkey = serde_json::from_str::<Passkey>(&stored.passkey).ok();
            let state = serde_json::from_str::<PasskeyAuthentication>(&state).ok();
            match (passkey, state) {
                (Some(mut passkey), Some(state)) => rp
                    .finish_passkey_authentication(&finish.credential, &state)
                    .ok()
                    .map(|result| {
                        // A new signature counter is kept, so that a cloned key shows.
                        let changed = passkey.update_credential(&result) == Some(true);
                        let json = changed
                            .then(|| serde_json::to_string(&passkey).ok())
                            .flatten();
                        (person.clone(), stored.cred_id.clone(), json)
                    }),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((person, cred_id, json_passkey)) = checked else {
        // Recorded against the person the address belongs to, if it belongs to anyone.
        if let Some(entry) = person
            .as_ref()
            .and_then(|p| detail_entry(p, AccessEvent::PasskeyFailed, &ip, None))
        {
            let _ = app
                .api
                .store
                .write(false, move |tx| tx.append(&entry))
                .await;
        }
        return refused(
            StatusCode::BAD_REQUEST,
            "You were not signed in: that passkey could not be checked for this address. Try again, or continue with a code by email.",
        );
    };
    let Some(session) = token() else {
        return went_wrong();
    };
    let session_hash = hash(&["session", &session]);
    let idle = i64::try_from(app.settings.session_idle.as_secs()).unwrap_or(i64::MAX);
    let entry = detail_entry(
        &person,
        AccessEvent::SignedIn,
        &ip,
        Some("passkey".to_owned()),
    );
    let done = app
        .api
        .store
        .write(false, move |tx| {
            kept::session_create(tx.db(), &session_hash, &person.email, now, now - idle)?;
            kept::passkey_used(tx.db(), &cred_id, json_passkey.as_deref(), now)?;
            if let Some(entry) = &entry {
                tx.append(entry)?;
            }
            Ok(())
        })
        .await;
    if done.is_err() {
        return store_down();
    }
    let to = signin::safe_next(&finish.next).unwrap_or_else(|| "/".to_owned());
    let mut r = json(StatusCode::OK, &serde_json::json!({ "to": to }));
    set_cookie(&mut r, SESSION_COOKIE, &session, None);
    r
}

/// A random (version 4) UUID from the system's random source.
fn random_uuid() -> Option<Uuid> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).ok()?;
    Some(uuid::Builder::from_random_bytes(b).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_need_a_name_not_an_ip_address() {
        assert!(relying_party("https://localhost:8444").is_some());
        assert!(relying_party("https://postern.northshire.example").is_some());
        assert!(relying_party("https://127.0.0.1:8444").is_none());
        assert!(relying_party("https://[::1]:8444").is_none());
        assert!(relying_party("not a url").is_none());
    }

    #[test]
    fn a_passkey_is_named_by_its_person_or_by_its_day() {
        assert_eq!(passkey_name("  Work laptop ", 0), "Work laptop");
        assert_eq!(passkey_name("", 0), "Passkey added on 1 January 1970");
        assert_eq!(passkey_name("a\u{7}b", 0), "ab");
        assert_eq!(passkey_name(&"x".repeat(100), 0).len(), 60);
    }
}
