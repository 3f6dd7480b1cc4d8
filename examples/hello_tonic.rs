//! Baseline for the gRPC speed bar: a bare tonic server whose `GetOrder` answers one constant
//! order, and nothing else (no router, no layers, no domain lookup).
//!
//! Why polyport's own generated service rather than a separate hello proto: the reply is the
//! same message (same size, same prost codec) that polyport sends for `GetOrder`, so the ratio
//! "polyport calls per CPU-second / hello_tonic calls per CPU-second" prices exactly what
//! polyport adds (axum routing on the shared port, its layers, the store lookup, the
//! domain-to-message conversion), not a smaller payload; and build.rs stays one proto, so no
//! build (CI's included) compiles a second one. The other methods answer UNIMPLEMENTED.
//!
//! It is served by tonic's own server (`tonic::transport::Server`, HTTP/2 only): what a bare
//! tonic service looks like. Build it with the same release profile:
//!
//! ```text
//! cargo build --release --example hello_tonic
//! target/release/examples/hello_tonic --addr 127.0.0.1:8082   # or HELLO_ADDR=...; default 127.0.0.1:0
//! ```
//! It prints `listening on http://ADDR` once bound, and runs until killed.

use std::sync::Arc;

use polyport::domain::Core;
use polyport::domain::events::MemoryEventLog;
use polyport::domain::model::OrderId;
use polyport::domain::pagination::CursorCodec;
use polyport::domain::seed;
use polyport::domain::store::MemoryStore;
use polyport::protocols::grpc::{convert, pb};
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// `--addr ADDR`, else `HELLO_ADDR`, else a free port on 127.0.0.1.
fn addr() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("HELLO_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
}

/// Answers `GetOrder` with `order`, whatever the id.
struct Hello {
    order: pb::Order,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("hello_tonic answers GetOrder only"))
}

#[tonic::async_trait]
impl pb::orders_server::Orders for Hello {
    async fn get_order(
        &self,
        _request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        Ok(Response::new(self.order.clone()))
    }
    async fn create_order(
        &self,
        _: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        unimplemented()
    }
    async fn update_order(
        &self,
        _: Request<pb::UpdateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        unimplemented()
    }
    async fn cancel_order(
        &self,
        _: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        unimplemented()
    }
    async fn delete_order(
        &self,
        _: Request<pb::DeleteOrderRequest>,
    ) -> Result<Response<pb::DeleteOrderResponse>, Status> {
        unimplemented()
    }
    async fn add_item(
        &self,
        _: Request<pb::AddItemRequest>,
    ) -> Result<Response<pb::AddItemResponse>, Status> {
        unimplemented()
    }
    async fn get_customer(
        &self,
        _: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        unimplemented()
    }
    async fn get_product(
        &self,
        _: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        unimplemented()
    }
    type ListOrdersStream = ReceiverStream<Result<pb::Order, Status>>;
    async fn list_orders(
        &self,
        _: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<Self::ListOrdersStream>, Status> {
        unimplemented()
    }
    type WatchOrdersStream = ReceiverStream<Result<pb::WatchOrdersResponse, Status>>;
    async fn watch_orders(
        &self,
        _: Request<pb::WatchOrdersRequest>,
    ) -> Result<Response<Self::WatchOrdersStream>, Status> {
        unimplemented()
    }
    async fn bulk_create_orders(
        &self,
        _: Request<Streaming<pb::CreateOrderRequest>>,
    ) -> Result<Response<pb::BulkCreateOrdersResponse>, Status> {
        unimplemented()
    }
    type OrderSessionStream = ReceiverStream<Result<pb::SessionMessage, Status>>;
    async fn order_session(
        &self,
        _: Request<Streaming<pb::SessionCommand>>,
    ) -> Result<Response<Self::OrderSessionStream>, Status> {
        unimplemented()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The constant reply: the demo data's order 1, exactly as polyport's GetOrder sends it.
    let store = Arc::new(MemoryStore::new());
    seed::load(store.as_ref(), 1);
    let core = Core::new(
        store,
        Arc::new(MemoryEventLog::new(1, 1)),
        CursorCodec::new(b"hello"),
    );
    let order = convert::order(&core.order(&polyport::domain::Principal::system(), OrderId(1))?);

    let listener = TcpListener::bind(addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(pb::orders_server::OrdersServer::new(Hello { order }))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
