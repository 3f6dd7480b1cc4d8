//! Authentication: from what a request presents (an API key, a bearer token, a client
//! certificate) to a [`Principal`], the same way for every protocol.
//!
//! Where credentials travel:
//! - `Authorization: Bearer <API key or JWT>` or `X-API-Key: <API key>`: REST, GraphQL over HTTP,
//!   SSE, long polling, and gRPC (metadata is HTTP/2 headers, so `authorization` is the same
//!   header).
//! - `?access_token=<API key or JWT>` (RFC 6750 §2.3), only on the streaming GET endpoints that a
//!   browser opens without being able to set headers (`EventSource`, `WebSocket`). URLs end up
//!   in logs and histories, so prefer the header or the WebSocket's first message.
//! - `?ticket=<stream ticket>` on the same streaming endpoints: a single-use credential that
//!   lives seconds, obtained with the key from `POST /v1/stream-tickets` (`tickets.rs`). This is
//!   what the workshop page uses, so its key never appears in a URL.
//! - The first WebSocket message (`{"op":"auth","token":...}` on `/v1/ws`, the
//!   `connection_init` payload on `/graphql/ws`), within `auth.first_message_timeout`.
//! - A client certificate, when the server runs TLS with client authentication.
//!
//! What a principal may do is not decided here: the domain core applies the rules
//! (`domain::access`). The gate (`gateway::gate`) runs this for every request and answers
//! failures in each protocol's idiom.

pub mod keys;
pub mod oauth;
pub mod tickets;
pub mod tokens;

use axum::extract::FromRequestParts;
use http::HeaderMap;
use http::request::Parts;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{AuthConfig, ClientConfig};
use crate::domain::{Principal, Revocable, Revocations, Role};
use crate::gateway::ApiError;
use crate::gateway::error::kind;

use self::keys::ApiKeys;
use self::tickets::Tickets;
use self::tokens::TokenService;
use super::tls::ClientCertificate;

/// How the server authenticates.
pub struct Authenticator {
    keys: ApiKeys,
    /// Client-certificate common names -> principals.
    certificates: HashMap<String, Principal>,
    /// JWT access tokens (issued here or by the configured issuers) and the OAuth clients.
    tokens: Arc<TokenService>,
    /// Set in dev mode: the admin key generated at start-up, to print.
    dev_key: Option<String>,
    /// `--insecure-no-auth`: everyone is this admin.
    open_to_all: Option<Principal>,
    /// Single-use stream tickets issued and not yet used.
    tickets: Tickets,
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all.
    Missing,
    /// Credentials that match nothing (or an expired, revoked or forged token).
    Invalid(String),
}

