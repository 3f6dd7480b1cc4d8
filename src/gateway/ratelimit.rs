//! Rate limiting, protocol-neutral: how many requests one caller may make, and what to tell it.
//!
//! The request path asks [`RateLimiter::check`] once per request with a [`Policy`] and a key
//! (the principal's name, or the client IP for a request without valid credentials) and gets a
//! [`Decision`]: allowed or not, and the numbers every protocol reports in its own idiom (HTTP
//! headers from [`Decision::header_pairs`], gRPC metadata, GraphQL extensions). This module knows
//! no protocol; the middleware that calls it does.
//!
//! Two algorithms, chosen by `rate_limit.algorithm`:
//!
//! - **Token bucket** (`burst`, `refill_per_second`): a bucket holds up to `burst` tokens and
//!   refills continuously; a request takes one. It allows bursts and a sustained rate. The
//!   bucket is stored as one number, *the instant it will be full again* (the GCRA form of the
//!   token bucket): taking a token moves that instant one refill interval later, and the tokens
//!   left are `(burst × interval − (full_at − now)) / interval`. So a key costs one `u64`, the
//!   arithmetic is exact integer nanoseconds (no float drift), and "is this key idle?" is
//!   `full_at <= now`. The interval is `1s / refill_per_second` rounded *up* to the nanosecond,
//!   so the refill is never faster than configured.
//! - **Sliding window** (`limit`, `window`): at most `limit` requests in *any* `window`, exactly
//!   (not a calendar minute, and not the two-counter approximation). It keeps a log of the
//!   timestamps of the requests it admitted that are still inside the window: 8 bytes per
//!   counted request, at most `limit` per key. The memory is therefore at most
//!   `max_keys × limit × 8` bytes per policy, and in practice 8 bytes per request admitted in
//!   the last window (a caller at 100 requests a second over a 60 s window holds 48 KB). A
//!   request costs amortised O(1) (expired entries leave from the front). That is the price of
//!   exactness; a production system with large windows would use the approximate two-counter
//!   sliding window (two integers per key) and document its error instead.
//!
//! What the numbers mean, for both algorithms (they are [`Decision`]'s fields and the IETF
//! `RateLimit-Policy` / `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-11):
//!
//! | | token bucket | sliding window |
//! |---|---|---|
//! | quota `q` ([`Decision::limit`]) | `burst` | `limit` |
//! | window `w` ([`Decision::window`]) | time to refill an empty bucket: `burst / refill_per_second` | `window` |
//! | remaining `r` | whole tokens left after this request | `limit` − requests in the last `window`, this one included |
//! | reset `t` | time until the bucket is full again | time until the oldest counted request leaves the window, freeing one unit |
//!
//! In both cases a client that spends no more than `r` within `t` seconds is not refused. On a
//! refusal `r` is 0 and `t` equals `Retry-After` (the time until one unit is free), because the
//! draft asks that `Retry-After` not point earlier than the end of the effective window.
//!
//! Exact under concurrency: each key's state lives in a [`DashMap`] and is read, checked and
//! updated under the lock of its shard (`get_mut` / `entry`), so N threads hammering one key
//! admit exactly what the policy allows, no more (the tests prove it with 8 threads).
//!
//! Memory is bounded: each policy tracks at most `rate_limit.max_keys` keys. A key whose quota
//! is whole again carries no information and is dropped by [`RateLimiter::sweep`], which the
//! server calls periodically, and by the limiter itself when a new key finds the table full (at
//! most once a second, so a flood of new keys cannot make every request scan the table). When
//! every slot holds a caller still using its quota, a *new* key is refused (429,
//! `Retry-After: 1`) rather than let through untracked: failing open would let anyone bypass
//! the limit by rotating keys. Known keys keep working. Policies have separate tables, so a
//! flood of anonymous addresses cannot lock out authenticated callers.
//!
//! Simplifications: the state is in memory, per instance; several instances behind a load
//! balancer would share it in Redis (the GCRA form above is one compare-and-set of one number
//! per request, in a small Lua script). Client addresses are used as given; a production gateway groups IPv6 clients by
//! /64 and trusts `X-Forwarded-For` only from known proxies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{RateLimitAlgorithm, RateLimitConfig, RateLimitPolicyConfig};
use crate::gateway::error::whole_seconds;

