//! `split-compare`: the same webhooks fan-out-1 ladder run against `smooch all` and against
//! the split suite, side by side: the "split roles vs `smooch all`: within 15%" row.
//! The harness runs both sides (see `lib.rs`); this module builds the combined report.

use std::fmt::Write as _;

use serde_json::json;

use crate::report::{Report, Row};

/// CPU milliseconds per operation of the suite and its servers (the harness excluded; the
/// per-role figures of a split suite are already in `smooch`).
fn suite_cpu_ms(row: &Row) -> f64 {
    row.cpu
        .iter()
        .filter(|c| matches!(c.process, "smooch" | "postgres" | "rabbitmq" | "redis"))
        .map(|c| c.per_1000_ops)
        .sum()
}

/// `split` relative to `all`, in percent.
fn delta(all: f64, split: f64) -> Option<f64> {
    (all > 0.0).then(|| (split - all) / all * 100.0)
}

fn percent(d: Option<f64>) -> String {
    d.map(|d| format!("{d:+.0}%"))
        .unwrap_or_else(|| "–".to_owned())
}

/// The comparison report: both sides' rows (labelled with their mode), the table
/// `rate | all p99 | split p99 | Δ | all CPU/msg | split CPU/msg | Δ`, and the largest
/// deltas as headline figures beside the goal. No speed is asserted; a side whose
/// ledger did not balance fails the report.
pub(crate) fn compare(all: Report, split: Report) -> Report {
    let mut report = all.clone();
    report.scenario = "split-compare".to_owned();
    report.suite_mode = format!("{} vs {}", all.suite_mode, split.suite_mode);
    report.suite_peak_rss_mib = None;
    report.load_average_end = split.load_average_end;
    report.headline.clear();
    report.rows.clear();
    report.failures.clear();
    report.notes.clear();
    report.tables.clear();

    let mut table = format!(
        "Webhooks, fan-out 1: `{}` vs `{}` (CPU: ms per delivered message, suite + Postgres + RabbitMQ + Redis)\n\n\
         | offered | all p99 ms | split p99 ms | p99 Δ | all CPU ms/msg | split CPU ms/msg | CPU Δ | all deliveries/s | split deliveries/s |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        all.suite_mode, split.suite_mode
    );
    let (mut worst_p99, mut worst_cpu): (Option<f64>, Option<f64>) = (None, None);
    for a in &all.rows {
        let s = split.rows.iter().find(|s| s.label == a.label);
        let p99_delta = s.and_then(|s| delta(a.latency.p99, s.latency.p99));
        let cpu_delta = s.and_then(|s| delta(suite_cpu_ms(a), suite_cpu_ms(s)));
        let cell = |f: &dyn Fn(&Row) -> String| s.map(f).unwrap_or_else(|| "–".to_owned());
        let _ = writeln!(
            table,
            "| {} | {:.1} | {} | {} | {:.2} | {} | {} | {:.0} | {} |",
            a.offered,
            a.latency.p99,
            cell(&|s| format!("{:.1}", s.latency.p99)),
            percent(p99_delta),
            suite_cpu_ms(a),
            cell(&|s| format!("{:.2}", suite_cpu_ms(s))),
            percent(cpu_delta),
            a.achieved_per_s,
            cell(&|s| format!("{:.0}", s.achieved_per_s)),
        );
        let larger = |worst: Option<f64>, d: Option<f64>| match (worst, d) {
            (Some(w), Some(d)) => Some(if d.abs() > w.abs() { d } else { w }),
            (w, d) => w.or(d),
        };
        worst_p99 = larger(worst_p99, p99_delta);
        worst_cpu = larger(worst_cpu, cpu_delta);
    }
    report.tables.push(table);
    if let Some(d) = worst_p99 {
        report.headline.insert(
            format!(
                "{} vs {}: largest e2e p99 difference (%; goal within 15)",
                split.suite_mode, all.suite_mode
            ),
            json!((d * 10.0).round() / 10.0),
        );
    }
    if let Some(d) = worst_cpu {
        report.headline.insert(
            format!(
                "{} vs {}: largest CPU per message difference (%; goal within 15)",
                split.suite_mode, all.suite_mode
            ),
            json!((d * 10.0).round() / 10.0),
        );
    }
    if let Some(rss) = split.suite_peak_rss_mib {
        report.headline.insert(
            format!("{} RSS, sum of each process's peak (MiB)", split.suite_mode),
            json!(rss.round()),
        );
    }
    if let Some(rss) = all.suite_peak_rss_mib {
        report.headline.insert(
            format!("{} peak RSS (MiB)", all.suite_mode),
            json!(rss.round()),
        );
    }
    for (side, rows, failures) in [
        (&all.suite_mode, all.rows, all.failures),
        (&split.suite_mode, split.rows, split.failures),
    ] {
        report.rows.extend(rows.into_iter().map(|mut r| {
            r.label = format!("{side}: {}", r.label);
            r
        }));
        report
            .failures
            .extend(failures.into_iter().map(|f| format!("{side}: {f}")));
    }
    report.notes.push(format!(
        "Each side starts its own suite on a fresh database and runs the same webhooks steps (8 apps × 10 users, one webhook each to the sink; smoke 2 × 2). {}: one process per role (users, conversations, media, webhooks, webhook-worker, push, gateway); replica r of each role calls replica r of the services it uses (a gRPC address names one host:port), the posts go round-robin over the gateways, and the workers share their RabbitMQ queues. CPU of a split suite is summed over its processes (per role in the table below the main one). Δ is split relative to all.",
        split.suite_mode
    ));
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Latency;
    use crate::procstat::CpuCost;
    use crate::report::Machine;

    fn cpu(process: &'static str, per_1000_ops: f64) -> CpuCost {
        CpuCost {
            process,
            cpu_seconds: 0.0,
            per_1000_ops,
            cores: 0.0,
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
            extra: serde_json::Map::new(),
        }
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
        let compared = compare(all, split);
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
        let compared = compare(all, split);
        assert!(compared.tables[0].contains("| 10 deliveries/s | 20.0 | – | – |"));
        assert!(compared.headline.is_empty());
    }
}
