//! Webhooks, both ends: polyport as a provider (it POSTs signed events to registered endpoints,
//! reliably, in the background) and as a receiver (it accepts signed callbacks safely).
//!
//! Sending. A dispatcher follows the event log (`domain::feed`, like every streaming protocol)
//! and turns each event into one delivery per matching enabled endpoint. A delivery is one
//! message (`webhook-id` stays the same across retries) and its attempts. The worker sends due
//! deliveries with a bounded concurrency, signed as the Standard Webhooks specification says,
//! and treats only 2xx as success. Failures are retried on `webhooks.retry_schedule` (Svix's by
//! default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with ±10 % jitter, or after
//! the endpoint's `Retry-After` when it sends one. 410 Gone disables the endpoint at once;
//! `webhooks.disable_after_failures` consecutive failed attempts disable it too, with the reason
//! shown on the endpoint. Requests that cause events never wait for deliveries.
//!
//! Receiving. `POST /v1/webhooks/inbound/{source}` checks the signature against the source's
//! secret in constant time, refuses stale timestamps, remembers every message id so a duplicate
//! is acknowledged but not processed twice, records the raw message before answering, and
//! processes it afterwards.
//!
//! Simplification: endpoints, deliveries and received messages live in memory. At shutdown,
//! in-flight attempts get the drain period to finish and what is still pending is logged; with
//! a durable store they would be resumed at the next start.

pub mod signing;
pub mod ssrf;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::WebhooksConfig;
use crate::domain::events::EVENT_TYPES;
use crate::domain::feed::{self, EventFilter, FeedItem};
use crate::domain::{DomainError, FieldViolation};
use crate::gateway::ApiError;
use crate::gateway::error::kind;
use signing::Secret;

/// The most endpoints that may be registered: each one multiplies every event into a delivery.
pub const MAX_ENDPOINTS: usize = 100;
/// Finished deliveries and received messages kept for the logs; older ones are forgotten.
pub const MAX_LOG: usize = 10_000;

/// The event type of `POST /v1/webhook-endpoints/{id}/test`.
pub const PING: &str = "webhook.ping";

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointStatus {
    /// Deliveries are sent.
    Enabled,
    /// No deliveries are sent until it is enabled again.
    Disabled {
        /// Why, for the dashboard.
        reason: String,
        /// When.
        at: SystemTime,
    },
}

/// A registered receiver.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `ep_<n>`.
    pub id: String,
    /// Where deliveries go.
    pub url: url::Url,
    /// Event types it wants; empty means all.
    pub event_types: Vec<String>,
    /// Free text.
    pub description: String,
    /// Enabled or disabled (with the reason).
    pub status: EndpointStatus,
    /// When registered.
    pub created_at: SystemTime,
    secret: Secret,
    /// The secret before the last rotation, still signing until the instant given.
    previous_secret: Option<(Secret, SystemTime)>,
    consecutive_failures: u32,
}

impl Endpoint {
    fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    fn signatures(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut signatures = vec![self.secret.sign(id, timestamp, body)];
        if let Some((previous, until)) = &self.previous_secret
            && SystemTime::now() < *until
        {
            signatures.push(previous.sign(id, timestamp, body));
        }
        signatures.join(" ")
    }
}

/// One try at delivering.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it was sent.
    pub at: SystemTime,
    /// The HTTP status answered, if one was.
    pub status: Option<u16>,
    /// What went wrong, if anything did.
    pub error: Option<String>,
    /// How long it took.
    pub latency: Duration,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt got a 2xx.
    Delivered,
    /// Out of attempts, or the endpoint was disabled.
    Failed,
}

impl DeliveryState {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

/// One message to one endpoint, with its attempts.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `msg_<n>`: the `webhook-id`, the same on every attempt.
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The event type.
    pub event_type: String,
    /// The event's seq, for domain events.
    pub seq: Option<u64>,
    /// The JSON body sent.
    pub body: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<SystemTime>,
    /// When it was created.
    pub created_at: SystemTime,
}

/// Processing state of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundState {
    /// Recorded, not yet processed.
    Received,
    /// Processed.
    Processed,
    /// Processing failed; the raw message is kept.
    Failed(String),
}

