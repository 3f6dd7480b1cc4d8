//! The REST driver: `GET /v1/orders/{id}` (with `include`, or as a cascade of one call per
//! resource), `GET /v1/orders?limit=50&include=items`, `POST /v1/orders` with an
//! `Idempotency-Key`, over HTTP/1.1 or HTTP/2.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};

use super::fixtures::Fixtures;
use super::http::{HttpClient, Version};
use super::outcome::{OpError, expect_status};
use super::wire::WireCounters;

/// Page size of the `list` operation on every protocol.
pub const PAGE: usize = 50;

/// One REST connection.
pub struct Rest {
    http: HttpClient,
}

impl Rest {
    /// Connects.
    pub async fn connect(
        addr: SocketAddr,
        version: Version,
        counters: &Arc<WireCounters>,
        api_key: Option<&str>,
    ) -> Result<Self, OpError> {
        Ok(Self {
            http: HttpClient::connect(addr, version, counters, api_key).await?,
        })
    }

    /// Reads one order.
    pub async fn get(&mut self, id: &str) -> Result<(), OpError> {
        let order = self.read(&format!("/v1/orders/{id}")).await?;
        check_order(&order, Some(id))
    }

    /// Reads one order with its customer and each item's product, side-loaded.
    pub async fn nested(&mut self, id: &str) -> Result<(), OpError> {
        let order = self
            .read(&format!("/v1/orders/{id}?include=customer,items.product"))
            .await?;
        check_order(&order, Some(id))?;
        check_nested(&order["customer"], &order["items"])
    }

    /// Reads the same data as [`Self::nested`] the way a client without `include` does: the
    /// order, then its customer, then each distinct product, one round trip after another.
    pub async fn cascade(&mut self, id: &str) -> Result<(), OpError> {
        let order = self.read(&format!("/v1/orders/{id}")).await?;
        check_order(&order, Some(id))?;
        let customer_id = order["customer_id"]
            .as_str()
            .ok_or_else(|| OpError::Invalid("the order has no customer_id".into()))?;
        let customer = self.read(&format!("/v1/customers/{customer_id}")).await?;
        let mut products: Vec<&str> = order["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| item["product_id"].as_str())
            .collect();
        products.sort_unstable();
        products.dedup();
        let mut items = Vec::new();
        for product_id in products {
            let product = self.read(&format!("/v1/products/{product_id}")).await?;
            items.push(json!({ "product": product }));
        }
        check_nested(&customer, &Value::Array(items))
    }

    /// GETs `path` and parses its 200 answer.
    async fn read(&mut self, path: &str) -> Result<Value, OpError> {
        let (status, body) = self.http.call(self.http.get(path)?).await?;
        expect_status(status, StatusCode::OK)?;
        parse(&body)
    }

    /// Reads the first page of 50 orders with their items.
    pub async fn list(&mut self) -> Result<(), OpError> {
        let request = self
            .http
            .get(&format!("/v1/orders?limit={PAGE}&include=items"))?;
        let (status, body) = self.http.call(request).await?;
        expect_status(status, StatusCode::OK)?;
        check_page(&parse(&body)?).map(|_| ())
    }

    /// Reads a page of 50 at `position` (`offset=N` or `cursor=...`) and returns its rows'
    /// count and next cursor: the pagination scenario.
    pub async fn page(&mut self, position: &str) -> Result<Option<String>, OpError> {
        let request = self
            .http
            .get(&format!("/v1/orders?limit={PAGE}&{position}"))?;
        let (status, body) = self.http.call(request).await?;
        expect_status(status, StatusCode::OK)?;
        check_page(&parse(&body)?)
    }

    /// Creates an order under `idempotency_key`.
    pub async fn create(
        &mut self,
        fixtures: &Fixtures,
        idempotency_key: &str,
    ) -> Result<String, OpError> {
        let mut request = self.http.post_json("/v1/orders", &create_body(fixtures))?;
        request.headers_mut().insert(
            "idempotency-key",
            http::HeaderValue::from_str(idempotency_key)
                .map_err(|e| OpError::Invalid(e.to_string()))?,
        );
        let (status, body) = self.http.call(request).await?;
        expect_status(status, StatusCode::CREATED)?;
        let order = parse(&body)?;
        check_order(&order, None)?;
        Ok(order["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// The `POST /v1/orders` body.
pub fn create_body(fixtures: &Fixtures) -> Value {
    json!({
        "customer_id": fixtures.customer_id,
        "items": fixtures.new_items().iter()
            .map(|(product_id, quantity)| json!({ "product_id": product_id, "quantity": quantity }))
            .collect::<Vec<_>>(),
    })
}

fn parse(body: &[u8]) -> Result<Value, OpError> {
    serde_json::from_slice(body).map_err(|e| OpError::Invalid(format!("not JSON: {e}")))
}

/// An order representation: has an id (the one asked for, if given) and items.
pub fn check_order(order: &Value, id: Option<&str>) -> Result<(), OpError> {
    let got = order["id"]
        .as_str()
        .ok_or_else(|| OpError::Invalid("no order id".into()))?;
    if id.is_some_and(|id| id != got) {
        return Err(OpError::Invalid(format!(
            "asked for order {id:?}, got {got}"
        )));
    }
    if !order["items"].is_array() {
        return Err(OpError::Invalid("the order has no items array".into()));
    }
    Ok(())
}

/// An order's customer and each of its items' product are there, named: what the nested
/// scenario reads (REST and GraphQL answers alike; the field names are the same in both).
pub fn check_nested(customer: &Value, items: &Value) -> Result<(), OpError> {
    if !customer["name"].is_string() {
        return Err(OpError::Invalid("the order's customer is missing".into()));
    }
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    if items
        .iter()
        .any(|item| !item["product"]["name"].is_string())
    {
        return Err(OpError::Invalid("an item's product is missing".into()));
    }
    Ok(())
}

/// A list envelope with 1 to 50 orders; returns its next cursor.
fn check_page(page: &Value) -> Result<Option<String>, OpError> {
    let rows = page["data"]
        .as_array()
        .ok_or_else(|| OpError::Invalid("no data array".into()))?;
    if rows.is_empty() || rows.len() > PAGE {
        return Err(OpError::Invalid(format!("a page of {} orders", rows.len())));
    }
    Ok(page["next_cursor"].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_with_another_id_or_without_items_is_an_invalid_response() {
        let order = json!({ "id": "7", "items": [] });
        assert_eq!(check_order(&order, Some("7")), Ok(()));
        assert!(matches!(
            check_order(&order, Some("8")),
            Err(OpError::Invalid(_))
        ));
        assert!(matches!(
            check_order(&json!({ "id": "7" }), None),
            Err(OpError::Invalid(_))
        ));
        assert!(matches!(
            check_order(&json!({ "type": "/problems/not-found" }), None),
            Err(OpError::Invalid(_))
        ));
    }

    #[test]
    fn an_empty_or_oversized_page_is_an_invalid_response() {
        assert_eq!(
            check_page(&json!({ "data": [{}], "next_cursor": "c" })),
            Ok(Some("c".into()))
        );
        assert!(check_page(&json!({ "data": [] })).is_err());
        assert!(check_page(&json!({ "data": vec![json!({}); 51] })).is_err());
        assert!(check_page(&json!({ "error": "x" })).is_err());
    }
}
