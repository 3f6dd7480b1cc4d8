//! Stream tickets: how a browser opens a stream without putting its key in a URL.
//!
//! A browser's `EventSource` cannot send an `Authorization` header, and a URL ends up in
//! access logs, proxies and the history. So the page trades its key for a ticket first:
//!
//! ```text
//! POST /v1/stream-tickets            Authorization: Bearer <key>    (guarded like any request)
//!   201 {"ticket":"pst_9c1e...","expires_in":10}                    Cache-Control: no-store
//! GET  /v1/events?ticket=pst_9c1e...                                (one stream, once)
//! ```
//!
//! A ticket is 256 random bits, worth nothing after a few seconds (`auth.stream_ticket_ttl`)
//! or after its first use; it is accepted only where the gate reads a query credential (the
//! streaming GET endpoints), never as a header on the rest of the API. It stands for the
//! principal that asked for it, with that principal's role, customer, token expiry and
//! revocation: a stream opened with it ends when the key's token would have. Only its SHA-256
//! is kept, as API keys are.
//!
//! A ticket that leaks from a log is already used or expired. A production system would also
//! bind it to the client's address or TLS session; this one keeps it short and single-use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use super::{AuthError, Authenticator, Caller};
use crate::domain::Principal;
use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::gateway::random::{hex, secret_bytes};

/// What every ticket starts with, so the gate can tell one from a key or a JWT.
pub const PREFIX: &str = "pst_";

/// At most this many tickets wait to be used at once. Each caller's requests for them are
/// rate limited like any other, and a ticket lives seconds, so an honest page never comes
/// near; past it, new tickets are refused (503) until old ones expire.
const MAX_OUTSTANDING: usize = 10_000;

/// The tickets issued and not yet used, by the SHA-256 of their text.
pub struct Tickets {
    ttl: Duration,
    live: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

/// A ticket just issued.
#[derive(Debug, serde::Serialize)]
pub struct Issued {
    /// The ticket, for `?ticket=`.
    pub ticket: String,
    /// Seconds until it is worth nothing.
    pub expires_in: u64,
}

impl Tickets {
    /// Tickets that live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            live: Mutex::default(),
        }
    }

    /// A new ticket standing for `who`.
    pub fn issue(&self, who: &Principal) -> Result<Issued, ApiError> {
        let ticket = format!("{PREFIX}{}", hex(&secret_bytes::<32>()));
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.len() >= MAX_OUTSTANDING {
            live.retain(|_, (_, expires)| *expires > now);
        }
        if live.len() >= MAX_OUTSTANDING {
            let mut error = ApiError::new(
                &kind::UNAVAILABLE,
                format!("{MAX_OUTSTANDING} stream tickets are waiting to be used; retry shortly"),
            );
            error.retry_after = Some(self.ttl);
            return Err(error);
        }
        live.insert(digest(&ticket), (who.clone(), now + self.ttl));
        Ok(Issued {
            ticket,
            expires_in: self.ttl.as_secs().max(1),
        })
    }

    /// The principal `ticket` stands for, once: it is gone from then on, used or expired.
    pub fn redeem(&self, ticket: &str) -> Result<Principal, AuthError> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.remove(&digest(ticket)) {
            Some((who, expires)) if expires > Instant::now() => Ok(who),
            _ => Err(AuthError::Invalid(
                "the stream ticket is unknown, used or expired: tickets are single-use and \
                 short-lived; get a new one with POST /v1/stream-tickets"
                    .into(),
            )),
        }
    }
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

/// `POST /v1/stream-tickets`, guarded by the gate like the rest of the API.
pub fn routes(auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/v1/stream-tickets", post(issue))
        .with_state(auth)
}

async fn issue(State(auth): State<Arc<Authenticator>>, Caller(who): Caller) -> Response {
    match auth.tickets().issue(&who) {
        Ok(issued) => {
            let mut response = (StatusCode::CREATED, axum::Json(issued)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    #[test]
    fn a_ticket_stands_for_its_principal_once_and_only_until_it_expires() {
        let tickets = Tickets::new(Duration::from_secs(10));
        let ada = Principal::new("key:ada", Role::Readonly);
        let once = tickets.issue(&ada).unwrap();
        assert!(once.ticket.starts_with(PREFIX));
        assert_eq!(once.expires_in, 10);
        let who = tickets.redeem(&once.ticket).unwrap();
        assert_eq!((&*who.name, who.role), ("key:ada", Role::Readonly));
        assert!(tickets.redeem(&once.ticket).is_err(), "used twice");

        // A ticket that lives no time at all has expired by the time anyone presents it.
        let expired = Tickets::new(Duration::ZERO);
        let late = expired.issue(&ada).unwrap();
        assert!(expired.redeem(&late.ticket).is_err(), "used after expiry");
        assert!(tickets.redeem("pst_made-up").is_err());
    }
}
