//! `postern load --pg-log N`: the shared log's append path on PostgreSQL, in one run against
//! its baselines. N generated decision records (the DPO benchmark's generator) are appended by
//! `--connections` concurrent requests, each waiting for its record's commit as a 202 will:
//! through the SQLite store's single writer (today's node), through one node's group-committing
//! writer on PostgreSQL, and through two nodes' writers sharing the chain's head lock; then the
//! same through the store's own write jobs on PostgreSQL (`Store::open_shared`, the path a
//! serving node will take), one node and two. Then the two-node chains are verified (`log
//! verify`'s check) and timed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use postern_gateway::config::daemon::read_subject_key;
use postern_gateway::log::LogEntry;
use postern_gateway::store::Store;
use postern_gateway::store::pg::{self, Pool, Target, writer::LogWriter};
use postern_gateway::testkit::synthetic;

use super::Scratch;

/// Where the database server is (a user that may create databases: each run makes its own).
pub struct PgArgs {
    pub url: String,
    pub ca: PathBuf,
    pub password_file: Option<PathBuf>,
}

struct Run {
    name: &'static str,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.latencies.sort();
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// Appends `entries` through `append` from `concurrency` tasks; each record's wait is timed.
async fn drive<F, Fut>(
    name: &'static str,
    entries: Vec<LogEntry>,
    concurrency: usize,
    append: F,
) -> anyhow::Result<Run>
where
    F: Fn(usize, LogEntry) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(entries));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (queue, append) = (queue.clone(), append.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(e) = next else { break };
                let began = Instant::now();
                append(t, e).await?;
                lat.push(began.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Run {
        name,
        elapsed: start.elapsed(),
        latencies,
    })
}

pub(super) fn target(a: &PgArgs, db: Option<&str>, pool_size: usize) -> anyhow::Result<Target> {
    let mut url = postern_gateway::config::store::parse_url(&a.url)
        .map_err(|e| anyhow::anyhow!("--pg-url {e}"))?;
    if let Some(db) = db {
        url.dbname(db);
    }
    let m = postern_gateway::config::store::read_material(
        &postern_gateway::config::store::PostgresSettings {
            url: url.clone(),
            ca: a.ca.clone(),
            password_file: a.password_file.clone(),
            pool_size,
            node: String::new(),
        },
    )?;
    Ok(Target {
        url,
        roots: m.roots,
        password: m.password,
        pool_size,
    })
}

