//! What one connection may hold, and for how long: the connection caps (in all, per client
//! address), the header-read deadline and the idle clock that `serve` applies to every
//! connection before hyper sees it.
//!
//! - [`Connections`] counts open sockets (with [`super::shares`]). Its [`Permit`] lives inside the socket wrapper, so a
//!   connection counts until its file descriptor closes, even after a WebSocket upgrade hands
//!   the socket over to a session.
//! - [`Activity`] is what the socket wrapper and the service share: how many requests are in
//!   flight on the connection (a request counts from its head to the end of its response
//!   body, so an open SSE stream or long poll is not idle), since when none has been, and
//!   whether the head of a new request has started to arrive.
//! - [`Guarded`] is the socket as hyper reads it. Over HTTP/1.1, once a new request's first
//!   bytes arrive, the rest of its head has `header_read_timeout` to follow; if it does not,
//!   the client gets `408 Request Timeout` (problem+json, with a trace id) and the connection
//!   closes. hyper's own header timeout closes without an answer, so it is not used.
//! - [`Tracked`] wraps each response body, ending the request's place in flight when the body
//!   ends or is dropped.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::ApiError;
use super::error::kind;
use super::error::problem::problem_body;
use super::shares::{Share, Shares};
use super::trace::TraceId;

/// Open connections, in all and per client address, against `server.max_connections` and
/// `server.max_connections_per_ip`.
pub type Connections = Shares<IpAddr>;

/// One open connection's place; dropping it (when the socket closes) gives it back.
pub type Permit = Share<IpAddr>;

/// Milliseconds on a clock that starts with the process, for the idle clock's atomics.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What a connection's socket wrapper and its service share.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// When `in_flight` last became 0 (or the connection opened), in [`now_ms`].
    idle_since: AtomicU64,
    /// Bytes of a new request have arrived and its head has not been handed to the service.
    awaiting_head: AtomicBool,
    /// The connection was upgraded (a WebSocket): its bytes are no longer request heads.
    upgraded: AtomicBool,
}

impl Activity {
    /// A connection that has just opened: idle, nothing arriving.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now_ms()),
            awaiting_head: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
        })
    }

    /// The connection has switched protocols (`101`): no more request heads will come.
    pub fn upgrade(&self) {
        self.upgraded.store(true, Ordering::Release);
        self.awaiting_head.store(false, Ordering::Release);
    }

    /// A request's head is in: it is in flight until the returned guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.awaiting_head.store(false, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    /// When the connection will have been idle for `timeout`, if no request starts before;
    /// `None` while a request is in flight.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        let idle_for = Duration::from_millis(now_ms().saturating_sub(since));
        Some(Instant::now() + timeout.saturating_sub(idle_for))
    }
}

/// One request in flight; dropping it (when its response body ends) ends it.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(now_ms(), Ordering::Release);
        }
    }
}

/// A response body that holds a place (its request's place in flight, a stream's place under
/// the stream caps) until it ends or is dropped.
pub struct Tracked<B, G = InFlight> {
    body: B,
    held: Option<G>,
}

impl<B, G> Tracked<B, G> {
    /// `body`, holding `held`.
    pub fn new(body: B, held: G) -> Self {
        Self {
            body,
            held: Some(held),
        }
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Tracked<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            // Ended: the place is free from now, even if hyper keeps the body a while.
            self.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client socket as hyper reads it: it holds the connection's [`Permit`] and enforces the
/// HTTP/1.1 header-read deadline.
pub struct Guarded<S> {
    inner: S,
    activity: Arc<Activity>,
    _permit: Permit,
    /// `None` on HTTP/2 (its frames are not request heads; the idle clock covers it).
    header_read_timeout: Option<Duration>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// The last write to the socket could not complete: hyper holds bytes it has not written,
    /// so nothing of ours may go ahead of them.
    write_blocked: bool,
}

impl<S> Guarded<S> {
    /// `inner`, holding `permit`, sharing `activity` with the connection's service; with
    /// `header_read_timeout` (HTTP/1.1) a request head must arrive whole within it.
    pub fn new(
        inner: S,
        permit: Permit,
        activity: Arc<Activity>,
        header_read_timeout: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            activity,
            _permit: permit,
            header_read_timeout,
            deadline: None,
            write_blocked: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Guarded<S> {
    /// Starts the head's clock when the first bytes of a new request arrive.
    fn arm(&mut self, timeout: Duration) {
        let activity = &self.activity;
        if activity.in_flight.load(Ordering::Acquire) > 0
            || activity.upgraded.load(Ordering::Acquire)
            || activity.awaiting_head.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let at = Instant::now() + timeout;
        match &mut self.deadline {
            Some(deadline) => deadline.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// True once a head that started arriving has taken longer than its deadline.
    fn head_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.activity.awaiting_head.load(Ordering::Acquire) {
            return false;
        }
        self.deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }

    /// Best effort: `408 Request Timeout` as problem+json, unless hyper has bytes of its own
    /// waiting to be written (a client that does not read its answers gets no other).
    fn answer_timeout(&mut self, cx: &mut Context<'_>, timeout: Duration) {
        let trace_id = TraceId::random();
        tracing::info!(
            trace_id = trace_id.as_str(),
            timeout_ms = timeout.as_millis() as u64,
            "refused: request headers not received in time"
        );
        if self.write_blocked {
            return;
        }
        let error = ApiError::new(
            &kind::REQUEST_TIMEOUT,
            format!(
                "the request's headers did not arrive within {} ms (server.header_read_timeout)",
                timeout.as_millis()
            ),
        );
        let body = problem_body(&error, None, Some(trace_id.as_str())).to_string();
        let response = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        // The socket's buffer is empty (nothing else was waiting), so a response this small
        // goes in one write; if it does not, the client just sees the connection close.
        let inner = Pin::new(&mut self.inner);
        let _ = inner.poll_write(cx, response.as_bytes());
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(timeout) = this.header_read_timeout else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.arm(timeout),
            Poll::Pending if this.head_overdue(cx) => {
                this.answer_timeout(cx, timeout);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not received in time",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.write_blocked = polled.is_pending();
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.write_blocked = polled.is_pending();
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_while_no_request_is_in_flight() {
        let activity = Activity::new();
        assert!(activity.idle_deadline(Duration::from_secs(60)).is_some());
        let request = activity.enter();
        assert_eq!(activity.idle_deadline(Duration::from_secs(60)), None);
        drop(request);
        assert!(activity.idle_deadline(Duration::from_secs(60)).is_some());
    }
}
