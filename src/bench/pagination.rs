//! The pagination scenario: REST pages of 50 at depth D, by `offset=D` and by a cursor that
//! points at the same row, each run as its own row. An offset page costs a walk over the D
//! rows before it; a cursor page starts at its key, so its cost does not grow with depth.

use std::sync::Arc;

use super::http::Version;
use super::load::{self, Work};
use super::report::{Measured, Row};
use super::rest::{PAGE, Rest};
use super::wire::WireCounters;
use super::{Protocol, RunContext, Scenario};

/// One row per depth and method: `rest offset=D`, `rest cursor@D`.
pub async fn run(ctx: &RunContext) -> Vec<Row> {
    let mut rows = Vec::new();
    for &depth in &ctx.opts.depths {
        rows.push(
            load::run_labelled(
                Protocol::Rest,
                Work::Page(format!("offset={depth}")),
                ctx,
                format!("rest offset={depth}"),
            )
            .await,
        );
        let label = format!("rest cursor@{depth}");
        match cursor_at(ctx, depth).await {
            Ok(cursor) => {
                rows.push(
                    load::run_labelled(
                        Protocol::Rest,
                        Work::Page(format!("cursor={cursor}")),
                        ctx,
                        label,
                    )
                    .await,
                );
            }
            Err(why) => {
                let mut measured = Measured::new(label, Scenario::Pagination, ctx.opts.duration);
                measured.errors.insert(why.kind(), 1);
                measured.note = Some(format!(
                    "no cursor at depth {depth}: {why:?} (does the server hold that many orders?)"
                ));
                rows.push(measured.into_row());
            }
        }
    }
    rows
}

/// The cursor of the page that starts after row `depth`: the `next_cursor` of the page of 50
/// ending there (the cost of that one offset read is paid here, outside the measurement).
async fn cursor_at(ctx: &RunContext, depth: usize) -> Result<String, super::outcome::OpError> {
    let counters = Arc::new(WireCounters::default());
    let mut rest = Rest::connect(
        ctx.addr,
        Version::H1,
        &counters,
        ctx.opts.api_key.as_deref(),
    )
    .await?;
    let offset = depth.saturating_sub(PAGE);
    rest.page(&format!("offset={offset}"))
        .await?
        .ok_or_else(|| super::outcome::OpError::Invalid(format!("no page after offset {offset}")))
}