/// A received webhook message.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// `in_<n>`.
    pub id: String,
    /// The configured source it came from.
    pub source: String,
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// Its `webhook-timestamp`.
    pub timestamp: i64,
    /// When we received it.
    pub received_at: SystemTime,
    /// The `type` field of the body, when it has one.
    pub event_type: Option<String>,
    /// The raw body, kept as received.
    pub body: String,
    /// Where processing stands.
    pub state: InboundState,
}

/// What happened to a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// New: recorded under this id and being processed.
    Accepted(String),
    /// Already received (same source and webhook-id): acknowledged, not processed again.
    Duplicate(String),
}

#[derive(Default)]
struct State {
    endpoints: BTreeMap<u64, Endpoint>,
    next_endpoint: u64,
    deliveries: HashMap<String, Delivery>,
    /// Delivery ids in creation order.
    delivery_order: Vec<String>,
    next_delivery: u64,
    /// Due deliveries, by due time.
    due: BTreeSet<(Instant, String)>,
    inbound: Vec<InboundMessage>,
    inbound_total: u64,
    /// (source, webhook-id) of messages received within the tolerance, with their timestamp.
    inbound_seen: HashMap<(String, String), i64>,
}

/// Drops the oldest finished deliveries beyond [`MAX_LOG`]; pending ones are always kept.
fn forget_old_deliveries(state: &mut State) {
    let excess = state.delivery_order.len().saturating_sub(MAX_LOG);
    let mut dropped = HashSet::new();
    for id in &state.delivery_order {
        if dropped.len() == excess {
            break;
        }
        if state
            .deliveries
            .get(id)
            .is_some_and(|d| d.state != DeliveryState::Pending)
        {
            dropped.insert(id.clone());
        }
    }
    state.deliveries.retain(|id, _| !dropped.contains(id));
    state.delivery_order.retain(|id| !dropped.contains(id));
}

/// The webhook service.
pub struct Webhooks {
    config: WebhooksConfig,
    state: Mutex<State>,
    wake: Notify,
    client: reqwest::Client,
}

