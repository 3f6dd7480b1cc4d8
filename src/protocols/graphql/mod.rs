//! The GraphQL adapter (async-graphql): `POST /graphql` and `GET /graphql` following the
//! GraphQL-over-HTTP specification, GraphiQL in a browser at `GET /graphql`, and subscriptions
//! over WebSocket at `/graphql/ws` (both `graphql-transport-ws` and the legacy `graphql-ws`).
//!
//! Protections (`guard.rs`, `cost.rs`): a bound on the query text's size, a maximum depth and
//! a maximum cost (every field, `__typename` and directive counts; page sizes multiply what a
//! connection selects) reject an expensive query before it is validated or run; an answer lists
//! at most `graphql.max_errors` errors; introspection can be switched off. Automatic Persisted
//! Queries let clients send a hash instead of the query text. The SDL is checked in
//! as `schema.graphql` at the repository root (`polyport graphql-schema` prints it; a test
//! fails when the two differ).

pub mod cache;
pub mod context;
pub mod cost;
pub mod guard;
pub mod loaders;
pub mod query;
pub mod types;
pub mod ws;

use async_graphql::Schema;
use async_graphql::extensions::apollo_persisted_queries::{
    ApolloPersistedQueries, LruCacheStorage,
};
use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::config::GraphqlConfig;
use crate::domain::Principal;
use crate::domain::pagination::PageLimits;
use crate::gateway::ApiError;
use crate::gateway::auth::{AuthError, Caller};
use crate::gateway::error::kind;
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;
use query::{IdempotencyHeader, MutationRoot, QueryRoot, SubscriptionRoot};

/// The schema type.
pub type PolyportSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The GraphQL-over-HTTP media type.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Builds the schema with the configured limits; `app` is available to every resolver.
pub fn schema(app: Option<AppState>, config: &GraphqlConfig) -> PolyportSchema {
    Executors::new(app, config).full
}

/// The schema twice, for two ways through it:
/// - `full`, with every extension: the request guard's limits, Automatic Persisted Queries and
///   the document cache, and async-graphql's strict validation. Every request that is new
///   (its text, operation or variables not validated before), persisted, or refused goes this
///   way, as does every subscription.
/// - `bare`, without extensions, for a request whose text, operation and variables validated
///   on `full` before ([`cache::DocumentCache::validated`], which applies the guard's rules
///   to it again). With no extension async-graphql resolves each field directly: with one, it
///   sends every field through every extension's boxed hook and looks the field up in the
///   registry, about a fifth of the instructions of a small query (callgrind, BENCHMARKS.md).
///   Validation is the `Fast` kind, which still measures depth and complexity; the rest it
///   skips is what the same request passed before on `full`. The guard's error rows and cap
///   are applied by the caller ([`guard::finish`]).
#[derive(Clone)]
pub struct Executors {
    /// Every extension, strict validation.
    pub full: PolyportSchema,
    /// No extension, for requests `documents` has seen validate.
    bare: PolyportSchema,
    documents: cache::DocumentCache,
    max_errors: usize,
}

impl Executors {
    /// Both schemas with the configured limits; `app` is available to every resolver.
    pub fn new(app: Option<AppState>, config: &GraphqlConfig) -> Self {
        // The cost model reads the schema's shape from its SDL, which is that of the bare schema.
        let shape = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
            .finish()
            .sdl();
        let default_page = app
            .as_ref()
            .map_or_else(PageLimits::default, |app| app.page_limits())
            .default;
        let rules = guard::Rules {
            introspection: config.introspection,
            pricing: cost::Pricing::new(&shape, config.max_complexity, default_page),
        };
        let documents = cache::DocumentCache::new(config.document_cache, rules);
        let builder = || {
            let mut builder = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
                .limit_depth(config.max_depth);
            if !config.introspection {
                builder = builder.disable_introspection();
            }
            if let Some(app) = &app {
                builder = builder.data(app.clone());
            }
            builder
        };
        // Extensions run outermost first. The limits come before persisted queries, so a text
        // over graphql.max_document_bytes is never parsed or persisted; the document cache
        // comes after them, so the guard's rules see every document, cached, persisted or
        // neither.
        let full = builder()
            .extension(guard::Limits {
                max_document_bytes: config.max_document_bytes,
                max_errors: config.max_errors,
            })
            .extension(ApolloPersistedQueries::new(LruCacheStorage::new(
                config.persisted_queries,
            )))
            .extension(documents.clone())
            .finish();
        let bare = builder()
            .validation_mode(async_graphql::ValidationMode::Fast)
            .finish();
        Self {
            full,
            bare,
            documents,
            max_errors: config.max_errors,
        }
    }

    /// Runs a query or mutation: on `bare` when its document validated before, else on `full`.
    async fn execute(
        &self,
        mut request: async_graphql::Request,
        via_get: bool,
        trace_id: &TraceId,
    ) -> async_graphql::Response {
        match self.documents.validated(&request, via_get, trace_id) {
            Some(document) => {
                request.set_parsed_query(document);
                let mut response = self.bare.execute(request).await;
                guard::finish(&mut response.errors, self.max_errors, Some(trace_id));
                response
            }
            None => self.full.execute(request).await,
        }
    }
}

/// The SDL of the schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    schema(None, &GraphqlConfig::default()).sdl()
}

#[derive(Clone)]
struct GraphqlState {
    app: AppState,
    schema: Executors,
}

/// `/graphql` and `/graphql/ws`.
pub fn routes(app: &AppState) -> Router {
    let schema = Executors::new(Some(app.clone()), &app.config.graphql);
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        // The GraphQL extractor streams the body itself, past axum's DefaultBodyLimit: enforce
        // server.body_limit_bytes here (413, as on REST).
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            app.config.server.body_limit_bytes,
        ))
        .route("/graphql/ws", get(ws::upgrade))
        .with_state(GraphqlState {
            app: app.clone(),
            schema,
        })
}

