//! Client deadlines: the `grpc-timeout` request header.
//!
//! tonic's own server enforces it, but polyport serves tonic's services from its shared router,
//! so the adapter reads the header itself: unary calls check it before working, streams stop
//! with DEADLINE_EXCEEDED when it passes.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// The instant the client's deadline passes, if it sent one.
pub fn from_metadata(metadata: &MetadataMap) -> Option<Instant> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    parse(raw).map(|d| Instant::now() + d)
}

/// Parses `1-8 digits` + unit (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC HTTP/2 spec defines it.
pub fn parse(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Completes when `deadline` passes, or never when there is none.
pub async fn passed(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_junk() {
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "1", "1s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
