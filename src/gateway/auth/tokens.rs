//! Bearer tokens: verifying JWT access tokens, issuing them with refresh tokens, revoking both.
//!
//! Verification trusts two kinds of key, each with exactly one algorithm:
//! - this server's HS256 secret (configured, or random per process), which also signs every token
//!   issued here, under a `kid` derived from it;
//! - public keys of other issuers, from PEM files (RSA: RS256, Ed25519: EdDSA; the file stem is the
//!   `kid`) or a JWKS file (RSA, Ed25519, P-256, P-384; the key's own `kid`).
//!
//! The token header only *names* a key (`kid`); the algorithm a token is checked with is the
//! key's, never the header's. So `alg: none` has no key, and an HS256 token naming an RSA or
//! Ed25519 key is refused before any MAC is computed: a public key's bytes can never be used as an
//! HMAC secret (the classic algorithm-confusion attack). A header with no `kid` falls back to the
//! one key of its algorithm, if there is exactly one.
//!
//! Issued here: short-lived access tokens (JWT, HS256) and opaque refresh tokens. A refresh token
//! is single-use and belongs to a *family* (one client-credentials grant and all its rotations);
//! see [`TokenService::refresh`] for how a stolen, replayed refresh token is caught.
//!
//! Simplification: revoked token ids, refresh-token families and their hashes live in this
//! process's memory (bounded by [`MAX_REVOKED`] and [`MAX_REFRESH_FAMILIES`], swept of expired
//! entries). Several instances behind a load balancer would keep them in a shared store (Redis,
//! with key expiry doing the sweeping), and a restart forgets them: refresh tokens then stop
//! working and revoked access tokens, short-lived, become valid again until they expire.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, ClientConfig};
use crate::domain::Role;
use crate::gateway::random::{hex, secret_bytes};

/// The most revoked access-token ids remembered at once. Each is kept only until its token
/// expires; past the bound a revocation is refused (503) until some expire.
pub const MAX_REVOKED: usize = 100_000;

/// The most live refresh-token families (grants) held at once. A family costs the same memory
/// however often it is rotated. Past the bound new grants are refused (503) until some expire.
pub const MAX_REFRESH_FAMILIES: usize = 100_000;

/// How many of a family's recent access tokens are remembered, to revoke them with the family.
const FAMILY_ACCESS_TOKENS: usize = 8;

/// Expired entries are swept at most this often (in seconds), or whenever a store is full.
const SWEEP_EVERY_SECS: u64 = 60;

type HmacSha256 = Hmac<Sha256>;

/// What a verified access token says about its bearer: all the authentication middleware needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `sub`: who the token speaks for (for a token issued here, the client id).
    pub subject: String,
    /// `role`, with `customer_id` for a customer token: the role the bearer acts in.
    pub role: Role,
    /// `jti`: the token's id, the handle for revoking it.
    pub jti: String,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `client_id`: the OAuth client that obtained the token, when it was issued here.
    pub client_id: Option<String>,
}

/// Why an access token was refused. Every variant is a 401 for the caller; the messages speak
/// about the token only, so they are safe to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or an algorithm that does not exist (`none`).
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The header's `alg` is not the algorithm of the key it names.
    #[error("the token's algorithm does not match its key")]
    Algorithm,
    /// The `kid` names no key this server trusts.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not this server's issuer.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// `aud` does not name this server.
    #[error("the token is meant for another audience")]
    Audience,
    /// A required claim is missing or unusable.
    #[error("the token's claims are invalid: {0}")]
    Claims(&'static str),
    /// The token's `jti` has been revoked.
    #[error("the token has been revoked")]
    Revoked,
}

/// Why a grant (client credentials or refresh) issued no tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Unknown, expired, revoked, or another client's refresh token (OAuth `invalid_grant`).
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidGrant,
    /// A refresh token that was already used: its whole family is now revoked (`invalid_grant`).
    #[error("the refresh token was already used; every token of its grant is revoked")]
    Reused,
    /// [`MAX_REFRESH_FAMILIES`] grants are live (503, retry later).
    #[error("too many live grants; try again later")]
    Full,
}

/// Why a revocation was refused (an unknown or invalid token is not an error: RFC 7009 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// The token was issued to another client.
    #[error("the token was issued to another client")]
    OtherClient,
    /// [`MAX_REVOKED`] token ids are already held (503, retry later).
    #[error("too many revoked tokens are held; try again later")]
    Full,
}

/// A key file, a key set or a client that cannot be used: the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A key file or a key set (`[auth.tokens]`).
    #[error("auth.tokens: {0}")]
    Key(String),
    /// A client's role (`[[auth.clients]]`; a validated configuration has none of these).
    #[error("auth.clients '{id}': {why}")]
    Client {
        /// The client's id.
        id: String,
        /// What is wrong with its role.
        why: String,
    },
}

/// A configured OAuth client, authenticated by [`TokenService::authenticate_client`].
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// The role of its tokens, with the customer they are bound to.
    pub role: Role,
    /// HMAC of the secret under the service's hashing key: the secret itself is not kept.
    secret_hash: [u8; 32],
}

/// A successful grant: what the token endpoint answers.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The JWT access token.
    pub access_token: String,
    /// How long the access token lives.
    pub expires_in: Duration,
    /// The opaque refresh token (single-use).
    pub refresh_token: String,
    /// The granted scope: the client's role name.
    pub scope: &'static str,
}

