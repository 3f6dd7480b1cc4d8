//! Closed-loop WebSocket command load: C connections to `/v1/ws`, each sending
//! `{"op":"get_order",...}` and waiting for its `result` before the next, for D seconds. The
//! WebSocket counterpart of `wrk` on `GET /v1/orders/{id}`, for the "round trips per server
//! CPU-second" comparison (`scripts/loadtest.py` reads the server's CPU time around it).
//!
//! ```text
//! ws_roundtrip --target 127.0.0.1:8080 --connections 64 --seconds 10 [--order 1]
//! ```
//! Prints `round_trips N errors E seconds S`; 127.0.0.1 only, and it stops by itself.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// One connection's loop; returns (round trips, errors).
async fn connection(target: String, order: String, until: Instant) -> Result<(u64, u64), Error> {
    let stream = TcpStream::connect(&target).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{target}/v1/ws"), stream).await?;
    let command = format!(r#"{{"op":"get_order","id":"g","order_id":"{order}"}}"#);
    let (mut done, mut errors) = (0, 0);
    while Instant::now() < until {
        ws.send(Message::Text(command.clone().into())).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(reply))) => {
                    if reply.starts_with(r#"{"op":"result""#) {
                        done += 1;
                    } else {
                        errors += 1;
                    }
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(error.into()),
                None => return Ok((done, errors)),
            }
        }
    }
    let _ = ws.close(None).await;
    Ok((done, errors))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = flag(&args, "--target", "127.0.0.1:8080");
    let connections: usize = flag(&args, "--connections", "64").parse()?;
    let seconds: u64 = flag(&args, "--seconds", "10").parse()?;
    let order = flag(&args, "--order", "1");
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(target.clone(), order.clone(), until)))
        .collect();
    let (mut done, mut errors) = (0, 0);
    for task in tasks {
        match task.await? {
            Ok((d, e)) => {
                done += d;
                errors += e;
            }
            Err(error) => {
                eprintln!("a connection failed: {error}");
                errors += 1;
            }
        }
    }
    println!(
        "round_trips {done} errors {errors} seconds {:.2}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
