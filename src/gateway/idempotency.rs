//! Idempotency keys, shared by every protocol: a retried write is executed once and its first
//! outcome is replayed.
//!
//! What is stored is the *domain* outcome (the order created, or the domain error), not one
//! protocol's response bytes, and the fingerprint is taken over the parsed command, not the
//! request body. So whitespace or key order in the JSON do not matter, and a key first used over
//! REST can be replayed over gRPC or GraphQL and yields the same order.
//!
//! Rules (Stripe's, and the IETF `Idempotency-Key` draft's):
//! - same key, same request, first one finished -> its outcome again, not executed twice;
//! - same key, same request, first one still running -> "in flight" (HTTP 409), retry later;
//! - same key, different request -> refused (HTTP 422);
//! - keys expire after a TTL (24 h by default).
//!
//! A refused request (invalid, not found, a stale version, an illegal transition) is not
//! recorded: it changed nothing, and the client may fix it and retry with the same key. Only
//! outcomes that changed something are replayed.
//!
//! Keys are scoped per principal: two callers using the same key never see each other's
//! outcome, and one client cannot replay another's response.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use sha2::{Digest, Sha256};

use crate::domain::command::Command;
use crate::domain::{Core, FieldViolation, Principal};
use crate::gateway::error::{ApiError, kind};

/// A client-chosen key (1 to 255 visible ASCII characters; a UUID is typical), and the
/// principal who chose it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    owner: Arc<str>,
    key: String,
}

impl IdempotencyKey {
    /// Parses the key; `field` names where it came from, for the error.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        if (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self {
                owner: Arc::from(""),
                key: raw.to_owned(),
            })
        } else {
            Err(FieldViolation::new(
                field,
                "must be 1 to 255 visible ASCII characters, e.g. a UUID",
            ))
        }
    }
}

impl IdempotencyKey {
    /// The same key, as chosen by `who`: its name and its role (with the customer it is bound
    /// to), so two principals that happen to share a name still never share outcomes.
    pub fn owned_by(self, who: &Principal) -> Self {
        Self {
            owner: Arc::from(format!("{}\u{0}{:?}", who.name, who.role)),
            ..self
        }
    }
}

/// A digest of what a request means: the command's type and its parsed arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Digests `operation` and the `Debug` form of the parsed command. Within one build the
    /// `Debug` form is canonical (fixed field order, no formatting freedom); a store shared by
    /// several versions of the server would use an explicit encoding instead.
    pub fn of(operation: &str, command: &impl std::fmt::Debug) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update(b"\n");
        hasher.update(format!("{command:?}").as_bytes());
        Self(hasher.finalize().into())
    }

    /// The fingerprint of `command`, computed once from the parsed domain command: its type
    /// names the operation, so the same key on another command is a different request.
    pub fn of_command<C: Command>(command: &C) -> Self {
        Self::of(std::any::type_name::<C>(), command)
    }
}

/// What a stored key replays: the output of the command that first used it (only successes
/// are recorded). Each command has its own output type; the store holds any of them.
pub type Recorded = Arc<dyn Any + Send + Sync>;

/// The output of a write, and whether it was replayed rather than executed.
#[derive(Debug)]
pub struct Executed<T> {
    /// What the core returned (now, or the first time).
    pub output: T,
    /// True when this is a replay of an earlier request with the same key.
    pub replayed: bool,
}

impl Idempotency<Recorded> {
    /// Runs `command` on `core` as `who`, once per key of `who` (every time when there is no
    /// key). Every protocol's binding calls this, so the rules are the same everywhere: the
    /// same key with another command is refused, a running one is "in flight", a refused
    /// command is not recorded. `key` is the raw value from the header or metadata.
    pub fn execute<C: Command>(
        self: &Arc<Self>,
        core: &Core,
        who: &Principal,
        key: Option<&str>,
        command: &C,
    ) -> Result<Executed<C::Output>, ApiError> {
        let Some(raw) = key else {
            return Ok(Executed {
                output: command.run(core, who)?,
                replayed: false,
            });
        };
        let key = IdempotencyKey::parse(raw, "Idempotency-Key")?.owned_by(who);
        match self.claim(key, Fingerprint::of_command(command)) {
            Claim::Run(ticket) => {
                // Only a success changed something. A refused request (invalid, not found, a
                // stale version, an illegal transition) did not: the client may fix it and retry
                // with the same key (dropping the ticket frees it).
                let output = command.run(core, who)?;
                ticket.finish(Arc::new(output.clone()));
                Ok(Executed {
                    output,
                    replayed: false,
                })
            }
            // The fingerprint names the command's type, so what was recorded under it is that
            // command's output; anything else would be another request.
            Claim::Replay(recorded) => match recorded.downcast_ref::<C::Output>() {
                Some(output) => Ok(Executed {
                    output: output.clone(),
                    replayed: true,
                }),
                None => Err(reused()),
            },
            Claim::InFlight => Err(ApiError::new(
                &kind::IDEMPOTENCY_IN_FLIGHT,
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )),
            Claim::Mismatch => Err(reused()),
            Claim::Full => Err(ApiError::new(
                &kind::UNAVAILABLE,
                "the server holds its maximum of idempotency keys; retry later",
            )),
        }
    }
}