/// One trusted verification key, with the only algorithm it accepts.
struct VerifyKey {
    key: DecodingKey,
    validation: Validation,
}

/// The claims read from a token. Everything is optional here so that expiry, issuer and audience
/// errors (checked by `jsonwebtoken` after parsing) are reported before a missing custom claim.
#[derive(Deserialize)]
struct WireClaims {
    sub: Option<String>,
    exp: Option<u64>,
    jti: Option<String>,
    role: Option<String>,
    customer_id: Option<String>,
    client_id: Option<String>,
}

/// The claims of a token issued here.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    client_id: &'a str,
}

/// One grant's refresh tokens. Only the current token's hash is kept: a refresh token carries
/// its family id, so presenting *any* earlier token of a live family is recognised as a replay
/// without remembering every used token.
struct Family {
    client_id: String,
    current: [u8; 32],
    expires_at: u64,
    /// The latest access tokens issued from this family (`jti`, `exp`), revoked with it.
    access: Vec<(String, u64)>,
}

#[derive(Default)]
struct RefreshStore {
    families: HashMap<[u8; 16], Family>,
    next_sweep: u64,
}

/// Verifies, issues and revokes tokens. One per server, shared behind an `Arc`.
pub struct TokenService {
    issuer: String,
    audience: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    leeway: u64,
    signing: EncodingKey,
    signing_kid: String,
    keys: HashMap<String, VerifyKey>,
    clients: HashMap<String, Client>,
    /// Keys the HMAC that hashes client secrets and refresh tokens (random per process).
    hash_key: [u8; 32],
    /// Revoked access-token ids and when each can be forgotten (unix seconds).
    revoked: DashMap<String, u64>,
    next_revoked_sweep: AtomicU64,
    /// Bumped after every revocation: what open sessions wait on to end at once.
    revocations: tokio::sync::watch::Sender<u64>,
    refresh: Mutex<RefreshStore>,
}

impl crate::domain::Revocations for TokenService {
    fn is_revoked(&self, id: &str) -> bool {
        self.revoked.contains_key(id)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Builds the service from `[auth]`: reads the key files, hashes the client secrets.
    pub fn new(config: &AuthConfig) -> Result<Self, SetupError> {
        let t = &config.tokens;
        let secret = if t.hs256_secret.is_empty() {
            secret_bytes::<32>().to_vec()
        } else {
            t.hs256_secret.as_bytes().to_vec()
        };
        // A kid derived from the secret: instances sharing a secret agree on it, and it reveals
        // nothing about the secret.
        let signing_kid = format!("hs256-{}", hex(&Sha256::digest(&secret)[..8]));
        let leeway = t.leeway.as_secs();
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v.set_issuer(&[&t.issuer]);
            v.set_audience(&[&t.audience]);
            v.validate_nbf = true;
            v.leeway = leeway;
            v
        };
        let mut keys = HashMap::new();
        let mut add = |kid: String, alg: Algorithm, key: DecodingKey| {
            let entry = VerifyKey {
                key,
                validation: validation(alg),
            };
            match keys.insert(kid.clone(), entry) {
                Some(_) => Err(SetupError::Key(format!("two keys have the kid '{kid}'"))),
                None => Ok(()),
            }
        };
        add(
            signing_kid.clone(),
            Algorithm::HS256,
            DecodingKey::from_secret(&secret),
        )?;
        for path in &t.public_key_files {
            let (kid, alg, key) = pem_public_key(path)?;
            add(kid, alg, key)?;
        }
        if !t.jwks_file.as_os_str().is_empty() {
            for (kid, alg, key) in jwks_keys(&t.jwks_file)? {
                add(kid, alg, key)?;
            }
        }

        let hash_key = secret_bytes::<32>();
        let clients = config
            .clients
            .iter()
            .map(|c: &ClientConfig| {
                let role = Role::parse(&c.role, c.customer_id.as_deref()).map_err(|why| {
                    SetupError::Client {
                        id: c.id.clone(),
                        why,
                    }
                })?;
                let client = Client {
                    id: c.id.clone(),
                    role,
                    secret_hash: keyed_hash(&hash_key, c.secret.as_bytes()),
                };
                Ok((c.id.clone(), client))
            })
            .collect::<Result<_, SetupError>>()?;
        Ok(Self {
            issuer: t.issuer.clone(),
            audience: t.audience.clone(),
            access_ttl: t.access_ttl,
            refresh_ttl: t.refresh_ttl,
            leeway,
            signing: EncodingKey::from_secret(&secret),
            signing_kid,
            keys,
            clients,
            hash_key,
            revoked: DashMap::new(),
            next_revoked_sweep: AtomicU64::new(0),
            revocations: tokio::sync::watch::Sender::new(0),
            refresh: Mutex::new(RefreshStore::default()),
        })
    }

