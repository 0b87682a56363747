//! "Your shares": the home page, the organisation's transfers with each recipient's state, and
//! one transfer's page. A person sees their own organisation's transfers only: a transfer of
//! another organisation is "not found", whatever its id.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use super::WebApp;
use super::pages::{self, HomePage, RecipientLine, TransferPage, TransferView, TransfersPage, Who};
use super::signin::SignedIn;
use crate::domain::ids::TransferId;
use crate::domain::registry::{Registry, Role};
use crate::store::RecipientStatus;
use crate::store::web::SentTransfer;

/// The short reference people quote: the id's last eight characters, upper case (a UUIDv7's
/// random tail).
pub fn reference(id: &str) -> String {
    id.chars()
        .rev()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_ascii_uppercase()
}

/// "2026-12-02T17:05:09.123Z" as "2026-12-02 17:05 UTC".
fn when(stamp: &str) -> String {
    match (stamp.get(..10), stamp.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => stamp.to_owned(),
    }
}

pub fn recipient_line(registry: &Registry, r: &RecipientStatus) -> RecipientLine {
    let name = r
        .recipient
        .parse()
        .ok()
        .and_then(|id| registry.organisation(&id))
        .map_or_else(|| r.recipient.clone(), |o| o.name.clone());
    let (state, state_class) = match r.state.as_str() {
        "delivered" => ("Delivered", "done"),
        "dead" => ("Not delivered", "bad"),
        "retrying" => ("Trying again", "wait"),
        _ => ("Sending", "wait"),
    };
    let detail = match r.state.as_str() {
        "delivered" => r
            .delivered_at
            .as_deref()
            .map_or_else(String::new, |d| format!("Delivered {}", when(d))),
        "dead" => format!(
            "Postern gave up delivering it: {} Your IT team has been told through the gateway's records; ask them, or share it again another way.",
            r.last_error.as_deref().unwrap_or("no reason was recorded.")
        ),
        "retrying" => r
            .next_attempt_at
            .as_deref()
            .map_or_else(String::new, |n| format!("The next try is at {}", when(n))),
        _ => String::new(),
    };
    RecipientLine {
        name,
        state,
        state_class,
        detail,
    }
}

pub fn view(registry: &Registry, t: &SentTransfer) -> TransferView {
    TransferView {
        reference: reference(&t.id),
        id: t.id.clone(),
        sent: when(&t.received_at),
        purpose: t
            .purpose
            .parse()
            .ok()
            .and_then(|p| registry.purpose(&p))
            .map_or_else(|| t.purpose.clone(), |p| p.title.clone()),
        recipients: t
            .recipients
            .iter()
            .map(|r| recipient_line(registry, r))
            .collect(),
    }
}

pub fn who(s: &SignedIn) -> Option<Who> {
    Some(Who {
        name: s.person.name.clone(),
        org: s.org_name.clone(),
        log: s.person.may(Role::Dpo) || s.person.may(Role::Auditor),
        admin: s.person.may(Role::Admin),
    })
}

async fn recent(app: &WebApp, s: &SignedIn, limit: usize) -> Result<Vec<TransferView>, Response> {
    let org = s.person.org.clone();
    let rows = app
        .api
        .store
        .read(move |c| crate::store::web::sent_by(c, &org, limit))
        .await
        .map_err(|e| pages::store_down(&e))?;
    let registry = app.api.registry.current();
    Ok(rows.iter().map(|t| view(&registry, t)).collect())
}

pub async fn home(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    let recent = match recent(&app, &s, 5).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let can_receive = s.person.may(Role::Receive);
    let waiting = if can_receive {
        let org = s.person.org.to_string();
        match app
            .api
            .store
            .read(move |c| crate::store::inbox::list(c, &org, false))
            .await
        {
            Ok(items) => items.len(),
            Err(e) => return pages::store_down(&e),
        }
    } else {
        0
    };
    let requests_open = if can_receive || s.person.may(Role::Share) {
        let org = s.person.org.to_string();
        match app
            .api
            .store
            .read(move |c| {
                crate::store::requests::list(
                    c,
                    &org,
                    crate::store::requests::Side::Received,
                    true,
                    1000,
                )
            })
            .await
        {
            Ok(rows) => rows.len(),
            Err(e) => return pages::store_down(&e),
        }
    } else {
        0
    };
    pages::render(&HomePage {
        title: s.org_name.clone(),
        can_share: s.person.may(Role::Share),
        can_receive,
        waiting,
        requests_open,
        recent,
        errors: Vec::new(),
        who: who(&s),
    })
}

pub async fn list(State(app): State<Arc<WebApp>>, s: SignedIn) -> Response {
    let recent = match recent(&app, &s, 200).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    pages::render(&TransfersPage {
        title: "Your shares",
        can_share: s.person.may(Role::Share),
        recent,
        errors: Vec::new(),
        who: who(&s),
    })
}

pub async fn detail(
    State(app): State<Arc<WebApp>>,
    s: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<TransferId>() else {
        return pages::not_found().await;
    };
    detail_page(&app, &s, id, Vec::new()).await
}

/// A transfer's page, if the person's organisation sent it; `errors` for its rationale form.
pub async fn detail_page(
    app: &WebApp,
    s: &SignedIn,
    id: TransferId,
    errors: Vec<super::pages::FieldError>,
) -> Response {
    let org = s.person.org.clone();
    let key = id.to_string();
    // Scoped to the person's organisation: another's transfer is not found.
    let found = app
        .api
        .store
        .read(move |c| {
            let status = crate::store::transfer_status(c, &key, &org)?;
            let rationale = crate::store::decisions::share_rationale(c, &key)?;
            Ok(status.map(|st| (st, rationale)))
        })
        .await;
    let (status, rationale) = match found {
        Ok(Some(t)) => t,
        Ok(None) => return pages::not_found().await,
        Err(e) => return pages::store_down(&e),
    };
    let registry = app.api.registry.current();
    let feedback = status
        .feedback
        .iter()
        .map(|f| {
            let name = f
                .from
                .parse()
                .ok()
                .and_then(|o| registry.organisation(&o))
                .map_or_else(|| f.from.clone(), |o| o.name.clone());
            (
                name,
                format!("{}, {}", f.status.words(), when(&f.at)),
                f.comment.clone(),
            )
        })
        .collect();
    let t = SentTransfer {
        id: status.id,
        received_at: status.received_at,
        purpose: status.purpose,
        recipients: status.recipients,
    };
    let page = TransferPage {
        title: "Shared information",
        t: view(&registry, &t),
        rationale_pending: rationale.is_some_and(|r| r.urgent && r.pending),
        feedback,
        can_share: s.person.may(Role::Share),
        errors,
        who: who(s),
    };
    pages::render_form(&page, &page.errors)
}
