//! API keys: configured with a name, a role and optionally a customer; kept only as SHA-256
//! hashes and compared in constant time.
//!
//! A presented key is hashed and compared with *every* configured hash, without stopping at the
//! first match, so the time taken says nothing about which key (or how much of one) matched.
//! Keys are long random strings, so a plain SHA-256 is enough; passwords chosen by people would
//! need a slow hash (argon2) instead.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiKeyConfig;
use crate::domain::{Principal, Role};

/// One configured key.
#[derive(Debug, Clone)]
struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// The configured API keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    entries: Vec<Entry>,
}

impl ApiKeys {
    /// Builds the key set from configuration entries; the error names the bad entry.
    pub fn from_config(entries: &[ApiKeyConfig]) -> Result<Self, String> {
        let mut keys = Self::default();
        for (i, entry) in entries.iter().enumerate() {
            let at = |what: String| format!("auth.api_keys[{i}] ({}): {what}", entry.name);
            if entry.name.trim().is_empty() {
                return Err(at("needs a name".into()));
            }
            let role = Role::parse(&entry.role, entry.customer_id.as_deref()).map_err(at)?;
            let hash = match (&entry.secret, &entry.sha256) {
                (Some(secret), None) => {
                    check_secret(secret).map_err(at)?;
                    digest(secret)
                }
                (None, Some(hex)) => {
                    parse_hex(hex).ok_or_else(|| at("sha256 must be 64 hex digits".into()))?
                }
                _ => return Err(at("give exactly one of `secret` and `sha256`".into())),
            };
            keys.insert(&entry.name, role, hash)?;
        }
        Ok(keys)
    }

    /// Parses the env/flag form `name:role:secret[:customer_id]`.
    pub fn parse_spec(spec: &str) -> Result<ApiKeyConfig, String> {
        let parts: Vec<&str> = spec.trim().split(':').collect();
        let (name, role, secret, customer) = match parts.as_slice() {
            [name, role, secret] => (name, role, secret, None),
            [name, role, secret, customer] => (name, role, secret, Some(*customer)),
            _ => {
                return Err(format!(
                    "API key '{}' must look like name:role:secret[:customer_id]",
                    parts.first().copied().unwrap_or_default()
                ));
            }
        };
        Ok(ApiKeyConfig {
            name: (*name).to_owned(),
            role: (*role).to_owned(),
            customer_id: customer.map(str::to_owned),
            secret: Some((*secret).to_owned()),
            sha256: None,
        })
    }

    /// Adds a key given in clear (the dev-mode admin key).
    pub fn add(&mut self, name: &str, role: Role, secret: &str) -> Result<(), String> {
        self.insert(name, role, digest(secret))
    }

    fn insert(&mut self, name: &str, role: Role, hash: [u8; 32]) -> Result<(), String> {
        if self.entries.iter().any(|e| e.hash == hash) {
            return Err(format!(
                "API key '{name}' has the same secret as another key"
            ));
        }
        // The name is the principal's identity (logs, rate limits, idempotency keys): two keys
        // under one name would share them.
        let principal = Principal::new(format!("key:{name}"), role);
        if self
            .entries
            .iter()
            .any(|e| e.principal.name == principal.name)
        {
            return Err(format!("two API keys are named '{name}'"));
        }
        self.entries.push(Entry { hash, principal });
        Ok(())
    }

    /// The principal `presented` belongs to, if any (constant time in the number of keys).
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let hash = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&hash)) {
                found = Some(&entry.principal);
            }
        }
        found.cloned()
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn check_secret(secret: &str) -> Result<(), String> {
    if secret.len() < 8 {
        Err("the secret must be at least 8 characters".into())
    } else {
        Ok(())
    }
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A fresh random key: `pp_` and 32 hex digits (128 bits from the OS RNG).
pub fn generate() -> String {
    format!(
        "pp_{}",
        crate::gateway::random::hex(&crate::gateway::random::secret_bytes::<16>())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::CustomerId;

    fn key(name: &str, role: &str, customer: Option<&str>, secret: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            role: role.into(),
            customer_id: customer.map(Into::into),
            secret: Some(secret.into()),
            sha256: None,
        }
    }

    #[test]
    fn a_configured_key_maps_to_its_principal_and_others_to_nobody() {
        let hashed = ApiKeyConfig {
            name: "ops".into(),
            role: "readonly".into(),
            sha256: Some(
                "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b".into(), // "secret"
            ),
            ..Default::default()
        };
        let keys = ApiKeys::from_config(&[
            key("ada", "customer", Some("1"), "ada-secret-1"),
            key("root", "admin", None, "root-secret-1"),
            hashed,
        ])
        .unwrap();
        let ada = keys.verify("ada-secret-1").unwrap();
        assert_eq!(&*ada.name, "key:ada");
        assert_eq!(ada.role, Role::Customer(CustomerId(1)));
        assert_eq!(keys.verify("root-secret-1").unwrap().role, Role::Admin);
        assert_eq!(keys.verify("secret").unwrap().role, Role::Readonly);
        assert!(keys.verify("ada-secret-2").is_none());
        assert!(keys.verify("").is_none());
    }

    #[test]
    fn bad_entries_are_refused_with_their_position() {
        let cases = [
            key("", "admin", None, "long-enough"),
            key("a", "root", None, "long-enough"),
            key("a", "customer", None, "long-enough"),
            key("a", "admin", None, "short"),
            ApiKeyConfig {
                name: "a".into(),
                role: "admin".into(),
                ..Default::default()
            },
        ];
        for case in cases {
            let error = ApiKeys::from_config(std::slice::from_ref(&case)).unwrap_err();
            assert!(error.starts_with("auth.api_keys[0]"), "{case:?}: {error}");
        }
        let twice = [
            key("a", "admin", None, "same-secret"),
            key("b", "readonly", None, "same-secret"),
        ];
        assert!(ApiKeys::from_config(&twice).is_err());
        let same_name = [
            key("a", "admin", None, "first-secret"),
            key("a", "customer", Some("3"), "second-secret"),
        ];
        assert!(ApiKeys::from_config(&same_name).is_err());
    }

    #[test]
    fn the_env_form_parses_with_and_without_a_customer() {
        let with = ApiKeys::parse_spec("ada:customer:s3cret-key:4").unwrap();
        assert_eq!(with.customer_id.as_deref(), Some("4"));
        assert_eq!(with.secret.as_deref(), Some("s3cret-key"));
        assert_eq!(
            ApiKeys::parse_spec("ops:admin:s3cret-key").unwrap().role,
            "admin"
        );
        assert!(ApiKeys::parse_spec("just-a-secret").is_err());
    }
}
