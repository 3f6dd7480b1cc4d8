//! The OAuth 2.0 endpoints: `POST /v1/auth/token` (RFC 6749 client-credentials and refresh-token
//! grants) and `POST /v1/auth/revoke` (RFC 7009), over the [`TokenService`].
//!
//! Both take `application/x-www-form-urlencoded` bodies and authenticate the client by HTTP Basic
//! (`client_id:client_secret`) or by `client_id`/`client_secret` form fields, never both.
//!
//! The one deliberate exception to the gateway's error table: errors here have the RFC 6749 §5.2
//! shape, `{"error": "invalid_client", "error_description": "..."}`, because every OAuth client
//! library parses exactly that. Token responses and errors carry `Cache-Control: no-store`.
//!
//! A demo with curl alone (client `acme` configured under `[[auth.clients]]`):
//!
//! ```text
//! curl -u acme:SECRET -d grant_type=client_credentials http://127.0.0.1:8080/v1/auth/token
//! curl -u acme:SECRET -d grant_type=refresh_token -d refresh_token=RT http://127.0.0.1:8080/v1/auth/token
//! curl -u acme:SECRET -d token=AT http://127.0.0.1:8080/v1/auth/revoke
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

use super::tokens::{Client, GrantError, IssuedTokens, RevokeError, TokenService};

/// The token and revocation routes, ready to merge into the main router.
pub fn routes(service: Arc<TokenService>) -> Router {
    Router::new()
        .route("/v1/auth/token", post(token))
        .route("/v1/auth/revoke", post(revoke))
        .with_state(service)
}

/// `POST /v1/auth/token`
async fn token(
    State(service): State<Arc<TokenService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match grant(&service, &headers, &body) {
        Ok(issued) => {
            let body = TokenResponse {
                access_token: &issued.access_token,
                token_type: "Bearer",
                expires_in: issued.expires_in.as_secs(),
                refresh_token: &issued.refresh_token,
                scope: issued.scope,
            };
            (no_store(), axum::Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/auth/revoke`: 200 with an empty body, also for an unknown token (RFC 7009 §2.2).
async fn revoke(
    State(service): State<Arc<TokenService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revocation(&service, &headers, &body) {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A revocation request, run for the authenticated client.
fn revocation(service: &TokenService, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let form = parse_form(headers, body)?;
    let client = authenticate(service, headers, &form)?;
    let token = required(&form, "token")?;
    // `token_type_hint` is accepted and not needed: the token's shape tells its kind.
    service.revoke(client, token).map_err(|e| match e {
        RevokeError::OtherClient => OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was issued to another client",
        ),
        RevokeError::Full => OAuthError::unavailable(),
    })
}

/// The grant a token request asks for, run for the authenticated client.
fn grant(
    service: &TokenService,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IssuedTokens, OAuthError> {
    let form = parse_form(headers, body)?;
    let grant_type = required(&form, "grant_type")?;
    let client = authenticate(service, headers, &form)?;
    let issued = match grant_type {
        "client_credentials" => {
            // The scope of a token is its client's role; asking for another is an error.
            if let Some(scope) = form.get("scope")
                && scope != client.role.name()
            {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "this client's only scope is its role",
                ));
            }
            service.issue(client)
        }
        "refresh_token" => service.refresh(client, required(&form, "refresh_token")?),
        _ => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials or refresh_token",
            ));
        }
    };
    issued.map_err(|e| match e {
        GrantError::InvalidGrant | GrantError::Reused => {
            OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", e.to_string())
        }
        GrantError::Full => OAuthError::unavailable(),
    })
}

/// The form body: the right media type, each parameter at most once (RFC 6749 §3.2), and a
/// parameter sent with an empty value treated as absent.
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        if value.is_empty() {
            continue;
        }
        if form
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(OAuthError::invalid_request(format!(
                "the parameter {name} is repeated"
            )));
        }
    }
    Ok(form)
}

fn required<'f>(form: &'f HashMap<String, String>, name: &str) -> Result<&'f str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request(format!("the parameter {name} is missing")))
}

/// Client authentication (RFC 6749 §2.3.1): HTTP Basic or form fields, exactly one of them.
fn authenticate<'s>(
    service: &'s TokenService,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<&'s Client, OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim());
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");
    match basic {
        Some(credentials) => {
            let (id, secret) = decode_basic(credentials).ok_or_else(OAuthError::bad_basic)?;
            if form_secret.is_some() || form_id.is_some_and(|f| *f != id) {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method: HTTP Basic or form fields",
                ));
            }
            basic_client(service, &id, &secret).ok_or_else(|| {
                tracing::info!(client_id = %id, method = "basic", "client authentication failed");
                OAuthError::bad_basic()
            })
        }
        None => match (form_id, form_secret) {
            (Some(id), Some(secret)) => service.authenticate_client(id, secret).ok_or_else(|| {
                tracing::info!(client_id = %id, method = "form", "client authentication failed");
                OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    "unknown client or wrong secret",
                )
            }),
            // No credentials at all: ask for them, the HTTP way.
            _ => Err(OAuthError::bad_basic()),
        },
    }
}

/// RFC 6749 says the Basic user and password are form-encoded first; curl's `-u` and many
/// clients send them raw. The raw pair is tried first, then the decoded one if it differs.
fn basic_client<'s>(service: &'s TokenService, id: &str, secret: &str) -> Option<&'s Client> {
    service.authenticate_client(id, secret).or_else(|| {
        let (id2, secret2) = (form_decode(id)?, form_decode(secret)?);
        if id2 == id && secret2 == secret {
            return None;
        }
        service.authenticate_client(&id2, &secret2)
    })
}

fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(credentials).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` and `%XX`).
fn form_decode(value: &str) -> Option<String> {
    if value.contains(['&', '=']) {
        return None;
    }
    url::form_urlencoded::parse(value.as_bytes())
        .next()
        .map(|(decoded, _)| decoded.into_owned())
}

fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// The successful token response (RFC 6749 §5.1).
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: &'a str,
    scope: &'static str,
}

/// An error response (RFC 6749 §5.2).
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Failed or missing HTTP Basic client authentication: 401 with a challenge.
    fn bad_basic() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed: send client_id:client_secret by HTTP Basic",
        )
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "too many tokens are held; try again later",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error,
            error_description: &self.description,
        };
        let mut response = (self.status, no_store(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"polyport\", charset=\"UTF-8\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        response
    }
}