fn endpoint_number(id: &str) -> Result<u64, ApiError> {
    id.strip_prefix("ep_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| DomainError::not_found("webhook endpoint", id).into())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Changes to an endpoint (`PATCH`).
#[derive(Debug, Default)]
pub struct EndpointChanges {
    /// A new URL (checked by the SSRF guard).
    pub url: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// A new description.
    pub description: Option<String>,
    /// `Some(true)` enables (and forgets past failures), `Some(false)` disables.
    pub enabled: Option<bool>,
}

impl Webhooks {
    /// A service with `config`.
    pub fn new(config: WebhooksConfig) -> Self {
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
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            client,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation below completes before the guard drops; a panic cannot leave half a change.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn check_url(&self, raw: &str, field: &str) -> Result<url::Url, ApiError> {
        let url = url::Url::parse(raw)
            .map_err(|e| FieldViolation::new(field, format!("is not a URL: {e}")))?;
        ssrf::check(&url, &self.config.allow_hosts)
            .await
            .map_err(|e| FieldViolation::new(field, e.to_string()))?;
        Ok(url)
    }

    fn check_types(types: &[String]) -> Result<(), ApiError> {
        let violations: Vec<FieldViolation> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| !EVENT_TYPES.contains(&t.as_str()))
            .map(|(i, t)| {
                FieldViolation::new(
                    format!("event_types[{i}]"),
                    format!(
                        "unknown event type '{t}'; types: {}",
                        EVENT_TYPES.join(", ")
                    ),
                )
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(violations))
        }
    }

    /// Registers an endpoint; returns it and its secret (shown only now). A `secret` may be
    /// given (`whsec_...`), e.g. to match a receiver that already has one.
    pub async fn create_endpoint(
        &self,
        url: &str,
        event_types: Vec<String>,
        description: String,
        secret: Option<String>,
    ) -> Result<(Endpoint, String), ApiError> {
        let url = self.check_url(url, "url").await?;
        Self::check_types(&event_types)?;
        let secret = match secret {
            Some(text) => Secret::parse(&text).ok_or_else(|| {
                FieldViolation::new(
                    "secret",
                    "must be whsec_ followed by base64 of at least 16 bytes",
                )
            })?,
            None => Secret::generate(),
        };
        let mut state = self.state();
        if state.endpoints.len() >= MAX_ENDPOINTS {
            return Err(ApiError::new(
                &kind::INVALID_STATE,
                format!(
                    "at most {MAX_ENDPOINTS} webhook endpoints can be registered; delete one first"
                ),
            ));
        }
        state.next_endpoint += 1;
        let n = state.next_endpoint;
        let endpoint = Endpoint {
            id: format!("ep_{n}"),
            url,
            event_types,
            description,
            status: EndpointStatus::Enabled,
            created_at: SystemTime::now(),
            secret: secret.clone(),
            previous_secret: None,
            consecutive_failures: 0,
        };
        state.endpoints.insert(n, endpoint.clone());
        Ok((endpoint, secret.expose()))
    }

    /// Every endpoint.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.state().endpoints.values().cloned().collect()
    }

    /// One endpoint.
    pub fn endpoint(&self, id: &str) -> Result<Endpoint, ApiError> {
        let n = endpoint_number(id)?;
        self.state()
            .endpoints
            .get(&n)
            .cloned()
            .ok_or_else(|| DomainError::not_found("webhook endpoint", id).into())
    }

    /// Applies `changes`.
    pub async fn update_endpoint(
        &self,
        id: &str,
        changes: EndpointChanges,
    ) -> Result<Endpoint, ApiError> {
        let n = endpoint_number(id)?;
        let url = match &changes.url {
            Some(raw) => Some(self.check_url(raw, "url").await?),
            None => None,
        };
        if let Some(types) = &changes.event_types {
            Self::check_types(types)?;
        }
        let mut state = self.state();
        let endpoint = state
            .endpoints
            .get_mut(&n)
            .ok_or_else(|| ApiError::from(DomainError::not_found("webhook endpoint", id)))?;
        if let Some(url) = url {
            endpoint.url = url;
        }
        if let Some(types) = changes.event_types {
            endpoint.event_types = types;
        }
        if let Some(description) = changes.description {
            endpoint.description = description;
        }
        match changes.enabled {
            Some(true) => {
                endpoint.status = EndpointStatus::Enabled;
                endpoint.consecutive_failures = 0;
            }
            Some(false) => {
                endpoint.status = EndpointStatus::Disabled {
                    reason: "disabled by request".into(),
                    at: SystemTime::now(),
                }
            }
            None => {}
        }
        let endpoint = endpoint.clone();
        if changes.enabled == Some(false) {
            fail_pending(&mut state, id, "the endpoint was disabled", None);
        }
        Ok(endpoint)
    }

    /// Removes an endpoint; its pending deliveries fail at once.
    pub fn delete_endpoint(&self, id: &str) -> Result<(), ApiError> {
        let n = endpoint_number(id)?;
        let mut state = self.state();
        state
            .endpoints
            .remove(&n)
            .ok_or_else(|| ApiError::from(DomainError::not_found("webhook endpoint", id)))?;
        fail_pending(&mut state, id, "the endpoint was deleted", None);
        Ok(())
    }

    /// Issues a new secret; the old one keeps signing beside it for the grace period.
    pub fn rotate_secret(&self, id: &str) -> Result<(String, SystemTime), ApiError> {
        let n = endpoint_number(id)?;
        let mut state = self.state();
        let endpoint = state
            .endpoints
            .get_mut(&n)
            .ok_or_else(|| ApiError::from(DomainError::not_found("webhook endpoint", id)))?;
        let until = SystemTime::now() + self.config.secret_rotation_grace;
        let new = Secret::generate();
        let old = std::mem::replace(&mut endpoint.secret, new.clone());
        endpoint.previous_secret = Some((old, until));
        Ok((new.expose(), until))
    }

    /// Queues a `webhook.ping` to the endpoint; returns the delivery.
    pub fn test(&self, id: &str) -> Result<Delivery, ApiError> {
        let endpoint = self.endpoint(id)?;
        let body = json!({
            "type": PING,
            "timestamp": crate::wire::timestamp(SystemTime::now()),
            "data": { "endpoint_id": endpoint.id },
        });
        Ok(self.enqueue(&endpoint.id, PING, None, body.to_string()))
    }

    fn enqueue(
        &self,
        endpoint_id: &str,
        event_type: &str,
        seq: Option<u64>,
        body: String,
    ) -> Delivery {
        let mut state = self.state();
        state.next_delivery += 1;
        let id = format!("msg_{}", state.next_delivery);
        let now = SystemTime::now();
        let delivery = Delivery {
            id: id.clone(),
            endpoint_id: endpoint_id.to_owned(),
            event_type: event_type.to_owned(),
            seq,
            body,
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(now),
            created_at: now,
        };
        state.deliveries.insert(id.clone(), delivery.clone());
        state.delivery_order.push(id.clone());
        if state.delivery_order.len() > MAX_LOG {
            forget_old_deliveries(&mut state);
        }
        state.due.insert((Instant::now(), id));
        drop(state);
        self.wake.notify_one();
        delivery
    }

    /// The deliveries to one endpoint, newest first.
    pub fn deliveries(&self, endpoint_id: &str) -> Result<Vec<Delivery>, ApiError> {
        self.endpoint(endpoint_id)?;
        let state = self.state();
        Ok(state
            .delivery_order
            .iter()
            .rev()
            .filter_map(|id| state.deliveries.get(id))
            .filter(|d| d.endpoint_id == endpoint_id)
            .cloned()
            .collect())
    }

    /// One delivery.
    pub fn delivery(&self, id: &str) -> Result<Delivery, ApiError> {
        self.state()
            .deliveries
            .get(id)
            .cloned()
            .ok_or_else(|| DomainError::not_found("webhook delivery", id).into())
    }

    /// Sends a delivery again now, whatever its state (a manual retry).
    pub fn retry(&self, id: &str) -> Result<Delivery, ApiError> {
        let mut state = self.state();
        let delivery = state
            .deliveries
            .get_mut(id)
            .ok_or_else(|| ApiError::from(DomainError::not_found("webhook delivery", id)))?;
        if delivery.state == DeliveryState::Pending {
            return Err(ApiError::new(
                &kind::INVALID_STATE,
                "the delivery is already pending; its next attempt is scheduled",
            ));
        }
        delivery.state = DeliveryState::Pending;
        delivery.next_attempt_at = Some(SystemTime::now());
        let delivery = delivery.clone();
        state.due.insert((Instant::now(), id.to_owned()));
        drop(state);
        self.wake.notify_one();
        Ok(delivery)
    }

    /// Deliveries still pending (reported at shutdown).
    pub fn pending(&self) -> usize {
        self.state()
            .deliveries
            .values()
            .filter(|d| d.state == DeliveryState::Pending)
            .count()
    }

    /// Follows the event log and delivers until `shutdown` completes; then gives in-flight
    /// attempts `grace` to finish.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<dyn crate::domain::events::EventLog>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let dispatcher = {
            let this = Arc::clone(&self);
            let after = Some(log.last_seq());
            tokio::spawn(async move {
                // Webhook endpoints are registered by admins and receive every event.
                let system = crate::domain::Principal::system();
                feed::follow(&log, &system, after, &EventFilter::default(), |item| {
                    match item {
                        FeedItem::Event(event) => this.dispatch(&event),
                        FeedItem::Missed {
                            requested_after,
                            resumed_after,
                        } => tracing::warn!(
                            requested_after,
                            resumed_after,
                            "webhook dispatcher fell behind the event log; these events get no deliveries"
                        ),
                    }
                    async { true }
                })
                .await;
            })
        };
        let limit = Arc::new(Semaphore::new(self.config.max_concurrent_deliveries.max(1)));
        let mut attempts = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let next = self.state().due.first().cloned();
            let sleep = async {
                match &next {
                    Some((at, _)) => tokio::time::sleep_until(*at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {
                    let Some((at, id)) = next else { continue };
                    // Wait for a free slot before taking the delivery off the queue, and keep
                    // listening for shutdown meanwhile: slow receivers must not hold it up.
                    let permit = tokio::select! {
                        permit = Arc::clone(&limit).acquire_owned() => permit.expect("never closed"),
                        () = &mut shutdown => break,
                    };
                    if !self.state().due.remove(&(at, id.clone())) {
                        continue;
                    }
                    let this = Arc::clone(&self);
                    attempts.spawn(async move {
                        this.attempt(&id).await;
                        drop(permit);
                    });
                }
                () = self.wake.notified() => {}
                Some(_) = attempts.join_next(), if !attempts.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        dispatcher.abort();
        let _ = tokio::time::timeout(grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        let pending = self.pending();
        if pending > 0 {
            tracing::warn!(
                pending,
                "webhook deliveries still pending at shutdown (kept in memory only, so they are lost)"
            );
        }
    }

    fn dispatch(&self, event: &crate::domain::events::Event) {
        let event_type = event.change.event_type();
        let targets: Vec<String> = self
            .state()
            .endpoints
            .values()
            .filter(|e| e.status == EndpointStatus::Enabled && e.wants(event_type))
            .map(|e| e.id.clone())
            .collect();
        if targets.is_empty() {
            return;
        }
        let body = json!({
            "type": event_type,
            "timestamp": crate::wire::timestamp(event.occurred_at),
            "data": crate::wire::event_json(event),
        })
        .to_string();
        for endpoint in targets {
            self.enqueue(&endpoint, event_type, Some(event.seq), body.clone());
        }
    }

    /// One attempt at a delivery, and what follows from its result.
    async fn attempt(&self, id: &str) {
        let Some((delivery, endpoint)) = ({
            let state = self.state();
            state.deliveries.get(id).cloned().and_then(|d| {
                let n = endpoint_number(&d.endpoint_id).ok()?;
                Some((d.clone(), state.endpoints.get(&n).cloned()))
            })
        }) else {
            return;
        };
        let Some(endpoint) = endpoint.filter(|e| e.status == EndpointStatus::Enabled) else {
            self.finish(
                id,
                None,
                DeliveryState::Failed,
                "the endpoint is disabled or deleted",
            );
            return;
        };
        let started = std::time::Instant::now();
        let at = SystemTime::now();
        let outcome = self.send(&endpoint, &delivery).await;
        let attempt = |status: Option<u16>, error: Option<String>| Attempt {
            at,
            status,
            error,
            latency: started.elapsed(),
        };
        let (record, retry_after) = match outcome {
            Ok((status, _)) if (200..300).contains(&status) => {
                self.record(
                    id,
                    &endpoint.id,
                    attempt(Some(status), None),
                    Verdict::Delivered,
                );
                return;
            }
            Ok((410, _)) => {
                self.record(id, &endpoint.id, attempt(Some(410), None), Verdict::Failed);
                self.disable(&endpoint.id, "the endpoint answered 410 Gone");
                return;
            }
            Ok((status, retry_after)) => (
                attempt(Some(status), Some(format!("HTTP {status}"))),
                retry_after,
            ),
            Err(error) => (attempt(None, Some(error)), None),
        };
        self.record(id, &endpoint.id, record, Verdict::Retry(retry_after));
    }

    async fn send(
        &self,
        endpoint: &Endpoint,
        delivery: &Delivery,
    ) -> Result<(u16, Option<Duration>), String> {
        // Again at delivery time: the name may resolve elsewhere now.
        ssrf::check(&endpoint.url, &self.config.allow_hosts)
            .await
            .map_err(|e| format!("refused by the SSRF guard: {e}"))?;
        let timestamp = unix_now();
        let body = delivery.body.as_bytes();
        let response = self
            .client
            .post(endpoint.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                endpoint.signatures(&delivery.id, timestamp, body),
            )
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    format!("request failed: {e}")
                }
            })?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| Duration::from_secs(secs.min(24 * 60 * 60)));
        Ok((response.status().as_u16(), retry_after))
    }

    fn disable(&self, endpoint_id: &str, reason: &str) {
        let mut state = self.state();
        if let Ok(n) = endpoint_number(endpoint_id)
            && let Some(endpoint) = state.endpoints.get_mut(&n)
        {
            tracing::warn!(endpoint = endpoint_id, reason, "webhook endpoint disabled");
            endpoint.status = EndpointStatus::Disabled {
                reason: reason.to_owned(),
                at: SystemTime::now(),
            };
            fail_pending(&mut state, endpoint_id, "the endpoint was disabled", None);
        }
    }

    fn finish(&self, id: &str, attempt: Option<Attempt>, final_state: DeliveryState, error: &str) {
        if let Some(delivery) = self.state().deliveries.get_mut(id) {
            delivery.attempts.extend(attempt);
            if delivery.attempts.is_empty() || final_state == DeliveryState::Failed {
                delivery.attempts.push(Attempt {
                    at: SystemTime::now(),
                    status: None,
                    error: Some(error.to_owned()),
                    latency: Duration::ZERO,
                });
            }
            delivery.state = final_state;
            delivery.next_attempt_at = None;
        }
    }

    fn record(&self, id: &str, endpoint_id: &str, attempt: Attempt, verdict: Verdict) {
        let mut guard = self.state();
        let state = &mut *guard;
        let endpoint_n = endpoint_number(endpoint_id).ok();
        let Some(delivery) = state.deliveries.get_mut(id) else {
            return;
        };
        delivery.attempts.push(attempt);
        let endpoint = endpoint_n.and_then(|n| state.endpoints.get_mut(&n));
        match verdict {
            Verdict::Delivered => {
                delivery.state = DeliveryState::Delivered;
                delivery.next_attempt_at = None;
                if let Some(endpoint) = endpoint {
                    endpoint.consecutive_failures = 0;
                }
            }
            Verdict::Failed => {
                delivery.state = DeliveryState::Failed;
                delivery.next_attempt_at = None;
            }
            Verdict::Retry(retry_after) => {
                let mut disabled = false;
                if let Some(endpoint) = endpoint {
                    endpoint.consecutive_failures += 1;
                    if endpoint.consecutive_failures >= self.config.disable_after_failures {
                        let reason = format!(
                            "{} consecutive failed attempts",
                            endpoint.consecutive_failures
                        );
                        tracing::warn!(endpoint = endpoint_id, %reason, "webhook endpoint disabled");
                        endpoint.status = EndpointStatus::Disabled {
                            reason,
                            at: SystemTime::now(),
                        };
                        disabled = true;
                    }
                }
                if disabled {
                    fail_pending(state, endpoint_id, "the endpoint was disabled", Some(id));
                }
                let Some(delivery) = state.deliveries.get_mut(id) else {
                    return;
                };
                let tried = delivery.attempts.len();
                let next = self.config.retry_schedule.get(tried).copied();
                match next {
                    Some(delay) if !disabled => {
                        // Retry-After means "not before": never sooner than the schedule.
                        let delay = jitter(delay).max(retry_after.unwrap_or_default());
                        delivery.next_attempt_at = Some(SystemTime::now() + delay);
                        state.due.insert((Instant::now() + delay, id.to_owned()));
                        drop(guard);
                        self.wake.notify_one();
                    }
                    _ => {
                        delivery.state = DeliveryState::Failed;
                        delivery.next_attempt_at = None;
                    }
                }
            }
        }
    }

    // ---- receiving ----

    /// Verifies, de-duplicates and records a message for `source`; processing happens after.
    pub fn receive(
        self: &Arc<Self>,
        source: &str,
        webhook_id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Received, ApiError> {
        let secrets: Vec<Secret> = self
            .config
            .inbound
            .sources
            .get(source)
            .ok_or_else(|| ApiError::from(DomainError::not_found("webhook source", source)))?
            .iter()
            .filter_map(|s| Secret::parse(s))
            .collect();
        let unsigned = || {
            ApiError::new(
                &kind::UNAUTHENTICATED,
                "the request is not signed: send webhook-id, webhook-timestamp and webhook-signature",
            )
        };
        let (Some(webhook_id), Some(timestamp), Some(signature)) =
            (webhook_id, timestamp, signature)
        else {
            return Err(unsigned());
        };
        let timestamp: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| FieldViolation::new("webhook-timestamp", "must be Unix seconds"))?;
        let tolerance = self.config.inbound.tolerance.as_secs() as i64;
        if unix_now().abs_diff(timestamp) > tolerance.unsigned_abs() {
            return Err(FieldViolation::new(
                "webhook-timestamp",
                format!("is more than {tolerance} s away from now (a replay, or a wrong clock)"),
            )
            .into());
        }
        if !secrets
            .iter()
            .any(|s| s.verifies(signature, webhook_id, timestamp, body))
        {
            return Err(ApiError::new(
                &kind::UNAUTHENTICATED,
                "the signature does not match",
            ));
        }
        let body = String::from_utf8_lossy(body).into_owned();
        let mut state = self.state();
        let key = (source.to_owned(), webhook_id.to_owned());
        if state.inbound_seen.contains_key(&key) {
            let known = state
                .inbound
                .iter()
                .find(|m| m.source == source && m.webhook_id == webhook_id)
                .map_or_else(String::new, |m| m.id.clone());
            return Ok(Received::Duplicate(known));
        }
        if state.inbound_seen.len() >= MAX_LOG {
            // A message older than the tolerance is refused before it gets here, so its id no
            // longer needs remembering.
            let now = unix_now();
            state
                .inbound_seen
                .retain(|_, seen| now.abs_diff(*seen) <= tolerance.unsigned_abs());
        }
        state.inbound_seen.insert(key, timestamp);
        state.inbound_total += 1;
        let id = format!("in_{}", state.inbound_total);
        if state.inbound.len() >= MAX_LOG {
            state.inbound.remove(0);
        }
        state.inbound.push(InboundMessage {
            id: id.clone(),
            source: source.to_owned(),
            webhook_id: webhook_id.to_owned(),
            timestamp,
            received_at: SystemTime::now(),
            event_type: None,
            body,
            state: InboundState::Received,
        });
        drop(state);
        // Answer now; process after. Processing looks only at this message, so messages that
        // arrive out of order are handled alike (order them by `timestamp` or the event's `seq`).
        let this = Arc::clone(self);
        let processing = id.clone();
        tokio::spawn(async move { this.process(&processing) });
        Ok(Received::Accepted(id))
    }

    fn process(&self, id: &str) {
        let mut state = self.state();
        let Some(message) = state.inbound.iter_mut().find(|m| m.id == id) else {
            return;
        };
        match serde_json::from_str::<Value>(&message.body) {
            Ok(value) => {
                message.event_type = value.get("type").and_then(Value::as_str).map(str::to_owned);
                message.state = InboundState::Processed;
            }
            Err(error) => {
                message.state = InboundState::Failed(format!("the body is not JSON: {error}"))
            }
        }
    }

    /// Received messages, newest first.
    pub fn inbound(&self) -> Vec<InboundMessage> {
        self.state().inbound.iter().rev().cloned().collect()
    }
}