    /// Checks an access token: key (by `kid`), signature with that key's algorithm, `exp`/`nbf`
    /// with the leeway, `iss`, `aud`, the custom claims, and the revocation list.
    pub fn verify_access(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let key = self.key_for(&header)?;
        let data = jsonwebtoken::decode::<WireClaims>(token, &key.key, &key.validation)
            .map_err(|e| token_error(e.kind()))?;
        let claims = data.claims;
        let missing = |what| TokenError::Claims(what);
        let jti = claims
            .jti
            .filter(|j| !j.is_empty())
            .ok_or(missing("no jti"))?;
        let role = claimed_role(claims.role.as_deref(), claims.customer_id.as_deref())?;
        let exp = claims.exp.ok_or(missing("no exp"))?;
        if self.revoked.contains_key(&jti) {
            return Err(TokenError::Revoked);
        }
        Ok(TokenClaims {
            subject: claims.sub.ok_or(missing("no sub"))?,
            role,
            jti,
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            client_id: claims.client_id,
        })
    }

    /// The configured client with this id and secret. The secret is compared as a keyed hash in
    /// constant time, and an unknown id costs the same hash, so timing tells nothing.
    ///
    /// Simplification: client secrets are generated, high-entropy strings, so one HMAC suffices;
    /// passwords chosen by people would need a slow hash (Argon2).
    pub fn authenticate_client(&self, id: &str, secret: &str) -> Option<&Client> {
        let client = self.clients.get(id);
        let expected = client.map_or([0; 32], |c| c.secret_hash);
        let matches = self.hash_matches(secret.as_bytes(), &expected);
        client.filter(|_| matches)
    }

    /// The client-credentials grant (RFC 6749 §4.4): an access token and the first refresh
    /// token of a new family.
    pub fn issue(&self, client: &Client) -> Result<IssuedTokens, GrantError> {
        let now = unix_now();
        let family_id: [u8; 16] = secret_bytes();
        let (refresh_token, current) = self.new_refresh_token(&family_id);
        let (access_token, jti, exp) = self.sign_access(client, now);
        let mut store = self.lock_refresh();
        store.sweep_if_due(now, MAX_REFRESH_FAMILIES);
        if store.families.len() >= MAX_REFRESH_FAMILIES {
            return Err(GrantError::Full);
        }
        store.families.insert(
            family_id,
            Family {
                client_id: client.id.clone(),
                current,
                expires_at: now.saturating_add(self.refresh_ttl.as_secs()),
                access: vec![(jti, exp)],
            },
        );
        drop(store);
        tracing::info!(client_id = %client.id, grant = "client_credentials", "tokens issued");
        Ok(self.issued(client, access_token, refresh_token))
    }

    /// The refresh-token grant (RFC 6749 §6), with rotation: the presented token is spent and a
    /// new access token and a new refresh token (same family) are returned.
    ///
    /// Reuse detection (OAuth 2.0 Security BCP, refresh token rotation): presenting a refresh
    /// token that was already used means two parties hold it, one of them a thief. The server
    /// cannot tell which, so it revokes the whole family: every refresh token of the grant and
    /// its recent access tokens. The legitimate client then authenticates again.
    pub fn refresh(
        &self,
        client: &Client,
        refresh_token: &str,
    ) -> Result<IssuedTokens, GrantError> {
        let now = unix_now();
        let (family_id, presented) =
            parse_refresh_token(refresh_token).ok_or(GrantError::InvalidGrant)?;
        let mut store = self.lock_refresh();
        let family = store
            .families
            .get(&family_id)
            .ok_or(GrantError::InvalidGrant)?;
        if family.client_id != client.id {
            // Another client's token: refused, but the family stays (the caller is not its
            // legitimate holder, and nothing says the legitimate holder lost it).
            return Err(GrantError::InvalidGrant);
        }
        if family.expires_at <= now {
            store.families.remove(&family_id);
            return Err(GrantError::InvalidGrant);
        }
        if !self.hash_matches(&presented, &family.current) {
            // The family id is right but the token is not the current one: an earlier token
            // of this grant, presented again.
            let family = store.families.remove(&family_id);
            drop(store);
            tracing::warn!(client_id = %client.id, "refresh token reused: its family is revoked");
            if let Some(family) = family {
                self.revoke_access_tokens(family.access, now);
            }
            return Err(GrantError::Reused);
        }
        let family = store
            .families
            .get_mut(&family_id)
            .ok_or(GrantError::InvalidGrant)?;
        let (new_refresh, current) = self.new_refresh_token(&family_id);
        let (access_token, jti, exp) = self.sign_access(client, now);
        family.current = current;
        family.expires_at = now.saturating_add(self.refresh_ttl.as_secs());
        family
            .access
            .retain(|(_, e)| e.saturating_add(self.leeway) >= now);
        if family.access.len() >= FAMILY_ACCESS_TOKENS {
            family.access.remove(0);
        }
        family.access.push((jti, exp));
        drop(store);
        tracing::info!(client_id = %client.id, grant = "refresh_token", "tokens issued");
        Ok(self.issued(client, access_token, new_refresh))
    }

    /// RFC 7009 revocation by `client`. A refresh token ends its whole family (with the family's
    /// recent access tokens); an access token's `jti` is refused until the token expires. Only
    /// the client a token was issued to may revoke it (an admin client may also revoke access
    /// tokens issued elsewhere). An unknown, expired or invalid token is not an error.
    ///
    /// No `token_type_hint` is needed: a JWT has dots, a refresh token has none.
    pub fn revoke(&self, client: &Client, token: &str) -> Result<(), RevokeError> {
        let now = unix_now();
        if token.contains('.') {
            self.revoke_access(client, token, now)
        } else {
            self.revoke_refresh(client, token, now)
        }
    }

