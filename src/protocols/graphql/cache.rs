//! A cache of parsed and validated GraphQL documents, so a query seen before skips both steps.
//!
//! Why: a profile of the single-order query (callgrind, BENCHMARKS.md) put about a third of the
//! server's instructions in async-graphql's parser and another third in validation; executing
//! the query was the smaller part. Clients send the same few query texts again and again, so the
//! work is remembered:
//! - parsing depends on the query text alone: the parsed document is kept under its text;
//! - validation depends on the document, the operation chosen and the variables (the values of
//!   variables are checked against their arguments), and on the schema and its limits, which
//!   never change while the server runs: a successful result is kept under text + operation
//!   name + variables. Documents that fail to parse or validate are not kept; they are checked
//!   again each time.
//!
//! A request whose text, operation and variables validated before skips more than the two
//! steps: [`DocumentCache::validated`] hands its document to the schema without extensions
//! (`super::Executors`), whose executor resolves each field directly rather than through
//! every extension's hook.
//!
//! Only documents that validated, and whose text is at most [`MAX_CACHED_QUERY_BYTES`], are
//! kept: a parsed document can be a hundred times the size of its text (a flat 1 MiB selection
//! parses into ~100 MiB), so a cache of arbitrary queries would let any caller fill the memory.
//! With the defaults the cache holds at most 1 024 x 2 KiB of text, a few tens of MiB parsed
//! in the worst case.
//!
//! Persisted queries (APQ) are not cached here: APQ keeps them parsed in its own store and hands
//! the document over with an empty text, which cannot tell one from another.
//!
//! It runs as the innermost extension, after Automatic Persisted Queries have turned a hash into
//! its document, and applies the request guard's rules ([`super::guard`]: GET, introspection,
//! the document's cost) to every document, cached or not, before async-graphql's own checks
//! and validation see it. Both maps are bounded (`graphql.document_cache` entries each); when full, the oldest
//! entry is dropped. Simplification: first-in-first-out rather than least-recently-used, which
//! is as good while the set of hot queries fits, and needs no extra crate.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ServerResult, ValidationResult};

use super::guard::{Rules, ViaGet, request_data};
use crate::gateway::trace::TraceId;

/// The longest query text that is cached; longer ones are parsed and validated every time.
pub const MAX_CACHED_QUERY_BYTES: usize = 2048;

/// The extension's factory; holds the shared maps and the guard's rules. A clone shares them.
#[derive(Clone)]
pub struct DocumentCache {
    parsed: Arc<Bounded<Arc<str>, ExecutableDocument>>,
    validated: Arc<Bounded<String, ValidationResult>>,
    rules: Arc<Rules>,
}

impl DocumentCache {
    /// A cache of at most `capacity` documents (and as many validation results), 0 turning it
    /// off, that lets through only the documents `rules` allow.
    pub fn new(capacity: usize, rules: Rules) -> Self {
        Self {
            parsed: Arc::new(Bounded::new(capacity)),
            validated: Arc::new(Bounded::new(capacity)),
            rules: Arc::new(rules),
        }
    }
}

impl DocumentCache {
    /// The parsed document of `request`, when the same text, operation and variables parsed
    /// and validated before and the guard's rules allow it now (for GET with `via_get`): the
    /// request can then run on the schema without extensions (see `super::Executors`). `None`
    /// sends it the whole way: a new text, a persisted query (APQ must see it) or a
    /// refusal, which the full way answers.
    pub fn validated(
        &self,
        request: &Request,
        via_get: bool,
        trace_id: &TraceId,
    ) -> Option<ExecutableDocument> {
        let query = request.query.as_str();
        if query.is_empty()
            || query.len() > MAX_CACHED_QUERY_BYTES
            || request.extensions.contains_key("persistedQuery")
        {
            return None;
        }
        self.validated.get(&validation_key(request))?;
        let document = self.parsed.get(query)?;
        self.rules
            .check(&document, &request.variables, via_get, Some(trace_id))
            .ok()?;
        Some(document)
    }
}

