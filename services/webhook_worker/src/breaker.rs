//! Per-target circuit breakers: a target origin (scheme, host and port) that keeps failing
//! gets no attempts for a while, so its deliveries cost no connection, no timeout and no
//! slot. A delivery held back this way uses up no attempt: the worker parks it on the
//! broker until the circuit lets a probe through (see `Worker::hold`).
//!
//! A circuit is *closed* (attempts go through) until `failures` attempts in a row fail
//! (a timeout, a connection error, a 5xx or a 429); it is then *open* for `cool_down`,
//! during which deliveries to the target are short-circuited. After the cool-down it is
//! *half-open*: one attempt at a time (the probe: a real pending delivery, whichever comes
//! first) goes through, the others are still short-circuited; a probe that succeeds closes
//! the circuit, one that fails opens it for another cool-down. State is per worker and in
//! memory: every replica learns on its own.
//!
//! Metrics: `webhook_circuits{state}` (how many targets are `open`, `half_open`, or
//! `closed` with failures counted) and `webhook_circuit_short_circuits_total`; the labels
//! are bounded (no target names).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limiter::Origin;

/// Targets tracked before closed ones are forgotten.
const SWEEP_ABOVE: usize = 10_000;

/// Longest wait suggested to a delivery held back while a probe is under way: a probe
/// usually answers well within it, and the held deliveries should follow soon after.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// The state of one target's circuit. A target not in the map is closed with no failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The circuit breakers of every target this worker delivers to.
#[derive(Debug)]
pub(crate) struct Breakers {
    failures: u32,
    cool_down: Duration,
    circuits: Mutex<HashMap<String, Circuit>>,
}

/// Whether an attempt may go to a target.
#[derive(Debug)]
pub(crate) enum Admission<'a> {
    /// Go ahead; report the outcome on the pass.
    Pass(Pass<'a>),
    /// The circuit is open (or half-open with its probe under way): do not attempt.
    Open {
        /// How long to hold the delivery back before it comes to the circuit again: a
        /// whole cool-down while the circuit is open, or (a probe under way) a quarter of
        /// it, at most [`PROBE_WAIT`].
        ///
        /// A whole cool-down, not the rest of it: held deliveries then come back at the
        /// pace they were held, in the order they were held, the first of them when the
        /// cool-down ends (the probe). Had each waited for the rest of the cool-down,
        /// every delivery held during it would come back at the same instant, to be held
        /// again at once if the probe fails: a burst of work, every cool-down, that
        /// delays the healthy targets' deliveries. The price: a target that recovers gets
        /// its held deliveries within two cool-downs rather than one.
        hold_for: Duration,
    },
}

/// Permission for one attempt. Report its outcome with [`Pass::report`]; a pass dropped
/// unreported (the attempt was not made) gives its probe back.
#[derive(Debug)]
pub(crate) struct Pass<'a> {
    breakers: &'a Breakers,
    key: String,
    probe: bool,
    reported: bool,
}

/// Whether an attempt's outcome counts against its target: no answer (timeout,
/// connection or guard error), a 5xx or a 429. Other answers show the target is up.
pub(crate) fn target_failed(status_code: Option<u16>) -> bool {
    match status_code {
        None => true,
        Some(code) => code == 429 || code >= 500,
    }
}

impl Breakers {
    /// Breakers that open after `failures` failures in a row and stay open `cool_down`.
    pub(crate) fn new(failures: u32, cool_down: Duration) -> Self {
        Breakers {
            failures: failures.max(1),
            cool_down,
            circuits: Mutex::new(HashMap::new()),
        }
    }

    /// How long an open circuit stays open.
    pub(crate) fn cool_down(&self) -> Duration {
        self.cool_down
    }

