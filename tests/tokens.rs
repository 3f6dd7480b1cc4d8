//! The OAuth 2.0 token and revocation endpoints, black box: a real HTTP flow with reqwest
//! against the real server, and the issued tokens used on the API.

mod common;

use std::sync::Arc;

use common::TestServer;
use polyport::config::{ClientConfig, Config};
use polyport::domain::Role;
use polyport::domain::model::CustomerId;
use polyport::gateway::auth::tokens::{TokenError, TokenService};
use reqwest::StatusCode;
use serde_json::Value;

const HS256_SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const SHOP_SECRET: &str = "shop-secret-0123456789";
const OPS_SECRET: &str = "ops-secret-0123456789+&=";

/// The server with two OAuth clients (and so no dev mode).
struct TokenServer {
    server: TestServer,
    service: Arc<TokenService>,
}

impl TokenServer {
    async fn start() -> Self {
        let mut config = Config::default();
        config.auth.clients = vec![
            ClientConfig {
                id: "shop".into(),
                secret: SHOP_SECRET.into(),
                role: "customer".into(),
                customer_id: Some("1".into()),
            },
            ClientConfig {
                id: "ops".into(),
                secret: OPS_SECRET.into(),
                role: "admin".into(),
                customer_id: None,
            },
        ];
        config.auth.tokens.hs256_secret = HS256_SECRET.into();
        let server = TestServer::with_auth(config).await;
        let service = Arc::clone(server.app.gate.auth.tokens());
        Self { server, service }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.server.post(path)
    }

    /// `POST /v1/auth/token` with `form`, authenticated by Basic as `client`.
    async fn token_basic(&self, client: (&str, &str), form: &[(&str, &str)]) -> reqwest::Response {
        self.post("/v1/auth/token")
            .basic_auth(client.0, Some(client.1))
            .form(form)
            .send()
            .await
            .expect("token request")
    }

    /// A fresh client-credentials grant for `shop`: the token response body.
    async fn grant(&self) -> Value {
        let response = self
            .token_basic(
                ("shop", SHOP_SECRET),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("token JSON")
    }
}

/// Asserts an RFC 6749 §5.2 error with `status` and `code`; returns the response headers.
async fn expect_oauth_error(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(response.status(), status);
    let headers = response.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    let body: Value = response.json().await.expect("error JSON");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    headers
}

#[tokio::test]
async fn client_credentials_with_basic_auth_return_a_bearer_token() {
    let server = TokenServer::start().await;
    let response = server
        .token_basic(
            ("shop", SHOP_SECRET),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "customer");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );

    let claims = server
        .service
        .verify_access(body["access_token"].as_str().unwrap())
        .expect("the issued token verifies");
    assert_eq!(claims.role, Role::Customer(CustomerId(1)));
    assert_eq!(claims.client_id.as_deref(), Some("shop"));
}

