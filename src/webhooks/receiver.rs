//! Receiving: `POST /v1/webhooks/inbound/{source}`, for the sources in `[webhooks.inbound]`.
//!
//! A message is checked in this order: the source exists, the three `webhook-*` headers are
//! there, the timestamp is within the tolerance of now (older ones would be replays), and a
//! signature matches one of the source's secrets (in constant time). A message id seen before
//! from the same source is acknowledged and not processed again. A new message is recorded as
//! received before the answer, and processed afterwards: processing looks only at that message,
//! so messages that arrive out of order are handled alike (order them by `timestamp` or the
//! event's `seq`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::MAX_LOG;
use super::clock::Clock;
use super::endpoints::admit;
use super::signing::Secret;
use crate::config::InboundConfig;
use crate::domain::{DomainError, FieldViolation, Principal};
use crate::gateway::ApiError;
use crate::gateway::error::kind;

/// Processing state of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InboundState {
    /// Recorded, not yet processed.
    Received,
    Processed,
    /// Processing failed; the raw message is kept.
    Failed(String),
}

/// A received webhook message.
#[derive(Debug, Clone)]
pub(crate) struct InboundMessage {
    /// `in_<n>`.
    pub(crate) id: String,
    /// The configured source it came from.
    pub(crate) source: String,
    /// Its `webhook-id`.
    pub(crate) webhook_id: String,
    /// Its `webhook-timestamp`.
    pub(crate) timestamp: i64,
    /// When we received it.
    pub(crate) received_at: SystemTime,
    /// The `type` field of the body, when it has one.
    pub(crate) event_type: Option<String>,
    /// The raw body, kept as received.
    pub(crate) body: String,
    /// Where processing stands.
    pub(crate) state: InboundState,
}

/// What happened to a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// New: recorded under this id and being processed.
    Accepted(String),
    /// Already received (same source and webhook-id): acknowledged, not processed again.
    Duplicate(String),
}

/// The messages received, and the ids seen.
#[derive(Default)]
struct Inbox {
    /// Oldest first, at most [`MAX_LOG`].
    messages: VecDeque<InboundMessage>,
    total: u64,
    /// (source, webhook-id) of messages received within the tolerance, with their timestamp.
    seen: HashMap<(String, String), i64>,
}

/// The inbound side.
pub(crate) struct Receiver {
    /// Source name -> its secrets (several while rotating).
    sources: BTreeMap<String, Vec<Secret>>,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    /// A receiver for the sources in `config`, or the first source whose secrets are not
    /// `whsec_` secrets, named as the setting.
    pub(crate) fn new(config: &InboundConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let sources = config
            .sources
            .iter()
            .map(|(name, secrets)| {
                let parsed: Option<Vec<Secret>> = secrets.iter().map(|s| Secret::parse(s)).collect();
                parsed.map(|secrets| (name.clone(), secrets)).ok_or_else(|| {
                    format!(
                        "webhooks.inbound.sources.{name}: secrets are whsec_ + base64 of at least 16 bytes"
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sources,
            tolerance: config.tolerance,
            clock,
            inbox: Arc::default(),
        })
    }

    /// Verifies, de-duplicates and records a message for `source`; processing happens after.
    pub(crate) fn receive(
        &self,
        source: &str,
        webhook_id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Received, ApiError> {
        let secrets = self
            .sources
            .get(source)
            .ok_or_else(|| ApiError::from(DomainError::not_found("webhook source", source)))?;
        let (Some(webhook_id), Some(timestamp), Some(signature)) =
            (webhook_id, timestamp, signature)
        else {
            return Err(ApiError::new(
                &kind::UNAUTHENTICATED,
                "the request is not signed: send webhook-id, webhook-timestamp and webhook-signature",
            ));
        };
        let timestamp: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| FieldViolation::new("webhook-timestamp", "must be Unix seconds"))?;
        let now = self.clock.now();
        let tolerance = self.tolerance.as_secs() as i64;
        if now.unix().abs_diff(timestamp) > tolerance.unsigned_abs() {
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
        let mut inbox = self.inbox();
        let key = (source.to_owned(), webhook_id.to_owned());
        if inbox.seen.contains_key(&key) {
            let known = inbox
                .messages
                .iter()
                .find(|m| m.source == source && m.webhook_id == webhook_id)
                .map_or_else(String::new, |m| m.id.clone());
            return Ok(Received::Duplicate(known));
        }
        if inbox.seen.len() >= MAX_LOG {
            // A message older than the tolerance is refused before it gets here, so its id no
            // longer needs remembering.
            let now = now.unix();
            inbox
                .seen
                .retain(|_, seen| now.abs_diff(*seen) <= tolerance.unsigned_abs());
        }
        inbox.seen.insert(key, timestamp);
        inbox.total += 1;
        let id = format!("in_{}", inbox.total);
        if inbox.messages.len() >= MAX_LOG {
            inbox.messages.pop_front();
        }
        inbox.messages.push_back(InboundMessage {
            id: id.clone(),
            source: source.to_owned(),
            webhook_id: webhook_id.to_owned(),
            timestamp,
            received_at: now.wall,
            event_type: None,
            body,
            state: InboundState::Received,
        });
        drop(inbox);
        // Answer now; process after.
        let inbox = Arc::clone(&self.inbox);
        let processing = id.clone();
        tokio::spawn(async move { process(&inbox, &processing) });
        Ok(Received::Accepted(id))
    }

    /// Received messages, newest first, for a caller who may manage webhooks
    /// ([`super::endpoints::admit`]). Receiving itself needs no principal: the signature is the
    /// credential.
    pub(crate) fn inbound(&self, who: &Principal) -> Result<Vec<InboundMessage>, ApiError> {
        admit(who)?;
        Ok(self.inbox().messages.iter().rev().cloned().collect())
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }
}

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    // Every mutation completes before the guard drops; a panic cannot leave half a change.
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

fn process(inbox: &Mutex<Inbox>, id: &str) {
    let mut inbox = lock(inbox);
    let Some(message) = inbox.messages.iter_mut().find(|m| m.id == id) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::clock::SystemClock;

    #[test]
    fn a_source_whose_secret_is_not_a_whsec_secret_is_refused_naming_the_setting() {
        let mut config = InboundConfig::default();
        config.sources.insert(
            "billing".into(),
            vec![
                crate::config::DEMO_INBOUND_SECRET.into(),
                "whsec_short".into(),
            ],
        );
        let refused = Receiver::new(&config, Arc::new(SystemClock)).err();
        assert_eq!(
            refused.as_deref(),
            Some(
                "webhooks.inbound.sources.billing: secrets are whsec_ + base64 of at least 16 bytes"
            )
        );
    }
}
