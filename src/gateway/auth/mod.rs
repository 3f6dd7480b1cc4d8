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
//! - The first WebSocket message (`{"op":"auth","token":...}` on `/v1/ws`, the
//!   `connection_init` payload on `/graphql/ws`), within `auth.first_message_timeout`.
//! - A client certificate, when the server runs TLS with client authentication.
//!
//! What a principal may do is not decided here: the domain core applies the rules
//! (`domain::access`). The gate (`gateway::gate`) runs this for every request and answers
//! failures in each protocol's idiom.

pub mod keys;

use axum::extract::FromRequestParts;
use http::HeaderMap;
use http::request::Parts;

use crate::config::AuthConfig;
use crate::domain::{Principal, Role};
use crate::gateway::ApiError;
use crate::gateway::error::kind;

use self::keys::ApiKeys;

/// How the server authenticates.
#[derive(Debug)]
pub struct Authenticator {
    keys: ApiKeys,
    /// Set in dev mode: the admin key generated at start-up, to print.
    dev_key: Option<String>,
    /// `--insecure-no-auth`: everyone is this admin.
    open_to_all: Option<Principal>,
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
                dev_key: None,
                open_to_all: Some(Principal::new("anonymous", Role::Admin)),
            });
        }
        let mut keys = ApiKeys::from_config(&config.api_keys)?;
        let dev_key = if has_credentials(config) {
            None
        } else {
            let key = keys::generate();
            keys.add("dev-admin", Role::Admin, &key)?;
            Some(key)
        };
        Ok(Self {
            keys,
            dev_key,
            open_to_all: None,
        })
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
        self.keys
            .verify(secret)
            .ok_or_else(|| AuthError::Invalid("the API key is not valid".into()))
    }

    /// Authenticates a request from its headers and, on the streaming endpoints,
    /// `query_token`. `Ok(None)`: it presented nothing.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Option<Principal>, AuthError> {
        if let Some(everyone) = &self.open_to_all {
            return Ok(Some(everyone.clone()));
        }
        match presented(headers)?.or(query_token) {
            Some(secret) => self.verify_secret(secret).map(Some),
            None => Ok(None),
        }
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
    !config.api_keys.is_empty() || !config.certificates.is_empty()
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
            let who = auth.authenticate(&h, q).unwrap().unwrap();
            assert_eq!(&*who.name, "key:ops");
        }
        assert_eq!(auth.authenticate(&HeaderMap::new(), None), Ok(None));
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
                matches!(auth.authenticate(&h, None), Err(AuthError::Invalid(_))),
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
        let who = auth.authenticate(&HeaderMap::new(), None).unwrap().unwrap();
        assert_eq!(who.role, Role::Admin);
    }
}