    fn revoke_refresh(&self, client: &Client, token: &str, now: u64) -> Result<(), RevokeError> {
        let Some((family_id, _)) = parse_refresh_token(token) else {
            return Ok(());
        };
        let mut store = self.lock_refresh();
        match store.families.get(&family_id) {
            None => return Ok(()),
            Some(f) if f.client_id != client.id => return Err(RevokeError::OtherClient),
            Some(_) => {}
        }
        let family = store.families.remove(&family_id);
        drop(store);
        if let Some(family) = family {
            self.revoke_access_tokens(family.access, now);
        }
        tracing::info!(client_id = %client.id, kind = "refresh_token", "token revoked");
        Ok(())
    }

    fn revoke_access(&self, client: &Client, token: &str, now: u64) -> Result<(), RevokeError> {
        let Ok(claims) = self.verify_access(token) else {
            return Ok(());
        };
        let own = claims.client_id.as_deref() == Some(client.id.as_str());
        let foreign_by_admin = claims.client_id.is_none() && client.role == Role::Admin;
        if !own && !foreign_by_admin {
            return Err(RevokeError::OtherClient);
        }
        let exp = claims
            .expires_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.deny(claims.jti, exp, now)?;
        tracing::info!(client_id = %client.id, kind = "access_token", "token revoked");
        Ok(())
    }

    /// How many revoked token ids are held (for tests and metrics).
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// How many refresh-token families are live (for tests and metrics).
    pub fn refresh_family_count(&self) -> usize {
        self.lock_refresh().families.len()
    }

    fn key_for(&self, header: &Header) -> Result<&VerifyKey, TokenError> {
        match &header.kid {
            Some(kid) => self.keys.get(kid).ok_or(TokenError::UnknownKey),
            None => {
                // The header's alg only narrows the search; the key found still decides.
                let mut candidates = self
                    .keys
                    .values()
                    .filter(|k| k.validation.algorithms == [header.alg]);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Ok(key),
                    _ => Err(TokenError::UnknownKey),
                }
            }
        }
    }

    fn sign_access(&self, client: &Client, now: u64) -> (String, String, u64) {
        let jti = hex(&secret_bytes::<16>());
        let exp = now.saturating_add(self.access_ttl.as_secs());
        let claims = IssuedClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &client.id,
            iat: now,
            nbf: now,
            exp,
            jti: &jti,
            role: client.role.name(),
            customer_id: client.role.customer().map(|c| c.to_string()),
            client_id: &client.id,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .expect("HS256 over plain claims with an HMAC key cannot fail");
        (token, jti, exp)
    }

    fn issued(&self, client: &Client, access_token: String, refresh_token: String) -> IssuedTokens {
        IssuedTokens {
            access_token,
            expires_in: self.access_ttl,
            refresh_token,
            scope: client.role.name(),
        }
    }

    /// A refresh token is base64url(family id ‖ 32 random bytes); only its keyed hash is kept.
    fn new_refresh_token(&self, family_id: &[u8; 16]) -> (String, [u8; 32]) {
        let mut raw = family_id.to_vec();
        raw.extend_from_slice(&secret_bytes::<32>());
        let hash = keyed_hash(&self.hash_key, &raw);
        (URL_SAFE_NO_PAD.encode(&raw), hash)
    }

    fn hash_matches(&self, value: &[u8], expected: &[u8; 32]) -> bool {
        let mut mac = HmacSha256::new_from_slice(&self.hash_key).expect("HMAC takes any key size");
        mac.update(value);
        mac.verify_slice(expected).is_ok()
    }

    fn deny(&self, jti: String, exp: u64, now: u64) -> Result<(), RevokeError> {
        // Kept while the token could still pass verification: until exp plus the leeway.
        let forget_at = exp.saturating_add(self.leeway).saturating_add(1);
        let due = self.next_revoked_sweep.load(Ordering::Relaxed);
        if now >= due || self.revoked.len() >= MAX_REVOKED {
            self.revoked.retain(|_, until| *until > now);
            self.next_revoked_sweep
                .store(now + SWEEP_EVERY_SECS, Ordering::Relaxed);
        }
        if self.revoked.len() >= MAX_REVOKED && !self.revoked.contains_key(&jti) {
            tracing::warn!(max = MAX_REVOKED, "revocation list full");
            return Err(RevokeError::Full);
        }
        self.revoked.insert(jti, forget_at);
        // Every open session of this token ends now, not when the token expires.
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    fn revoke_access_tokens(&self, tokens: Vec<(String, u64)>, now: u64) {
        for (jti, exp) in tokens {
            if exp.saturating_add(self.leeway) >= now && self.deny(jti, exp, now).is_err() {
                // They expire within access_ttl anyway.
                break;
            }
        }
    }

    fn lock_refresh(&self) -> std::sync::MutexGuard<'_, RefreshStore> {
        // A panic while holding the lock leaves the map consistent (every change is one insert
        // or remove), so a poisoned lock is still usable.
        self.refresh.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RefreshStore {
    fn sweep_if_due(&mut self, now: u64, max: usize) {
        if now >= self.next_sweep || self.families.len() >= max {
            self.families.retain(|_, f| f.expires_at > now);
            self.next_sweep = now + SWEEP_EVERY_SECS;
        }
    }
}

/// The role a token's `role` and `customer_id` claims name. The names are taken exactly as
/// written (configuration forgives surrounding spaces, a signed token has none to forgive), and
/// each way a pair can be wrong has its own message.
fn claimed_role(name: Option<&str>, customer_id: Option<&str>) -> Result<Role, TokenError> {
    let customer_id = customer_id.filter(|c| !c.is_empty());
    let why = match (name, customer_id) {
        (None, _) => "no role",
        (Some("admin"), None) => return Ok(Role::Admin),
        (Some("readonly"), None) => return Ok(Role::Readonly),
        (Some("customer"), Some(id)) => {
            return Role::parse("customer", Some(id))
                .map_err(|_| TokenError::Claims("customer_id is not a customer id"));
        }
        (Some("customer"), None) => "a customer token needs customer_id",
        (Some("admin" | "readonly"), Some(_)) => "only a customer token has a customer_id",
        (Some(_), _) => "role is not admin, customer or readonly",
    };
    Err(TokenError::Claims(why))
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidKeyFormat => TokenError::Algorithm,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => TokenError::Claims("no exp"),
            "iss" => TokenError::Issuer,
            "aud" => TokenError::Audience,
            _ => TokenError::Claims("no sub"),
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => {
            TokenError::Claims("a registered claim has the wrong type")
        }
        _ => TokenError::Malformed,
    }
}

