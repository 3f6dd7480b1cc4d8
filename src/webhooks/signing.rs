//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! Secrets are `whsec_` + base64 of random bytes; the key is the decoded bytes. A receiver
//! recomputes the HMAC and compares in constant time; several signatures may be sent,
//! space-separated, while a rotated secret is still in its grace period.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The most signatures one `webhook-signature` header may carry (one per active secret).
pub const MAX_SIGNATURES: usize = 8;

/// A signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh random secret (24 bytes from the OS RNG).
    pub fn generate() -> Self {
        Self {
            key: crate::gateway::random::secret_bytes::<24>().to_vec(),
        }
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Option<Self> {
        let key = STANDARD.decode(text.strip_prefix("whsec_")?).ok()?;
        (key.len() >= 16).then_some(Self { key })
    }

    /// The `whsec_...` form, shown to the endpoint's owner once.
    pub fn expose(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// True when any `v1,` signature in the space-separated `header` is this secret's
    /// signature of the message. The MAC is computed once and each candidate compared in
    /// constant time; a header with more than [`MAX_SIGNATURES`] entries is refused outright,
    /// so a client cannot make us hash its body thousands of times.
    pub fn verifies(&self, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
        let candidates: Vec<&str> = header.split_whitespace().collect();
        if candidates.len() > MAX_SIGNATURES {
            return false;
        }
        let expected = self.mac(id, timestamp, body).finalize().into_bytes();
        let mut matched = false;
        for signature in candidates {
            let tag = signature
                .strip_prefix("v1,")
                .and_then(|encoded| STANDARD.decode(encoded).ok());
            if let Some(tag) = tag {
                // Constant time in the tag's contents (the length is public).
                let same_length = tag.len() == expected.len();
                let equal = same_length
                    && tag
                        .iter()
                        .zip(expected.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0;
                matched |= equal;
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_signature_verifies() {
        // The example from the Standard Webhooks specification.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.verifies(
            &format!("v1,bm9wZQ== {signature}"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body
        ));
        assert!(!secret.verifies(&signature, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body));
        assert!(!secret.verifies(
            &signature,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b"{}"
        ));
    }

    #[test]
    fn generated_secrets_round_trip() {
        let secret = Secret::generate();
        assert_eq!(Secret::parse(&secret.expose()), Some(secret));
        assert_eq!(Secret::parse("whsec_short"), None);
        assert_eq!(Secret::parse("nope"), None);
    }
}
