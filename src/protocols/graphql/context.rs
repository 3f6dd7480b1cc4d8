//! What every resolver needs from its context: the shared state, the caller, and the error
//! table's GraphQL rendering with the request's trace id. Query roots and object types both
//! use it, so neither imports the other for it.

use async_graphql::Context;

use crate::domain::Principal;
use crate::gateway::ApiError;
use crate::gateway::auth::AuthError;
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;

/// An error from the one table, as a GraphQL error (the table's GraphQL rendering, with the
/// request's trace id).
pub fn gql_error(ctx: &Context<'_>, error: impl Into<ApiError>) -> async_graphql::Error {
    crate::gateway::error::graphql::to_graphql(&error.into(), ctx.data_opt::<TraceId>())
}

/// A nullable field that failed: the field is null in `data` and the error is listed beside it
/// (async-graphql would otherwise leave the field out of `data` altogether).
pub(super) fn nullable<T>(ctx: &Context<'_>, result: Result<T, impl Into<ApiError>>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            ctx.add_error(
                ctx.set_error_path(gql_error(ctx, error).into_server_error(ctx.item.pos)),
            );
            None
        }
    }
}

pub(super) fn app<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// The caller. The HTTP handler and the WebSocket's `connection_init` put it in the request
/// data; without one (a wiring mistake) every resolver refuses rather than run as nobody.
pub fn who<'a>(ctx: &Context<'a>) -> Result<&'a Principal, ApiError> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| AuthError::Missing.to_api())
}
