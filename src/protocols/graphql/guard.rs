//! The bounds and checks every GraphQL request meets, over HTTP (GET and POST) and over
//! `/graphql/ws` alike, in the two extensions that see every request:
//!
//! - [`Limits`], the outermost extension, before Automatic Persisted Queries: a query text
//!   longer than `graphql.max_document_bytes` is refused before anything parses (or persists)
//!   it; and every answer lists at most `graphql.max_errors` errors, the rest replaced by one
//!   error saying how many were left off. It also gives errors async-graphql raised by itself
//!   (syntax, validation, a persisted-query miss) their row of the error table and the trace id,
//!   so they look like every other error.
//! - [`Rules`], applied by the document cache's extension ([`super::cache`]) to every parsed
//!   document, cached or not, persisted or not: GET runs queries only (a persisted mutation
//!   cannot slip through a GET either); introspection, when switched off, is refused with a
//!   clear error (async-graphql would quietly answer null); and the document's cost
//!   ([`super::cost`]) is within `graphql.max_complexity`.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextRequest, NextSubscribe,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{Request, Response, ServerError, ServerResult, Variables};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::cost::Pricing;
use crate::gateway::error::graphql::{request_error, to_graphql};
use crate::gateway::error::{ApiError, ProblemKind, kind};
use crate::gateway::trace::TraceId;

/// Request data marking a request that came with GET.
pub struct ViaGet;

/// What the guard knows of the server and the request.
pub struct Rules {
    /// Whether introspection is allowed (`graphql.introspection`).
    pub introspection: bool,
    /// The cost model and its bound (`graphql.max_complexity`).
    pub pricing: Pricing,
}

impl Rules {
    /// `document` if the rules allow it; a GET that carries a mutation or subscription gets the
    /// table's `method-not-allowed` (the HTTP layer answers 405 with `Allow: POST`), and a
    /// document over the cost bound `query-invalid`.
    pub fn check(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
        via_get: bool,
        trace_id: Option<&TraceId>,
    ) -> Result<(), ServerError> {
        if via_get
            && document
                .operations
                .iter()
                .any(|(_, op)| op.node.ty != OperationType::Query)
        {
            let refusal = ApiError::new(
                &kind::METHOD_NOT_ALLOWED,
                "only queries may be sent with GET; send mutations with POST",
            );
            return Err(request_error(&refusal, trace_id));
        }
        if !self.introspection {
            for (_, operation) in document.operations.iter() {
                for selection in &operation.node.selection_set.node.items {
                    if let Selection::Field(field) = &selection.node
                        && matches!(field.node.name.node.as_str(), "__schema" | "__type")
                    {
                        return Err(ServerError::new(
                            "introspection is switched off on this server (graphql.introspection)",
                            Some(field.pos),
                        ));
                    }
                }
            }
        }
        if let Err(refusal) = self.pricing.price(document, variables) {
            let refusal = ApiError::new(&kind::QUERY_INVALID, refusal.to_string());
            return Err(request_error(&refusal, trace_id));
        }
        Ok(())
    }
}

/// The row of a guard's refusal that HTTP answers with its own status (405 for a mutation sent
/// with GET, 413 for a document over `graphql.max_document_bytes`) rather than as a GraphQL
/// request error.
pub fn http_refusal(error: &ServerError) -> Option<&'static ProblemKind> {
    let code = error.extensions.as_ref()?.get("code")?;
    [&kind::METHOD_NOT_ALLOWED, &kind::PAYLOAD_TOO_LARGE]
        .into_iter()
        .find(|row| *code == async_graphql::Value::from(row.graphql))
}

/// The outermost extension's factory: the document size and the error count.
pub struct Limits {
    /// The longest query text accepted, in bytes (`graphql.max_document_bytes`).
    pub max_document_bytes: usize,
    /// The most errors one answer lists (`graphql.max_errors`).
    pub max_errors: usize,
}

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(LimitsPerRequest {
            max_document_bytes: self.max_document_bytes,
            max_errors: self.max_errors,
            trace_id: Mutex::new(None),
        })
    }
}

