//! `--json FILE`: the whole report, machine-readable (it parses back into [`BenchReport`]).

use super::BenchReport;

/// The report as pretty JSON.
pub fn render(report: &BenchReport) -> String {
    // Serialising plain data (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_report_parses_back_into_the_same_report() {
        let report = super::super::tests::sample();
        let back: BenchReport = serde_json::from_str(&render(&report)).unwrap();
        assert_eq!(back, report);
    }
}
