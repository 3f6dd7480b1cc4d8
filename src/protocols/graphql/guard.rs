//! Checks on the parsed document that the schema's own limits do not make: GET runs queries
//! only, and introspection, when switched off, is refused with a clear error (async-graphql
//! would quietly answer null).
//!
//! They run as an async-graphql extension at parse time, after Automatic Persisted Queries have
//! turned a hash back into its text, so a persisted mutation cannot slip through a GET either.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{ServerError, ServerResult, Variables};

/// Request data marking a request that came with GET.
pub struct ViaGet;

/// The error a GET carrying a mutation or subscription gets (the HTTP layer turns it into 405).
pub const GET_MUTATION: &str = "only queries may be sent with GET; send mutations with POST";

/// The extension's factory.
pub struct RequestGuard {
    /// Whether introspection is allowed.
    pub introspection: bool,
}

impl ExtensionFactory for RequestGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Guard {
            introspection: self.introspection,
        })
    }
}

struct Guard {
    introspection: bool,
}

#[async_trait::async_trait]
impl Extension for Guard {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if ctx.data_opt::<ViaGet>().is_some()
            && document
                .operations
                .iter()
                .any(|(_, op)| op.node.ty != OperationType::Query)
        {
            return Err(ServerError::new(GET_MUTATION, None));
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
        Ok(document)
    }
}
