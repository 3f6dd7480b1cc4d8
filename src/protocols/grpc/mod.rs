//! The gRPC adapter: `polyport.orders.v1.Orders` with tonic, plus reflection (v1 and v1alpha),
//! the standard health service and gRPC-Web, all served by the shared router on the same port.
//!
//! gRPC requests are ordinary HTTP/2 requests to paths like `/polyport.orders.v1.Orders/GetOrder`,
//! so the adapter is just more routes: the one-port listener needs no special case. gRPC-Web
//! (HTTP/1.1, `application/grpc-web` and `application/grpc-web-text`) is translated by
//! `tonic_web::GrpcWebLayer` on the same routes, so a browser can call the service directly.

pub mod convert;
pub mod deadline;
pub mod pb;
pub mod service;
pub mod watch;

use axum::Router;
use axum::extract::State;
use axum::middleware;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::gateway::connection::Tracked;
use crate::gateway::error::grpc::{EXPOSED_HEADERS, fix_codec_errors};
use crate::gateway::refusal::{Idiom, refuse};
use crate::gateway::trace::TraceId;
use crate::protocols::AppState;
use pb::orders_server::OrdersServer;

/// The name of the health-checked service.
pub const SERVICE_NAME: &str = "polyport.orders.v1.Orders";

/// CORS for gRPC-Web: the request headers gRPC-Web clients send and the response headers they
/// must be allowed to read.
fn cors() -> CorsLayer {
    let headers = |names: &[&'static str]| {
        names
            .iter()
            .map(|n| http::HeaderName::from_static(n))
            .collect::<Vec<_>>()
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([http::Method::POST])
        .allow_headers(headers(&[
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "idempotency-key",
            "traceparent",
            "authorization",
        ]))
        .expose_headers(headers(EXPOSED_HEADERS))
        .max_age(std::time::Duration::from_secs(24 * 60 * 60))
}

/// The gRPC routes: the orders service, reflection, health.
pub fn routes(app: &AppState) -> Router {
    let limit = app.config.grpc.max_message_bytes;
    let orders = OrdersServer::new(service::OrdersService::new(app.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled descriptor set is valid");
    let health = HealthServer::new(HealthService::from_health_reporter(app.health.clone()));
    let names = [
        name_of(&orders),
        name_of(&reflection_v1),
        name_of(&reflection_v1alpha),
        name_of(&health),
    ];
    let services = Routes::new(orders)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(health)
        .prepare();
    // The layers wrap all the services once; each service's path then leads to that one
    // stack (a layer on every route would cost a boxed copy of the route per layer and per
    // call). Outermost first.
    let grpc = tower::ServiceBuilder::new()
        // tonic's codec names bad input INTERNAL / OUT_OF_RANGE; the table says otherwise.
        .layer(middleware::from_fn(fix_codec_errors))
        // Browsers may call from a page on another origin (a dev server on another port).
        // Any origin, no cookies: credentials travel in headers, which CORS lists explicitly.
        .layer(cors())
        // Browsers: gRPC-Web requests are translated to gRPC and back.
        .layer(tonic_web::GrpcWebLayer::new())
        .map_request(|request: http::Request<tonic::body::Body>| request.map(axum::body::Body::new))
        // Health Watch streams are open to anyone, so they count under the stream caps too.
        .layer(middleware::from_fn_with_state(
            app.clone(),
            count_health_watches,
        ))
        .service(services);
    names.into_iter().fold(Router::new(), |router, name| {
        router.route_service(&format!("/{name}/{{*rest}}"), grpc.clone())
    })
}

/// The gRPC name of a service (`polyport.orders.v1.Orders`), the first segment of its paths.
fn name_of<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Middleware: a `grpc.health.v1.Health/Watch` stream takes a stream place (the caps of
/// `push.max_streams` and `push.max_streams_per_caller`, keyed by the client's address, since
/// health needs no credentials) for as long as its response body runs.
async fn count_health_watches(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    if request.uri().path() != "/grpc.health.v1.Health/Watch" {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    match crate::protocols::push::admit(&app, None, peer) {
        Ok(place) => next
            .run(request)
            .await
            .map(|body| axum::body::Body::new(Tracked::new(body, place))),
        Err(error) => refuse(
            Idiom::Grpc,
            &error,
            request.extensions().get::<TraceId>(),
            request.headers(),
            http::HeaderMap::new(),
        ),
    }
}
