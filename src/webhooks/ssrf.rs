//! The SSRF guard: webhook URLs may not point into our own network.
//!
//! A URL whose host is, or resolves to, a loopback, private, link-local (which includes the
//! cloud metadata address 169.254.169.254), shared (CGNAT), unspecified or other non-public
//! address is refused, unless its host is on the configured allow-list. It is checked when an
//! endpoint is registered and again before every delivery, and the delivery client resolves
//! names through [`GuardedResolver`], so the address checked is the address connected to: a
//! name that answers a public address to the check and a private one to the connection (DNS
//! rebinding) gets nowhere. Refusals do not say which address a name resolved to, so the guard
//! cannot be used to map internal DNS.

use std::net::IpAddr;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an http(s) URL with a host.
    #[error("{0}")]
    Malformed(String),
    /// The host is or resolves to a non-public address.
    #[error(
        "'{host}' is or resolves to a non-public address; add the host to webhooks.allow_hosts to allow it"
    )]
    NotPublic {
        /// The URL's host.
        host: String,
    },
    /// The host does not resolve.
    #[error("'{0}' does not resolve")]
    Unresolvable(String),
}

/// True for addresses on the public internet.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                ))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the IPv4 address.
            if seg[..6] == [0; 6] || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return !v6.is_loopback()
                    && !v6.is_unspecified()
                    && is_public(embedded(seg[6], seg[7]));
            }
            // 6to4 (2002:a.b.c.d::/48) reaches the IPv4 address it embeds.
            if seg[0] == 0x2002 {
                return is_public(embedded(seg[1], seg[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside)
                || seg[..4] == [0x100, 0, 0, 0] // discard prefix 100::/64
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x2001 && seg[1] == 0)) // Teredo
        }
    }
}

/// Checks `url` against the guard; `allow` lists hosts (names or addresses) let through anyway.
pub async fn check(url: &url::Url, allow: &[String]) -> Result<(), Refused> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::Malformed("the URL must be http or https".into()));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Refused::Malformed("the URL has no host".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if allow.iter().any(|a| a.eq_ignore_ascii_case(bare)) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| Refused::Unresolvable(bare.to_owned()))?
            .map(|sa| sa.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Refused::Unresolvable(bare.to_owned()));
    }
    for addr in addrs {
        if allow.iter().any(|a| a.parse::<IpAddr>() == Ok(addr)) {
            continue;
        }
        if !is_public(addr) {
            return Err(Refused::NotPublic {
                host: bare.to_owned(),
            });
        }
    }
    Ok(())
}

/// The delivery client's DNS resolver: only addresses the guard allows are returned, so a
/// connection can only go where the check said it may.
pub struct GuardedResolver {
    /// Hosts (names or addresses) let through although not public.
    pub allow: Vec<String>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow = self.allow.clone();
        Box::pin(async move {
            let named = allow.iter().any(|a| a.eq_ignore_ascii_case(&host));
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|sa| {
                    named
                        || is_public(sa.ip())
                        || allow.iter().any(|a| a.parse::<IpAddr>() == Ok(sa.ip()))
                })
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused::NotPublic { host })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn the_allow_list_lets_named_hosts_through() {
        let url = url::Url::parse("http://127.0.0.1:9/hook").unwrap();
        assert!(matches!(
            check(&url, &[]).await,
            Err(Refused::NotPublic { .. })
        ));
        assert_eq!(check(&url, &["127.0.0.1".into()]).await, Ok(()));
        let metadata = url::Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(check(&metadata, &["127.0.0.1".into()]).await.is_err());
        let ftp = url::Url::parse("ftp://example.com/").unwrap();
        assert!(matches!(check(&ftp, &[]).await, Err(Refused::Malformed(_))));
    }
}
