//! The IT team's pages (role `admin`) over real HTTPS: the registry as tables and who may share
//! with whom (an agreement ending soon tagged in words), an organisation's page, explain (the
//! very decision `postern explain` runs, pre-filled from a link), and the configuration's reload
//! status. Nobody without the admin role sees any of them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use common::web::*;

const MORGAN: &str = "morgan@northshire-cc.example";
const PRIYA: &str = "priya@northshire-mash.example";

const PAGES: [&str; 5] = [
    "/registry",
    "/registry/riverside-youth",
    "/explain",
    "/explain?from=riverside-youth&to=northshire-mash&purpose=safeguarding-referral&lawful_basis=legitimate_interests&marking=OFFICIAL",
    "/status",
];

/// The table rows of a page (`<tr>` to `</tr>`).
fn rows(body: &str) -> Vec<&str> {
    body.split("<tr>")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or(r))
        .collect()
}

/// The rows that contain every one of `needles`.
fn rows_with<'a>(body: &'a str, needles: &[&str]) -> Vec<&'a str> {
    rows(body)
        .into_iter()
        .filter(|r| needles.iter().all(|n| r.contains(n)))
        .collect()
}

/// The cell of "who may share with whom" for `from` sharing with `to` (by name).
fn grid_cell(body: &str, from: &str, to: &str) -> String {
    let table = body
        .split("aria-labelledby=\"matrix-title\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the grid");
    let head = table.split("</thead>").next().expect("its head");
    let col = head
        .split("<th scope=\"col\">")
        .skip(1)
        .position(|c| c.contains(&format!(">{to}</a>")))
        .unwrap_or_else(|| panic!("a column for {to}"));
    let row = table
        .split("<tbody>")
        .nth(1)
        .expect("its body")
        .split("<tr>")
        .find(|r| r.contains(&format!(">{from}</a></th>")))
        .unwrap_or_else(|| panic!("a row for {from}"));
    row.split("<td>")
        .nth(col + 1)
        .and_then(|c| c.split("</td>").next())
        .unwrap_or_else(|| panic!("the cell {from} to {to}"))
        .to_owned()
}

/// Whether the checkbox `name` with `value` is ticked.
fn checked(body: &str, name: &str, value: &str) -> bool {
    let input = format!("name=\"{name}\" value=\"{value}\"");
    body.split(&input)
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .is_some_and(|attrs| attrs.contains(" checked"))
}

