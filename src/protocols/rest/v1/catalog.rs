//! `/v1/products`: the catalog, read-only and publicly cacheable.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::dto::ProductV1;
use crate::domain::core::PRODUCT_SORT_FIELDS;
use crate::domain::model::ProductId;
use crate::gateway::ApiError;
use crate::protocols::AppState;
use crate::protocols::rest::listing::NoParameters;
use crate::protocols::rest::listing::{self, ListSpec};
use crate::protocols::rest::{Caching, JsonResponse};

const PRODUCTS: ListSpec = ListSpec {
    name: "products",
    sortable: PRODUCT_SORT_FIELDS,
    fields: &["id", "name", "price_cents", "currency"],
    includes: &[],
    filters: &[],
};

/// `GET /v1/products`
pub async fn list(
    State(app): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let params = listing::parse(query, &PRODUCTS, app.page_limits(), app.core.cursors())?;
    let page = app.core.list_products(&params.page);
    Ok(listing::respond_sparse(
        &page,
        &params,
        app.core.cursors(),
        Caching::Public,
        |p| ProductV1::from(p),
    ))
}

/// `GET /v1/products/{id}`
pub async fn read(
    State(app): State<AppState>,
    _: NoParameters,
    Path(id): Path<String>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    let product = app.core.product(ProductId::parse(&id)?)?;
    let body = ProductV1::from(&product);
    Ok(JsonResponse::representation(&body, Caching::Public, &headers).into_response())
}