fn parse_refresh_token(token: &str) -> Option<([u8; 16], Vec<u8>)> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() != 48 {
        return None;
    }
    let family: [u8; 16] = raw[..16].try_into().ok()?;
    Some((family, raw))
}

/// Reads a PEM public key; the file stem is its `kid`, its type its algorithm.
fn pem_public_key(path: &Path) -> Result<(String, Algorithm, DecodingKey), SetupError> {
    let shown = path.display();
    let pem =
        std::fs::read(path).map_err(|e| SetupError::Key(format!("cannot read {shown}: {e}")))?;
    if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Err(SetupError::Key(format!(
            "{shown} holds a private key; public_key_files takes public keys only"
        )));
    }
    let kid = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SetupError::Key(format!("{shown}: no file name to use as kid")))?
        .to_owned();
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((kid, Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((kid, Algorithm::EdDSA, key));
    }
    Err(SetupError::Key(format!(
        "{shown} is not an RSA or Ed25519 public key in PEM"
    )))
}

/// Reads a JWKS file: every signing key with its `kid` and one asymmetric algorithm.
fn jwks_keys(path: &Path) -> Result<Vec<(String, Algorithm, DecodingKey)>, SetupError> {
    let shown = path.display();
    let text =
        std::fs::read(path).map_err(|e| SetupError::Key(format!("cannot read {shown}: {e}")))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| SetupError::Key(format!("{shown} is not a JWKS: {e}")))?;
    set.keys
        .iter()
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .map(|jwk| {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| SetupError::Key(format!("{shown}: a key has no kid")))?;
            let alg = jwk_algorithm(jwk).ok_or_else(|| {
                SetupError::Key(format!("{shown}: key '{kid}' has no usable algorithm"))
            })?;
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| SetupError::Key(format!("{shown}: key '{kid}': {e}")))?;
            Ok((kid, alg, key))
        })
        .collect()
}

/// The one algorithm a JWK is used with: its `alg` if given and of the key's family, otherwise
/// the usual one for its type. Symmetric keys are refused: the only HMAC key is the server's.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let (family, default) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, Algorithm::RS256),
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (AlgorithmFamily::Ed, Algorithm::EdDSA)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (AlgorithmFamily::Ec, Algorithm::ES256)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
            (AlgorithmFamily::Ec, Algorithm::ES384)
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(named) => Algorithm::try_from(named).ok()?,
        None => default,
    };
    (alg.family() == family && (family != AlgorithmFamily::Ec || alg == default)).then_some(alg)
}