    /// Whether an attempt at `origin` may be made now.
    pub(crate) fn admit(&self, origin: &Origin) -> Admission<'_> {
        let key = origin.as_str();
        let pass = |probe| {
            Admission::Pass(Pass {
                breakers: self,
                key: key.to_owned(),
                probe,
                reported: false,
            })
        };
        let Ok(mut circuits) = self.circuits.lock() else {
            return pass(false);
        };
        match circuits.get(key).copied() {
            None | Some(Circuit::Closed { .. }) => pass(false),
            Some(Circuit::Open { until }) if Instant::now() < until => {
                metrics::counter!("webhook_circuit_short_circuits_total").increment(1);
                Admission::Open {
                    hold_for: self.cool_down,
                }
            }
            Some(Circuit::Open { .. }) | Some(Circuit::HalfOpen { probing: false }) => {
                circuits.insert(key.to_owned(), Circuit::HalfOpen { probing: true });
                export(&circuits);
                pass(true)
            }
            Some(Circuit::HalfOpen { probing: true }) => {
                metrics::counter!("webhook_circuit_short_circuits_total").increment(1);
                Admission::Open {
                    hold_for: (self.cool_down / 4).min(PROBE_WAIT),
                }
            }
        }
    }

    fn report(&self, key: &str, probe: bool, failed: bool) {
        let Ok(mut circuits) = self.circuits.lock() else {
            return;
        };
        let before = circuits.get(key).copied();
        let after = match (before, failed) {
            // A probe decides; other attempts (made before the circuit opened) do not.
            (Some(Circuit::HalfOpen { .. }), true) if probe => Some(Circuit::Open {
                until: Instant::now() + self.cool_down,
            }),
            (Some(Circuit::HalfOpen { .. }), false) if probe => None,
            (Some(open @ (Circuit::Open { .. } | Circuit::HalfOpen { .. })), _) => Some(open),
            (None | Some(Circuit::Closed { .. }), false) => None,
            (None, true) => Some(self.counted(1)),
            (Some(Circuit::Closed { failures }), true) => {
                Some(self.counted(failures.saturating_add(1)))
            }
        };
        if after == before {
            return;
        }
        match after {
            Some(circuit) => {
                if circuits.len() > SWEEP_ABOVE {
                    circuits.retain(|_, c| !matches!(c, Circuit::Closed { .. }));
                }
                if matches!(circuit, Circuit::Open { .. }) {
                    tracing::info!(target = %key, cool_down_ms = self.cool_down.as_millis() as u64, "circuit opened: deliveries to the target are short-circuited");
                }
                circuits.insert(key.to_owned(), circuit);
            }
            None => {
                if before.is_some_and(|c| !matches!(c, Circuit::Closed { .. })) {
                    tracing::info!(target = %key, "circuit closed: the probe succeeded");
                }
                circuits.remove(key);
            }
        }
        export(&circuits);
    }

    /// A probe given back unused.
    fn release(&self, key: &str) {
        let Ok(mut circuits) = self.circuits.lock() else {
            return;
        };
        if let Some(circuit @ Circuit::HalfOpen { probing: true }) = circuits.get_mut(key) {
            *circuit = Circuit::HalfOpen { probing: false };
            export(&circuits);
        }
    }

    /// The state after `failures` failures in a row.
    fn counted(&self, failures: u32) -> Circuit {
        if failures >= self.failures {
            Circuit::Open {
                until: Instant::now() + self.cool_down,
            }
        } else {
            Circuit::Closed { failures }
        }
    }
}

impl Pass<'_> {
    /// Whether this attempt is the probe of a half-open circuit.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the attempt's outcome: `failed` as [`target_failed`] says.
    pub(crate) fn report(mut self, failed: bool) {
        self.reported = true;
        self.breakers.report(&self.key, self.probe, failed);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breakers.release(&self.key);
        }
    }
}

