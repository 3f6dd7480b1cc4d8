//! One port for everything: the accept loop, optional TLS, per-connection protocol detection,
//! and graceful shutdown.
//!
//! Each accepted connection is told apart by a peek (not a read) at its first bytes: the
//! HTTP/2 connection preface (`PRI * HTTP/2.0...`, what `curl --http2-prior-knowledge` and gRPC
//! clients send over cleartext) selects hyper's HTTP/2 server, anything else its HTTP/1.1 server
//! (with upgrades, for WebSocket). Peeking leaves the bytes in the socket, so hyper's first read
//! takes the whole request head into its buffer; reading them out first (as hyper-util's `auto`
//! builder does) hands hyper a 24-byte first read, after which its read buffer grows to 16 KiB
//! on every connection (measured with heaptrack, see BENCHMARKS.md), which is most of what an
//! idle SSE subscriber costs. Only a preface that arrives in pieces, too short to decide on, goes
//! to the `auto` builder. Above that, one router sees every request whatever its HTTP version,
//! so gRPC (`content-type: application/grpc`), GraphQL and REST can all share the port.
//!
//! With TLS configured (see [`super::tls`]) the port speaks only TLS: each connection first
//! completes its handshake, in its own task and within `tls.handshake_timeout`, so a slow or
//! silent client never holds up the accept loop. Over TLS the client picks HTTP/2 or HTTP/1.1 by
//! ALPN; a client that names neither goes to the `auto` builder.
//!
//! Every request carries a [`ConnectionInfo`] (peer address, TLS or not) in its extensions and,
//! when the client presented a verified certificate, a [`ClientCertificate`]: the identity the
//! auth layer maps to a principal.
//!
//! Before hyper sees a connection it is admitted against `server.max_connections` and
//! `server.max_connections_per_ip` (past either it is closed at once) and wrapped so that an
//! HTTP/1.1 request head has `server.header_read_timeout` to arrive (408 after that), and a
//! connection with nothing in flight for `server.idle_timeout` is closed (see
//! [`super::connection`]). HTTP/2 peers are pinged every `server.keepalive_interval`; one
//! that does not answer is closed. Both versions refuse request heads over
//! `server.max_header_bytes` with 431.
//!
//! Shutdown: when the signal fires the listener is dropped (no new connections), handshakes in
//! progress and connections that have sent nothing yet are abandoned (they have no request to
//! finish), every open connection is told to finish its in-flight requests and close
//! (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), and we wait for them at most `grace`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use super::connection::{Activity, Connections, Guarded, Permit, Tracked};
use super::shares::Shares;
use super::tls::{ClientCertificate, ConnectionInfo, Tls};
use crate::config::ServerConfig;

/// How long an idle connection told to close may take to do so (an HTTP/2 GOAWAY waits for
/// the peer's answer to a ping) before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What [`serve`] hands every request to: the application, a router inside its layers. It is
/// cloned once per connection and once per request, so a clone must be cheap (an `Arc`).
pub trait Application:
    tower::Service<
        http::Request<Body>,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Application for S where
    S: tower::Service<
            http::Request<Body>,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `app` on `listener` until `shutdown` completes, then drains for at most
