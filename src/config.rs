//! Configuration: the file format, its defaults, and how flags and environment override it.
//!
//! `config/polyport.toml` is the documented default and is embedded in the binary; a test keeps
//! it equal to [`Config::default`]. Every section and field has a default, so a config file
//! written today stays valid as fields are added (config that grows without breaking).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The embedded default configuration file.
pub const DEFAULT_FILE: &str = include_str!("../config/polyport.toml");

/// All settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener and HTTP limits.
    pub server: ServerConfig,
    /// Demo data.
    pub data: DataConfig,
    /// The event log.
    pub events: EventsConfig,
    /// List pages.
    pub pagination: PaginationConfig,
    /// Idempotency keys.
    pub idempotency: IdempotencyConfig,
    /// gRPC.
    pub grpc: GrpcConfig,
    /// Server push: SSE, WebSocket, long polling.
    pub push: PushConfig,
    /// GraphQL.
    pub graphql: GraphqlConfig,
    /// Webhooks, sent and received.
    pub webhooks: WebhooksConfig,
}

/// `[webhooks]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Delay before each attempt: the first entry is the first attempt.
    #[serde(deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// How long one delivery request may take.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Consecutive failed attempts after which an endpoint is disabled.
    pub disable_after_failures: u32,
    /// Hosts the SSRF guard lets through although they are not public.
    pub allow_hosts: Vec<String>,
    /// How long a rotated-out secret keeps signing beside the new one.
    #[serde(deserialize_with = "duration")]
    pub secret_rotation_grace: Duration,
    /// Deliveries sent at once.
    pub max_concurrent_deliveries: usize,
    /// Receiving.
    pub inbound: InboundConfig,
}

/// `[webhooks.inbound]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// How far a message's timestamp may be from now.
    #[serde(deserialize_with = "duration")]
    pub tolerance: Duration,
    /// Source name -> its secrets (`whsec_...`; several while rotating).
    pub sources: std::collections::BTreeMap<String, Vec<String>>,
}

/// The secret of the `demo` inbound source in the default configuration: for loopback demos
/// only. Replace it in any real deployment.
pub const DEMO_INBOUND_SECRET: &str = "whsec_cG9seXBvcnQtZGVtby1pbmJvdW5kLXNlY3JldA==";

impl Default for WebhooksConfig {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        Self {
            retry_schedule: vec![
                Duration::ZERO,
                Duration::from_secs(5),
                m(5),
                m(30),
                m(120),
                m(300),
                m(600),
                m(600),
            ],
            request_timeout: Duration::from_secs(15),
            disable_after_failures: 20,
            allow_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            secret_rotation_grace: Duration::from_secs(24 * 60 * 60),
            max_concurrent_deliveries: 16,
            inbound: InboundConfig::default(),
        }
    }
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            tolerance: Duration::from_secs(5 * 60),
            sources: std::collections::BTreeMap::from([(
                "demo".to_owned(),
                vec![DEMO_INBOUND_SECRET.to_owned()],
            )]),
        }
    }
}

/// `[graphql]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlConfig {
    /// Deepest query accepted.
    pub max_depth: usize,
    /// Costliest query accepted (list sizes multiply their children).
    pub max_complexity: usize,
    /// Whether `__schema` / `__type` introspection is answered.
    pub introspection: bool,
    /// How many persisted queries (APQ) are remembered.
    pub persisted_queries: usize,
    /// How many parsed and validated documents are remembered (0: none).
    pub document_cache: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            max_depth: 10,
            max_complexity: 5_000,
            introspection: true,
            persisted_queries: 1_024,
            document_cache: 1_024,
        }
    }
}

/// `[push]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Most streaming connections (SSE, WebSocket, long polls, gRPC streams) at once.
    pub max_streams: usize,
    /// SSE: a keep-alive comment after this much silence.
    #[serde(deserialize_with = "duration")]
    pub sse_keepalive: Duration,
    /// SSE: the reconnection delay suggested to clients (`retry:`).
    #[serde(deserialize_with = "duration")]
    pub sse_retry: Duration,
    /// WebSocket: how often the server pings.
    #[serde(deserialize_with = "duration")]
    pub ws_ping_interval: Duration,
    /// WebSocket: a peer silent this long (no pong, no message) is closed.
    #[serde(deserialize_with = "duration")]
    pub ws_idle_timeout: Duration,
    /// WebSocket: messages queued for one connection before it counts as a slow consumer.
    pub ws_queue: usize,
    /// WebSocket: how long a connection's queue may stay full before it is a slow consumer.
    #[serde(deserialize_with = "duration")]
    pub ws_send_timeout: Duration,
    /// WebSocket: the largest message accepted from a client, in bytes.
    pub ws_max_message_bytes: usize,
    /// WebSocket: each connection's read buffer, in bytes (allocated and zeroed up front, so it
    /// is most of what an idle connection costs; bigger messages are read in several steps).
    pub ws_read_buffer_bytes: usize,
    /// WebSocket: outgoing bytes gathered before a write to the socket, in bytes.
    pub ws_write_buffer_bytes: usize,
    /// Long polling: the wait when the request gives no `timeout`.
    #[serde(deserialize_with = "duration")]
    pub long_poll_timeout: Duration,
    /// Long polling: the longest wait a request may ask for.
    #[serde(deserialize_with = "duration")]
    pub long_poll_max_timeout: Duration,
    /// Long polling: the most events one response carries.
    pub long_poll_max_events: usize,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            max_streams: 10_000,
            sse_keepalive: Duration::from_secs(15),
            sse_retry: Duration::from_secs(3),
            ws_ping_interval: Duration::from_secs(15),
            ws_idle_timeout: Duration::from_secs(45),
            ws_queue: 256,
            ws_send_timeout: Duration::from_secs(2),
            ws_max_message_bytes: 64 * 1024,
            ws_read_buffer_bytes: 1024,
            ws_write_buffer_bytes: 4 * 1024,
            long_poll_timeout: Duration::from_secs(30),
            long_poll_max_timeout: Duration::from_secs(60),
            long_poll_max_events: 100,
        }
    }
}