#[tokio::test]
async fn the_admin_pages_are_for_the_it_team_only_and_carry_the_security_headers() {
    let (d, server, sink) = gateway("").await;
    let web = server.web.expect("web");
    for email in [SAM, PRIYA] {
        let mut b = Browser::new(&d, web);
        sign_in(&mut b, &sink, email).await;
        for path in PAGES {
            let a = b.get(path).await;
            // A DPO may use explain (a refusal in the log links there); nothing else here.
            if email == PRIYA && path.starts_with("/explain") {
                assert_eq!(a.status, 200, "{email} {path}: {}", a.body);
                continue;
            }
            assert_eq!(a.status, 403, "{email} {path}: {}", a.body);
            assert!(
                a.body.contains("These pages are for your IT team")
                    || a.body.contains("Explain is for your IT team"),
                "{path}"
            );
            assert!(!a.body.contains("Test information sharing protocol"));
        }
    }
    // Signed out: to sign in, and back.
    let mut stranger = Browser::new(&d, web);
    let a = stranger.get("/registry").await;
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/sign-in?next=%2Fregistry"));

    let mut morgan = Browser::new(&d, web);
    sign_in(&mut morgan, &sink, MORGAN).await;
    let home = morgan.get("/").await;
    assert!(
        home.body.contains("href=\"/registry\""),
        "the header links to the registry"
    );
    for path in PAGES {
        let a = morgan.get(path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let csp = a.header("content-security-policy").expect("CSP");
        assert!(csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(
            a.header("strict-transport-security")
                .is_some_and(|h| h.contains("max-age="))
        );
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert!(!a.body.contains("style="), "{path}: no inline style");
        assert!(!a.body.contains("<script>"), "{path}: no inline script");
        // Every table says what it holds, and its columns are headed.
        assert_eq!(
            a.body.matches("<table").count(),
            a.body.matches("<caption").count(),
            "{path}"
        );
        assert!(!a.body.contains("<th>"), "{path}: every header has a scope");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_registry_shows_who_may_share_with_whom_and_tags_agreements_that_end_soon() {
    let (d, sink) = deployment("").await;
    // The s.115 agreement ends in 23 days.
    let ends = time::OffsetDateTime::now_utc().date() + time::Duration::days(23);
    d.rewrite(
        "agreements.toml",
        "purposes = [\"crime-prevention-s115\"]\nlawful_bases = [\"public_task\", \"legal_obligation\"]\nmax_marking = \"OFFICIAL-SENSITIVE\"\nvalid_from = 2000-01-01\nvalid_until = 2999-12-31",
        &format!(
            "purposes = [\"crime-prevention-s115\"]\nlawful_bases = [\"public_task\", \"legal_obligation\"]\nmax_marking = \"OFFICIAL-SENSITIVE\"\nvalid_from = 2000-01-01\nvalid_until = {ends}"
        ),
    );
    let server = d.start().await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, MORGAN).await;
    let page = b.get("/registry").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;

    // Who may share with whom, by name, in both directions, under the agreement that allows it:
    // a grid, one cell per direction, naming the agreement and linking to what it allows.
    for (from, to) in [
        (
            "Riverside Youth Club",
            "Northshire Multi-Agency Safeguarding Hub",
        ),
        (
            "Northshire Multi-Agency Safeguarding Hub",
            "Riverside Youth Club",
        ),
    ] {
        let cell = grid_cell(body, from, to);
        assert!(
            cell.contains("<a href=\"#agreement-test-isp\">Test information sharing protocol</a>"),
            "{from} to {to}: {cell}"
        );
        assert!(!cell.contains("tag"), "in force, untagged: {cell}");
    }
    assert!(grid_cell(body, "Riverside Youth Club", "Riverside Youth Club").contains("itself"));
    let isp = rows_with(body, &["id=\"agreement-test-isp\""]);
    assert_eq!(isp.len(), 1, "{body}");
    let row = isp[0];
    assert!(row.contains("href=\"/registry/riverside-youth\""), "{row}");
    assert!(
        row.contains("Referral of a safeguarding concern to children"),
        "{row}"
    );
    assert!(
        row.contains("OFFICIAL-SENSITIVE") && row.contains("2999-12-31"),
        "{row}"
    );
    assert!(row.contains("tag tag-done\">In force"), "{row}");
    // No agreement binds the youth club and the police for s.115 work.
    assert!(
        rows_with(
            body,
            &[">Riverside Youth Club</a></th>", "Test s.115 agreement"]
        )
        .is_empty()
    );

    // The agreement ending soon is tagged in words, in the matrix and in the agreements.
    let ending = rows_with(body, &["Test s.115 agreement"]);
    assert_eq!(
        ending.len(),
        4 + 1,
        "the grid rows of its 4 parties, and its own row"
    );
    for r in &ending {
        assert!(
            r.contains("<strong class=\"tag tag-wait\">Ends in 23 days</strong>"),
            "{r}"
        );
        // The date itself is in the agreement's own row.
        assert!(
            !r.contains("id=\"agreement-test-s115\"") || r.contains(&ends.to_string()),
            "{r}"
        );
    }
    let ended = rows_with(body, &["An agreement that has ended"]);
    assert!(!ended.is_empty());
    for r in &ended {
        assert!(
            r.contains("<strong class=\"tag tag-bad\">Ended on 2002-01-01</strong>"),
            "{r}"
        );
    }

    // The organisations, purposes and markings, by name with their ids.
    let lonely = rows_with(
        body,
        &["href=\"/registry/lonely-charity\">Lonely Charity</a>"],
    );
    assert_eq!(
        lonely.len(),
        1,
        "an organisation with no agreement is listed once"
    );
    assert!(
        lonely[0].contains("Voluntary organisation"),
        "{}",
        lonely[0]
    );
    assert!(
        lonely[0].contains("info@lonely-charity.example"),
        "{}",
        lonely[0]
    );
    let s115 = rows_with(
        body,
        &[
            "Crime and disorder reduction",
            "<code>crime-prevention-s115</code>",
        ],
    );
    assert_eq!(s115.len(), 1);
    assert!(
        s115[0].contains("Public task, Legal obligation")
            || s115[0].contains("Legal obligation, Public task"),
        "{}",
        s115[0]
    );
    assert!(body.contains("<li>OFFICIAL</li>") && body.contains("<li>OFFICIAL-SENSITIVE</li>"));
    assert!(body.contains(
        "class=\"table-scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"matrix-title\""
    ));
    assert!(body.contains("<h2 id=\"matrix-title\">"));
    server.stop().await;
}

#[tokio::test]
async fn an_organisations_page_lists_its_certificates_endpoint_contacts_agreements_and_people() {
    let (d, server, sink) = gateway("").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, MORGAN).await;
    let page = b.get("/registry/riverside-youth").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("<h1>Riverside Youth Club</h1>"));
    assert!(body.contains("Voluntary organisation"));
    let identity = rows_with(body, &["riverside-youth.clients.postern.test"]);
    assert_eq!(identity.len(), 1, "{body}");
    assert!(identity[0].contains("Subject alternative name"));
    assert!(
        identity[0].contains("<code>local</code>"),
        "its CA: {}",
        identity[0]
    );
    // Contacts and how its people sign in.
    assert!(
        body.contains("Tom Reed, dpo@riverside-youth.example"),
        "{body}"
    );
    assert!(body.contains("Priya Shah, 01632 960 481"));
    assert!(body.contains("A code emailed to the person"));
    // Its people, with their roles in words; nobody of another organisation.
    let sam = rows_with(body, &["Sam Okafor"]);
    assert_eq!(sam.len(), 1);
    assert!(
        sam[0].contains("Youth worker") && sam[0].contains(SAM),
        "{}",
        sam[0]
    );
    assert!(sam[0].contains("shares, receives"), "{}", sam[0]);
    let chris = rows_with(body, &["Chris Doyle"]);
    assert!(chris[0].contains("data protection officer"), "{}", chris[0]);
    assert!(rows_with(body, &["Morgan Lee"]).is_empty() && !body.contains("Alex Moreau"));
    // Its agreements: the protocol in force, nothing it is not a party to.
    let isp = rows_with(body, &["Test information sharing protocol"]);
    assert_eq!(isp.len(), 1);
    assert!(isp[0].contains("href=\"/registry/northshire-mash\""));
    assert!(
        !isp[0].contains("href=\"/registry/riverside-youth\""),
        "not with itself"
    );
    assert!(!body.contains("Test s.115 agreement"));

    // The MASH receives on these pages.
    let mash = b.get("/registry/northshire-mash").await;
    assert!(mash.body.contains("(portal)"), "{}", mash.body);
    assert!(mash.body.contains("Priya Shah"));

    assert_eq!(b.get("/registry/no-such-org").await.status, 404);
    assert_eq!(b.get("/registry/NOT%20an%20id").await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn explain_from_a_link_shows_every_rule_and_the_agreement_or_the_refusal() {
    let (d, server, sink) = gateway("").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, MORGAN).await;

    // The empty form: names from the registry, no outcome.
    let form = b.get("/explain").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains("<form method=\"get\" action=\"/explain\"")
    );
    assert!(
        form.body.contains(
            "<option value=\"riverside-youth\">Riverside Youth Club (riverside-youth)</option>"
        ),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains("<legend class=\"legend\">Who to</legend>")
    );
    assert!(
        form.body
            .contains("type=\"checkbox\" name=\"to\" value=\"northshire-mash\"")
    );
    assert!(
        form.body
            .contains("Legitimate interests (legitimate_interests)")
    );
    assert!(
        form.body
            .contains("<option value=\"safeguarding_children\">")
    );
    assert!(!form.body.contains("Every rule checked"));
    assert!(form.body.contains("<label class=\"label\" for=\"on\">"));

    // Allowed: two recipients (one comma-separated, as a link may give them), each with its agreement.
    let allowed = b
        .get("/explain?from=riverside-youth&to=northshire-mash,millbrook-academy&purpose=safeguarding-referral&lawful_basis=legitimate_interests&marking=OFFICIAL-SENSITIVE&data_categories=personal")
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let body = &allowed.body;
    assert!(
        body.contains("<h2 id=\"outcome-title\">Allowed</h2>"),
        "{body}"
    );
    assert!(body.contains("Northshire Multi-Agency Safeguarding Hub: under Test information sharing protocol (test-isp)"), "{body}");
    assert!(
        body.contains("Millbrook Academy: under Test information sharing protocol (test-isp)"),
        "{body}"
    );
    assert!(!body.contains("tag-bad\">Fail"));
    let agreement_check = rows_with(
        body,
        &[
            "<code>agreement_not_in_force</code>",
            "Northshire Multi-Agency Safeguarding Hub",
        ],
    );
    assert_eq!(agreement_check.len(), 1, "{body}");
    assert!(agreement_check[0].contains("Pass"));
    assert!(agreement_check[0].contains("the agreement is in force today"));
    assert!(agreement_check[0].contains("under Test information sharing protocol (test-isp)"));
    // The form is filled in with the question.
    assert!(body.contains("<option value=\"riverside-youth\" selected>"));
    for to in ["millbrook-academy", "northshire-mash"] {
        assert!(checked(body, "to", to), "{to} is ticked");
    }
    assert!(!checked(body, "to", "northshire-police"));
    assert!(checked(body, "data_categories", "personal"));
    assert!(body.contains("<option value=\"OFFICIAL-SENSITIVE\" selected>"));

    // Refused: a voluntary organisation under a statutory-only gateway, with the rule and why.
    let refused = b
        .get("/explain?from=riverside-youth&to=northshire-police&purpose=crime-prevention-s115&lawful_basis=public_task&marking=OFFICIAL")
        .await;
    assert_eq!(refused.status, 200, "{}", refused.body);
    let body = &refused.body;
    assert!(
        body.contains("<h2 id=\"outcome-title\">Refused</h2>"),
        "{body}"
    );
    assert!(
        body.contains("<code>statutory_only_sender</code>"),
        "{body}"
    );
    assert!(body.contains("a statutory-only purpose is used by a statutory sender"));
    assert!(
        body.contains("may only be used between statutory bodies"),
        "{body}"
    );
    let fails: Vec<_> = rows(body)
        .into_iter()
        .filter(|r| r.contains("tag-bad\">Fail"))
        .collect();
    assert_eq!(fails.len(), 1, "the decision stops at the first refusal");
    assert!(fails[0].contains("statutory_only_sender"));

    // As of a date: the ended agreement was in force then, not now.
    let then = b.get("/explain?from=northshire-cc&to=old-partner&purpose=child-protection-s47&lawful_basis=public_task&marking=OFFICIAL&on=2001-06-01").await;
    assert!(
        then.body.contains("<h2 id=\"outcome-title\">Allowed</h2>"),
        "{}",
        then.body
    );
    let now = b.get("/explain?from=northshire-cc&to=old-partner&purpose=child-protection-s47&lawful_basis=public_task&marking=OFFICIAL").await;
    assert!(
        now.body.contains("<code>agreement_not_in_force</code>"),
        "{}",
        now.body
    );
    server.stop().await;
}

#[tokio::test]
async fn explain_names_the_field_at_fault_in_a_description_that_is_not_a_share() {
    let (d, server, sink) = gateway("").await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, MORGAN).await;
    let ok = "from=northshire-cc&to=northshire-police&purpose=child-protection-s47&lawful_basis=public_task&marking=OFFICIAL";
    for (query, field, words) in [
        (
            ok.replace("public_task", "because"),
            "lawful_basis",
            "because",
        ),
        (format!("{ok}&on=1+June"), "on", "is not a date"),
        (
            ok.replace("to=northshire-police", "to=ghost-agency"),
            "to",
            "not a registered organisation",
        ),
        (
            ok.replace("from=northshire-cc", "from=nobody"),
            "from",
            "not a registered organisation",
        ),
        (
            ok.replace("from=northshire-cc", "from="),
            "from",
            "Choose the organisation that shares",
        ),
        (
            ok.replace("marking=OFFICIAL", "marking=PURPLE"),
            "marking",
            "PURPLE",
        ),
        (
            format!("{ok}&data_categories=gossip"),
            "data_categories",
            "is not a data category",
        ),
    ] {
        let a = b.get(&format!("/explain?{query}")).await;
        assert_eq!(a.status, 422, "{query}: {}", a.body);
        assert!(a.body.contains("There is a problem"), "{query}");
        assert!(
            a.body.contains(&format!("href=\"#{field}\"")),
            "{query}: {}",
            a.body
        );
        assert!(
            a.body.contains(&format!("id=\"{field}-error\"")),
            "{query}: the field says so too"
        );
        assert!(a.body.contains(words), "{query}: {}", a.body);
        assert!(!a.body.contains("outcome-title"), "{query}: no decision");
        assert!(
            a.body.contains(&format!("id=\"{field}\"")),
            "{query}: the link has a target"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_status_page_shows_the_load_and_every_error_of_a_refused_reload() {
    let (d, sink) = deployment("").await;
    let (server, reloader) = d.start_reloadable().await;
    let mut b = Browser::new(&d, server.web.expect("web"));
    sign_in(&mut b, &sink, MORGAN).await;
    let page = b.get("/status").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("start-up"), "{}", page.body);
    assert!(page.body.contains("tag tag-done\">Applied"));
    assert!(!page.body.contains("was refused"));
    assert!(page.body.contains("<h2>Transfer log</h2>"));

    // An agreement naming a purpose nobody configured: the reload is refused, the page says
    // where.
    d.rewrite(
        "agreements.toml",
        "purposes = [\"crime-prevention-s115\"]",
        "purposes = [\"no-such-purpose\"]",
    );
    let line = std::fs::read_to_string(d.config_dir.join("agreements.toml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("no-such-purpose"))
        .unwrap()
        + 1;
    assert!(reloader.reload(&d.load_options()).await.is_err());
    let page = b.get("/status").await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    assert!(body.contains("The last reload was refused"), "{body}");
    assert!(body.contains("tag tag-bad\">Refused"));
    assert!(body.contains("SIGHUP"));
    assert!(body.contains(&format!("agreements.toml:{line}")), "{body}");
    assert!(body.contains("no-such-purpose"), "{body}");
    assert!(
        body.contains("start-up"),
        "the configuration in force is still the first"
    );
    server.stop().await;
}
