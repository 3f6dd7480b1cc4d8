//! One attempt at a delivery: sign it as the Standard Webhooks specification says and POST it.
//!
//! The request carries `webhook-id` (the delivery's id, the same on every attempt),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (one signature per active
//! secret, space-separated, while a rotated secret is in its grace period). The URL passes the
//! SSRF guard again first, since its name may resolve elsewhere now, and the client resolves
//! names only to addresses the guard allows and follows no redirects.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::clock::Now;
use super::queue::{Delivery, Outcome};
use super::registry::Endpoint;
use super::ssrf;
use crate::config::WebhooksConfig;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Sends one attempt. The worker is generic over it so that its tests can stand in a receiver
/// that answers when they say so.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends `delivery` to `endpoint`, as of `now`.
    fn send(
        &self,
        endpoint: &Endpoint,
        delivery: &Delivery,
        now: Now,
    ) -> impl Future<Output = Outcome> + Send;
}

/// The HTTP sender.
pub(crate) struct Sender {
    client: reqwest::Client,
    allow_hosts: Vec<String>,
}

impl Sender {
    pub(crate) fn new(config: &WebhooksConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // Names resolve only to addresses the SSRF guard allows (no DNS rebinding).
            .dns_resolver(Arc::new(ssrf::GuardedResolver {
                allow: config.allow_hosts.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("polyport-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with these settings builds");
        Self {
            client,
            allow_hosts: config.allow_hosts.clone(),
        }
    }
}

impl Transport for Sender {
    async fn send(&self, endpoint: &Endpoint, delivery: &Delivery, now: Now) -> Outcome {
        // Again at delivery time: the name may resolve elsewhere now.
        if let Err(e) = ssrf::check(&endpoint.url, &self.allow_hosts).await {
            return Outcome::NoAnswer(format!("refused by the SSRF guard: {e}"));
        }
        let id = delivery.id.to_string();
        let timestamp = now.unix();
        let signatures: Vec<String> = endpoint
            .signing_secrets(now.wall)
            .map(|secret| secret.sign(&id, timestamp, delivery.body.as_bytes()))
            .collect();
        let sent = self
            .client
            .post(endpoint.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(delivery.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => Outcome::Answered {
                status: response.status().as_u16(),
                retry_after: response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER)),
            },
            Err(e) if e.is_timeout() => Outcome::NoAnswer("timed out".to_owned()),
            Err(e) => Outcome::NoAnswer(format!("request failed: {e}")),
        }
    }
}
