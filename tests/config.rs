//! Configuration errors: all of them at once, each with its file and line; environment
//! overrides; `check-config` and `serve` exit 64 before binding anything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::Deployment;
use postern_gateway::config::{self, ConfigDir, ConfigError, LoadOptions, Overrides};

fn load_errors(d: &Deployment, env: HashMap<String, String>) -> Vec<ConfigError> {
    let opts = LoadOptions {
        dir: ConfigDir::Dir(d.config_dir.clone()),
        overrides: Overrides::default(),
        env: Some(env),
    };
    match config::load(&opts) {
        Ok(_) => panic!("configuration should be invalid"),
        Err(e) => e.0,
    }
}

fn replace(d: &Deployment, file: &str, from: &str, to: &str) {
    let p = d.config_dir.join(file);
    let text = std::fs::read_to_string(&p).expect("read");
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
}

fn line_of(d: &Deployment, file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(d.config_dir.join(file)).expect("read");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {file}"))
}

fn find<'a>(errors: &'a [ConfigError], file: &str, message: &str) -> &'a ConfigError {
    errors
        .iter()
        .find(|e| e.origin.ends_with(file) && e.message.contains(message))
        .unwrap_or_else(|| {
            panic!(
                "no error in {file} containing {message:?}; got:\n{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// One broken value in each file, including the marking scale the others depend on and a
/// dangling reference: every one is reported in the same run, at its line.
#[test]
fn every_error_is_reported_at_once_with_file_and_line() {
    let d = Deployment::new();
    replace(
        &d,
        "organisations.toml",
        "sector = \"police\"",
        "sector = \"constabulary\"",
    );
    replace(
        &d,
        "organisations.toml",
        "kind = \"voluntary\"",
        "kind = \"charitable\"",
    );
    replace(
        &d,
        "agreements.toml",
        "\"northshire-mash\"]\npurposes = [\"crime",
        "\"northshire-ghost\"]\npurposes = [\"crime",
    );
    replace(
        &d,
        "agreements.toml",
        "valid_until = 2002-01-01",
        "valid_until = 2000-06-01",
    );
    replace(
        &d,
        "purposes.toml",
        "special_category = false",
        "special_category = false\ncolour = \"blue\"",
    );
    replace(&d, "marking.toml", "CONFIDENTIAL = \"SECRET\"", "");
    replace(&d, "peers.toml", "\nsenders = [", "\nspeaks_for = [");
    std::fs::write(d.config_dir.join("postern.toml"), format!("state_dir = \"{}\"\n[api]\nlisten = \"nowhere\"\n[limits]\nmax_connections = 0\nmax_payload = 5\n", d.state_dir.display())).expect("write");
    let errors = load_errors(&d, HashMap::new());

    let e = find(&errors, "marking.toml", "CONFIDENTIAL");
    assert!(e.line.is_some());
    let e = find(&errors, "peers.toml", "unknown field `speaks_for`");
    assert_eq!(e.line, Some(line_of(&d, "peers.toml", "speaks_for")), "{e}");
    let e = find(&errors, "postern.toml", "unknown field `max_payload`");
    assert_eq!(e.line, Some(6), "{e}");
    let e = find(&errors, "purposes.toml", "unknown field `colour`");
    assert_eq!(e.line, Some(line_of(&d, "purposes.toml", "colour")), "{e}");
    let e = find(
        &errors,
        "organisations.toml",
        "`constabulary` is not a sector",
    );
    assert_eq!(
        e.line,
        Some(line_of(&d, "organisations.toml", "constabulary"))
    );
    assert!(e.key.as_deref().is_some_and(|k| k.ends_with(".sector")));
    let e = find(
        &errors,
        "organisations.toml",
        "`charitable` is not a kind of organisation",
    );
    assert_eq!(
        e.line,
        Some(line_of(&d, "organisations.toml", "charitable"))
    );
    let e = find(
        &errors,
        "agreements.toml",
        "party `northshire-ghost` is not a registered organisation",
    );
    assert_eq!(
        e.line,
        Some(line_of(&d, "agreements.toml", "\"northshire-ghost\""))
    );
    let e = find(
        &errors,
        "agreements.toml",
        "ends (2000-06-01) before it starts (2001-01-01)",
    );
    assert_eq!(
        e.line,
        Some(line_of(&d, "agreements.toml", "valid_until = 2000-06-01"))
    );
    // The organisations that failed are still known by id: agreements naming them are not
    // reported as dangling too.
    assert!(
        !errors
            .iter()
            .any(|e| e.message.contains("party `northshire-police`")
                || e.message.contains("party `riverside-youth`")),
        "{errors:?}"
    );
    // The display form is file:line:column: key: message.
    assert!(
        e.to_string()
            .contains(&format!("agreements.toml:{}:", e.line.unwrap_or(0))),
        "{e}"
    );

    // Fix the file errors: the daemon's remain, and nothing else.
    replace(&d, "organisations.toml", "constabulary", "police");
    replace(&d, "organisations.toml", "charitable", "voluntary");
    replace(
        &d,
        "agreements.toml",
        "\"northshire-ghost\"",
        "\"northshire-mash\"",
    );
    replace(
        &d,
        "agreements.toml",
        "valid_until = 2000-06-01",
        "valid_until = 2002-01-01",
    );
    replace(&d, "purposes.toml", "\ncolour = \"blue\"", "");
    // A peer must say whom it delivers for.
    replace(&d, "peers.toml", "\nspeaks_for = [", "\n# speaks_for = [");
    replace(
        &d,
        "marking.toml",
        "[legacy]",
        "[legacy]\nCONFIDENTIAL = \"SECRET\"",
    );
    std::fs::write(
        d.config_dir.join("postern.toml"),
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = \"nowhere\"\n[limits]\nmax_connections = 0\n",
            d.state_dir.display()
        ),
    )
    .expect("write");
    let errors = load_errors(&d, HashMap::new());
    let e = find(&errors, "postern.toml", "`nowhere` is not an address");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("api.listen")));
    let e = find(&errors, "postern.toml", "0 is out of range");
    assert_eq!(e.line, Some(5));
    let e = find(
        &errors,
        "peers.toml",
        "list the organisations this peer delivers for",
    );
    assert_eq!(e.key.as_deref(), Some("peer[0].senders"));
    assert_eq!(
        e.line,
        Some(line_of(&d, "peers.toml", "id = \"northshire-gateway\""))
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn syntax_errors_and_missing_files_are_reported_with_the_rest() {
    let d = Deployment::new();
    std::fs::write(
        d.config_dir.join("purposes.toml"),
        "[[purpose]]\nid = \"x\"\ntitle = = \"broken\"\n",
    )
    .expect("write");
    std::fs::remove_file(d.config_dir.join("agreements.toml")).expect("rm");
    let errors = load_errors(&d, HashMap::new());
    let e = find(&errors, "purposes.toml", "not valid TOML");
    assert_eq!(e.line, Some(3));
    find(&errors, "agreements.toml", "cannot read");
}

#[test]
fn key_files_that_are_missing_or_wrong_are_reported_at_the_key_naming_them() {
    let d = Deployment::new();
    std::fs::write(
        d.config_dir.join("postern.toml"),
        format!("state_dir = \"{}\"\n\n[tls]\nprivate_key = \"${{state_dir}}/pki/ca.key\"\n\n[spool]\nidentity = \"/nonexistent/spool.age\"\n", d.state_dir.display()),
    )
    .expect("write");
    let errors = load_errors(&d, HashMap::new());
    let e = find(&errors, "postern.toml", "is not the key of the certificate");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("tls.private_key"))
    );
    let e = find(
        &errors,
        "postern.toml",
        "cannot load `/nonexistent/spool.age`",
    );
    assert_eq!(e.line, Some(7));
}

