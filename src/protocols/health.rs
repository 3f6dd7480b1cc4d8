//! Liveness and readiness probes, outside any API version.
//!
//! `/healthz` says the process answers; `/readyz` says it should receive traffic, and turns 503
//! as soon as shutdown begins, so a load balancer drains it before it goes away. Both are open
//! to anyone, so they say nothing about the data: only a caller whose credentials may read
//! everything (an admin or readonly key or token, or anyone with authentication off) also gets
//! the order count, the last event seq and the open streams from `/readyz`.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderValue};

use crate::domain::{Principal, Role};
use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::gateway::tls::ClientCertificate;
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

async fn readyz(
    State(app): State<AppState>,
    headers: HeaderMap,
    certificate: Option<Extension<ClientCertificate>>,
) -> Response {
    if !app.is_ready() {
        return no_store(
            ApiError::new(&kind::UNAVAILABLE, "the server is shutting down").into_response(),
        );
    }
    // The probe is open (the gate does not authenticate it), so it looks at credentials itself;
    // bad or missing ones just get the bare answer.
    let certificate = certificate.as_ref().map(|Extension(c)| c);
    let sees_all = matches!(
        app.gate.auth.authenticate(&headers, None, certificate),
        Ok(Some(Principal {
            role: Role::Admin | Role::Readonly,
            ..
        }))
    );
    let body = if sees_all {
        serde_json::json!({
            "status": "ready",
            "orders": app.core.store().order_count(),
            "last_event_seq": app.core.events().last_seq(),
            "streams": app.streams.count(),
        })
    } else {
        serde_json::json!({ "status": "ready" })
    };
    no_store(Json(body).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
