//! The REST binding of idempotency keys: the `Idempotency-Key` request header in, the
//! `Idempotent-Replayed: true` response header out. The rules live in `gateway::idempotency`.

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::Principal;
use crate::domain::command::Command;
use crate::gateway::ApiError;
use crate::gateway::idempotency::Executed;
use crate::protocols::AppState;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header set on replays.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Runs `command` once per `Idempotency-Key` of `who` (or every time when the header is
/// absent): the one place REST binds idempotency. The same key with another command is a 422.
pub fn run<C: Command>(
    app: &AppState,
    who: &Principal,
    headers: &HeaderMap,
    command: &C,
) -> Result<Executed<C::Output>, ApiError> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|v| v.to_str().unwrap_or_default());
    app.idempotency.execute(&app.core, who, key, command)
}

/// Marks a replayed response with `Idempotent-Replayed: true`.
pub fn mark<T>(executed: &Executed<T>, mut response: Response) -> Response {
    if executed.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}
