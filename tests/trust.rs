//! Who may speak for whom: every identity belongs to the CA that issued it, and revocation or a
//! reload reaches connections that are already open. Real sockets, real TLS, certificates made
//! by the project's own PKI code, and `postern pki revoke` run as the real binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::Deployment;
use postern_gateway::client::{Connection, Identity};
use postern_gateway::pki::Ca;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// A second CA, trusted so that its gateway (`westshire-gateway`) can deliver here.
struct Westshire {
    ca: Ca,
    _dir: tempfile::TempDir,
}

impl Westshire {
    fn new() -> (Self, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::generate("Westshire CA").expect("ca");
        ca.save(dir.path()).expect("save");
        let file = dir.path().join("ca.crt");
        let tls = format!(
            "[tls]\nclient_cas = [{{ name = \"local\", file = \"${{state_dir}}/pki/ca.crt\" }}, {{ name = \"westshire\", file = \"{}\" }}]\n",
            file.display()
        );
        (Westshire { ca, _dir: dir }, tls)
    }
}

fn identity(ca: &Ca, name: &str) -> Identity {
    let issued = ca.issue_client(name, &[name.to_owned()]).expect("issue");
    Identity {
        chain: vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")],
        key: PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key"),
    }
}

/// What a GET answers with this identity on a new connection: the status and code, or `None`
/// when the TLS handshake refused it (in TLS 1.3 the client learns at its first request).
async fn try_get(
    d: &Deployment,
    addr: std::net::SocketAddr,
    id: &Identity,
    path: &str,
) -> Option<(u16, Value)> {
    let mut c = d.connect_with(addr, Some(id)).await.ok()?;
    let a = c.get(path).await.ok()?;
    Some((a.status, common::json(&a)["code"].clone()))
}

const NO_SUCH_TRANSFER: &str = "/v1/transfers/0193a7c4-5e2f-7b3a-9c1d-2f4e6a8b0c1d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_trusted_ca_cannot_speak_for_this_gateways_organisations_or_peers() {
    let (westshire, tls) = Westshire::new();
    let d = Deployment::with_daemon(&tls);
    std::fs::write(
        d.config_dir.join("peers.toml"),
        format!(
            "{}\n[[peer]]\nid = \"westshire-gateway\"\nname = \"Westshire gateway\"\nidentities = [{{ san = \"gateway.westshire.example\", ca = \"westshire\" }}]\nsenders = [\"westshire-cc\"]\n",
            include_str!("../config/demo/peers.toml")
        ),
    )
    .expect("write");
    let server = d.start().await;
    let local = d.ca();

    // The westshire CA issuing this gateway's names: the council's, and the demo peer's.
    for name in [
        "northshire-cc.clients.postern.test",
        postern_gateway::devkit::DEMO_PEER_NAME,
        "localhost",
    ] {
        let forged = identity(&westshire.ca, name);
        assert_eq!(
            try_get(&d, server.addr, &forged, NO_SUCH_TRANSFER).await,
            None,
            "a certificate for `{name}` from the westshire CA is refused at the handshake"
        );
    }
    // ... and the local CA issuing the westshire peer's name.
    let forged = identity(&local, "gateway.westshire.example");
    assert_eq!(
        try_get(&d, server.addr, &forged, "/v1/inbox").await,
        None,
        "the peer's name from the local CA is refused"
    );

    // The real ones still work: the council from the local CA, the peer from its own CA.
    let council = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    assert_eq!(
        try_get(&d, server.addr, &council, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found")))
    );
    let peer = identity(&westshire.ca, "gateway.westshire.example");
    assert_eq!(
        try_get(&d, server.addr, &peer, "/v1/inbox").await,
        Some((403, json!("not_an_organisation"))),
        "authenticated, as the peer it is"
    );
    server.stop().await;
}

fn postern(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("POSTERN_LOG")
        .output()
        .expect("run postern")
}

