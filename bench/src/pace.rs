//! The host's pace: how fast this machine runs a fixed piece of work now, against how fast
//! it ran it when the harness started.
//!
//! On a shared host a step can run slow with nothing here busy and no steal in
//! `/proc/stat`: an SMT sibling or a neighbour's cache traffic takes part of every cycle
//! without taking the core. Sessions 28-31 saw every process's CPU per message double for a
//! few steps that way. A thread of the harness times a unit of work ([`timed`]) every
//! [`EVERY`] by its own CPU clock (time on a core: neither a wait for the core nor, where the
//! kernel accounts it, stolen time counts). A step's speed is the reference time over the step's
//! median, in percent: 100 is the machine as it started, 50 a step where the same work took
//! twice the CPU. The suite's own load on the other core counts too (the two cores may be
//! one physical core's two threads), so a busy step reads lower on a quiet host as well:
//! compare a step with the same step of another run.
//!
//! A host can also make the kernel's paths dearer and leave the cores' speed alone (session
//! 32's host: the probe's unit at full speed, the floor's concurrent round trips at 2.5×
//! their CPU, every process at twice its CPU per message). So each reading also times
//! [`ROUND_TRIPS`] round trips between two threads that wake each other through a channel
//! (futex waits and wakes, the scheduler, an interrupt to wake the other core), by both
//! threads' CPU: the wake-up speed, read the same way. The two threads are pinned to two
//! different cores, as the suite's processes mostly are when one wakes another: left to
//! the scheduler, they shared a core at some starts and not at others, and the same host
//! read 3 or 35 µs per round trip by where they landed (session 33).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How often the probe takes a reading (a unit of work, then the wake-up round trips).
const EVERY: Duration = Duration::from_millis(250);

/// Readings taken back to back for the reference, at the harness's start.
const REFERENCE_UNITS: usize = 15;

/// Entries of the chain a unit walks: 128 KiB of `u32`, in a core's L2 cache.
const CHAIN: usize = 32 * 1024;

/// Steps of the walk in one unit (about half a millisecond on a current server core): short,
/// so that the probe seldom holds a core a process of the suite waits for.
const STEPS: usize = 100_000;

/// Round trips between the probe's two threads in one wake-up reading.
const ROUND_TRIPS: usize = 50;

/// One reading of the probe, in ns of CPU.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// One unit of work on one thread ([`timed`]).
    unit: u64,
    /// One round trip between two threads that wake each other, both threads' CPU
    /// ([`Waker::round_trip_ns`]); `None` when the partner thread is gone.
    wake: Option<u64>,
}

/// The probe: its reference and every reading since.
struct Probe {
    reference: Reference,
    samples: Mutex<Vec<Sample>>,
}

/// The probe's readings at the harness's start, in ns of CPU: medians of
/// [`REFERENCE_UNITS`].
#[derive(Debug, Clone, Copy, Default)]
struct Reference {
    unit: f64,
    wake: f64,
}

static PROBE: OnceLock<Probe> = OnceLock::new();

/// The host's speed over an interval, against the harness's start, in percent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Speed {
    /// Of a core running the unit of work: 50 when it took twice the CPU.
    pub cores: Option<f64>,
    /// Of two threads waking each other (futex waits and wakes, the scheduler, the
    /// interrupts between cores: what every hop of the suite pays), by their CPU.
    pub wake_ups: Option<f64>,
}

/// Starts the probe once per harness process: a thread pinned to a core takes the
/// reference (blocking the caller until it has, some 30 ms), then a reading every
/// [`EVERY`]; its partner in the wake-up round trips is pinned to another core. Call it
/// before the suite starts, while the machine is as quiet as it will be.
pub fn start() {
    PROBE.get_or_init(|| {
        let (core, partner_core) = cores().unzip();
        let (sent, taken) = std::sync::mpsc::channel();
        let spawned = spawn_pinned("pace probe", core, move || {
            let chain = chain();
            let waker = Waker::start(partner_core);
            if sent.send(reference(&chain, waker.as_ref())).is_err() {
                return;
            }
            loop {
                std::thread::sleep(EVERY);
                let wake = waker.as_ref().and_then(Waker::round_trip_ns);
                if let (Some(unit), Some(probe)) = (timed(&chain), PROBE.get()) {
                    probe
                        .samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Sample { unit, wake });
                }
            }
        });
        let reference = match spawned {
            Ok(_) => taken.recv().unwrap_or_default(),
            Err(e) => {
                eprintln!("the host pace probe did not start: {e}");
                Reference::default()
            }
        };
        Probe {
            reference,
            samples: Mutex::new(Vec::new()),
        }
    });
}

