//! `postern load --nodes`: where the machine's CPU went (the nodes, the database server, this
//! load generator with its relay), read from Linux's `/proc`, and `--node-cpus`, which holds
//! each node to a share of the cores through a CPU cgroup, as if it ran on a machine of its own
//! while the database and the load generator keep the rest. On two cores shared by everything,
//! a second node otherwise has nothing to run on, and the benchmark would measure the machine
//! rather than whether the shared parts (the database, the chain's head) let a cluster grow.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};

/// CPU time so far, in clock ticks (the kernel's USER_HZ, the unit of `/proc/stat`).
#[derive(Clone, Copy)]
pub(super) struct Ticks {
    /// When read.
    at: Instant,
    /// The machine's CPUs, as `/proc/stat` counts them (every online one, whatever this
    /// process's affinity or quota).
    cpus: u64,
    /// The whole machine: busy, and in all (every CPU).
    busy: u64,
    total: u64,
    /// The nodes' processes (their own threads).
    nodes: u64,
    /// Every process on this machine named `postgres` (every cluster's), with the backends
    /// that have ended (their time is in the postmaster's reaped children's); `None` if there
    /// is none (a database elsewhere is not measured).
    database: Option<u64>,
    /// This process: the load generator and the relay.
    load: u64,
}

/// A reading of the machine's, the nodes' (`nodes`: their process ids), the database server's
/// and this process's CPU time; `None` where `/proc` does not say (not Linux).
pub(super) fn read(nodes: &[u32]) -> Option<Ticks> {
    let (cpus, busy, total) = machine()?;
    let mut t = Ticks {
        at: Instant::now(),
        cpus,
        busy,
        total,
        nodes: 0,
        database: None,
        load: process("self").map(|p| p.own)?,
    };
    for pid in nodes {
        t.nodes += process(&pid.to_string()).map_or(0, |p| p.own);
    }
    // A backend reaped by the postmaster after the postmaster was read and before its own
    // entry is missed by this reading; the nodes' pools keep their backends for the run, so
    // this is rare and small.
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some(p) = process(pid).filter(|p| p.comm == "postgres") {
            *t.database.get_or_insert(0) += p.own + p.children;
        }
    }
    Some(t)
}

/// Each party's CPU between two readings, in milliseconds of one core per `per` (accepted
/// transfers): (nodes, database, load generator), and the machine's busy share in percent.
pub(super) struct Spent {
    pub busy_percent: f64,
    pub nodes_ms: f64,
    pub database_ms: Option<f64>,
    pub load_ms: f64,
}

pub(super) fn between(before: Option<Ticks>, after: Option<Ticks>, per: usize) -> Option<Spent> {
    let (b, a) = (before?, after?);
    let total = a.total.checked_sub(b.total).filter(|t| *t > 0)?;
    // Between the readings, `total` ticks passed over `cpus` cores: one core's share of them
    // took as long as the wall clock did, so one tick is this many ms of one core.
    let wall_ms = a.at.duration_since(b.at).as_secs_f64() * 1000.0;
    let tick_ms = wall_ms * a.cpus.max(1) as f64 / total as f64;
    let ms = |x: u64, y: u64| x.saturating_sub(y) as f64 * tick_ms / per.max(1) as f64;
    Some(Spent {
        busy_percent: a.busy.saturating_sub(b.busy) as f64 * 100.0 / total as f64,
        nodes_ms: ms(a.nodes, b.nodes),
        database_ms: a.database.zip(b.database).map(|(x, y)| ms(x, y)),
        load_ms: ms(a.load, b.load),
    })
}

/// The machine's CPUs, as the CPU columns count them (`/proc/stat`'s `cpuN` lines).
pub(super) fn cpus() -> Option<u64> {
    machine().map(|m| m.0)
}

