//! `postern demo` on a fresh state directory: it starts, and the commands it prints do what it
//! says they do (one accepted and delivered to the MASH's inbox, where it is listed, decrypted
//! and acknowledged; one refused; the log shows both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_demo_starts_and_its_printed_commands_work() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("demo-state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["demo", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        // Health and metrics and the web pages on free ports too, so tests can run side by side.
        .args(["--ops-listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.contains("Ctrl-C stops");
        banner.push(line);
        if done {
            break;
        }
    }
    let commands: Vec<&String> = banner
        .iter()
        .filter(|l| {
            l.starts_with("  ")
                && (l.contains(" send ") || l.contains(" log list") || l.starts_with("  curl "))
        })
        .collect();
    assert_eq!(commands.len(), 4, "banner:\n{}", banner.join("\n"));
    let run = |cmd: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd.trim())
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("sh")
    };

    let accepted = run(commands[0]);
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let id = String::from_utf8_lossy(&accepted.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "prints the transfer id: {id}");

    // `send --wait` returned once it was delivered, so the MASH's inbox has it: list, get (and
    // decrypt with the MASH's key), acknowledge, exactly as printed.
    let inbox: Vec<&String> = banner
        .iter()
        .filter(|l| l.starts_with("  ") && l.contains(" inbox "))
        .collect();
    assert_eq!(inbox.len(), 3, "banner:\n{}", banner.join("\n"));
    let listed = run(inbox[0]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    let line = listing
        .lines()
        .find(|l| l.contains("safeguarding-referral"))
        .unwrap_or_else(|| panic!("the referral is listed: {listing}"));
    assert!(line.contains("riverside-youth"), "{line}");
    let item = line.split_whitespace().next().expect("item id").to_owned();
    let got = run(&inbox[1].replace("ITEM-ID", &item));
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let files: Vec<String> = String::from_utf8_lossy(&got.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        files.len(),
        2,
        "prints the envelope and payload paths: {files:?}"
    );
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("envelope")).expect("JSON");
    assert_eq!(envelope["transfer_id"], id.as_str());
    assert_eq!(envelope["sender"], "riverside-youth");
    let payload_arg = commands[0]
        .split_whitespace()
        .last()
        .expect("payload path")
        .trim_matches('\'');
    assert_eq!(
        std::fs::read(&files[1]).expect("decrypted"),
        std::fs::read(payload_arg).expect("sent"),
        "what the MASH decrypts is what the club sent"
    );
    let acked = run(&inbox[2].replace("ITEM-ID", &item));
    assert_eq!(
        acked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&acked.stderr)
    );
    let after = run(inbox[0]);
    assert!(
        !String::from_utf8_lossy(&after.stdout).contains(&item),
        "an acknowledged item is no longer waiting"
    );
    // The decrypted files went outside the gateway's state directory.
    assert!(
        files
            .iter()
            .all(|f| !std::path::Path::new(f).starts_with(&state)),
        "{files:?}"
    );
    // Fetched again after the acknowledgement: said in words, and nothing is written.
    let again_dir = dir.path().join("again");
    let get = inbox[1].replace("ITEM-ID", &item);
    let (out_flag, _) = get.split_once(" --out ").expect("--out");
    let again = run(&format!("{out_flag} --out {} {item}", again_dir.display()));
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.starts_with("Already acknowledged on "), "{said}");
    assert!(
        !again_dir.exists() || std::fs::read_dir(&again_dir).expect("dir").next().is_none(),
        "nothing partial was left"
    );

    // A sender may name its file anything, "payload.age" too: decrypting never overwrites the
    // sealed payload it reads. A wrong key leaves the two sealed files whole and nothing else.
    let named = run(&format!("{} --file-name payload.age", commands[0].trim()));
    assert_eq!(
        named.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&named.stderr)
    );
    let listing = String::from_utf8_lossy(&run(inbox[0]).stdout).into_owned();
    let item2 = listing
        .lines()
        .find(|l| l.contains("safeguarding-referral"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the second referral is listed")
        .to_owned();
    let (get_base, _) = inbox[1].split_once(" --out ").expect("--out");
    let wrong_dir = dir.path().join("wrong-key");
    let wrong = run(&format!(
        "{} --out {} {item2}",
        get_base.replace("northshire-mash.age", "riverside-youth.age"),
        wrong_dir.display()
    ));
    assert_ne!(wrong.status.code(), Some(0));
    let mut left: Vec<String> = std::fs::read_dir(&wrong_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left[0].ends_with("-envelope.json.age") && left[1].ends_with("-payload.age"),
        "{left:?}"
    );
    let named_dir = dir.path().join("named");
    let got = run(&format!("{get_base} --out {} {item2}", named_dir.display()));
    assert_eq!(
        got.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let printed = String::from_utf8_lossy(&got.stdout).into_owned();
    let plain = printed.lines().nth(1).expect("the payload's path");
    assert!(plain.ends_with("-file-payload.age"), "{plain}");
    assert_eq!(
        std::fs::read(plain).expect("decrypted"),
        std::fs::read(payload_arg).expect("sent")
    );

    // A second demo on the first one's API port: it says so once, and which flag moves it.
    let url = banner
        .iter()
        .find_map(|l| l.strip_prefix("Postern demo gateway: https://"))
        .expect("the banner names the API address")
        .to_owned();
    let second = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["demo", "--listen", &url, "--ops-listen", "127.0.0.1:0"])
        .args(["--web-listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path().join("second-state"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("a second demo");
    assert_eq!(second.status.code(), Some(69));
    let said = String::from_utf8_lossy(&second.stderr);
    let line = said
        .lines()
        .find(|l| l.starts_with("postern: cannot listen on"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.contains("(api.listen)")
            && line.contains("--listen")
            && line.matches("in use").count() == 1,
        "{line}"
    );

    let refused = run(commands[1]);
    assert_eq!(refused.status.code(), Some(77));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("statutory_only_sender") && why.contains("statutory bodies"),
        "{why}"
    );

    let log = run(commands[2]);
    let table = String::from_utf8_lossy(&log.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&id) && l.contains(" shared ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(" refused ") && l.contains("statutory_only_sender")),
        "{table}"
    );

    // curl is not part of the toolchain; CI installs it, a bare machine may not have it.
    if Command::new("curl").arg("--version").output().is_ok() {
        let out = run(commands[3]);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            body.contains("\"status\":\"accepted\""),
            "curl: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("curl not installed: the curl command was not exercised");
    }
    // An email recipient (the council): with no relay configured, the demo writes the exact
    // message to its outbox folder.
    let to_council = run(&commands[0].replace("--to northshire-mash", "--to northshire-cc"));
    assert_eq!(
        to_council.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&to_council.stderr)
    );
    let council_id = String::from_utf8_lossy(&to_council.stdout)
        .trim()
        .to_owned();
    let eml = state
        .join("outbox")
        .join(format!("{council_id}-northshire-cc.eml"));
    let message = std::fs::read(&eml).expect("the message is in the outbox once delivered");
    let parsed = mail_parser::MessageParser::default()
        .parse(&message)
        .expect("MIME");
    assert!(
        parsed
            .subject()
            .is_some_and(|s| s.starts_with("OFFICIAL-SENSITIVE PERSONAL: secure transfer")),
        "{:?}",
        parsed.subject()
    );
    assert_eq!(parsed.attachment_count(), 2, "sealed envelope and payload");

    // The health and metrics listener the banner names answers plain HTTP, and counts what the
    // commands above did.
    let ops = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("health, metrics"))
        .and_then(|l| l.trim().strip_prefix("http://"))
        .and_then(|l| l.split('/').next())
        .unwrap_or_else(|| panic!("banner names the ops listener:\n{}", banner.join("\n")))
        .to_owned();
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&ops).expect("connect to the ops listener");
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: {ops}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("read");
        answer
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics");
    let accepted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("postern_transfers_accepted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    // Two sends above, and the curl command when curl is installed: the log knows.
    let logged: i64 = rusqlite::Connection::open(state.join("postern.db"))
        .expect("db")
        .query_row(
            "SELECT COUNT(*) FROM log WHERE kind = 'transfer_accepted'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(logged >= 2);
    assert_eq!(
        accepted, logged as f64,
        "the counter matches the transfer log"
    );
    assert!(
        metrics.contains("postern_transfers_refused_total{reason=\"statutory_only_sender\"} 1"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(state.join("pki/ca.crt").exists() && state.join("keys/spool.age").exists());
}
