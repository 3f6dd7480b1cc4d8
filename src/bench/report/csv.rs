//! `--csv FILE`: one line per row, for spreadsheets and plotting scripts.

use super::BenchReport;

/// The CSV header.
pub const HEADER: &str = "protocol,scenario,ops,errors,ops_per_s,p50_us,p90_us,p99_us,p999_us,max_us,mean_us,bytes_sent_per_op,bytes_received_per_op,server_cpu_us_per_op,errors_by_kind,note";

/// The report as CSV (RFC 4180 quoting where a field needs it).
pub fn render(report: &BenchReport) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for r in &report.rows {
        let kinds: Vec<String> = r
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let fields = [
            field(&r.protocol),
            field(&r.scenario),
            r.ops.to_string(),
            r.errors.to_string(),
            format!("{:.1}", r.throughput),
            r.latency.p50_us.to_string(),
            r.latency.p90_us.to_string(),
            r.latency.p99_us.to_string(),
            r.latency.p999_us.to_string(),
            r.latency.max_us.to_string(),
            format!("{:.1}", r.latency.mean_us),
            format!("{:.1}", r.bytes_sent_per_op),
            format!("{:.1}", r.bytes_received_per_op),
            r.server_cpu_us_per_op
                .map_or_else(String::new, |c| format!("{c:.2}")),
            field(&kinds.join(";")),
            field(r.note.as_deref().unwrap_or("")),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_a_header_and_a_line_per_row_with_quoted_fields() {
        let text = render(&super::super::tests::sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], HEADER);
        assert!(
            lines[1].starts_with("rest,get,1000,0,1000.0,"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("\"grpc \"\"h2\"\" <&>\",get,"),
            "{}",
            lines[2]
        );
        assert_eq!(field("a,b"), "\"a,b\"");
    }
}
