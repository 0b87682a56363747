//! `postern load --nodes`: intake and delivery through serving nodes, in one run, on fresh
//! stores: `postern serve` on SQLite (the default, the baseline), one node on PostgreSQL, and two
//! nodes on one PostgreSQL with the connections split between them. For each:
//!
//! 1. saturation: `--transfers` of `--size` over `--connections`, back to back: accepted/s and
//!    the 202's p50 and p99;
//! 2. once the queue has drained, a fixed rate (`--rate`, open loop, ten seconds' worth): the
//!    accepted-to-delivered p50 and p99, from the store's own timestamps. The police are
//!    delivered to by mutual TLS at each node's own `/v1/inbound`, so a delivery is a reseal, a
//!    hop and a commit at both ends, on the same machine.
//!
//! The ratios (one PostgreSQL node to SQLite, two nodes to one) are what to compare: on a
//! machine where the nodes, the database and the load generator share the cores, a second node
//! adds no cores: the CPU column says how busy the whole machine was while each setup was
//! saturated (near 100%, a second node has nothing to run on), and a second table how many
//! milliseconds of CPU the nodes, the database and the load generator each spent per accepted
//! transfer. `--node-cpus` holds each node to a share of the cores (see [`super::cpu`]) so that
//! one node is limited by its own share, as on a machine of its own, and a second node brings
//! its own. The nodes' own metrics say how much of each phase some node held the chain's head,
//! and how busy the nodes' store writers were (every write of a node goes through them: near
//! 100%, they are the node's limit).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postern_gateway::client::Target;
use postern_gateway::store::LogSource;
use postern_gateway::store::pg::Pool;

use super::cpu;
use super::deliver::{Work, envelope, pct, submit_all};
use super::pg::{PgArgs, database, drop_database, target};
use super::{LoadArgs, Payload, Scratch, ServerProcess, human, reset_state};

/// One setup's figures.
struct Figures {
    name: &'static str,
    accepted: usize,
    wall: Duration,
    submit: Vec<Duration>,
    delivered: Vec<Duration>,
    /// How busy the machine's CPUs were during the saturation phase (every process: the
    /// nodes, the database and this load generator), and each one's CPU time per accepted
    /// transfer, where the kernel says.
    spent: Option<cpu::Spent>,
    /// On PostgreSQL: the share of the saturation phase during which some node held the
    /// chain's head (the nodes' `postern_log_head_held_seconds`, summed), in percent: the
    /// part of the work that cannot run side by side.
    head_held: Option<f64>,
    /// How busy the nodes' store writers were (`postern_store_writer_busy_seconds`, averaged
    /// over the writers of all nodes), in percent, in the saturation phase and in the
    /// fixed-rate one: every write of a node goes through them, so near 100% they are its limit.
    writer_busy: Option<f64>,
    writer_busy_at_rate: Option<f64>,
}

/// The nodes' counters that the figures are taken from, summed over the nodes.
#[derive(Clone, Copy)]
struct Counters {
    head_held: f64,
    writer_busy: f64,
}

impl Counters {
    /// Since `before`, over `wall`, in percent: the time the chain's head was held (summed
    /// over the nodes), and the store writers' busy time (averaged over the `writers`, all
    /// nodes' together).
    fn share(self, before: Option<Counters>, wall: Duration, writers: usize) -> Option<(f64, f64)> {
        let b = before?;
        let pct = |d: f64| d / wall.as_secs_f64() * 100.0;
        Some((
            pct(self.head_held - b.head_held),
            pct(self.writer_busy - b.writer_busy) / writers.max(1) as f64,
        ))
    }
}

/// A node: its process, and the cgroup that holds it to `--node-cpus` (removed after the
/// process has ended, hence the order).
struct Node {
    server: ServerProcess,
    _cap: Option<cpu::Cap>,
}

impl Node {
    fn spawn(scratch: &Scratch, a: &LoadArgs, env: &[(&str, &OsStr)]) -> anyhow::Result<Node> {
        let server = ServerProcess::spawn_with("serve", &scratch.config_dir(), env)?;
        let cap = if a.node_cpus > 0.0 {
            Some(cpu::Cap::new(server.child.id(), a.node_cpus)?)
        } else {
            None
        };
        Ok(Node { server, _cap: cap })
    }
}