/// `[grpc]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Largest message received or sent, in bytes.
    pub max_message_bytes: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish at shutdown.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Load demo data at start.
    pub demo: bool,
    /// How many demo orders.
    pub demo_orders: usize,
}

/// `[events]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events retained for resuming.
    pub retain: usize,
    /// Per-subscriber live buffer.
    pub subscriber_buffer: usize,
}

/// `[pagination]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaginationConfig {
    /// Default page size.
    pub default_limit: usize,
    /// Largest page size.
    pub max_limit: usize,
    /// Cursor signing secret; empty means random per process.
    pub cursor_secret: String,
}

/// `[idempotency]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long outcomes are kept.
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// The most keys held at once; new keys beyond it are refused (503) until some expire.
    pub max_keys: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            demo: true,
            demo_orders: 24,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retain: 10_000,
            subscriber_buffer: 1_024,
        }
    }
}

impl Default for PaginationConfig {
    fn default() -> Self {
        Self {
            default_limit: 20,
            max_limit: 100,
            cursor_secret: String::new(),
        }
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 60 * 60),
            max_keys: 100_000,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this format.
    #[error("invalid configuration in {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with its line.
        source: Box<toml::de::Error>,
    },
    /// Values that parse but make no sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses a configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Checks values that are individually well-formed but unusable.
    pub fn check(&self) -> Result<(), ConfigError> {
        let p = &self.pagination;
        if p.max_limit == 0 || !(1..=p.max_limit).contains(&p.default_limit) {
            return Err(ConfigError::Invalid(format!(
                "pagination.default_limit ({}) must be between 1 and pagination.max_limit ({})",
                p.default_limit, p.max_limit
            )));
        }
        if self.server.body_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "server.body_limit_bytes must be positive".into(),
            ));
        }
        if self.webhooks.retry_schedule.is_empty() {
            return Err(ConfigError::Invalid(
                "webhooks.retry_schedule needs at least one entry (the first attempt)".into(),
            ));
        }
        for (name, secrets) in &self.webhooks.inbound.sources {
            if secrets
                .iter()
                .any(|s| crate::webhooks::signing::Secret::parse(s).is_none())
            {
                return Err(ConfigError::Invalid(format!(
                    "webhooks.inbound.sources.{name}: secrets are whsec_ + base64 of at least 16 bytes"
                )));
            }
        }
        let push = &self.push;
        if push.ws_queue == 0
            || push.long_poll_max_events == 0
            || push.max_streams == 0
            || push.ws_read_buffer_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "push.ws_queue, push.long_poll_max_events, push.max_streams and \
                 push.ws_read_buffer_bytes must be positive"
                    .into(),
            ));
        }
        if push.ws_ping_interval.is_zero() || push.sse_keepalive.is_zero() {
            return Err(ConfigError::Invalid(
                "push.ws_ping_interval and push.sse_keepalive must be positive".into(),
            ));
        }
        if self.events.retain == 0 || self.events.subscriber_buffer == 0 {
            return Err(ConfigError::Invalid(
                "events.retain and events.subscriber_buffer must be positive".into(),
            ));
        }
        Ok(())
    }
}

fn durations<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            humantime::parse_duration(text).map_err(|e| {
                serde::de::Error::custom(format!("'{text}' is not a duration like \"5s\": {e}"))
            })
        })
        .collect()
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "'{text}' is not a duration like \"30s\" or \"24h\": {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_default_file_is_the_default() {
        assert_eq!(
            Config::parse(DEFAULT_FILE, "default").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config = Config::parse("[pagination]\nmax_limit = 50\n", "test").unwrap();
        assert_eq!(config.pagination.max_limit, 50);
        assert_eq!(config.server, ServerConfig::default());
    }

    #[test]
    fn typos_and_bad_values_are_refused() {
        assert!(Config::parse("[server]\nadress = \"1.2.3.4:5\"\n", "t").is_err());
        assert!(Config::parse("[idempotency]\nttl = \"forever\"\n", "t").is_err());
        assert!(Config::parse("[pagination]\ndefault_limit = 500\n", "t").is_err());
    }
}
