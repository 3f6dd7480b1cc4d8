//! `/v1/orders` and its sub-resources: items and cancellations.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::dto::{
    BulkV1, CancelV1, CancellationResourceV1, CreateOrderV1, CustomerV1, ItemV1, NewItemV1,
    OrderV1, PatchOrderV1, ProductV1, ReplaceOrderV1,
};
use crate::domain::Core;
use crate::domain::command::{AddItem, CancelOrder, CreateOrder, CreateOrders, UpdateOrder};
use crate::domain::core::{BulkElement, ITEM_SORT_FIELDS, ORDER_SORT_FIELDS};
use crate::domain::model::{Customer, CustomerId, ItemId, Order, OrderId, Product, ProductId};
use crate::domain::{DomainError, FieldViolation, NewItem, OrderFilter, Principal};
use crate::gateway::ApiError;
use crate::gateway::auth::Caller;
use crate::gateway::error::kind;
use crate::gateway::error::problem::problem_body;
use crate::protocols::AppState;
use crate::protocols::rest::body::{
    JsonBody, OptionalJsonBody, PatchBody, from_value, json_from, json_object_from,
};
use crate::protocols::rest::conditional::{expected_version, version_etag};
use crate::protocols::rest::idempotent;
use crate::protocols::rest::listing::NoParameters;
use crate::protocols::rest::listing::{self, ListParams, ListSpec};
use crate::protocols::rest::{Caching, JsonResponse};

const ORDER_FIELDS: &[&str] = &[
    "id",
    "customer_id",
    "status",
    "total_cents",
    "currency",
    "created_at",
    "updated_at",
    "version",
    "cancellation",
];

/// What an order can side-load: its customer, its items, and each item's product.
const ORDER_INCLUDES: &[&str] = &["customer", "items", "items.product"];

/// `GET /v1/orders`
pub const ORDERS: ListSpec = ListSpec {
    name: "orders",
    sortable: ORDER_SORT_FIELDS,
    fields: ORDER_FIELDS,
    includes: ORDER_INCLUDES,
    filters: &["status", "customer_id"],
};

/// `GET /v1/customers/{id}/orders`: the same, with the customer fixed by the path.
pub const CUSTOMER_ORDERS: ListSpec = ListSpec {
    filters: &["status"],
    ..ORDERS
};

const ITEMS: ListSpec = ListSpec {
    name: "items",
    sortable: ITEM_SORT_FIELDS,
    fields: &["id", "product_id", "quantity", "unit_price_cents"],
    includes: &[],
    filters: &[],
};

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    Ok(OrderId::parse(raw)?)
}

fn invalid(violations: Vec<FieldViolation>) -> ApiError {
    ApiError::invalid(violations)
}

fn order_body(order: &Order) -> JsonResponse {
    JsonResponse::ok(&OrderV1::from(order))
        .etag(&version_etag(order.version))
        .caching(Caching::Private)
}

// ---- the collection ----

/// `GET /v1/orders`
pub async fn list(
    State(app): State<AppState>,
    Caller(who): Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    list_filtered(&app, &who, query, &ORDERS, OrderFilter::default())
}

/// Lists orders for `query`, on top of `filter` (which a path may have fixed).
pub fn list_filtered(
    app: &AppState,
    who: &Principal,
    query: Vec<(String, String)>,
    spec: &ListSpec,
    fixed: OrderFilter,
) -> Result<Response, ApiError> {
    let params = listing::parse(query, spec, app.page_limits(), app.core.cursors())?;
    let mut filter = OrderFilter::parse(
        params.filters.get("status").map(String::as_str),
        params.filters.get("customer_id").map(String::as_str),
    )
    .map_err(|v| invalid(vec![v]))?;
    // A list fixed to one customer (`/v1/customers/{id}/orders`) takes no customer_id filter.
    if fixed.customer_id.is_some() {
        filter.customer_id = fixed.customer_id;
    }
    let page = app.core.list_orders(who, &filter, &params.page);
    let mut loads = SideLoads::default();
    Ok(listing::respond(
        &page,
        &params,
        app.core.cursors(),
        Caching::Private,
        |order| order_row(app, who, order, &params, &mut loads),
    ))
}

/// What one request side-loads, read once however many rows name it.
#[derive(Default)]
struct SideLoads {
    customers: HashMap<CustomerId, Option<Customer>>,
    products: HashMap<ProductId, Option<Product>>,
}

