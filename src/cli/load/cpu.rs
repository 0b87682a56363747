//! `postern load --nodes`: where the machine's CPU went (the nodes, the database server, this
//! load generator with its relay), read from Linux's `/proc`, and `--node-cpus`, which holds
//! each node to a share of the cores through a CPU cgroup, as if it ran on a machine of its own
//! while the database and the load generator keep the rest. On two cores shared by everything,
//! a second node otherwise has nothing to run on, and the benchmark would measure the machine
//! rather than whether the shared parts (the database, the chain's head) let a cluster grow.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// CPU time so far, in clock ticks (the kernel's USER_HZ, the unit of `/proc/stat`).
#[derive(Clone, Copy, Default)]
pub(super) struct Ticks {
    /// The whole machine: busy, and in all (every CPU).
    pub busy: u64,
    pub total: u64,
    /// The nodes' processes (their own threads).
    pub nodes: u64,
    /// Every `postgres` process, with the backends that have ended (the postmaster's reaped
    /// children).
    pub database: u64,
    /// This process: the load generator and the relay.
    pub load: u64,
}

/// A reading of the machine's, the nodes' (`nodes`: their process ids), the database server's
/// and this process's CPU time; `None` where `/proc` does not say (not Linux).
pub(super) fn read(nodes: &[u32]) -> Option<Ticks> {
    let (busy, total) = machine()?;
    let mut t = Ticks {
        busy,
        total,
        load: process("self").map(|p| p.own)?,
        ..Ticks::default()
    };
    for pid in nodes {
        t.nodes += process(&pid.to_string()).map_or(0, |p| p.own);
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some(p) = process(pid).filter(|p| p.comm == "postgres") {
            t.database += p.own + p.children;
        }
    }
    Some(t)
}

/// Each party's CPU between two readings, in milliseconds of one core per `per` (accepted
/// transfers): (nodes, database, load generator), and the machine's busy share in percent.
pub(super) struct Spent {
    pub busy_percent: f64,
    pub nodes_ms: f64,
    pub database_ms: f64,
    pub load_ms: f64,
}

pub(super) fn between(
    before: Option<Ticks>,
    after: Option<Ticks>,
    cpus: usize,
    wall: std::time::Duration,
    per: usize,
) -> Option<Spent> {
    let (b, a) = (before?, after?);
    let total = a.total.checked_sub(b.total).filter(|t| *t > 0)?;
    // `total` ticks are `cpus` cores for `wall`: one tick is this many ms of one core.
    let tick_ms = wall.as_secs_f64() * 1000.0 * cpus.max(1) as f64 / total as f64;
    let ms = |x: u64, y: u64| x.saturating_sub(y) as f64 * tick_ms / per.max(1) as f64;
    Some(Spent {
        busy_percent: a.busy.saturating_sub(b.busy) as f64 * 100.0 / total as f64,
        nodes_ms: ms(a.nodes, b.nodes),
        database_ms: ms(a.database, b.database),
        load_ms: ms(a.load, b.load),
    })
}

/// The machine's CPU time so far, busy and in all, in clock ticks (`/proc/stat`).
fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine(stat.lines().next()?)
}

