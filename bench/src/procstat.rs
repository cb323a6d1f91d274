//! CPU time and memory of the processes a scenario loads, read from `/proc`: the suite
//! (`smooch all`, or every process of a split suite, summed and by role), this harness
//! with the other processes it starts (the floor's echo server), and the Postgres, RabbitMQ
//! and Redis servers.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

/// The processes whose CPU a scenario reports, by name.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The suite's pids, when the harness knows them (it started the suite, or
    /// `--suite-pid`), each with its group: `smooch` for `smooch all`, `smooch/<role>` for
    /// a process of a split suite (counted in `smooch` too).
    pub suite: Vec<(u32, &'static str)>,
    /// Clock ticks per second of `utime`/`stime`.
    ticks_per_second: f64,
}

/// Cumulative CPU ticks and wake-ups of each watched group at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    ticks: BTreeMap<&'static str, u64>,
    /// Voluntary context switches of the group's live threads (see [`wakeups`]).
    wakeups: BTreeMap<&'static str, u64>,
    /// The machine's CPU time so far (see [`machine_time`]).
    machine: Option<MachineTime>,
    /// The host pace probe's units so far ([`crate::pace::mark`]).
    pace: usize,
}

/// The machine's CPU time so far, all cores, in clock ticks (`/proc/stat`'s `cpu` line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MachineTime {
    /// Every state's ticks: user, nice, system, idle, iowait, irq, softirq, steal.
    total: u64,
    /// Ticks the hypervisor ran something else while this machine had work to run.
    steal: u64,
}

/// The machine's CPU time so far, from `/proc/stat`.
fn machine_time() -> Option<MachineTime> {
    parse_machine_time(&fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of a `/proc/stat` text: `cpu user nice system idle iowait irq softirq
/// steal guest guest_nice`. Guest time is already counted in user and nice, so it is left
/// out of the total.
fn parse_machine_time(stat: &str) -> Option<MachineTime> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    Some(MachineTime {
        total: fields.iter().sum(),
        steal: fields.get(7).copied().unwrap_or(0),
    })
}

/// The share of the machine's CPU time between two snapshots that the hypervisor gave to
/// other guests (steal), in percent: time this VM's cores were ready to run and did not.
/// On a shared host it is what stalls a run without anything here being busy. `None` when
/// either snapshot has no reading.
fn steal_percent(before: &Snapshot, after: &Snapshot) -> Option<f64> {
    let (b, a) = (before.machine?, after.machine?);
    let total = a.total.checked_sub(b.total).filter(|t| *t > 0)?;
    Some(a.steal.saturating_sub(b.steal) as f64 * 100.0 / total as f64)
}

/// What the host did over an interval, beside the CPU measured in it: how far the
/// figures measured over the same interval can be trusted.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Host {
    /// The share of the machine's CPU time the hypervisor gave to other guests, in percent
    /// ([`steal_percent`]): a stall with nothing here busy shows in it.
    pub steal_percent: Option<f64>,
    /// The cores' speed, in percent of the harness's start ([`crate::pace`]): a stall that
    /// takes part of every cycle without taking the core shows in it.
    pub speed_percent: Option<f64>,
    /// The speed of wake-ups between threads, in percent of the harness's start
    /// ([`crate::pace`]): the kernel's paths made dearer with the cores at full speed show
    /// in it.
    pub wake_speed_percent: Option<f64>,
}

/// CPU seconds per 1,000 operations of one process group over an interval.
#[derive(Debug, Clone, Serialize)]
pub struct CpuCost {
    /// `smooch`, `bench`, `postgres`, `rabbitmq` or `redis`; with a split suite also
    /// `smooch/<role>` (the processes of one role, already counted in `smooch`).
    pub process: &'static str,
    /// CPU seconds (user + system) spent in the interval.
    pub cpu_seconds: f64,
    /// CPU seconds per 1,000 operations.
    pub per_1000_ops: f64,
    /// Average cores busy over the interval.
    pub cores: f64,
    /// Times a thread of the group went to sleep and was woken again, per operation
    /// (voluntary context switches of its live threads; see [`wakeups`]).
    pub wakeups_per_op: f64,
}

/// The CPU groups of a split suite's roles, by role.
const ROLE_GROUPS: [(&str, &str); 7] = [
    ("users", "smooch/users"),
    ("conversations", "smooch/conversations"),
    ("media", "smooch/media"),
    ("webhooks", "smooch/webhooks"),
    ("webhook-worker", "smooch/webhook-worker"),
    ("push", "smooch/push"),
    ("gateway", "smooch/gateway"),
];

/// The CPU group of the processes of `role` in a split suite (`smooch/<role>`).
pub fn role_group(role: &str) -> &'static str {
    ROLE_GROUPS
        .iter()
        .find(|(r, _)| *r == role)
        .map(|(_, group)| *group)
        .unwrap_or("smooch/other")
}