/// An order with what `include` asks for: `customer` embeds the customer, `items.product`
/// each item's product. (Whether a list row shows `items` at all is the list's business.)
fn order_object(
    app: &AppState,
    who: &Principal,
    order: &Order,
    include: &[String],
    loads: &mut SideLoads,
) -> Map<String, Value> {
    let mut object = listing::to_object(&OrderV1::from(order));
    if include.iter().any(|i| i == "items.product") {
        let items = order
            .items
            .iter()
            .map(|item| {
                let mut row = listing::to_object(&ItemV1::from(item));
                let product = loads
                    .products
                    .entry(item.product_id)
                    .or_insert_with(|| app.core.product(item.product_id).ok());
                row.insert(
                    "product".into(),
                    product
                        .as_ref()
                        .map_or(Value::Null, |p| json!(ProductV1::from(p))),
                );
                Value::Object(row)
            })
            .collect();
        object.insert("items".into(), Value::Array(items));
    }
    if include.iter().any(|i| i == "customer") {
        let customer = loads
            .customers
            .entry(order.customer_id)
            .or_insert_with(|| app.core.customer(who, order.customer_id).ok());
        object.insert(
            "customer".into(),
            customer
                .as_ref()
                .map_or(Value::Null, |c| json!(CustomerV1::from(c))),
        );
    }
    object
}

/// One order in a list: items only with `include=items` (or `items.product`), the customer
/// with `include=customer`.
fn order_row(
    app: &AppState,
    who: &Principal,
    order: &Order,
    params: &ListParams,
    loads: &mut SideLoads,
) -> Value {
    let mut object = order_object(app, who, order, &params.include, loads);
    if !params.includes("items") {
        object.shift_remove("items");
    }
    listing::sparse(object, params)
}

/// `POST /v1/orders` -> 201 + Location; honours `Idempotency-Key`.
pub async fn create(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateOrderV1>,
) -> Result<Response, ApiError> {
    let command = CreateOrder(body.into_domain().map_err(invalid)?);
    let executed = idempotent::run(&app, &who, &headers, &command)?;
    let order = &executed.output;
    let response =
        JsonResponse::created(&format!("/v1/orders/{}", order.id), &OrderV1::from(order))
            .etag(&version_etag(order.version))
            .into_response();
    Ok(idempotent::mark(&executed, response))
}

/// `POST /v1/orders/bulk` -> 200 with one result per order; a bad element fails alone.
pub async fn bulk(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: BulkV1 = json_object_from(&headers, &bytes)?;
    Core::check_bulk_size(body.orders.len())?;
    // Each element is parsed on its own, so one bad element fails alone. The parsed commands,
    // not the raw JSON, identify the request for its idempotency key.
    let commands: Vec<BulkElement> = body
        .orders
        .iter()
        .map(|value| {
            let parsed: CreateOrderV1 = from_value(value).map_err(|e| e.violations)?;
            parsed.into_domain()
        })
        .collect();
    let executed = idempotent::run(&app, &who, &headers, &CreateOrders(commands))?;
    let results: Vec<Value> = executed
        .output
        .iter()
        .enumerate()
        .map(|(index, result)| match result {
            Ok(order) => json!({ "index": index, "status": 201, "id": order.id.to_string() }),
            Err(error) => {
                let error = ApiError::from(error.clone());
                json!({
                    "index": index,
                    "status": error.kind.status.as_u16(),
                    "error": problem_body(&error, None, None),
                })
            }
        })
        .collect();
    let response =
        JsonResponse::new(StatusCode::OK, &json!({ "results": results })).into_response();
    Ok(idempotent::mark(&executed, response))
}

// ---- one order ----

/// `GET /v1/orders/{id}` with `ETag`; `If-None-Match` -> 304. `?include=customer,items.product`
/// side-loads as the list does (then the ETag is the representation's digest, since it
/// changes with the customer or a product too, not only with the order's version).
pub async fn read(
    State(app): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let include = listing::parse_single(query, ORDER_INCLUDES)?;
    let order = app.core.order(&who, order_id(&id)?)?;
    if include.iter().all(|i| i == "items") {
        // Items are always part of one order: nothing to side-load.
        return Ok(order_body(&order).or_not_modified(&headers).into_response());
    }
    let body = order_object(&app, &who, &order, &include, &mut SideLoads::default());
    Ok(JsonResponse::representation(&body, Caching::Private, &headers).into_response())
}

