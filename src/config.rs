//! Configuration: the file format, its defaults, and how flags and environment override it.
//!
//! `config/polyport.toml` is the documented default and is embedded in the binary; a test keeps
//! it equal to [`Config::default`]. Every section and field has a default, so a config file
//! written today stays valid as fields are added (config that grows without breaking).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Authentication.
    pub auth: AuthConfig,
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
    /// Rate limiting, per caller.
    pub rate_limit: RateLimitConfig,
    /// HTTPS and mutual TLS (off by default).
    pub tls: TlsConfig,
    /// Faults injected on purpose, for teaching (none by default).
    pub chaos: ChaosConfig,
}

/// `[chaos]`: faults injected on purpose so a room can watch retries, deadlines, idempotent
/// replays and stream resumption work. No rules (the default): nothing is injected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosConfig {
    /// The rules, tried in order; the first that matches a request applies.
    pub rules: Vec<ChaosRule>,
}

/// One `[[chaos.rules]]` entry (also the JSON of `PUT /v1/chaos`): which requests, and what
/// happens to them. Empty matchers match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosRule {
    /// Only these protocols: `rest`, `grpc`, `graphql`, `sse`, `websocket`, `long_poll`.
    pub protocols: Vec<String>,
    /// Only paths starting with this (`/v1/orders`, `/polyport.orders.v1.Orders/GetOrder`).
    pub path_prefix: String,
    /// Only requests carrying this header (a name, or `name=value`).
    pub header: String,
    /// Wait this long before handling the request.
    pub latency_ms: u64,
    /// Answer with this row of the error table (its slug, e.g. `unavailable`) instead.
    pub error: String,
    /// End a streaming response this long after it starts (SSE, gRPC and gRPC-Web streams,
    /// long polls).
    pub drop_after_ms: u64,
}

/// `[tls]`: HTTPS on the same port, and optionally client certificates (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM, leaf first). Empty, with `key_file`: plaintext.
    pub cert_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that sign acceptable client certificates. Empty: none are asked for.
    pub client_ca_file: PathBuf,
    /// Whether a client must present a certificate (when `client_ca_file` is set).
    pub client_auth: ClientAuth,
    /// How long a new connection may take to complete its TLS handshake.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    /// True when a certificate and key are configured, i.e. the port speaks HTTPS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: PathBuf::new(),
            client_auth: ClientAuth::Required,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// `tls.client_auth`: what happens to a client without a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// The handshake fails without a valid client certificate.
    Required,
    /// A client may present no certificate (it is then anonymous); a bad one still fails.
    Optional,
}

/// `[rate_limit]`: how many requests one caller may make (see `gateway::ratelimit`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether requests are limited at all. Off is for load tests; the server warns at start.
    pub enabled: bool,
    /// Which algorithm every policy uses.
    pub algorithm: RateLimitAlgorithm,
    /// The most callers tracked at once, per policy (memory stays bounded).
    pub max_keys: usize,
    /// The policy for authenticated callers, keyed by principal.
    #[serde(deserialize_with = "caller_policy")]
    pub caller: RateLimitPolicyConfig,
    /// The policy for requests without valid credentials, keyed by client IP.
    #[serde(deserialize_with = "anonymous_policy")]
    pub anonymous: RateLimitPolicyConfig,
}

/// The rate-limiting algorithm: `"token_bucket"` or `"sliding_window"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitAlgorithm {
    /// A bucket of `burst` tokens refilled at `refill_per_second`; a request takes one.
    TokenBucket,
    /// At most `limit` requests in any `window`.
    SlidingWindow,
}

/// `[rate_limit.caller]`, `[rate_limit.anonymous]`: one policy, with the parameters of both
/// algorithms (only the selected algorithm's are used). A field left out of a section keeps
/// that policy's own default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicyConfig {
    /// Token bucket: the bucket's size, the most requests in a burst.
    pub burst: u32,
    /// Token bucket: tokens added per second, the sustained rate.
    pub refill_per_second: u32,
    /// Sliding window: the most requests in any `window`.
    pub limit: u32,
    /// Sliding window: the window's length.
    pub window: Duration,
}

/// A policy section as written: every field optional, filled from the policy's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFields {
    burst: Option<u32>,
    refill_per_second: Option<u32>,
    limit: Option<u32>,
    #[serde(default, deserialize_with = "some_duration")]
    window: Option<Duration>,
}

