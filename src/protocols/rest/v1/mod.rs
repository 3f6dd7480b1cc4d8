//! REST API version 1: the routes. Handlers live beside their resource.
//!
//! ```text
//! GET    /v1/orders                         list (filters, sort, fields, include, pages)
//! POST   /v1/orders                         create -> 201 + Location
//! POST   /v1/orders/bulk                    create many -> 200 with one result each
//! GET    /v1/orders/{id}                    read (ETag; If-None-Match -> 304)
//! PUT    /v1/orders/{id}                    replace the writable fields (If-Match)
//! PATCH  /v1/orders/{id}                    merge-patch (If-Match)
//! DELETE /v1/orders/{id}                    204 (If-Match)
//! GET    /v1/orders/{id}/items              list items
//! POST   /v1/orders/{id}/items              add an item -> 201 + Location
//! GET    /v1/orders/{id}/items/{item_id}    read an item
//! POST   /v1/orders/{id}/cancellations      cancel -> 201 + Location
//! GET    /v1/orders/{id}/cancellation       read the cancellation
//! GET    /v1/customers, POST /v1/customers, GET /v1/customers/{id}, GET /v1/customers/{id}/orders
//! GET    /v1/products, GET /v1/products/{id}
//! POST   /v1/webhook-endpoints, GET/PATCH/DELETE /v1/webhook-endpoints/{id},
//!        POST .../{id}/rotate-secret, POST .../{id}/test, GET .../{id}/deliveries
//! GET    /v1/webhook-deliveries/{id}, POST /v1/webhook-deliveries/{id}/retry
//! POST   /v1/webhooks/inbound/{source}, GET /v1/webhooks/inbound
//! ```

pub mod catalog;
pub mod customers;
pub mod dto;
pub mod orders;
pub mod webhooks;

use axum::Router;
use axum::routing::get;

use crate::protocols::AppState;

/// The v1 routes, to be nested under `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/bulk", axum::routing::post(orders::bulk))
        .route(
            "/orders/{id}",
            get(orders::read)
                .put(orders::replace)
                .patch(orders::modify)
                .delete(orders::remove),
        )
        .route(
            "/orders/{id}/items",
            get(orders::list_items).post(orders::add_item),
        )
        .route("/orders/{id}/items/{item_id}", get(orders::read_item))
        .route(
            "/orders/{id}/cancellations",
            axum::routing::post(orders::cancel),
        )
        .route("/orders/{id}/cancellation", get(orders::read_cancellation))
        .route("/customers", get(customers::list).post(customers::create))
        .route("/customers/{id}", get(customers::read))
        .route("/customers/{id}/orders", get(customers::orders))
        .route("/products", get(catalog::list))
        .route("/products/{id}", get(catalog::read))
        .route(
            "/webhook-endpoints",
            get(webhooks::list_endpoints).post(webhooks::create_endpoint),
        )
        .route(
            "/webhook-endpoints/{id}",
            get(webhooks::read_endpoint)
                .patch(webhooks::update_endpoint)
                .delete(webhooks::delete_endpoint),
        )
        .route(
            "/webhook-endpoints/{id}/rotate-secret",
            axum::routing::post(webhooks::rotate_secret),
        )
        .route(
            "/webhook-endpoints/{id}/test",
            axum::routing::post(webhooks::test_endpoint),
        )
        .route(
            "/webhook-endpoints/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route("/webhook-deliveries/{id}", get(webhooks::read_delivery))
        .route(
            "/webhook-deliveries/{id}/retry",
            axum::routing::post(webhooks::retry_delivery),
        )
        .route("/webhooks/inbound", get(webhooks::list_inbound))
        .route(
            "/webhooks/inbound/{source}",
            axum::routing::post(webhooks::receive),
        )
}
