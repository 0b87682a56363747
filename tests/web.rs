//! The people's pages over real HTTPS, for what a browser hides: the security headers, cross-site
//! POSTs refused, sign-in codes (emailed through a real SMTP server over STARTTLS) that are single
//! use, limited in tries and never stored or logged, the same answer for unknown addresses,
//! session expiry, and no access to another organisation's shares by guessing their ids. A share
//! through the pages takes the API's path: decided, sealed, recorded with the person, delivered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::time::Duration;

use common::web::*;
use common::{Deployment, contains, db_bytes, eventually};

#[tokio::test]
async fn pages_carry_the_security_headers_and_ask_for_sign_in() {
    let (d, server, _sink) = gateway("").await;
    let mut b = Browser::new(&d, server.web.expect("web listener"));
    let home = b.get("/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.header("location"), Some("/sign-in"));
    let page = b.get("/sign-in").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("CSP");
    for directive in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(
        page.header("strict-transport-security")
            .is_some_and(|h| h.contains("max-age="))
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.body.contains("lang=\"en-GB\""));
    assert!(page.body.contains("autocomplete=\"email\""));
    // No inline script or style anywhere: the one script is a file served from the binary.
    assert_eq!(
        page.body.matches("<script").count(),
        page.body
            .matches("<script src=\"/assets/postern.js\" defer></script>")
            .count(),
        "{}",
        page.body
    );
    assert!(!page.body.contains("style="), "{}", page.body);
    for path in [
        "/transfers",
        "/share",
        "/transfers/01a237c1-5b5f-714c-a793-251b325b69f4",
    ] {
        // To sign in, and then back to the page asked for.
        let a = b.get(path).await;
        let back = format!("/sign-in?next={}", path.replace('/', "%2F"));
        assert_eq!(
            (a.status, a.header("location")),
            (303, Some(back.as_str())),
            "{path}"
        );
    }
    assert_eq!(b.get("/accessibility").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn cross_site_posts_are_refused_before_anything_is_done() {
    let (d, server, sink) = gateway("").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    let form = format!("email={SAM}");
    let cross = b
        .send(
            "POST",
            "/sign-in",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Sec-Fetch-Site", "cross-site"),
                ("Origin", "https://evil.example"),
            ],
            form.as_bytes(),
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(cross.body.contains("did not come from this site"));
    let other_origin = b
        .send(
            "POST",
            "/sign-in",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", "https://evil.example"),
            ],
            form.as_bytes(),
        )
        .await;
    assert_eq!(other_origin.status, 403);
    let neither = b
        .send(
            "POST",
            "/sign-in",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
    assert_eq!(neither.status, 403);
    // Same site by Origin alone (an older browser) is accepted.
    let origin = format!("https://localhost:{}", server.web.expect("web").port());
    let ok = b
        .send(
            "POST",
            "/sign-in",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", &origin),
            ],
            form.as_bytes(),
        )
        .await;
    assert_eq!(ok.status, 303);
    // Only the last one sent a code.
    next_code(&sink, SAM, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(codes(&sink, SAM).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_code_signs_in_once_is_never_kept_and_unknown_addresses_get_the_same_answer() {
    let (d, server, sink) = gateway("").await;
    let web = server.web.expect("web");
    let mut b = Browser::new(&d, web);

    // Registered or not, the same answer: 303 to the code page with a pending cookie.
    let mut stranger = Browser::new(&d, web);
    let unknown = stranger
        .post("/sign-in", "email=nobody@nowhere.example")
        .await;
    let known = b
        .post("/sign-in", &format!("email={}", SAM.to_uppercase()))
        .await;
    for a in [&unknown, &known] {
        assert_eq!(a.status, 303);
        assert_eq!(a.header("location"), Some("/sign-in/code"));
        let c = a.cookies();
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with("__Host-postern-signin="), "{c:?}");
        assert!(
            c[0].ends_with("; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600"),
            "{c:?}"
        );
    }
    let code = next_code(&sink, SAM, 0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sink.received()
            .iter()
            .all(|m| m.to.iter().all(|t| !t.contains("nowhere"))),
        "nothing is sent to an unregistered address"
    );
    // A stranger's code page answers exactly as a registered person's does.
    let s = stranger.post("/sign-in/code", "code=123456").await;
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let k = b.post("/sign-in/code", &format!("code={wrong}")).await;
    assert_eq!((s.status, k.status), (422, 422));
    assert!(k.body.contains("There is a problem") && k.body.contains("href=\"#code\""));
    assert_eq!(
        s.body, k.body,
        "the same page for a stranger and a registered person"
    );
    assert!(k.body.contains("The code is not right, or it has expired"));

    // Pasted with spaces, it signs in; the session cookie is new, strict and host-only.
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let ok = b.post("/sign-in/code", &format!("code={spaced}")).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let session = ok
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-postern-session="))
        .expect("a session cookie")
        .to_owned();
    assert!(
        session.ends_with("; Path=/; Secure; HttpOnly; SameSite=Strict"),
        "{session}"
    );
    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Riverside Youth Club"));
    assert!(home.body.contains("Sam Okafor"));

    // Used once: the same code again (in a new browser given the old pending cookie) fails.
    let mut again = Browser::new(&d, web);
    again.cookies = vec![(
        "__Host-postern-signin".into(),
        known.cookie("__Host-postern-signin").expect("pending"),
    )];
    assert_eq!(
        again
            .post("/sign-in/code", &format!("code={code}"))
            .await
            .status,
        422
    );

    // Neither the code nor its pending token is in the store or the log.
    let db = db_bytes(&d.state_dir);
    assert!(!contains(&db, code.as_bytes()), "the code is stored");
    let token = known.cookie("__Host-postern-signin").expect("pending");
    assert!(
        !contains(&db, token.as_bytes()),
        "the pending token is stored"
    );
    let sid = session
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("session id");
    assert!(!contains(&db, sid.as_bytes()), "the session id is stored");

    // Sign out ends the session.
    assert_eq!(b.post("/sign-out", "").await.status, 303);
    b.cookies = vec![("__Host-postern-session".into(), sid)];
    assert_eq!(b.get("/").await.status, 303);

    let events = person_events(&d);
    for (who, what) in [
        (SAM, "code_sent"),
        (SAM, "code_wrong"),
        (SAM, "signed_in"),
        (SAM, "signed_out"),
    ] {
        assert!(
            events.iter().any(|(p, e)| p == who && e == what),
            "{what} recorded: {events:?}"
        );
    }
    assert!(
        events.iter().all(|(p, _)| p == SAM),
        "nothing recorded about an unregistered address: {events:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn five_wrong_tries_end_a_code_and_an_address_gets_five_codes_per_window() {
    let (d, server, sink) = gateway("").await;
    let web = server.web.expect("web");
    let mut b = Browser::new(&d, web);
    assert_eq!(
        b.post("/sign-in", &format!("email={SAM}")).await.status,
        303
    );
    let code = next_code(&sink, SAM, 0).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(
            b.post("/sign-in/code", &format!("code={wrong}"))
                .await
                .status,
            422
        );
    }
    let late = b.post("/sign-in/code", &format!("code={code}")).await;
    assert_eq!(late.status, 422, "the right code after five wrong ones");
    assert!(
        person_events(&d).iter().any(|(_, e)| e == "code_locked"),
        "the lock-out is recorded"
    );

    // Four more codes to the address (five in all), then the limit; the same for an address
    // nobody registered, so the limit does not tell which is which.
    for _ in 0..4 {
        assert_eq!(
            b.post("/sign-in", &format!("email={SAM}")).await.status,
            303
        );
    }
    let limited = b.post("/sign-in", &format!("email={SAM}")).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.body.contains("Too many codes"));
    let mut other = Browser::new(&d, web);
    for _ in 0..5 {
        assert_eq!(
            other
                .post("/sign-in", "email=x@nowhere.example")
                .await
                .status,
            303
        );
    }
    assert_eq!(
        other
            .post("/sign-in", "email=x@nowhere.example")
            .await
            .status,
        429
    );
    server.stop().await;
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_limit() {
    let (d, server, sink) =
        gateway("[web]\nlisten = \"127.0.0.1:0\"\nsession_idle_secs = 2\n").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, SAM).await;
    assert_eq!(b.get("/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let idle = b.get("/").await;
    assert_eq!(idle.status, 303);
    assert_eq!(idle.header("location"), Some("/sign-in?expired=1"));
    server.stop().await;

    let (d, server, sink) =
        gateway("[web]\nlisten = \"127.0.0.1:0\"\nsession_max_secs = 2\n").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, SAM).await;
    assert_eq!(b.get("/").await.status, 200, "within the limit");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.get("/").await.status, 200, "busy within the limit");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        b.get("/").await.status,
        303,
        "past the absolute limit, however busy"
    );
    server.stop().await;
}

/// The share the journey makes, as the check page's form posts it (answers, then the file),
/// with some answers replaced (an empty value leaves the answer out).
fn share_form_with(boundary: &str, purpose: &str, file: &[u8], with: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        ("to", "northshire-mash"),
        ("purpose", purpose),
        ("basis", "legitimate_interests"),
        ("cat", "personal"),
        ("consent", "not_sought"),
        ("consent_reason", "Asking could put the child at risk."),
        ("informed", "no"),
        (
            "informed_reason",
            "Telling them could put the child at risk.",
        ),
        ("urgency", "routine"),
        ("request", "no"),
        ("summary", "Concern raised at the club."),
        ("ref_scheme", "case"),
        ("ref_value", "RY-2026-0042"),
        ("justification", "Disclosure of harm at home."),
        ("marking", "OFFICIAL"),
        ("days", "365"),
    ];
    for (k, v) in with {
        fields.retain(|(f, _)| f != k);
        if !v.is_empty() {
            fields.push((k, v));
        }
    }
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"; filename=\"concern.txt\"\r\nContent-Type: text/plain\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

async fn send_share(b: &mut Browser, purpose: &str, file: &[u8]) -> Answer {
    send_share_with(b, purpose, file, &[]).await
}

async fn send_share_with(
    b: &mut Browser,
    purpose: &str,
    file: &[u8],
    with: &[(&str, &str)],
) -> Answer {
    let boundary = "----posternTestBoundary7MA4YWxk";
    let ct = format!("multipart/form-data; boundary={boundary}");
    b.send(
        "POST",
        "/share/send",
        &[("Content-Type", &ct), ("Sec-Fetch-Site", "same-origin")],
        &share_form_with(boundary, purpose, file, with),
    )
    .await
}

fn transfer_link(page: &Answer) -> String {
    page.body
        .split("/transfers/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to the transfer")
        .to_owned()
}

#[tokio::test]
async fn a_decision_not_to_share_an_urgent_shares_reasons_and_a_correction_take_the_apis_paths() {
    let (d, server, sink) = gateway("").await;
    let mut sam = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut sam, &sink, SAM).await;
    let home = sam.get("/").await;
    assert!(
        home.body.contains("href=\"/decline\""),
        "the second door is on the home page"
    );

    // A decision not to share: what to fix, then recorded with the person.
    let empty = sam.post("/decline", "").await;
    assert_eq!(empty.status, 422);
    assert!(empty.body.contains("href=\"#to\"") && empty.body.contains("href=\"#reasons\""));
    let declined = sam
        .post(
            "/decline",
            "to=northshire-mash&reasons=Below+threshold%3B+early+help+offered.&ref_scheme=case&ref_value=RY-2026-0042",
        )
        .await;
    assert_eq!(declined.status, 200, "{}", declined.body);
    assert!(declined.body.contains("Decision recorded"));
    let record = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "decision_declined")
        .expect("recorded");
    assert_eq!(record["sender"]["person"], SAM);
    assert_eq!(record["practitioner"]["name"], "Sam Okafor");
    assert_eq!(record["recipients"], serde_json::json!(["northshire-mash"]));
    assert!(
        !record.to_string().contains("RY-2026-0042"),
        "the reference only as a keyed hash"
    );

    // An urgent share without its reasons; the page asks for them, and they are recorded.
    let urgent = send_share_with(
        &mut sam,
        "safeguarding-referral",
        b"urgent",
        &[
            ("urgency", "urgent"),
            ("urgency_reason", "The child is at risk tonight."),
            ("justification", ""),
        ],
    )
    .await;
    assert_eq!(urgent.status, 200, "{}", urgent.body);
    let id = transfer_link(&urgent);
    let page = sam.get(&format!("/transfers/{id}")).await;
    assert!(page.body.contains("Your reasons are still to follow"));
    let added = sam
        .post(
            &format!("/transfers/{id}/rationale"),
            "justification=Disclosure+of+immediate+harm.",
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    assert!(
        !sam.get(&format!("/transfers/{id}"))
            .await
            .body
            .contains("still to follow")
    );
    let rationale = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "rationale_added")
        .expect("recorded");
    assert_eq!(rationale["transfer_id"], id.as_str());
    assert_eq!(rationale["sender"]["person"], SAM);

    // "Send a correction" carries the transfer it corrects to the end.
    let start = sam.get(&format!("/share?correction_of={id}")).await;
    assert_eq!(start.status, 200);
    assert!(
        start
            .body
            .contains(&format!("name=\"correction_of\" value=\"{id}\""))
    );
    let corrected = send_share_with(
        &mut sam,
        "safeguarding-referral",
        b"corrected",
        &[("correction_of", &id)],
    )
    .await;
    assert_eq!(corrected.status, 200, "{}", corrected.body);
    let correction = transfer_link(&corrected);
    let record = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "transfer_accepted" && r["transfer_id"] == correction.as_str())
        .expect("recorded");
    assert_eq!(record["envelope"]["correction_of"], id.as_str());
    // Only a transfer this organisation sent may be corrected from here.
    let mut alex = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut alex, &sink, ALEX).await;
    assert_eq!(
        alex.get(&format!("/share?correction_of={id}")).await.status,
        404
    );
    assert_eq!(
        alex.post(&format!("/transfers/{id}/rationale"), "justification=x")
            .await
            .status,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn a_share_from_the_pages_is_decided_recorded_with_its_person_and_hidden_from_other_organisations()
 {
    let (d, server, sink) = gateway("").await;
    let web = server.web.expect("web");
    let mut sam = Browser::new(&d, web);
    sign_in(&mut sam, &sink, SAM).await;

    // The first question offers only what the agreements in force allow, by name.
    let first = sam.get("/share").await;
    assert_eq!(first.status, 200);
    assert!(
        first
            .body
            .contains("Northshire Multi-Agency Safeguarding Hub")
    );
    assert!(
        !first.body.contains("Old Partner Trust"),
        "an ended agreement's party is offered"
    );
    // A page answered wrongly says what to do, linked from the error summary.
    let wrong = sam.post("/share", "step=to").await;
    assert_eq!(wrong.status, 422);
    assert!(
        wrong
            .body
            .contains("<a href=\"#to\">Select who you want to share with</a>")
    );
    let next = sam.post("/share", "step=to&to=northshire-mash").await;
    assert!(next.body.contains("Why are you sharing?"), "{}", next.body);

    let file = b"A youth worker's account of a disclosure.\n".repeat(100);
    let shared = send_share(&mut sam, "safeguarding-referral", &file).await;
    assert_eq!(shared.status, 200, "{}", shared.body);
    assert!(shared.body.contains("<h1>Shared</h1>"), "{}", shared.body);
    let id = transfer_link(&shared);
    assert_eq!(id.len(), 36, "{id}");

    // The same record as an API transfer, with the person as sender and practitioner.
    let accepted = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "transfer_accepted" && r["transfer_id"] == id.as_str())
        .expect("recorded");
    assert_eq!(accepted["sender"]["org"], "riverside-youth");
    assert_eq!(accepted["sender"]["person"], SAM);
    assert_eq!(accepted["envelope"]["practitioner"]["name"], "Sam Okafor");
    assert_eq!(accepted["envelope"]["practitioner"]["role"], "Youth worker");
    assert_eq!(accepted["envelope"]["file_name"], "concern.txt");
    assert_eq!(accepted["payload"]["size"], file.len());
    // No plaintext at rest: the spool holds it sealed.
    assert!(!contains(&d.sealed_payload(&id), &file[..40]));

    // It is delivered to the MASH (by mutual TLS to this gateway's inbox), and the page says so.
    eventually(20, "the share is delivered", || {
        let mut sam = Browser {
            addr: sam.addr,
            tls: sam.tls.clone(),
            cookies: sam.cookies.clone(),
        };
        let id = id.clone();
        async move {
            let page = sam.get(&format!("/transfers/{id}")).await;
            page.body.contains("Delivered").then_some(())
        }
    })
    .await;

    // Another organisation's person cannot see it, by list or by id.
    let mut alex = Browser::new(&d, web);
    sign_in(&mut alex, &sink, ALEX).await;
    assert_eq!(alex.get(&format!("/transfers/{id}")).await.status, 404);
    assert!(!alex.get("/transfers").await.body.contains(&id));
    assert!(sam.get("/transfers").await.body.contains(&id));

    // The MASH's people were told by email, with no personal data, and it is waiting for them.
    let told = eventually(10, "the MASH's person is told", || async {
        sink.received()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t.contains(ALEX)) && contains(&m.data, b"waiting"))
    })
    .await;
    assert!(told.tls);
    let mail = String::from_utf8_lossy(&told.data);
    assert!(
        mail.contains("Riverside Youth Club") && mail.contains("/inbox"),
        "{mail}"
    );
    for secret in ["RY-2026-0042", "Concern raised", "Disclosure of harm"] {
        assert!(!mail.contains(secret), "the email carries `{secret}`");
    }
    let inbox = alex.get("/inbox").await;
    assert_eq!(inbox.status, 200);
    let item = inbox
        .body
        .split("href=\"/inbox/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an item")
        .to_owned();
    let page = alex.get(&format!("/inbox/{item}")).await;
    assert_eq!(page.status, 200);
    for shown in [
        "Riverside Youth Club",
        "RY-2026-0042",
        "Sam Okafor",
        "Disclosure of harm at home.",
    ] {
        assert!(page.body.contains(shown), "the item shows `{shown}`");
    }
    let file_answer = alex.get(&format!("/inbox/{item}/file")).await;
    assert_eq!(file_answer.status, 200);
    assert_eq!(
        file_answer.body.as_bytes(),
        &file[..],
        "the download is the file shared"
    );
    assert!(
        file_answer
            .header("content-disposition")
            .is_some_and(|h| h.contains("concern.txt"))
    );
    let sealed = alex.get(&format!("/inbox/{item}/sealed")).await;
    assert!(
        sealed.body.starts_with("age-encryption.org/v1"),
        "sealed as stored"
    );
    // Nobody else's item, whatever the id: the club's person has no such item.
    assert_eq!(sam.get(&format!("/inbox/{item}")).await.status, 404);
    assert_eq!(sam.get(&format!("/inbox/{item}/file")).await.status, 404);
    // Acknowledged: the file is gone.
    assert_eq!(
        alex.post(&format!("/inbox/{item}/ack"), "").await.status,
        303
    );
    assert_eq!(alex.get(&format!("/inbox/{item}/file")).await.status, 410);
    let events = person_events(&d);
    for e in ["item_viewed", "item_downloaded", "item_acknowledged"] {
        assert!(
            events.iter().any(|(p, x)| p == ALEX && x == e),
            "{e}: {events:?}"
        );
    }
    assert!(
        d.all_records()
            .iter()
            .any(|r| r["kind"] == "inbox_acknowledged" && r["transfer_id"] == id.as_str()),
        "the acknowledgement is recorded as the API's is"
    );

    // An altered form (a purpose the agreements do not give a voluntary organisation) is
    // refused by the policy, in plain words, and recorded.
    let refused = send_share(&mut sam, "crime-prevention-s115", b"x").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("Not shared"));
    assert!(refused.body.contains("recorded in the transfer log"));
    assert!(
        !refused.body.contains('`'),
        "no ids in backticks: {}",
        refused.body
    );
    assert!(
        d.all_records()
            .iter()
            .any(|r| r["kind"] == "transfer_refused" && r["sender"]["person"] == SAM),
        "the refusal is recorded with the person"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_person_removed_from_people_toml_is_signed_out_at_the_next_reload() {
    let (d, sink) = deployment("").await;
    let (server, reloader) = d.start_reloadable().await;
    let mut sam = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut sam, &sink, SAM).await;
    assert_eq!(sam.get("/").await.status, 200);
    d.rewrite(
        "people.toml",
        "email = \"sam@riverside-youth.example\"",
        "email = \"someone-else@riverside-youth.example\"",
    );
    reloader.reload(&d.load_options()).await.expect("reload");
    let after = sam.get("/").await;
    assert_eq!(after.status, 303, "the session ends with the registration");
    assert_eq!(after.header("location"), Some("/sign-in?expired=1"));
    server.stop().await;
}

