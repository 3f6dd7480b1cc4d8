//! The REST binding of idempotency keys: the `Idempotency-Key` request header in, the
//! `Idempotent-Replayed: true` response header out. The rules live in `gateway::idempotency`.

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::app::App;
use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::gateway::idempotency::{Claim, Fingerprint, IdempotencyKey, Recorded};

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header set on replays.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The outcome of a write, and whether it was replayed rather than executed.
pub struct Executed {
    /// What the core returned (now, or the first time).
    pub recorded: Recorded,
    /// True when this is a replay of an earlier request with the same key.
    pub replayed: bool,
}

impl Executed {
    /// Marks a replayed response with `Idempotent-Replayed: true`.
    pub fn mark(&self, mut response: Response) -> Response {
        if self.replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}

/// Runs `execute` once per `Idempotency-Key` (or every time when the header is absent).
/// `operation` and `command` identify the request: the same key with another command is a 422.
pub fn run(
    app: &App,
    headers: &HeaderMap,
    operation: &str,
    command: &impl std::fmt::Debug,
    execute: impl FnOnce() -> Recorded,
) -> Result<Executed, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(Executed {
            recorded: execute(),
            replayed: false,
        });
    };
    let key = IdempotencyKey::parse(raw.to_str().unwrap_or_default(), "Idempotency-Key")?;
    match app
        .idempotency
        .claim(key, Fingerprint::of(operation, command))
    {
        Claim::Run(ticket) => {
            let recorded = execute();
            ticket.finish(recorded.clone());
            Ok(Executed {
                recorded,
                replayed: false,
            })
        }
        Claim::Replay(recorded) => Ok(Executed {
            recorded,
            replayed: true,
        }),
        Claim::InFlight => Err(ApiError::new(
            &kind::IDEMPOTENCY_IN_FLIGHT,
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )),
        Claim::Mismatch => Err(ApiError::new(
            &kind::IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was already used for a different request",
        )),
    }
}