/// Drops a scratch database, waiting for the server's own workers (autovacuum, after a run's
/// inserts) to leave it: only a superuser may end those.
pub(super) async fn drop_database(admin: &Pool, name: &str) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        let done = admin
            .get()
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        match done {
            Ok(()) => return Ok(()),
            Err(_) if tries < 30 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A fresh, migrated database for one run.
pub(super) async fn database(admin: &Pool, a: &PgArgs, name: &str) -> anyhow::Result<Pool> {
    drop_database(admin, name).await?;
    admin
        .get()
        .await?
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let pool = Pool::new(&target(a, Some(name), 8)?)?;
    let mut c = pool.get().await?;
    pg::migrate(&mut c, pool.target()).await?;
    Ok(pool)
}

pub async fn benchmark(
    records: u64,
    concurrency: usize,
    a: &PgArgs,
    scratch: &Scratch,
) -> anyhow::Result<ExitCode> {
    let state = scratch.state_dir();
    let key = read_subject_key(&state.join("keys").join("subject.key"))
        .map_err(|e| anyhow::anyhow!("subject key: {e}"))?;
    let start = time::OffsetDateTime::now_utc();
    // The same records for every path (LogEntry is not Clone: it is made again).
    // Refusals and rejections: an acceptance queues deliveries, whose rows `log verify` looks
    // for, and this benchmark writes the chain alone.
    let make = || -> anyhow::Result<Vec<LogEntry>> {
        Ok(
            synthetic::decision_entries(7, records * 4, records / 6 + 1, start, &key)?
                .into_iter()
                .filter(|e| e.kind != postern_gateway::log::RecordKind::TransferAccepted)
                .take(usize::try_from(records).unwrap_or(usize::MAX))
                .collect(),
        )
    };
    let entries = make()?;
    let bytes: usize = entries.iter().map(|e| e.body.len()).sum();
    println!(
        "{records} decision records ({} bytes of bodies on average), {concurrency} concurrent requests, each waiting for its commit",
        bytes / entries.len().max(1)
    );
    let admin = Pool::new(&target(a, None, 2)?).context("the database server")?;
    let mut runs = Vec::new();

    // Today's node: the SQLite store's single writer (fsync'd group commits).
    let (store, _) = Store::open(&state.join("sqlite-bench"))?;
    let s = store.clone();
    runs.push(
        drive("SQLite, one node", make()?, concurrency, move |_, e| {
            let s = s.clone();
            async move {
                s.write(false, move |tx| tx.append(&e)).await?;
                Ok(())
            }
        })
        .await?,
    );
    drop(store);

    let one = database(&admin, a, "postern_bench_one").await?;
    let w = LogWriter::start(one.clone(), "node-a".into());
    runs.push(
        drive("PostgreSQL, one node", make()?, concurrency, move |_, e| {
            let w = w.clone();
            async move {
                w.append(e).await?;
                Ok(())
            }
        })
        .await?,
    );

    let two = database(&admin, a, "postern_bench_two").await?;
    let second = Pool::new(&target(a, Some("postern_bench_two"), 8)?)?;
    let writers = [
        LogWriter::start(two.clone(), "node-a".into()),
        LogWriter::start(second, "node-b".into()),
    ];
    runs.push(
        drive(
            "PostgreSQL, two nodes",
            entries,
            concurrency,
            move |t, e| {
                // Requests spread over the two nodes, as a load balancer spreads connections.
                let w = writers[t % 2].clone();
                async move {
                    w.append(e).await?;
                    Ok(())
                }
            },
        )
        .await?,
    );

    // The store's write jobs on the shared database: one node, then two.
    let store_one = database(&admin, a, "postern_bench_store_one").await?;
    let node = Store::open_shared(&state.join("shared-one"), store_one.clone(), "node-a").await?;
    runs.push(
        drive(
            "PostgreSQL store, one node",
            make()?,
            concurrency,
            move |_, e| {
                let s = node.clone();
                async move {
                    s.write(false, move |tx| tx.append(&e)).await?;
                    Ok(())
                }
            },
        )
        .await?,
    );
    let store_two = database(&admin, a, "postern_bench_store_two").await?;
    let nodes = [
        Store::open_shared(&state.join("shared-a"), store_two.clone(), "node-a").await?,
        Store::open_shared(
            &state.join("shared-b"),
            Pool::new(&target(a, Some("postern_bench_store_two"), 8)?)?,
            "node-b",
        )
        .await?,
    ];
    runs.push(
        drive(
            "PostgreSQL store, two nodes",
            make()?,
            concurrency,
            move |t, e| {
                let s = nodes[t % 2].clone();
                async move {
                    s.write(false, move |tx| tx.append(&e)).await?;
                    Ok(())
                }
            },
        )
        .await?,
    );

    println!();
    println!("| path | records/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for r in &mut runs {
        let (p50, p99) = (r.pct(0.50), r.pct(0.99));
        println!("| {} | {:.0} | {:.2} | {:.2} |", r.name, r.rate(), p50, p99);
    }
    let rate = |i: usize| runs.get(i).map_or(0.0, Run::rate);
    println!();
    println!(
        "two nodes / one node on PostgreSQL: {:.2}; one node, PostgreSQL / SQLite: {:.2}; through the store's write jobs: two / one {:.2}, one node / SQLite {:.2}",
        rate(2) / rate(1).max(f64::MIN_POSITIVE),
        rate(1) / rate(0).max(f64::MIN_POSITIVE),
        rate(4) / rate(3).max(f64::MIN_POSITIVE),
        rate(3) / rate(0).max(f64::MIN_POSITIVE)
    );
    let (store_report, _) = pg::verify::verify_log(&store_two, &[], &[]).await?;
    println!(
        "log verify on the two-node chain written through the store: {} records, {}",
        store_report.records,
        store_report
            .first_break
            .as_ref()
            .map_or_else(|| "intact".to_owned(), |b| format!("BROKEN: {}", b.message))
    );

    let began = Instant::now();
    let (report, _) = pg::verify::verify_log(&two, &[], &[]).await?;
    let took = began.elapsed();
    let nodes: i64 = two
        .get()
        .await?
        .query_one("SELECT COUNT(DISTINCT node) FROM log", &[])
        .await?
        .get(0);
    println!(
        "log verify on the two-node chain: {} records from {nodes} nodes, {} in {:.0} ms ({:.0} records/s)",
        report.records,
        report
            .first_break
            .as_ref()
            .map_or_else(|| "intact".to_owned(), |b| format!("BROKEN: {}", b.message)),
        took.as_secs_f64() * 1e3,
        report.records as f64 / took.as_secs_f64()
    );
    drop((one, two, store_one, store_two));
    for db in [
        "postern_bench_one",
        "postern_bench_two",
        "postern_bench_store_one",
        "postern_bench_store_two",
    ] {
        if let Err(e) = drop_database(&admin, db).await {
            eprintln!("postern: could not drop the scratch database {db}: {e}");
        }
    }
    Ok(if report.intact() && store_report.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
