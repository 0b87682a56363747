//! A small SMTP server that keeps what it receives: the real SMTP protocol (the `mailin` crate's
//! session state machine) over tokio, with STARTTLS by rustls. The tests deliver to it, and the
//! load generator measures email delivery against it. Not part of the gateway's service.
//!
//! It can be told to offer no STARTTLS, to answer the first few messages with a temporary
//! failure, to reject every message, or to answer slowly (counting the messages waiting at
//! once), so that tests see the gateway's side of each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

/// One message as received.
#[derive(Debug, Clone, Default)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message (headers and body) as sent.
    pub data: Vec<u8>,
    /// Whether the message came over TLS.
    pub tls: bool,
}

#[derive(Clone, Default)]
pub struct SinkOptions {
    /// Offer STARTTLS with this configuration; `None`: plaintext only.
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// Answer this many messages with 451 (try again later) before accepting.
    pub fail_first: usize,
    /// Answer every message with 550.
    pub reject: bool,
    /// TLS from the first byte (with the `starttls` configuration) instead of STARTTLS.
    pub implicit: bool,
    /// Close the connection after each message accepted, without a word (as a relay with a
    /// limit of one message per connection may).
    pub one_message_per_connection: bool,
    /// Wait this long before answering each message's end (a slow relay), counting how many
    /// messages wait at once in [`SmtpSink::most_at_once`].
    pub hold: std::time::Duration,
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<ReceivedMail>>>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// The most messages that waited for their answer at once (see [`SinkOptions::hold`]).
    pub most_at_once: Arc<AtomicUsize>,
    stop: CancellationToken,
}

/// Messages waiting for their answer now, and the most there have been.
#[derive(Default)]
struct Held {
    now: AtomicUsize,
    most: Arc<AtomicUsize>,
}

impl SmtpSink {
    /// Starts serving on `listener`.
    pub fn start(listener: TcpListener, options: SinkOptions) -> std::io::Result<SmtpSink> {
        let addr = listener.local_addr()?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let failing = Arc::new(AtomicUsize::new(options.fail_first));
        let connections = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Held::default());
        let most_at_once = held.most.clone();
        let (msgs, token, count) = (messages.clone(), stop.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = token.cancelled() => break,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                count.fetch_add(1, Ordering::SeqCst);
                let (msgs, options, failing, held) =
                    (msgs.clone(), options.clone(), failing.clone(), held.clone());
                tokio::spawn(async move {
                    let _ = session(tcp, peer, options, failing, msgs, held).await;
                });
            }
        });
        Ok(SmtpSink {
            addr,
            messages,
            connections,
            most_at_once,
            stop,
        })
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Collector {
    current: ReceivedMail,
    tls: Arc<AtomicBool>,
    failing: Arc<AtomicUsize>,
    reject: bool,
    one_message: bool,
    /// Set when a message was refused: mailin stays in its DATA state after an error reply
    /// (it would read the next commands as message text), so the session ends there instead.
    hang_up: Arc<AtomicBool>,
    /// Set when a message has ended: its answer is held back (see [`SinkOptions::hold`]).
    ended: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl Handler for Collector {
    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, from: &str) -> Response {
        self.current = ReceivedMail {
            from: from.to_owned(),
            ..ReceivedMail::default()
        };
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        self.current.to.push(to.to_owned());
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.ended.store(true, Ordering::SeqCst);
        if self.reject {
            self.hang_up.store(true, Ordering::SeqCst);
            return Response::custom(550, "Message rejected by policy".to_owned());
        }
        if self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            self.hang_up.store(true, Ordering::SeqCst);
            return Response::custom(451, "Try again later".to_owned());
        }
        let mut mail = std::mem::take(&mut self.current);
        mail.tls = self.tls.load(Ordering::SeqCst);
        if let Ok(mut out) = self.out.lock() {
            out.push(mail);
        }
        if self.one_message {
            self.hang_up.store(true, Ordering::SeqCst);
        }
        mailin::response::OK
    }
}

async fn session(
    tcp: TcpStream,
    peer: SocketAddr,
    options: SinkOptions,
    failing: Arc<AtomicUsize>,
    out: Arc<Mutex<Vec<ReceivedMail>>>,
    held: Arc<Held>,
) -> std::io::Result<()> {
    let tls = Arc::new(AtomicBool::new(false));
    let hang_up = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let mut builder = SessionBuilder::new("postern-smtp-sink");
    if options.starttls.is_some() && !options.implicit {
        builder.enable_start_tls();
    }
    let mut session = builder.build(
        peer.ip(),
        Collector {
            current: ReceivedMail::default(),
            tls: tls.clone(),
            failing,
            reject: options.reject,
            one_message: options.one_message_per_connection,
            hang_up: hang_up.clone(),
            ended: ended.clone(),
            out,
        },
    );
    let mut stream: BufReader<Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>> =
        match (&options.starttls, options.implicit) {
            (Some(config), true) => {
                let tls_stream = TlsAcceptor::from(config.clone()).accept(tcp).await?;
                tls.store(true, Ordering::SeqCst);
                session.tls_active();
                BufReader::new(Either::Right(tls_stream))
            }
            _ => BufReader::new(Either::Left(tcp)),
        };
    stream
        .get_mut()
        .write_all(&session.greeting().buffer()?)
        .await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let response = session.process(&line);
        if ended.swap(false, Ordering::SeqCst) && !options.hold.is_zero() {
            let now = held.now.fetch_add(1, Ordering::SeqCst) + 1;
            held.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(options.hold).await;
            held.now.fetch_sub(1, Ordering::SeqCst);
        }
        match response.action {
            Action::NoReply => {}
            Action::Close => {
                stream.get_mut().write_all(&response.buffer()?).await?;
                return Ok(());
            }
            Action::Reply => {
                stream.get_mut().write_all(&response.buffer()?).await?;
                if hang_up.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
            Action::UpgradeTls => {
                stream.get_mut().write_all(&response.buffer()?).await?;
                let Some(config) = options.starttls.clone() else {
                    return Ok(());
                };
                let Either::Left(tcp) = stream.into_inner() else {
                    return Ok(());
                };
                let tls_stream = TlsAcceptor::from(config).accept(tcp).await?;
                stream = BufReader::new(Either::Right(tls_stream));
                tls.store(true, Ordering::SeqCst);
                session.tls_active();
            }
        }
    }
}

/// A TLS server configuration for the sink, from a certificate chain and key (PEM).
pub fn tls_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(crate::tls::PROTOCOLS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
}
