//! `GET /problems` and `GET /problems/{slug}`: the error table, served, so every problem `type`
//! in a response is a link a reader can follow.

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{Caching, JsonResponse};
use crate::gateway::ApiError;
use crate::gateway::error::{ProblemKind, kind};
use crate::protocols::AppState;

/// The problem-type routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/problems", get(list))
        .route("/problems/{slug}", get(one))
}

fn describe(k: &ProblemKind) -> Value {
    json!({
        "type": k.type_uri(),
        "title": k.title,
        "status": k.status.as_u16(),
        "grpc_code": crate::gateway::error::grpc_code_name(k.grpc),
        "graphql_code": k.graphql,
        "description": k.description,
    })
}

async fn list() -> Response {
    let all: Vec<Value> = kind::ALL.iter().map(|k| describe(k)).collect();
    JsonResponse::ok(&json!({ "data": all }))
        .caching(Caching::Public)
        .into_response()
}

async fn one(Path(slug): Path<String>) -> Result<Response, ApiError> {
    let k = kind::ALL
        .iter()
        .find(|k| k.slug == slug)
        .ok_or_else(|| ApiError::new(&kind::NOT_FOUND, format!("no problem type '{slug}'")))?;
    Ok(JsonResponse::ok(&describe(k))
        .caching(Caching::Public)
        .into_response())
}
