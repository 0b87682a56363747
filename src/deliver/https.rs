//! Delivery by direct mutual TLS: an HTTPS POST of the meta, the sealed envelope and the
//! sealed payload (streamed) to the recipient's inbound endpoint, presenting this gateway's
//! client certificate and verifying the endpoint against the CA configured for it (never the
//! system roots). The endpoint answers with a receipt: its id and the SHA-256 of what it
//! received, which must match what was sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::failure::sentence;
use super::reseal::Resealed;
use super::{Cause, Outcome};
use crate::client::{self, Body, Part};
use crate::inbox::InboundMeta;
use crate::log::Receipt;

type HttpsClient = Client<client::Connector, Body>;

/// Pooled clients, one per endpoint CA file: connections are reused across deliveries. A reload
/// ([`HttpsChannel::reload`]) swaps the identity presented to peers and empties the pool, so the
/// next attempt reads its endpoint's CA file afresh and connects with the new identity; attempts
/// in flight finish on the connections they have.
pub struct HttpsChannel {
    state: Mutex<State>,
}

/// The identity and the clients built with it, replaced together.
struct State {
    identity: Arc<client::Identity>,
    clients: HashMap<String, HttpsClient>,
}

impl HttpsChannel {
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        HttpsChannel {
            state: Mutex::new(State {
                identity: Arc::new(client::Identity { chain, key }),
                clients: HashMap::new(),
            }),
        }
    }

    /// Presents `chain` and `key` from the next attempt on, and forgets every pooled client (and
    /// with them the endpoint CAs they were built with and their idle connections).
    pub fn reload(&self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) {
        let identity = Arc::new(client::Identity { chain, key });
        let old = {
            let mut state = self.lock();
            state.identity = identity;
            std::mem::take(&mut state.clients)
        };
        // Dropped outside the lock; clones held by attempts in flight live on until they finish.
        drop(old);
    }

    /// The state, even if a thread panicked holding the lock: both fields are replaced whole,
    /// so what it left is consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self, ca_file: &str) -> Result<HttpsClient, ClientSetupError> {
        let identity = {
            let state = self.lock();
            if let Some(c) = state.clients.get(ca_file) {
                return Ok(c.clone());
            }
            state.identity.clone()
        };
        // Built outside the lock (it reads the CA file).
        let built = build_client(ca_file, &identity)?;
        let mut state = self.lock();
        if Arc::ptr_eq(&state.identity, &identity) {
            // Another attempt may have built one meanwhile: keep the first, so that connections
            // are pooled in one place.
            Ok(state
                .clients
                .entry(ca_file.to_owned())
                .or_insert(built)
                .clone())
        } else {
            // Reloaded while this was being built: this attempt, which began before the reload,
            // uses it, but it is not kept for the next.
            Ok(built)
        }
    }

    pub async fn deliver(
        &self,
        url: &str,
        ca_file: &str,
        meta: &InboundMeta,
        envelope: Vec<u8>,
        payload: Resealed,
    ) -> Outcome {
        // Failures on this side (reading the endpoint's CA file, encoding, resealing) are
        // temporary: only the recipient's answer or a certificate that does not verify is
        // permanent.
        let client = match self.client(ca_file) {
            Ok(c) => c,
            Err(e) => return Outcome::temporary(Cause::Configuration, e.to_string()),
        };
        let meta_json = match serde_json::to_vec(meta) {
            Ok(j) => j,
            Err(e) => {
                return Outcome::temporary(
                    Cause::Compose,
                    format!("cannot encode the delivery: {e}"),
                );
            }
        };
        let (stream, done) = payload.into_stream();
        let part = |name: &'static str, content_type: &str| Part {
            name,
            file_name: None,
            content_type: content_type.into(),
        };
        let m = client::multipart(
            vec![
                (part("meta", "application/json"), Bytes::from(meta_json)),
                (
                    part("envelope", "application/octet-stream"),
                    Bytes::from(envelope),
                ),
            ],
            part("payload", "application/octet-stream"),
            stream,
            None,
        );
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                return Outcome::temporary(
                    Cause::Compose,
                    format!("cannot build the request: {e}"),
                );
            }
        };
        let request = match hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, m.content_type)
            .body(m.body)
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::temporary(
                    Cause::Configuration,
                    format!("bad endpoint URL `{url}`: {e}"),
                );
            }
        };
        let response = match client.request(request).await {
            Ok(r) => r,
            Err(e) => return classify_error(&e),
        };
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return Outcome::temporary(
                    Cause::Unreachable,
                    format!("HTTP {status}, then the answer was cut off: {e}"),
                );
            }
        };
        let detail = |b: &Bytes| {
            serde_json::from_slice::<serde_json::Value>(b)
                .ok()
                .and_then(|v| {
                    v.get("code")
                        .and_then(|c| c.as_str())
                        .map(|c| format!(" ({c})"))
                })
                .unwrap_or_default()
        };
        let summary = match done.await {
            Ok(Ok(s)) => s,
            // The endpoint answered before it had read the whole payload (it refused the
            // delivery early, or failed), so resealing stopped for want of a reader: the answer
            // is the verdict. Otherwise resealing failed on this side, which is temporary.
            Ok(Err(_)) | Err(_) if !(200..300).contains(&status) => {
                return answer_outcome(status, &detail(&body));
            }
            Ok(Err(e)) => {
                return Outcome::temporary(
                    Cause::Reseal,
                    format!("the spooled payload could not be resealed: {e}"),
                );
            }
            Err(e) => return Outcome::temporary(Cause::Reseal, format!("resealing stopped: {e}")),
        };
        match status {
            200 | 201 => match serde_json::from_slice::<Receipt>(&body) {
                Ok(receipt) if receipt.sha256 == hex::encode(summary.sealed_sha256) => {
                    Outcome::Delivered {
                        receipt,
                        detail: format!("HTTP {status}"),
                    }
                }
                Ok(receipt) => Outcome::temporary(
                    Cause::ReceiptMismatch,
                    format!(
                        "HTTP {status}, but the receipt's digest {} does not match what was sent",
                        receipt.sha256
                    ),
                ),
                Err(e) => Outcome::temporary(
                    Cause::ReceiptMismatch,
                    format!("HTTP {status} without a valid receipt: {e}"),
                ),
            },
            _ => answer_outcome(status, &detail(&body)),
        }
    }
}