#[tokio::test]
async fn an_organisation_that_requires_passkeys_lets_a_code_do_nothing_but_add_one() {
    let (d, server, sink) = gateway("").await;
    let web = server.web.expect("web");
    let mut jo = Browser::new(&d, web);
    // Jo has no passkey yet, so her code signs her in: to add one, and to do nothing else.
    sign_in(&mut jo, &sink, JO).await;
    for path in ["/", "/share", "/transfers", "/inbox", "/decline"] {
        let a = jo.get(path).await;
        assert_eq!(a.status, 303, "{path}: {}", a.body);
        assert_eq!(a.header("location"), Some("/passkeys?required=1"), "{path}");
    }
    let page = jo.get("/passkeys?required=1").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("asks everyone to sign in with a passkey")
    );
    assert!(
        page.body
            .contains("<script src=\"/assets/postern.js\" defer></script>")
    );
    assert!(
        !page.body.contains("Back to the start"),
        "no way on without a passkey"
    );
    let script = jo.get("/assets/postern.js").await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );

    // The registration challenge: for this person, on the pages' name (a loopback listener is
    // `localhost`: WebAuthn needs a name), with the person verified.
    let (status, begun) = jo
        .post_json("/passkeys/options", &serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{begun}");
    let options = &begun["options"]["publicKey"];
    assert_eq!(options["rp"]["id"], "localhost", "{begun}");
    assert_eq!(options["user"]["name"], JO);
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    // An answer that is no passkey is refused in words, and the challenge is then used up.
    let forged = serde_json::json!({
        "ceremony": begun["ceremony"],
        "credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}}
    });
    let (status, answer) = jo.post_json("/passkeys/add", &forged).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not added")
    );
    let (status, answer) = jo.post_json("/passkeys/add", &forged).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("took too long, or was done already")
    );
    // Not from a stranger's page: the script's POSTs are same-origin only, like the forms.
    let cross = jo
        .send(
            "POST",
            "/passkeys/options",
            &[
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            b"{}",
        )
        .await;
    assert_eq!(cross.status, 403);
    server.stop().await;
}