/// The medians of [`REFERENCE_UNITS`] readings taken back to back.
fn reference(chain: &[u32], waker: Option<&Waker>) -> Reference {
    let mut units = Vec::new();
    let mut wakes = Vec::new();
    for _ in 0..REFERENCE_UNITS {
        units.extend(timed(chain));
        wakes.extend(waker.and_then(Waker::round_trip_ns));
    }
    Reference {
        unit: median(&mut units).unwrap_or(0) as f64,
        wake: median(&mut wakes).unwrap_or(0) as f64,
    }
}

/// The first two cores this process may run on, for the probe and its partner; the same
/// one twice when it may run on one only. `None` when the mask cannot be read.
fn cores() -> Option<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cores = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
    let first = cores.next()?;
    Some((first, cores.next().unwrap_or(first)))
}

/// Starts a thread named `name` that pins itself to `core` (if given), then runs `body`.
fn spawn_pinned(
    name: &str,
    core: Option<usize>,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Some(core) = core {
                pin_to(core);
            }
            body();
        })
}

/// Pins the calling thread to `core`; a probe left to roam still reads, so a failure is
/// only said.
fn pin_to(core: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("the host pace probe could not pin a thread to core {core}: {e}");
    }
}

/// How many readings the probe has taken so far: a mark to read a step's speed between.
pub fn mark() -> usize {
    PROBE.get().map_or(0, |p| {
        p.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    })
}

/// The host's speed between two marks (see the module); each figure `None` without a
/// probe or with fewer than three readings in between.
pub fn speed(from: usize, to: usize) -> Speed {
    let Some(probe) = PROBE.get() else {
        return Speed::default();
    };
    let samples = probe.samples.lock().unwrap_or_else(|e| e.into_inner());
    let between = samples.get(from..to.min(samples.len())).unwrap_or_default();
    let mut units: Vec<u64> = between.iter().map(|s| s.unit).collect();
    let mut wakes: Vec<u64> = between.iter().filter_map(|s| s.wake).collect();
    drop(samples);
    Speed {
        cores: speed_of(probe.reference.unit, &mut units),
        wake_ups: speed_of(probe.reference.wake, &mut wakes),
    }
}

/// The reference readings, in µs of CPU: one unit of work, and one wake-up round trip
/// (`None` without a probe or a reading).
pub fn reference_us() -> (Option<f64>, Option<f64>) {
    let us = |ns: f64| (ns > 0.0).then_some(ns / 1000.0);
    PROBE.get().map_or((None, None), |p| {
        (us(p.reference.unit), us(p.reference.wake))
    })
}

/// The median of `values`.
fn median(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// `reference_ns` over the median of `times`, in percent.
fn speed_of(reference_ns: f64, times: &mut [u64]) -> Option<f64> {
    if times.len() < 3 || reference_ns <= 0.0 {
        return None;
    }
    let median = median(times)?;
    (median > 0).then(|| reference_ns * 100.0 / median as f64)
}

/// A random single cycle through [`CHAIN`] entries (Sattolo's shuffle, a fixed seed), so
/// each load of the walk depends on the one before and no prefetcher guesses the next.
fn chain() -> Vec<u32> {
    let mut next: Vec<u32> = (0..CHAIN as u32).collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..CHAIN).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % i as u64) as usize;
        next.swap(i, j);
    }
    next
}

/// `steps` dependent loads along `chain`, each mixed into a hash.
fn walk(chain: &[u32], steps: usize) -> u64 {
    let mut at = 0usize;
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for _ in 0..steps {
        at = chain[at] as usize;
        hash = (hash ^ at as u64).wrapping_mul(0x0100_0000_01B3);
    }
    hash
}

/// The CPU time of one unit on this thread, in ns: [`STEPS`] loads of the walk, timed
/// after a first pass through the whole chain, untimed, has brought it back into the cache
/// (the suite evicts it between units: a cold start would time the memory, not the core).
fn timed(chain: &[u32]) -> Option<u64> {
    std::hint::black_box(walk(std::hint::black_box(chain), CHAIN));
    let before = thread_cpu_ns()?;
    std::hint::black_box(walk(std::hint::black_box(chain), STEPS));
    thread_cpu_ns()?.checked_sub(before)
}

