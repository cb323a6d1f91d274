//! `instructions`: the instructions `smooch all` executes per message at fan-out 1,
//! counted by valgrind's callgrind (see [`crate::callgrind`]), and where they go by crate.
//!
//! The suite runs under callgrind (tens of times slower), so the rate is low: 20 messages
//! a second by default. One warm-up step first posts to every user (caches, pools and
//! connections fill), then the counters are zeroed and dumped around an idle window and
//! around the measured step, which ends once every delivery has arrived. A message's
//! figure is the step's instructions less the idle window's rate over the step's length,
//! divided by the messages delivered. A run counts the same within a fraction of a
//! percent on the same binary, so it can compare two builds where CPU time cannot.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;

use super::webhooks::{measure, prepare, Shape};
use crate::callgrind::{self, Dump};
use crate::context::Ctx;
use crate::load::Step;
use crate::report::Report;

/// Crates listed by name in the table; the rest are summed as one row.
const TABLE_CRATES: usize = 25;

pub(super) async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let out_file = ctx.callgrind.clone().ok_or_else(|| {
        anyhow!(
            "the instructions scenario needs the suite under callgrind (the bench starts it so)"
        )
    })?;
    let pid = *ctx
        .suite_pids
        .first()
        .ok_or_else(|| anyhow!("the suite's pid is unknown"))?;
    let workspace = crate::suite::workspace_root();
    let rate = ctx
        .settings
        .rates
        .as_ref()
        .and_then(|r| r.first().copied())
        .unwrap_or(if ctx.smoke() { 5.0 } else { 20.0 });
    let seconds = ctx
        .settings
        .step_seconds
        .unwrap_or(if ctx.smoke() { 4.0 } else { 30.0 });
    let idle_seconds = if ctx.smoke() { 2.0 } else { 10.0 };
    let shape = Shape {
        rate,
        fan_out: 1,
        failing: 0,
    };
    let mut report = ctx.report("instructions");
    let prepared = prepare(ctx, shape).await?;

    // Warm-up: every user posts at least twice.
    let users = prepared.targets.len() as f64;
    let warmup = Step {
        rate,
        duration: Duration::from_secs_f64((2.0 * users / rate).max(seconds / 3.0)),
        warmup: Duration::ZERO,
        max_in_flight: 1024,
    };
    eprintln!("  warm-up: {} messages at {rate}/s", warmup.count());
    let mut warm = measure(ctx, shape, warmup, &prepared, &mut report).await?;
    warm.row.label = format!("warm-up: {rate} msg/s × 1 webhook under callgrind");
    if !report.failures.is_empty() {
        return Ok(report);
    }
    ctx.sink.forget(prepared.step_id);

    // What the suite does with nothing to do, per second of the window.
    callgrind::zero(pid).await?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(idle_seconds)).await;
    let idle = callgrind::dump(pid, &out_file, &workspace).await?;
    let idle_window = idle_started.elapsed().as_secs_f64();

    let step = Step {
        rate,
        duration: Duration::from_secs_f64(seconds),
        warmup: Duration::ZERO,
        max_in_flight: 1024,
    };
    callgrind::zero(pid).await?;
    let started = Instant::now();
    let mut measured = measure(ctx, shape, step, &prepared, &mut report).await?;
    let busy = callgrind::dump(pid, &out_file, &workspace).await?;
    let window = started.elapsed().as_secs_f64();

    let delivered = measured.row.ok;
    let figures = Figures::of(&busy, window, &idle, idle_window, delivered);
    let kept = out_file.with_file_name("instructions.callgrind");
    std::fs::copy(&busy.path, &kept)
        .map_err(|e| anyhow!("keeping the dump {}: {e}", busy.path.display()))?;
    measured.row.label = format!("{rate} msg/s × 1 webhook under callgrind");
    measured.row.extra.insert(
        "instructions per message (less idle)".to_owned(),
        json!(figures.per_message.round()),
    );
    measured
        .row
        .extra
        .insert("instructions in window".to_owned(), json!(busy.total));
    measured
        .row
        .extra
        .insert("window s".to_owned(), json!((window * 10.0).round() / 10.0));
    report.headline.insert(
        "suite instructions per message, fan-out 1 (idle subtracted)".to_owned(),
        json!(figures.per_message.round()),
    );
    report.headline.insert(
        "suite instructions per idle second".to_owned(),
        json!(figures.idle_per_s.round()),
    );
    report.rows.push(warm.row);
    report.rows.push(measured.row);
    report.tables.push(figures.table());
    report.notes.push(format!(
        "`smooch all` under valgrind's callgrind (release binary, function-level counts), \
         fan-out 1, {rate} msg/s. The counters are zeroed after a warm-up step that posts to \
         every user and dumped after an idle window of {idle_seconds} s and after the \
         measured step (once its last delivery arrived); a message's figure is the step's \
         instructions less the idle rate over the step's window, over the messages \
         delivered. Latencies and CPU under callgrind say nothing about speed. The \
         measured dump is kept as `{}`: `callgrind_annotate --inclusive=yes` reads it.",
        kept.display()
    ));
    Ok(report)
}

