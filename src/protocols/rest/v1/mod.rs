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
//! ```

pub mod catalog;
pub mod customers;
pub mod dto;
pub mod orders;

use axum::Router;
use axum::routing::get;

use crate::app::App;

/// The v1 routes, to be nested under `/v1`.
pub fn routes() -> Router<App> {
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
}
