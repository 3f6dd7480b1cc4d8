//! `/v1/webhook-endpoints`, `/v1/webhook-deliveries` and `/v1/webhooks/inbound`: the REST face
//! of `crate::webhooks`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::dto::timestamp;
use crate::domain::Principal;
use crate::gateway::ApiError;
use crate::gateway::auth::Caller;
use crate::protocols::AppState;
use crate::protocols::rest::body::{JsonBody, PatchBody};
use crate::protocols::rest::listing::NoParameters;
use crate::protocols::rest::{Caching, JsonResponse};
use crate::webhooks::{
    self, Delivery, DeliveryId, Endpoint, EndpointChanges, EndpointId, EndpointStatus,
    InboundState, NewEndpoint, Received,
};

/// `POST /v1/webhook-endpoints`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointV1 {
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    description: String,
    /// Optional: bring your own `whsec_...` secret.
    #[serde(default)]
    secret: Option<String>,
}

/// `PATCH /v1/webhook-endpoints/{id}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatchV1 {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "status")]
    status: Option<bool>,
}

fn status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "enabled" => Ok(Some(true)),
        "disabled" => Ok(Some(false)),
        other => Err(serde::de::Error::custom(format!(
            "'{other}' is not a status; use \"enabled\" or \"disabled\""
        ))),
    }
}

fn endpoint_json(endpoint: &Endpoint) -> Value {
    let (status, reason, disabled_at) = match &endpoint.status {
        EndpointStatus::Enabled => ("enabled", None, None),
        EndpointStatus::Disabled { reason, at } => {
            ("disabled", Some(reason.clone()), Some(timestamp(*at)))
        }
    };
    json!({
        "id": endpoint.id.to_string(),
        "url": endpoint.url.as_str(),
        "event_types": endpoint.event_types,
        "description": endpoint.description,
        "status": status,
        "disabled_reason": reason,
        "disabled_at": disabled_at,
        "created_at": timestamp(endpoint.created_at),
    })
}

fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id.to_string(),
        "endpoint_id": delivery.endpoint_id.to_string(),
        "event_type": delivery.event_type,
        "seq": delivery.seq,
        "state": delivery.state.as_str(),
        "next_attempt_at": delivery.next_attempt_at.map(timestamp),
        "created_at": timestamp(delivery.created_at),
        "attempts": delivery.attempts.iter().map(|a| json!({
            "at": timestamp(a.at),
            "status": a.status,
            "error": a.error,
            "latency_ms": a.latency.as_secs_f64() * 1000.0,
        })).collect::<Vec<_>>(),
        "body": serde_json::from_str::<Value>(&delivery.body).unwrap_or(Value::Null),
    })
}

fn list(data: Vec<Value>) -> Response {
    JsonResponse::ok(&json!({ "data": data, "next_cursor": null, "has_more": false }))
        .caching(Caching::Private)
        .into_response()
}

/// `POST /v1/webhook-endpoints` -> 201 with the secret (shown this once).
pub async fn create_endpoint(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    JsonBody(body): JsonBody<NewEndpointV1>,
) -> Result<Response, ApiError> {
    let new = NewEndpoint {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        secret: body.secret,
    };
    let (endpoint, secret) = app.webhooks.endpoints().create(&who, new).await?;
    let mut json = endpoint_json(&endpoint);
    json["secret"] = json!(secret);
    Ok(
        JsonResponse::created(&format!("/v1/webhook-endpoints/{}", endpoint.id), &json)
            .into_response(),
    )
}

/// `GET /v1/webhook-endpoints`
pub async fn list_endpoints(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
) -> Result<Response, ApiError> {
    let endpoints = app.webhooks.endpoints().list(&who)?;
    Ok(list(endpoints.iter().map(endpoint_json).collect()))
}

/// `GET /v1/webhook-endpoints/{id}`
pub async fn read_endpoint(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let endpoint = app
        .webhooks
        .endpoints()
        .get(&who, EndpointId::parse(&id)?)?;
    Ok(JsonResponse::ok(&endpoint_json(&endpoint))
        .caching(Caching::Private)
        .into_response())
}

/// `PATCH /v1/webhook-endpoints/{id}`; `{"status":"enabled"}` re-enables a disabled endpoint.
pub async fn update_endpoint(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
    PatchBody(body): PatchBody<EndpointPatchV1>,
) -> Result<Response, ApiError> {
    let changes = EndpointChanges {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.status,
    };
    let endpoint = app
        .webhooks
        .endpoints()
        .update(&who, EndpointId::parse(&id)?, changes)
        .await?;
    Ok(JsonResponse::ok(&endpoint_json(&endpoint)).into_response())
}