#[test]
fn environment_overrides_apply_and_their_errors_name_the_variable() {
    let d = Deployment::new();
    let opts = |env: &[(&str, &str)]| LoadOptions {
        dir: ConfigDir::Dir(d.config_dir.clone()),
        overrides: Overrides::default(),
        env: Some(
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
    };
    let c = config::load(&opts(&[
        ("POSTERN_LIMITS__MAX_CONNECTIONS", "7"),
        ("POSTERN_API__LISTEN", "127.0.0.1:9999"),
    ]))
    .expect("valid");
    assert_eq!(c.daemon.limits.max_connections, 7);
    assert_eq!(c.daemon.listen.port(), 9999);

    let errors = config::load(&opts(&[("POSTERN_API__LISTEN", "not-an-address")]))
        .err()
        .expect("invalid")
        .0;
    let e = errors
        .iter()
        .find(|e| e.origin == "environment variable POSTERN_API__LISTEN")
        .expect("named");
    assert!(e.message.contains("not an address"));
    let errors = config::load(&opts(&[("POSTERN_LIMITS__MAX_CONECTIONS", "7")]))
        .err()
        .expect("invalid")
        .0;
    assert!(
        errors.iter().any(
            |e| e.origin == "environment variable POSTERN_LIMITS__MAX_CONECTIONS"
                && e.message.contains("not a configuration key")
        ),
        "{errors:?}"
    );
    // The relays (a list of tables) are not listed as settable, and setting them says where
    // they go.
    let listed = errors
        .iter()
        .find(|e| e.message.contains("settable keys are"))
        .expect("the list")
        .message
        .clone();
    assert!(!listed.contains("POSTERN_SMTP__RELAYS"), "{listed}");
    let errors = config::load(&opts(&[("POSTERN_SMTP__RELAYS", "relay.example:587")]))
        .err()
        .expect("invalid")
        .0;
    assert!(
        errors
            .iter()
            .any(|e| e.origin == "environment variable POSTERN_SMTP__RELAYS"
                && e.message.contains("set it in postern.toml")),
        "{errors:?}"
    );
}

fn postern(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("POSTERN_LOG")
        .output()
        .expect("run postern")
}

#[test]
fn check_config_and_serve_exit_64_with_every_error_before_binding() {
    let d = Deployment::new();
    let dir = d.config_dir.to_str().expect("utf8");
    let ok = postern(&["check-config", "--config", dir]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout)
            .contains("configuration is valid: 8 organisations, 5 purposes, 3 agreements")
    );

    replace(
        &d,
        "organisations.toml",
        "clearance = \"OFFICIAL\"",
        "clearance = \"HUSH\"",
    );
    replace(
        &d,
        "purposes.toml",
        "statutory_only = true",
        "statutory_only = \"yes\"",
    );
    let line_org = line_of(&d, "organisations.toml", "HUSH");
    let line_purpose = line_of(&d, "purposes.toml", "statutory_only = \"yes\"");
    let bad = postern(&["check-config", "--config", dir]);
    assert_eq!(bad.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!("organisations.toml:{line_org}:")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("purposes.toml:{line_purpose}:")),
        "{stderr}"
    );

    // serve refuses too, and never announces a listener.
    let serve = postern(&["serve", "--config", dir]);
    assert_eq!(serve.status.code(), Some(64));
    assert!(!String::from_utf8_lossy(&serve.stdout).contains("listening"));
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains(&format!("organisations.toml:{line_org}:"))
    );
}