impl PolicyFields {
    fn over(self, default: RateLimitPolicyConfig) -> RateLimitPolicyConfig {
        RateLimitPolicyConfig {
            burst: self.burst.unwrap_or(default.burst),
            refill_per_second: self.refill_per_second.unwrap_or(default.refill_per_second),
            limit: self.limit.unwrap_or(default.limit),
            window: self.window.unwrap_or(default.window),
        }
    }
}

fn caller_policy<'de, D: Deserializer<'de>>(d: D) -> Result<RateLimitPolicyConfig, D::Error> {
    Ok(PolicyFields::deserialize(d)?.over(RateLimitConfig::default().caller))
}

fn anonymous_policy<'de, D: Deserializer<'de>>(d: D) -> Result<RateLimitPolicyConfig, D::Error> {
    Ok(PolicyFields::deserialize(d)?.over(RateLimitConfig::default().anonymous))
}

fn some_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            algorithm: RateLimitAlgorithm::TokenBucket,
            max_keys: 10_000,
            caller: RateLimitPolicyConfig {
                burst: 200,
                refill_per_second: 100,
                limit: 6_000,
                window: Duration::from_secs(60),
            },
            anonymous: RateLimitPolicyConfig {
                burst: 20,
                refill_per_second: 5,
                limit: 300,
                window: Duration::from_secs(60),
            },
        }
    }
}

/// `[auth.tokens]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// The `iss` this server puts in the tokens it issues and requires in every token.
    pub issuer: String,
    /// The `aud` this server puts in the tokens it issues and requires in every token.
    pub audience: String,
    /// The HS256 signing secret (at least 32 bytes); empty means random per process.
    pub hs256_secret: String,
    /// Lifetime of an issued access token.
    #[serde(deserialize_with = "duration")]
    pub access_ttl: Duration,
    /// Lifetime of an issued refresh token (each use replaces it with a fresh one).
    #[serde(deserialize_with = "duration")]
    pub refresh_ttl: Duration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(deserialize_with = "duration")]
    pub leeway: Duration,
    /// PEM public keys (RSA or Ed25519) of other issuers; each file's stem is its `kid`.
    pub public_key_files: Vec<PathBuf>,
    /// A JWKS file of public keys (RSA, Ed25519, P-256, P-384); empty means none.
    pub jwks_file: PathBuf,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            issuer: "polyport".into(),
            audience: "polyport".into(),
            hs256_secret: String::new(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(24 * 60 * 60),
            leeway: Duration::from_secs(5),
            public_key_files: Vec::new(),
            jwks_file: PathBuf::new(),
        }
    }
}

/// One `[[auth.clients]]` entry: an OAuth 2.0 client and the role its tokens carry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The `client_id`.
    pub id: String,
    /// The `client_secret` (at least 16 characters); only its hash is kept in memory.
    pub secret: String,
    /// The role of every token issued to this client: `admin`, `customer` or `readonly`.
    pub role: String,
    /// The customer the tokens are bound to; required when the role is `customer`.
    #[serde(default)]
    pub customer_id: Option<String>,
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
    /// Costliest query accepted: every field (`__typename` too) and directive costs 1, page
    /// sizes multiply what a connection selects.
    pub max_complexity: usize,
    /// Longest query text accepted, in bytes; longer ones are refused before they are parsed.
    pub max_document_bytes: usize,
    /// Most errors one answer lists; the rest are replaced by one error that counts them.
    pub max_errors: usize,
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
            max_document_bytes: 64 * 1024,
            max_errors: 20,
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
    /// Most of them held by one caller (a principal, or a client address; 0: no share).
    pub max_streams_per_caller: usize,
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
            max_streams_per_caller: 1_000,
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
    /// One info-level log line per response.
    pub access_log: bool,
    /// HTTP/1.1: how long a request's headers may take to arrive once its first byte has
    /// (408 and the connection closes after that).
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 with GOAWAY).
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// HTTP/2: how often a connection's peer is pinged; one that does not answer within
    /// `keepalive_timeout` is closed.
    #[serde(deserialize_with = "duration")]
    pub keepalive_interval: Duration,
    /// HTTP/2: how long a ping may go unanswered.
    #[serde(deserialize_with = "duration")]
    pub keepalive_timeout: Duration,
    /// Most connections open at once (0: no cap); past it a new one is closed at once.
    pub max_connections: usize,
    /// Most connections open at once from one client address (0: no cap).
    pub max_connections_per_ip: usize,
    /// Largest request head (request line and every header field), in bytes: 431 beyond.
    pub max_header_bytes: usize,
    /// Largest single header field (name and value), in bytes: 431 beyond.
    pub max_header_field_bytes: usize,
    /// Most requests being handled at once (0: no cap); past it new ones are answered 503 at
    /// once (streams count until their response starts; probes are never refused).
    pub max_requests_in_flight: usize,
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// No authentication at all: every caller is an admin.
    pub insecure_no_auth: bool,
    /// API keys.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Client-certificate common names mapped to principals.
    pub certificates: Vec<CertificateConfig>,
    /// How long a WebSocket client has to authenticate in its first message.
    #[serde(deserialize_with = "duration")]
    pub first_message_timeout: Duration,
    /// JWT access tokens and refresh tokens.
    pub tokens: TokensConfig,
    /// The OAuth 2.0 clients allowed at `POST /v1/auth/token` (`[[auth.clients]]`).
    pub clients: Vec<ClientConfig>,
    /// How long a stream ticket from `POST /v1/stream-tickets` may wait for its one use.
    #[serde(deserialize_with = "duration")]
    pub stream_ticket_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            insecure_no_auth: false,
            api_keys: Vec::new(),
            certificates: Vec::new(),
            first_message_timeout: Duration::from_secs(5),
            tokens: TokensConfig::default(),
            clients: Vec::new(),
            stream_ticket_ttl: Duration::from_secs(10),
        }
    }
}