impl AuthError {
    /// The error from the table, with a message that says what to send.
    pub fn to_api(&self) -> ApiError {
        match self {
            AuthError::Missing => ApiError::new(
                &kind::UNAUTHENTICATED,
                "credentials required: send 'Authorization: Bearer <API key or access token>' \
                 (gRPC: 'authorization' metadata) or 'X-API-Key: <key>'",
            ),
            AuthError::Invalid(why) => ApiError::new(&kind::UNAUTHENTICATED, why.clone()),
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge for this failure.
    pub fn challenge(&self) -> String {
        match self {
            AuthError::Missing => r#"Bearer realm="polyport""#.to_owned(),
            AuthError::Invalid(why) => format!(
                r#"Bearer realm="polyport", error="invalid_token", error_description="{}""#,
                why.replace(['"', '\\'], "'")
            ),
        }
    }
}

impl Authenticator {
    /// Builds the authenticator. With nothing configured it enters dev mode and generates an
    /// admin key (the caller decides whether dev mode is acceptable for the address).
    pub fn from_config(config: &AuthConfig) -> Result<Self, String> {
        if config.insecure_no_auth {
            return Ok(Self {
                keys: ApiKeys::default(),
                certificates: HashMap::new(),
                tokens: Arc::new(TokenService::new(config).map_err(|e| e.to_string())?),
                dev_key: None,
                open_to_all: Some(Principal::new("anonymous", Role::Admin)),
                tickets: Tickets::new(config.stream_ticket_ttl),
            });
        }
        let mut keys = ApiKeys::from_config(&config.api_keys)?;
        let mut certificates = HashMap::new();
        for (i, entry) in config.certificates.iter().enumerate() {
            let name = entry.common_name.trim();
            let role = Role::parse(&entry.role, entry.customer_id.as_deref())
                .map_err(|e| format!("auth.certificates[{i}] ({name}): {e}"))?;
            if name.is_empty() {
                return Err(format!("auth.certificates[{i}]: needs a common_name"));
            }
            let principal = Principal::new(format!("cert:{name}"), role);
            if certificates.insert(name.to_owned(), principal).is_some() {
                return Err(format!("auth.certificates: '{name}' appears twice"));
            }
        }
        let mut config = config.clone();
        let dev_key = if has_credentials(&config) {
            None
        } else {
            // Dev mode: one generated secret, usable as an admin API key and as the secret of
            // the OAuth client `dev` (so the token flow can be tried with curl at once).
            let key = keys::generate();
            keys.add("dev-admin", Role::Admin, &key)?;
            config.clients.push(ClientConfig {
                id: "dev".into(),
                secret: key.clone(),
                role: Role::Admin.name().into(),
                customer_id: None,
            });
            Some(key)
        };
        let tokens = TokenService::new(&config).map_err(|e| e.to_string())?;
        Ok(Self {
            keys,
            certificates,
            tokens: Arc::new(tokens),
            dev_key,
            open_to_all: None,
            tickets: Tickets::new(config.stream_ticket_ttl),
        })
    }

    /// The token service, for the OAuth endpoints.
    pub fn tokens(&self) -> &Arc<TokenService> {
        &self.tokens
    }

    /// The stream tickets, for `POST /v1/stream-tickets`.
    pub fn tickets(&self) -> &Tickets {
        &self.tickets
    }

    /// In dev mode, the generated admin key.
    pub fn dev_key(&self) -> Option<&str> {
        self.dev_key.as_deref()
    }

    /// True when authentication is off (`--insecure-no-auth`).
    pub fn is_off(&self) -> bool {
        self.open_to_all.is_some()
    }

    /// The principal a presented secret (API key or access token) stands for.
    pub fn verify_secret(&self, secret: &str) -> Result<Principal, AuthError> {
        if let Some(everyone) = &self.open_to_all {
            return Ok(everyone.clone());
        }
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(AuthError::Missing);
        }
        if looks_like_jwt(secret) {
            let claims = self
                .tokens
                .verify_access(secret)
                .map_err(|e| AuthError::Invalid(e.to_string()))?;
            // Revocable: every stream and session of this token ends when it is revoked.
            let list: Arc<dyn Revocations> = Arc::clone(&self.tokens) as _;
            return Ok(
                Principal::new(format!("token:{}", claims.subject), claims.role)
                    .valid_until(claims.expires_at)
                    .revocable(Revocable::new(claims.jti, list)),
            );
        }
        self.keys
            .verify(secret)
            .ok_or_else(|| AuthError::Invalid("the API key is not valid".into()))
    }

    /// Authenticates a request from its headers, on the streaming endpoints `query_token`,
    /// and over mutual TLS its verified client `certificate`. A secret in the request wins
    /// over the certificate. `Ok(None)`: it presented nothing.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        certificate: Option<&ClientCertificate>,
    ) -> Result<Option<Principal>, AuthError> {
        if let Some(everyone) = &self.open_to_all {
            return Ok(Some(everyone.clone()));
        }
        if let Some(ticket) = query_token.filter(|t| t.starts_with(tickets::PREFIX)) {
            return self.tickets.redeem(ticket).map(Some);
        }
        if let Some(secret) = presented(headers)?.or(query_token) {
            return self.verify_secret(secret).map(Some);
        }
        let Some(certificate) = certificate else {
            return Ok(None);
        };
        // rustls has verified the chain to the configured CA; the name says who it is.
        certificate
            .common_name
            .as_ref()
            .and_then(|name| self.certificates.get(name))
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "the client certificate ({}) is valid but names no principal in auth.certificates",
                    certificate.subject
                ))
            })
    }
}

/// Refuses to expose an open dev-mode server: with no credentials configured (and auth not
/// explicitly off), only a loopback address is allowed.
pub fn check_exposure(config: &AuthConfig, addr: std::net::SocketAddr) -> Result<(), String> {
    if config.insecure_no_auth || has_credentials(config) || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {addr} with no credentials configured: add API keys \
         (--api-key name:role:secret, POLYPORT_API_KEYS or auth.api_keys in the config file), \
         listen on a loopback address for dev mode, or pass --insecure-no-auth"
    ))
}