/// The machine's CPUs, and its CPU time so far, busy and in all, in clock ticks (`/proc/stat`).
fn machine() -> Option<(u64, u64, u64)> {
    parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `/proc/stat`: the count of `cpuN` lines, and the first line's (all CPUs') busy and total.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let (busy, total) = parse_machine(stat.lines().next()?)?;
    let cpus = stat
        .lines()
        .filter_map(|l| l.strip_prefix("cpu")?.split(' ').next())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .count();
    Some((u64::try_from(cpus).ok()?.max(1), busy, total))
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

/// Where CPU cgroups can be made here, and which kind.
struct Controller {
    root: PathBuf,
    /// cgroup v2 with `cpu` enabled for children (`cpu.max`); else cgroup v1's `cpu`
    /// hierarchy (`cpu.cfs_period_us` and `cpu.cfs_quota_us`).
    v2: bool,
}

impl Controller {
    fn find() -> anyhow::Result<Controller> {
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            return Ok(Controller {
                root: v1,
                v2: false,
            });
        }
        // In v2 a child gets `cpu.max` only where the parent hands the controller down.
        let v2 = PathBuf::from("/sys/fs/cgroup");
        match std::fs::read_to_string(v2.join("cgroup.subtree_control")) {
            Ok(c) if c.split_whitespace().any(|c| c == "cpu") => {
                Ok(Controller { root: v2, v2: true })
            }
            Ok(_) => bail!(
                "--node-cpus: cgroup v2 here does not hand the cpu controller to its children (enable it with `echo +cpu > /sys/fs/cgroup/cgroup.subtree_control` as root; in a container, on the host)"
            ),
            Err(_) => bail!(
                "--node-cpus needs a CPU cgroup controller (/sys/fs/cgroup/cpu, or cgroup v2 with cpu enabled), and there is none here"
            ),
        }
    }

    /// Removes the cgroups that runs stopped by a signal left behind (their nodes gone): a
    /// cgroup in use cannot be removed, so another run's are safe.
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("postern-load-") {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }

    /// The new cgroup's directory for `pid`, and the settings that limit it to `quota` µs of
    /// CPU time each period.
    fn cgroup(&self, pid: u32, quota: u64) -> (PathBuf, Vec<(&'static str, String)>) {
        let settings = if self.v2 {
            vec![("cpu.max", format!("{quota} {PERIOD_US}"))]
        } else {
            vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ]
        };
        (self.root.join(format!("postern-load-{pid}")), settings)
    }
}