/// One entry of `[auth] api_keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who it is, for logs.
    pub name: String,
    /// `admin`, `customer` or `readonly`.
    pub role: String,
    /// For `customer`: the customer it is bound to.
    pub customer_id: Option<String>,
    /// The key itself (or give `sha256`).
    pub secret: Option<String>,
    /// The hex SHA-256 of the key (or give `secret`).
    pub sha256: Option<String>,
}

/// One entry of `[auth] certificates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertificateConfig {
    /// The client certificate's subject common name.
    pub common_name: String,
    /// `admin`, `customer` or `readonly`.
    pub role: String,
    /// For `customer`: the customer it is bound to.
    pub customer_id: Option<String>,
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
            access_log: true,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_connections: 20_000,
            max_connections_per_ip: 1_000,
            max_header_bytes: 64 * 1024,
            max_header_field_bytes: 16 * 1024,
            max_requests_in_flight: 1_024,
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
        let tls = &self.tls;
        if tls.cert_file.as_os_str().is_empty() != tls.key_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "tls.cert_file and tls.key_file go together: set both (HTTPS) or neither".into(),
            ));
        }
        if !tls.enabled() && !tls.client_ca_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "tls.client_ca_file needs tls.cert_file and tls.key_file (client certificates \
                 are only asked for over TLS)"
                    .into(),
            ));
        }
        if tls.handshake_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "tls.handshake_timeout must be positive".into(),
            ));
        }
        if self.events.retain == 0 || self.events.subscriber_buffer == 0 {
            return Err(ConfigError::Invalid(
                "events.retain and events.subscriber_buffer must be positive".into(),
            ));
        }
        self.rate_limit.check()?;
        self.auth.check()
    }
}