/// Nanoseconds since the limiter was created: the limiter's clock, in integers.
type Nanos = u64;

const SECOND: Nanos = 1_000_000_000;

/// Which quota a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// An authenticated caller, keyed by principal (`rate_limit.caller`).
    Caller,
    /// A request without valid credentials, keyed by client IP (`rate_limit.anonymous`).
    Anonymous,
}

impl Policy {
    /// The policy's name in the `RateLimit-Policy` and `RateLimit` fields.
    pub fn name(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Anonymous => "anonymous",
        }
    }
}

/// The answer to one [`RateLimiter::check`]: whether the request may go on, and where the
/// caller stands. The meaning of each number per algorithm is in the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// False when rate limiting is switched off: the request is allowed, the numbers are zero
    /// and no header is rendered.
    pub enforced: bool,
    /// Whether the request may go on. When true, one unit of quota was consumed.
    pub allowed: bool,
    /// The policy that decided.
    pub policy: Policy,
    /// The quota: `burst` (token bucket) or `limit` (sliding window).
    pub limit: u64,
    /// The quota's window: the time to refill an empty bucket, or the sliding window.
    pub window: Duration,
    /// Quota units left after this request.
    pub remaining: u64,
    /// Within this time, spending no more than `remaining` is never refused (see the module
    /// documentation); equal to `retry_after` on a refusal.
    pub reset: Duration,
    /// On a refusal, how long until one unit of quota is free again.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// The HTTP response fields, with lower-case names (valid as HTTP/2 and gRPC metadata
    /// keys); empty when rate limiting is off:
    ///
    /// - `RateLimit-Policy: "caller";q=200;w=2` (quota and window, draft-ietf-httpapi-ratelimit-headers);
    /// - `RateLimit: "caller";r=199;t=1` (remaining and reset);
    /// - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, and `X-RateLimit-Reset`, which is
    ///   **delta seconds** (like `t`), not a Unix timestamp as some APIs send;
    /// - on a refusal, `Retry-After` in whole seconds.
    ///
    /// Seconds are rounded up (a client waiting that long is never early); `w` and
    /// `Retry-After` are at least 1.
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        if !self.enforced {
            return Vec::new();
        }
        let name = self.policy.name();
        let window = whole_seconds(self.window);
        let reset = seconds_up(self.reset);
        let mut pairs = vec![
            (
                "ratelimit-policy",
                format!("\"{name}\";q={};w={window}", self.limit),
            ),
            (
                "ratelimit",
                format!("\"{name}\";r={};t={reset}", self.remaining),
            ),
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
        ];
        if let Some(seconds) = self.retry_after_seconds() {
            pairs.push(("retry-after", seconds.to_string()));
        }
        pairs
    }

    /// Sets [`Self::header_pairs`] on `headers`, replacing any of the same name.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for (name, value) in self.header_pairs() {
            // The values are digits, quotes and ASCII names: always valid header values.
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1; `None` when allowed.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after.map(whole_seconds)
    }
}

fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The rate limiter: one table of keys per policy. `Send + Sync`; share it behind an `Arc`.
pub struct RateLimiter {
    enabled: bool,
    caller: Box<dyn KeyTable>,
    anonymous: Box<dyn KeyTable>,
    /// The instant the limiter's clock counts from.
    epoch: Instant,
}

impl RateLimiter {
    /// A limiter for `config`. With `enabled = false` it allows everything and renders no
    /// headers; printing the warning about that is the server's job, at start-up.
    pub fn new(config: &RateLimitConfig) -> Self {
        let table = |policy, settings: &RateLimitPolicyConfig| -> Box<dyn KeyTable> {
            match config.algorithm {
                RateLimitAlgorithm::TokenBucket => Box::new(Table::new(
                    policy,
                    TokenBucket::new(settings),
                    config.max_keys,
                )),
                RateLimitAlgorithm::SlidingWindow => Box::new(Table::new(
                    policy,
                    SlidingWindow::new(settings),
                    config.max_keys,
                )),
            }
        };
        Self {
            enabled: config.enabled,
            caller: table(Policy::Caller, &config.caller),
            anonymous: table(Policy::Anonymous, &config.anonymous),
            epoch: Instant::now(),
        }
    }

