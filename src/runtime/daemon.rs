//! Assembles a running gateway from a loaded configuration: open the store (sweeping orphans),
//! build TLS, bind the listener, then serve until shutdown. Used by `postern serve` and
//! `postern demo`, and by the integration tests.
//!
//! As a service ([`Prepared::run_service`]) it also answers signals and tells systemd what it is
//! doing: READY=1 once the store is open and the listener bound, SIGHUP reloads the configuration
//! (RELOADING=1, then READY=1 whether the new one was taken or refused), SIGTERM or SIGINT stops
//! it (STOPPING=1, then the drain below), and WATCHDOG=1 keeps-alive when systemd asks for them.
//!
//! A reload ([`Reloader`]) loads and validates the whole configuration as at start-up, then
//! swaps in what can change while running: the registry, the API listener's TLS configuration
//! (certificate, key, client CAs and CRLs) and the identity the delivery worker presents to peer
//! gateways (`tls.client_certificate`, or the server certificate), whose next attempts also read
//! their endpoints' CA files afresh. Requests, uploads and deliveries in progress keep the
//! snapshot they started with. A configuration with any error is refused and the one in force
//! stays. Settings only a restart can change are compared and logged, never half-applied.
//!
//! Alongside the listener and the delivery worker runs the transfer log's upkeep: a signed
//! checkpoint of the chain every `log.checkpoint_interval_secs`, and the retention purge (and the
//! thinning of old checkpoints) at start-up and daily. At shutdown, once requests and delivery
//! attempts in flight have finished, a last checkpoint signs everything they recorded.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use crate::config::daemon::{LogSettings, TlsFiles};
use crate::config::{Config, ConfigErrors, Daemon, LoadOptions, SmtpSettings, TlsMaterial};
use crate::deliver::{self, Deliverer};
use crate::domain::registry::Registry;
use crate::domain::subject::{SubjectKey, SubjectRef};
use crate::ingest::{self, App, ListenerTls};
use crate::live::Live;
use crate::seal::SpoolKey;
use crate::store::checkpoint::{self, CheckpointKey, KeyError, Purge};
use crate::store::{Store, StoreError};
use crate::tls::server as tls;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        addr: SocketAddr,
        /// The setting that named the address: api.listen, ops.listen or web.listen.
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("delivery: {0}")]
    Delivery(#[from] crate::deliver::email::EmailSetupError),
    #[error("log.checkpoint_key: {0}")]
    CheckpointKey(#[from] KeyError),
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The transfer log's head is not one this gateway signed: it will not sign what it did not
    /// write. The message says what was found and what to do.
    #[error("{0}")]
    LogHead(String),
}

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration has {} error(s)", .0.0.len())]
    Config(#[source] ConfigErrors),
    #[error("the new TLS configuration cannot be used: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("the configuration could not be read: {0}")]
    Read(String),
}

/// A gateway that has opened its store and bound its listener, ready to serve.
pub struct Prepared {
    pub addr: SocketAddr,
    /// The health and metrics listener's address, when there is one.
    pub ops_addr: Option<SocketAddr>,
    listener: TcpListener,
    ops_listener: Option<TcpListener>,
    /// The people's pages' listener and state, when `web.listen` is set.
    web: Option<(TcpListener, Arc<crate::web::WebApp>)>,
    /// The pages' address, when there are pages.
    pub web_addr: Option<std::net::SocketAddr>,
    /// The pages' address as people reach them (`web.public_url`, or the listener's).
    pub web_url: Option<String>,
    tls: ListenerTls,
    app: Arc<App>,
    deliverer: Arc<Deliverer>,
    wake: deliver::Wake,
    upkeep: Upkeep,
    reloader: Reloader,
}

/// This node's part in a shared store: the database's pool, and the node's name.
#[derive(Clone)]
struct Shared {
    pool: crate::store::pg::Pool,
    node: String,
    /// The last checkpoint this node signed, checked before the next.
    signed: Arc<std::sync::Mutex<Option<LastSigned>>>,
}

/// A checkpoint's seq and the hash it signed.
type LastSigned = (i64, [u8; 32]);

/// Opens the store `[store]` names: the state directory's SQLite (sweeping orphaned spool
/// files), or this node's handle on the shared PostgreSQL (which must be reachable and hold the
/// schema: `postern store migrate`).
async fn open_store(
    daemon: &Daemon,
    material: Option<crate::config::daemon::PostgresMaterial>,
) -> Result<(Store, crate::store::SweepReport, Option<Shared>), DaemonError> {
    use crate::config::store::StoreSettings;
    match (&daemon.store, material) {
        (StoreSettings::Postgres(pg), Some(m)) => {
            let pool = crate::store::pg::Pool::new(&crate::store::pg::Target {
                url: pg.url.clone(),
                roots: m.roots,
                password: m.password,
                pool_size: pg.pool_size,
            })
            .map_err(StoreError::from)?;
            let store = Store::open_shared(&daemon.state_dir, pool.clone(), &pg.node).await?;
            tracing::info!(
                database = %pool.target(),
                node = %pg.node,
                "the store is the shared PostgreSQL database"
            );
            let shared = Shared {
                pool,
                node: pg.node.clone(),
                signed: Arc::default(),
            };
            Ok((store, crate::store::SweepReport::default(), Some(shared)))
        }
        (StoreSettings::Postgres(_), None) => Err(DaemonError::Store(StoreError::Pg(
            crate::store::pg::PgError::Config(
                "the database's CA and password were not read".into(),
            ),
        ))),
        (StoreSettings::Sqlite, _) => {
            let (store, sweep) = Store::open(&daemon.state_dir)?;
            Ok((store, sweep, None))
        }
    }
}

/// Opens the store and binds the listener (in that order: nothing is accepted before the
/// spool has been swept).
pub async fn prepare(config: Config) -> Result<Prepared, DaemonError> {
    let Config {
        daemon,
        registry,
        tls: material,
        spool_key,
        subject_key,
        postgres,
        warnings,
    } = config;
    log_warnings(&warnings);
    let keys = KeyPrints::of(&spool_key, &subject_key);
    let checkpoint_key = Arc::new(CheckpointKey::from_file(&daemon.log.checkpoint_key)?);
    let (store, sweep, shared) = open_store(&daemon, postgres).await?;
    let checkpoint_file = daemon
        .log
        .checkpoint_file
        .clone()
        .map(checkpoint::CheckpointFile::new);
    check_head(&store, &checkpoint_key, checkpoint_file.as_ref()).await?;
    if sweep.orphans_removed > 0 {
        tracing::info!(
            removed = sweep.orphans_removed,
            "removed spool files left by interrupted uploads"
        );
    }
    let registry = Live::new(registry);
    let tls = ListenerTls::new(&material, registry.clone())?;
    log_crls(&material, crate::clock::now());
    let listener = TcpListener::bind(daemon.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: daemon.listen,
            key: "api.listen",
            source,
        })?;
    let addr = listener.local_addr()?;
    let ops_listener = match daemon.ops_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|source| DaemonError::Bind {
                    addr: a,
                    key: "ops.listen",
                    source,
                })?,
        ),
        None => None,
    };
    let ops_addr = ops_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let wake = deliver::Wake::default();
    let spool_key = Arc::new(spool_key);
    let deliverer = Deliverer::new(
        store.clone(),
        registry.clone(),
        spool_key.clone(),
        daemon.delivery.clone(),
        &daemon.smtp,
        &material,
        addr.port(),
    )?;
    let app = Arc::new(App {
        registry,
        store: store.clone(),
        spool_key: spool_key.clone(),
        subject_key: Arc::new(subject_key),
        limits: daemon.limits.clone(),
        upload_memory: crate::ingest::UploadMemory::new(&daemon.limits),
        wake: wake.clone(),
        max_email_bytes: daemon.smtp.max_message_bytes,
        arrivals: Some(deliverer.arrivals.clone()),
        requests: Arc::new(daemon.requests.clone()),
    });
    tracing::info!(
        key = %checkpoint_key.public(),
        fingerprint = %checkpoint_key.public().fingerprint(),
        "transfer log checkpoints are signed with this key"
    );
    let reloads = crate::web::oversight::ReloadStatus::default();
    reloads.started();
    let web = match daemon.web.listen {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| DaemonError::Bind {
                    addr: a,
                    key: "web.listen",
                    source,
                })?;
            // Sign-in codes go out as deliveries do: the same relays, TLS required.
            let mail = Some(deliverer.email.clone());
            let bound = l.local_addr()?;
            let mut web = crate::web::WebApp::new(app.clone(), daemon.web.clone(), mail, bound);
            let source = match &shared {
                Some(s) => crate::store::LogSource::Shared(s.pool.clone()),
                None => crate::store::LogSource::Dir(daemon.state_dir.clone()),
            };
            web.oversight = Some(Arc::new(crate::web::oversight::Oversight::new(
                source,
                vec![*checkpoint_key.public()],
                daemon.log.checkpoint_file.clone(),
                reloads.clone(),
            )));
            Some((l, Arc::new(web)))
        }
        None => None,
    };
    let web_addr = web.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let web_url = web.as_ref().map(|(_, w)| w.address.clone());
    if let Some(url) = &web_url {
        deliverer.arrivals.set_web_url(url.clone());
    }
    let deliverer = Arc::new(deliverer);
    let reloader = Reloader(Arc::new(ReloaderInner {
        started: Started {
            keys,
            checkpoint: checkpoint_key.public().to_string(),
            daemon: daemon.clone(),
        },
        registry: app.registry.clone(),
        tls: tls.clone(),
        deliverer: deliverer.clone(),
        one_at_a_time: tokio::sync::Mutex::new(()),
        status: reloads,
    }));
    Ok(Prepared {
        addr,
        ops_addr,
        listener,
        ops_listener,
        web,
        web_addr,
        web_url,
        tls,
        app,
        deliverer,
        wake,
        upkeep: Upkeep {
            store,
            key: checkpoint_key,
            settings: daemon.log,
            file: checkpoint_file,
            shared,
        },
        reloader,
    })
}

