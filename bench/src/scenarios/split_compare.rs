//! `split-compare`: the same webhooks fan-out-1 ladder run against `smooch all` and against
//! the split suite, side by side: the "split roles vs `smooch all`: within 15%" row.
//! The harness runs both sides (see `lib.rs`); this module builds the combined report.

use std::fmt::Write as _;

use serde_json::json;

use crate::report::{figure, Report, Row};

/// CPU milliseconds per operation of the suite and its servers (the harness excluded; the
/// per-role figures of a split suite are already in `smooch`).
fn suite_cpu_ms(row: &Row) -> f64 {
    row.cpu
        .iter()
        .filter(|c| matches!(c.process, "smooch" | "postgres" | "rabbitmq" | "redis"))
        .map(|c| c.per_1000_ops)
        .sum()
}

/// Times the suite's threads went to sleep and were woken per delivered message (the
/// `smooch` processes only: Postgres's backends wake as often on both sides).
fn suite_wakeups(row: &Row) -> f64 {
    row.cpu
        .iter()
        .filter(|c| c.process == "smooch")
        .map(|c| c.wakeups_per_op)
        .sum()
}

/// The messages between processes split adds to a post, where `smooch all` calls within
/// one process: the post to the conversations role, its answer to the gateway, and the
/// event handed to the webhook worker. Each is written by one process and read by another,
/// as the floor's echo server reads a request and writes its answer. The worker's answers
/// go back in batches (up to 20 ms apart), for several messages at once, and are not
/// counted.
const MESSAGES: u32 = 3;

/// `split` relative to `all`, in percent.
fn delta(all: f64, split: f64) -> Option<f64> {
    (all > 0.0).then(|| (split - all) / all * 100.0)
}

fn percent(d: Option<f64>) -> String {
    d.map(|d| format!("{d:+.0}%"))
        .unwrap_or_else(|| "–".to_owned())
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The row labelled `label` in round `i` of a side's `reports`.
fn round_row<'r>(reports: &'r [Report], i: usize, label: &str) -> Option<&'r Row> {
    reports.get(i)?.rows.iter().find(|r| r.label == label)
}

/// The larger of two differences: split's worst showing against all.
fn worse(worst: Option<f64>, d: Option<f64>) -> Option<f64> {
    match (worst, d) {
        (Some(w), Some(d)) => Some(w.max(d)),
        (w, d) => w.or(d),
    }
}

/// One side's figures at one rate over its rounds.
struct Side<'a> {
    rows: Vec<&'a Row>,
}

impl Side<'_> {
    fn of<'a>(reports: &'a [Report], label: &str) -> Side<'a> {
        Side {
            rows: reports
                .iter()
                .filter_map(|r| r.rows.iter().find(|row| row.label == label))
                .collect(),
        }
    }

    fn median(&self, figure: impl Fn(&Row) -> f64) -> Option<f64> {
        median(self.rows.iter().map(|r| figure(r)).collect())
    }
}

