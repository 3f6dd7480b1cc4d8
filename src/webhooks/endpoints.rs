//! Managing webhooks: registering, changing and removing endpoints, rotating their secrets,
//! sending a test ping, and reading and retrying what was sent to them.
//!
//! An access-checked service, like the domain core: every method takes the caller's
//! [`Principal`] and first asks [`admit`], which applies the rule written in `domain::access`
//! (`Action::ManageWebhooks`: admins only). The check comes before anything else, the lookup
//! included, so a caller who may not manage webhooks is refused (*forbidden*) whatever it asks
//! for: it cannot tell an endpoint that exists from one that does not.
//!
//! URLs pass the SSRF guard when they are registered or changed (and again before every
//! delivery, in `sender`); event types must be ones the domain emits.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;

use super::ids::{DeliveryId, EndpointId};
use super::queue::Delivery;
use super::registry::{Endpoint, EndpointChanges, NewEndpoint, not_found};
use super::signing::Secret;
use super::{Shared, State, ssrf};
use crate::domain::events::EVENT_TYPES;
use crate::domain::{Action, DomainError, FieldViolation, Principal};
use crate::gateway::ApiError;

/// The event type of `POST /v1/webhook-endpoints/{id}/test`.
pub(crate) const PING: &str = "webhook.ping";

/// `Ok` if `who` may manage webhooks (endpoints, deliveries, the inbound log); *forbidden*
/// otherwise.
pub(crate) fn admit(who: &Principal) -> Result<(), ApiError> {
    Ok(who.may(Action::ManageWebhooks)?)
}

/// The management service; every method checks [`admit`] first.
pub(crate) struct Endpoints {
    shared: Arc<Shared>,
}

impl Endpoints {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Registers an endpoint; returns it and its secret (shown only now).
    pub(crate) async fn create(
        &self,
        who: &Principal,
        new: NewEndpoint,
    ) -> Result<(Endpoint, String), ApiError> {
        admit(who)?;
        let url = self.check_url(&new.url).await?;
        check_types(&new.event_types)?;
        let secret = match new.secret {
            Some(text) => Secret::parse(&text).ok_or_else(|| {
                FieldViolation::new(
                    "secret",
                    "must be whsec_ followed by base64 of at least 16 bytes",
                )
            })?,
            None => Secret::generate(),
        };
        let at = self.shared.now().wall;
        let endpoint = self.shared.state().endpoints.register(
            url,
            new.event_types,
            new.description,
            secret.clone(),
            at,
        )?;
        Ok((endpoint, secret.expose()))
    }

    /// Every endpoint.
    pub(crate) fn list(&self, who: &Principal) -> Result<Vec<Endpoint>, ApiError> {
        admit(who)?;
        let state = self.shared.state();
        Ok(state.endpoints.endpoints.values().cloned().collect())
    }

    /// One endpoint.
    pub(crate) fn get(&self, who: &Principal, id: EndpointId) -> Result<Endpoint, ApiError> {
        admit(who)?;
        self.shared.state().endpoints.found(id).cloned()
    }

