//! Bytes on the wire: a counting wrapper around a socket, handed to hyper, tonic and tungstenite.
//!
//! Counting at the socket (not adding up body sizes) is what makes the protocols comparable:
//! HTTP/1.1 header text, HTTP/2 frame headers and HPACK-compressed headers, gRPC's 5-byte
//! message prefix and trailers, WebSocket frame headers, all of it is in the count. TLS is not
//! involved (the bench speaks plain TCP to 127.0.0.1), so the counts are exactly what the
//! protocols put on the wire.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Byte totals shared by every connection of one protocol's run.
#[derive(Debug, Default)]
pub struct WireCounters {
    sent: AtomicU64,
    received: AtomicU64,
}

/// A reading of [`WireCounters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireSnapshot {
    /// Bytes written by the client (requests).
    pub sent: u64,
    /// Bytes read by the client (responses).
    pub received: u64,
}

impl WireCounters {
    /// The totals so far.
    pub fn snapshot(&self) -> WireSnapshot {
        WireSnapshot {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }
}

impl WireSnapshot {
    /// What was counted between `earlier` and `self`.
    pub fn since(self, earlier: WireSnapshot) -> WireSnapshot {
        WireSnapshot {
            sent: self.sent.saturating_sub(earlier.sent),
            received: self.received.saturating_sub(earlier.received),
        }
    }
}

/// A stream that counts what passes through it into shared [`WireCounters`].
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    counters: Arc<WireCounters>,
}

impl<S> Counted<S> {
    /// Wraps `inner`, adding its traffic to `counters`.
    pub fn new(inner: S, counters: Arc<WireCounters>) -> Self {
        Self { inner, counters }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let n = (buf.filled().len() - before) as u64;
            self.counters.received.fetch_add(n, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counters.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counters.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
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

/// Opens a TCP connection to `addr` (Nagle off, as every real client does for request/response
/// traffic) whose bytes count into `counters`.
pub async fn connect(
    addr: std::net::SocketAddr,
    counters: &Arc<WireCounters>,
) -> io::Result<Counted<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(Counted::new(tcp, Arc::clone(counters)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_counting_stream_counts_both_directions_exactly() {
        let (client, mut server) = tokio::io::duplex(64);
        let counters = Arc::new(WireCounters::default());
        let mut counted = Counted::new(client, Arc::clone(&counters));

        counted.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut request = [0u8; 18];
        server.read_exact(&mut request).await.unwrap();
        // More than the pipe's 64-byte buffer: several reads, all counted.
        let response = vec![b'x'; 200];
        let writer = tokio::spawn(async move { server.write_all(&response).await });
        let mut got = vec![0u8; 200];
        counted.read_exact(&mut got).await.unwrap();
        writer.await.unwrap().unwrap();

        assert_eq!(
            counters.snapshot(),
            WireSnapshot {
                sent: 18,
                received: 200
            }
        );
    }

    #[test]
    fn a_snapshot_difference_is_what_passed_in_between() {
        let earlier = WireSnapshot {
            sent: 100,
            received: 1_000,
        };
        let later = WireSnapshot {
            sent: 150,
            received: 1_900,
        };
        assert_eq!(
            later.since(earlier),
            WireSnapshot {
                sent: 50,
                received: 900
            }
        );
    }
}