struct LimitsPerRequest {
    max_document_bytes: usize,
    max_errors: usize,
    /// The request's trace id, once the request is known, for the errors of its answer.
    trace_id: Mutex<Option<TraceId>>,
}

#[async_trait::async_trait]
impl Extension for LimitsPerRequest {
    /// A query or mutation (HTTP, or a non-subscription operation over WebSocket).
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let trace_id = lock(&self.trace_id).clone();
        finish(&mut response.errors, self.max_errors, trace_id.as_ref());
        response
    }

    /// A subscription: each of its answers.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // A WebSocket's trace id is its connection's, in the session data.
        let trace_id = ctx.data_opt::<TraceId>().cloned();
        let max_errors = self.max_errors;
        next.run(ctx, stream)
            .map(move |mut response| {
                finish(&mut response.errors, max_errors, trace_id.as_ref());
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let trace_id = request_data::<TraceId>(ctx, &request).cloned();
        *lock(&self.trace_id) = trace_id.clone();
        let length = request.query.len();
        if length > self.max_document_bytes {
            let refusal = ApiError::new(
                &kind::PAYLOAD_TOO_LARGE,
                format!(
                    "the query document is {length} bytes; this server takes at most {} \
                     (graphql.max_document_bytes)",
                    self.max_document_bytes
                ),
            );
            return Err(request_error(&refusal, trace_id.as_ref()));
        }
        next.run(ctx, request).await
    }
}

/// Gives each error async-graphql raised by itself its row of the table, then keeps the first
/// `max` errors and replaces the others by one that says how many were left off (with the
/// first one's message and row).
pub(super) fn finish(errors: &mut Vec<ServerError>, max: usize, trace_id: Option<&TraceId>) {
    for error in errors.iter_mut() {
        if error
            .extensions
            .as_ref()
            .is_none_or(|e| e.get("code").is_none())
        {
            let row = if error.message == "PersistedQueryNotFound" {
                &kind::PERSISTED_QUERY_NOT_FOUND
            } else {
                &kind::QUERY_INVALID
            };
            let rendered = to_graphql(&ApiError::new(row, error.message.clone()), trace_id);
            error.extensions = rendered.extensions;
        }
    }
    if errors.len() <= max {
        return;
    }
    let left_off = errors.split_off(max);
    let first = &left_off[0];
    let mut summary = ServerError::new(
        format!(
            "{} more errors were left off (graphql.max_errors is {max}); the first of them: {}",
            left_off.len(),
            first.message
        ),
        None,
    );
    summary.extensions = first.extensions.clone();
    errors.push(summary);
}

/// Data of type `T` the request carries (an HTTP request's own), or else its session's (a
/// WebSocket connection's).
pub(super) fn request_data<'a, T: Any + Send + Sync>(
    ctx: &'a ExtensionContext<'_>,
    request: &'a Request,
) -> Option<&'a T> {
    request
        .data
        .get(&TypeId::of::<T>())
        .and_then(|data| data.downcast_ref::<T>())
        .or_else(|| ctx.data_opt::<T>())
}

/// Every critical section here is one assignment or clone, so a poisoned lock still holds
/// whole data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(n: usize) -> Vec<ServerError> {
        (0..n)
            .map(|i| ServerError::new(format!("error {i}"), None))
            .collect()
    }

    #[test]
    fn errors_over_the_cap_are_replaced_by_one_that_counts_them() {
        let mut list = errors(10);
        finish(&mut list, 3, None);
        let messages: Vec<&str> = list.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert_eq!(&messages[..3], ["error 0", "error 1", "error 2"]);
        assert!(
            messages[3].starts_with("7 more errors were left off")
                && messages[3].ends_with("error 3"),
            "{}",
            messages[3]
        );
        let code = list[3].extensions.as_ref().and_then(|e| e.get("code"));
        assert_eq!(
            code,
            Some(&async_graphql::Value::from(kind::QUERY_INVALID.graphql))
        );

        let mut few = errors(3);
        finish(&mut few, 3, None);
        assert_eq!(few.len(), 3);
    }
}