/// The role of a CPU group of a split suite: `smooch/users` → `users`.
pub fn group_role(group: &str) -> Option<&str> {
    group.strip_prefix("smooch/")
}

/// `(comm, utime + stime, cutime + cstime, ppid)` of one process.
fn stat(pid: u32) -> Option<(String, u64, u64, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may hold spaces: split after the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // Fields after comm, 0-based: 0 state, 1 ppid, ... 11 utime, 12 stime, 13 cutime, 14 cstime.
    let field = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    let ppid = u32::try_from(field(1)?).ok()?;
    Some((comm, field(11)? + field(12)?, field(13)? + field(14)?, ppid))
}

fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The group a server process belongs to, by its command name.
fn server_group(comm: &str) -> Option<&'static str> {
    match comm {
        "postgres" => Some("postgres"),
        "beam.smp" => Some("rabbitmq"),
        "redis-server" => Some("redis"),
        _ => None,
    }
}

impl Watched {
    /// Watches the suite's processes `suite` (pid and group; none if unknown) and the
    /// servers.
    pub fn new(suite: Vec<(u32, &'static str)>) -> Self {
        let ticks_per_second = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        Watched {
            suite,
            ticks_per_second,
        }
    }

    /// Cumulative CPU ticks of every group now.
    pub fn snapshot(&self) -> Snapshot {
        let mut ticks: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut woken: BTreeMap<&'static str, u64> = BTreeMap::new();
        let me = std::process::id();
        let all: Vec<(u32, (String, u64, u64, u32))> = pids()
            .into_iter()
            .filter_map(|pid| Some((pid, stat(pid)?)))
            .collect();
        for (pid, (comm, own, children, ppid)) in &all {
            if *pid == me {
                *ticks.entry("bench").or_default() += own;
            } else if let Some((_, group)) = self.suite.iter().find(|(p, _)| p == pid) {
                let times = wakeups(*pid).unwrap_or(0);
                *ticks.entry("smooch").or_default() += own;
                *woken.entry("smooch").or_default() += times;
                if *group != "smooch" {
                    *ticks.entry(group).or_default() += own;
                    *woken.entry(group).or_default() += times;
                }
            } else if let Some(group) = server_group(comm) {
                *ticks.entry(group).or_default() += own;
                *woken.entry(group).or_default() += wakeups(*pid).unwrap_or(0);
                // Postgres forks a backend per connection: the CPU of backends that have
                // exited is counted in the postmaster's (the root postgres process)
                // children's time.
                let parent_is_same = all
                    .iter()
                    .any(|(p, (c, ..))| p == ppid && server_group(c) == Some(group));
                if group == "postgres" && !parent_is_same {
                    *ticks.entry(group).or_default() += children;
                }
            } else if *ppid == me {
                // A process the harness started that is not the suite (the floor's echo
                // server): part of the load generator's side.
                *ticks.entry("bench").or_default() += own;
            }
        }
        Snapshot {
            ticks,
            wakeups: woken,
            machine: machine_time(),
            pace: crate::pace::mark(),
        }
    }

    /// CPU per 1,000 operations of each group between two snapshots `seconds` apart, with
    /// the machine's steal ([`steal_percent`]) and the host's speed
    /// ([`crate::pace::speed`]) over the same interval, which say how far those
    /// figures can be trusted.
    pub fn cost(
        &self,
        before: &Snapshot,
        after: &Snapshot,
        ops: u64,
        seconds: f64,
    ) -> (Vec<CpuCost>, Host) {
        let per_op = |n: f64| if ops == 0 { 0.0 } else { n / ops as f64 };
        let costs = after
            .ticks
            .iter()
            .map(|(process, end)| {
                let start = before.ticks.get(process).copied().unwrap_or(0);
                let cpu_seconds = end.saturating_sub(start) as f64 / self.ticks_per_second;
                let woken = |s: &Snapshot| s.wakeups.get(process).copied().unwrap_or(0);
                let wakeups = woken(after).saturating_sub(woken(before));
                CpuCost {
                    process,
                    cpu_seconds,
                    per_1000_ops: per_op(cpu_seconds * 1000.0),
                    cores: if seconds > 0.0 {
                        cpu_seconds / seconds
                    } else {
                        0.0
                    },
                    wakeups_per_op: per_op(wakeups as f64),
                }
            })
            .collect();
        let speed = crate::pace::speed(before.pace, after.pace);
        let host = Host {
            steal_percent: steal_percent(before, after),
            speed_percent: speed.cores,
            wake_speed_percent: speed.wake_ups,
        };
        (costs, host)
    }
}

/// How many times `pid`'s live threads have gone to sleep waiting for something (a socket,
/// a lock, a timer) so far: the sum of their voluntary context switches
/// (`/proc/<pid>/task/*/status`). Each is followed by a wake-up, which on a VM costs more
/// than most of the work it wakes for. A thread that ended takes its count with it, as
/// with [`cpu_ns`].
pub fn wakeups(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    // A thread that ended since the listing counts nothing.
    let total = tasks
        .filter_map(Result::ok)
        .filter_map(|task| voluntary_switches(&task.path().join("status")))
        .sum();
    Some(total)
}

/// The voluntary context switches in one thread's `status` file.
fn voluntary_switches(status: &std::path::Path) -> Option<u64> {
    let text = fs::read_to_string(status).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The CPU time `pid`'s live threads have run so far, in nanoseconds
/// (`/proc/<pid>/task/*/schedstat`): exact where `utime` and `stime` count 10 ms ticks, but
/// a thread that ended takes its time with it, so compare two readings with
/// `saturating_sub`, over a window where the process keeps its threads.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.filter_map(Result::ok) {
        // A thread that ended since the listing counts nothing.
        let Ok(text) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The suite's resident set in MiB, summed over its processes: (sum of each process's peak,
/// sum of current). With several processes the first is an upper bound of the suite's
/// peak (each process peaks at its own moment).
pub fn suite_memory_mib(pids: &[u32]) -> Option<(f64, f64)> {
    let each: Vec<(f64, f64)> = pids.iter().filter_map(|pid| memory_mib(*pid)).collect();
    (!each.is_empty()).then(|| {
        each.iter()
            .fold((0.0, 0.0), |(peak, now), (p, n)| (peak + p, now + n))
    })
}

/// A process's peak and current resident set in MiB (`VmHWM`, `VmRSS`).
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kib("VmHWM:")? / 1024.0, kib("VmRSS:")? / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU ticks of `pid` so far.
    fn ticks(pid: u32) -> u64 {
        stat(pid).expect("a live process").1
    }

    #[test]
    fn cpu_time_is_counted_in_nanoseconds() {
        let before = cpu_ns(std::process::id()).expect("this process's schedstat");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = cpu_ns(std::process::id())
            .expect("this process's schedstat")
            .saturating_sub(before);
        // 200 ms of spinning, less what a loaded machine took from this thread (at most
        // nine tenths, say), plus what the test's other threads ran meanwhile (at most two
        // cores' worth): in nanoseconds, not microseconds or ticks.
        assert!(
            (20_000_000..1_000_000_000).contains(&spent),
            "{spent} ns in 200 ms of spinning"
        );
        assert_eq!(cpu_ns(u32::MAX), None, "no such process");
    }

    #[test]
    fn each_sleep_of_a_thread_is_a_wake_up() {
        // This thread's own count: the test binary's other threads may end meanwhile and
        // take theirs with them.
        let mine = || voluntary_switches(std::path::Path::new("/proc/thread-self/status"));
        let before = mine().expect("this thread's status");
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let after = mine().expect("this thread's status");
        assert!(
            after >= before + 20,
            "{before} then {after} after 20 sleeps"
        );
        let process = wakeups(std::process::id()).expect("this process's threads");
        assert!(
            process >= after,
            "the process's {process} count this thread's {after}"
        );
        assert_eq!(wakeups(u32::MAX), None, "no such process");
    }

    #[test]
    fn steal_is_the_share_of_all_cpu_time_the_host_kept() {
        let stat = "cpu  100 5 50 800 10 1 4 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\n";
        let before = parse_machine_time(stat).expect("a cpu line");
        assert_eq!(
            before,
            MachineTime {
                total: 1000,
                steal: 30
            },
            "guest time is not counted twice"
        );
        let snapshot = |machine| Snapshot {
            machine,
            ..Snapshot::default()
        };
        let after = MachineTime {
            total: 1400,
            steal: 130,
        };
        assert_eq!(
            steal_percent(&snapshot(Some(before)), &snapshot(Some(after))),
            Some(25.0)
        );
        assert_eq!(steal_percent(&snapshot(None), &snapshot(Some(after))), None);
        assert_eq!(
            steal_percent(&snapshot(Some(after)), &snapshot(Some(after))),
            None,
            "no time passed"
        );
        assert_eq!(parse_machine_time("intr 1 2 3\n"), None);
        let here = machine_time().expect("this machine's /proc/stat");
        assert!(here.total > 0 && here.steal <= here.total);
    }

    #[test]
    fn processes_the_harness_starts_count_as_bench() {
        // A child that is neither the suite nor a server, as the floor's echo server.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("starting a busy child");
        let pid = child.id();
        let started = std::time::Instant::now();
        while ticks(pid) < 20 && started.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (mine, its) = (ticks(std::process::id()), ticks(pid));
        let snapshot = Watched::new(Vec::new()).snapshot();
        let _ = child.kill();
        let _ = child.wait();
        assert!(its >= 20, "the child ran {its} ticks in 30 s");
        let bench = snapshot.ticks.get("bench").copied().unwrap_or(0);
        assert!(
            bench >= mine + its,
            "bench {bench} ticks, the harness {mine} and its child {its}"
        );
    }
}
