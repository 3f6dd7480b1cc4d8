//! One port for everything: the accept loop, per-connection protocol detection, and graceful
//! shutdown.
//!
//! Each accepted connection is handed to hyper-util's `auto` builder, which peeks at the first
//! bytes: the HTTP/2 connection preface (`PRI * HTTP/2.0...`, what `curl --http2-prior-knowledge`
//! and gRPC clients send over cleartext) selects HTTP/2, anything else HTTP/1.1 (with upgrades,
//! for WebSocket). Above that, one router sees every request whatever its HTTP version, so gRPC
//! (`content-type: application/grpc`), GraphQL and REST can all share the port.
//!
//! Shutdown: when the signal fires the listener is dropped (no new connections), every open
//! connection is told to finish its in-flight requests and close (HTTP/1.1 `Connection: close`,
//! HTTP/2 GOAWAY), and we wait for them at most `grace`.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Serves `router` on `listener` until `shutdown` completes, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually EMFILE (out of file descriptors): back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (gRPC frames, SSE events) must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        // The client's address, for per-IP rate limits of anonymous callers.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Clients that vanish mid-request end up here; that is their business, not an error of ours.
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy after the grace period; closing them");
    }
    Ok(())
}