    /// Whether requests are limited at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Checks one request by `key` under `policy` now, consuming one unit if it is allowed.
    pub fn check(&self, policy: Policy, key: &str) -> Decision {
        self.check_at(policy, key, Instant::now())
    }

    /// [`Self::check`] at a given instant, for deterministic tests. Instants before the
    /// limiter was created count as its creation.
    pub fn check_at(&self, policy: Policy, key: &str, now: Instant) -> Decision {
        if !self.enabled {
            return Decision {
                enforced: false,
                allowed: true,
                policy,
                limit: 0,
                window: Duration::ZERO,
                remaining: 0,
                reset: Duration::ZERO,
                retry_after: None,
            };
        }
        self.table(policy).check(key, self.nanos(now))
    }

    /// Drops the keys whose quota is whole again (they carry no information) and returns how
    /// many. The server calls it periodically; it also logs a warning if new keys were refused
    /// since the last sweep because a table was full.
    pub fn sweep(&self) -> usize {
        self.sweep_at(Instant::now())
    }

    /// [`Self::sweep`] at a given instant.
    pub fn sweep_at(&self, now: Instant) -> usize {
        let now = self.nanos(now);
        self.caller.sweep(now) + self.anonymous.sweep(now)
    }

    /// How many keys `policy` tracks.
    pub fn tracked(&self, policy: Policy) -> usize {
        self.table(policy).tracked()
    }

    fn table(&self, policy: Policy) -> &dyn KeyTable {
        match policy {
            Policy::Caller => self.caller.as_ref(),
            Policy::Anonymous => self.anonymous.as_ref(),
        }
    }

    fn nanos(&self, now: Instant) -> Nanos {
        Nanos::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(Nanos::MAX)
    }
}

/// One policy's table of keys, whatever its algorithm (so [`RateLimiter`] holds either kind).
trait KeyTable: Send + Sync {
    fn check(&self, key: &str, now: Nanos) -> Decision;
    fn sweep(&self, now: Nanos) -> usize;
    fn tracked(&self) -> usize;
}

/// An algorithm: the state it keeps per key and how one request changes it.
trait Algorithm: Send + Sync + 'static {
    /// One key's state.
    type State: Send + Sync + 'static;
    /// The state of a key never seen: the whole quota available.
    fn fresh(&self) -> Self::State;
    /// Takes one unit at `now` if the quota allows it.
    fn take(&self, state: &mut Self::State, now: Nanos) -> Outcome;
    /// Forgets what no longer counts at `now`; true when the quota is whole again.
    fn settle(&self, state: &mut Self::State, now: Nanos) -> bool;
    /// The advertised quota and its window.
    fn quota(&self) -> (u64, Duration);
}

/// What [`Algorithm::take`] found.
struct Outcome {
    allowed: bool,
    remaining: u64,
    reset: Nanos,
    retry_after: Option<Nanos>,
}

impl Outcome {
    fn allowed(remaining: u64, reset: Nanos) -> Self {
        Self {
            allowed: true,
            remaining,
            reset,
            retry_after: None,
        }
    }

    fn refused(wait: Nanos) -> Self {
        Self {
            allowed: false,
            remaining: 0,
            reset: wait,
            retry_after: Some(wait),
        }
    }
}

/// The token bucket, stored as the instant it will be full again (see the module docs).
struct TokenBucket {
    /// Time to refill one token, rounded up.
    interval: Nanos,
    /// Time to refill an empty bucket: `burst × interval`.
    capacity: Nanos,
    burst: u64,
}

impl TokenBucket {
    fn new(settings: &RateLimitPolicyConfig) -> Self {
        // The configuration guarantees burst >= 1 and refill >= 1, so interval <= 1 s and
        // capacity <= u32::MAX seconds: no overflow.
        let interval = SECOND.div_ceil(u64::from(settings.refill_per_second.max(1)));
        let burst = u64::from(settings.burst.max(1));
        Self {
            interval,
            capacity: burst * interval,
            burst,
        }
    }
}

impl Algorithm for TokenBucket {
    /// The instant the bucket is full again.
    type State = Nanos;

    fn fresh(&self) -> Nanos {
        0
    }

