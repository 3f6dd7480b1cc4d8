//! The GraphQL driver: `POST /graphql` with `application/json`, over HTTP/1.1 or HTTP/2.
//!
//! Each query selects the same fields the REST representation carries, so both protocols do
//! the same logical work and the byte counts compare like with like. A `200 OK` whose body has
//! `errors` is an error, as it is for any GraphQL client.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use http::header::ACCEPT;
use serde_json::{Value, json};

use super::fixtures::Fixtures;
use super::http::{HttpClient, Version};
use super::outcome::{OpError, expect_status};
use super::rest::PAGE;
use super::wire::WireCounters;

/// The fields of an order, as in REST's `OrderV1`.
const ORDER_FIELDS: &str = "id customerId status items { id productId quantity unitPriceCents } \
     totalCents currency createdAt updatedAt version cancellation { reason cancelledAt }";

/// One GraphQL connection.
pub struct Graphql {
    http: HttpClient,
    get_query: String,
    nested_query: String,
    list_query: String,
    create_query: String,
}

impl Graphql {
    /// Connects.
    pub async fn connect(
        addr: SocketAddr,
        version: Version,
        counters: &Arc<WireCounters>,
        api_key: Option<&str>,
    ) -> Result<Self, OpError> {
        Ok(Self {
            http: HttpClient::connect(addr, version, counters, api_key).await?,
            get_query: format!("query Get($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}"),
            nested_query: format!(
                "query Nested($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} customer {{ id name email }} \
                 items {{ product {{ id name priceCents currency }} }} }} }}"
            ),
            list_query: format!(
                "query List {{ orders(first: {PAGE}) {{ nodes {{ {ORDER_FIELDS} }} pageInfo {{ endCursor hasNextPage }} }} }}"
            ),
            create_query: format!(
                "mutation Create($input: CreateOrderInput!) {{ createOrder(input: $input) {{ order {{ {ORDER_FIELDS} }} }} }}"
            ),
        })
    }

    /// `order(id:)`.
    pub async fn get(&mut self, id: &str) -> Result<(), OpError> {
        let data = execute(&mut self.http, &self.get_query, json!({ "id": id }), None).await?;
        super::rest::check_order(&data["order"], Some(id))
    }

    /// `order(id:)` with its customer and each item's product, in one query.
    pub async fn nested(&mut self, id: &str) -> Result<(), OpError> {
        let variables = json!({ "id": id });
        let data = execute(&mut self.http, &self.nested_query, variables, None).await?;
        let order = &data["order"];
        super::rest::check_order(order, Some(id))?;
        super::rest::check_nested(&order["customer"], &order["items"])
    }

    /// `orders(first: 50)` with items.
    pub async fn list(&mut self) -> Result<(), OpError> {
        let data = execute(&mut self.http, &self.list_query, json!({}), None).await?;
        let n = data["orders"]["nodes"].as_array().map_or(0, Vec::len);
        if n == 0 || n > PAGE {
            return Err(OpError::Invalid(format!("a page of {n} orders")));
        }
        Ok(())
    }

    /// `createOrder` with an `Idempotency-Key` header.
    pub async fn create(
        &mut self,
        fixtures: &Fixtures,
        idempotency_key: &str,
    ) -> Result<(), OpError> {
        let input = json!({
            "customerId": fixtures.customer_id,
            "items": fixtures.new_items().iter()
                .map(|(p, q)| json!({ "productId": p, "quantity": q }))
                .collect::<Vec<_>>(),
        });
        let variables = json!({ "input": input });
        let data = execute(
            &mut self.http,
            &self.create_query,
            variables,
            Some(idempotency_key),
        )
        .await?;
        super::rest::check_order(&data["createOrder"]["order"], None)
    }
}

/// POSTs one operation and validates the answer.
async fn execute(
    http: &mut HttpClient,
    query: &str,
    variables: Value,
    idempotency_key: Option<&str>,
) -> Result<Value, OpError> {
    let mut request = http.post_json(
        "/graphql",
        &json!({ "query": query, "variables": variables }),
    )?;
    request
        .headers_mut()
        .insert(ACCEPT, http::HeaderValue::from_static("application/json"));
    if let Some(key) = idempotency_key {
        request.headers_mut().insert(
            "idempotency-key",
            http::HeaderValue::from_str(key).map_err(|e| OpError::Invalid(e.to_string()))?,
        );
    }
    let (status, body) = http.call(request).await?;
    validate(status, &body)
}

/// A GraphQL HTTP response's `data`, or the error it stands for: a non-200 status, a body that
/// is not JSON, a non-empty `errors` list (even beside data: partial data is still a failed
/// operation for a benchmark), or no `data`.
pub fn validate(status: StatusCode, body: &[u8]) -> Result<Value, OpError> {
    expect_status(status, StatusCode::OK)?;
    let mut response: Value =
        serde_json::from_slice(body).map_err(|e| OpError::Invalid(format!("not JSON: {e}")))?;
    if let Some(errors) = response["errors"].as_array()
        && !errors.is_empty()
    {
        let code = errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("UNKNOWN")
            .to_owned();
        return Err(OpError::Graphql(code));
    }
    match response.get_mut("data").map(Value::take) {
        Some(data) if data.is_object() => Ok(data),
        _ => Err(OpError::Invalid("no data".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graphql_200_with_errors_is_an_error_even_beside_data() {
        let body = br#"{"data":{"order":null},"errors":[{"message":"no order 9","extensions":{"code":"NOT_FOUND"}}]}"#;
        assert_eq!(
            validate(StatusCode::OK, body),
            Err(OpError::Graphql("NOT_FOUND".into()))
        );
        let no_code = br#"{"errors":[{"message":"syntax"}]}"#;
        assert_eq!(
            validate(StatusCode::OK, no_code),
            Err(OpError::Graphql("UNKNOWN".into()))
        );
    }

    #[test]
    fn graphql_data_without_errors_is_returned_and_other_failures_are_kinds() {
        let ok = br#"{"data":{"order":{"id":"3","items":[]}}}"#;
        assert_eq!(validate(StatusCode::OK, ok).unwrap()["order"]["id"], "3");
        let empty_errors = br#"{"data":{"x":1},"errors":[]}"#;
        assert!(validate(StatusCode::OK, empty_errors).is_ok());
        assert_eq!(
            validate(StatusCode::UNAUTHORIZED, b"{}"),
            Err(OpError::Http(401))
        );
        assert!(matches!(
            validate(StatusCode::OK, b"<html>"),
            Err(OpError::Invalid(_))
        ));
        assert!(matches!(
            validate(StatusCode::OK, b"{}"),
            Err(OpError::Invalid(_))
        ));
    }
}