/// Sets the `webhook_circuits{state}` gauges from the map (called on state changes only).
fn export(circuits: &HashMap<String, Circuit>) {
    let (mut closed, mut open, mut half_open) = (0u32, 0u32, 0u32);
    for circuit in circuits.values() {
        match circuit {
            Circuit::Closed { .. } => closed += 1,
            Circuit::Open { .. } => open += 1,
            Circuit::HalfOpen { .. } => half_open += 1,
        }
    }
    metrics::gauge!("webhook_circuits", "state" => "closed").set(f64::from(closed));
    metrics::gauge!("webhook_circuits", "state" => "open").set(f64::from(open));
    metrics::gauge!("webhook_circuits", "state" => "half_open").set(f64::from(half_open));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(b: &Breakers, target: &Origin) {
        match b.admit(target) {
            Admission::Pass(pass) => pass.report(true),
            Admission::Open { .. } => panic!("{target} refused"),
        }
    }

    fn is_open(b: &Breakers, target: &Origin) -> bool {
        matches!(b.admit(target), Admission::Open { .. })
    }

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let b = Breakers::new(3, Duration::from_secs(60));
        let a = &Origin::of("http://a.example:8080/hook");
        fail(&b, a);
        fail(&b, a);
        match b.admit(a) {
            Admission::Pass(pass) => pass.report(false),
            Admission::Open { .. } => panic!("open too early"),
        }
        fail(&b, a);
        fail(&b, a);
        assert!(!is_open(&b, a));
        fail(&b, &Origin::of("http://a.example:8080/other-path"));
        assert!(is_open(&b, a), "three failures of one origin in a row");
        assert!(
            !is_open(&b, &Origin::of("http://a.example:8081/hook")),
            "another port"
        );
        assert!(target_failed(None) && target_failed(Some(500)) && target_failed(Some(429)));
        assert!(!target_failed(Some(200)) && !target_failed(Some(404)));
    }

    #[test]
    fn half_open_lets_one_probe_through_which_closes_or_reopens() {
        let b = Breakers::new(1, Duration::ZERO);
        let a = &Origin::of("https://a.example/hook");
        fail(&b, a);
        // Cool-down over: one probe, the others still refused.
        let Admission::Pass(probe) = b.admit(a) else {
            panic!("no probe")
        };
        assert!(probe.is_probe());
        assert!(is_open(&b, a));
        // A probe given back unused lets the next attempt probe.
        drop(probe);
        let Admission::Pass(probe) = b.admit(a) else {
            panic!("no probe after release")
        };
        probe.report(true);
        let Admission::Pass(probe) = b.admit(a) else {
            panic!("no probe after reopening")
        };
        assert!(probe.is_probe());
        probe.report(false);
        let Admission::Pass(pass) = b.admit(a) else {
            panic!("closed circuit refused")
        };
        assert!(!pass.is_probe());
        drop(pass);
        assert!(!is_open(&b, a));
    }

    #[test]
    fn an_open_circuit_stays_open_for_the_cool_down() {
        let b = Breakers::new(2, Duration::from_secs(60));
        let a = &Origin::of("https://a.example/hook");
        let Admission::Pass(late) = b.admit(a) else {
            panic!("refused")
        };
        fail(&b, a);
        fail(&b, a);
        assert!(is_open(&b, a));
        // An attempt made before the circuit opened does not close it.
        late.report(false);
        assert!(is_open(&b, a));
    }

    #[test]
    fn a_refused_attempt_is_held_a_whole_cool_down_or_a_moment_while_a_probe_is_under_way() {
        let b = Breakers::new(1, Duration::from_millis(400));
        let a = &Origin::of("https://a.example/hook");
        fail(&b, a);
        // Held a whole cool-down, wherever in the cool-down it came: held deliveries come
        // back at the pace they were held, not all at once.
        let Admission::Open { hold_for } = b.admit(a) else {
            panic!("not open")
        };
        assert_eq!(hold_for, Duration::from_millis(400));
        std::thread::sleep(Duration::from_millis(200));
        let Admission::Open { hold_for } = b.admit(a) else {
            panic!("not open")
        };
        assert_eq!(hold_for, Duration::from_millis(400), "not the rest of it");
        std::thread::sleep(Duration::from_millis(250));
        let Admission::Pass(probe) = b.admit(a) else {
            panic!("no probe after the cool-down")
        };
        // While the probe is under way, come back after a quarter of the cool-down.
        let Admission::Open { hold_for } = b.admit(a) else {
            panic!("a second probe")
        };
        assert_eq!(hold_for, Duration::from_millis(100));
        probe.report(false);
        assert!(!is_open(&b, a));
    }
}