    fn take(&self, full_at: &mut Nanos, now: Nanos) -> Outcome {
        // The tokens missing, measured as the time to refill them.
        let missing = full_at.saturating_sub(now);
        let after = missing + self.interval;
        if after <= self.capacity {
            *full_at = now + after;
            Outcome::allowed((self.capacity - after) / self.interval, after)
        } else {
            // One token is there once `missing` has shrunk to `capacity - interval`.
            Outcome::refused(after - self.capacity)
        }
    }

    fn settle(&self, full_at: &mut Nanos, now: Nanos) -> bool {
        *full_at <= now
    }

    fn quota(&self) -> (u64, Duration) {
        (self.burst, Duration::from_nanos(self.capacity))
    }
}

/// The exact sliding window: a log of the admitted requests still inside the window.
struct SlidingWindow {
    limit: usize,
    window: Nanos,
}

impl SlidingWindow {
    fn new(settings: &RateLimitPolicyConfig) -> Self {
        Self {
            // At most `RateLimitConfig::MAX_WINDOW_LIMIT`, checked with the configuration.
            limit: usize::try_from(settings.limit.max(1)).unwrap_or(usize::MAX),
            window: Nanos::try_from(settings.window.as_nanos()).unwrap_or(Nanos::MAX),
        }
    }

    /// Drops the requests that left the window: one made at `t` counts until `t + window`,
    /// exclusive.
    fn expire(&self, log: &mut VecDeque<Nanos>, now: Nanos) {
        while log
            .front()
            .is_some_and(|&at| at.saturating_add(self.window) <= now)
        {
            log.pop_front();
        }
    }

    /// The time until the oldest counted request leaves the window.
    fn until_oldest_leaves(&self, log: &VecDeque<Nanos>, now: Nanos) -> Nanos {
        log.front()
            .map_or(0, |&at| at.saturating_add(self.window).saturating_sub(now))
    }
}

impl Algorithm for SlidingWindow {
    /// The admission times of the requests inside the window, oldest first.
    type State = VecDeque<Nanos>;

    fn fresh(&self) -> VecDeque<Nanos> {
        VecDeque::new()
    }

    fn take(&self, log: &mut VecDeque<Nanos>, now: Nanos) -> Outcome {
        // A key's clock never goes back: two threads may read the clock in one order and take
        // the lock in the other. Recording the later time keeps the log sorted and only makes
        // the limit (a few nanoseconds) stricter.
        let now = now.max(log.back().copied().unwrap_or(0));
        self.expire(log, now);
        if log.len() < self.limit {
            log.push_back(now);
            let remaining = (self.limit - log.len()) as u64;
            Outcome::allowed(remaining, self.until_oldest_leaves(log, now))
        } else {
            Outcome::refused(self.until_oldest_leaves(log, now))
        }
    }

    fn settle(&self, log: &mut VecDeque<Nanos>, now: Nanos) -> bool {
        self.expire(log, now);
        // A key that once hit its limit keeps that capacity; give most of it back.
        if log.capacity() > 4 * log.len().max(16) {
            log.shrink_to(2 * log.len());
        }
        log.is_empty()
    }

    fn quota(&self) -> (u64, Duration) {
        (self.limit as u64, Duration::from_nanos(self.window))
    }
}

/// One policy's keys and their states.
struct Table<A: Algorithm> {
    policy: Policy,
    algorithm: A,
    states: DashMap<Box<str>, A::State>,
    max_keys: usize,
    /// Keys inserted or about to be; never above `max_keys`, never below `states.len()`.
    reserved: AtomicUsize,
    /// When the table was last swept, so a full table is swept at most once a second.
    last_sweep: AtomicU64,
    /// New keys refused because the table was full, since the last sweep.
    refused: AtomicU64,
}

