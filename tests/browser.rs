//! The workshop page and GraphiQL in a real browser: headless Chromium (Debian's, at
//! `/usr/bin/chromium`, or `POLYPORT_CHROMIUM`) driven by Playwright (`tests/browser/run.mjs`,
//! playwright-core pinned by `tests/browser/package-lock.json`) against the real server,
//! started here on 127.0.0.1:0 as every other test does.
//!
//! Each test is one scenario of `run.mjs`, which fails on a console error, an uncaught
//! exception or any request that leaves the server, on top of what the scenario checks.
//!
//! On a machine without Chromium, Node.js or the node modules, these tests print loudly what
//! they skipped and how to install it, and pass, so `cargo test` passes on a fresh machine. In
//! CI (`CI=true`) a missing piece is a failure: `.ci/run` installs them.
//!
//! With `SCREENSHOTS=docs/screenshots` each scenario leaves a PNG of its panel there (the
//! README shows them).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestServer;
use polyport::config::Config;

/// Browsers are heavy on two cores: one scenario at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario that has not finished by then has hung: Playwright's own waits are shorter.
const PATIENCE: Duration = Duration::from_secs(180);

/// What the scenarios need, or why they cannot run here.
fn harness() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("POLYPORT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {} (install: apt-get install -y --no-install-recommends chromium, \
             or set POLYPORT_CHROMIUM)",
            chromium.display()
        ));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("no node on PATH (install: apt-get install -y nodejs npm)".into());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err("no playwright-core in tests/browser/node_modules (install: npm ci --prefix tests/browser)".into());
    }
    Ok((chromium, dir))
}

/// Runs `scenario` of `run.mjs` against `server` with `key`; panics with its output if it
/// fails. Returns without running it (loudly) when the harness is missing outside CI.
async fn scenario(name: &str, server: &TestServer, key: &str) {
    let (chromium, dir) = match harness() {
        Ok(found) => found,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("browser test {name}: {why}; CI must run the browser tests")
        }
        Err(why) => {
            // Straight to the process's stderr: libtest captures eprintln! of passing tests,
            // and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPED browser test '{name}': {why}\n!!! (in CI, with CI=true, this is a failure)\n"
            );
            return;
        }
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("run.mjs"))
        .arg(name)
        .arg(server.url(""))
        .arg(key)
        .env("POLYPORT_CHROMIUM", &chromium)
        .kill_on_drop(true);
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .unwrap_or_else(|_| panic!("browser test {name}: still running after {PATIENCE:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test {name} failed:\n{stdout}{stderr}"
    );
    assert!(stdout.contains(&format!("ok: {name}")), "{stdout}{stderr}");
}

/// Dev mode, as a workshop runs it: credentials needed, a generated key, rate limits on.
async fn dev_mode(config: Config) -> (TestServer, String) {
    let server = TestServer::with_auth(config).await;
    let key = server
        .app
        .gate
        .auth
        .dev_key()
        .expect("dev mode has a key")
        .to_owned();
    (server, key)
}

#[tokio::test]
async fn the_page_loads_signs_in_and_connects_every_feed_with_no_console_error_or_foreign_request()
{
    let (server, key) = dev_mode(Config::default()).await;
    scenario("loads", &server, &key).await;
}

#[tokio::test]
async fn with_auth_off_the_feed_starts_as_soon_as_the_page_opens() {
    let server = TestServer::start().await;
    scenario("loads", &server, "").await;
}

#[tokio::test]
async fn an_order_created_on_the_page_appears_in_every_feed_column_with_the_same_seq() {
    let (server, key) = dev_mode(Config::default()).await;
    scenario("feed", &server, &key).await;
}

#[tokio::test]
async fn every_dropped_feed_resumes_with_the_events_it_missed_and_no_gap() {
    let (server, key) = dev_mode(Config::default()).await;
    scenario("resume", &server, &key).await;
}

#[tokio::test]
async fn a_feed_away_longer_than_the_log_keeps_shows_the_gap_notice_on_every_transport() {
    let mut config = Config::default();
    config.events.retain = 3;
    let (server, key) = dev_mode(config).await;
    scenario("gap", &server, &key).await;
}

#[tokio::test]
async fn the_playground_runs_each_operation_over_rest_graphql_and_grpc_web_and_a_fault_alike() {
    let (server, key) = dev_mode(Config::default()).await;
    scenario("playground", &server, &key).await;
}

#[tokio::test]
async fn the_patterns_one_order_per_idempotency_key_304_and_412_and_offset_pages_repeating_rows_cursors_do_not()
 {
    let (server, key) = dev_mode(Config::default()).await;
    scenario("idempotency", &server, &key).await;
}

#[tokio::test]
async fn the_rate_limit_demo_shows_a_429() {
    // A small quota that refills slowly: with the default (100 a second) a loaded machine's
    // browser may never send faster than the bucket refills.
    let mut config = Config::default();
    config.rate_limit.caller.burst = 30;
    config.rate_limit.caller.refill_per_second = 2;
    let (server, key) = dev_mode(config).await;
    scenario("ratelimit", &server, &key).await;
}

#[tokio::test]
async fn a_chaos_knob_set_on_the_page_injects_the_same_error_on_every_protocol_until_turned_off() {
    let (server, key) = dev_mode(Config::default()).await;
    scenario("chaos", &server, &key).await;
}

/// The docs explorer is not checked: GraphiQL's introspection query is refused today by the
/// depth limit (issue 13, fixed on another branch), so it shows "Error fetching schema".
#[tokio::test]
async fn graphiql_works_offline_with_the_key_for_queries_and_subscriptions() {
    let (server, key) = dev_mode(Config::default()).await;
    scenario("graphiql", &server, &key).await;
}