/// A free address on loopback for a node's ops listener (free a moment ago).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The value of the counter `name` in a `/metrics` answer.
fn counter(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

/// The nodes' counters so far, summed; `None` if a node does not answer.
async fn counters(ops: &[SocketAddr]) -> Option<Counters> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sum = Counters {
        head_held: 0.0,
        writer_busy: 0.0,
    };
    for a in ops {
        let mut s = tokio::net::TcpStream::connect(a).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        sum.head_held += counter(&text, "postern_log_head_held_seconds_total")?;
        sum.writer_busy += counter(&text, "postern_store_writer_busy_seconds_total")?;
    }
    Some(sum)
}

/// `url` naming the database `name` instead.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("--pg-url is not a URL")?;
    let base = rest.split_once('/').map_or(rest, |(b, _)| b);
    Ok(format!("{scheme}://{base}/{name}"))
}

/// Writes the nodes' configuration: the load generator's deployment, and `[store]` naming
/// `database` when given.
fn configure(
    scratch: &Scratch,
    a: &LoadArgs,
    relay_port: u16,
    pg: &PgArgs,
    database: Option<&str>,
) -> anyhow::Result<()> {
    Scratch::write_daemon(
        &scratch.config_dir(),
        &scratch.state_dir(),
        a.size,
        relay_port,
    )?;
    if let Some(name) = database {
        let path = scratch.config_dir().join("postern.toml");
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str(&format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{}\"\nca = \"{}\"\n",
            with_database(&pg.url, name)?,
            pg.ca.display()
        ));
        if let Some(p) = &pg.password_file {
            text.push_str(&format!("password_file = \"{}\"\n", p.display()));
        }
        std::fs::write(&path, text)?;
    }
    Ok(())
}

/// Deliveries not yet final, and accepted-to-delivered latencies of those accepted at or
/// after `since` (a store stamp), read from `source` on a blocking thread.
async fn read_queue(
    source: &LogSource,
    since: String,
) -> anyhow::Result<(i64, i64, Vec<Duration>)> {
    let (source, runtime) = (source.clone(), tokio::runtime::Handle::current());
    tokio::task::spawn_blocking(move || {
        let r = source.open(&runtime)?;
        let db = r.db();
        let pending = db
            .row(
                "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'delivering', 'retrying')",
                &[],
            )?
            .map_or(Ok(0), |row| row.int(0))?;
        let dead = db
            .row("SELECT COUNT(*) FROM deliveries WHERE state = 'dead'", &[])?
            .map_or(Ok(0), |row| row.int(0))?;
        let mut lat = Vec::new();
        for row in db.rows(
            "SELECT t.accepted_at, d.delivered_at FROM deliveries d JOIN transfers t ON t.id = d.transfer_id WHERE t.accepted_at >= ?1 AND d.state = 'delivered'",
            &[since.as_str().into()],
        )? {
            let parse = |s: String| {
                postern_gateway::clock::parse(&s).context("a bad timestamp in the store")
            };
            let (accepted, delivered) = (parse(row.text(0)?)?, parse(row.text(1)?)?);
            lat.push(Duration::try_from(delivered - accepted).unwrap_or_default());
        }
        lat.sort();
        anyhow::Ok((pending, dead, lat))
    })
    .await?
}

