//! `/v1/customers`: list, create, read, and a customer's orders.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::dto::{CustomerV1, NewCustomerV1};
use super::orders;
use crate::domain::command::CreateCustomer;
use crate::domain::core::CUSTOMER_SORT_FIELDS;
use crate::domain::model::CustomerId;
use crate::domain::{NewCustomer, OrderFilter};
use crate::gateway::ApiError;
use crate::gateway::auth::Caller;
use crate::protocols::AppState;
use crate::protocols::rest::body::JsonBody;
use crate::protocols::rest::idempotent;
use crate::protocols::rest::listing::NoParameters;
use crate::protocols::rest::listing::{self, ListSpec};
use crate::protocols::rest::{Caching, JsonResponse};

const CUSTOMERS: ListSpec = ListSpec {
    name: "customers",
    sortable: CUSTOMER_SORT_FIELDS,
    fields: &["id", "name", "email"],
    includes: &[],
    filters: &[],
};

/// `GET /v1/customers`
pub async fn list(
    State(app): State<AppState>,
    Caller(who): Caller,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = listing::parse(query, &CUSTOMERS, app.page_limits(), app.core.cursors())?;
    let page = app.core.list_customers(&who, &params.page);
    Ok(listing::respond_sparse(
        &page,
        &params,
        app.core.cursors(),
        Caching::Private,
        |c| CustomerV1::from(c),
    ))
}

/// `POST /v1/customers` -> 201; a taken email -> 409.
pub async fn create(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewCustomerV1>,
) -> Result<Response, ApiError> {
    let command = CreateCustomer(NewCustomer::from(body));
    let executed = idempotent::run(&app, &who, &headers, &command)?;
    let customer = &executed.output;
    let response = JsonResponse::created(
        &format!("/v1/customers/{}", customer.id),
        &CustomerV1::from(customer),
    )
    .into_response();
    Ok(idempotent::mark(&executed, response))
}

/// `GET /v1/customers/{id}`
pub async fn read(
    State(app): State<AppState>,
    _: NoParameters,
    Caller(who): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let customer = app.core.customer(&who, CustomerId::parse(&id)?)?;
    let body = CustomerV1::from(&customer);
    Ok(JsonResponse::representation(&body, Caching::Private, &headers).into_response())
}

/// `GET /v1/customers/{id}/orders`: the orders list, fixed to one customer.
pub async fn orders(
    State(app): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let customer = app.core.customer(&who, CustomerId::parse(&id)?)?;
    let filter = OrderFilter::of_customer(customer.id);
    orders::list_filtered(&app, &who, query, &orders::CUSTOMER_ORDERS, filter)
}