impl Prepared {
    /// `postern demo` only: sign-in codes are also printed on the terminal.
    pub fn print_sign_in_codes(mut self) -> Self {
        if let Some((l, web)) = self.web.take() {
            let w = crate::web::WebApp {
                print_codes: true,
                ..web.as_ref().clone()
            };
            self.web = Some((l, Arc::new(w)));
        }
        self
    }

    /// Applies new configurations to this gateway while it runs (what SIGHUP does).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Serves until `shutdown` completes; in-flight requests finish first.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
        self.serve(shutdown, || {}).await
    }

    /// Serves as a system service until SIGTERM or SIGINT: SIGHUP reloads the configuration
    /// from `reload_from`, and systemd hears of each step (a no-op without NOTIFY_SOCKET).
    pub async fn run_service(self, reload_from: LoadOptions) -> Result<(), DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        // Before READY=1, so that no SIGHUP or SIGTERM systemd sends can find the default
        // action (which is to die) in place.
        let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let serving = format!("serving on {}", self.addr);
        let reloader = self.reloader();
        let stopping = CancellationToken::new();

        let watchdog = tokio::spawn(systemd::watchdog(self.upkeep.store.clone()));
        let shutdown = {
            let stopping = stopping.clone();
            async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                stopping.cancel();
                tracing::info!("shutting down: no new connections; finishing requests in flight");
                systemd::notify(&[
                    sd_notify::NotifyState::Stopping,
                    sd_notify::NotifyState::Status("stopping: finishing requests in flight"),
                ]);
            }
        };
        let reloads = {
            let (serving, stopping) = (serving.clone(), stopping.clone());
            async move {
                while hangup.recv().await.is_some() {
                    // Once stopping, systemd is told nothing more but that.
                    if stopping.is_cancelled() {
                        tracing::info!("SIGHUP ignored: the gateway is stopping");
                        continue;
                    }
                    systemd::reloading();
                    let outcome = match reloader.reload(&reload_from).await {
                        Ok(_) => format!(
                            "configuration reloaded at {}",
                            crate::clock::stamp(crate::clock::now())
                        ),
                        Err(e) => format!(
                            "last reload refused ({e}); the previous configuration is in force"
                        ),
                    };
                    systemd::ready(&format!("{serving}; {outcome}"));
                }
            }
        };
        let ready = || systemd::ready(&serving);
        let served = tokio::select! {
            biased;
            r = self.serve(shutdown, ready) => r,
            () = reloads => Ok(()),
        };
        watchdog.abort();
        served
    }

    /// The listener, the delivery worker and the log's upkeep, until `shutdown`; `ready` is
    /// called once everything is running.
    async fn serve(
        self,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(),
    ) -> Result<(), DaemonError> {
        let Prepared {
            listener,
            ops_listener,
            web,
            tls,
            app,
            deliverer,
            wake,
            upkeep,
            ..
        } = self;
        let stop = CancellationToken::new();
        // Health and metrics answer until the very end, so a supervisor sees the drain (/readyz
        // says 503 from its start).
        let ops_stop = CancellationToken::new();
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ops = ops_listener.map(|l| {
            let ops = Arc::new(
                crate::runtime::ops::Ops::new(
                    upkeep.store.clone(),
                    upkeep.store.spool_dir().to_path_buf(),
                )
                .with_reserve(app.limits.min_free_bytes)
                .with_draining(draining.clone())
                .with_requests(app.requests.clone()),
            );
            tokio::spawn(crate::runtime::ops::serve(
                l,
                ops,
                ops_stop.clone().cancelled_owned(),
            ))
        });
        let web_stop = CancellationToken::new();
        let web = web.map(|(l, w)| {
            tokio::spawn(crate::web::serve(
                l,
                tls.web.clone(),
                w,
                web_stop.clone().cancelled_owned(),
            ))
        });
        let worker = tokio::spawn(deliver::run(deliverer, wake, stop.clone()));
        let (store, key, file, shared, lease) = (
            upkeep.store.clone(),
            upkeep.key.clone(),
            upkeep.file.clone(),
            upkeep.shared.clone(),
            upkeep.lease(),
        );
        let upkeep = tokio::spawn(upkeep.run(stop.clone()));
        // The listener is bound (connections queue in its backlog) and the store is open.
        ready();
        let shutdown = async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let served = ingest::serve(listener, tls, app, shutdown).await;
        // The pages stop with the API: nothing is accepted after shutdown began.
        web_stop.cancel();
        if let Some(web) = web
            && let Ok(Err(e)) = web.await
        {
            tracing::warn!(error = %e, "the web listener failed");
        }
        // Attempts in flight finish (within their own timeout); what is still queued waits in
        // the spool for the next start.
        stop.cancel();
        if tokio::time::timeout(ingest::SHUTDOWN_GRACE, worker)
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery attempts did not finish within the grace period; they will be retried at the next start"
            );
        }
        // A purge under way finishes (its check of the records due, then its write job), so
        // that its anchor is published; nothing else is waited for.
        let _ = upkeep.await;
        // Last, so that it signs every record the requests and attempts above wrote; marked
        // as a clean shutdown's, which the next start compares the head with.
        match &shared {
            // One of several nodes: the signer signs what it can see, and gives the lease up
            // so that another node need not wait for it to lapse.
            Some(s) => {
                Upkeep::sign(&store, &key, Some(s), lease, file.as_ref()).await;
                if let Ok(client) = s.pool.get().await
                    && let Err(e) = crate::store::pg::lease::release(
                        &client,
                        s.pool.target(),
                        crate::store::pg::checkpoint::LEASE,
                        &s.node,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not give up the checkpoint signing lease; it lapses by itself");
                }
            }
            None => match checkpoint::shutdown_checkpoint(&store, key).await {
                Ok(Some(c)) => {
                    checkpoint::publish(file.as_ref(), &c);
                    tracing::info!(seq = c.seq, "signed the transfer log's head at shutdown");
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "could not sign the transfer log's head"),
            },
        }
        ops_stop.cancel();
        if let Some(ops) = ops
            && let Ok(Err(e)) = ops.await
        {
            tracing::warn!(error = %e, "the health and metrics listener failed");
        }
        served?;
        Ok(())
    }
}

