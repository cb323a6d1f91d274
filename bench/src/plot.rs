//! Latency-vs-throughput plots (PNG): plotters' bitmap backend draws the lines, and text is
//! drawn pixel by pixel from an embedded 8×8 bitmap font, so no system font is needed.

use std::path::Path;

use anyhow::anyhow;
use font8x8::UnicodeFonts as _;
use plotters::prelude::*;

use crate::load::Latency;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 640;
const LEFT: i32 = 90;
const RIGHT: i32 = 220;
const TOP: i32 = 50;
const BOTTOM: i32 = 70;
/// Latency axis: log10 of milliseconds, 0.1 ms to 100 s.
const Y_MIN: f64 = -1.0;
const Y_MAX: f64 = 5.0;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// A percentile to plot: its name, how to read it, its line width.
type Percentile = (&'static str, fn(&Latency) -> f64, u32);

/// Draws `text` with its top-left corner at `(x, y)`, `scale` pixels per font pixel.
fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: i32,
    y: i32,
    text: &str,
    scale: i32,
    color: &RGBColor,
) {
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::LATIN_FONTS.get(ch))
            .unwrap_or([0; 8]);
        let x0 = x + (i as i32) * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let _ = area.draw_pixel(
                                (x0 + col * scale + dx, y + row as i32 * scale + dy),
                                color,
                            );
                        }
                    }
                }
            }
        }
    }
}

fn label_ms(log: f64) -> String {
    let ms = 10f64.powf(log);
    if ms >= 1000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}

/// Plots p50, p99 and p99.9 latency (log scale) against achieved throughput for each
/// series, with the latency objective as a dashed line.
pub fn latency_vs_throughput(
    path: &Path,
    title: &str,
    series: &[(&str, &Vec<(f64, Latency)>)],
    objective_ms: f64,
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let x_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|(x, _)| *x))
        .fold(100.0f64, f64::max)
        * 1.1;
    let plot_w = WIDTH as i32 - LEFT - RIGHT;
    let plot_h = HEIGHT as i32 - TOP - BOTTOM;
    let to_px = |x: f64, log_y: f64| -> (i32, i32) {
        let px = LEFT + ((x / x_max) * plot_w as f64) as i32;
        let clamped = log_y.clamp(Y_MIN, Y_MAX);
        let py = TOP + plot_h - (((clamped - Y_MIN) / (Y_MAX - Y_MIN)) * plot_h as f64) as i32;
        (px, py)
    };
    let grey = RGBColor(220, 220, 220);
    let black = RGBColor(0, 0, 0);
    // Grid and axis labels.
    for decade in (Y_MIN as i32)..=(Y_MAX as i32) {
        let (_, y) = to_px(0.0, f64::from(decade));
        root.draw(&PathElement::new(vec![(LEFT, y), (LEFT + plot_w, y)], grey))
            .map_err(|e| anyhow!("{e}"))?;
        let label = label_ms(f64::from(decade));
        text(
            &root,
            LEFT - 8 - 8 * label.len() as i32,
            y - 4,
            &label,
            1,
            &black,
        );
    }
    let x_step = nice_step(x_max / 6.0);
    let mut tick = 0.0;
    while tick <= x_max {
        let (x, _) = to_px(tick, Y_MIN);
        root.draw(&PathElement::new(vec![(x, TOP), (x, TOP + plot_h)], grey))
            .map_err(|e| anyhow!("{e}"))?;
        let label = format!("{tick:.0}");
        text(
            &root,
            x - 4 * label.len() as i32,
            TOP + plot_h + 8,
            &label,
            1,
            &black,
        );
        tick += x_step;
    }
    root.draw(&Rectangle::new(
        [(LEFT, TOP), (LEFT + plot_w, TOP + plot_h)],
        black.stroke_width(1),
    ))
    .map_err(|e| anyhow!("{e}"))?;
    // The objective.
    let (_, oy) = to_px(0.0, objective_ms.log10());
    let mut x = LEFT;
    while x < LEFT + plot_w {
        root.draw(&PathElement::new(
            vec![(x, oy), ((x + 6).min(LEFT + plot_w), oy)],
            RGBColor(120, 120, 120).stroke_width(2),
        ))
        .map_err(|e| anyhow!("{e}"))?;
        x += 12;
    }
    text(
        &root,
        LEFT + plot_w + 8,
        oy - 4,
        &format!("p99 target {objective_ms} ms"),
        1,
        &black,
    );
    // The series: one color each; p50 thin, p99 thick, p99.9 dotted points.
    let mut legend_y = TOP + 30;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pick: [Percentile; 3] = [
            ("p50", |l| l.p50, 1),
            ("p99", |l| l.p99, 3),
            ("p99.9", |l| l.p999, 1),
        ];
        for (which, get, width) in pick {
            let line: Vec<(i32, i32)> = points
                .iter()
                .map(|(x, l)| to_px(*x, get(l).max(1e-3).log10()))
                .collect();
            if which == "p99.9" {
                for p in &line {
                    root.draw(&Circle::new(*p, 3, color.filled()))
                        .map_err(|e| anyhow!("{e}"))?;
                }
            } else {
                root.draw(&PathElement::new(line.clone(), color.stroke_width(width)))
                    .map_err(|e| anyhow!("{e}"))?;
                for p in &line {
                    root.draw(&Circle::new(*p, 2, color.filled()))
                        .map_err(|e| anyhow!("{e}"))?;
                }
            }
        }
        text(&root, LEFT + plot_w + 8, legend_y, name, 1, &color);
        text(
            &root,
            LEFT + plot_w + 8,
            legend_y + 12,
            "thin p50, thick p99",
            1,
            &color,
        );
        text(
            &root,
            LEFT + plot_w + 8,
            legend_y + 24,
            "dots p99.9",
            1,
            &color,
        );
        legend_y += 48;
    }
    text(&root, LEFT, 6, title, 2, &black);
    text(
        &root,
        LEFT + plot_w / 2 - 160,
        HEIGHT as i32 - 30,
        "achieved throughput (requests/s)",
        1,
        &black,
    );
    text(&root, 8, TOP - 20, "latency (log scale)", 1, &black);
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// A round step (1, 2 or 5 × a power of ten) near `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1.0).log10().floor());
    let m = raw / power;
    let nice = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * power
}