fn revoke(pki: &Path, org: &str) -> String {
    let cert = pki.join("clients").join(format!("{org}.crt"));
    let out = postern(&[
        "pki",
        "revoke",
        "--dir",
        pki.to_str().expect("utf8"),
        "--cert",
        cert.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn get(c: &mut Connection, path: &str) -> Option<(u16, Value)> {
    let a = c.get(path).await.ok()?;
    Some((a.status, common::json(&a)["code"].clone()))
}

/// `postern pki revoke` writes the list the gateway reads; after a reload, a connection that
/// was opened before the revocation and kept alive is refused at its next request, and a new
/// one fails its handshake. Other organisations are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_connections_already_open() {
    let d = Deployment::new();
    let (server, reloader) = d.start_reloadable().await;
    let mut council = d.connect(server.addr, "northshire-cc").await;
    let mut police = d.connect(server.addr, "northshire-police").await;
    assert_eq!(
        get(&mut council, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found")))
    );

    let pki = d.state_dir.join("pki");
    let said = revoke(&pki, "northshire-cc");
    assert!(
        said.contains("list number 1, 1 certificate(s) revoked"),
        "{said}"
    );
    let mut toml = std::fs::read_to_string(d.config_dir.join("postern.toml")).expect("read");
    toml.push_str("\n[tls]\nclient_crls = [\"${state_dir}/pki/crl.pem\"]\n");
    std::fs::write(d.config_dir.join("postern.toml"), toml).expect("write");
    let reloaded = reloader.reload(&d.load_options()).await.expect("reload");
    assert_eq!((reloaded.client_crls, reloaded.revoked), (1, 1));

    assert_eq!(
        get(&mut council, NO_SUCH_TRANSFER).await,
        Some((401, json!("certificate_no_longer_accepted"))),
        "the kept-alive connection is refused at its next request"
    );
    assert_eq!(
        get(&mut council, NO_SUCH_TRANSFER).await,
        None,
        "and closed after that answer"
    );
    let revoked = Identity::from_pem_file(&d.identity_path("northshire-cc")).expect("id");
    assert_eq!(
        try_get(&d, server.addr, &revoked, NO_SUCH_TRANSFER).await,
        None,
        "a new connection fails its handshake"
    );
    assert_eq!(
        get(&mut police, NO_SUCH_TRANSFER).await,
        Some((404, json!("transfer_not_found"))),
        "the police's open connection is not affected"
    );

    // A second revocation keeps the first: one complete list, numbered after the last.
    let said = revoke(&pki, "northshire-police");
    assert!(
        said.contains("list number 2, 2 certificate(s) revoked (1 new)"),
        "{said}"
    );
    reloader.reload(&d.load_options()).await.expect("reload");
    assert_eq!(
        get(&mut police, NO_SUCH_TRANSFER).await,
        Some((401, json!("certificate_no_longer_accepted")))
    );
    assert_eq!(
        try_get(&d, server.addr, &revoked, NO_SUCH_TRANSFER).await,
        None,
        "still revoked"
    );
    server.stop().await;
}

/// An identity removed by a reload stops working on connections already open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_removed_by_a_reload_reaches_connections_already_open() {
    let d = Deployment::new();
    let (server, reloader) = d.start_reloadable().await;
    let mut youth = d.connect(server.addr, "riverside-youth").await;
    assert_eq!(
        common::json(&youth.get("/v1/inbox").await.expect("inbox"))["items"],
        json!([])
    );
    d.rewrite(
        "organisations.toml",
        "{ san = \"riverside-youth.clients.postern.test\", ca = \"local\" }",
        "{ san = \"riverside-youth.clients.northshire.example\", ca = \"local\" }",
    );
    reloader.reload(&d.load_options()).await.expect("reload");
    assert_eq!(
        get(&mut youth, "/v1/inbox").await,
        Some((401, json!("certificate_no_longer_accepted")))
    );
    server.stop().await;
}