/// Writes `value` to the cgroup file `path`, which must exist (a missing one says the
/// controller is not there, rather than being made as a plain file).
fn set(path: &std::path::Path, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

impl Cap {
    /// Moves the process `pid` into a new CPU cgroup limited to `cpus` cores (cgroup v1's
    /// `cpu` controller, else cgroup v2's `cpu.max`). Needs the right to make cgroups (root).
    pub(super) fn new(pid: u32, cpus: f64) -> anyhow::Result<Cap> {
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        let controller = Controller::find()?;
        controller.sweep();
        let (dir, settings) = controller.cgroup(pid, quota);
        std::fs::create_dir(&dir).with_context(|| {
            format!(
                "--node-cpus: making the cgroup {} (this needs root and a writable cgroup filesystem)",
                dir.display()
            )
        })?;
        // From here the cgroup is removed again on any error (Drop).
        let cap = Cap { dir };
        for (file, value) in settings {
            set(&cap.dir.join(file), &value)
                .with_context(|| format!("--node-cpus: setting {file}"))?;
        }
        set(&cap.dir.join("cgroup.procs"), &pid.to_string())
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
    fn the_cpus_are_the_numbered_lines_not_the_sum_of_them() {
        let stat = "cpu  30 0 6 35 1 0 0 0 0 0\ncpu0 14 0 3 18 0 0 0 0 0 0\ncpu1 16 0 3 17 1 0 0 0 0 0\nintr 1 2\nctxt 9\n";
        assert_eq!(parse_stat(stat), Some((2, 36, 72)));
    }

    #[test]
    fn the_machine_line_counts_idle_and_iowait_as_not_busy() {
        assert_eq!(parse_machine("cpu  10 0 5 80 5 0 0 0 0 0"), Some((15, 100)));
        assert_eq!(parse_machine("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn the_time_spent_is_shared_out_per_transfer_in_milliseconds_of_one_core() {
        let at = Instant::now();
        let before = Ticks {
            at,
            cpus: 4,
            busy: 0,
            total: 0,
            nodes: 0,
            database: Some(0),
            load: 0,
        };
        // Four cores for one second is 400 ticks of 10 ms (the count of cores is the
        // reading's, not this process's); the nodes took 50 of them (0.5 s), over 100
        // transfers: 5 ms each.
        let after = Ticks {
            at: at + Duration::from_secs(1),
            busy: 300,
            total: 400,
            nodes: 50,
            database: Some(20),
            load: 10,
            ..before
        };
        let s = between(Some(before), Some(after), 100).unwrap();
        assert_eq!(s.busy_percent, 75.0);
        assert!((s.nodes_ms - 5.0).abs() < 1e-9, "{}", s.nodes_ms);
        assert!((s.database_ms.unwrap() - 2.0).abs() < 1e-9);
        assert!((s.load_ms - 1.0).abs() < 1e-9);
        // No database process on this machine: not measured, rather than nothing spent.
        let elsewhere = between(
            Some(Ticks {
                database: None,
                ..before
            }),
            Some(Ticks {
                database: None,
                ..after
            }),
            100,
        )
        .unwrap();
        assert!(elsewhere.database_ms.is_none());
        assert!(between(Some(after), Some(after), 1).is_none());
        assert!(between(None, Some(after), 1).is_none());
    }

    /// A process that would take a whole core, capped at a tenth of one, gets no more than its
    /// share (an upper bound, which a busy machine cannot break), and its cgroup is gone after.
    /// Skipped, loudly, only where no CPU cgroup can be made at all (not root, or no
    /// controller): any other failure to cap fails the test.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_capped_process_gets_no_more_than_its_share() {
        let controller = match Controller::find() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: no CPU cgroup controller here ({e:#})");
                return;
            }
        };
        let (probe, _) = controller.cgroup(std::process::id(), 1000);
        match std::fs::create_dir(&probe) {
            Ok(()) => std::fs::remove_dir(&probe).unwrap(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                eprintln!("SKIPPED: no CPU cgroup can be made here ({e})");
                return;
            }
            Err(e) => panic!("making {}: {e}", probe.display()),
        }
        /// The busy loop, killed however the test ends (declared after the cgroup's variable,
        /// so that it is dropped first and the cgroup can go).
        struct Spin(std::process::Child);
        impl Drop for Spin {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let cap: Cap;
        let mut spin = Spin(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        );
        let pid = spin.0.id();
        cap = Cap::new(pid, 0.1).unwrap();
        let dir = cap.dir.clone();
        let before = (process(&pid.to_string()).unwrap().own, machine().unwrap());
        std::thread::sleep(Duration::from_millis(1500));
        let after = (process(&pid.to_string()).unwrap().own, machine().unwrap());
        spin.0.kill().unwrap();
        spin.0.wait().unwrap();
        drop(cap);
        // The machine's ticks are every core's: the process's share of one core, with a
        // period's grace for where the readings fall.
        let cpus = after.1.0 as f64;
        let share = (after.0 - before.0) as f64 * cpus / (after.1.2 - before.1.2) as f64;
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
        // Some CPU time of this process's own to see.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let t = read(&[std::process::id()]).unwrap();
        // Affinity and quotas can only lower what this process may use, never the machine's.
        assert!(t.cpus >= std::thread::available_parallelism().unwrap().get() as u64);
        assert!(t.busy <= t.total && t.total > 0);
        assert!(t.load > 0, "this process's CPU time was not read");
        // This process, named as a node, is read after itself as the load generator.
        assert!(t.nodes >= t.load);
    }
}
