//! Authentication: bearer tokens ([`tokens`]).

pub mod tokens;