/// `config.shutdown_grace`, applying `config`'s connection limits and timeouts throughout.
/// With `tls`, every connection must complete a TLS handshake first.
pub async fn serve(
    listener: TcpListener,
    app: impl Application,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
    config: ServerConfig,
) -> std::io::Result<()> {
    let grace = config.shutdown_grace;
    let builders = Arc::new(Builders::new(&config));
    let connections: Arc<Connections> =
        Shares::new(config.max_connections, config.max_connections_per_ip);
    // Every connection task holds a receiver: the drain below ends when the last one is gone.
    let (stopping, stopped) = watch::channel(false);
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
        let permit = match connections.take(peer.ip()) {
            Ok(permit) => permit,
            Err(why) => {
                // Closed at once (dropping the socket); logged now and then, not per connection.
                let refused = connections.refused();
                if refused.is_power_of_two() || refused.is_multiple_of(1000) {
                    tracing::warn!(%peer, ?why, refused_total = refused, open = connections.count(), "refused a connection: over the connection cap");
                }
                continue;
            }
        };
        // Small writes (gRPC frames, SSE events) must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        // Taken here, not in the task: a connection accepted just before shutdown is still
        // told to drain.
        let mut stopped = stopped.clone();
        let builders = Arc::clone(&builders);
        let app = app.clone();
        match &tls {
            None => {
                let info = ConnectionInfo { peer, tls: false };
                tokio::spawn(async move {
                    let Some(protocol) = sniff(&stream, &mut stopped).await else {
                        return;
                    };
                    let socket = Socket {
                        permit,
                        info,
                        certificate: None,
                    };
                    serve_connection(&builders, app, socket, protocol, stream, stopped).await;
                });
            }
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    handshake_then_serve(&builders, app, &tls, peer, permit, stream, stopped).await;
                });
            }
        }
    }

    drop(listener);
    drop(stopped);
    stopping.send_replace(true);
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still busy after the grace period; closing them");
    }
    Ok(())
}

/// Completes the TLS handshake on `stream` (within the configured timeout, and unless the
/// server starts shutting down meanwhile), reads the client's certificate, then serves the
/// connection (which drains like any other once it is established).
async fn handshake_then_serve(
    builders: &Builders,
    app: impl Application,
    tls: &Tls,
    peer: SocketAddr,
    permit: Permit,
    stream: TcpStream,
    mut stopped: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream));
    let handshake = tokio::select! {
        result = handshake => result,
        // No request has been read yet, so there is nothing to finish: just close.
        _ = stopped.wait_for(|stopping| *stopping) => return,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        // Plaintext on the TLS port, an untrusted client certificate, a scanner: the client's
        // problem, logged quietly.
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, timeout_ms = tls.handshake_timeout.as_millis() as u64, "TLS handshake timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    // rustls has verified the chain; the first certificate is the client's own.
    let certificate = match session.peer_certificates().and_then(|chain| chain.first()) {
        None => None,
        Some(der) => match ClientCertificate::from_der(der) {
            Ok(certificate) => Some(certificate),
            Err(error) => {
                // Verified yet unreadable should not happen; refusing is the safe side.
                tracing::warn!(%peer, %error, "closing a connection whose client certificate cannot be read");
                return;
            }
        },
    };
    tracing::debug!(
        %peer,
        alpn = session.alpn_protocol().map(String::from_utf8_lossy).as_deref(),
        client = certificate.as_ref().map(|c| c.subject.as_str()),
        "TLS handshake complete"
    );
    let protocol = match session.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        Some(b"http/1.1") => Protocol::Http1,
        _ => Protocol::Undecided,
    };
    let socket = Socket {
        permit,
        info: ConnectionInfo { peer, tls: true },
        certificate,
    };
    serve_connection(builders, app, socket, protocol, stream, stopped).await;
}

/// The first bytes every HTTP/2 connection sends.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection speaks, known before hyper reads from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    /// Not known yet: hyper-util's `auto` builder reads until it is.
    Undecided,
}

/// The servers of each protocol, configured once for every connection.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Builders {
    fn new(config: &ServerConfig) -> Self {
        let head = config.max_header_bytes;
        let list = u32::try_from(head).unwrap_or(u32::MAX);
        let mut http1 = http1::Builder::new();
        // hyper answers a head over this 431 itself. Its own header-read timeout closes
        // without an answer, so `Guarded` keeps that clock instead.
        http1.max_header_size(head);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(list)
            .keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // Its HTTP/1.1 side bounds the head by its read buffer (hyper's minimum is 8 KiB).
        auto.http1().max_buf_size(head.max(8192));
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(list)
            .keep_alive_interval(config.keepalive_interval)
            .keep_alive_timeout(config.keepalive_timeout);
        Self {
            http1,
            http2,
            auto,
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
        }
    }
}