/// What a reload took in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub organisations: usize,
    pub purposes: usize,
    pub agreements: usize,
    pub peers: usize,
    pub client_cas: usize,
    pub client_crls: usize,
    /// Certificates revoked by those lists.
    pub revoked: usize,
    /// Settings that differ from the ones in force but only a restart applies (they are ignored).
    pub needs_restart: Vec<&'static str>,
}

/// Applies new configurations to a running gateway. Clones share the gateway.
#[derive(Clone)]
pub struct Reloader(Arc<ReloaderInner>);

struct ReloaderInner {
    /// What the gateway started with, for the settings only a restart changes.
    started: Started,
    registry: Live<Registry>,
    tls: ListenerTls,
    /// Its HTTPS channel takes the new delivery identity (and forgets its endpoint CAs).
    deliverer: Arc<Deliverer>,
    /// Two SIGHUPs in quick succession reload twice, in order, never interleaved.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// What the IT team's status page shows.
    status: crate::web::oversight::ReloadStatus,
}

struct Started {
    daemon: Daemon,
    keys: KeyPrints,
    checkpoint: String,
}

/// Digests of the key material only a restart takes in, so a reload can say it changed without
/// keeping a second copy of any secret.
#[derive(Debug, PartialEq, Eq)]
struct KeyPrints {
    spool: String,
    subjects: String,
}

