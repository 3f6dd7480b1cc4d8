//! The table's GraphQL rendering: a GraphQL error whose `extensions` carry the table's `code`,
//! the problem `type`, the HTTP `status` REST would give, field `errors`, `retry_after` and the
//! request's `trace_id`. Resolvers and the gate's refusals both use it, so an error looks the
//! same whether the request was refused before or inside the GraphQL adapter.

use async_graphql::indexmap::IndexMap;
use async_graphql::{ErrorExtensions, Name, ServerError, Value};

use super::{ApiError, whole_seconds};
use crate::gateway::trace::TraceId;

/// `error` as a GraphQL error, for a resolver to return.
pub fn to_graphql(error: &ApiError, trace_id: Option<&TraceId>) -> async_graphql::Error {
    async_graphql::Error::new(error.detail.clone()).extend_with(|_, ext| {
        ext.set("code", error.kind.graphql);
        ext.set("type", error.kind.type_uri());
        ext.set("status", error.kind.status.as_u16());
        if let Some(trace_id) = trace_id {
            ext.set("trace_id", trace_id.as_str());
        }
        if let Some(delay) = error.retry_after {
            ext.set("retry_after", whole_seconds(delay));
        }
        if !error.violations.is_empty() {
            let list: Vec<Value> = error
                .violations
                .iter()
                .map(|v| {
                    Value::Object(IndexMap::from([
                        (Name::new("field"), v.field.clone().into()),
                        (Name::new("message"), v.message.clone().into()),
                    ]))
                })
                .collect();
            ext.set("errors", list);
        }
    })
}

/// Gives an error async-graphql raised by itself (a syntax or validation error, a limit, a
/// persisted-query miss) the extensions of the row `kind`, keeping its message and locations.
pub fn stamp(error: &mut ServerError, kind: &'static super::ProblemKind, trace_id: &TraceId) {
    let rendered = to_graphql(&ApiError::new(kind, error.message.clone()), Some(trace_id));
    error.extensions = rendered.extensions;
}

/// `error` as a request error (no path, no location): what a GraphQL response lists when the
/// request was refused before it ran.
pub fn request_error(error: &ApiError, trace_id: Option<&TraceId>) -> ServerError {
    let error = to_graphql(error, trace_id);
    let mut server = ServerError::new(error.message, None);
    server.extensions = error.extensions;
    server
}
