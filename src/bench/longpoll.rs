//! The long-poll driver: a subscriber that polls `GET /v1/events/poll?since=N` in a loop and
//! reports each `order.created` event's order id.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use super::fixtures::get_json;
use super::http::{HttpClient, Version};
use super::outcome::OpError;
use super::wire::WireCounters;

/// How long one poll may be held by the server.
const HOLD: &str = "10s";

/// Follows `order.created` events of `customer_id`: a first poll with no wait learns where the
/// log is (so nothing after that point can be missed), then `ready` is called and each later
/// poll waits for events, calling `on_event` with each event's order id until it returns false.
pub async fn watch(
    addr: SocketAddr,
    counters: &Arc<WireCounters>,
    api_key: Option<&str>,
    customer_id: &str,
    ready: impl FnOnce(),
    mut on_event: impl FnMut(&str) -> bool,
) -> Result<(), OpError> {
    let mut http = HttpClient::connect(addr, Version::H1, counters, api_key).await?;
    let filter = format!("types=order.created&customer_id={customer_id}");
    let first = get_json(
        &mut http,
        &format!("/v1/events/poll?since=0&timeout=0s&{filter}"),
    )
    .await?;
    let mut since = next_since(&first)?;
    ready();
    loop {
        let page = get_json(
            &mut http,
            &format!("/v1/events/poll?since={since}&timeout={HOLD}&{filter}"),
        )
        .await?;
        for event in page["events"].as_array().into_iter().flatten() {
            if let Some(order_id) = event["order_id"].as_str()
                && !on_event(order_id)
            {
                return Ok(());
            }
        }
        since = next_since(&page)?;
    }
}

fn next_since(page: &Value) -> Result<u64, OpError> {
    page["next_since"]
        .as_u64()
        .ok_or_else(|| OpError::Invalid("a poll answer without next_since".into()))
}
