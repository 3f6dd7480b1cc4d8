//! Conditional requests: ETags, `If-None-Match` (-> 304) and `If-Match` (-> 412).
//!
//! An order's ETag is its version, so `If-Match` becomes the core's optimistic-concurrency check
//! and is evaluated under the order's lock: no window between "check" and "write". Resources
//! without a version (products, customers) get an ETag digested from their representation.

use http::HeaderMap;
use http::header::{IF_MATCH, IF_NONE_MATCH};
use sha2::{Digest, Sha256};

use crate::domain::Expect;

/// The strong ETag of a versioned resource.
pub fn version_etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// A strong ETag digested from a representation.
pub fn content_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", crate::gateway::random::hex(&digest[..8]))
}

fn entity_tags(headers: &HeaderMap, name: http::HeaderName) -> Option<Vec<String>> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    Some(
        values
            .iter()
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().to_owned())
            .filter(|tag| !tag.is_empty())
            .collect(),
    )
}

/// True when `If-None-Match` matches `etag` (weak comparison): answer 304 Not Modified.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let strip = |t: &str| t.trim_start_matches("W/").to_owned();
    entity_tags(headers, IF_NONE_MATCH)
        .is_some_and(|tags| tags.iter().any(|t| t == "*" || strip(t) == strip(etag)))
}

/// What `If-Match` asks of a versioned resource. `*` and no header expect nothing; a list of
/// ETags expects one of those versions (strong comparison: weak or foreign tags never match).
pub fn expected_version(headers: &HeaderMap) -> Expect {
    match entity_tags(headers, IF_MATCH) {
        None => Expect::Any,
        Some(tags) if tags.iter().any(|t| t == "*") => Expect::Any,
        Some(tags) => Expect::OneOf(
            tags.iter()
                .filter_map(|t| t.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: http::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_match_becomes_an_expected_version() {
        assert_eq!(expected_version(&HeaderMap::new()), Expect::Any);
        assert_eq!(expected_version(&headers(IF_MATCH, "*")), Expect::Any);
        assert_eq!(
            expected_version(&headers(IF_MATCH, "\"3\", \"5\"")),
            Expect::OneOf(vec![3, 5])
        );
        assert_eq!(
            expected_version(&headers(IF_MATCH, "W/\"3\"")),
            Expect::OneOf(vec![])
        );
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(not_modified(&headers(IF_NONE_MATCH, "W/\"2\""), "\"2\""));
        assert!(not_modified(
            &headers(IF_NONE_MATCH, "\"1\", \"2\""),
            "\"2\""
        ));
        assert!(not_modified(&headers(IF_NONE_MATCH, "*"), "\"2\""));
        assert!(!not_modified(&headers(IF_NONE_MATCH, "\"1\""), "\"2\""));
        assert!(!not_modified(&HeaderMap::new(), "\"2\""));
    }
}
