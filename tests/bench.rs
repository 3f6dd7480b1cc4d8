//! `polyport bench`, end to end: every protocol runs briefly against a spawned server through
//! the library function the command line calls, and the report must hold sane numbers.
//!
//! Nothing here asserts how fast anything is: only that each protocol completed operations
//! without errors, that the percentiles are ordered, and that bytes were counted.

use std::time::Duration;

use polyport::bench::report::{BenchReport, Row};
use polyport::bench::{self, BenchOptions, Protocol, Scenario};

fn short(scenario: Scenario, protocols: &[Protocol]) -> BenchOptions {
    BenchOptions {
        scenario,
        protocols: protocols.to_vec(),
        connections: 2,
        subscribers: 2,
        rate: (scenario == Scenario::Stream).then_some(50.0),
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(200),
        quiet: true,
        // These tests run side by side (and beside other test binaries): pinning every spawned
        // server to the same core would make them starve each other.
        no_pin: true,
        ..BenchOptions::default()
    }
}

fn check_sane(report: &BenchReport, row: &Row, push: bool) {
    let l = &row.latency;
    assert!(row.ops > 0, "{}: no operations\n{report:#?}", row.protocol);
    assert_eq!(row.errors, 0, "{}: {:?}", row.protocol, row.errors_by_kind);
    assert!(
        l.p50_us > 0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us,
        "{}: {l:?}",
        row.protocol
    );
    assert!(row.throughput > 0.0, "{}", row.protocol);
    assert!(
        row.bytes_received_per_op > 0.0,
        "{}: no bytes received",
        row.protocol
    );
    // A push subscriber may send nothing at all once subscribed.
    if !push {
        assert!(
            row.bytes_sent_per_op > 0.0,
            "{}: no bytes sent",
            row.protocol
        );
    }
    assert!(
        row.server_cpu_us_per_op.is_some_and(|c| c > 0.0),
        "{}: server CPU not measured",
        row.protocol
    );
}

#[test]
fn every_request_response_protocol_sends_the_api_key_and_completes_reads_and_writes() {
    let protocols = [
        Protocol::Rest,
        Protocol::RestH2,
        Protocol::Grpc,
        Protocol::Graphql,
        Protocol::GraphqlH2,
        Protocol::Ws,
    ];
    let mut opts = short(Scenario::Mixed, &protocols);
    // The spawned server makes it an admin key: every protocol must send it to get through.
    opts.api_key = Some("bench-test-key".into());
    let report = bench::run(&opts).expect("the bench runs");
    let names: Vec<&str> = report.rows.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(
        names,
        ["rest", "rest-h2", "grpc", "graphql", "graphql-h2", "ws"]
    );
    for row in &report.rows {
        check_sane(&report, row, false);
    }
    assert!(report.hints.is_empty(), "{:?}", report.hints);
    assert!(report.summary.contains("most ops/s"), "{}", report.summary);
}

#[test]
fn the_nested_read_completes_over_rest_its_cascade_grpc_and_graphql_and_skips_the_websocket_session()
 {
    let protocols = [
        Protocol::Rest,
        Protocol::RestCascade,
        Protocol::Grpc,
        Protocol::Graphql,
        Protocol::Ws,
    ];
    let report = bench::run(&short(Scenario::Nested, &protocols)).expect("the bench runs");
    let names: Vec<&str> = report.rows.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(names, ["rest", "rest-cascade", "grpc", "graphql"]);
    // An error would be an answer without the customer or an item's product.
    for row in &report.rows {
        check_sane(&report, row, false);
    }
    let (rest, cascade) = (&report.rows[0], &report.rows[1]);
    assert!(
        cascade.bytes_sent_per_op > 2.0 * rest.bytes_sent_per_op,
        "the cascade sends a request per resource: {} vs {} bytes",
        cascade.bytes_sent_per_op,
        rest.bytes_sent_per_op
    );
    // The report says what every row returns, and how each protocol gets it.
    assert!(report.data[0].contains("its customer"), "{:?}", report.data);
    for name in names {
        assert!(
            report
                .data
                .iter()
                .any(|line| line.starts_with(&format!("{name}: "))),
            "{name}: {:?}",
            report.data
        );
    }
    assert!(
        report.skipped.iter().any(|s| s.contains("ws")),
        "{:?}",
        report.skipped
    );
}

#[test]
fn every_push_protocol_delivers_every_event_to_every_subscriber() {
    let protocols = [
        Protocol::Grpc,
        Protocol::Ws,
        Protocol::Sse,
        Protocol::LongPoll,
    ];
    let report = bench::run(&short(Scenario::Stream, &protocols)).expect("the bench runs");
    assert_eq!(report.rows.len(), 4);
    for row in &report.rows {
        // Errors would include "not delivered": an event a subscriber never got.
        check_sane(&report, row, true);
    }
}

#[test]
fn pagination_compares_offset_and_cursor_pages_at_the_same_depth() {
    let mut opts = short(Scenario::Pagination, &[]);
    opts.depths = vec![500];
    opts.duration = Duration::from_millis(500);
    let report = bench::run(&opts).expect("the bench runs");
    let names: Vec<&str> = report.rows.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(names, ["rest offset=500", "rest cursor@500"]);
    for row in &report.rows {
        check_sane(&report, row, false);
    }
    assert_eq!(
        report.data[1..],
        [
            "rest offset=500: GET /v1/orders?limit=50&offset=N",
            "rest cursor@500: GET /v1/orders?limit=50&cursor=C (the cursor that points at that depth)",
        ],
        "{:?}",
        report.data
    );
}
