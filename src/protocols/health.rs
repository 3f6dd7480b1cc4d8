//! Liveness and readiness probes, outside any API version.
//!
//! `/healthz` says the process answers; `/readyz` says it should receive traffic, and turns 503
//! as soon as shutdown begins, so a load balancer drains it before it goes away.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::HeaderValue;
use http::header::CACHE_CONTROL;

use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::protocols::AppState;

/// `GET /healthz` and `GET /readyz`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Response {
    no_store(Json(serde_json::json!({ "status": "ok" })).into_response())
}

async fn readyz(State(app): State<AppState>) -> Response {
    if !app.is_ready() {
        return no_store(
            ApiError::new(&kind::UNAVAILABLE, "the server is shutting down").into_response(),
        );
    }
    no_store(
        Json(serde_json::json!({
            "status": "ready",
            "orders": app.core.store().order_count(),
            "last_event_seq": app.core.events().last_seq(),
            "streams": app.streams.count(),
        }))
        .into_response(),
    )
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