/// The figures of a measured window and an idle one.
#[derive(Debug)]
struct Figures {
    per_message: f64,
    idle_per_s: f64,
    /// Per crate: instructions per message less idle, and the share of the window's.
    by_crate: Vec<(String, f64, f64)>,
}

impl Figures {
    fn of(busy: &Dump, window_s: f64, idle: &Dump, idle_s: f64, messages: u64) -> Figures {
        let messages = messages.max(1) as f64;
        let idle_rate = |n: u64| n as f64 / idle_s.max(f64::EPSILON);
        let idle_of = |name: &str| {
            idle.by_crate
                .iter()
                .find(|(c, _)| c == name)
                .map_or(0.0, |(_, n)| idle_rate(*n))
        };
        let total = busy.total.max(1) as f64;
        Figures {
            per_message: (busy.total as f64 - idle_rate(idle.total) * window_s) / messages,
            idle_per_s: idle_rate(idle.total),
            by_crate: busy
                .by_crate
                .iter()
                .map(|(name, n)| {
                    (
                        name.clone(),
                        (*n as f64 - idle_of(name) * window_s) / messages,
                        *n as f64 / total * 100.0,
                    )
                })
                .collect(),
        }
    }

    fn table(&self) -> String {
        let mut table = String::from(
            "Where a message's instructions go, by the crate whose source each instruction \
             came from (inlined code counts for the crate it was written in)\n\n\
             | crate | instructions per message (less idle) | share of the window |\n|---|---|---|\n",
        );
        let (listed, rest) = self
            .by_crate
            .split_at(self.by_crate.len().min(TABLE_CRATES));
        for (name, per_message, share) in listed {
            let _ = writeln!(table, "| {name} | {per_message:.0} | {share:.1} % |");
        }
        if !rest.is_empty() {
            let per_message: f64 = rest.iter().map(|(_, n, _)| n).sum();
            let share: f64 = rest.iter().map(|(.., s)| s).sum();
            let _ = writeln!(
                table,
                "| {} others | {per_message:.0} | {share:.1} % |",
                rest.len()
            );
        }
        let _ = writeln!(table, "| **all** | **{:.0}** | 100 % |", self.per_message);
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(total: u64, by_crate: &[(&str, u64)]) -> Dump {
        Dump {
            path: Default::default(),
            total,
            by_crate: by_crate
                .iter()
                .map(|(c, n)| ((*c).to_owned(), *n))
                .collect(),
        }
    }

    #[test]
    fn a_message_costs_the_window_less_the_idle_rate() {
        // 10 s with 100 messages; idle runs 1,000 a second, all of it in tokio.
        let busy = dump(101_000, &[("serde_json", 60_000), ("tokio", 41_000)]);
        let idle = dump(4_000, &[("tokio", 4_000)]);
        let f = Figures::of(&busy, 10.0, &idle, 4.0, 100);
        assert_eq!(f.idle_per_s, 1_000.0);
        assert_eq!(f.per_message, 910.0);
        assert_eq!(
            f.by_crate[0],
            ("serde_json".to_owned(), 600.0, 60_000.0 / 101_000.0 * 100.0)
        );
        assert_eq!(f.by_crate[1].1, 310.0);
        let table = f.table();
        assert!(table.contains("| serde_json | 600 | 59.4 % |"), "{table}");
        assert!(table.contains("| **all** | **910** | 100 % |"), "{table}");
    }
}