/// What a connection brings from its accept: its place under the caps, who is on the other
/// end, and (over mutual TLS) the verified client certificate.
struct Socket {
    permit: Permit,
    info: ConnectionInfo,
    certificate: Option<ClientCertificate>,
}

/// Tells HTTP/2 from HTTP/1.1 by peeking at the first bytes of a cleartext connection, leaving
/// them in the socket for hyper. `None`: the client closed before sending anything, or the
/// server began shutting down first (there is no request to finish).
async fn sniff(stream: &TcpStream, stopped: &mut watch::Receiver<bool>) -> Option<Protocol> {
    let mut head = [0; PREFACE.len()];
    let peeked = tokio::select! {
        peeked = stream.peek(&mut head) => peeked,
        _ = stopped.wait_for(|stopping| *stopping) => return None,
    };
    match peeked {
        Ok(0) | Err(_) => None,
        Ok(n) if head[..n] != PREFACE[..n] => Some(Protocol::Http1),
        Ok(n) if n == PREFACE.len() => Some(Protocol::Http2),
        // The start of a preface, the rest still on its way.
        Ok(_) => Some(Protocol::Undecided),
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection (plaintext or TLS), tagging each request with
/// the connection's [`ConnectionInfo`] and [`ClientCertificate`] and counting it in flight
/// until its response body ends.
async fn serve_connection<S>(
    builders: &Builders,
    app: impl Application,
    socket: Socket,
    protocol: Protocol,
    stream: S,
    stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Socket {
        permit,
        info,
        certificate,
    } = socket;
    let activity = Activity::new();
    // Only HTTP/1.1 bytes are request heads; HTTP/2 frames are watched by the idle clock.
    let head_timeout = (protocol == Protocol::Http1).then_some(builders.header_read_timeout);
    let io = TokioIo::new(Guarded::new(
        stream,
        permit,
        Arc::clone(&activity),
        head_timeout,
    ));
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            // Here, not in the future: hyper calls this as soon as the head is parsed.
            let in_flight = activity.enter();
            // The peer also as axum's `ConnectInfo`, which the gate reads for per-IP rate
            // limits of anonymous callers.
            request.extensions_mut().insert(ConnectInfo(info.peer));
            request.extensions_mut().insert(info);
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            let response = app.clone().oneshot(request.map(Body::new));
            let activity = Arc::clone(&activity);
            async move {
                let response = response.await?;
                if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                    // A WebSocket from here on: its frames are not request heads.
                    activity.upgrade();
                }
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Tracked::new(body, in_flight)),
                )
            }
        })
    };
    let idle = Idle {
        activity,
        timeout: builders.idle_timeout,
    };
    let served = match protocol {
        Protocol::Http1 => {
            let connection = builders.http1.serve_connection(io, service).with_upgrades();
            until_drained(Box::pin(connection), stopped, idle, |c| {
                c.graceful_shutdown()
            })
            .await
            .map_err(Into::into)
        }
        Protocol::Http2 => {
            let connection = builders.http2.serve_connection(io, service);
            until_drained(Box::pin(connection), stopped, idle, |c| {
                c.graceful_shutdown()
            })
            .await
            .map_err(Into::into)
        }
        Protocol::Undecided => {
            let connection = builders.auto.serve_connection_with_upgrades(io, service);
            until_drained(Box::pin(connection), stopped, idle, |c| {
                c.graceful_shutdown()
            })
            .await
        }
    };
    if let Err::<(), Box<dyn std::error::Error + Send + Sync>>(error) = served {
        // Clients that vanish mid-request end up here; that is their business, not an error of ours.
        tracing::debug!(peer = %info.peer, %error, "connection ended with an error");
    }
}

/// A connection's idle clock: what is in flight on it, and how long it may have nothing.
struct Idle {
    activity: Arc<Activity>,
    timeout: Duration,
}