impl<A: Algorithm> Table<A> {
    fn new(policy: Policy, algorithm: A, max_keys: usize) -> Self {
        Self {
            policy,
            algorithm,
            states: DashMap::new(),
            max_keys,
            reserved: AtomicUsize::new(0),
            last_sweep: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The first request of a key not in the table (or just removed by a sweep).
    fn check_new(&self, key: &str, now: Nanos) -> Outcome {
        if !self.reserve() {
            let last = self.last_sweep.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= SECOND
                && self
                    .last_sweep
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.sweep_keys(now);
            }
            if !self.reserve() {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Outcome::refused(SECOND);
            }
        }
        match self.states.entry(key.into()) {
            // Another thread inserted the key meanwhile: use its state, free our slot.
            Entry::Occupied(mut occupied) => {
                self.reserved.fetch_sub(1, Ordering::Relaxed);
                self.algorithm.take(occupied.get_mut(), now)
            }
            Entry::Vacant(vacant) => {
                let mut state = self.algorithm.fresh();
                let outcome = self.algorithm.take(&mut state, now);
                vacant.insert(state);
                outcome
            }
        }
    }

    /// Takes a slot for a new key if one is free.
    fn reserve(&self) -> bool {
        self.reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    fn sweep_keys(&self, now: Nanos) -> usize {
        let mut dropped = 0;
        self.states.retain(|_, state| {
            let whole = self.algorithm.settle(state, now);
            dropped += usize::from(whole);
            !whole
        });
        self.reserved.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }
}

impl<A: Algorithm> KeyTable for Table<A> {
    fn check(&self, key: &str, now: Nanos) -> Decision {
        // The common case, a known key, needs no allocation. The shard stays locked from read
        // to write, so concurrent checks of one key are serialised.
        let outcome = match self.states.get_mut(key) {
            Some(mut state) => self.algorithm.take(&mut state, now),
            None => self.check_new(key, now),
        };
        let (limit, window) = self.algorithm.quota();
        Decision {
            enforced: true,
            allowed: outcome.allowed,
            policy: self.policy,
            limit,
            window,
            remaining: outcome.remaining,
            reset: Duration::from_nanos(outcome.reset),
            retry_after: outcome.retry_after.map(Duration::from_nanos),
        }
    }

    fn sweep(&self, now: Nanos) -> usize {
        self.last_sweep.fetch_max(now, Ordering::Relaxed);
        let dropped = self.sweep_keys(now);
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if refused > 0 {
            tracing::warn!(
                policy = self.policy.name(),
                refused,
                max_keys = self.max_keys,
                "rate limiter full: new callers were refused; raise rate_limit.max_keys"
            );
        }
        dropped
    }

    fn tracked(&self) -> usize {
        self.states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(algorithm: RateLimitAlgorithm, policy: RateLimitPolicyConfig) -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            algorithm,
            max_keys: 1_000,
            caller: policy.clone(),
            anonymous: policy,
        }
    }

    /// A token bucket of `burst` refilled at `refill` a second.
    fn bucket(burst: u32, refill: u32) -> RateLimiter {
        RateLimiter::new(&config(
            RateLimitAlgorithm::TokenBucket,
            RateLimitPolicyConfig {
                burst,
                refill_per_second: refill,
                limit: 1,
                window: Duration::from_secs(1),
            },
        ))
    }

    /// A sliding window of `limit` requests per `window`.
    fn window(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter::new(&config(
            RateLimitAlgorithm::SlidingWindow,
            RateLimitPolicyConfig {
                burst: 1,
                refill_per_second: 1,
                limit,
                window,
            },
        ))
    }

    /// Checks `n` requests by `key` at `now`, returning how many were allowed.
    fn admitted(limiter: &RateLimiter, key: &str, now: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| limiter.check_at(Policy::Caller, key, now).allowed)
            .count()
    }

    #[test]
    fn a_full_quota_is_admitted_at_once_and_the_next_request_refused() {
        // (limiter, quota)
        let cases = [
            (bucket(5, 1), 5),
            (bucket(200, 100), 200),
            (window(3, Duration::from_secs(10)), 3),
            (window(6_000, Duration::from_secs(60)), 6_000),
        ];
        for (limiter, quota) in cases {
            let now = Instant::now();
            for i in 0..quota {
                let decision = limiter.check_at(Policy::Caller, "k", now);
                assert!(decision.allowed, "request {i} of {quota}");
                assert_eq!(decision.remaining, quota as u64 - 1 - i as u64);
            }
            let refused = limiter.check_at(Policy::Caller, "k", now);
            assert!(!refused.allowed && refused.remaining == 0, "{refused:?}");
            assert!(refused.retry_after.is_some());
            // Another key has its own quota.
            assert!(limiter.check_at(Policy::Caller, "other", now).allowed);
        }
    }