fn reused() -> ApiError {
    ApiError::new(
        &kind::IDEMPOTENCY_KEY_REUSED,
        "this Idempotency-Key was already used for a different request",
    )
}

/// The answer to "may I run this request?".
pub enum Claim<V: Clone> {
    /// First time: run it and hand the outcome to the ticket.
    Run(Ticket<V>),
    /// Done before: here is the recorded outcome.
    Replay(V),
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    /// The store holds its maximum of keys, even after forgetting expired ones.
    Full,
}

enum Slot<V> {
    InFlight {
        fingerprint: Fingerprint,
        token: u64,
    },
    Done {
        fingerprint: Fingerprint,
        value: V,
        at: Instant,
    },
}

/// The key store. In memory; a shared store (Redis `SET NX` plus a TTL) gives several
/// instances the same guarantees.
pub struct Idempotency<V> {
    slots: DashMap<IdempotencyKey, Slot<V>>,
    ttl: Duration,
    max_keys: usize,
    tokens: std::sync::atomic::AtomicU64,
}

impl<V: Clone> Idempotency<V> {
    /// A store that forgets outcomes after `ttl` and holds at most `max_keys` keys.
    pub fn new(ttl: Duration, max_keys: usize) -> Self {
        Self {
            slots: DashMap::new(),
            ttl,
            max_keys,
            tokens: Default::default(),
        }
    }

    /// Claims `key` for a request with `fingerprint`. Atomic: of two concurrent identical
    /// requests exactly one gets `Run`.
    pub fn claim(self: &Arc<Self>, key: IdempotencyKey, fingerprint: Fingerprint) -> Claim<V> {
        let token = self
            .tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.slots.len() >= self.max_keys && !self.slots.contains_key(&key) {
            // Bounded memory: forget expired outcomes first; refuse new keys if still full.
            self.sweep();
            if self.slots.len() >= self.max_keys {
                return Claim::Full;
            }
        }
        match self.slots.entry(key.clone()) {
            MapEntry::Occupied(mut occupied) => match occupied.get() {
                Slot::Done { at, .. } if at.elapsed() >= self.ttl => {
                    occupied.insert(Slot::InFlight { fingerprint, token });
                    Claim::Run(self.ticket(key, token))
                }
                Slot::Done {
                    fingerprint: seen, ..
                }
                | Slot::InFlight {
                    fingerprint: seen, ..
                } if *seen != fingerprint => Claim::Mismatch,
                Slot::InFlight { .. } => Claim::InFlight,
                Slot::Done { value, .. } => Claim::Replay(value.clone()),
            },
            MapEntry::Vacant(vacant) => {
                vacant.insert(Slot::InFlight { fingerprint, token });
                Claim::Run(self.ticket(key, token))
            }
        }
    }

    fn ticket(self: &Arc<Self>, key: IdempotencyKey, token: u64) -> Ticket<V> {
        Ticket {
            store: Arc::clone(self),
            key,
            token,
            finished: false,
        }
    }