/// The comparison report of `rounds` runs of each side (at least one each): both sides'
/// rows (labelled with their mode and round), the table `rate | all p99 | split p99 | Δ |
/// all CPU/msg | split CPU/msg | Δ` of the medians over the rounds, with each round's
/// deltas beside them, and split's worst delta as headline figures beside the goal.
/// No speed is asserted; a side whose ledger did not balance fails the report.
/// `echo_server_us` holds, by step (in the order of the steps), the CPU the floor's echo
/// server spent per round trip at that step's rate, in µs: one process woken for a request.
/// Beside split's extra CPU per message the table prints [`MESSAGES`] of them, its floor.
pub(crate) fn compare(
    all: Vec<Report>,
    split: Vec<Report>,
    echo_server_us: &[Option<f64>],
) -> anyhow::Result<Report> {
    let (Some(first_all), Some(first_split)) = (all.first(), split.first()) else {
        anyhow::bail!("split-compare needs at least one run of each side");
    };
    let rounds = all.len().min(split.len());
    let (all_mode, split_mode) = (first_all.suite_mode.clone(), first_split.suite_mode.clone());
    let mut report = first_all.clone();
    report.scenario = "split-compare".to_owned();
    report.suite_mode = format!("{all_mode} vs {split_mode}");
    report.suite_peak_rss_mib = None;
    report.load_average_end = split.last().unwrap_or(first_split).load_average_end;
    report.headline.clear();
    report.rows.clear();
    report.failures.clear();
    report.notes.clear();
    report.tables.clear();

    let of_rounds = if rounds > 1 {
        format!(", medians of {rounds} rounds")
    } else {
        String::new()
    };
    let mut table = format!(
        "Webhooks, fan-out 1: `{all_mode}` vs `{split_mode}` (CPU: ms per delivered message, suite + Postgres + RabbitMQ + Redis{of_rounds})\n\n\
         | offered | all p99 ms | split p99 ms | p99 Δ | all CPU ms/msg | split CPU ms/msg | CPU Δ | split − all, ms/msg | floor of {MESSAGES} messages between processes, ms | suite wake-ups/msg: all | split | all deliveries/s | split deliveries/s | p99 Δ by round | CPU Δ by round | steal % by round | speed % by round: cores | wake-ups |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let (mut worst_p99, mut worst_cpu): (Option<f64>, Option<f64>) = (None, None);
    for (step, a) in first_all.rows.iter().enumerate() {
        let (on_all, on_split) = (Side::of(&all, &a.label), Side::of(&split, &a.label));
        let p99 = |side: &Side<'_>| side.median(|r| r.latency.p99);
        let cpu = |side: &Side<'_>| side.median(suite_cpu_ms);
        let both = |f: &dyn Fn(&Side<'_>) -> Option<f64>| f(&on_all).zip(f(&on_split));
        let p99_delta = both(&p99).and_then(|(a, s)| delta(a, s));
        let cpu_delta = both(&cpu).and_then(|(a, s)| delta(a, s));
        let by_round = |of: fn(&Row) -> f64| {
            let deltas: Vec<String> = (0..rounds)
                .map(|i| {
                    let row = |reports: &[Report]| round_row(reports, i, &a.label).map(of);
                    percent(row(&all).zip(row(&split)).and_then(|(a, s)| delta(a, s)))
                })
                .collect();
            deltas.join(" / ")
        };
        // A round's deltas are as good as its worse side's host: the higher steal of the
        // two, the lower speed.
        let host_by_round = |of: fn(&Row) -> Option<f64>, worse: fn(f64, f64) -> f64, digits| {
            (0..rounds)
                .map(|i| {
                    let read = |reports: &[Report]| round_row(reports, i, &a.label).and_then(of);
                    figure(
                        read(&all).into_iter().chain(read(&split)).reduce(worse),
                        digits,
                    )
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.offered,
            figure(p99(&on_all), 1),
            figure(p99(&on_split), 1),
            percent(p99_delta),
            figure(cpu(&on_all), 2),
            figure(cpu(&on_split), 2),
            percent(cpu_delta),
            figure(both(&cpu).map(|(a, s)| s - a), 2),
            figure(
                echo_server_us
                    .get(step)
                    .copied()
                    .flatten()
                    .map(|us| f64::from(MESSAGES) * us / 1000.0),
                2
            ),
            figure(on_all.median(suite_wakeups), 1),
            figure(on_split.median(suite_wakeups), 1),
            figure(on_all.median(|r| r.achieved_per_s), 0),
            figure(on_split.median(|r| r.achieved_per_s), 0),
            by_round(|r| r.latency.p99),
            by_round(suite_cpu_ms),
            host_by_round(|r| r.host.steal_percent, f64::max, 1),
            host_by_round(|r| r.host.speed_percent, f64::min, 0),
            host_by_round(|r| r.host.wake_speed_percent, f64::min, 0),
        );
        worst_p99 = worse(worst_p99, p99_delta);
        worst_cpu = worse(worst_cpu, cpu_delta);
    }
    report.tables.push(table);
    for (figure, worst) in [("e2e p99", worst_p99), ("CPU per message", worst_cpu)] {
        if let Some(d) = worst {
            report.headline.insert(
                format!(
                    "{split_mode} vs {all_mode}: largest {figure} difference, split over all{of_rounds} (%; goal within 15)"
                ),
                json!((d * 10.0).round() / 10.0),
            );
        }
    }
    let peak = |reports: &[Report]| {
        reports
            .iter()
            .filter_map(|r| r.suite_peak_rss_mib)
            .reduce(f64::max)
    };
    if let Some(rss) = peak(&split) {
        report.headline.insert(
            format!("{split_mode} RSS, sum of each process's peak (MiB)"),
            json!(rss.round()),
        );
    }
    if let Some(rss) = peak(&all) {
        report
            .headline
            .insert(format!("{all_mode} peak RSS (MiB)"), json!(rss.round()));
    }
    let runs = all
        .into_iter()
        .enumerate()
        .chain(split.into_iter().enumerate());
    for (i, side) in runs {
        let name = if rounds > 1 {
            format!("{}, round {}", side.suite_mode, i + 1)
        } else {
            side.suite_mode.clone()
        };
        report.rows.extend(side.rows.into_iter().map(|mut r| {
            r.label = format!("{name}: {}", r.label);
            r
        }));
        report
            .failures
            .extend(side.failures.into_iter().map(|f| format!("{name}: {f}")));
    }
    report.notes.push(format!(
        "Each side starts its own suite on a fresh database and runs the same webhooks steps (8 apps × 10 users, one webhook each to the sink; smoke 2 × 2){}. {split_mode}: one process per role (users, conversations, media, webhooks, webhook-worker, push, gateway); replica r of each role calls replica r of the services it uses (a gRPC address names one host:port), the posts go round-robin over the gateways, and the workers share their RabbitMQ queues. CPU of a split suite is summed over its processes (per role in the table below the main one). Δ is split relative to all: positive when split is slower or costlier; the headline gives the largest. The floor of {MESSAGES} messages between processes is {MESSAGES} times the CPU the floor's echo server (one runtime thread) spent per round trip at that rate, reading a request and writing its answer: where `smooch all` makes direct calls in one process, split's gateway writes the post to the conversations role and reads its answer, and the conversations role hands the event to the webhook worker (the worker's answers go back in batches, for several messages at a time). Suite wake-ups per message count the times a thread of a smooch process went to sleep and was woken (voluntary context switches of its live threads, from `/proc/<pid>/task/*/status`), per delivered message. Steal by round is the higher of the two sides' share of the machine's CPU time that the hypervisor gave to other guests during that round's step: a round with more than a percent or two says more about the host than about either side. Speed by round is the lower of the two sides' host speed in that step, of the cores and of wake-ups between threads (the harness's probe, every 250 ms: a fixed piece of work, and round trips between two threads, by their CPU; 100 as fast as at the harness's start): a round where one fell says the same without steal.",
        if rounds > 1 {
            format!("; the sides take turns, {rounds} rounds, and the table compares each side's median at each rate")
        } else {
            String::new()
        }
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Latency;
    use crate::procstat::CpuCost;
    use crate::report::Machine;

    fn cpu(process: &'static str, per_1000_ops: f64) -> CpuCost {
        woken(process, per_1000_ops, 0.0)
    }

    fn woken(process: &'static str, per_1000_ops: f64, wakeups_per_op: f64) -> CpuCost {
        CpuCost {
            process,
            cpu_seconds: 0.0,
            per_1000_ops,
            cores: 0.0,
            wakeups_per_op,
        }
    }

    fn row(p99: f64, cpu_costs: Vec<CpuCost>) -> Row {
        Row {
            label: "10 msg/s × 1 webhooks".to_owned(),
            offered: "10 deliveries/s".to_owned(),
            achieved_per_s: 10.0,
            ok: 20,
            failed: 0,
            latency: Latency {
                count: 20,
                p50: p99 / 2.0,
                p90: p99,
                p99,
                p999: p99,
                max: p99,
                mean: p99 / 2.0,
            },
            cpu: cpu_costs,
            host: crate::procstat::Host::default(),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_row_s_host_readings_keep_their_keys_in_the_json() {
        let mut row = row(10.0, Vec::new());
        row.host.steal_percent = Some(1.5);
        row.host.speed_percent = Some(98.0);
        let json = serde_json::to_value(&row).expect("a row serializes");
        // The keys the committed results have used since sessions 29 and 32, at the top.
        assert_eq!(json["steal_percent"], 1.5);
        assert_eq!(json["speed_percent"], 98.0);
        assert!(json["wake_speed_percent"].is_null());
        assert!(json.get("host").is_none(), "{json}");
    }

    #[test]
    fn the_header_gives_the_probe_s_start_readings_that_were_taken() {
        let mut report = report("smooch all", Vec::new(), Vec::new());
        assert!(!report.markdown().contains("pace probe"));
        report.machine.pace_unit_us = Some(350.4);
        let unit_only = report.markdown();
        assert!(
            unit_only
                .contains("; the host pace probe's unit took 350 µs of CPU at start (speed 100 %)"),
            "{unit_only}"
        );
        report.machine.pace_wake_us = Some(31.04);
        let both = report.markdown();
        assert!(
            both.contains(
                "unit took 350 µs of CPU at start, a wake-up round trip 31.0 µs (speed 100 %)"
            ),
            "{both}"
        );
    }

    fn report(mode: &str, rows: Vec<Row>, failures: Vec<String>) -> Report {
        Report {
            scenario: "webhooks".to_owned(),
            smoke: true,
            started_at: String::new(),
            machine: Machine {
                cpu: String::new(),
                cores: 2,
                memory_gib: 0.0,
                kernel: String::new(),
                postgres: String::new(),
                redis: String::new(),
                rabbitmq: String::new(),
                pace_unit_us: None,
                pace_wake_us: None,
            },
            load_average_start: [0.0; 3],
            load_average_end: [0.0; 3],
            suite_binary: "smooch".to_owned(),
            suite_mode: mode.to_owned(),
            suite_peak_rss_mib: None,
            headline: serde_json::Map::new(),
            rows,
            failures,
            notes: Vec::new(),
            tables: Vec::new(),
        }
    }

    #[test]
    fn the_comparison_puts_both_sides_side_by_side_with_their_deltas() {
        let all = report(
            "smooch all",
            vec![row(20.0, vec![cpu("smooch", 2.0), cpu("postgres", 2.0)])],
            Vec::new(),
        );
        let split = report(
            "split ×2",
            vec![row(
                25.0,
                vec![
                    cpu("smooch", 3.0),
                    cpu("smooch/gateway", 1.0),
                    cpu("postgres", 2.0),
                    cpu("bench", 9.0),
                ],
            )],
            vec!["lost 1".to_owned()],
        );
        let compared = compare(vec![all], vec![split], &[]).expect("one run of each side");
        assert_eq!(compared.scenario, "split-compare");
        assert_eq!(compared.suite_mode, "smooch all vs split ×2");
        // p99 20 → 25 ms is +25%; CPU (suite + servers, not the harness nor the per-role
        // figures already in `smooch`) 4 → 5 ms is +25%.
        assert!(
            compared.tables[0]
                .contains("| 10 deliveries/s | 20.0 | 25.0 | +25% | 4.00 | 5.00 | +25% |"),
            "{}",
            compared.tables[0]
        );
        let labels: Vec<&str> = compared.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "smooch all: 10 msg/s × 1 webhooks",
                "split ×2: 10 msg/s × 1 webhooks"
            ]
        );
        assert_eq!(compared.failures, ["split ×2: lost 1"]);
        let markdown = compared.markdown();
        assert!(
            markdown.contains("CPU per op by role"),
            "the split side's per-role CPU gets its table: {markdown}"
        );
        assert!(markdown.contains("| split ×2: 10 msg/s × 1 webhooks | 1.000 | 3.000 |"));
    }

    #[test]
    fn a_rate_only_one_side_reached_has_no_delta() {
        let all = report("smooch all", vec![row(20.0, Vec::new())], Vec::new());
        let split = report("split ×1", Vec::new(), Vec::new());
        let compared = compare(vec![all], vec![split], &[]).expect("one run of each side");
        assert!(compared.tables[0].contains("| 10 deliveries/s | 20.0 | – | – |"));
        assert!(compared.headline.is_empty());
    }

    #[test]
    fn rounds_compare_medians_and_the_headline_is_split_s_worst_showing() {
        let side = |mode: &str,
                    p99s: [f64; 3],
                    cpus: [f64; 3],
                    wakeups: [f64; 3],
                    steals: [Option<f64>; 3],
                    speeds: [Option<f64>; 3]| {
            (0..3)
                .map(|i| {
                    let cost = woken("smooch", cpus[i], wakeups[i]);
                    // A role's wake-ups are already in `smooch`'s.
                    let role = woken("smooch/gateway", 0.0, 100.0);
                    let mut row = row(p99s[i], vec![cost, role]);
                    row.host.steal_percent = steals[i];
                    row.host.speed_percent = speeds[i];
                    row.host.wake_speed_percent = speeds[i].map(|s| s / 2.0);
                    report(mode, vec![row], Vec::new())
                })
                .collect::<Vec<Report>>()
        };
        // all: p99 median 10, CPU median 2, 3 wake-ups; split: p99 median 8 (better), CPU
        // median 2.5, 6 wake-ups.
        let all = side(
            "smooch all",
            [10.0, 30.0, 9.0],
            [2.0, 1.0, 4.0],
            [3.0, 2.0, 4.0],
            [None, Some(4.25), None],
            [Some(100.0), Some(60.0), None],
        );
        // Round 1: no steal read on either side (a dash); round 3: only split's, which is
        // the round's. Speed: the slower side's (95 of 100 and 95), or the one read.
        let split = side(
            "split ×1",
            [8.0, 7.0, 40.0],
            [2.5, 3.0, 2.0],
            [6.0, 5.0, 9.0],
            [None, Some(0.0), Some(1.5)],
            [Some(95.0), None, None],
        );
        // The echo server's 50 µs per round trip: split's 3 messages, 0.15 ms.
        let compared = compare(all, split, &[Some(50.0)]).expect("three runs of each side");
        assert!(
            compared.tables[0].contains(
                "| 10 deliveries/s | 10.0 | 8.0 | -20% | 2.00 | 2.50 | +25% | 0.50 | 0.15 | 3.0 | 6.0 | 10 | 10 | -20% / -77% / +344% | +25% / +200% / -50% | – / 4.2 / 1.5 | 95 / 60 / – | 48 / 30 / – |"
            ),
            "{}",
            compared.tables[0]
        );
        let headline = |figure: &str| {
            compared
                .headline
                .iter()
                .find(|(k, _)| k.contains(figure))
                .map(|(_, v)| v.as_f64())
        };
        // The largest difference keeps its sign: split faster by 20 % is not "20 % off".
        assert_eq!(headline("e2e p99"), Some(Some(-20.0)));
        assert_eq!(headline("CPU per message"), Some(Some(25.0)));
        assert!(compared
            .headline
            .keys()
            .all(|k| k.contains("medians of 3 rounds") || k.contains("RSS")));
        let labels: Vec<&str> = compared.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels.len(), 6);
        assert_eq!(labels[0], "smooch all, round 1: 10 msg/s × 1 webhooks");
        assert_eq!(labels[5], "split ×1, round 3: 10 msg/s × 1 webhooks");
    }

    #[test]
    fn no_run_of_a_side_is_an_error() {
        let all = report("smooch all", vec![row(20.0, Vec::new())], Vec::new());
        assert!(compare(vec![all], Vec::new(), &[]).is_err());
    }
}