/// What a validation result is kept under: the text, the operation's name and the variables,
/// separated by a byte that cannot occur in any of them (as JSON, for the variables).
fn validation_key(request: &Request) -> String {
    format!(
        "{}\u{0}{}\u{0}{}",
        request.query,
        request.operation_name.as_deref().unwrap_or_default(),
        serde_json::to_string(&request.variables).unwrap_or_default()
    )
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest {
            parsed: Arc::clone(&self.parsed),
            validated: Arc::clone(&self.validated),
            rules: Arc::clone(&self.rules),
            pending: Mutex::new(None),
        })
    }
}

/// One request's view: what to cache once its document has validated.
struct PerRequest {
    parsed: Arc<Bounded<Arc<str>, ExecutableDocument>>,
    validated: Arc<Bounded<String, ValidationResult>>,
    rules: Arc<Rules>,
    pending: Mutex<Option<Pending>>,
}

/// Found at parse time, cached after a successful validation.
struct Pending {
    /// Text, operation and variables: the validation result's key.
    validation_key: String,
    /// The text and its parsed document, when the document was not cached yet.
    parsed: Option<(Arc<str>, ExecutableDocument)>,
}

#[async_trait::async_trait]
impl Extension for PerRequest {
    /// The request with its parsed document: the persisted one, or the cached one, or parsed
    /// now (and noted for caching once it validates), if the guard's rules allow it. Done here,
    /// before async-graphql's own checks and validation, which walk every fragment spread
    /// again: the rules price the document first, in one pass.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let via_get = request_data::<ViaGet>(ctx, &request).is_some();
        let trace_id = request_data::<TraceId>(ctx, &request).cloned();
        let query = request.query.as_str();
        if query.is_empty() {
            // A persisted query: APQ has put its document in the request (without one, this
            // is a parse error, as an empty text should be).
            let variables = std::mem::take(&mut request.variables);
            let checked = request.parsed_query().and_then(|document| {
                self.rules
                    .check(document, &variables, via_get, trace_id.as_ref())
            });
            request.variables = variables;
            checked?;
        } else {
            let cacheable = self.parsed.capacity > 0 && query.len() <= MAX_CACHED_QUERY_BYTES;
            let cached = cacheable.then(|| self.parsed.get(query)).flatten();
            let hit = cached.is_some();
            let document = match cached {
                Some(document) => document,
                None => async_graphql::parser::parse_query(query)?,
            };
            self.rules
                .check(&document, &request.variables, via_get, trace_id.as_ref())?;
            if cacheable {
                let validation_key = validation_key(&request);
                let parsed = (!hit).then(|| (Arc::from(query), document.clone()));
                *lock(&self.pending) = Some(Pending {
                    validation_key,
                    parsed,
                });
            }
            request.set_parsed_query(document);
        }
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let pending = lock(&self.pending).take();
        let Some(pending) = pending else {
            return next.run(ctx).await;
        };
        if let Some(result) = self.validated.get(&pending.validation_key) {
            return Ok(result);
        }
        // Only a document that validated is kept, parsed and with its result.
        let result = next.run(ctx).await?;
        if let Some((text, document)) = pending.parsed {
            self.parsed.insert(text, document);
        }
        self.validated.insert(pending.validation_key, result);
        Ok(result)
    }
}

/// A map of at most `capacity` entries that forgets the oldest when full.
struct Bounded<K, V> {
    capacity: usize,
    inner: Mutex<(HashMap<K, V>, VecDeque<K>)>,
}

impl<K: Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.inner).0.get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = lock(&self.inner);
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), value).is_none() {
            order.push_back(key);
            if order.len() > self.capacity
                && let Some(oldest) = order.pop_front()
            {
                map.remove(&oldest);
            }
        }
    }
}

/// Every critical section here is one map operation, so a poisoned lock still holds whole data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn a_full_cache_forgets_its_oldest_entry() {
        let cache = Bounded::new(2);
        cache.insert("a".to_owned(), 1);
        cache.insert("b".to_owned(), 2);
        cache.insert("c".to_owned(), 3);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), Some(2));
        assert_eq!(cache.get("c"), Some(3));
    }

    #[test]
    fn a_cache_of_capacity_zero_keeps_nothing() {
        let cache = Bounded::new(0);
        cache.insert("a".to_owned(), 1);
        assert_eq!(cache.get("a"), None);
    }
}