#[tokio::test]
async fn client_credentials_in_form_fields_work_too() {
    let server = TokenServer::start().await;
    let response = server
        .post("/v1/auth/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ops"),
            ("client_secret", OPS_SECRET),
            ("scope", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let claims = server
        .service
        .verify_access(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.role, Role::Admin);
}

#[tokio::test]
async fn a_basic_secret_sent_form_encoded_as_rfc_6749_says_is_accepted() {
    // OPS_SECRET holds '+', '&' and '='; RFC 6749 §2.3.1 encodes them before Basic.
    let server = TokenServer::start().await;
    let encoded = "ops-secret-0123456789%2B%26%3D";
    let response = server
        .token_basic(("ops", encoded), &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // And sent raw, as curl -u does.
    let response = server
        .token_basic(("ops", OPS_SECRET), &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_client_secret_is_refused() {
    let server = TokenServer::start().await;
    let grant = [("grant_type", "client_credentials")];

    let basic = server.token_basic(("shop", "wrong-secret"), &grant).await;
    let headers = expect_oauth_error(basic, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");

    let unknown = server.token_basic(("nobody", SHOP_SECRET), &grant).await;
    expect_oauth_error(unknown, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let form = server
        .post("/v1/auth/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "shop"),
            ("client_secret", "wrong-secret"),
        ])
        .send()
        .await
        .unwrap();
    expect_oauth_error(form, StatusCode::BAD_REQUEST, "invalid_client").await;

    let none = server
        .post("/v1/auth/token")
        .form(&grant)
        .send()
        .await
        .unwrap();
    let headers = expect_oauth_error(none, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn a_refresh_returns_a_new_pair_and_the_old_refresh_token_then_fails() {
    let server = TokenServer::start().await;
    let first = server.grant().await;
    let old_refresh = first["refresh_token"].as_str().unwrap();

    let refreshed = server
        .token_basic(
            ("shop", SHOP_SECRET),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", old_refresh),
            ],
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(refreshed.headers()["cache-control"], "no-store");
    let second: Value = refreshed.json().await.unwrap();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let new_access = second["access_token"].as_str().unwrap();
    assert!(server.service.verify_access(new_access).is_ok());

    let replay = server
        .token_basic(
            ("shop", SHOP_SECRET),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", old_refresh),
            ],
        )
        .await;
    expect_oauth_error(replay, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // The replay revoked the whole grant, the new pair included.
    assert_eq!(
        server.service.verify_access(new_access),
        Err(TokenError::Revoked)
    );
    let new_refresh = second["refresh_token"].as_str().unwrap();
    let after = server
        .token_basic(
            ("shop", SHOP_SECRET),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", new_refresh),
            ],
        )
        .await;
    expect_oauth_error(after, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_refresh_without_its_token_or_by_another_client_is_refused() {
    let server = TokenServer::start().await;
    let grant = server.grant().await;
    let refresh = grant["refresh_token"].as_str().unwrap();

    let missing = server
        .token_basic(("shop", SHOP_SECRET), &[("grant_type", "refresh_token")])
        .await;
    expect_oauth_error(missing, StatusCode::BAD_REQUEST, "invalid_request").await;

    let other = server
        .token_basic(
            ("ops", OPS_SECRET),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    expect_oauth_error(other, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_revoked_access_token_then_fails_verification() {
    let server = TokenServer::start().await;
    let grant = server.grant().await;
    let access = grant["access_token"].as_str().unwrap();

    let response = server
        .post("/v1/auth/revoke")
        .basic_auth("shop", Some(SHOP_SECRET))
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(
        server.service.verify_access(access),
        Err(TokenError::Revoked)
    );

    // An unknown token is not an error (RFC 7009 §2.2).
    let unknown = server
        .post("/v1/auth/revoke")
        .basic_auth("shop", Some(SHOP_SECRET))
        .form(&[("token", "no-such-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_grant_and_only_its_client_may() {
    let server = TokenServer::start().await;
    let grant = server.grant().await;
    let refresh = grant["refresh_token"].as_str().unwrap();

    let by_other = server
        .post("/v1/auth/revoke")
        .basic_auth("ops", Some(OPS_SECRET))
        .form(&[("token", refresh), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    expect_oauth_error(by_other, StatusCode::BAD_REQUEST, "unauthorized_client").await;

    let unauthenticated = server
        .post("/v1/auth/revoke")
        .form(&[("token", refresh)])
        .send()
        .await
        .unwrap();
    expect_oauth_error(unauthenticated, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let by_owner = server
        .post("/v1/auth/revoke")
        .form(&[
            ("token", refresh),
            ("client_id", "shop"),
            ("client_secret", SHOP_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(by_owner.status(), StatusCode::OK);
    let access = grant["access_token"].as_str().unwrap();
    assert_eq!(
        server.service.verify_access(access),
        Err(TokenError::Revoked)
    );
    let refreshed = server
        .token_basic(
            ("shop", SHOP_SECRET),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    expect_oauth_error(refreshed, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_token_request_that_is_not_a_form_is_refused() {
    let server = TokenServer::start().await;
    for path in ["/v1/auth/token", "/v1/auth/revoke"] {
        let json = server
            .post(path)
            .basic_auth("shop", Some(SHOP_SECRET))
            .json(&serde_json::json!({"grant_type": "client_credentials", "token": "x"}))
            .send()
            .await
            .unwrap();
        expect_oauth_error(json, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_unsupported_or_malformed_token_request_gets_its_oauth_error() {
    let server = TokenServer::start().await;
    let shop = ("shop", SHOP_SECRET);
    let password = server
        .token_basic(shop, &[("grant_type", "password"), ("username", "u")])
        .await;
    expect_oauth_error(password, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;

    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "invalid_request"),
        (
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "refresh_token"),
            ],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", SHOP_SECRET),
            ],
            "invalid_request",
        ),
        (
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            "invalid_scope",
        ),
    ];
    for (form, code) in cases {
        let response = server.token_basic(shop, form).await;
        expect_oauth_error(response, StatusCode::BAD_REQUEST, code).await;
    }
}

/// A token signed with the server's own HS256 secret and `kid`, with `claims` as given: how
/// tests make tokens the endpoint would never issue (expired, not yet valid, foreign issuer).
fn forge(claims: serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(HS256_SECRET.as_bytes());
    let kid: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(format!("hs256-{kid}"));
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims the server accepts, for `sub` with `role`, valid for `ttl` seconds from `iat`.
fn claims(role: &str, exp: u64) -> serde_json::Value {
    serde_json::json!({
        "iss": "polyport", "aud": "polyport", "sub": "tester", "jti": format!("j-{exp}-{role}"),
        "iat": now(), "exp": exp, "role": role,
    })
}

/// GET `path` with `token`; the status.
async fn rest_status(server: &TestServer, path: &str, token: &str) -> u16 {
    server
        .get(path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn grpc_code(server: &TestServer, token: &str) -> tonic::Code {
    use polyport::protocols::grpc::pb;
    let mut client = pb::orders_client::OrdersClient::new(server.grpc_channel().await);
    let mut request = tonic::Request::new(pb::GetOrderRequest { id: "1".into() });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match client.get_order(request).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

async fn graphql_code(server: &TestServer, token: &str) -> (u16, Value) {
    let response = server
        .post("/graphql")
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": "{ order(id: \"1\") { id } }" }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["errors"][0]["extensions"]["code"].clone())
}

#[tokio::test]
async fn an_issued_access_token_works_on_rest_grpc_graphql_and_sse() {
    let server = TokenServer::start().await;
    let grant = server.grant().await;
    let token = grant["access_token"].as_str().unwrap();
    // The shop client's tokens are customer 1's: its own order 1 is visible.
    let own = server
        .server
        .get("/v1/orders?limit=100")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: Value = own.json().await.unwrap();
    let orders = body["data"].as_array().unwrap();
    assert!(!orders.is_empty());
    assert!(orders.iter().all(|o| o["customer_id"] == "1"), "{body}");
    let first = orders[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        rest_status(&server.server, &format!("/v1/orders/{first}"), token).await,
        200
    );
    let (status, code) = graphql_code(&server.server, "nothing").await;
    assert_eq!((status, code), (401, Value::from("UNAUTHENTICATED")));
    let sse = server
        .server
        .get(&format!("/v1/events?access_token={token}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200, "the query form works on event streams");
}

#[tokio::test]
async fn expired_future_forged_and_unsigned_tokens_are_refused_on_every_protocol() {
    let server = TokenServer::start().await;
    let good = forge(claims("admin", now() + 600));
    assert_eq!(
        rest_status(&server.server, "/v1/orders/1", &good).await,
        200
    );
    assert_eq!(grpc_code(&server.server, &good).await, tonic::Code::Ok);
    assert_eq!(graphql_code(&server.server, &good).await.0, 200);

    let expired = forge(claims("admin", now() - 60));
    let mut early = claims("admin", now() + 600);
    early["nbf"] = serde_json::json!(now() + 300);
    let not_yet = forge(early);
    let mut foreign = claims("admin", now() + 600);
    foreign["iss"] = serde_json::json!("someone-else");
    let foreign = forge(foreign);
    // alg: none, with the same claims: must never be accepted.
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("admin", now() + 600))
    );
    let tampered = format!("{}x", &good[..good.len() - 1]);
    for (name, token) in [
        ("expired", &expired),
        ("not yet valid", &not_yet),
        ("foreign issuer", &foreign),
        ("alg none", &unsigned),
        ("tampered", &tampered),
    ] {
        assert_eq!(
            rest_status(&server.server, "/v1/orders/1", token).await,
            401,
            "{name}"
        );
        assert_eq!(
            grpc_code(&server.server, token).await,
            tonic::Code::Unauthenticated,
            "{name}"
        );
        let (status, code) = graphql_code(&server.server, token).await;
        assert_eq!(
            (status, code),
            (401, Value::from("UNAUTHENTICATED")),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_the_api_until_it_expires() {
    let server = TokenServer::start().await;
    let grant = server.grant().await;
    let access = grant["access_token"].as_str().unwrap();
    assert_eq!(grpc_code(&server.server, access).await, tonic::Code::Ok);
    let revoked = server
        .post("/v1/auth/revoke")
        .basic_auth("shop", Some(SHOP_SECRET))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        rest_status(&server.server, "/v1/orders/1", access).await,
        401
    );
    assert_eq!(
        grpc_code(&server.server, access).await,
        tonic::Code::Unauthenticated
    );
}

#[tokio::test]
async fn a_websocket_session_ends_with_4401_once_its_token_expires() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
    let server = TokenServer::start().await;
    // Valid for two more seconds: the session may answer now, but not after that.
    let token = forge(claims("admin", now() + 2));
    let mut request = format!("ws://{}/v1/ws", server.server.addr)
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {token}").parse().unwrap();
    request.headers_mut().insert("authorization", bearer);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let ping = |id: &str| Message::text(format!(r#"{{"op":"ping","id":"{id}"}}"#));
    ws.send(ping("before")).await.unwrap();
    let reply = loop {
        match ws.next().await.expect("an answer").unwrap() {
            Message::Text(text) => break text,
            _ => continue,
        }
    };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["op"], "pong", "{reply}");

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // The session ended with 4401 when the token expired: a command sent now gets no answer.
    let _ = ws.send(ping("after")).await;
    let close = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame,
                Ok(Message::Text(text)) => panic!("answered after its token expired: {text}"),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the session was still open 10 s after its token expired")
    .expect("a close frame");
    assert_eq!(close.code, CloseCode::from(4401), "{close:?}");
    assert_eq!(close.reason.as_str(), "the access token expired");
}

#[tokio::test]
async fn a_grpc_session_ends_with_unauthenticated_once_its_token_expires() {
    use pb::{SessionCommand, session_command, session_message};
    use polyport::protocols::grpc::pb;
    let server = TokenServer::start().await;
    // Valid for two more seconds: the session may answer now, but not after that.
    let token = forge(claims("admin", now() + 2));
    let mut client = pb::orders_client::OrdersClient::new(server.server.grpc_channel().await);
    let (commands, outbound) = tokio::sync::mpsc::channel(4);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outbound));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut session = client
        .order_session(request)
        .await
        .expect("a session")
        .into_inner();
    let get = |id: &str| SessionCommand {
        id: id.into(),
        command: Some(session_command::Command::GetOrder(pb::GetOrderRequest {
            id: "1".into(),
        })),
    };
    commands.send(get("before")).await.unwrap();
    let reply = session
        .message()
        .await
        .expect("an answer")
        .expect("a message");
    assert_eq!(reply.id, "before");
    assert!(
        matches!(reply.kind, Some(session_message::Kind::Order(_))),
        "{reply:?}"
    );

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // The call ends with UNAUTHENTICATED when the token expires, commands or not: one sent
    // now finds it over, or is left unanswered.
    let _ = commands.send(get("after")).await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), session.message())
        .await
        .expect("the session was still open 10 s after its token expired");
    let status = ended.expect_err("the call ends with a status, not an answer");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "the access token expired");
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_expires() {
    use futures_util::StreamExt;
    let server = TokenServer::start().await;
    // Valid for two more seconds: the stream must not outlive it.
    let token = forge(claims("admin", now() + 2));
    let response = server
        .server
        .get("/v1/events")
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream was still open 10 s later");
}

/// The close frame a WebSocket receives next, skipping other messages; `None`: no frame came.
async fn next_close<S>(ws: &mut S) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the session was still open 10 s after its token was revoked")
}

#[tokio::test]
async fn revoking_a_token_ends_its_open_sessions_and_streams_on_every_protocol_and_no_others() {
    use futures_util::{SinkExt, StreamExt};
    use polyport::protocols::grpc::pb;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Message, protocol::frame::coding::CloseCode};
    let server = TokenServer::start().await;
    let grant = server.grant().await;
    let token = grant["access_token"].as_str().unwrap().to_owned();
    let other_grant = server.grant().await;
    let other = other_grant["access_token"].as_str().unwrap().to_owned();
    let addr = server.server.addr;
    let bearer = |token: &str| format!("Bearer {token}");

    // /v1/ws, subscribed; and one of the other token, which must stay open.
    let ws_of = |token: String| async move {
        let mut request = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", bearer(&token).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws.send(Message::text(r#"{"op":"subscribe","id":"s"}"#))
            .await
            .unwrap();
        loop {
            if let Message::Text(text) = ws.next().await.unwrap().unwrap() {
                assert!(text.contains("subscribed"), "{text}");
                break;
            }
        }
        ws
    };
    let mut ws = ws_of(token.clone()).await;
    let mut ws_other = ws_of(other.clone()).await;

    // /graphql/ws, authenticated in connection_init, with a subscription running.
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut gql, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let init = serde_json::json!({ "type": "connection_init", "payload": { "authorization": bearer(&token) } });
    gql.send(Message::text(init.to_string())).await.unwrap();
    loop {
        if let Message::Text(text) = gql.next().await.unwrap().unwrap() {
            assert!(text.contains("connection_ack"), "{text}");
            break;
        }
    }
    let subscribe = serde_json::json!({ "id": "1", "type": "subscribe",
        "payload": { "query": "subscription { orderEvents { __typename } }" } });
    gql.send(Message::text(subscribe.to_string()))
        .await
        .unwrap();

    // SSE.
    let sse = server
        .server
        .get("/v1/events")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();

    // gRPC WatchOrders and an OrderSession.
    let mut client = pb::orders_client::OrdersClient::new(server.server.grpc_channel().await);
    let mut watch = tonic::Request::new(pb::WatchOrdersRequest::default());
    watch
        .metadata_mut()
        .insert("authorization", bearer(&token).parse().unwrap());
    let mut watch = client.watch_orders(watch).await.unwrap().into_inner();
    let (_commands, outbound) = tokio::sync::mpsc::channel::<pb::SessionCommand>(4);
    let mut session = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outbound));
    session
        .metadata_mut()
        .insert("authorization", bearer(&token).parse().unwrap());
    let mut session = client.order_session(session).await.unwrap().into_inner();
    server
        .server
        .wait_for_streams(6, "two WebSockets, a subscription, SSE and two gRPC calls")
        .await;

    let revoked = server
        .post("/v1/auth/revoke")
        .basic_auth("shop", Some(SHOP_SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);

    let close = next_close(&mut ws).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::from(4401), "{close:?}");
    assert_eq!(close.reason.as_str(), "the access token was revoked");
    let close = next_close(&mut gql).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::from(4401), "{close:?}");
    assert!(
        close.reason.starts_with("the access token was revoked"),
        "{close:?}"
    );
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(_)) = sse.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the SSE stream was still open 10 s later");
    for (name, ended) in [
        ("WatchOrders", watch.message().await.map(|_| ())),
        ("OrderSession", session.message().await.map(|_| ())),
    ] {
        let status = ended.expect_err(name);
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{name}: {status:?}"
        );
        assert_eq!(status.message(), "the access token was revoked", "{name}");
    }

    // The other token's session goes on.
    ws_other
        .send(Message::text(r#"{"op":"ping","id":"still"}"#))
        .await
        .unwrap();
    loop {
        match ws_other.next().await.unwrap().unwrap() {
            Message::Text(text) if text.contains("pong") => break,
            Message::Close(frame) => panic!("the other token's session closed: {frame:?}"),
            _ => continue,
        }
    }
}