impl KeyPrints {
    fn of(spool: &SpoolKey, subjects: &SubjectKey) -> Self {
        // The keyed hash of a fixed reference changes with the key and reveals nothing of it.
        let subjects = SubjectRef::parse("postern:reload-probe")
            .map(|r| r.hash(subjects).as_str().to_owned())
            .unwrap_or_default();
        KeyPrints {
            spool: spool.recipient().to_string(),
            subjects,
        }
    }
}

impl Reloader {
    /// Loads the configuration `opts` names and applies it, logging the outcome: what was
    /// taken in, or every error (with its file and line) and that the old configuration stays.
    pub async fn reload(&self, opts: &LoadOptions) -> Result<Reloaded, ReloadError> {
        let _turn = self.0.one_at_a_time.lock().await;
        tracing::info!("reloading the configuration");
        let (opts, this) = (opts.clone(), self.clone());
        // Reading files and checking keys and signatures: kept off the async workers.
        let outcome = tokio::task::spawn_blocking(move || {
            this.apply(crate::config::load(&opts).map_err(ReloadError::Config)?)
        })
        .await
        .unwrap_or_else(|e| Err(ReloadError::Read(e.to_string())));
        let status = &self.0.status;
        match &outcome {
            Ok(r) => status.loaded("SIGHUP", &r.needs_restart),
            Err(ReloadError::Config(errors)) => {
                status.refused("SIGHUP", errors.0.iter().map(ToString::to_string).collect());
            }
            Err(e) => status.refused("SIGHUP", vec![e.to_string()]),
        }
        match &outcome {
            Ok(r) => {
                for setting in &r.needs_restart {
                    tracing::warn!(
                        setting,
                        "changed, but needs a restart; the running gateway keeps the value it started with"
                    );
                }
                tracing::info!(
                    organisations = r.organisations,
                    purposes = r.purposes,
                    agreements = r.agreements,
                    peers = r.peers,
                    client_cas = r.client_cas,
                    client_crls = r.client_crls,
                    revoked_certificates = r.revoked,
                    needs_restart = r.needs_restart.len(),
                    "configuration reloaded; new connections and requests use it"
                );
            }
            Err(ReloadError::Config(errors)) => {
                for e in &errors.0 {
                    tracing::error!("configuration error: {e}");
                }
                tracing::error!(
                    errors = errors.0.len(),
                    "configuration reload refused; the configuration in force is unchanged"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "configuration reload refused; the configuration in force is unchanged"
            ),
        }
        outcome
    }

    /// Applies a loaded configuration: the registry and the API listener's TLS are replaced
    /// (new connections and requests see them; those in progress keep their snapshot), the
    /// delivery worker presents the new client identity from its next attempt on (reading
    /// endpoint CA files afresh; attempts in flight finish on their own connections), and any
    /// setting only a restart can change is listed, not applied.
    pub fn apply(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let inner = &self.0;
        let Config {
            daemon,
            registry,
            tls: material,
            spool_key,
            subject_key,
            postgres: _,
            warnings,
        } = config;
        // Built before anything is replaced: if it fails, nothing has changed.
        let next = ListenerTls::prepare(&material, inner.registry.clone())?;
        log_warnings(&warnings);
        let mut needs_restart = restart_only_changes(&inner.started.daemon, &daemon);
        let (now, was) = (KeyPrints::of(&spool_key, &subject_key), &inner.started.keys);
        if now.spool != was.spool {
            needs_restart.push("spool.identity");
        }
        if now.subjects != was.subjects {
            needs_restart.push("subjects.key");
        }
        match CheckpointKey::from_file(&daemon.log.checkpoint_key) {
            Ok(k) if k.public().to_string() != inner.started.checkpoint => {
                needs_restart.push("log.checkpoint_key");
            }
            _ => {}
        }
        needs_restart.sort_unstable();
        needs_restart.dedup();
        log_crls(&material, crate::clock::now());
        let crls = || material.client_cas.iter().flat_map(|c| &c.crls);
        let reloaded = Reloaded {
            organisations: registry.organisations().count(),
            purposes: registry.purposes().count(),
            agreements: registry.agreements().len(),
            peers: registry.peers().count(),
            client_cas: material.client_cas.len(),
            client_crls: crls().count(),
            revoked: crls().map(|c| c.revoked).sum(),
            needs_restart,
        };
        // The registry first: the new TLS configuration's verifier reads the same Live
        // registry, so from here on both agree. Connections already open are authenticated
        // again on their next request, against both.
        inner.registry.replace(registry);
        inner.tls.replace(next);
        let TlsMaterial {
            client_chain,
            client_key,
            ..
        } = material;
        inner.deliverer.https.reload(client_chain, client_key);
        // A relay may have changed (its certificate, what it offers): new connections.
        inner.deliverer.email.drop_idle();
        Ok(reloaded)
    }
}

/// The settings that differ between `old` and `new` and that only a restart applies. Every
/// field is named, so a new setting cannot be added without deciding which kind it is.
fn restart_only_changes(old: &Daemon, new: &Daemon) -> Vec<&'static str> {
    let Daemon {
        state_dir,
        listen,
        ops_listen,
        tls,
        limits,
        spool_identity,
        subject_key,
        delivery,
        smtp,
        log,
        web,
        requests,
        store,
    } = old;
    // Applied by a reload: the API listener's certificate, key, client CAs and CRLs, and the
    // identity presented to peers when delivering.
    let TlsFiles {
        certificate: _,
        private_key: _,
        client_cas: _,
        client_crls: _,
        client_identity: _,
    } = tls;
    let mut changed = Vec::new();
    let mut check = |differs: bool, setting: &'static str| {
        if differs {
            changed.push(setting);
        }
    };
    check(*state_dir != new.state_dir, "state_dir");
    check(*listen != new.listen, "api.listen");
    check(*ops_listen != new.ops_listen, "ops.listen");
    check(*limits != new.limits, "limits");
    check(*web != new.web, "web");
    check(*requests != new.requests, "requests");
    check(*store != new.store, "store");
    check(*spool_identity != new.spool_identity, "spool.identity");
    check(*subject_key != new.subject_key, "subjects.key");
    check(*delivery != new.delivery, "delivery");
    check(!smtp_same(smtp, &new.smtp), "smtp");
    check(
        log.checkpoint_key != new.log.checkpoint_key,
        "log.checkpoint_key",
    );
    check(
        log.checkpoint_interval != new.log.checkpoint_interval
            || log.retain_days != new.log.retain_days
            || log.checkpoint_file != new.log.checkpoint_file,
        "log",
    );
    changed
}

