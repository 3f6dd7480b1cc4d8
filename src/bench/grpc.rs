//! The gRPC driver: tonic's generated client over a channel whose connector hands tonic a
//! counted socket, so HTTP/2 framing, headers and trailers are all in the byte counts.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::fixtures::Fixtures;
use super::outcome::OpError;
use super::rest::PAGE;
use super::wire::{self, WireCounters};
use crate::protocols::grpc::pb::orders_client::OrdersClient;
use crate::protocols::grpc::pb::{
    CreateOrderRequest, GetCustomerRequest, GetOrderRequest, GetProductRequest, ListOrdersRequest,
    NewItem, Order, WatchOrdersRequest, watch_orders_response,
};

/// One gRPC channel (one HTTP/2 connection).
pub struct Grpc {
    client: OrdersClient<Channel>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Grpc {
    /// Connects.
    pub async fn connect(
        addr: SocketAddr,
        counters: &Arc<WireCounters>,
        api_key: Option<&str>,
    ) -> Result<Self, OpError> {
        let counters = Arc::clone(counters);
        let connector = tower::service_fn(move |_: http::Uri| {
            let counters = Arc::clone(&counters);
            async move { wire::connect(addr, &counters).await.map(TokioIo::new) }
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| OpError::Connect(e.to_string()))?
            .connect_with_connector(connector)
            .await
            .map_err(|e| OpError::Connect(e.to_string()))?;
        let authorization = api_key
            .map(|key| {
                format!("Bearer {key}")
                    .parse()
                    .map_err(|_| OpError::Invalid("the API key cannot be sent as metadata".into()))
            })
            .transpose()?;
        Ok(Self {
            client: OrdersClient::new(channel),
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// GetOrder.
    pub async fn get(&mut self, id: &str) -> Result<(), OpError> {
        let request = self.request(GetOrderRequest { id: id.to_owned() });
        let order = self
            .client
            .get_order(request)
            .await
            .map_err(status)?
            .into_inner();
        check_order(&order, Some(id))
    }

    /// GetOrder, then GetCustomer and one GetProduct per distinct product, one after another:
    /// the round trips a gRPC client makes for what REST side-loads with `include`.
    pub async fn nested(&mut self, id: &str) -> Result<(), OpError> {
        let request = self.request(GetOrderRequest { id: id.to_owned() });
        let order = self.client.get_order(request).await.map_err(status)?;
        let order = order.into_inner();
        check_order(&order, Some(id))?;
        let request = self.request(GetCustomerRequest {
            id: order.customer_id.clone(),
        });
        let customer = self.client.get_customer(request).await.map_err(status)?;
        if customer.into_inner().id != order.customer_id {
            return Err(OpError::Invalid(
                "GetCustomer answered another customer".into(),
            ));
        }
        let mut products: Vec<&str> = order.items.iter().map(|i| i.product_id.as_str()).collect();
        products.sort_unstable();
        products.dedup();
        for product_id in products {
            let request = self.request(GetProductRequest {
                id: product_id.to_owned(),
            });
            let product = self.client.get_product(request).await.map_err(status)?;
            if product.into_inner().id != product_id {
                return Err(OpError::Invalid(
                    "GetProduct answered another product".into(),
                ));
            }
        }
        Ok(())
    }

    /// ListOrders with a limit of 50 (a server stream of orders, items included).
    pub async fn list(&mut self) -> Result<(), OpError> {
        let request = self.request(ListOrdersRequest {
            limit: PAGE as u32,
            ..Default::default()
        });
        let mut stream = self
            .client
            .list_orders(request)
            .await
            .map_err(status)?
            .into_inner();
        let mut n = 0;
        while let Some(order) = stream.message().await.map_err(status)? {
            check_order(&order, None)?;
            n += 1;
        }
        if n == 0 || n > PAGE {
            return Err(OpError::Invalid(format!("a page of {n} orders")));
        }
        Ok(())
    }

    /// CreateOrder with an `idempotency-key` metadata entry.
    pub async fn create(
        &mut self,
        fixtures: &Fixtures,
        idempotency_key: &str,
    ) -> Result<(), OpError> {
        let mut request = self.request(CreateOrderRequest {
            customer_id: fixtures.customer_id.clone(),
            items: fixtures
                .new_items()
                .into_iter()
                .map(|(product_id, quantity)| NewItem {
                    product_id,
                    quantity,
                })
                .collect(),
        });
        request.metadata_mut().insert(
            "idempotency-key",
            idempotency_key
                .parse()
                .map_err(|_| OpError::Invalid("bad idempotency key".into()))?,
        );
        let order = self
            .client
            .create_order(request)
            .await
            .map_err(status)?
            .into_inner();
        check_order(&order, None)
    }

    /// Follows `order.created` events of `customer_id` (WatchOrders): calls `ready` once the
    /// server has answered the call, then `on_event` with each event's order id until the
    /// stream ends or `on_event` returns false.
    pub async fn watch(
        &mut self,
        customer_id: &str,
        ready: impl FnOnce(),
        mut on_event: impl FnMut(&str) -> bool,
    ) -> Result<(), OpError> {
        let request = self.request(WatchOrdersRequest {
            after_seq: None,
            types: vec!["order.created".into()],
            order_id: String::new(),
            customer_id: customer_id.to_owned(),
        });
        let mut stream = self
            .client
            .watch_orders(request)
            .await
            .map_err(status)?
            .into_inner();
        ready();
        while let Some(message) = stream.message().await.map_err(status)? {
            if let Some(watch_orders_response::Kind::Event(event)) = message.kind
                && !on_event(&event.order_id)
            {
                break;
            }
        }
        Ok(())
    }
}

fn status(status: Status) -> OpError {
    OpError::Grpc(status.code())
}

fn check_order(order: &Order, id: Option<&str>) -> Result<(), OpError> {
    if order.id.is_empty() || id.is_some_and(|id| id != order.id) {
        return Err(OpError::Invalid(format!(
            "asked for order {id:?}, got {:?}",
            order.id
        )));
    }
    Ok(())
}
