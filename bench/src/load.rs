//! Open-loop load: requests start on a fixed schedule whatever the server does, and each
//! latency is measured from the request's *scheduled* start, so a stall shows up in the
//! tail instead of silently slowing the sender down (no coordinated omission).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Records `d` (saturating at the histogram's bound).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(micros);
}

/// The shape of one fixed-rate step.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Requests started per second.
    pub rate: f64,
    /// How long requests are started for.
    pub duration: Duration,
    /// The first part of `duration` whose requests are sent but not recorded.
    pub warmup: Duration,
    /// Requests in flight at most; later ones wait (and their wait counts as latency).
    pub max_in_flight: usize,
}

impl Step {
    /// How many requests the step sends.
    pub fn count(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// When request `i` is scheduled, relative to the step's start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }
}

/// What one request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The expected answer.
    Ok,
    /// Anything else: an unexpected status, a transport error, a timeout.
    Failed,
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Recorded samples.
    pub count: u64,
    /// Percentiles, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest sample, ms.
    pub max: f64,
    /// Mean, ms.
    pub mean: f64,
}

impl Latency {
    /// Summarizes a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Latency of the recorded (after warm-up) successful requests, µs.
    pub histogram: Histogram<u64>,
    /// Successful requests recorded (after warm-up).
    pub recorded_ok: u64,
    /// Failed requests after warm-up.
    pub recorded_failed: u64,
    /// From the first scheduled start to the last answer.
    pub elapsed: Duration,
    /// When the step started.
    pub started: Instant,
}

impl StepRun {
    /// What arrived downstream of the step's requests (webhook or push deliveries, as
    /// `(request seq, arrival)`): the latency from each request's scheduled send to its
    /// arrival, for requests scheduled after the warm-up, and the arrivals per second
    /// inside the recorded window.
    pub fn arrivals(
        &self,
        step: &Step,
        arrivals: impl IntoIterator<Item = (u64, Instant)>,
    ) -> (Latency, f64) {
        let mut histogram = histogram();
        let window_start = self.started + step.warmup;
        let window_end = self.started + step.duration;
        let mut in_window = 0u64;
        for (seq, at) in arrivals {
            let scheduled = self.started + step.offset(seq);
            if scheduled >= window_start {
                record(&mut histogram, at.saturating_duration_since(scheduled));
            }
            if at >= window_start && at < window_end {
                in_window += 1;
            }
        }
        let window = (step.duration - step.warmup).as_secs_f64();
        (Latency::of(&histogram), in_window as f64 / window)
    }

    /// Successful answers per second over the recorded part of the step.
    pub fn achieved_rate(&self, step: &Step) -> f64 {
        let window = (step.duration - step.warmup).as_secs_f64();
        // Answers that arrive after the schedule ended still count, but over the time it
        // took them to arrive: a server that falls behind shows a lower rate.
        let tail = self.elapsed.saturating_sub(step.duration).as_secs_f64();
        self.recorded_ok as f64 / (window + tail).max(f64::EPSILON)
    }
}

struct Tally {
    histogram: Histogram<u64>,
    ok: u64,
    failed: u64,
    recorded_ok: u64,
    recorded_failed: u64,
    last_answer: Instant,
}

/// Runs `step`: request `i` is `request(i, scheduled_at)`, started at its scheduled time.
pub async fn run<F, Fut>(step: Step, request: F) -> StepRun
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally {
        histogram: histogram(),
        ok: 0,
        failed: 0,
        recorded_ok: 0,
        recorded_failed: 0,
        last_answer: started,
    }));
    let slots = Arc::new(Semaphore::new(step.max_in_flight));
    let count = step.count();
    let warmup_end = started + step.warmup;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let scheduled = started + step.offset(i);
        tokio::time::sleep_until(scheduled.into()).await;
        let fut = request(i, scheduled);
        let tally = tally.clone();
        let slots = slots.clone();
        tasks.spawn(async move {
            // Waiting for a slot is part of the latency: it is measured from `scheduled`.
            let _permit = slots.acquire_owned().await;
            let outcome = fut.await;
            let done = Instant::now();
            let mut t = match tally.lock() {
                Ok(t) => t,
                Err(poisoned) => poisoned.into_inner(),
            };
            let recorded = scheduled >= warmup_end;
            match outcome {
                Outcome::Ok => {
                    t.ok += 1;
                    if recorded {
                        t.recorded_ok += 1;
                        record(&mut t.histogram, done - scheduled);
                    }
                }
                Outcome::Failed => {
                    t.failed += 1;
                    if recorded {
                        t.recorded_failed += 1;
                    }
                }
            }
            t.last_answer = t.last_answer.max(done);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let t = match tally.lock() {
        Ok(t) => t,
        Err(poisoned) => poisoned.into_inner(),
    };
    StepRun {
        ok: t.ok,
        failed: t.failed,
        histogram: t.histogram.clone(),
        recorded_ok: t.recorded_ok,
        recorded_failed: t.recorded_failed,
        elapsed: t.last_answer.saturating_duration_since(started),
        started,
    }
}

/// Runs `op` in a closed loop from `concurrency` tasks for `duration` (after `warmup`),
/// for the floor: how fast a dependency answers when asked as fast as it can.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    op: F,
) -> (u64, u64, Histogram<u64>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut h = histogram();
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let begun = Instant::now();
                if begun >= end {
                    break;
                }
                let outcome = op().await;
                if begun >= record_from {
                    match outcome {
                        Outcome::Ok => {
                            ok += 1;
                            record(&mut h, begun.elapsed());
                        }
                        Outcome::Failed => failed += 1,
                    }
                }
            }
            (ok, failed, h)
        });
    }
    let mut total = histogram();
    let (mut ok, mut failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        if let Ok((o, f, h)) = joined {
            ok += o;
            failed += f;
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = total.add(&h);
        }
    }
    (ok, failed, total)
}