/// `DELETE /v1/webhook-endpoints/{id}` -> 204
pub async fn delete_endpoint(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.webhooks
        .endpoints()
        .delete(&who, EndpointId::parse(&id)?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret` -> the new secret; the old one keeps signing
/// until `previous_secret_expires_at`.
pub async fn rotate_secret(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (secret, until) = app
        .webhooks
        .endpoints()
        .rotate_secret(&who, EndpointId::parse(&id)?)?;
    Ok(JsonResponse::ok(
        &json!({ "secret": secret, "previous_secret_expires_at": timestamp(until) }),
    )
    .into_response())
}

/// `POST /v1/webhook-endpoints/{id}/test` -> 202 with the queued ping delivery.
pub async fn test_endpoint(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let delivery = app
        .webhooks
        .endpoints()
        .test(&who, EndpointId::parse(&id)?)?;
    Ok(
        JsonResponse::new(StatusCode::ACCEPTED, &delivery_json(&delivery))
            .header(
                http::header::LOCATION,
                &format!("/v1/webhook-deliveries/{}", delivery.id),
            )
            .into_response(),
    )
}

/// `GET /v1/webhook-endpoints/{id}/deliveries`, newest first.
pub async fn list_deliveries(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(list(
        app.webhooks
            .endpoints()
            .deliveries(&who, EndpointId::parse(&id)?)?
            .iter()
            .map(delivery_json)
            .collect(),
    ))
}

/// `GET /v1/webhook-deliveries/{id}`
pub async fn read_delivery(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let delivery = app
        .webhooks
        .endpoints()
        .delivery(&who, DeliveryId::parse(&id)?)?;
    Ok(JsonResponse::ok(&delivery_json(&delivery))
        .caching(Caching::Private)
        .into_response())
}

/// `POST /v1/webhook-deliveries/{id}/retry` -> 202
pub async fn retry_delivery(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let delivery = app
        .webhooks
        .endpoints()
        .retry(&who, DeliveryId::parse(&id)?)?;
    Ok(JsonResponse::new(StatusCode::ACCEPTED, &delivery_json(&delivery)).into_response())
}

/// `POST /v1/webhooks/inbound/{source}`: 202 for a new message (processed afterwards), 200 for
/// a duplicate; 401 unsigned or badly signed, 400 stale timestamp, 404 unknown source.
pub async fn receive(
    State(app): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let received = match app.webhooks.receiver().receive(
        &source,
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
    ) {
        Ok(received) => received,
        Err(error) if error.kind == &crate::gateway::error::kind::UNAUTHENTICATED => {
            // RFC 9110: a 401 names the scheme the client should use.
            let mut response = error.into_response();
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Webhook-Signature"),
            );
            return Ok(response);
        }
        Err(error) => return Err(error),
    };
    Ok(match received {
        Received::Accepted(id) => JsonResponse::new(
            StatusCode::ACCEPTED,
            &json!({ "id": id, "duplicate": false }),
        ),
        Received::Duplicate(id) => JsonResponse::ok(&json!({ "id": id, "duplicate": true })),
    }
    .into_response())
}

/// `GET /v1/webhooks/inbound`: what was received, newest first, with its processing state.
pub async fn list_inbound(
    State(app): State<AppState>,
    _: NoParameters,
    Manager(who): Manager,
) -> Result<Response, ApiError> {
    Ok(list(
        app.webhooks
            .receiver()
            .inbound(&who)?
            .iter()
            .map(|m| {
                let (state, error) = match &m.state {
                    InboundState::Received => ("received", None),
                    InboundState::Processed => ("processed", None),
                    InboundState::Failed(e) => ("failed", Some(e.clone())),
                };
                json!({
                    "id": m.id,
                    "source": m.source,
                    "webhook_id": m.webhook_id,
                    "timestamp": m.timestamp,
                    "received_at": timestamp(m.received_at),
                    "type": m.event_type,
                    "state": state,
                    "error": error,
                    "body": serde_json::from_str::<Value>(&m.body).unwrap_or_else(|_| json!(m.body)),
                })
            })
            .collect(),
    ))
}

/// The caller of a webhook management route, for the service, which decides whether it may
/// manage webhooks and checks that on every call. Asking the service here as well, before the
/// path and the body are read, keeps its refusal (403) ahead of any complaint about a malformed
/// id or body, for every caller it refuses.
#[derive(Debug)]
pub struct Manager(Principal);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Manager {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Caller(who) = Caller::from_request_parts(parts, state).await?;
        webhooks::admit(&who)?;
        Ok(Self(who))
    }
}
