//! `postern demo` on a fresh state directory: it starts, and the commands it prints do what it
//! says they do (one accepted, one refused, the log shows both).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_demo_starts_and_its_printed_commands_work() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("demo-state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["demo", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
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
        table.contains(&id) && table.contains("transfer_accepted"),
        "{table}"
    );
    assert!(table.contains("refused: statutory_only_sender"), "{table}");

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
    let _ = child.kill();
    let _ = child.wait();
    assert!(state.join("pki/ca.crt").exists() && state.join("keys/spool.age").exists());
}