/// Waits until nothing is pending (at most ten minutes).
async fn drained(source: &LogSource) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (pending, dead, _) = read_queue(source, String::new()).await?;
        if dead > 0 {
            bail!("{dead} deliveries failed for good");
        }
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{pending} deliveries still pending after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs both phases against `nodes`, whose store `source` is.
async fn measure(
    name: &'static str,
    nodes: &[Node],
    ops: &[SocketAddr],
    source: &LogSource,
    a: &LoadArgs,
    work: &Work,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Figures> {
    let targets: Vec<Target> = nodes
        .iter()
        .map(|n| Target {
            host: "localhost".into(),
            port: n.server.addr.port(),
        })
        .collect();
    let pids: Vec<u32> = nodes.iter().map(|n| n.server.child.id()).collect();
    // Warm-up, not measured.
    let warm = a.connections * a.warmup;
    submit_all(&targets, tls.clone(), a.connections, warm, None, work).await?;
    // One writer per node on SQLite, several on PostgreSQL.
    let writers = match source {
        LogSource::Shared(_) => ops.len() * postern_gateway::store::SHARED_WRITERS,
        _ => ops.len(),
    };
    let cpu = cpu::read(&pids);
    let before = counters(ops).await;
    let start = Instant::now();
    let submit = submit_all(
        &targets,
        tls.clone(),
        a.connections,
        a.transfers,
        None,
        work,
    )
    .await?;
    let wall = start.elapsed();
    let spent = cpu::between(cpu, cpu::read(&pids), submit.len());
    let saturated = counters(ops)
        .await
        .and_then(|c| c.share(before, wall, writers));
    drained(source).await?;
    let since = postern_gateway::clock::stamp(postern_gateway::clock::now());
    let n = usize::try_from(a.rate)? * 10;
    let before = counters(ops).await;
    let start = Instant::now();
    submit_all(&targets, tls, a.connections, n, Some(a.rate), work).await?;
    drained(source).await?;
    let at_rate = counters(ops)
        .await
        .and_then(|c| c.share(before, start.elapsed(), writers));
    let (_, _, delivered) = read_queue(source, since).await?;
    Ok(Figures {
        name,
        accepted: submit.len(),
        wall,
        submit,
        delivered,
        spent,
        head_held: saturated
            .map(|s| s.0)
            .filter(|_| matches!(source, LogSource::Shared(_))),
        writer_busy: saturated.map(|s| s.1),
        writer_busy_at_rate: at_rate.map(|s| s.1),
    })
}

/// A second node's state directory: the first's keys and certificates (every node holds the
/// same), nothing else.
fn second_state(scratch: &Scratch) -> anyhow::Result<PathBuf> {
    let b = scratch.root.join("state-b");
    if b.exists() {
        std::fs::remove_dir_all(&b)?;
    }
    super::deliver::copy_dir(&scratch.state_dir(), &b)?;
    reset_state(&b)?;
    Ok(b)
}

pub(super) async fn benchmark(
    a: &LoadArgs,
    pg: &PgArgs,
    scratch: &Scratch,
    relay_port: u16,
    payload: &Payload,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<ExitCode> {
    if a.rate == 0 {
        bail!("--rate must be at least 1");
    }
    println!(
        "postern load --nodes: {} transfers of {} over {} connections (+{} warm-up each), then {} s at {}/s; {} CPUs{}",
        a.transfers,
        human(a.size),
        a.connections,
        a.warmup,
        10,
        a.rate,
        cpu::cpus().unwrap_or(0),
        if a.node_cpus > 0.0 {
            format!("; each node held to {} cores' CPU time", a.node_cpus)
        } else {
            String::new()
        }
    );
    let work = Work {
        envelope: envelope("northshire-police"),
        payload: payload.clone(),
        size: a.size,
    };
    let admin = Pool::new(&target(pg, None, 2)?).context("the database server")?;
    let mut figures = Vec::new();

    // The baseline: one node on SQLite.
    scratch.reset_store()?;
    configure(scratch, a, relay_port, pg, None)?;
    {
        let ops = free_addr()?;
        let node = Node::spawn(
            scratch,
            a,
            &[("POSTERN_OPS__LISTEN", OsStr::new(&ops.to_string()))],
        )?;
        let source = LogSource::Dir(scratch.state_dir());
        figures.push(
            measure(
                "SQLite, 1 node",
                &[node],
                &[ops],
                &source,
                a,
                &work,
                tls.clone(),
            )
            .await?,
        );
    }

    // One node, then two, on PostgreSQL, each on a fresh database.
    for (name, db, count) in [
        ("PostgreSQL, 1 node", "postern_load_nodes_one", 1),
        ("PostgreSQL, 2 nodes", "postern_load_nodes_two", 2),
    ] {
        scratch.reset_store()?;
        let pool = database(&admin, pg, db).await?;
        configure(scratch, a, relay_port, pg, Some(db))?;
        let ops = [free_addr()?, free_addr()?];
        let ops_a = ops[0].to_string();
        let mut nodes = vec![Node::spawn(
            scratch,
            a,
            &[
                ("POSTERN_STORE__NODE", OsStr::new("node-a")),
                ("POSTERN_OPS__LISTEN", OsStr::new(&ops_a)),
            ],
        )?];
        if count == 2 {
            let b = second_state(scratch)?;
            let ops_b = ops[1].to_string();
            nodes.push(Node::spawn(
                scratch,
                a,
                &[
                    ("POSTERN_STORE__NODE", OsStr::new("node-b")),
                    ("POSTERN_STATE_DIR", b.as_os_str()),
                    ("POSTERN_OPS__LISTEN", OsStr::new(&ops_b)),
                ],
            )?);
        }
        let source = LogSource::Shared(pool.clone());
        let f = measure(name, &nodes, &ops[..count], &source, a, &work, tls.clone()).await;
        drop(nodes);
        drop(pool);
        drop_database(&admin, db).await?;
        figures.push(f?);
    }

    println!(
        "{:<22} {:>9} {:>12} {:>9} {:>9} {:>10} {:>10} {:>12} {:>20} {:>20} {:>15}",
        "setup",
        "accepted",
        "accepted/s",
        "p50 ms",
        "p99 ms",
        "CPU busy",
        "head held",
        "writer busy",
        "delivered p50 ms",
        "delivered p99 ms",
        "writer at rate"
    );
    let percent = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}%"));
    for f in &figures {
        println!(
            "{:<22} {:>9} {:>12.0} {:>9.1} {:>9.1} {:>10} {:>10} {:>12} {:>20.1} {:>20.1} {:>15}",
            f.name,
            f.accepted,
            f.accepted as f64 / f.wall.as_secs_f64(),
            pct(&f.submit, 0.50),
            pct(&f.submit, 0.99),
            percent(f.spent.as_ref().map(|s| s.busy_percent)),
            percent(f.head_held),
            percent(f.writer_busy),
            pct(&f.delivered, 0.50),
            pct(&f.delivered, 0.99),
            percent(f.writer_busy_at_rate),
        );
    }
    // Where the CPU went while saturated, per accepted transfer (with the deliveries made
    // meanwhile): with the nodes on machines of their own, the nodes' share is what each
    // node's cores must give, the rest is the database's (every `postgres` process on this
    // machine; "-" where there is none) and the clients'.
    println!(
        "CPU per accepted transfer while saturated, ms of one core: {:<22} {:>8} {:>9} {:>15}",
        "setup", "nodes", "database", "load generator"
    );
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
    for f in &figures {
        let s = f.spent.as_ref();
        println!(
            "CPU per accepted transfer while saturated, ms of one core: {:<22} {:>8} {:>9} {:>15}",
            f.name,
            ms(s.map(|s| s.nodes_ms)),
            ms(s.and_then(|s| s.database_ms)),
            ms(s.map(|s| s.load_ms)),
        );
    }
    let rate = |f: &Figures| f.accepted as f64 / f.wall.as_secs_f64();
    if let [sqlite, one, two] = &figures[..] {
        println!(
            "ratio accepted/s: PostgreSQL 1 node / SQLite {:.2}; 2 nodes / 1 node {:.2}",
            rate(one) / rate(sqlite),
            rate(two) / rate(one)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_read_from_the_metrics_text() {
        let text = "# TYPE postern_log_head_held_seconds counter\npostern_log_head_held_seconds_total 1.5\npostern_log_head_held_seconds_created 17\n";
        assert_eq!(
            counter(text, "postern_log_head_held_seconds_total"),
            Some(1.5)
        );
        assert_eq!(counter(text, "postern_log_head_held_seconds"), None);
        assert_eq!(counter("", "postern_log_head_held_seconds_total"), None);
    }

    #[test]
    fn the_database_is_named_in_the_url() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x").unwrap(),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h", "x").unwrap(),
            "postgres://u@h/x"
        );
    }
}
