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

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How often the probe runs its unit while a scenario runs.
const EVERY: Duration = Duration::from_millis(250);

/// Units run back to back for the reference, at the harness's start.
const REFERENCE_UNITS: usize = 15;

/// Entries of the chain a unit walks: 128 KiB of `u32`, in a core's L2 cache.
const CHAIN: usize = 32 * 1024;

/// Steps of the walk in one unit (about half a millisecond on a current server core): short,
/// so that the probe seldom holds a core a process of the suite waits for.
const STEPS: usize = 100_000;

/// The probe: its reference and every unit's time since, in ns of CPU.
struct Probe {
    reference_ns: f64,
    samples: Mutex<Vec<u64>>,
}

static PROBE: OnceLock<Probe> = OnceLock::new();

/// Starts the probe once per harness process: times the reference on the calling thread,
/// then keeps timing a unit every [`EVERY`] on a thread of its own. Call it before the
/// suite starts, while the machine is as quiet as it will be.
pub fn start() {
    PROBE.get_or_init(|| {
        let chain = chain();
        let mut times: Vec<u64> = (0..REFERENCE_UNITS).filter_map(|_| timed(&chain)).collect();
        times.sort_unstable();
        let reference_ns = times.get(times.len() / 2).copied().unwrap_or(0) as f64;
        let spawned = std::thread::Builder::new()
            .name("pace probe".to_owned())
            .spawn(move || loop {
                std::thread::sleep(EVERY);
                if let (Some(ns), Some(probe)) = (timed(&chain), PROBE.get()) {
                    probe
                        .samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(ns);
                }
            });
        if let Err(e) = spawned {
            eprintln!("the host pace probe did not start: {e}");
        }
        Probe {
            reference_ns,
            samples: Mutex::new(Vec::new()),
        }
    });
}

/// How many units the probe has timed so far: a mark to read a step's speed between.
pub fn mark() -> usize {
    PROBE.get().map_or(0, |p| {
        p.samples.lock().unwrap_or_else(|e| e.into_inner()).len()
    })
}

/// The host's speed between two marks, in percent of the reference (see the module);
/// `None` without a probe or with fewer than three units timed in between.
pub fn speed_percent(from: usize, to: usize) -> Option<f64> {
    let probe = PROBE.get()?;
    let samples = probe.samples.lock().unwrap_or_else(|e| e.into_inner());
    let mut between: Vec<u64> = samples.get(from..to.min(samples.len()))?.to_vec();
    drop(samples);
    speed_of(probe.reference_ns, &mut between)
}

/// The reference time of one unit, in µs (`None` without a probe).
pub fn reference_us() -> Option<f64> {
    PROBE
        .get()
        .filter(|p| p.reference_ns > 0.0)
        .map(|p| p.reference_ns / 1000.0)
}

/// `reference_ns` over the median of `times`, in percent.
fn speed_of(reference_ns: f64, times: &mut [u64]) -> Option<f64> {
    if times.len() < 3 || reference_ns <= 0.0 {
        return None;
    }
    times.sort_unstable();
    let median = times[times.len() / 2];
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
