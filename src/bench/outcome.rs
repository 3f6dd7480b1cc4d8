//! What can go wrong with one operation, grouped into the error kinds the reports count.
//!
//! Every response is checked (status, parsed body, the right order id), so a server that
//! answers fast but wrongly does not win: a wrong answer is an error, not a sample.

use http::StatusCode;

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The connection could not be opened.
    Connect(String),
    /// The connection broke mid-operation.
    Io(String),
    /// No answer within the per-operation timeout.
    Timeout,
    /// An HTTP status other than the one expected.
    Http(u16),
    /// A gRPC status other than OK.
    Grpc(tonic::Code),
    /// A GraphQL response with `errors` (its first error's `extensions.code`).
    Graphql(String),
    /// A WebSocket `error` message (its problem `status`).
    WsError(u16),
    /// An answer that does not parse or is not the one asked for.
    Invalid(String),
}

impl OpError {
    /// The kind counted in the reports: coarse enough to group, fine enough to act on.
    pub fn kind(&self) -> String {
        match self {
            Self::Connect(_) => "connect".into(),
            Self::Io(_) => "connection broken".into(),
            Self::Timeout => "timeout".into(),
            Self::Http(status) | Self::WsError(status) => match *status {
                401 | 403 => format!("auth ({status})"),
                429 => "rate limited (429)".into(),
                s => format!("http {s}"),
            },
            Self::Grpc(code) => match code {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                    format!("auth (grpc {code:?})")
                }
                tonic::Code::ResourceExhausted => "rate limited (grpc ResourceExhausted)".into(),
                code => format!("grpc {code:?}"),
            },
            Self::Graphql(code) => match code.as_str() {
                "UNAUTHENTICATED" | "FORBIDDEN" => format!("auth (graphql {code})"),
                "RATE_LIMITED" | "TOO_MANY_REQUESTS" => format!("rate limited (graphql {code})"),
                code => format!("graphql errors ({code})"),
            },
            Self::Invalid(_) => "invalid response".into(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(detail) | Self::Io(detail) | Self::Invalid(detail) => {
                write!(f, "{}: {detail}", self.kind())
            }
            _ => f.write_str(&self.kind()),
        }
    }
}

/// Ok if `status` is `expected`, else the HTTP error.
pub fn expect_status(status: StatusCode, expected: StatusCode) -> Result<(), OpError> {
    if status == expected {
        Ok(())
    } else {
        Err(OpError::Http(status.as_u16()))
    }
}

/// The hints a summary prints for the error kinds seen.
pub fn hints<'a>(kinds: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut auth = false;
    let mut limited = false;
    for kind in kinds {
        auth |= kind.starts_with("auth");
        limited |= kind.starts_with("rate limited");
    }
    let mut hints = Vec::new();
    if auth {
        hints.push(
            "the server refused the credentials: pass --api-key KEY (or set POLYPORT_API_KEY)"
                .to_owned(),
        );
    }
    if limited {
        hints.push(
            "the server rate-limited the load: start the server with rate limits off (polyport serve --no-rate-limit), or lower --rate / --connections"
                .to_owned(),
        );
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_kinds_with_a_hint_for_each() {
        let cases = [
            (OpError::Http(401), "auth (401)"),
            (OpError::Http(403), "auth (403)"),
            (OpError::Http(429), "rate limited (429)"),
            (OpError::Http(503), "http 503"),
            (
                OpError::Grpc(tonic::Code::Unauthenticated),
                "auth (grpc Unauthenticated)",
            ),
            (
                OpError::Grpc(tonic::Code::ResourceExhausted),
                "rate limited (grpc ResourceExhausted)",
            ),
            (OpError::Grpc(tonic::Code::NotFound), "grpc NotFound"),
            (
                OpError::Graphql("NOT_FOUND".into()),
                "graphql errors (NOT_FOUND)",
            ),
            (OpError::WsError(401), "auth (401)"),
            (OpError::Timeout, "timeout"),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
        let kinds = ["auth (401)".to_owned(), "rate limited (429)".to_owned()];
        let hints = hints(&kinds);
        assert_eq!(hints.len(), 2);
        assert!(hints[0].contains("--api-key"), "{hints:?}");
        assert!(hints[1].contains("rate limits off"), "{hints:?}");
        assert!(super::hints(&["http 500".to_owned()]).is_empty());
    }
}
