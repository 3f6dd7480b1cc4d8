//! Authentication: bearer tokens ([`tokens`]) and the OAuth 2.0 endpoints that issue and revoke
//! them ([`oauth`]).

pub mod oauth;
pub mod tokens;
