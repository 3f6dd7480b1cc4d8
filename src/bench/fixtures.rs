//! What the operations need to know before the load starts: existing order ids to read, a
//! customer and products to order with. Read (and, for the customer, created) over REST once,
//! outside the measured window.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use super::http::{HttpClient, Version};
use super::outcome::{OpError, expect_status};
use super::wire::WireCounters;

/// Ids the operations use.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// Existing orders; `get` walks through them.
    pub order_ids: Vec<String>,
    /// A customer created for this run: new orders are placed for it, and the stream scenario
    /// follows only its events, so other traffic on the server does not count.
    pub customer_id: String,
    /// Products to order.
    pub product_ids: Vec<String>,
}

impl Fixtures {
    /// Reads the fixtures from the server at `addr`.
    pub async fn load(addr: SocketAddr, api_key: Option<&str>) -> Result<Self, OpError> {
        let counters = Arc::new(WireCounters::default());
        let mut http = HttpClient::connect(addr, Version::H1, &counters, api_key).await?;
        let orders = get_json(&mut http, "/v1/orders?limit=100&fields=id").await?;
        let order_ids = ids(&orders["data"]);
        if order_ids.is_empty() {
            return Err(OpError::Invalid(
                "the server has no orders to read: start it with demo data".into(),
            ));
        }
        let products = get_json(&mut http, "/v1/products?limit=3").await?;
        let product_ids = ids(&products["data"]);
        if product_ids.is_empty() {
            return Err(OpError::Invalid("the server has no products".into()));
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let request = http.post_json(
            "/v1/customers",
            &json!({ "name": "polyport bench", "email": format!("bench-{unique}@example.com") }),
        )?;
        let (status, body) = http.call(request).await?;
        expect_status(status, StatusCode::CREATED)?;
        let customer: Value =
            serde_json::from_slice(&body).map_err(|e| OpError::Invalid(e.to_string()))?;
        let customer_id = customer["id"]
            .as_str()
            .ok_or_else(|| OpError::Invalid("the new customer has no id".into()))?
            .to_owned();
        Ok(Self {
            order_ids,
            customer_id,
            product_ids,
        })
    }

    /// The `k`-th order id to read (round robin).
    pub fn order_id(&self, k: u64) -> &str {
        &self.order_ids[(k as usize) % self.order_ids.len()]
    }

    /// The items of every created order: two lines, the same on every protocol.
    pub fn new_items(&self) -> Vec<(String, i64)> {
        vec![
            (self.product_ids[0].clone(), 2),
            (self.product_ids[self.product_ids.len() - 1].clone(), 1),
        ]
    }
}

/// GET `path`, expect 200, parse the JSON.
pub async fn get_json(http: &mut HttpClient, path: &str) -> Result<Value, OpError> {
    let (status, body) = http.call(http.get(path)?).await?;
    expect_status(status, StatusCode::OK)?;
    serde_json::from_slice(&body).map_err(|e| OpError::Invalid(e.to_string()))
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