#[test]
fn the_demo_configuration_is_valid() {
    // The registry shipped in config/demo, with the keys the demo generates.
    let d = Deployment::new();
    for f in ["organisations.toml", "agreements.toml"] {
        std::fs::copy(format!("config/demo/{f}"), d.config_dir.join(f)).expect("copy");
    }
    let c = d.load();
    assert_eq!(c.registry.organisations().count(), 6);
    assert!(
        c.registry
            .organisations()
            .any(|o| o.id.as_str() == "riverside-youth" && !o.kind.is_statutory())
    );
}

/// The folder outbox is for the demo only: a real deployment must send email through a relay
/// (or have no email recipients), and says so at start-up rather than writing messages to disk.
#[test]
fn the_outbox_folder_and_email_without_a_relay_are_refused_outside_the_demo() {
    let d = Deployment::with_daemon("");
    std::fs::write(
        d.config_dir.join("postern.toml"),
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[smtp]\noutbox_dir = \"/tmp/outbox\"\n",
            d.state_dir.display()
        ),
    )
    .expect("write");
    let errors = load_errors(&d, HashMap::new());
    let e = find(
        &errors,
        "postern.toml",
        "is a development setting for `postern demo`",
    );
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(5), Some("smtp.outbox_dir"))
    );
    // Without it and without relays, the email recipients cannot be reached: also an error.
    std::fs::write(
        d.config_dir.join("postern.toml"),
        format!(
            "state_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            d.state_dir.display()
        ),
    )
    .expect("write");
    let errors = load_errors(&d, HashMap::new());
    assert!(
        errors
            .iter()
            .any(|e| e.message.to_lowercase().contains("relay")),
        "{errors:?}"
    );
}