/// Runs `connection` to its end; once shutdown begins, or once it has had nothing in flight
/// for the idle timeout, `drain` tells it to finish its in-flight requests and close
/// (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY). Holding `stopped` until then is what the
/// server's drain waits for. The connection is boxed by the caller so that the task of every
/// connection is as large as its own protocol's state, not the largest of the three.
async fn until_drained<C, E>(
    mut connection: Pin<Box<C>>,
    mut stopped: watch::Receiver<bool>,
    idle: Idle,
    drain: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let check = tokio::time::sleep(idle.timeout);
    tokio::pin!(check);
    loop {
        tokio::select! {
            served = connection.as_mut() => return served,
            () = stopping(&mut stopped) => {
                drain(connection.as_mut());
                return connection.await;
            }
            () = check.as_mut() => match idle.activity.idle_deadline(idle.timeout) {
                Some(deadline) if deadline <= tokio::time::Instant::now() => {
                    tracing::debug!(timeout_ms = idle.timeout.as_millis() as u64, "closing an idle connection");
                    drain(connection.as_mut());
                    // A peer that never answers the GOAWAY's ping does not keep it open.
                    return tokio::time::timeout(IDLE_CLOSE_GRACE, connection)
                        .await
                        .unwrap_or(Ok(()));
                }
                Some(deadline) => check.as_mut().reset(deadline),
                // Busy: look again a whole timeout from now.
                None => check.as_mut().reset(tokio::time::Instant::now() + idle.timeout),
            },
        }
    }
}

/// Completes once shutdown has begun (or the server is gone).
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    // Not the guard `wait_for` returns: it must not live across the awaits that follow.
    let _ = stopped.wait_for(|stopping| *stopping).await;
}

#[cfg(test)]
mod tests {
    //! The extensions every request carries, seen by a router of the test's own (the
    //! application's router has no route that shows them).

    use super::*;
    use crate::config::{ClientAuth, TlsConfig};
    use crate::devcerts::DevCerts;

    async fn who(request: axum::extract::Request) -> String {
        let info = request.extensions().get::<ConnectionInfo>();
        let certificate = request.extensions().get::<ClientCertificate>();
        format!(
            "ip={} tls={} subject={} cn={}",
            info.map_or("-".into(), |i| i.peer.ip().to_string()),
            info.is_some_and(|i| i.tls),
            certificate.map_or("-", |c| c.subject.as_str()),
            certificate
                .and_then(|c| c.common_name.as_deref())
                .unwrap_or("-"),
        )
    }

    /// Serves the `who` route (over TLS with `tls`) and answers a GET from `client`.
    async fn ask(tls: Option<Tls>, client: reqwest::Client, scheme: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/who", axum::routing::get(who));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router,
            tls,
            async {
                let _ = stopped.await;
            },
            ServerConfig::default(),
        ));
        let url = format!("{scheme}://{addr}/who");
        let answer = client.get(url).send().await.unwrap().text().await.unwrap();
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        answer
    }

    #[tokio::test]
    async fn every_request_carries_its_connection_and_the_verified_client_certificate() {
        let dir = std::env::temp_dir().join(format!("polyport-serve-{}", uuid::Uuid::new_v4()));
        let certs = DevCerts::generate(&["workshop-admin".to_owned()]).unwrap();
        certs.write(&dir, false).unwrap();
        let tls = Tls::from_config(&TlsConfig {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
            client_ca_file: dir.join("ca.pem"),
            client_auth: ClientAuth::Optional,
            ..TlsConfig::default()
        })
        .unwrap();
        let ca = reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap();
        let client = |identity: bool| {
            let mut builder = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca.clone());
            if identity {
                let admin = &certs.clients[0];
                let pem = format!("{}{}", admin.cert_pem, admin.key_pem);
                builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
            }
            builder.build().unwrap()
        };

        assert_eq!(
            ask(tls.clone(), client(true), "https").await,
            "ip=127.0.0.1 tls=true subject=CN=workshop-admin,O=polyport dev cn=workshop-admin"
        );
        assert_eq!(
            ask(tls, client(false), "https").await,
            "ip=127.0.0.1 tls=true subject=- cn=-"
        );
        assert_eq!(
            ask(None, reqwest::Client::new(), "http").await,
            "ip=127.0.0.1 tls=false subject=- cn=-"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
