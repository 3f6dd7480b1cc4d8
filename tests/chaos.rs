//! Chaos knobs, black box: an admin injects a fault over the REST API and sees it on every
//! protocol, answered from the one error table; only an admin may; off means off.

mod common;

use std::time::Duration;

use common::TestServer;
use polyport::config::{ApiKeyConfig, ChaosRule, Config};
use polyport::protocols::grpc::pb::GetOrderRequest;
use polyport::protocols::grpc::pb::orders_client::OrdersClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

const ADMIN: &str = "admin-key-of-the-chaos-tests";
const READONLY: &str = "readonly-key-of-the-chaos-tests";

fn config() -> Config {
    let key = |name: &str, role: &str, secret: &str| ApiKeyConfig {
        name: name.into(),
        role: role.into(),
        secret: Some(secret.into()),
        ..Default::default()
    };
    let mut config = Config::default();
    config.auth.api_keys = vec![
        key("root", "admin", ADMIN),
        key("auditor", "readonly", READONLY),
    ];
    config.rate_limit.enabled = false;
    config
}

/// The JSON body of `request`'s answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("request");
    response.json().await.expect("a JSON body")
}

/// `GET /v1/orders/1`, `query { order(id: "1") }` and `GetOrder(1)`, each with `headers`:
/// the REST status and problem type, the GraphQL code and the gRPC code with its reason.
async fn get_order_everywhere(
    server: &TestServer,
    header: Option<(&str, &str)>,
) -> (u16, String, String, Code, String) {
    let with = |request: reqwest::RequestBuilder| match header {
        Some((name, value)) => request.header(name, value),
        None => request,
    };
    let rest = with(server.get("/v1/orders/1").bearer_auth(ADMIN))
        .send()
        .await
        .unwrap();
    let status = rest.status().as_u16();
    let rest: Value = rest.json().await.unwrap();
    let graphql = json_of(
        with(server.post("/graphql").bearer_auth(ADMIN))
            .json(&json!({ "query": r#"{ order(id: "1") { id } }"# })),
    )
    .await;
    let mut client = OrdersClient::new(server.grpc_channel().await);
    let mut request = tonic::Request::new(GetOrderRequest { id: "1".into() });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    if let Some((name, value)) = header {
        request.metadata_mut().insert(
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let (code, reason) = match client.get_order(request).await {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (
            status.code(),
            status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_default(),
        ),
    };
    (
        status,
        rest["type"].as_str().unwrap_or("").to_owned(),
        graphql["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        code,
        reason,
    )
}

#[tokio::test]
async fn an_injected_error_is_the_same_fault_on_rest_graphql_and_grpc_and_only_where_the_rule_says()
{
    let server = TestServer::with_auth(config()).await;
    let set = server
        .client
        .put(server.url("/v1/chaos"))
        .bearer_auth(ADMIN)
        .json(&json!({ "rules": [{ "header": "x-chaos=on", "error": "unavailable" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap()["rules"][0]["error"],
        "unavailable"
    );

    // The table's row, on each protocol: the same answer a real outage would get.
    let row = &polyport::gateway::error::kind::UNAVAILABLE;
    let injected = get_order_everywhere(&server, Some(("x-chaos", "on"))).await;
    assert_eq!(
        injected,
        (
            row.status.as_u16(),
            row.type_uri(),
            row.graphql.to_owned(),
            row.grpc,
            row.slug.to_owned()
        )
    );
    // Requests the rule does not match are served as usual.
    let (status, _, graphql, code, _) =
        get_order_everywhere(&server, Some(("x-chaos", "off"))).await;
    assert_eq!((status, graphql.as_str(), code), (200, "", Code::Ok));

    // Off is off, and the API that turns it off is never itself a victim.
    let off = server
        .delete("/v1/chaos")
        .bearer_auth(ADMIN)
        .header("x-chaos", "on")
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 204);
    let (status, _, _, code, _) = get_order_everywhere(&server, Some(("x-chaos", "on"))).await;
    assert_eq!((status, code), (200, Code::Ok));
}

#[tokio::test]
async fn only_an_admin_may_see_or_set_the_knobs_and_a_bad_rule_changes_nothing() {
    let server = TestServer::with_auth(config()).await;
    for request in [
        server.get("/v1/chaos").bearer_auth(READONLY),
        server
            .client
            .put(server.url("/v1/chaos"))
            .bearer_auth(READONLY)
            .json(&json!({ "rules": [] })),
        server.delete("/v1/chaos").bearer_auth(READONLY),
    ] {
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 403);
    }
    let bad = server
        .client
        .put(server.url("/v1/chaos"))
        .bearer_auth(ADMIN)
        .json(&json!({ "rules": [{ "error": "no-such-row" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["errors"][0]["field"], "rules[0].error", "{bad}");
    let knobs = json_of(server.get("/v1/chaos").bearer_auth(ADMIN)).await;
    assert_eq!(knobs, json!({ "rules": [] }));
}

#[tokio::test]
async fn a_rule_from_the_configuration_drops_event_streams_and_leaves_the_rest_alone() {
    let mut config = config();
    config.chaos.rules = vec![ChaosRule {
        protocols: vec!["sse".into()],
        drop_after_ms: 200,
        ..ChaosRule::default()
    }];
    let server = TestServer::with_auth(config).await;
    let mut stream = server
        .get("/v1/events")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The stream is cut: the body fails instead of waiting forever (bounded wait).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return "ended",
                Err(_) => return "dropped",
            }
        }
    })
    .await
    .expect("the chaos rule dropped the stream");
    assert_eq!(ended, "dropped");
    let rest = server
        .get("/v1/orders/1")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 200);
}