/// What an answer other than a receipt means: a 4xx (but 408 and 429) is the recipient's
/// verdict on the delivery, permanent; anything else may change.
fn answer_outcome(status: u16, detail: &str) -> Outcome {
    match status {
        408 | 429 => Outcome::temporary(Cause::RecipientRefused, format!("HTTP {status}{detail}")),
        400..=499 => Outcome::permanent(Cause::RecipientRefused, format!("HTTP {status}{detail}")),
        _ => Outcome::temporary(Cause::RecipientRefused, format!("HTTP {status}{detail}")),
    }
}

/// Why no client could be made for an endpoint (this gateway's side: retried after a reload).
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error("the endpoint's CA: {0}")]
    Ca(#[source] crate::pki::PkiError),
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

/// A client presenting `identity` and verifying endpoints against the CA in `ca_file`.
fn build_client(
    ca_file: &str,
    identity: &client::Identity,
) -> Result<HttpsClient, ClientSetupError> {
    let roots =
        crate::pki::read_certs(std::path::Path::new(ca_file)).map_err(ClientSetupError::Ca)?;
    let config = client::tls_config(&roots, Some(identity))?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build(client::Connector::new(Arc::new(config))))
}

/// Connection-level failures are temporary (the peer may come back), except certificate
/// failures: a certificate that does not verify will not start verifying on its own.
fn classify_error(e: &hyper_util::client::legacy::Error) -> Outcome {
    match crate::tls::find_tls_error(e) {
        Some(tls) => tls_outcome(tls),
        None => Outcome::temporary(
            Cause::Unreachable,
            match crate::tls::find_io_error(e) {
                Some(io) => crate::tls::io_in_words(io, "the endpoint"),
                None => format!("could not deliver: {}", sentence(e)),
            },
        ),
    }
}

fn tls_outcome(tls: &rustls::Error) -> Outcome {
    use rustls::AlertDescription as A;
    match tls {
        // Our verification of the endpoint failed, or the endpoint refused our certificate.
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
            | A::AccessDenied
            // What rustls sends when a certificate's signature does not verify.
            | A::DecryptError,
        ) => Outcome::permanent(
            Cause::TlsCertificate,
            crate::tls::in_words(tls, "the endpoint"),
        ),
        other => Outcome::temporary(Cause::Tls, crate::tls::in_words(other, "the endpoint")),
    }
}