/// Every identity names the CA that may issue it. A configuration written before that (a SAN
/// with no `ca`) is refused with the line to add; a CA that is not trusted is refused; a name
/// many CAs issue (`localhost`, an IP address) is valid but warned about by `check-config`.
#[test]
fn identities_must_name_their_ca_and_generic_names_are_warned_about() {
    let d = Deployment::new();
    let dir = d.config_dir.to_str().expect("utf8");
    replace(
        &d,
        "organisations.toml",
        "{ san = \"riverside-youth.clients.postern.test\", ca = \"local\" }",
        "{ san = \"riverside-youth.clients.postern.test\" }",
    );
    replace(
        &d,
        "organisations.toml",
        "{ san = \"millbrook-academy.clients.postern.test\", ca = \"local\" }",
        "{ san = \"millbrook-academy.clients.postern.test\", ca = \"westshire\" }",
    );
    // A fingerprint identity, too, is bound to the CA that vouches for the certificate.
    let fp = format!("sha256:{}", "ab".repeat(32));
    let peers = std::fs::read_to_string(d.config_dir.join("peers.toml")).expect("read");
    std::fs::write(
        d.config_dir.join("peers.toml"),
        format!("[[peer]]\nid = \"westshire-gateway\"\nname = \"Westshire gateway\"\nidentities = [{{ fingerprint = \"{fp}\" }}]\nsenders = [\"northshire-cc\"]\n"),
    )
    .expect("write");
    let errors = load_errors(&d, HashMap::new());
    let e = find(
        &errors,
        "peers.toml",
        "a fingerprint identity must name the CA that issued the certificate",
    );
    assert!(
        e.message
            .contains(&format!("{{ fingerprint = \"{fp}\", ca = \"local\" }}")),
        "the error says what to write: {e}"
    );
    assert_eq!(e.line, Some(line_of(&d, "peers.toml", "fingerprint")));
    std::fs::write(d.config_dir.join("peers.toml"), peers).expect("restore");
    let errors = load_errors(&d, HashMap::new());
    let e = find(
        &errors,
        "organisations.toml",
        "a SAN identity must name the CA that may issue it",
    );
    assert!(
        e.message
            .contains("{ san = \"riverside-youth.clients.postern.test\", ca = \"local\" }"),
        "the error says what to write: {e}"
    );
    assert_eq!(
        e.line,
        Some(line_of(
            &d,
            "organisations.toml",
            "{ san = \"riverside-youth"
        ))
    );
    let e = find(
        &errors,
        "organisations.toml",
        "`westshire` is not one of tls.client_cas",
    );
    assert_eq!(
        e.line,
        Some(line_of(&d, "organisations.toml", "ca = \"westshire\""))
    );
    assert_eq!(errors.len(), 2, "{errors:?}");

    // The CA may also be named by its certificate's SHA-256, as `pki show` prints it.
    let ca_der = postern_gateway::pki::read_certs(&d.ca_path()).expect("ca")[0].clone();
    let ca_fp = postern_gateway::pki::fingerprint(&ca_der).to_string();
    replace(
        &d,
        "organisations.toml",
        "{ san = \"riverside-youth.clients.postern.test\" }",
        &format!("{{ san = \"riverside-youth.clients.postern.test\", ca = \"{ca_fp}\" }}"),
    );
    replace(
        &d,
        "organisations.toml",
        "ca = \"westshire\"",
        "ca = \"local\"",
    );
    // A generic name: valid, with a warning at its line.
    replace(
        &d,
        "peers.toml",
        "{ san = \"northshire-gateway.peers.postern.test\", ca = \"local\" }",
        "{ san = \"localhost\", ca = \"local\" }",
    );
    let ok = postern(&["check-config", "--config", dir]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let line = line_of(&d, "peers.toml", "san = \"localhost\"");
    assert!(
        stdout.lines().any(|l| l.starts_with("warning: ")
            && l.contains(&format!("peers.toml:{line}:"))
            && l.contains("`localhost`")),
        "{stdout}"
    );
}

/// `tls.client_cas` names each CA; a bare path is named after its file, and two CAs of the same
/// name are refused with the form to use.
#[test]
fn client_cas_are_named_once_each() {
    let d = Deployment::with_daemon(
        "[tls]\nclient_cas = [\"${state_dir}/pki/ca.crt\", { name = \"ca\", file = \"${state_dir}/pki/ca.crt\" }, { name = \"Bad Name\", file = \"${state_dir}/pki/ca.crt\" }]\n",
    );
    let errors = load_errors(&d, HashMap::new());
    find(&errors, "postern.toml", "the name `ca` is used twice");
    find(&errors, "postern.toml", "`Bad Name` cannot name a CA");
}

/// `local` names this gateway's own deliveries into its inbox: a peer may not take it as its id.
#[test]
fn a_peer_may_not_be_called_local() {
    let d = Deployment::new();
    std::fs::write(
        d.config_dir.join("peers.toml"),
        "[[peer]]\nid = \"local\"\nname = \"Westshire gateway\"\nidentities = [{ san = \"gateway.westshire.example\", ca = \"local\" }]\nsenders = [\"northshire-cc\"]\n",
    )
    .expect("write");
    let errors = load_errors(&d, HashMap::new());
    let e = find(&errors, "peers.toml", "`local` is reserved");
    assert_eq!(e.line, Some(line_of(&d, "peers.toml", "id = \"local\"")));
}

/// `people.toml`: each mistake is reported with its file and line, with the rest; `[web]`
/// settings and an organisation's `sign_in` are checked too.
#[test]
fn people_and_the_web_settings_are_checked_with_file_and_line() {
    let d = Deployment::with_daemon(
        "[web]\nlisten = \"nowhere\"\npublic_url = \"http://plain.example\"\nsession_idle_secs = 0\n",
    );
    replace(
        &d,
        "people.toml",
        "email = \"sam@riverside-youth.example\"",
        "email = \"sam-at-riverside\"",
    );
    replace(
        &d,
        "people.toml",
        "organisation = \"northshire-mash\"",
        "organisation = \"nowhere-org\"",
    );
    replace(
        &d,
        "people.toml",
        "roles = [\"share\"]",
        "roles = [\"superuser\"]",
    );
    replace(
        &d,
        "organisations.toml",
        "sign_in = \"passkey\"",
        "sign_in = \"fingerprint\"",
    );
    replace(
        &d,
        "organisations.toml",
        "dpo = { name = \"Tom Reed\"",
        "dpo = { name = \" \"",
    );
    let errors = load_errors(&d, HashMap::new());
    let e = find(
        &errors,
        "organisations.toml",
        "`dpo` needs a `name` and a `contact`",
    );
    assert_eq!(
        e.line,
        Some(line_of(&d, "organisations.toml", "dpo = { name = \" \""))
    );
    let e = find(
        &errors,
        "organisations.toml",
        "`fingerprint` is not a way to sign in; use code",
    );
    assert_eq!(
        e.line,
        Some(line_of(
            &d,
            "organisations.toml",
            "sign_in = \"fingerprint\""
        ))
    );
    let e = find(&errors, "people.toml", "not an email address");
    assert_eq!(e.line, Some(line_of(&d, "people.toml", "sam-at-riverside")));
    let e = find(
        &errors,
        "people.toml",
        "`nowhere-org` is not an organisation",
    );
    assert_eq!(e.line, Some(line_of(&d, "people.toml", "nowhere-org")));
    let e = find(&errors, "people.toml", "`superuser` is not a role");
    assert_eq!(e.line, Some(line_of(&d, "people.toml", "\"superuser\"")));
    find(&errors, "postern.toml", "127.0.0.1:8444");
    find(&errors, "postern.toml", "not an https:// address");
    let e = find(&errors, "postern.toml", "out of range (1 to 86400)");
    assert_eq!(e.key.as_deref(), Some("web.session_idle_secs"));
}

/// Requests for information are counted in working days against a calendar of bank holidays:
/// the built-in England and Wales list, or a file `requests.calendar` names, read with its
/// errors' lines like any other file; `check-config` says which, and until when.
#[test]
fn the_request_calendar_is_built_in_or_the_file_named() {
    use postern_gateway::domain::calendar::Calendar;
    use time::macros::date;

    let d = Deployment::new();
    let dir = d.config_dir.to_str().expect("utf8");
    let ok = postern(&["check-config", "--config", dir]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("due 15 working days after the day received (urgent: 24 hours); bank holidays: England and Wales, listed until 2028-12-31"),
        "{out}"
    );
    let built_in: Calendar = d.load().daemon.requests.calendar;
    // Received on the Thursday before Christmas 2026: Christmas, the substitute Boxing Day and
    // New Year's Day are skipped.
    assert_eq!(
        built_in.working_days_after(date!(2026 - 12 - 24), 15).date,
        date!(2027 - 01 - 19)
    );

    // A calendar of one's own, and its mistakes reported at their lines.
    std::fs::write(
        d.config_dir.join("calendar.toml"),
        "name = \"Test shire\"\n[[holiday]]\ndate = \"2027-02-01\"\nname = \"Shire day\"\n[[holiday]]\ndate = \"2027-02-30\"\nname = \"No such day\"\n",
    )
    .expect("write");
    let d2 = Deployment::with_daemon(&format!(
        "\n[requests]\ncalendar = \"{}\"\nanswer_within_working_days = 10\n",
        d.config_dir.join("calendar.toml").display()
    ));
    let dir2 = d2.config_dir.to_str().expect("utf8");
    let bad = postern(&["check-config", "--config", dir2]);
    assert_eq!(bad.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("calendar.toml:6:"), "{stderr}");
    assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");

    replace(
        &d,
        "calendar.toml",
        "date = \"2027-02-30\"\nname = \"No such day\"",
        "date = \"2027-03-01\"\nname = \"Another\"",
    );
    let ok = postern(&["check-config", "--config", dir2]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("due 10 working days"), "{out}");
    assert!(
        out.contains("bank holidays: Test shire, listed until 2027-12-31"),
        "{out}"
    );
    assert!(
        out.contains("warning: the calendar of bank holidays ends within four months")
            == (time::OffsetDateTime::now_utc().date() > date!(2027 - 09 - 01)),
        "{out}"
    );
}
