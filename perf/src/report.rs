//! Latency reports: a percentile table, `.hgrm` files and an SVG plot of latency by percentile.
//!
//! Histograms hold microseconds; every report shows milliseconds. The `.hgrm` layout is
//! HdrHistogram's `outputPercentileDistribution` (value, percentile, total count,
//! 1/(1-percentile)), so HdrHistogram's own plotter reads it too; [`parse_hgrm`] reads it back
//! to draw several runs on one plot.

use hdrhistogram::Histogram;
use std::fmt::Write as _;

/// Microseconds per millisecond: histograms record µs, reports print ms.
const US_PER_MS: f64 = 1000.0;

/// Quantile steps per halving of the distance to 100 %, as HdrHistogram's default output.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One point of a percentile distribution: latency (ms) reached at `percentile` (0..=1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub value_ms: f64,
    pub percentile: f64,
}

/// A distribution to plot, with the name shown in the legend.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

/// The percentiles of the summary table, with their labels.
pub const TABLE_PERCENTILES: [(&str, f64); 6] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99), ("max", 100.0)];

/// The value (ms) at each of [`TABLE_PERCENTILES`].
pub fn table_values(h: &Histogram<u64>) -> Vec<(&'static str, f64)> {
    TABLE_PERCENTILES
        .iter()
        .map(|&(name, p)| {
            let us = if p >= 100.0 { h.max() } else { h.value_at_percentile(p) };
            (name, us as f64 / US_PER_MS)
        })
        .collect()
}

/// A one-row-per-percentile text table (ms), the mean and the count.
pub fn percentile_table(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    for (name, ms) in table_values(h) {
        let _ = writeln!(out, "  {name:>7}  {ms:>10.3} ms");
    }
    let _ = writeln!(out, "  {:>7}  {:>10.3} ms", "mean", h.mean() / US_PER_MS);
    let _ = writeln!(out, "  {:>7}  {:>10}", "count", h.len());
    out
}

/// The histogram in HdrHistogram's percentile distribution format, values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if h.is_empty() {
        return out;
    }
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / US_PER_MS;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ =
        writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / US_PER_MS, h.stdev() / US_PER_MS);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / US_PER_MS, h.len());
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    out
}

/// Reads the points of an `.hgrm` file: every line that starts with two numbers.
pub fn parse_hgrm(text: &str) -> Result<Vec<Point>, String> {
    let points: Vec<Point> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let value_ms = cols.next()?.parse::<f64>().ok()?;
            let percentile = cols.next()?.parse::<f64>().ok()?;
            Some(Point { value_ms, percentile })
        })
        .collect();
    if points.is_empty() {
        return Err("no percentile lines".into());
    }
    Ok(points)
}

/// The points of a histogram, as [`parse_hgrm`] would read them from [`hgrm`].
pub fn points(h: &Histogram<u64>) -> Vec<Point> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| Point {
            value_ms: h.highest_equivalent(v.value_iterated_to()) as f64 / US_PER_MS,
            percentile: v.quantile_iterated_to(),
        })
        .collect()
}

// === SVG plot ===

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 64.0;
const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// x of a percentile on the log scale of 1/(1-p), in decades: 0 % → 0, 90 % → 1, 99 % → 2.
fn decades(p: f64) -> f64 {
    (1.0 / (1.0 - p.min(1.0 - 1e-9))).log10()
}

/// A round step for about `target` intervals over `0..max`.
fn nice_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn percentile_label(d: u32) -> String {
    match d {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)),
    }
}

/// Latency (ms, linear y) by percentile (log x, like HdrHistogram's plotter), one line per
/// series. The x axis ends at the first decade past the last finite percentile of any series.
pub fn svg(title: &str, series: &[Series]) -> String {
    let finite = |p: &&Point| p.percentile < 1.0;
    let max_dec = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite))
        .map(|p| decades(p.percentile))
        .fold(2.0f64, f64::max)
        .ceil()
        .min(7.0);
    let max_ms = series.iter().flat_map(|s| s.points.iter()).map(|p| p.value_ms).fold(0.0f64, f64::max).max(0.001);
    let step = nice_step(max_ms, 8.0);
    let y_top = (max_ms / step).ceil() * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |d: f64| LEFT + d.min(max_dec) / max_dec * plot_w;
    let y = |ms: f64| TOP + plot_h - ms / y_top * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid and axis labels.
    let mut v = 0.0;
    while v <= y_top + step / 2.0 {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            trim_number(v)
        );
        v += step;
    }
    for d in 0..=max_dec as u32 {
        let xx = x(f64::from(d));
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            percentile_label(d)
        );
    }
    let _ =
        writeln!(out, r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"#,
        TOP + plot_h / 2.0
    );
    // One line per series, then its legend entry.
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(finite)
            .map(|p| format!("{:.1},{:.1}", x(decades(p.percentile)), y(p.value_ms)))
            .collect();
        let _ =
            writeln!(out, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            LEFT + 42.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 10).unwrap();
        }
        h
    }

    #[test]
    fn hgrm_round_trips_through_the_parser() {
        let h = sample();
        let text = hgrm(&h);
        let parsed = parse_hgrm(&text).unwrap();
        assert_eq!(parsed.len(), points(&h).len());
        let last = parsed.last().unwrap();
        assert_eq!(last.percentile, 1.0);
        assert!((last.value_ms - 100.0).abs() < 0.1, "{last:?}");
        assert!(text.contains("#[Max     ="));
    }

    #[test]
    fn percentile_labels_follow_the_decades() {
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(1), "90%");
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(3), "99.9%");
        assert_eq!(percentile_label(5), "99.999%");
    }

    #[test]
    fn svg_has_one_line_per_series() {
        let h = sample();
        let s = vec![
            Series { label: "a <1>".into(), points: points(&h) },
            Series { label: "b".into(), points: points(&h) },
        ];
        let out = svg("t", &s);
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("a &lt;1&gt;"));
        assert!(out.ends_with("</svg>\n"));
    }
}
