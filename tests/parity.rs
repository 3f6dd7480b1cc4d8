//! The same request gets the same answer on every protocol: the order rules live once, in the
//! domain core, and every adapter only translates. Each test asks REST, gRPC and GraphQL the
//! same thing through real sockets and compares.

mod common;

use common::TestServer;
use polyport::config::Config;
use polyport::protocols::grpc::pb::ListOrdersRequest;
use polyport::protocols::grpc::pb::orders_client::OrdersClient;
use serde_json::{Value, json};

async fn graphql(server: &TestServer, query: &str) -> Value {
    server
        .post("/graphql")
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn grpc_list(server: &TestServer, request: ListOrdersRequest) -> Vec<String> {
    let mut client = OrdersClient::new(server.grpc_channel().await);
    let mut stream = client.list_orders(request).await.unwrap().into_inner();
    let mut ids = Vec::new();
    while let Some(order) = stream.message().await.unwrap() {
        ids.push(order.id);
    }
    ids
}

#[tokio::test]
async fn a_customer_filter_matches_the_same_orders_on_rest_grpc_and_graphql() {
    let server = TestServer::start().await;
    // "1" is a customer; "x" and "0" are ids this server never issued: they name no
    // customer, so they match no order (not an error: ids are opaque).
    for (customer, expect_some) in [("1", true), ("x", false), ("0", false)] {
        let rest: Value = server
            .get(&format!("/v1/orders?customer_id={customer}&limit=100"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rest: Vec<String> = rest["data"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {rest}"))
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        let grpc = grpc_list(
            &server,
            ListOrdersRequest {
                customer_id: customer.into(),
                ..Default::default()
            },
        )
        .await;
        let gql = graphql(
            &server,
            &format!(
                r#"{{ orders(first: 100, filter: {{customerId: "{customer}"}}) {{ totalCount nodes {{ id }} }} }}"#
            ),
        )
        .await;
        assert!(gql.get("errors").is_none(), "{gql}");
        let nodes: Vec<String> = gql["data"]["orders"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(rest, grpc, "customer {customer}: REST and gRPC");
        assert_eq!(rest, nodes, "customer {customer}: REST and GraphQL");
        assert_eq!(gql["data"]["orders"]["totalCount"], json!(rest.len()));
        assert_eq!(
            !rest.is_empty(),
            expect_some,
            "customer {customer}: {rest:?}"
        );
    }
}

#[tokio::test]
async fn a_page_over_the_configured_maximum_is_refused_on_rest_and_graphql_alike() {
    let mut config = Config::default();
    config.pagination.max_limit = 10;
    config.pagination.default_limit = 5;
    let server = TestServer::with_config(config).await;

    let rest = server.get("/v1/orders?limit=11").send().await.unwrap();
    assert_eq!(rest.status(), 400);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["type"], "/problems/validation", "{rest}");
    assert_eq!(rest["errors"][0]["field"], "limit", "{rest}");

    for field in ["first", "last"] {
        let gql = graphql(
            &server,
            &format!("{{ orders({field}: 11) {{ nodes {{ id }} }} }}"),
        )
        .await;
        let error = &gql["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{gql}");
        assert_eq!(error["extensions"]["type"], rest["type"], "{gql}");
        let violation = &error["extensions"]["errors"][0];
        assert_eq!(violation["field"], field, "{gql}");
        assert_eq!(violation["message"], rest["errors"][0]["message"], "{gql}");
    }
    let products = graphql(&server, "{ products(first: 11) { edges { cursor } } }").await;
    assert_eq!(
        products["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{products}"
    );

    // At the maximum every protocol answers a full page; without a size, the default.
    let gql = graphql(
        &server,
        "{ a: orders(first: 10) { nodes { id } } b: orders { nodes { id } } }",
    )
    .await;
    assert_eq!(
        gql["data"]["a"]["nodes"].as_array().unwrap().len(),
        10,
        "{gql}"
    );
    assert_eq!(
        gql["data"]["b"]["nodes"].as_array().unwrap().len(),
        5,
        "{gql}"
    );
}

#[tokio::test]
async fn an_oversized_bulk_gets_the_same_answer_on_rest_grpc_and_graphql() {
    use polyport::protocols::grpc::pb::{CreateOrderRequest, NewItem};

    let server = TestServer::start().await;
    let order = json!({ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 1 }] });
    let rest = server
        .post("/v1/orders/bulk")
        .json(&json!({ "orders": vec![order; 101] }))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 400);
    let rest: Value = rest.json().await.unwrap();

    let mut client = OrdersClient::new(server.grpc_channel().await);
    let create = CreateOrderRequest {
        customer_id: "1".into(),
        items: vec![NewItem {
            product_id: "1".into(),
            quantity: 1,
        }],
    };
    let grpc = client
        .bulk_create_orders(tokio_stream::iter(vec![create; 101]))
        .await
        .unwrap_err();

    let one = r#"{customerId: "1", items: [{productId: "1", quantity: 1}]}"#;
    let all = vec![one; 101].join(", ");
    let gql = graphql(
        &server,
        &format!("mutation {{ createOrders(input: {{orders: [{all}]}}) {{ created }} }}"),
    )
    .await;
    let error = &gql["errors"][0];

    assert_eq!(rest["type"], "/problems/validation", "{rest}");
    assert_eq!(rest["errors"][0]["field"], "orders", "{rest}");
    assert_eq!(grpc.code(), tonic::Code::InvalidArgument, "{grpc:?}");
    assert_eq!(grpc.message(), rest["detail"], "{grpc:?}");
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{gql}");
    assert_eq!(error["extensions"]["type"], rest["type"], "{gql}");
    assert_eq!(error["extensions"]["errors"][0]["field"], "orders", "{gql}");
    assert_eq!(error["message"], rest["detail"], "{gql}");
    let listed: Value = server
        .get("/v1/orders?limit=100")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        24,
        "nothing was created anywhere"
    );
}

#[tokio::test]
async fn a_graphql_bulk_answers_each_order_alone_as_rest_does() {
    let server = TestServer::start().await;
    let gql = graphql(
        &server,
        r#"mutation { createOrders(input: {orders: [
            {customerId: "1", items: [{productId: "1", quantity: 1}]},
            {customerId: "1", items: [{productId: "1", quantity: 0}]}
        ]}) { created failed results { index order { id } error { code type status errors { field } } } } }"#,
    )
    .await;
    assert!(gql.get("errors").is_none(), "{gql}");
    let payload = &gql["data"]["createOrders"];
    assert_eq!(
        (payload["created"].clone(), payload["failed"].clone()),
        (json!(1), json!(1)),
        "{gql}"
    );
    let rest: Value = server
        .post("/v1/orders/bulk")
        .json(&json!({ "orders": [{ "customer_id": "1", "items": [{ "product_id": "1", "quantity": 0 }] }] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failed = &payload["results"][1]["error"];
    assert_eq!(
        failed["status"], rest["results"][0]["status"],
        "{gql} {rest}"
    );
    assert_eq!(
        failed["type"], rest["results"][0]["error"]["type"],
        "{gql} {rest}"
    );
    assert_eq!(failed["code"], "BAD_USER_INPUT");
    assert!(payload["results"][0]["order"]["id"].is_string(), "{gql}");
}
