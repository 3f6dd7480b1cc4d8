//! `--report FILE`: one self-contained HTML page to project in a workshop. Inline CSS, charts
//! drawn here as inline SVG, no scripts and nothing fetched: it opens from a USB stick.
//!
//! Charts: throughput bars, latency percentile curves (x: 0 .. p99.99 on a "nines" scale,
//! y: latency on a log scale, so the tail is as readable as the median), bytes per operation
//! (sent and received, stacked), and server CPU per operation when measured.

use std::fmt::Write;

use super::table::micros;
use super::{BenchReport, Row};

const PALETTE: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
];
const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 170.0;
const BAR_H: f64 = 26.0;

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Horizontal bars, one per row: `segments` gives each row's stacked values and their labels.
fn bars(
    title: &str,
    unit: &str,
    rows: &[Row],
    segments: &dyn Fn(&Row) -> Vec<(f64, &'static str)>,
) -> String {
    let values: Vec<Vec<(f64, &str)>> = rows.iter().map(segments).collect();
    let max = values
        .iter()
        .map(|v| v.iter().map(|(x, _)| x).sum::<f64>())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let height = BAR_H * rows.len() as f64 + 40.0;
    let plot_w = WIDTH - LABEL_W - 110.0;
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    for (i, (row, segs)) in rows.iter().zip(&values).enumerate() {
        let y = 10.0 + i as f64 * BAR_H;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end" class="label">{}</text>"#,
            LABEL_W - 8.0,
            y + BAR_H * 0.62,
            escape(&row.protocol)
        );
        let mut x = LABEL_W;
        let mut total = 0.0;
        for (j, (value, name)) in segs.iter().enumerate() {
            let w = value / max * plot_w;
            let fill = if segs.len() > 1 { color(j) } else { color(i) };
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{fill}"><title>{}: {value:.1} {}</title></rect>"#,
                BAR_H - 6.0,
                escape(name),
                escape(unit)
            );
            x += w;
            total += value;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="value">{} {}</text>"#,
            x + 6.0,
            y + BAR_H * 0.62,
            if total >= 100.0 {
                format!("{total:.0}")
            } else {
                format!("{total:.1}")
            },
            escape(unit)
        );
    }
    if let Some(first) = values.first().filter(|v| v.len() > 1) {
        let y = height - 12.0;
        for (j, (_, name)) in first.iter().enumerate() {
            let x = LABEL_W + j as f64 * 120.0;
            let _ = write!(
                svg,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}" class="label">{}</text>"#,
                y - 10.0,
                color(j),
                x + 16.0,
                escape(name)
            );
        }
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// Latency percentile curves: x is -log10(1 - p), so p90, p99, p99.9 are evenly spaced.
fn curves(rows: &[Row]) -> String {
    let (w, h) = (WIDTH, 340.0);
    let (left, right, top, bottom) = (70.0, 150.0, 20.0, 40.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let nines = |p: f64| -> f64 { (-(1.0 - (p / 100.0).min(0.9999)).log10()).clamp(0.0, 4.0) };
    let all: Vec<u64> = rows
        .iter()
        .flat_map(|r| r.latency.curve.iter().map(|(_, us)| (*us).max(1)))
        .collect();
    let lo = all.iter().copied().min().unwrap_or(1) as f64;
    let hi = (all.iter().copied().max().unwrap_or(10) as f64).max(lo * 10.0);
    let (log_lo, log_hi) = (lo.log10().floor(), hi.log10().ceil());
    let x_of = |p: f64| left + nines(p) / 4.0 * plot_w;
    let y_of = |us: f64| top + plot_h - (us.max(1.0).log10() - log_lo) / (log_hi - log_lo) * plot_h;
    let mut svg = format!(
        r#"<figure><figcaption>Latency by percentile (log scale)</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="latency percentile curves">"#
    );
    for (p, name) in [
        (0.0, "p0"),
        (90.0, "p90"),
        (99.0, "p99"),
        (99.9, "p99.9"),
        (99.99, "p99.99"),
    ] {
        let x = x_of(p);
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" class="grid"/><text x="{x:.1}" y="{}" text-anchor="middle" class="label">{name}</text>"#,
            top + plot_h,
            h - 18.0
        );
    }
    let mut decade = log_lo;
    while decade <= log_hi {
        let us = 10f64.powf(decade);
        let y = y_of(us);
        let _ = write!(
            svg,
            r#"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" text-anchor="end" class="label">{}</text>"#,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            axis_label(us)
        );
        decade += 1.0;
    }
    for (i, row) in rows.iter().enumerate() {
        let points: Vec<String> = row
            .latency
            .curve
            .iter()
            .filter(|(p, _)| *p <= 99.99)
            .map(|(p, us)| format!("{:.1},{:.1}", x_of(*p), y_of(*us as f64)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"><title>{}</title></polyline>"#,
            points.join(" "),
            color(i),
            escape(&row.protocol)
        );
        let y = top + 14.0 + i as f64 * 18.0;
        let x = left + plot_w + 14.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="4" fill="{}"/><text x="{}" y="{y}" class="label">{}</text>"#,
            y - 6.0,
            color(i),
            x + 16.0,
            escape(&row.protocol)
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// A power of ten of microseconds, short: "100 µs", "10 ms", "1 s".
fn axis_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else {
        format!("{us} µs")
    }
}

fn table(report: &BenchReport) -> String {
    let mut out = String::from(
        "<table><thead><tr><th>protocol</th><th>ops/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th><th>bytes sent/op</th><th>bytes received/op</th><th>server CPU µs/op</th></tr></thead><tbody>",
    );
    for r in &report.rows {
        let errors = if r.errors_by_kind.is_empty() {
            "0".to_owned()
        } else {
            let kinds: Vec<String> = r
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            format!("{} ({})", r.errors, kinds.join(", "))
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td></tr>",
            escape(&r.protocol),
            r.throughput,
            micros(r.latency.p50_us),
            micros(r.latency.p90_us),
            micros(r.latency.p99_us),
            micros(r.latency.p999_us),
            micros(r.latency.max_us),
            escape(&errors),
            r.bytes_sent_per_op,
            r.bytes_received_per_op,
            r.server_cpu_us_per_op
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"))
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

/// The page.
pub fn render(report: &BenchReport) -> String {
    let mut out = String::from(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>polyport bench</title><style>",
        "body{font:16px/1.45 system-ui,sans-serif;max-width:820px;margin:2rem auto;padding:0 1rem;color:#111}",
        "h1{font-size:1.6rem;margin-bottom:.2rem}.winner{font-size:1.15rem;background:#eef6ff;border-left:4px solid #2563eb;padding:.6rem .8rem}",
        ".meta{color:#555;font-size:.9rem}table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}",
        "th,td{padding:.25rem .5rem;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left}",
        "figure{margin:1.5rem 0}figcaption{font-weight:600;margin-bottom:.3rem}",
        "svg .label{font:12px system-ui,sans-serif;fill:#333}svg .value{font:12px system-ui,sans-serif;fill:#111}",
        "svg .grid{stroke:#e5e5e5;stroke-width:1}.hint{color:#b45309}",
        "</style></head><body>\n"
    ));
    let _ = writeln!(
        out,
        "<h1>polyport bench: {}</h1><p class=\"winner\">{}</p>",
        escape(&report.scenario),
        escape(&report.summary)
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">{}; {} s measured after {} s warm-up. Server: {}. {}. Server CPU: {}. polyport {}.</p>",
        escape(&report.mode),
        report.duration_s,
        report.warmup_s,
        escape(&report.server),
        escape(&report.pinning),
        escape(&report.cpu_source),
        escape(&report.version)
    );
    for hint in &report.hints {
        let _ = writeln!(out, "<p class=\"hint\">{}</p>", escape(hint));
    }
    let rows = &report.rows;
    out.push_str(&bars(
        "Throughput (successful operations per second)",
        "ops/s",
        rows,
        &|r| vec![(r.throughput, "ops/s")],
    ));
    out.push_str(&curves(rows));
    out.push_str(&bars(
        "Bytes on the wire per operation (headers and framing included)",
        "B",
        rows,
        &|r| {
            vec![
                (r.bytes_sent_per_op, "sent"),
                (r.bytes_received_per_op, "received"),
            ]
        },
    ));
    if rows.iter().any(|r| r.server_cpu_us_per_op.is_some()) {
        out.push_str(&bars("Server CPU per operation", "µs", rows, &|r| {
            vec![(r.server_cpu_us_per_op.unwrap_or(0.0), "CPU")]
        }));
    }
    out.push_str(&table(report));
    for r in rows {
        if let Some(note) = &r.note {
            let _ = writeln!(
                out,
                "<p class=\"meta\">{}: {}</p>",
                escape(&r.protocol),
                escape(note)
            );
        }
    }
    for line in &report.data {
        let _ = writeln!(out, "<p class=\"meta\">{}</p>", escape(line));
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "<p class=\"meta\">Skipped {}</p>", escape(skipped));
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_with_an_svg_per_chart_and_escaped_labels() {
        let html = render(&super::super::tests::sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        // Throughput, latency curves, bytes, CPU.
        assert_eq!(html.matches("<svg ").count(), 4);
        assert_eq!(
            html.matches("<svg ").count(),
            html.matches("</svg>").count()
        );
        assert!(!html.contains("<script"), "no scripts");
        assert!(
            !html.contains("http://") || !html.contains("src=\"http"),
            "nothing fetched"
        );
        assert!(html.contains("grpc &quot;h2&quot; &lt;&amp;&gt;"));
        assert!(!html.contains("grpc \"h2\" <&>"));
        assert!(html.contains("class=\"winner\""));
        assert_eq!(axis_label(100.0), "100 µs");
        assert_eq!(axis_label(10_000.0), "10 ms");
        assert_eq!(axis_label(1_000_000.0), "1 s");
        // Every polyline has points and no NaN crept into coordinates.
        assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
    }
}
