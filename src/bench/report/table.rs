//! The terminal table: one line per protocol, aligned, with the settings above and the
//! summary and hints below.

use std::fmt::Write;

use super::BenchReport;

/// Latency in the unit a reader takes in at a glance: µs below 1 ms, ms with 2 decimals above.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// The table as text.
pub fn render(report: &BenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "polyport bench: scenario {}, {}, {}s measured after {}s warm-up",
        report.scenario, report.mode, report.duration_s, report.warmup_s
    );
    let _ = writeln!(out, "server: {}; {}", report.server, report.pinning);
    let _ = writeln!(out, "server CPU: {}", report.cpu_source);
    for line in &report.data {
        let _ = writeln!(out, "data: {line}");
    }
    let _ = writeln!(out);
    let header = [
        "protocol",
        "ops/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "errors",
        "B sent/op",
        "B recv/op",
        "CPU µs/op",
    ];
    let rows: Vec<[String; 11]> = report
        .rows
        .iter()
        .map(|r| {
            [
                r.protocol.clone(),
                format!("{:.0}", r.throughput),
                micros(r.latency.p50_us),
                micros(r.latency.p90_us),
                micros(r.latency.p99_us),
                micros(r.latency.p999_us),
                micros(r.latency.max_us),
                r.errors.to_string(),
                format!("{:.0}", r.bytes_sent_per_op),
                format!("{:.0}", r.bytes_received_per_op),
                r.server_cpu_us_per_op
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                let pad = w - cell.chars().count();
                if i == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    let _ = writeln!(out);
    for r in &report.rows {
        if !r.errors_by_kind.is_empty() {
            let kinds: Vec<String> = r
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(out, "errors {}: {}", r.protocol, kinds.join(", "));
        }
        if let Some(note) = &r.note {
            let _ = writeln!(out, "note {}: {note}", r.protocol);
        }
    }
    for skipped in &report.skipped {
        let _ = writeln!(out, "skipped {skipped}");
    }
    let _ = writeln!(out, "{}", report.summary);
    for hint in &report.hints {
        let _ = writeln!(out, "hint: {hint}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_line_per_row_and_the_errors_summary_and_hints() {
        let text = render(&super::super::tests::sample());
        assert!(text.lines().any(|l| l.starts_with("rest ")), "{text}");
        assert!(text.contains("errors grpc"), "{text}");
        assert!(text.contains("skipped sse"), "{text}");
        assert!(text.contains("hint: "), "{text}");
        assert_eq!(micros(999), "999 µs");
        assert_eq!(micros(1_500), "1.50 ms");
        assert_eq!(micros(2_500_000), "2.50 s");
    }
}
