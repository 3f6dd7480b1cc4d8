//! Checks on the parsed document that the schema's own limits do not make: GET runs queries
//! only, and introspection, when switched off, is refused with a clear error (async-graphql
//! would quietly answer null).
//!
//! The document cache's extension runs them on every document, cached or not, after Automatic
//! Persisted Queries have turned a hash back into its text, so a persisted mutation cannot slip
//! through a GET either.

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};

use crate::gateway::error::graphql::request_error;
use crate::gateway::error::{ApiError, kind};
use crate::gateway::trace::TraceId;

/// Request data marking a request that came with GET.
pub struct ViaGet;

/// What the guard knows of the server and the request.
pub struct Rules {
    /// Whether introspection is allowed (`graphql.introspection`).
    pub introspection: bool,
}

impl Rules {
    /// `document` if the rules allow it; a GET that carries a mutation or subscription gets the
    /// table's `method-not-allowed` (the HTTP layer answers 405 with `Allow: POST`).
    pub fn check(
        &self,
        document: &ExecutableDocument,
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
        Ok(())
    }
}

/// Whether `error` is the guard's refusal of a mutation sent with GET.
pub fn is_get_mutation(error: &ServerError) -> bool {
    error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .is_some_and(|code| *code == async_graphql::Value::from(kind::METHOD_NOT_ALLOWED.graphql))
}