/// Fails every pending delivery to `endpoint_id` (but `except`) now, because the endpoint was
/// deleted or disabled, taking them off the queue. Each gets a last log entry saying why.
fn fail_pending(state: &mut State, endpoint_id: &str, reason: &str, except: Option<&str>) {
    let State {
        deliveries, due, ..
    } = state;
    let mut failed = HashSet::new();
    for delivery in deliveries.values_mut() {
        if delivery.endpoint_id == endpoint_id
            && delivery.state == DeliveryState::Pending
            && except != Some(delivery.id.as_str())
        {
            delivery.state = DeliveryState::Failed;
            delivery.next_attempt_at = None;
            delivery.attempts.push(Attempt {
                at: SystemTime::now(),
                status: None,
                error: Some(reason.to_owned()),
                latency: Duration::ZERO,
            });
            failed.insert(delivery.id.clone());
        }
    }
    if !failed.is_empty() {
        due.retain(|(_, id)| !failed.contains(id));
    }
}

enum Verdict {
    Delivered,
    Failed,
    Retry(Option<Duration>),
}

/// `delay` ± 10 %, so endpoints recovering from an outage are not hit by every retry at once.
fn jitter(delay: Duration) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    let [random] = random_bytes::<1>();
    delay.mul_f64(0.9 + 0.2 * f64::from(random) / 255.0)
}

/// `N` bytes from the operating system's RNG (secrets and jitter).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).expect("the OS RNG is available");
    bytes
}