fn parse_machine(line: &str) -> Option<(u64, u64)> {
    let line = line.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .map_while(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// One process's command name and CPU ticks: its own (user and system, all its threads) and
/// its ended children's.
struct Process {
    comm: String,
    own: u64,
    children: u64,
}

fn process(pid: &str) -> Option<Process> {
    parse_process(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_process(stat: &str) -> Option<Process> {
    // "pid (comm) state ppid ..."; the name may hold spaces and parentheses, so it runs to
    // the last ')'. utime, stime, cutime and cstime are fields 14 to 17.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some(Process {
        comm,
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

/// A CPU cgroup that holds a node to `cpus` cores' worth of time; removed when dropped (after
/// its process has ended).
pub(super) struct Cap {
    dir: PathBuf,
}

/// The CFS period the quota is a share of: short, so that a node out of its share waits a few
/// milliseconds rather than most of the default 100 ms (while holding the chain's head, say),
/// closer to a machine with fewer cores than to one that stops and starts.
const PERIOD_US: u64 = 10_000;

impl Cap {
    /// Moves the process `pid` into a new CPU cgroup limited to `cpus` cores (cgroup v1's
    /// `cpu` controller, else cgroup v2's `cpu.max`). Needs the right to make cgroups (root).
    pub(super) fn new(pid: u32, cpus: f64) -> anyhow::Result<Cap> {
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let (dir, settings): (PathBuf, Vec<(&str, String)>) = if v1
            .join("cpu.cfs_quota_us")
            .exists()
        {
            (
                v1.join(format!("postern-load-{pid}")),
                vec![
                    ("cpu.cfs_period_us", PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            )
        } else if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            (
                v2.join(format!("postern-load-{pid}")),
                vec![("cpu.max", format!("{quota} {PERIOD_US}"))],
            )
        } else {
            bail!(
                "--node-cpus needs a CPU cgroup controller (/sys/fs/cgroup/cpu or cgroup v2 with cpu), and there is none here"
            );
        };
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "--node-cpus: making the cgroup {} (it needs root)",
                dir.display()
            )
        })?;
        let cap = Cap { dir };
        for (file, value) in settings {
            std::fs::write(cap.dir.join(file), value)
                .with_context(|| format!("--node-cpus: setting {file}"))?;
        }
        std::fs::write(cap.dir.join("cgroup.procs"), pid.to_string())
            .context("--node-cpus: moving the node into its cgroup")?;
        Ok(cap)
    }
}

impl Drop for Cap {
    fn drop(&mut self) {
        // A cgroup can be removed once empty; its node has been killed and reaped by now.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        eprintln!(
            "postern load: could not remove the cgroup {}",
            self.dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_process_line_is_read_past_a_name_with_spaces_and_parentheses() {
        let line = "4242 (postgres: a (b)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17";
        let p = parse_process(line).unwrap();
        assert_eq!(p.comm, "postgres: a (b)");
        // Fields 14 to 17 here hold 11, 12, 13 and 14.
        assert_eq!(p.own, 11 + 12);
        assert_eq!(p.children, 13 + 14);
        assert!(parse_process("4242 (x) S 1 2").is_none());
    }

    #[test]
    fn the_machine_line_counts_idle_and_iowait_as_not_busy() {
        assert_eq!(parse_machine("cpu  10 0 5 80 5 0 0 0 0 0"), Some((15, 100)));
        assert_eq!(parse_machine("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn the_time_spent_is_shared_out_per_transfer_in_milliseconds_of_one_core() {
        let before = Ticks {
            busy: 0,
            total: 0,
            nodes: 0,
            database: 0,
            load: 0,
        };
        // Two cores for one second is 200 ticks of 10 ms; the nodes took 50 of them (0.5 s),
        // over 100 transfers: 5 ms each.
        let after = Ticks {
            busy: 150,
            total: 200,
            nodes: 50,
            database: 20,
            load: 10,
        };
        let s = between(Some(before), Some(after), 2, Duration::from_secs(1), 100).unwrap();
        assert_eq!(s.busy_percent, 75.0);
        assert!((s.nodes_ms - 5.0).abs() < 1e-9);
        assert!((s.database_ms - 2.0).abs() < 1e-9);
        assert!((s.load_ms - 1.0).abs() < 1e-9);
        assert!(between(Some(after), Some(after), 2, Duration::from_secs(1), 1).is_none());
        assert!(between(None, Some(after), 2, Duration::from_secs(1), 1).is_none());
    }

    /// A process that would take a whole core, capped at a tenth of one, gets no more than its
    /// share (an upper bound, which a busy machine cannot break), and its cgroup is gone after.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_capped_process_gets_no_more_than_its_share() {
        let mut spin = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = spin.id();
        let cap = match Cap::new(pid, 0.1) {
            Ok(c) => c,
            Err(e) => {
                let _ = spin.kill();
                let _ = spin.wait();
                eprintln!("SKIPPED: no CPU cgroup can be made here ({e:#})");
                return;
            }
        };
        let dir = cap.dir.clone();
        let before = (process(&pid.to_string()).unwrap().own, machine().unwrap().1);
        std::thread::sleep(Duration::from_millis(1500));
        let after = (process(&pid.to_string()).unwrap().own, machine().unwrap().1);
        spin.kill().unwrap();
        spin.wait().unwrap();
        drop(cap);
        // The machine's ticks are every core's: its share of one core, with a period's grace
        // for where the readings fall.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = (after.0 - before.0) as f64 * cpus as f64 / (after.1 - before.1) as f64;
        assert!(share < 0.2, "the capped process took {share:.2} of a core");
        assert!(
            !dir.exists(),
            "the cgroup {} was left behind",
            dir.display()
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_and_the_machine_are_read() {
        let t = read(&[std::process::id()]).unwrap();
        assert!(t.busy <= t.total && t.total > 0);
        // This process counted as a node here too.
        assert_eq!(t.nodes, t.load.max(t.nodes));
    }
}