#[tokio::test]
async fn a_passkey_sign_in_does_not_tell_who_is_registered() {
    let (d, server, _sink) = gateway("").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    let page = b.get("/sign-in").await;
    assert!(
        page.body.contains("Sign in with a passkey"),
        "offered to browsers that can"
    );
    let mut ask = async |email: &str| {
        let (status, v) = b
            .post_json(
                "/sign-in/passkey/options",
                &serde_json::json!({ "email": email }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    };
    // Sam is registered without a passkey; the other address is nobody's. Both get a challenge
    // of the same shape that names credentials (decoys), the same ones each time for an address.
    let sam = ask(SAM).await;
    let nobody = ask("nobody@riverside-youth.example").await;
    let again = ask(SAM).await;
    let shape = |v: &serde_json::Value| {
        let o = &v["options"]["publicKey"];
        let mut keys: Vec<String> = o.as_object().expect("options").keys().cloned().collect();
        keys.sort();
        (keys, o["rpId"].clone(), o["userVerification"].clone())
    };
    assert_eq!(shape(&sam), shape(&nobody));
    assert_eq!(sam["options"]["publicKey"]["rpId"], "localhost");
    let ids = |v: &serde_json::Value| v["options"]["publicKey"]["allowCredentials"].clone();
    assert!(!ids(&sam).as_array().expect("list").is_empty(), "{sam}");
    assert!(
        !ids(&nobody).as_array().expect("list").is_empty(),
        "{nobody}"
    );
    assert_eq!(ids(&sam), ids(&again), "a decoy is the same each time");
    assert_ne!(ids(&sam), ids(&nobody));
    assert_ne!(
        sam["ceremony"], again["ceremony"],
        "a new challenge each time"
    );
    // Answering a decoy's challenge signs nobody in, and says so in words.
    let answer = serde_json::json!({
        "ceremony": sam["ceremony"],
        "credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null}}
    });
    let (status, v) = b.post_json("/sign-in/passkey", &answer).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not signed in")
    );
    assert!(b.cookies.iter().all(|(k, _)| k != "__Host-postern-session"));
    // A malformed request gets a sentence, not a 500.
    let (status, v) = b
        .post_json(
            "/sign-in/passkey/options",
            &serde_json::json!({"email": "x"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().is_some());
    server.stop().await;
}

#[tokio::test]
async fn every_share_page_names_whom_to_ask_and_the_decision_page_does_not_link_to_itself() {
    let (d, server, sink) = gateway("").await;
    let mut sam = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut sam, &sink, SAM).await;
    // The youth club names its safeguarding lead and DPO in organisations.toml.
    let first = sam.get("/share").await;
    assert_eq!(first.status, 200);
    for named in [
        "your safeguarding lead, Priya Shah: 01632 960 481",
        "your data protection officer, Tom Reed: dpo@riverside-youth.example",
        "href=\"/decline\"",
    ] {
        assert!(
            first.body.contains(named),
            "{named} on the first page:\n{}",
            first.body
        );
    }
    let decline = sam.get("/decline").await;
    assert_eq!(decline.status, 200);
    assert!(decline.body.contains("Priya Shah"));
    assert!(
        !decline.body.contains("href=\"/decline\""),
        "the decision page does not send people to itself"
    );
    assert_eq!(
        decline
            .body
            .matches("Record a decision not to share")
            .count(),
        2,
        "the title and the h1, no caption repeating them"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_link_followed_before_signing_in_is_where_signing_in_leads() {
    let (d, server, sink) = gateway("").await;
    let mut alex = Browser::new(&d, server.web.expect("web"));
    // The link in "a secure delivery is waiting" leads to the pages; without a session it is
    // the sign-in page, which remembers where the person was going.
    let a = alex.get("/inbox").await;
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/sign-in?next=%2Finbox"));
    let page = alex.get("/sign-in?next=%2Finbox").await;
    assert!(
        page.body
            .contains("<input type=\"hidden\" name=\"next\" value=\"/inbox\">")
    );
    let before = codes(&sink, ALEX).len();
    let a = alex
        .post("/sign-in", &format!("email={ALEX}&next=%2Finbox"))
        .await;
    assert_eq!(a.header("location"), Some("/sign-in/code?next=%2Finbox"));
    let code = next_code(&sink, ALEX, before).await;
    let a = alex
        .post("/sign-in/code", &format!("code={code}&next=%2Finbox"))
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/inbox"));
    // Never to another site, whatever the form says.
    let mut sam = Browser::new(&d, server.web.expect("web"));
    let before = codes(&sink, SAM).len();
    let a = sam
        .post(
            "/sign-in",
            &format!("email={SAM}&next=%2F%2Fevil.example%2F"),
        )
        .await;
    assert_eq!(a.header("location"), Some("/sign-in/code"));
    let code = next_code(&sink, SAM, before).await;
    let a = sam
        .post(
            "/sign-in/code",
            &format!("code={code}&next=https%3A%2F%2Fevil.example"),
        )
        .await;
    assert_eq!(a.header("location"), Some("/"));
    server.stop().await;
}

#[tokio::test]
async fn a_share_may_be_about_more_than_one_child_and_each_reference_is_checked() {
    let (d, server, sink) = gateway("").await;
    let mut sam = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut sam, &sink, SAM).await;
    let file = b"About two siblings.\n".repeat(10);
    // A second reference that is not a valid NHS number: its page says which field.
    let wrong = sam
        .post(
            "/share",
            "step=what&summary=Two+siblings.&ref_scheme=case&ref_value=RY-1&ref2_scheme=nhs&ref2_value=943+476+5918&ref3_scheme=case&ref3_value=",
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    assert!(
        wrong.body.contains("href=\"#ref2_value\""),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("NHS number in the right format"));
    // Two children (a case reference and a sibling's NHS number): both recorded, as hashes.
    let shared = send_share_with(
        &mut sam,
        "safeguarding-referral",
        &file,
        &[("ref2_scheme", "nhs"), ("ref2_value", "943 476 5919")],
    )
    .await;
    assert_eq!(shared.status, 200, "{}", shared.body);
    let id = transfer_link(&shared);
    let accepted = d
        .all_records()
        .into_iter()
        .find(|r| r["kind"] == "transfer_accepted" && r["transfer_id"] == id.as_str())
        .expect("recorded");
    let hashes = accepted["envelope"]["subject_ref_hashes"]
        .as_array()
        .expect("hashes")
        .clone();
    assert_eq!(hashes.len(), 2, "{accepted}");
    assert!(!accepted.to_string().contains("9434765919"));
    // An empty third reference is no reference.
    server.stop().await;
}

/// Gateway A (the council's) delivers to the MASH at gateway B, where the MASH receives on the
/// pages: B's people with `receive` hear of it as they do of a delivery from B itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gateways_delivery_to_a_portal_organisation_is_announced_to_its_people() {
    let a = Deployment::with_daemon(
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 400\nretry_jitter = 0.0\n",
    );
    let (b, sink) = deployment("").await;
    b.accept_deliveries_from(&a);
    let b_server = b.start().await;
    let mash_key = b.state_dir.join("keys/orgs/northshire-mash.pub");
    assert!(mash_key.is_file(), "B holds the MASH's key");
    a.rewrite(
        "organisations.toml",
        "url = \"https://localhost:${api_port}/v1/inbound\"\nca = \"${state_dir}/pki/ca.crt\"\nage_recipients_file = \"${state_dir}/keys/orgs/northshire-mash.pub\"",
        &format!(
            "url = \"https://localhost:{}/v1/inbound\"\nca = \"{}\"\nage_recipients_file = \"{}\"",
            b_server.addr.port(),
            b.ca_path().display(),
            mash_key.display()
        ),
    );
    let a_server = a.start().await;
    let mut council = a.connect(a_server.addr, "northshire-cc").await;
    let env = common::envelope(serde_json::json!({ "recipients": ["northshire-mash"] }));
    let accepted = common::submit(&mut council, &env, vec![7; 1000], None).await;
    assert_eq!(accepted.status, 202);
    let told = eventually(20, "the MASH's person at B is told", || async {
        sink.received()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t.contains(ALEX)) && contains(&m.data, b"waiting"))
    })
    .await;
    assert!(told.tls);
    let mail = String::from_utf8_lossy(&told.data).to_string();
    let web = b_server.web.expect("web");
    assert!(mail.contains("Northshire County Council"), "{mail}");
    assert!(
        mail.contains(&format!("https://localhost:{}/inbox", web.port())),
        "{mail}"
    );
    for secret in ["JUSTIFICATION-SENTINEL", "SUBJECT-SENTINEL", "9434765919"] {
        assert!(!mail.contains(secret), "no personal data in the email");
    }
    a_server.stop().await;
    b_server.stop().await;
}

/// The pages reserve upload memory before they read the form, as the API does before its body:
/// while an agency system's upload holds all of it, a share from the pages is answered with a
/// page that says the gateway is busy (503, Retry-After), and nothing is recorded.
#[tokio::test]
async fn a_share_from_the_pages_says_busy_when_uploads_hold_the_memory_they_may() {
    let (d, server, sink) =
        gateway("[limits]\nupload_memory_bytes = 1048576\nupload_memory_wait_secs = 1\n").await;
    let mut sam = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut sam, &sink, SAM).await;
    let (more, held) = common::held_upload(&d, server.addr, "northshire-cc").await;
    // Until the held upload has reserved its room a share may slip through; then it is busy.
    let mut through = 0;
    let busy = loop {
        let page = send_share(&mut sam, "safeguarding-referral", b"concern").await;
        if page.status == 503 {
            break page;
        }
        through += 1;
        assert!(through < 50, "never busy: {}", page.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        busy.body.contains("Postern is busy right now"),
        "{}",
        busy.body
    );
    assert_eq!(busy.header("retry-after"), Some("60"));
    assert_eq!(d.transfers(), through, "the busy share recorded nothing");
    drop(more);
    let _ = held.await;
}

/// A request for information asked on the pages: the holder's people with `receive` are
/// emailed (the requester's name and a link, no personal data); a person of a third
/// organisation can neither read it nor answer or decline it by guessing its id; the holder's
/// reading of it is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_asked_on_the_pages_is_announced_to_the_holder_and_hidden_from_others() {
    let (d, sink) = deployment("").await;
    // A third organisation's practitioner, who shares and receives.
    const KIM: &str = "kim@northshire-police.example";
    let people = d.config_dir.join("people.toml");
    let mut text = std::fs::read_to_string(&people).expect("people.toml");
    text.push_str("\n[[person]]\nemail = \"kim@northshire-police.example\"\nname = \"Kim Reed\"\ntitle = \"Detective constable\"\norganisation = \"northshire-police\"\nroles = [\"share\", \"receive\"]\n");
    std::fs::write(&people, text).expect("people.toml");
    let server = d.start().await;
    let web = server.web.expect("web");
    let mut alex = Browser::new(&d, web);
    sign_in(&mut alex, &sink, ALEX).await;
    let a = alex
        .post(
            "/requests/new",
            "holder=riverside-youth&purpose=safeguarding-referral&basis=legitimate_interests&requested=REQUESTED-SENTINEL+attendance&grounds=GROUNDS-SENTINEL+a+contact&ref_scheme=case&ref_value=SUBJECT-SENTINEL-77&urgency=routine",
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Request sent"), "{}", a.body);
    let id = a
        .body
        .split("/requests/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the request's link")
        .to_owned();
    assert!(id.parse::<uuid::Uuid>().is_ok(), "{id}");

    let told = eventually(20, "the club's receiver is told", || async {
        sink.received().into_iter().find(|m| {
            m.to.iter().any(|t| t.contains(SAM)) && contains(&m.data, b"request for information")
        })
    })
    .await;
    assert!(told.tls);
    let mail = String::from_utf8_lossy(&told.data).to_string();
    assert!(
        mail.contains("Northshire Multi-Agency Safeguarding Hub"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("https://localhost:{}/requests/{id}", web.port())),
        "{mail}"
    );
    for secret in ["REQUESTED-SENTINEL", "GROUNDS-SENTINEL", "SUBJECT-SENTINEL"] {
        assert!(!mail.contains(secret), "no personal data in the email");
    }

    // The holder reads it, with the child's reference; the reading is recorded.
    let mut sam = Browser::new(&d, web);
    sign_in(&mut sam, &sink, SAM).await;
    let page = sam.get(&format!("/requests/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("SUBJECT-SENTINEL-77") && page.body.contains("REQUESTED-SENTINEL"));
    assert!(page.body.contains(&format!("/share?answers={id}")));
    assert!(person_events(&d).contains(&(SAM.to_owned(), "request_viewed".to_owned())));
    // The requester cannot answer its own request.
    assert_eq!(alex.get(&format!("/share?answers={id}")).await.status, 404);

    // Another organisation's person: not found, whichever way.
    let mut kim = Browser::new(&d, web);
    sign_in(&mut kim, &sink, KIM).await;
    for path in [
        format!("/requests/{id}"),
        format!("/share?answers={id}"),
        format!("/decline?answers={id}"),
    ] {
        let a = kim.get(&path).await;
        assert_eq!(a.status, 404, "{path}: {}", a.body);
        assert!(!a.body.contains("SUBJECT-SENTINEL"), "{path}");
    }
    let a = kim
        .post(&format!("/requests/{id}/withdraw"), "reason=x")
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(!kim.get("/requests").await.body.contains(&id));

    // A clarification, asked by the holder and given by the requester, from the pages: the
    // clock waits meanwhile.
    let a = sam
        .post(
            &format!("/requests/{id}/clarification"),
            "text=Which+session+does+the+child+attend%3F",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = alex.get(&format!("/requests/{id}")).await;
    assert!(
        page.body.contains("Waiting for a clarification"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Which session does the child attend?"));
    assert!(page.body.contains("Send the clarification"));
    let a = alex
        .post(&format!("/requests/{id}/clarification"), "text=Tuesdays.")
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = sam.get(&format!("/requests/{id}")).await;
    assert!(page.body.contains("Waiting for an answer") && page.body.contains("Tuesdays."));

    // Declined by the holder from the pages: the decision names it, and it is closed.
    let a = sam
        .post(
            "/decline",
            &format!(
                "to=northshire-mash&reasons=Not+proportionate.&ref_scheme=&ref_value=&answers={id}"
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let page = alex.get(&format!("/requests/{id}")).await;
    assert!(page.body.contains("Declined"), "{}", page.body);
    assert!(
        !page.body.contains("SUBJECT-SENTINEL"),
        "closed: the reference is no longer kept"
    );
    server.stop().await;
}
