//! The registered endpoints, as data: what an endpoint is, its status, and the registry that
//! holds them. The access-checked service over it is `endpoints`; the queue and the sender
//! read endpoints from here, so none of them imports another in a circle.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::ids::EndpointId;
use super::signing::Secret;
use crate::domain::DomainError;
use crate::gateway::ApiError;
use crate::gateway::error::kind;

/// The most endpoints that may be registered: each one multiplies every event into a delivery.
pub(crate) const MAX_ENDPOINTS: usize = 100;

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointStatus {
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
pub(crate) struct Endpoint {
    pub(crate) id: EndpointId,
    /// Where deliveries go.
    pub(crate) url: url::Url,
    /// Event types it wants; empty means all.
    pub(crate) event_types: Vec<String>,
    /// Free text.
    pub(crate) description: String,
    pub(crate) status: EndpointStatus,
    pub(crate) created_at: SystemTime,
    pub(super) secret: Secret,
    /// The secret before the last rotation, still signing until the instant given.
    pub(super) previous_secret: Option<(Secret, SystemTime)>,
    /// Failed attempts since the last success, across all its deliveries.
    pub(super) consecutive_failures: u32,
}

impl Endpoint {
    pub(crate) fn is_enabled(&self) -> bool {
        self.status == EndpointStatus::Enabled
    }

    pub(super) fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// The secrets that sign a message sent at `now`: the current one, and the one it replaced
    /// while that is in its grace period.
    pub(crate) fn signing_secrets(&self, now: SystemTime) -> impl Iterator<Item = &Secret> {
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(secret, _)| secret);
        std::iter::once(&self.secret).chain(previous)
    }

    /// Counts a successful attempt: the run of failures is over.
    pub(crate) fn succeeded(&mut self) {
        self.consecutive_failures = 0;
    }

    /// Counts a failed attempt; returns how many have failed in a row.
    pub(crate) fn failed(&mut self) -> u32 {
        self.consecutive_failures += 1;
        self.consecutive_failures
    }

    /// Stops deliveries to it, saying why.
    pub(crate) fn disable(&mut self, reason: String, at: SystemTime) {
        self.status = EndpointStatus::Disabled { reason, at };
    }

    pub(super) fn enable(&mut self) {
        self.status = EndpointStatus::Enabled;
        self.consecutive_failures = 0;
    }
}

/// A request to register an endpoint (`POST`), as the client sent it.
#[derive(Debug)]
pub(crate) struct NewEndpoint {
    /// Checked by the SSRF guard.
    pub(crate) url: String,
    /// Empty means all.
    pub(crate) event_types: Vec<String>,
    pub(crate) description: String,
    /// `whsec_...`, e.g. to match a receiver that already has one; generated when absent.
    pub(crate) secret: Option<String>,
}

/// Changes to an endpoint (`PATCH`).
#[derive(Debug, Default)]
pub(crate) struct EndpointChanges {
    /// A new URL (checked by the SSRF guard).
    pub(crate) url: Option<String>,
    pub(crate) event_types: Option<Vec<String>>,
    pub(crate) description: Option<String>,
    /// `Some(true)` enables (and forgets past failures), `Some(false)` disables.
    pub(crate) enabled: Option<bool>,
}

/// The registered endpoints, by id.
#[derive(Default)]
pub(crate) struct Registry {
    pub(super) endpoints: BTreeMap<EndpointId, Endpoint>,
    pub(super) issued: u64,
}

impl Registry {
    /// Adds an endpoint, unless [`MAX_ENDPOINTS`] are registered already.
    pub(crate) fn register(
        &mut self,
        url: url::Url,
        event_types: Vec<String>,
        description: String,
        secret: Secret,
        at: SystemTime,
    ) -> Result<Endpoint, ApiError> {
        if self.endpoints.len() >= MAX_ENDPOINTS {
            return Err(ApiError::new(
                &kind::INVALID_STATE,
                format!(
                    "at most {MAX_ENDPOINTS} webhook endpoints can be registered; delete one first"
                ),
            ));
        }
        self.issued += 1;
        let endpoint = Endpoint {
            id: EndpointId::issued(self.issued),
            url,
            event_types,
            description,
            status: EndpointStatus::Enabled,
            created_at: at,
            secret,
            previous_secret: None,
            consecutive_failures: 0,
        };
        self.endpoints.insert(endpoint.id, endpoint.clone());
        Ok(endpoint)
    }

    pub(crate) fn get(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: EndpointId) -> Option<&mut Endpoint> {
        self.endpoints.get_mut(&id)
    }

    /// The enabled endpoints that want `event_type`.
    pub(crate) fn wanting(&self, event_type: &str) -> Vec<EndpointId> {
        self.endpoints
            .values()
            .filter(|e| e.is_enabled() && e.wants(event_type))
            .map(|e| e.id)
            .collect()
    }

    pub(super) fn found(&self, id: EndpointId) -> Result<&Endpoint, ApiError> {
        self.get(id).ok_or_else(|| not_found(id))
    }

    pub(super) fn found_mut(&mut self, id: EndpointId) -> Result<&mut Endpoint, ApiError> {
        self.get_mut(id).ok_or_else(|| not_found(id))
    }
}

/// The answer for an endpoint id that names no endpoint.
pub(crate) fn not_found(id: EndpointId) -> ApiError {
    DomainError::not_found(EndpointId::RESOURCE, id).into()
}