/// `PUT /v1/orders/{id}`: replaces customer, status and items; `If-Match` -> 412 on mismatch.
pub async fn replace(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    // Path first: a PUT to an order that does not exist is a 404 whatever the body says.
    app.core.order(&who, id)?;
    let body: ReplaceOrderV1 = json_from(&headers, &bytes)?;
    let changes = body.into_domain().map_err(invalid)?;
    let order = app
        .core
        .update_order(&who, id, changes, &expected_version(&headers))?;
    Ok(order_body(&order).into_response())
}

/// `PATCH /v1/orders/{id}` (merge patch); `If-Match`, `Idempotency-Key`.
pub async fn modify(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    PatchBody(body): PatchBody<PatchOrderV1>,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let changes = body.into_domain().map_err(invalid)?;
    let expect = expected_version(&headers);
    let command = UpdateOrder {
        id,
        changes,
        expect,
    };
    let executed = idempotent::run(&app, &who, &headers, &command)?;
    let response = order_body(&executed.output).into_response();
    Ok(idempotent::mark(&executed, response))
}

/// `DELETE /v1/orders/{id}` -> 204; `If-Match`.
pub async fn remove(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    app.core
        .delete_order(&who, order_id(&id)?, &expected_version(&headers))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- items ----

/// `GET /v1/orders/{id}/items`
pub async fn list_items(
    State(app): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let params = listing::parse(query, &ITEMS, app.page_limits(), app.core.cursors())?;
    let page = app.core.list_items(&who, id, &params.page)?;
    Ok(listing::respond_sparse(
        &page,
        &params,
        app.core.cursors(),
        Caching::Private,
        |item| ItemV1::from(item),
    ))
}

/// `POST /v1/orders/{id}/items` -> 201 + Location; `If-Match`, `Idempotency-Key`.
pub async fn add_item(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewItemV1>,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let item = NewItem::parse(&body.product_id, body.quantity).map_err(invalid)?;
    let expect = expected_version(&headers);
    let command = AddItem {
        order: id,
        item,
        expect,
    };
    let executed = idempotent::run(&app, &who, &headers, &command)?;
    let (order, item_id) = &executed.output;
    let response = match order.item(*item_id) {
        Some(item) => JsonResponse::created(
            &format!("/v1/orders/{}/items/{}", order.id, item.id),
            &ItemV1::from(item),
        )
        .into_response(),
        None => ApiError::from(DomainError::Internal("added item missing".into())).into_response(),
    };
    Ok(idempotent::mark(&executed, response))
}

/// `GET /v1/orders/{id}/items/{item_id}`
pub async fn read_item(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path((id, item_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let item = app
        .core
        .item(&who, order_id(&id)?, ItemId::parse(&item_id)?)?;
    let body = ItemV1::from(&item);
    Ok(JsonResponse::representation(&body, Caching::Private, &headers).into_response())
}

// ---- cancellation ----

/// `POST /v1/orders/{id}/cancellations` `{"reason"?}` -> 201; 409 once shipped.
pub async fn cancel(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<CancelV1>,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let reason = body.and_then(|b| b.reason);
    let expect = expected_version(&headers);
    let command = CancelOrder { id, reason, expect };
    let executed = idempotent::run(&app, &who, &headers, &command)?;
    let order = &executed.output;
    let resource = CancellationResourceV1::of(order).ok_or_else(|| {
        ApiError::from(DomainError::Internal(
            "cancelled order has no cancellation".into(),
        ))
    })?;
    let response =
        JsonResponse::created(&format!("/v1/orders/{}/cancellation", order.id), &resource)
            .etag(&version_etag(order.version))
            .into_response();
    Ok(idempotent::mark(&executed, response))
}

/// `GET /v1/orders/{id}/cancellation`: 404 unless the order is cancelled.
pub async fn read_cancellation(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = app.core.order(&who, order_id(&id)?)?;
    let resource = CancellationResourceV1::of(&order).ok_or_else(|| {
        ApiError::new(
            &kind::NOT_FOUND,
            format!("order '{}' is {}, not cancelled", order.id, order.status),
        )
    })?;
    Ok(JsonResponse::ok(&resource)
        .caching(Caching::Private)
        .into_response())
}
