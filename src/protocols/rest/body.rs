//! Request bodies: content-type checks, size limits and JSON parsing that names the bad field.
//!
//! Every way a body can be wrong gets its own clear 4xx: no `Content-Type` or a non-JSON one ->
//! 415, over the size limit -> 413, not JSON -> 400 `malformed-body` with line and column, JSON
//! of the wrong shape (wrong type, unknown field, missing field) -> 400 `validation` with the
//! field's path.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::domain::FieldViolation;
use crate::gateway::ApiError;
use crate::gateway::error::kind;

/// A JSON body (`Content-Type: application/json`).
pub struct JsonBody<T>(pub T);

/// A PATCH body: `application/merge-patch+json` (RFC 7396) or `application/json`.
pub struct PatchBody<T>(pub T);

/// A JSON body that may be absent entirely (`POST .../cancellations` with no reason).
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_media_type(request.headers(), &["application/json"])?;
        let bytes = read(request, state).await?;
        parse(&bytes).map(Self)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PatchBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_media_type(
            request.headers(),
            &["application/merge-patch+json", "application/json"],
        )?;
        let bytes = read(request, state).await?;
        parse(&bytes).map(Self)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let has_type = request.headers().contains_key(CONTENT_TYPE);
        if has_type {
            require_media_type(request.headers(), &["application/json"])?;
        }
        let bytes = read(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !has_type {
            return Err(unsupported(&["application/json"]));
        }
        parse(&bytes).map(|value| Self(Some(value)))
    }
}

fn require_media_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media_type {
        Some(t) if accepted.contains(&t.as_str()) => Ok(()),
        _ => Err(unsupported(accepted)),
    }
}

fn unsupported(accepted: &[&str]) -> ApiError {
    ApiError::new(
        &kind::UNSUPPORTED_MEDIA_TYPE,
        format!("send the body with Content-Type: {}", accepted.join(" or ")),
    )
}

async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    &kind::PAYLOAD_TOO_LARGE,
                    "the request body exceeds the configured limit",
                )
            } else {
                ApiError::new(&kind::MALFORMED_BODY, "the request body could not be read")
            }
        })
}

/// Parses JSON into `T`, reporting syntax errors as `malformed-body` and shape errors as a
/// validation problem on the offending field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        shape_error(&path, &inner)
    })?;
    deserializer.end().map_err(|e| shape_error(".", &e))?;
    Ok(value)
}

/// Converts a serde_json error at `path` into the right problem.
pub fn shape_error(path: &str, error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = error.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    match error.classify() {
        Category::Data => {
            let field = if path == "." { "body" } else { path };
            ApiError::from(FieldViolation::new(field, message))
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            &kind::MALFORMED_BODY,
            format!(
                "the body is not valid JSON: {message} (line {}, column {})",
                error.line(),
                error.column()
            ),
        ),
    }
}
