//! The workshop page and GraphiQL over the socket, without a browser: what is open, what stays
//! guarded, and that neither page names anything outside the server. `tests/browser.rs` drives
//! the same pages in Chromium.

mod common;

use common::TestServer;
use polyport::config::Config;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};

/// The JSON `GET path` answers.
async fn json_of(server: &TestServer, path: &str) -> serde_json::Value {
    let response = server.get(path).send().await.expect("request");
    response.json().await.expect("a JSON body")
}

/// Every `src="..."` and `href="..."` of `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            found.push(rest[..rest.find('"').expect("a closing quote")].to_owned());
        }
    }
    found
}

#[tokio::test]
async fn the_page_and_its_assets_are_open_and_the_api_behind_them_is_not() {
    // Dev mode: credentials needed, a key printed at start-up.
    let server = TestServer::with_auth(Config::default()).await;
    let page = server.get("/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = page.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    for reference in references(&html) {
        let Some(path) = reference.strip_prefix("/ui/") else {
            assert!(
                reference.starts_with('#') || reference == "/graphql" || reference == "data:,",
                "the page names {reference}"
            );
            continue;
        };
        let asset = server.get(&format!("/ui/{path}")).send().await.unwrap();
        assert_eq!(asset.status(), 200, "/ui/{path}");
        let media = asset.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(
            media.starts_with(if path.ends_with(".css") {
                "text/css"
            } else {
                "text/javascript"
            }),
            "/ui/{path}: {media}"
        );
    }
    let mode = json_of(&server, "/ui/server.json").await;
    assert_eq!(mode, serde_json::json!({ "auth": "dev" }));

    // The API the page calls is guarded as before.
    for path in ["/v1/orders", "/v1/events"] {
        let refused = server.get(path).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
    }
    let refused = server.post("/v1/stream-tickets").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let missing = server.get("/ui/no-such-file.js").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()[CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn graphiql_comes_from_the_binary_and_names_nothing_outside_the_server() {
    let server = TestServer::with_auth(Config::default()).await;
    let page = server
        .get("/graphql")
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().contains_key(CONTENT_SECURITY_POLICY));
    let html = page.text().await.unwrap();
    let references = references(&html);
    for name in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        assert!(
            references.iter().any(|r| r.ends_with(name)),
            "{name} is not on the page"
        );
    }
    for reference in references {
        if reference == "/" || reference == "data:," {
            continue;
        }
        assert!(
            reference.starts_with("/ui/"),
            "GraphiQL's page names {reference}"
        );
        let asset = server.get(&reference).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{reference}");
        if reference.contains("/graphiql/") {
            // The version is in the path: the browser may keep it.
            assert!(
                asset.headers()[CACHE_CONTROL]
                    .to_str()
                    .unwrap()
                    .contains("immutable")
            );
        }
    }
}

#[tokio::test]
async fn the_page_is_told_whether_it_needs_a_key_and_nothing_more() {
    let mut keyed = Config::default();
    keyed.auth.api_keys = vec![polyport::config::ApiKeyConfig {
        name: "ops".into(),
        role: "admin".into(),
        secret: Some("ops-key-of-the-workshop-tests".into()),
        ..Default::default()
    }];
    for (server, mode) in [
        (TestServer::start().await, "off"),
        (TestServer::with_auth(Config::default()).await, "dev"),
        (TestServer::with_auth(keyed).await, "keys"),
    ] {
        let said = json_of(&server, "/ui/server.json").await;
        assert_eq!(said, serde_json::json!({ "auth": mode }));
    }
}