fn keyed_hash(key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(value);
    mac.finalize().into_bytes().into()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::config::TokensConfig;
    use crate::domain::model::CustomerId;

    const SECRET: &str = "unit-test-hs256-secret-of-32-bytes!!";

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/auth")
            .join(name)
    }

    fn client(id: &str, role: &str, customer: Option<&str>) -> ClientConfig {
        ClientConfig {
            id: id.into(),
            secret: format!("{id}-secret-0123456789"),
            role: role.into(),
            customer_id: customer.map(Into::into),
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            tokens: TokensConfig {
                hs256_secret: SECRET.into(),
                public_key_files: vec![fixture("test-rsa.pem"), fixture("test-ed25519.pem")],
                jwks_file: fixture("test-jwks.json"),
                ..TokensConfig::default()
            },
            clients: vec![
                client("shop", "customer", Some("1")),
                client("ops", "admin", None),
            ],
            ..AuthConfig::default()
        }
    }

    fn service() -> TokenService {
        TokenService::new(&config()).unwrap()
    }

    fn the_client<'s>(service: &'s TokenService, id: &str) -> &'s Client {
        service
            .authenticate_client(id, &format!("{id}-secret-0123456789"))
            .unwrap()
    }

    /// Valid claims for an admin, with `changes` merged in (a null removes a claim).
    fn claims(changes: Value) -> Value {
        let now = unix_now();
        let mut claims = json!({
            "iss": "polyport", "aud": "polyport", "sub": "someone", "jti": "jti-1",
            "role": "admin", "iat": now, "exp": now + 600,
        });
        for (name, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => claims.as_object_mut().unwrap().remove(name),
                _ => claims
                    .as_object_mut()
                    .unwrap()
                    .insert(name.clone(), value.clone()),
            };
        }
        claims
    }

    fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(Into::into);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        let service = service();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        sign(Algorithm::HS256, &key, Some(&service.signing_kid), claims)
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("test-rsa-private.pem")).unwrap()).unwrap()
    }

    fn ed_key() -> EncodingKey {
        EncodingKey::from_ed_pem(&std::fs::read(fixture("test-ed25519-private.pem")).unwrap())
            .unwrap()
    }

    #[test]
    fn an_issued_access_token_verifies_with_its_claims() {
        let service = service();
        let shop = the_client(&service, "shop");
        let issued = service.issue(shop).unwrap();
        let claims = service.verify_access(&issued.access_token).unwrap();
        assert_eq!(claims.subject, "shop");
        assert_eq!(claims.role, Role::Customer(CustomerId(1)));
        assert_eq!(claims.client_id.as_deref(), Some("shop"));
        assert_eq!(issued.scope, "customer");
        assert_eq!(issued.expires_in, Duration::from_secs(15 * 60));
        let header = jsonwebtoken::decode_header(&issued.access_token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some(service.signing_kid.as_str()));
    }

    #[test]
    fn issued_tokens_carry_the_role_name_and_only_a_customer_token_a_customer_id() {
        let service = service();
        let payload = |id: &str| {
            let token = service
                .issue(the_client(&service, id))
                .unwrap()
                .access_token;
            let body = token.split('.').nth(1).unwrap();
            serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
        };
        let shop = payload("shop");
        assert_eq!(
            (&shop["role"], &shop["customer_id"]),
            (&json!("customer"), &json!("1"))
        );
        let ops = payload("ops");
        assert_eq!(ops["role"], "admin");
        assert!(ops.get("customer_id").is_none(), "{ops}");
        let claims = service
            .verify_access(
                &service
                    .issue(the_client(&service, "ops"))
                    .unwrap()
                    .access_token,
            )
            .unwrap();
        assert_eq!(claims.role, Role::Admin);
    }

    #[test]
    fn a_client_whose_role_cannot_be_built_stops_the_start() {
        for (role, customer) in [("customer", None), ("admin", Some("1")), ("root", None)] {
            let config = AuthConfig {
                clients: vec![client("acme", role, customer)],
                ..AuthConfig::default()
            };
            let error = TokenService::new(&config).unwrap_err().to_string();
            assert!(error.starts_with("auth.clients 'acme': "), "{error}");
        }
    }

    #[test]
    fn a_token_from_a_server_with_another_secret_is_refused() {
        let other = TokenService::new(&AuthConfig::default()).unwrap();
        let config = AuthConfig {
            clients: vec![client("ops", "admin", None)],
            ..AuthConfig::default()
        };
        let issuer = TokenService::new(&config).unwrap();
        let token = issuer
            .issue(the_client(&issuer, "ops"))
            .unwrap()
            .access_token;
        // Random secrets: another kid, so the key is unknown.
        assert_eq!(other.verify_access(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn time_and_audience_claims_are_checked() {
        let service = service();
        let now = unix_now();
        let cases = [
            (json!({"exp": now - 60}), TokenError::Expired),
            (json!({"nbf": now + 60}), TokenError::NotYetValid),
            (json!({"iss": "someone-else"}), TokenError::Issuer),
            (json!({"aud": "another-api"}), TokenError::Audience),
            (
                json!({"aud": ["another-api", "a-third"]}),
                TokenError::Audience,
            ),
            (json!({"iss": null}), TokenError::Issuer),
            (json!({"aud": null}), TokenError::Audience),
            (json!({"exp": null}), TokenError::Claims("no exp")),
            (json!({"jti": null}), TokenError::Claims("no jti")),
            (
                json!({"role": "root"}),
                TokenError::Claims("role is not admin, customer or readonly"),
            ),
            (
                json!({"role": "customer"}),
                TokenError::Claims("a customer token needs customer_id"),
            ),
            (json!({"role": null}), TokenError::Claims("no role")),
            (
                json!({"role": " admin"}),
                TokenError::Claims("role is not admin, customer or readonly"),
            ),
            (
                json!({"role": "root", "customer_id": "1"}),
                TokenError::Claims("role is not admin, customer or readonly"),
            ),
            (
                json!({"customer_id": "1"}),
                TokenError::Claims("only a customer token has a customer_id"),
            ),
            (
                json!({"role": "readonly", "customer_id": "1"}),
                TokenError::Claims("only a customer token has a customer_id"),
            ),
            (
                json!({"role": "customer", "customer_id": "c1"}),
                TokenError::Claims("customer_id is not a customer id"),
            ),
        ];
        for (changes, expected) in cases {
            let token = hs256(&claims(changes.clone()));
            assert_eq!(service.verify_access(&token), Err(expected), "{changes}");
        }
    }

    #[test]
    fn the_leeway_tolerates_small_clock_skew() {
        let service = service();
        let now = unix_now();
        for changes in [json!({"exp": now - 2}), json!({"nbf": now + 2})] {
            let token = hs256(&claims(changes.clone()));
            assert!(service.verify_access(&token).is_ok(), "{changes}");
        }
        let aud_list = hs256(&claims(json!({"aud": ["other", "polyport"]})));
        assert!(service.verify_access(&aud_list).is_ok());
    }

    #[test]
    fn alg_none_is_refused() {
        let service = service();
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        for header in [
            json!({"alg": "none", "typ": "JWT"}),
            json!({"alg": "none", "kid": service.signing_kid}),
            json!({"alg": "None"}),
        ] {
            let unsigned = format!("{}.{}.", b64(&header), b64(&claims(json!({}))));
            assert!(service.verify_access(&unsigned).is_err(), "{header}");
        }
    }

    #[test]
    fn an_hs256_token_keyed_with_a_public_key_is_refused() {
        // The algorithm-confusion attack: the attacker knows the public key, signs an HS256
        // token with its bytes as the HMAC secret, and names the key.
        let service = service();
        for (public, kid) in [
            ("test-rsa.pem", "test-rsa"),
            ("test-ed25519.pem", "test-ed25519"),
            ("test-rsa.pem", "test-rsa-jwks"),
        ] {
            let forged = EncodingKey::from_secret(&std::fs::read(fixture(public)).unwrap());
            let with_kid = sign(Algorithm::HS256, &forged, Some(kid), &claims(json!({})));
            assert_eq!(service.verify_access(&with_kid), Err(TokenError::Algorithm));
            // Without a kid the only HS256 key is the server's secret.
            let without = sign(Algorithm::HS256, &forged, None, &claims(json!({})));
            assert_eq!(service.verify_access(&without), Err(TokenError::Signature));
        }
    }

    #[test]
    fn rs256_and_eddsa_tokens_from_configured_keys_verify() {
        let service = service();
        let claims = claims(json!({"iss": "polyport", "sub": "partner"}));
        for (alg, key, kid) in [
            (Algorithm::RS256, rsa_key(), Some("test-rsa")),
            (Algorithm::RS256, rsa_key(), Some("test-rsa-jwks")),
            (Algorithm::EdDSA, ed_key(), Some("test-ed25519")),
            (Algorithm::EdDSA, ed_key(), Some("test-ed25519-jwks")),
        ] {
            let token = sign(alg, &key, kid, &claims);
            let verified = service.verify_access(&token);
            assert_eq!(verified.map(|c| c.subject), Ok("partner".into()), "{kid:?}");
        }
        // The key's algorithm, not the header's: an RS256 token naming the Ed25519 key fails.
        let token = sign(Algorithm::RS256, &rsa_key(), Some("test-ed25519"), &claims);
        assert_eq!(service.verify_access(&token), Err(TokenError::Algorithm));
        // Two RS256 keys: a token without kid names none of them.
        let token = sign(Algorithm::RS256, &rsa_key(), None, &claims);
        assert_eq!(service.verify_access(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let service = service();
        let token = service
            .issue(the_client(&service, "shop"))
            .unwrap()
            .access_token;
        let (rest, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let bad_signature = format!("{rest}.{flipped}{}", &signature[1..]);
        assert_eq!(
            service.verify_access(&bad_signature),
            Err(TokenError::Signature)
        );
        // Payload swapped for an admin one, signature kept.
        let (header, _) = rest.split_once('.').unwrap();
        let admin = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        let swapped = format!("{header}.{admin}.{signature}");
        assert_eq!(service.verify_access(&swapped), Err(TokenError::Signature));
        assert_eq!(
            service.verify_access("not.a.jwt"),
            Err(TokenError::Malformed)
        );
        assert_eq!(service.verify_access(""), Err(TokenError::Malformed));
    }

    #[test]
    fn an_unknown_kid_is_refused() {
        let service = service();
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let token = sign(Algorithm::HS256, &key, Some("nobody"), &claims(json!({})));
        assert_eq!(service.verify_access(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_revoked_access_token_is_refused_and_swept_after_expiry() {
        let service = service();
        let shop = the_client(&service, "shop");
        let token = service.issue(shop).unwrap().access_token;
        // Another client may not revoke it.
        let ops = the_client(&service, "ops");
        assert_eq!(service.revoke(ops, &token), Err(RevokeError::OtherClient));
        assert!(service.verify_access(&token).is_ok());
        service.revoke(shop, &token).unwrap();
        assert_eq!(service.verify_access(&token), Err(TokenError::Revoked));
        // Revoking again, or revoking garbage, is not an error.
        service.revoke(shop, &token).unwrap();
        service.revoke(shop, "garbage").unwrap();
        assert_eq!(service.revoked_count(), 1);
        // An entry whose token has expired is swept at the next revocation.
        let later = unix_now() + 3_600;
        service.next_revoked_sweep.store(0, Ordering::Relaxed);
        service.deny("another".into(), later + 600, later).unwrap();
        assert_eq!(service.revoked_count(), 1);
    }

    #[test]
    fn an_admin_client_may_revoke_a_token_issued_elsewhere() {
        let service = service();
        let foreign = sign(
            Algorithm::EdDSA,
            &ed_key(),
            Some("test-ed25519"),
            &claims(json!({})),
        );
        let shop = the_client(&service, "shop");
        assert_eq!(
            service.revoke(shop, &foreign),
            Err(RevokeError::OtherClient)
        );
        service
            .revoke(the_client(&service, "ops"), &foreign)
            .unwrap();
        assert_eq!(service.verify_access(&foreign), Err(TokenError::Revoked));
    }

    #[test]
    fn a_refresh_token_rotates_and_its_reuse_revokes_the_family() {
        let service = service();
        let shop = the_client(&service, "shop");
        let first = service.issue(shop).unwrap();
        let second = service.refresh(shop, &first.refresh_token).unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert_ne!(second.access_token, first.access_token);
        let third = service.refresh(shop, &second.refresh_token).unwrap();
        assert!(service.verify_access(&third.access_token).is_ok());

        // The first token again: a replay. Every token of the grant is revoked.
        assert_eq!(
            service.refresh(shop, &first.refresh_token).unwrap_err(),
            GrantError::Reused
        );
        assert_eq!(
            service.refresh(shop, &third.refresh_token).unwrap_err(),
            GrantError::InvalidGrant
        );
        for access in [
            &first.access_token,
            &second.access_token,
            &third.access_token,
        ] {
            assert_eq!(service.verify_access(access), Err(TokenError::Revoked));
        }
        assert_eq!(service.refresh_family_count(), 0);
    }

    #[test]
    fn a_refresh_token_works_only_for_its_client_and_until_it_expires() {
        let service = service();
        let shop = the_client(&service, "shop");
        let issued = service.issue(shop).unwrap();
        let ops = the_client(&service, "ops");
        assert_eq!(
            service.refresh(ops, &issued.refresh_token).unwrap_err(),
            GrantError::InvalidGrant
        );
        assert_eq!(
            service.revoke(ops, &issued.refresh_token),
            Err(RevokeError::OtherClient)
        );
        // Still usable by its own client afterwards.
        assert!(service.refresh(shop, &issued.refresh_token).is_ok());
        for garbage in ["", "abc", &URL_SAFE_NO_PAD.encode([7u8; 48])] {
            assert_eq!(
                service.refresh(shop, garbage).unwrap_err(),
                GrantError::InvalidGrant
            );
        }

        let mut config = config();
        config.tokens.refresh_ttl = Duration::ZERO;
        let service = TokenService::new(&config).unwrap();
        let shop = the_client(&service, "shop");
        let issued = service.issue(shop).unwrap();
        assert_eq!(
            service.refresh(shop, &issued.refresh_token).unwrap_err(),
            GrantError::InvalidGrant
        );
    }

    #[test]
    fn revoking_a_refresh_token_ends_its_family_and_its_access_tokens() {
        let service = service();
        let shop = the_client(&service, "shop");
        let issued = service.issue(shop).unwrap();
        service.revoke(shop, &issued.refresh_token).unwrap();
        assert_eq!(
            service.refresh(shop, &issued.refresh_token).unwrap_err(),
            GrantError::InvalidGrant
        );
        assert_eq!(
            service.verify_access(&issued.access_token),
            Err(TokenError::Revoked)
        );
    }

    #[test]
    fn client_secrets_are_checked() {
        let service = service();
        assert!(
            service
                .authenticate_client("shop", "shop-secret-0123456789")
                .is_some()
        );
        assert!(
            service
                .authenticate_client("shop", "shop-secret-012345678")
                .is_none()
        );
        assert!(service.authenticate_client("shop", "").is_none());
        assert!(
            service
                .authenticate_client("nobody", "shop-secret-0123456789")
                .is_none()
        );
    }

    #[test]
    fn unusable_key_files_stop_the_start() {
        let with = |files: Vec<PathBuf>, jwks: PathBuf| {
            let mut config = AuthConfig::default();
            config.tokens.public_key_files = files;
            config.tokens.jwks_file = jwks;
            TokenService::new(&config)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let private = with(vec![fixture("test-rsa-private.pem")], PathBuf::new());
        assert!(private.unwrap_err().contains("private key"));
        assert!(with(vec![fixture("missing.pem")], PathBuf::new()).is_err());
        assert!(with(vec![fixture("test-jwks.json")], PathBuf::new()).is_err());
        assert!(with(vec![], fixture("test-rsa.pem")).is_err());
        // The same kid twice.
        let twice = vec![fixture("test-rsa.pem"), fixture("test-rsa.pem")];
        assert!(
            with(twice, PathBuf::new())
                .unwrap_err()
                .contains("two keys have the kid")
        );

        let dir = std::env::temp_dir().join(format!("polyport-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let oct = dir.join("oct.json");
        std::fs::write(&oct, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k"}]}"#).unwrap();
        assert!(
            with(vec![], oct)
                .unwrap_err()
                .contains("no usable algorithm")
        );
        let mislabelled = dir.join("mislabelled.json");
        let jwks: Value =
            serde_json::from_slice(&std::fs::read(fixture("test-jwks.json")).unwrap()).unwrap();
        let mut rsa = jwks["keys"][1].clone();
        rsa["alg"] = json!("HS256");
        std::fs::write(&mislabelled, json!({"keys": [rsa]}).to_string()).unwrap();
        assert!(with(vec![], mislabelled).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