impl RateLimitConfig {
    /// The largest sliding-window `limit`: the sliding log keeps one timestamp (8 bytes) per
    /// counted request, so a key at its limit holds `limit` of them.
    pub const MAX_WINDOW_LIMIT: u32 = 1_000_000;

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::Invalid(
                "rate_limit.max_keys must be positive".into(),
            ));
        }
        for (name, policy) in [("caller", &self.caller), ("anonymous", &self.anonymous)] {
            if policy.burst == 0 || policy.refill_per_second == 0 {
                return Err(ConfigError::Invalid(format!(
                    "rate_limit.{name}: burst and refill_per_second must be positive \
                     (for less than one request per second use the sliding window)"
                )));
            }
            if !(1..=Self::MAX_WINDOW_LIMIT).contains(&policy.limit) {
                return Err(ConfigError::Invalid(format!(
                    "rate_limit.{name}.limit must be between 1 and {}",
                    Self::MAX_WINDOW_LIMIT
                )));
            }
            if policy.window < Duration::from_secs(1) {
                return Err(ConfigError::Invalid(format!(
                    "rate_limit.{name}.window must be at least 1s (the RateLimit-Policy header \
                     counts whole seconds)"
                )));
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    /// The `[auth]` checks that need no file: key files are read (and refused) when the token
    /// service is built.
    fn check(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        if !t.hs256_secret.is_empty() && t.hs256_secret.len() < 32 {
            return Err(ConfigError::Invalid(
                "auth.tokens.hs256_secret must be at least 32 bytes (or empty for a random one)"
                    .into(),
            ));
        }
        if t.access_ttl.is_zero() || t.refresh_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "auth.tokens.access_ttl and auth.tokens.refresh_ttl must be positive".into(),
            ));
        }
        if t.issuer.is_empty() || t.audience.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.tokens.issuer and auth.tokens.audience must not be empty".into(),
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for client in &self.clients {
            let id = &client.id;
            if id.is_empty() || id.contains(':') {
                return Err(ConfigError::Invalid(format!(
                    "auth.clients: '{id}' is not a client id (not empty, no ':')"
                )));
            }
            if !ids.insert(id) {
                return Err(ConfigError::Invalid(format!(
                    "auth.clients: the id '{id}' appears twice"
                )));
            }
            if client.secret.chars().count() < 16 {
                return Err(ConfigError::Invalid(format!(
                    "auth.clients '{id}': the secret must be at least 16 characters"
                )));
            }
            let role = crate::domain::Role::parse(&client.role, client.customer_id.as_deref())
                .map_err(|why| ConfigError::Invalid(format!("auth.clients '{id}': {why}")))?;
            // `parse` reads an empty customer_id as none; here an empty one is refused too.
            if role.customer().is_some() != client.customer_id.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "auth.clients '{id}': customer_id is required for role customer, and only for it"
                )));
            }
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

    #[test]
    fn rate_limit_policies_are_checked() {
        let cases = [
            ("[rate_limit]\nalgorithm = \"sliding_window\"\n", true),
            ("[rate_limit]\nalgorithm = \"leaky\"\n", false),
            ("[rate_limit]\nmax_keys = 0\n", false),
            ("[rate_limit.caller]\nburst = 0\n", false),
            ("[rate_limit.anonymous]\nrefill_per_second = 0\n", false),
            ("[rate_limit.anonymous]\nlimit = 0\n", false),
            ("[rate_limit.caller]\nlimit = 1000001\n", false),
            ("[rate_limit.caller]\nwindow = \"500ms\"\n", false),
            ("[rate_limit.caller]\nwindow = \"1s\"\n", true),
            ("[rate_limit]\nenabled = false\n", true),
            ("[rate_limit.caller]\nburts = 5\n", false),
        ];
        for (text, ok) in cases {
            assert_eq!(Config::parse(text, "t").is_ok(), ok, "{text}");
        }
    }

    #[test]
    fn a_partial_policy_keeps_that_policys_other_defaults() {
        let config = Config::parse("[rate_limit.anonymous]\nburst = 7\n", "t").unwrap();
        let defaults = RateLimitConfig::default();
        assert_eq!(config.rate_limit.anonymous.burst, 7);
        assert_eq!(
            config.rate_limit.anonymous.refill_per_second,
            defaults.anonymous.refill_per_second
        );
        assert_eq!(config.rate_limit.caller, defaults.caller);
    }

    #[test]
    fn auth_clients_are_checked_at_load() {
        let client = |fields: &str| format!("[[auth.clients]]\nid = \"acme\"\n{fields}\n");
        let good =
            client("secret = \"0123456789abcdef\"\nrole = \"customer\"\ncustomer_id = \"1\"");
        let config = Config::parse(&good, "t").unwrap();
        assert_eq!(config.auth.clients[0].customer_id.as_deref(), Some("1"));
        for bad in [
            client("secret = \"short\"\nrole = \"admin\""),
            client("secret = \"0123456789abcdef\"\nrole = \"customer\""),
            client("secret = \"0123456789abcdef\"\nrole = \"admin\"\ncustomer_id = \"1\""),
            client("secret = \"0123456789abcdef\"\nrole = \"customer\"\ncustomer_id = \"c1\""),
            client("secret = \"0123456789abcdef\"\nrole = \"root\""),
            "[auth.tokens]\nhs256_secret = \"too short\"\n".to_owned(),
        ] {
            assert!(Config::parse(&bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_settings_that_cannot_work_together_are_refused() {
        for text in [
            "[tls]\ncert_file = \"server.pem\"\n",
            "[tls]\nkey_file = \"server-key.pem\"\n",
            "[tls]\nclient_ca_file = \"ca.pem\"\n",
            "[tls]\nclient_auth = \"sometimes\"\n",
            "[tls]\nhandshake_timeout = \"0s\"\n",
        ] {
            assert!(Config::parse(text, "t").is_err(), "accepted: {text}");
        }
        let text =
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"k.pem\"\nclient_auth = \"optional\"\n";
        let tls = Config::parse(text, "t").unwrap().tls;
        assert!(tls.enabled());
        assert_eq!(tls.client_auth, ClientAuth::Optional);
    }
}