    #[test]
    fn a_token_bucket_refills_continuously_and_retry_after_is_exact() {
        let limiter = bucket(4, 2); // a token every 500 ms
        let t0 = Instant::now();
        assert_eq!(admitted(&limiter, "k", t0, 10), 4);
        let refused = limiter.check_at(Policy::Caller, "k", t0);
        assert_eq!(refused.retry_after, Some(500 * MS));
        assert_eq!(refused.reset, 500 * MS, "t equals Retry-After on a refusal");
        // 1 ns early is still too early; on time, exactly one token is there.
        let early = t0 + 500 * MS - Duration::from_nanos(1);
        assert_eq!(
            limiter.check_at(Policy::Caller, "k", early).retry_after,
            Some(Duration::from_nanos(1))
        );
        assert_eq!(admitted(&limiter, "k", t0 + 500 * MS, 5), 1);
        // 1.25 s later: 2.5 tokens refilled, 2 whole ones usable.
        assert_eq!(admitted(&limiter, "k", t0 + 1750 * MS, 5), 2);
        // After the full refill time the whole burst is back, and no more.
        assert_eq!(admitted(&limiter, "k", t0 + 60_000 * MS, 10), 4);
    }

    #[test]
    fn a_token_bucket_reports_whole_tokens_left_and_the_time_until_full() {
        let limiter = bucket(10, 4); // a token every 250 ms, full in 2.5 s
        let t0 = Instant::now();
        let first = limiter.check_at(Policy::Caller, "k", t0);
        assert_eq!((first.limit, first.window), (10, 2500 * MS));
        assert_eq!((first.remaining, first.reset), (9, 250 * MS));
        assert_eq!(admitted(&limiter, "k", t0, 2), 2);
        // 3 tokens out; 100 ms later 0.4 came back (7.4 left), and this request takes one:
        // 6.4 left, 6 whole, full in 900 ms.
        let later = limiter.check_at(Policy::Caller, "k", t0 + 100 * MS);
        assert_eq!((later.remaining, later.reset), (6, 900 * MS));
    }