fn smtp_same(a: &SmtpSettings, b: &SmtpSettings) -> bool {
    a.from == b.from
        && a.max_message_bytes == b.max_message_bytes
        && a.timeout == b.timeout
        && a.outbox_dir == b.outbox_dir
        && a.relays.len() == b.relays.len()
        && a.relays.iter().zip(&b.relays).all(|(x, y)| {
            x.host == y.host
                && x.port == y.port
                && x.tls == y.tls
                && x.ca == y.ca
                && x.username == y.username
                && x.password == y.password
        })
}

/// Logs what the configuration holds that is valid but weaker than it looks.
fn log_warnings(warnings: &[crate::config::ConfigError]) {
    for w in warnings {
        tracing::warn!("configuration warning: {w}");
    }
}

/// Logs the revocation lists in force, and warns of any past its nextUpdate: still used (the
/// alternative is refusing every client of that CA), but its publisher has fallen behind.
fn log_crls(material: &TlsMaterial, now: time::OffsetDateTime) {
    for crl in material.client_cas.iter().flat_map(|c| &c.crls) {
        tracing::info!(
            path = %crl.path.display(),
            ca = %crl.ca,
            issuer = %crl.issuer,
            revoked = crl.revoked,
            "client certificate revocation list in force"
        );
        if let Some(next) = crl.next_update.filter(|n| *n < now) {
            tracing::warn!(
                path = %crl.path.display(),
                issuer = %crl.issuer,
                next_update = %crate::clock::stamp(next),
                "the revocation list is past its nextUpdate; publish a fresh one and reload"
            );
        }
    }
}