    /// Applies `changes`; disabling fails the endpoint's pending deliveries.
    pub(crate) async fn update(
        &self,
        who: &Principal,
        id: EndpointId,
        changes: EndpointChanges,
    ) -> Result<Endpoint, ApiError> {
        admit(who)?;
        let url = match &changes.url {
            Some(raw) => Some(self.check_url(raw).await?),
            None => None,
        };
        if let Some(types) = &changes.event_types {
            check_types(types)?;
        }
        let at = self.shared.now().wall;
        let mut state = self.shared.state();
        let State { endpoints, queue } = &mut *state;
        let endpoint = endpoints.found_mut(id)?;
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
            Some(true) => endpoint.enable(),
            Some(false) => {
                endpoint.disable("disabled by request".into(), at);
                queue.fail_pending(id, "the endpoint was disabled", None, at);
            }
            None => {}
        }
        Ok(endpoint.clone())
    }

    /// Removes an endpoint; its pending deliveries fail at once.
    pub(crate) fn delete(&self, who: &Principal, id: EndpointId) -> Result<(), ApiError> {
        admit(who)?;
        let at = self.shared.now().wall;
        let mut state = self.shared.state();
        state
            .endpoints
            .endpoints
            .remove(&id)
            .ok_or_else(|| not_found(id))?;
        state
            .queue
            .fail_pending(id, "the endpoint was deleted", None, at);
        Ok(())
    }

    /// Issues a new secret; the old one keeps signing beside it for the grace period. Returns the
    /// new secret and the end of that period.
    pub(crate) fn rotate_secret(
        &self,
        who: &Principal,
        id: EndpointId,
    ) -> Result<(String, SystemTime), ApiError> {
        admit(who)?;
        let until = self.shared.now().wall + self.shared.config.secret_rotation_grace;
        let mut state = self.shared.state();
        let endpoint = state.endpoints.found_mut(id)?;
        let new = Secret::generate();
        let old = std::mem::replace(&mut endpoint.secret, new.clone());
        endpoint.previous_secret = Some((old, until));
        Ok((new.expose(), until))
    }

    /// Queues a `webhook.ping` to the endpoint; returns the delivery.
    pub(crate) fn test(&self, who: &Principal, id: EndpointId) -> Result<Delivery, ApiError> {
        let endpoint = self.get(who, id)?;
        let body = json!({
            "type": PING,
            "timestamp": crate::wire::timestamp(self.shared.now().wall),
            "data": { "endpoint_id": endpoint.id.to_string() },
        });
        Ok(self
            .shared
            .enqueue(endpoint.id, PING, None, body.to_string()))
    }

    /// The deliveries to one endpoint, newest first.
    pub(crate) fn deliveries(
        &self,
        who: &Principal,
        id: EndpointId,
    ) -> Result<Vec<Delivery>, ApiError> {
        admit(who)?;
        let state = self.shared.state();
        state.endpoints.found(id)?;
        Ok(state.queue.to_endpoint(id))
    }

    /// One delivery.
    pub(crate) fn delivery(&self, who: &Principal, id: DeliveryId) -> Result<Delivery, ApiError> {
        admit(who)?;
        self.shared
            .state()
            .queue
            .get(id)
            .cloned()
            .ok_or_else(|| DomainError::not_found(DeliveryId::RESOURCE, id).into())
    }

    /// Sends a delivery again now, whatever its state (a manual retry), unless it is pending.
    pub(crate) fn retry(&self, who: &Principal, id: DeliveryId) -> Result<Delivery, ApiError> {
        admit(who)?;
        let now = self.shared.now();
        let delivery = self.shared.state().queue.retry(id, now)?;
        self.shared.wake.notify_one();
        Ok(delivery)
    }

    async fn check_url(&self, raw: &str) -> Result<url::Url, ApiError> {
        let url = url::Url::parse(raw)
            .map_err(|e| FieldViolation::new("url", format!("is not a URL: {e}")))?;
        ssrf::check(&url, &self.shared.config.allow_hosts)
            .await
            .map_err(|e| FieldViolation::new("url", e.to_string()))?;
        Ok(url)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhooksConfig;
    use crate::domain::Role;
    use crate::domain::model::CustomerId;
    use crate::gateway::error::kind;
    use crate::webhooks::Receiver;
    use crate::webhooks::clock::SystemClock;
    use crate::webhooks::registry::MAX_ENDPOINTS;

    fn new_endpoint() -> NewEndpoint {
        NewEndpoint {
            url: "http://127.0.0.1:9/hook".into(),
            event_types: vec![],
            description: String::new(),
            secret: None,
        }
    }

    #[tokio::test]
    async fn every_management_call_forbids_a_caller_who_is_not_an_admin_even_for_what_exists() {
        let config = WebhooksConfig::default();
        let receiver = Receiver::new(&config.inbound, Arc::new(SystemClock)).unwrap();
        let endpoints = Endpoints::new(Arc::new(Shared::new(config, Arc::new(SystemClock))));
        let admin = Principal::new("admin", Role::Admin);
        let (endpoint, _) = endpoints.create(&admin, new_endpoint()).await.unwrap();
        let (ep, msg) = (endpoint.id, endpoints.test(&admin, endpoint.id).unwrap().id);
        let refused = [
            Principal::new("r", Role::Readonly),
            Principal::new("c", Role::Customer(CustomerId(1))),
        ];
        for who in &refused {
            let answers = [
                ("create", endpoints.create(who, new_endpoint()).await.err()),
                ("list", endpoints.list(who).err()),
                ("get", endpoints.get(who, ep).err()),
                (
                    "update",
                    endpoints
                        .update(who, ep, EndpointChanges::default())
                        .await
                        .err(),
                ),
                ("delete", endpoints.delete(who, ep).err()),
                ("rotate_secret", endpoints.rotate_secret(who, ep).err()),
                ("test", endpoints.test(who, ep).err()),
                ("deliveries", endpoints.deliveries(who, ep).err()),
                ("delivery", endpoints.delivery(who, msg).err()),
                ("retry", endpoints.retry(who, msg).err()),
                ("inbound", receiver.inbound(who).err()),
            ];
            for (call, answer) in answers {
                let kind = answer.map(|e| e.kind);
                assert_eq!(kind, Some(&kind::FORBIDDEN), "{call} as {}", who.name);
            }
        }
        assert_eq!(endpoints.list(&admin).unwrap().len(), 1, "nothing changed");
        assert_eq!(endpoints.deliveries(&admin, ep).unwrap().len(), 1);
        assert!(receiver.inbound(&admin).is_ok());
    }

    #[tokio::test]
    async fn past_max_endpoints_a_registration_is_refused_and_a_deletion_makes_room() {
        let config = WebhooksConfig::default();
        let endpoints = Endpoints::new(Arc::new(Shared::new(config, Arc::new(SystemClock))));
        let admin = Principal::new("admin", Role::Admin);
        let mut first = None;
        for _ in 0..MAX_ENDPOINTS {
            let (endpoint, _) = endpoints.create(&admin, new_endpoint()).await.unwrap();
            first.get_or_insert(endpoint.id);
        }
        let refused = endpoints.create(&admin, new_endpoint()).await.err();
        assert_eq!(refused.map(|e| e.kind), Some(&kind::INVALID_STATE));
        let count = endpoints.list(&admin).unwrap().len();
        assert_eq!(count, MAX_ENDPOINTS, "nothing added");
        endpoints.delete(&admin, first.unwrap()).unwrap();
        assert!(endpoints.create(&admin, new_endpoint()).await.is_ok());
    }
}