/// A request that is not a GraphQL request at all (no query, bad JSON, wrong content type).
impl From<GraphQLRejection> for ApiError {
    fn from(rejection: GraphQLRejection) -> Self {
        use async_graphql::ParseRequestError as E;
        match rejection.0 {
            E::PayloadTooLarge => {
                ApiError::new(&kind::PAYLOAD_TOO_LARGE, "the request body is too large")
            }
            E::InvalidRequest(e) => {
                ApiError::new(&kind::MALFORMED_BODY, format!("not a GraphQL request: {e}"))
            }
            other => ApiError::from(crate::domain::FieldViolation::new(
                "query",
                format!(
                    "not a GraphQL request ({other}); send {{\"query\": ...}} as JSON, or GET /graphql?query=..."
                ),
            )),
        }
    }
}

/// Which media type to answer in, from `Accept` (GraphQL-over-HTTP): the new
/// `application/graphql-response+json` when asked for, `application/json` for clients that ask
/// for JSON (or send no Accept), 406 otherwise.
fn negotiate(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    let accepted: Vec<String> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    if accepted.is_empty() {
        return Ok("application/json");
    }
    for media in &accepted {
        match media.as_str() {
            GRAPHQL_RESPONSE => return Ok(GRAPHQL_RESPONSE),
            "application/json" | "application/*" | "*/*" => return Ok("application/json"),
            _ => {}
        }
    }
    Err(ApiError::new(
        &kind::NOT_ACCEPTABLE,
        "GraphQL answers application/graphql-response+json or application/json",
    ))
}

async fn get_graphql(
    State(state): State<GraphqlState>,
    who: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    uri: http::Uri,
    trace_id: axum::Extension<TraceId>,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Result<Response, ApiError> {
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html && uri.query().is_none() {
        // GraphiQL from the binary (no CDN), sending the key the page is given.
        return Ok(crate::protocols::workshop::page(
            crate::protocols::workshop::GRAPHIQL_PAGE,
        ));
    }
    let who = who.ok_or_else(|| AuthError::Missing.to_api())?.0;
    execute(state, who, &headers, Method::GET, trace_id.0, request?).await
}

async fn post_graphql(
    State(state): State<GraphqlState>,
    Caller(who): Caller,
    headers: HeaderMap,
    trace_id: axum::Extension<TraceId>,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Result<Response, ApiError> {
    execute(state, who, &headers, Method::POST, trace_id.0, request?).await
}

async fn execute(
    state: GraphqlState,
    who: Principal,
    headers: &HeaderMap,
    method: Method,
    trace_id: TraceId,
    request: GraphQLRequest,
) -> Result<Response, ApiError> {
    let media = negotiate(headers)?;
    let mut request = request.into_inner();
    let via_get = method == Method::GET;
    if via_get {
        // Checked by the guard's rules once the document is known, persisted or not.
        request = request.data(guard::ViaGet);
    }
    loaders::insert(&mut request.data, &state.app.core, &who);
    request = request
        .data(IdempotencyHeader(
            headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap_or_default().to_owned()),
        ))
        .data(trace_id.clone())
        .data(who);
    let response = state.schema.execute(request, via_get, &trace_id).await;
    if let Some((error, row)) = response
        .errors
        .iter()
        .find_map(|e| guard::http_refusal(e).map(|row| (e, row)))
    {
        // Refusals HTTP has its own status for: a mutation sent with GET (GET must be safe:
        // mutations and subscriptions only over POST) and a document over
        // graphql.max_document_bytes, answered like a body over server.body_limit_bytes.
        let mut refused = ApiError::new(row, error.message.clone()).into_response();
        if *row == kind::METHOD_NOT_ALLOWED {
            refused
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        return Ok(refused);
    }
    // A request error (it did not parse or validate, or was over a limit) never ran, so its
    // errors have no path and the response has no data entry. The new media type says so with
    // 400; plain application/json keeps 200 for older clients. A persisted-query miss stays
    // 200: clients retry with the query text on that error. Errors from resolvers have a path:
    // the request ran, and that is a 200 whatever the data. (Every error already carries its
    // row of the table and the trace id: `guard::Limits` gave them.)
    let request_error =
        !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    let apq_miss = response
        .errors
        .iter()
        .any(|e| e.message == "PersistedQueryNotFound");
    let status = if media == GRAPHQL_RESPONSE && request_error && !apq_miss {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // Serialized once, straight to text. A request error has no `data` entry at all.
    let body = if request_error {
        #[derive(serde::Serialize)]
        struct RequestError<'a> {
            errors: &'a [async_graphql::ServerError],
            #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
            extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
        }
        serde_json::to_string(&RequestError {
            errors: &response.errors,
            extensions: &response.extensions,
        })
    } else {
        serde_json::to_string(&response)
    }
    .map_err(|e| ApiError::from(crate::domain::DomainError::Internal(e.to_string())))?;
    if method == Method::GET && status == StatusCode::OK && response.errors.is_empty() {
        // A GET query (a persisted one is a short URL) is cacheable: an ETag over the answer,
        // revalidated before use (the data is per user, as REST's orders are).
        use crate::protocols::rest::conditional::{content_etag, not_modified};
        let etag = content_etag(body.as_bytes());
        let mut http = if not_modified(headers, &etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut http = (StatusCode::OK, body).into_response();
            http.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(media));
            http
        };
        let headers = http.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(http::header::ETAG, etag);
        }
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        return Ok(http);
    }
    let mut http = (status, body).into_response();
    http.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media));
    Ok(http)
}