/// systemd's notify protocol. Each call is a no-op when NOTIFY_SOCKET is unset (not run by
/// systemd as `Type=notify`).
mod systemd {
    use sd_notify::NotifyState;

    use crate::store::Store;

    pub fn notify(state: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }

    pub fn ready(status: &str) {
        notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// RELOADING=1 with the time it began, which `Type=notify-reload` needs and `notify` allows.
    pub fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(t) => notify(&[NotifyState::Reloading, t]),
            Err(_) => notify(&[NotifyState::Reloading]),
        }
    }

    /// Sends WATCHDOG=1 at half the interval systemd asked for (WATCHDOG_USEC), each time after
    /// the store has answered a query: a gateway whose runtime or database has stalled stops
    /// sending them, and systemd restarts it.
    pub async fn watchdog(store: Store) {
        let Some(interval) = sd_notify::watchdog_enabled() else {
            return;
        };
        let every = interval / 2;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probe = store.read(crate::store::probe);
            // At most a quarter of the interval, so keep-alives are never more than three
            // quarters of it apart.
            match tokio::time::timeout(every / 2, probe).await {
                Ok(Ok(_)) => notify(&[NotifyState::Watchdog]),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the store did not answer; no watchdog keep-alive")
                }
                Err(_) => {
                    tracing::warn!("the store took too long to answer; no watchdog keep-alive")
                }
            }
        }
    }
}

