//! The workshop page: `GET /` and its assets under `GET /ui/...`, compiled into the binary.
//!
//! The page is plain JavaScript modules and CSS (`ui/`), with no build step: what is in the
//! repository is what the browser runs, so a reader can open `ui/feed.js` and see exactly how
//! a browser follows SSE, WebSocket, long polling, a GraphQL subscription and a gRPC-Web stream.
//! GraphiQL's pinned build is vendored under `vendor/graphiql/` (`scripts/vendor-graphiql.sh`
//! fetches it again, with its licences) and served from here too, for `/graphql`'s page.
//!
//! The page and its assets are open (the gate lists `/` and `/ui/`); everything the page does
//! goes through the same guarded API as any client, with the key the user types in. A
//! `Content-Security-Policy` keeps the page to its own origin: no script, style, font or
//! connection may leave it, which is also what makes it work with the network cable pulled.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use crate::gateway::ApiError;
use crate::gateway::error::kind;
use crate::protocols::AppState;

/// The version of the vendored GraphiQL, part of its asset paths so they can be cached for long.
pub const GRAPHIQL_VERSION: &str = "3.8.3";

/// One file the page needs: its path under `/ui/`, media type, bytes.
struct Asset {
    path: &'static str,
    media: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $media:expr, $file:literal;)*) => {
        &[$(Asset { path: $path, media: $media, bytes: include_bytes!($file) }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every asset, by its path under `/ui/`.
const ASSETS: &[Asset] = assets! {
    "style.css" => CSS, "ui/style.css";
    "app.js" => JS, "ui/app.js";
    "api.js" => JS, "ui/api.js";
    "feed.js" => JS, "ui/feed.js";
    "grpcweb.js" => JS, "ui/grpcweb.js";
    "playground.js" => JS, "ui/playground.js";
    "patterns.js" => JS, "ui/patterns.js";
    "chaos.js" => JS, "ui/chaos.js";
    "graphiql.js" => JS, "ui/graphiql.js";
    "graphiql/3.8.3/react.production.min.js" => JS,
        "../../../vendor/graphiql/react.production.min.js";
    "graphiql/3.8.3/react-dom.production.min.js" => JS,
        "../../../vendor/graphiql/react-dom.production.min.js";
    "graphiql/3.8.3/graphiql.min.js" => JS,
        "../../../vendor/graphiql/graphiql.min.js";
    "graphiql/3.8.3/graphiql.min.css" => CSS,
        "../../../vendor/graphiql/graphiql.min.css";
};

/// The page itself.
const INDEX: &str = include_str!("ui/index.html");
/// GraphiQL's page, served by the GraphQL adapter at `GET /graphql` for a browser.
pub const GRAPHIQL_PAGE: &str = include_str!("ui/graphiql.html");

/// Only this origin: scripts, styles, images and connections (fetch, EventSource, WebSocket).
/// GraphiQL's editor sets inline styles, so styles may be inline; scripts may not.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /`, `GET /ui/server.json` and `GET /ui/{*path}`.
pub fn routes(app: &AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/server.json", get(server))
        .route("/ui/{*path}", get(asset))
        .with_state(app.clone())
}

/// What the page must know before it has a key: whether it needs one, and whether the server
/// printed one (dev mode). Nothing more: no key, no names, no counts. The page asks this
/// instead of trying the API without a key, which would answer 401.
async fn server(State(app): State<AppState>) -> Response {
    let auth = &app.gate.auth;
    let mode = if auth.is_off() {
        "off"
    } else if auth.dev_key().is_some() {
        "dev"
    } else {
        "keys"
    };
    let mut response = axum::Json(serde_json::json!({ "auth": mode })).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page with the workshop's security headers.
pub fn page(html: &'static str) -> Response {
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index() -> Response {
    page(INDEX)
}

async fn asset(Path(path): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::new(&kind::ROUTE_NOT_FOUND, format!("no asset /ui/{path}"))
            .into_response();
    };
    // Vendored files carry their version in the path: they never change under it.
    let cache = if path.starts_with("graphiql/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.media)),
            (CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_pages_name_is_served_and_named_once() {
        for page in [INDEX, GRAPHIQL_PAGE] {
            for (at, _) in page.match_indices("/ui/") {
                let rest = &page[at + 4..];
                let name: String = rest
                    .chars()
                    .take_while(|c| !matches!(c, '"' | '\'' | ' ' | '>'))
                    .collect();
                assert!(
                    ASSETS.iter().any(|a| a.path == name),
                    "the page names /ui/{name}, which is not served"
                );
            }
        }
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(
                !ASSETS[i + 1..].iter().any(|b| b.path == a.path),
                "{}",
                a.path
            );
            if a.path.starts_with("graphiql/") {
                assert!(a.path.contains(GRAPHIQL_VERSION), "{}", a.path);
            }
        }
    }
}