/// True when the configuration names any way to authenticate.
pub fn has_credentials(config: &AuthConfig) -> bool {
    !config.api_keys.is_empty()
        || !config.certificates.is_empty()
        || !config.clients.is_empty()
        || !config.tokens.public_key_files.is_empty()
        || !config.tokens.jwks_file.as_os_str().is_empty()
}

/// A JWT is three base64url parts joined by dots; API keys have no dots.
fn looks_like_jwt(secret: &str) -> bool {
    secret.bytes().filter(|b| *b == b'.').count() == 2
}

/// The secret in `Authorization: Bearer` or `X-API-Key`, if any. A malformed `Authorization`
/// (another scheme, no value) is an error rather than "nothing presented", so the client learns
/// why it was not let in.
fn presented(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("the Authorization header is not ASCII".into()))?;
        let (scheme, secret) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") || secret.trim().is_empty() {
            return Err(AuthError::Invalid(
                "the Authorization header must be 'Bearer <API key or access token>'".into(),
            ));
        }
        return Ok(Some(secret.trim()));
    }
    if let Some(value) = headers.get("x-api-key") {
        return value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| AuthError::Invalid("the X-API-Key header is not ASCII".into()));
    }
    Ok(None)
}

/// The authenticated caller, for handlers: `Caller(who)`. The gate puts the principal on the
/// request; if it is missing (a route the gate let through unauthenticated) the extractor
/// refuses with 401 rather than running the handler as nobody.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| AuthError::Missing.to_api())
    }
}

/// Extractor: the client's address (from the connection, put on every request by `serve`), by
/// which quotas and stream shares are keyed when there is no principal. `None` only for a
/// request that did not come through `serve`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let info = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Peer(info.map(|info| info.0.ip())))
    }
}

/// The principal of a gRPC request (put there by the gate), or UNAUTHENTICATED.
pub fn principal_of(extensions: &http::Extensions) -> Result<Principal, ApiError> {
    extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| AuthError::Missing.to_api())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn with_key() -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            api_keys: vec![ApiKeyConfig {
                name: "ops".into(),
                role: "readonly".into(),
                secret: Some("ops-secret-1".into()),
                ..Default::default()
            }],
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn keys_are_read_from_bearer_x_api_key_or_the_query() {
        let auth = with_key();
        for (h, q) in [
            (headers(&[("authorization", "Bearer ops-secret-1")]), None),
            (headers(&[("authorization", "bearer  ops-secret-1 ")]), None),
            (headers(&[("x-api-key", "ops-secret-1")]), None),
            (HeaderMap::new(), Some("ops-secret-1")),
        ] {
            let who = auth.authenticate(&h, q, None).unwrap().unwrap();
            assert_eq!(&*who.name, "key:ops");
        }
        assert_eq!(auth.authenticate(&HeaderMap::new(), None, None), Ok(None));
    }

    #[test]
    fn wrong_or_malformed_credentials_are_refused() {
        let auth = with_key();
        for h in [
            headers(&[("authorization", "Bearer nope-nope")]),
            headers(&[("authorization", "Basic b3BzOnNlY3JldA==")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("x-api-key", "nope-nope")]),
        ] {
            assert!(
                matches!(
                    auth.authenticate(&h, None, None),
                    Err(AuthError::Invalid(_))
                ),
                "{h:?}"
            );
        }
    }

    #[test]
    fn with_nothing_configured_dev_mode_generates_an_admin_key() {
        let auth = Authenticator::from_config(&AuthConfig::default()).unwrap();
        let key = auth.dev_key().expect("dev mode").to_owned();
        let who = auth.verify_secret(&key).unwrap();
        assert_eq!(who.role, Role::Admin);
        assert!(with_key().dev_key().is_none());
    }

    #[test]
    fn with_auth_off_everyone_is_an_admin() {
        let auth = Authenticator::from_config(&AuthConfig {
            insecure_no_auth: true,
            ..AuthConfig::default()
        })
        .unwrap();
        assert!(auth.is_off());
        let who = auth
            .authenticate(&HeaderMap::new(), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(who.role, Role::Admin);
    }
}