/// How often the retention purge and checkpoint thinning run.
const PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Refuses to start on a transfer log whose head this gateway did not sign: records added while
/// it was stopped, records deleted, or a record rewritten, since the last checkpoint it signed
/// (in the database or the checkpoint file). Records written after the last checkpoint before
/// an unclean stop are the gateway's own, and are signed at the next checkpoint, with a warning.
/// On a shared store the other nodes append while this one is stopped, so only records deleted
/// or rewritten stop it (a failover to a replica that had not received the last commits shows
/// here: the checkpoint file remembers what the database forgot).
async fn check_head(
    store: &Store,
    key: &Arc<CheckpointKey>,
    file: Option<&checkpoint::CheckpointFile>,
) -> Result<(), DaemonError> {
    use crate::log::verify::HeadState;
    let (public, file) = (*key.public(), file.cloned());
    let found = store
        .read(move |db| {
            // One snapshot: on a shared store a checkpoint signed between reading the head and
            // reading the checkpoints would look like records deleted.
            db.batch(match db.dialect() {
                crate::store::db::Dialect::Sqlite => "BEGIN",
                crate::store::db::Dialect::Postgres => {
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                }
            })?;
            let found = checkpoint::head_found(db, &public, file.as_ref());
            // Nothing was written: ending the read cannot lose anything.
            let _ = db.batch("ROLLBACK");
            found
        })
        .await?;
    let shared = store.node().is_some();
    match &found.state {
        HeadState::Signed => Ok(()),
        s if shared && s.may_start_shared() => Ok(()),
        s @ HeadState::AfterUncleanStop { .. } => {
            tracing::warn!(
                "the gateway did not stop cleanly last time: {}; they are signed at the next checkpoint",
                s.describe()
            );
            Ok(())
        }
        s => {
            tracing::error!(state = s.kind(), "{}", s.describe());
            Err(DaemonError::LogHead(format!(
                "refusing to start: {}. The gateway does not sign records it did not write. Run `postern log verify` to see what changed; if it is legitimate (a backup restored, say), accept it with `postern log accept-head --config DIR --reason \"...\"` (which records the acceptance in the log), then start the gateway.",
                s.describe()
            )))
        }
    }
}

/// The transfer log's upkeep: periodic checkpoints, the retention purge, checkpoint thinning.
struct Upkeep {
    store: Store,
    key: Arc<CheckpointKey>,
    settings: LogSettings,
    file: Option<checkpoint::CheckpointFile>,
    /// On a shared store, checkpoints are signed by one node at a time (the holder of the
    /// `checkpoints` lease), in the database.
    shared: Option<Shared>,
}