    /// Drops expired outcomes; the server calls it periodically.
    pub fn sweep(&self) {
        self.slots
            .retain(|_, slot| !matches!(slot, Slot::Done { at, .. } if at.elapsed() >= self.ttl));
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Permission to run a claimed request. Record its outcome with [`Ticket::finish`]; a ticket
/// dropped unfinished (the request panicked or its client went away mid-way) frees the key.
pub struct Ticket<V: Clone> {
    store: Arc<Idempotency<V>>,
    key: IdempotencyKey,
    token: u64,
    finished: bool,
}

impl<V: Clone> Ticket<V> {
    /// Records the outcome for replays.
    pub fn finish(mut self, value: V) {
        self.finished = true;
        if let Some(mut slot) = self.store.slots.get_mut(&self.key)
            && let Slot::InFlight { fingerprint, token } = *slot
            && token == self.token
        {
            *slot = Slot::Done {
                fingerprint,
                value,
                at: Instant::now(),
            };
        }
    }
}

impl<V: Clone> Drop for Ticket<V> {
    fn drop(&mut self) {
        if !self.finished {
            self.store.slots.remove_if(
                &self.key,
                |_, slot| matches!(slot, Slot::InFlight { token, .. } if *token == self.token),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::parse(s, "Idempotency-Key").unwrap()
    }

    #[test]
    fn a_finished_request_is_replayed_and_a_different_one_refused() {
        let store = Arc::new(Idempotency::<u32>::new(Duration::from_secs(60), 100));
        let a = Fingerprint::of("create", &1);
        let Claim::Run(ticket) = store.claim(key("k"), a) else {
            panic!("first claim runs")
        };
        assert!(matches!(store.claim(key("k"), a), Claim::InFlight));
        ticket.finish(7);
        assert!(matches!(store.claim(key("k"), a), Claim::Replay(7)));
        assert!(matches!(
            store.claim(key("k"), Fingerprint::of("create", &2)),
            Claim::Mismatch
        ));
    }

    #[test]
    fn an_abandoned_request_frees_its_key() {
        let store = Arc::new(Idempotency::<u32>::new(Duration::from_secs(60), 100));
        let a = Fingerprint::of("create", &1);
        drop(store.claim(key("k"), a));
        assert!(store.is_empty());
        assert!(matches!(store.claim(key("k"), a), Claim::Run(_)));
    }

    #[test]
    fn expired_outcomes_are_forgotten() {
        let store = Arc::new(Idempotency::<u32>::new(Duration::ZERO, 100));
        let a = Fingerprint::of("create", &1);
        let Claim::Run(ticket) = store.claim(key("k"), a) else {
            panic!()
        };
        ticket.finish(1);
        assert!(matches!(
            store.claim(key("k"), Fingerprint::of("other", &1)),
            Claim::Run(_)
        ));
        store.sweep();
    }

    #[test]
    fn a_full_store_refuses_new_keys_but_keeps_answering_known_ones() {
        let store = Arc::new(Idempotency::<u32>::new(Duration::from_secs(60), 1));
        let a = Fingerprint::of("create", &1);
        let Claim::Run(ticket) = store.claim(key("a"), a) else {
            panic!()
        };
        ticket.finish(1);
        assert!(matches!(store.claim(key("b"), a), Claim::Full));
        assert!(matches!(store.claim(key("a"), a), Claim::Replay(1)));
    }

    fn core() -> Core {
        use crate::domain::events::MemoryEventLog;
        use crate::domain::pagination::CursorCodec;
        use crate::domain::store::MemoryStore;
        let store = Arc::new(MemoryStore::new());
        crate::domain::seed::load(store.as_ref(), 0);
        Core::new(
            store,
            Arc::new(MemoryEventLog::new(1_000, 1_000)),
            CursorCodec::new(b"test"),
        )
    }

    #[test]
    fn a_command_runs_once_per_key_and_another_command_on_the_same_key_is_refused() {
        use crate::domain::command::{CancelOrder, CreateOrder};
        use crate::domain::{Expect, NewOrder, Role};
        let (core, store) = (
            core(),
            Arc::new(Idempotency::new(Duration::from_secs(60), 10)),
        );
        let who = Principal::new("test", Role::Admin);
        let create = CreateOrder(NewOrder::parse("1", [("1", 1)]).unwrap());
        let first = store.execute(&core, &who, Some("k"), &create).unwrap();
        let again = store.execute(&core, &who, Some("k"), &create).unwrap();
        assert_eq!((first.replayed, again.replayed), (false, true));
        assert_eq!(first.output, again.output, "the first outcome, replayed");
        // The fingerprint names the command: the same key on a cancel is another request.
        let cancel = CancelOrder {
            id: first.output.id,
            reason: None,
            expect: Expect::Any,
        };
        let error = store.execute(&core, &who, Some("k"), &cancel).unwrap_err();
        assert_eq!(error.kind.slug, "idempotency-key-reused");
        // Another principal's key of the same name is its own.
        let other = Principal::new("other", Role::Admin);
        assert!(
            !store
                .execute(&core, &other, Some("k"), &create)
                .unwrap()
                .replayed
        );
    }

    #[test]
    fn keys_must_be_visible_ascii_of_sane_length() {
        for bad in ["", " ", "a b", "é", &"x".repeat(256)] {
            assert!(
                IdempotencyKey::parse(bad, "Idempotency-Key").is_err(),
                "{bad:?}"
            );
        }
    }
}
