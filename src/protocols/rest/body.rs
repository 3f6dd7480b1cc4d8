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

/// Checks the content type of already-read bytes, then parses them (for handlers that must
/// look at the path before the body, e.g. a PUT to an order that does not exist is a 404).
pub fn json_from<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    require_media_type(headers, &["application/json"])?;
    parse(bytes)
}

/// Parses JSON into `T`, reporting syntax errors as `malformed-body` and shape errors as a
/// validation problem on the offending field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| shape_error(".", &e))?;
    from_value(&value)
}

/// Converts an already-parsed JSON value into `T`, naming the offending field on failure.
///
/// Every v1 request body is an object, and every array in one holds objects. serde's derive
/// would also accept an object written as an array (`["1", [...]]` for
/// `{"customer_id": "1", "items": [...]}`); positional JSON is refused here instead, so field
/// names stay the contract.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    if let Some(path) = positional(value, String::new()) {
        let field = if path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        return Err(FieldViolation::new(field, "expected a JSON object with named fields").into());
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        shape_error(&path, error.inner())
    })
}

/// Like [`json_from`], checking only that the top level is an object: for bodies holding raw
/// elements that are checked one by one (bulk requests, where one bad element fails alone).
pub fn json_object_from<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    require_media_type(headers, &["application/json"])?;
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| shape_error(".", &e))?;
    if !value.is_object() {
        return Err(FieldViolation::new("body", "expected a JSON object with named fields").into());
    }
    serde_path_to_error::deserialize(&value).map_err(|error| {
        let path = error.path().to_string();
        shape_error(&path, error.inner())
    })
}

/// The path of the first place an object was written as an array, if any: the top level, or
/// an array directly inside an array (no v1 field is a list of lists).
fn positional(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let Value::Object(map) = value else {
        return Some(path);
    };
    map.iter().find_map(|(key, v)| {
        let path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match v {
            Value::Object(_) => positional(v, path),
            Value::Array(elements) => elements.iter().enumerate().find_map(|(i, e)| {
                let path = format!("{path}[{i}]");
                match e {
                    Value::Array(_) => Some(path),
                    Value::Object(_) => positional(e, path),
                    _ => None,
                }
            }),
            _ => None,
        }
    })
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
        Category::Syntax if message.starts_with("recursion limit exceeded") => ApiError::new(
            &kind::MALFORMED_BODY,
            "the body nests deeper than 128 levels",
        ),
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