impl Upkeep {
    /// Signs the chain's head, if it moved since the last checkpoint (and, on a shared store,
    /// if this node holds the signing lease), and publishes the checkpoint.
    async fn sign(
        store: &Store,
        key: &Arc<CheckpointKey>,
        shared: Option<&Shared>,
        lease: Duration,
        file: Option<&checkpoint::CheckpointFile>,
    ) {
        let signed = match shared {
            None => checkpoint::checkpoint(store, key.clone()).await,
            Some(s) => {
                Self::check_signed(s).await;
                crate::store::pg::checkpoint::sign_head(
                    &s.pool,
                    key,
                    &s.node,
                    crate::clock::now(),
                    lease,
                )
                .await
                .map_err(StoreError::from)
            }
        };
        match signed {
            Ok(Some(c)) => {
                if let Some(s) = shared {
                    *s.signed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((c.seq, c.hash));
                }
                checkpoint::publish(file, &c)
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not sign the transfer log's head"),
        }
    }

    /// On a shared store, before signing: says, once, if the record this node last signed is no
    /// longer in the database as signed (a failover that lost commits, with the nodes that
    /// stayed up appending over the lost seqs). The chain as it now is is still signed, so that
    /// what the nodes write goes on being covered; this node's checkpoint file keeps what was
    /// signed before, which `log verify` and the start-up check compare.
    async fn check_signed(s: &Shared) {
        use crate::store::pg::checkpoint::Since;
        let last = *s
            .signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((seq, hash)) = last else { return };
        match crate::store::pg::checkpoint::since(&s.pool, seq, &hash).await {
            Ok(Since::Holds | Since::Purged) => {}
            Ok(found) => {
                tracing::error!(
                    seq,
                    found = ?found,
                    "the transfer log's record {seq}, which this node signed, is no longer in the database as signed: records were lost or rewritten (a failover to a replica that had not received the last commits?). Run `postern log verify --config DIR` on this node: its checkpoint file holds what was signed"
                );
                *s.signed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            // Said when the signing itself fails.
            Err(_) => {}
        }
    }

    /// How long the signing lease lasts: three intervals (renewed at each), so that another
    /// node takes over signing within minutes of the signer's death, never while it lives.
    fn lease(&self) -> Duration {
        self.settings
            .checkpoint_interval
            .saturating_mul(3)
            .max(Duration::from_secs(60))
    }

    async fn run(self, stop: CancellationToken) {
        // Both tick at once at start-up: the purge first (it signs its own anchor), then a
        // checkpoint of whatever the last run left unsigned (after a crash, say).
        let mut purge = tokio::time::interval(PURGE_EVERY);
        let mut sign = tokio::time::interval(self.settings.checkpoint_interval);
        for t in [&mut purge, &mut sign] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = purge.tick() => self.purge().await,
                _ = sign.tick() => {
                    Self::sign(&self.store, &self.key, self.shared.as_ref(), self.lease(), self.file.as_ref()).await;
                }
            }
        }
    }

    async fn purge(&self) {
        if let Some(s) = &self.shared {
            match crate::store::pg::checkpoint::hold(
                &s.pool,
                &s.node,
                crate::clock::now(),
                self.lease(),
            )
            .await
            {
                Ok(true) => {}
                // Another node signs, and purges.
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(error = %e, "could not take the transfer log's upkeep lease; nothing was purged");
                    return;
                }
            }
        }
        match checkpoint::thin(&self.store, crate::clock::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "thinned old transfer log checkpoints to one a day"
            ),
            Err(e) => tracing::error!(error = %e, "could not thin the transfer log's checkpoints"),
        }
        let days = self.settings.retain_days;
        if days == 0 {
            return;
        }
        match checkpoint::purge(&self.store, self.key.clone(), days, crate::clock::now()).await {
            Ok(Purge::Nothing) => {}
            Ok(Purge::Done {
                seq,
                record,
                anchor,
            }) => {
                if let Some(a) = &anchor {
                    checkpoint::publish(self.file.as_ref(), a);
                }
                tracing::info!(
                    records = record.records,
                    from_seq = record.from_seq,
                    to_seq = record.to_seq,
                    transfers = record.transfers,
                    log_seq = seq,
                    "purged transfer log records older than the retention period"
                )
            }
            Ok(Purge::Refused(b)) => tracing::error!(
                kind = %b.kind,
                seq = b.seq,
                detail = %b.message,
                "the transfer log records due for purging do not verify; nothing was purged (run `postern log verify`)"
            ),
            Err(e) => tracing::error!(error = %e, "could not purge the transfer log"),
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
}