/// The probe's second thread: it answers each token the probe sends with its own CPU
/// clock, so a round trip is a wake-up each way and both threads' CPU is known.
struct Waker {
    to: std::sync::mpsc::Sender<()>,
    from: std::sync::mpsc::Receiver<Option<u64>>,
}

impl Waker {
    /// Starts the partner thread, pinned to `core` if given; `None` when it cannot be
    /// started.
    fn start(core: Option<usize>) -> Option<Waker> {
        let (to, tokens) = std::sync::mpsc::channel::<()>();
        let (answers, from) = std::sync::mpsc::channel();
        let spawned = spawn_pinned("pace partner", core, move || {
            while tokens.recv().is_ok() {
                if answers.send(thread_cpu_ns()).is_err() {
                    break;
                }
            }
        });
        match spawned {
            Ok(_) => Some(Waker { to, from }),
            Err(e) => {
                eprintln!("the host pace probe's partner did not start: {e}");
                None
            }
        }
    }

    /// The CPU of one round trip, both threads', in ns: the mean over [`ROUND_TRIPS`],
    /// after a first one whose answer gives the partner's clock at the start.
    fn round_trip_ns(&self) -> Option<u64> {
        self.to.send(()).ok()?;
        let partner_start = self.from.recv().ok()??;
        let start = thread_cpu_ns()?;
        let mut partner_end = partner_start;
        for _ in 0..ROUND_TRIPS {
            self.to.send(()).ok()?;
            partner_end = self.from.recv().ok()??;
        }
        let own = thread_cpu_ns()?.checked_sub(start)?;
        let partner = partner_end.checked_sub(partner_start)?;
        Some((own + partner) / ROUND_TRIPS as u64)
    }
}

/// This thread's time on a core so far, in ns (`CLOCK_THREAD_CPUTIME_ID`, which brings the
/// running thread's count up to date; its `/proc/thread-self/schedstat` lags by up to a
/// scheduler tick while it runs).
fn thread_cpu_ns() -> Option<u64> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(seconds * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_one_cycle_through_every_entry() {
        let chain = chain();
        let mut seen = vec![false; CHAIN];
        let mut at = 0usize;
        for _ in 0..CHAIN {
            assert!(!seen[at], "entry {at} visited twice");
            seen[at] = true;
            at = chain[at] as usize;
        }
        assert_eq!(at, 0, "the walk comes back to its start");
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn a_unit_takes_cpu_time_on_this_thread() {
        let chain = chain();
        let ns = timed(&chain).expect("this thread's schedstat");
        assert!(ns > 0, "a unit of {STEPS} loads took no time");
    }

    #[test]
    fn a_wake_up_round_trip_costs_both_threads_cpu() {
        let waker = Waker::start(None).expect("the partner thread");
        let ns = waker.round_trip_ns().expect("a round trip");
        assert!(ns > 0, "{ROUND_TRIPS} round trips took no CPU");
        // The partner answers as long as the probe holds its end.
        assert!(waker.round_trip_ns().is_some());
    }

    #[test]
    fn the_probe_and_its_partner_are_pinned_to_two_cores_where_there_are_two() {
        let (core, partner) = cores().expect("this process's affinity mask");
        let allowed = rustix::thread::sched_getaffinity(None).expect("the mask");
        assert!(allowed.is_set(core) && allowed.is_set(partner));
        assert_eq!(core == partner, allowed.count() == 1, "{core}, {partner}");
        // A pinned thread runs on its core, and only there.
        let (sent, on) = std::sync::mpsc::channel();
        spawn_pinned("pinned", Some(partner), move || {
            let mask = rustix::thread::sched_getaffinity(None).expect("the mask");
            let _ = sent.send((rustix::thread::sched_getcpu(), mask.count()));
        })
        .expect("a thread")
        .join()
        .expect("the pinned thread");
        assert_eq!(on.recv().expect("its core"), (partner, 1));
    }

    #[test]
    fn speed_is_the_reference_over_the_median() {
        assert_eq!(speed_of(1000.0, &mut [2000, 1000, 4000]), Some(50.0));
        assert_eq!(
            speed_of(1000.0, &mut [900, 1000, 1100, 1000, 5000]),
            Some(100.0)
        );
        // Too few units, or no reference: no reading.
        assert_eq!(speed_of(1000.0, &mut [1000, 1000]), None);
        assert_eq!(speed_of(0.0, &mut [1000, 1000, 1000]), None);
    }
}