    #[test]
    fn a_sliding_window_frees_a_request_exactly_window_after_it() {
        let limiter = window(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(limiter.check_at(Policy::Caller, "k", at(0)).allowed);
        let second = limiter.check_at(Policy::Caller, "k", at(4_000));
        assert_eq!((second.remaining, second.reset), (1, 6_000 * MS));
        assert!(limiter.check_at(Policy::Caller, "k", at(5_000)).allowed);
        let refused = limiter.check_at(Policy::Caller, "k", at(9_999));
        assert_eq!(refused.retry_after, Some(MS));
        assert_eq!(refused.reset, MS);
        let just_before = t0 + 10_000 * MS - Duration::from_nanos(1);
        assert!(!limiter.check_at(Policy::Caller, "k", just_before).allowed);
        // At exactly W the first request no longer counts: one, and only one, more.
        assert_eq!(admitted(&limiter, "k", at(10_000), 3), 1);
        // The window slides: at 14 s the request of 4 s has left too.
        assert_eq!(admitted(&limiter, "k", at(14_000), 3), 1);
        assert_eq!(admitted(&limiter, "k", at(14_999), 3), 0);
        assert_eq!(admitted(&limiter, "k", at(15_000), 3), 1);
    }

    #[test]
    fn a_sliding_window_never_lets_a_key_s_clock_go_back() {
        let limiter = window(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(
            limiter
                .check_at(Policy::Caller, "k", t0 + 5_000 * MS)
                .allowed
        );
        // A thread that read the clock earlier but got the lock later counts as "now".
        assert!(limiter.check_at(Policy::Caller, "k", t0).allowed);
        assert!(
            !limiter
                .check_at(Policy::Caller, "k", t0 + 14_999 * MS)
                .allowed
        );
        assert_eq!(admitted(&limiter, "k", t0 + 15_000 * MS, 3), 2);
    }

    fn headers(decision: &Decision) -> Vec<(&'static str, String)> {
        decision.header_pairs()
    }

    fn pairs(expected: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        expected
            .iter()
            .map(|(n, v)| (*n, (*v).to_owned()))
            .collect()
    }

    #[test]
    fn headers_follow_the_ietf_draft_for_both_algorithms() {
        let t0 = Instant::now();
        // Token bucket: q = burst, w = time to refill it (3 / 2 per s = 1.5 s, rounded up).
        let limiter = bucket(3, 2);
        let first = limiter.check_at(Policy::Caller, "k", t0);
        assert_eq!(
            headers(&first),
            pairs(&[
                ("ratelimit-policy", "\"caller\";q=3;w=2"),
                ("ratelimit", "\"caller\";r=2;t=1"),
                ("x-ratelimit-limit", "3"),
                ("x-ratelimit-remaining", "2"),
                ("x-ratelimit-reset", "1"),
            ])
        );
        assert_eq!(admitted(&limiter, "k", t0, 2), 2);
        let refused = limiter.check_at(Policy::Caller, "k", t0 + 100 * MS);
        assert_eq!(
            headers(&refused),
            pairs(&[
                ("ratelimit-policy", "\"caller\";q=3;w=2"),
                ("ratelimit", "\"caller\";r=0;t=1"),
                ("x-ratelimit-limit", "3"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1"),
                ("retry-after", "1"),
            ])
        );

        // Sliding window: q = limit, w = window; t = until the oldest request leaves.
        let limiter = window(2, Duration::from_secs(60));
        let anonymous = limiter.check_at(Policy::Anonymous, "192.0.2.1", t0);
        assert_eq!(
            headers(&anonymous),
            pairs(&[
                ("ratelimit-policy", "\"anonymous\";q=2;w=60"),
                ("ratelimit", "\"anonymous\";r=1;t=60"),
                ("x-ratelimit-limit", "2"),
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset", "60"),
            ])
        );
        limiter.check_at(Policy::Anonymous, "192.0.2.1", t0 + 20_000 * MS);
        let refused = limiter.check_at(Policy::Anonymous, "192.0.2.1", t0 + 30_500 * MS);
        assert_eq!(refused.retry_after_seconds(), Some(30));
        assert_eq!(
            headers(&refused)[1..],
            pairs(&[
                ("ratelimit", "\"anonymous\";r=0;t=30"),
                ("x-ratelimit-limit", "2"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "30"),
                ("retry-after", "30"),
            ])[..]
        );

        let mut map = HeaderMap::new();
        refused.apply_to(&mut map);
        assert_eq!(map["RateLimit"], "\"anonymous\";r=0;t=30");
        assert_eq!(map["Retry-After"], "30");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let refused = |wait: Duration| Decision {
            enforced: true,
            allowed: false,
            policy: Policy::Caller,
            limit: 1,
            window: Duration::from_secs(1),
            remaining: 0,
            reset: wait,
            retry_after: Some(wait),
        };
        // (wait, Retry-After)
        let cases = [
            (Duration::from_nanos(1), 1),
            (999 * MS, 1),
            (1000 * MS, 1),
            (1001 * MS, 2),
            (Duration::from_secs(59), 59),
        ];
        for (wait, seconds) in cases {
            assert_eq!(
                refused(wait).retry_after_seconds(),
                Some(seconds),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn a_disabled_limiter_allows_everything_and_sends_no_headers() {
        let mut config = config(
            RateLimitAlgorithm::TokenBucket,
            RateLimitConfig::default().anonymous,
        );
        config.enabled = false;
        let limiter = RateLimiter::new(&config);
        assert!(!limiter.is_enabled());
        let now = Instant::now();
        for _ in 0..1_000 {
            let decision = limiter.check_at(Policy::Anonymous, "k", now);
            assert!(decision.allowed && !decision.enforced);
            assert!(decision.header_pairs().is_empty());
        }
        assert_eq!(limiter.tracked(Policy::Anonymous), 0);
    }

    #[test]
    fn the_sweep_drops_exactly_the_keys_whose_quota_is_whole_again() {
        for limiter in [bucket(2, 1), window(2, Duration::from_secs(1))] {
            let t0 = Instant::now();
            admitted(&limiter, "busy", t0 + 500 * MS, 1);
            admitted(&limiter, "idle", t0, 1);
            admitted(&limiter, "anon", t0, 1);
            limiter.check_at(Policy::Anonymous, "anon", t0);
            assert_eq!(limiter.tracked(Policy::Caller), 3);
            // At 1 s "idle" and both policies' "anon" are whole again; "busy" is not.
            assert_eq!(limiter.sweep_at(t0 + 1_000 * MS), 3);
            assert_eq!(limiter.tracked(Policy::Caller), 1);
            assert_eq!(limiter.tracked(Policy::Anonymous), 0);
            // A swept key starts again from a whole quota.
            assert_eq!(admitted(&limiter, "idle", t0 + 1_000 * MS, 5), 2);
        }
    }

    #[test]
    fn a_full_table_refuses_new_keys_until_old_ones_are_whole_again() {
        let mut config = config(
            RateLimitAlgorithm::TokenBucket,
            RateLimitPolicyConfig {
                burst: 2,
                refill_per_second: 2, // a token every 500 ms
                limit: 1,
                window: Duration::from_secs(1),
            },
        );
        config.max_keys = 2;
        let limiter = RateLimiter::new(&config);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let allowed = |key: &str, ms: u64| limiter.check_at(Policy::Caller, key, at(ms)).allowed;
        assert!(allowed("a", 0) && allowed("b", 0));
        let refused = limiter.check_at(Policy::Caller, "c", at(0));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_seconds(), Some(1));
        // Known keys keep their quota; the other policy has its own table.
        assert!(allowed("a", 0));
        assert!(limiter.check_at(Policy::Anonymous, "c", at(0)).allowed);
        // "b" is whole again at 500 ms ("a" at 1 s), but a full table sweeps itself at most
        // once a second...
        assert!(!allowed("c", 500));
        // ...while the periodic sweep frees slots at once (here "b", and the anonymous "c").
        assert_eq!(limiter.sweep_at(at(500)), 2);
        assert!(allowed("c", 500));
        assert!(!allowed("d", 500));
        // A second after that sweep, a new key sweeps the full table itself.
        assert!(!allowed("d", 1_499));
        assert!(allowed("d", 1_500));
        assert_eq!(limiter.tracked(Policy::Caller), 1);
    }

    /// Runs `threads × per_thread` checks of one key; the clock is `clock(i)` for the i-th
    /// check (in whatever order the threads get there). Returns how many were admitted.
    fn hammer(
        limiter: &RateLimiter,
        threads: usize,
        per_thread: usize,
        clock: impl Fn(u64) -> Instant + Sync,
    ) -> usize {
        let ticks = AtomicU64::new(0);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        (0..per_thread)
                            .filter(|_| {
                                let now = clock(ticks.fetch_add(1, Ordering::Relaxed));
                                limiter.check_at(Policy::Caller, "hot", now).allowed
                            })
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        })
    }

    #[test]
    fn concurrent_callers_on_one_key_are_admitted_exactly_the_quota() {
        for (limiter, quota) in [
            (bucket(200, 100), 200),
            (window(6_000, Duration::from_secs(60)), 6_000),
        ] {
            let t0 = Instant::now();
            assert_eq!(hammer(&limiter, 8, 10_000, |_| t0), quota);
        }
    }

    #[test]
    fn concurrent_callers_with_a_moving_clock_stay_within_the_policy() {
        // 80 000 checks, the clock advancing 25 µs per check: 2 s of traffic.
        let step = Duration::from_micros(25);
        let checks = 8 * 10_000;
        let elapsed = step * (checks - 1);

        let limiter = bucket(200, 100);
        let t0 = Instant::now();
        let admitted = hammer(&limiter, 8, 10_000, |i| t0 + step * i as u32);
        // burst + refill × elapsed = 200 + 100 × 2 s.
        let bound = 200 + (100.0 * elapsed.as_secs_f64()).floor() as usize;
        assert!((1..=bound).contains(&admitted), "{admitted} > {bound}");

        // Sliding window of 300 per 500 ms: any 500 ms holds at most 300, so the run at most
        // 300 × (⌊elapsed / 500 ms⌋ + 1).
        let limiter = window(300, 500 * MS);
        let t0 = Instant::now();
        let admitted = hammer(&limiter, 8, 10_000, |i| t0 + step * i as u32);
        let windows = (elapsed.as_nanos() / (500 * MS).as_nanos()) as usize + 1;
        assert!((1..=300 * windows).contains(&admitted), "{admitted}");
    }
}
