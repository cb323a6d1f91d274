//! SSRF protection: webhook targets must be http(s), and may not reach loopback, private,
//! link-local (cloud metadata) or other non-public addresses. Names are checked after
//! resolution, by the HTTP client's resolver, so a name cannot be re-pointed between
//! the check and the connection.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is a public unicast address a webhook may be sent to (the one
/// classification the webhooks service also applies to literal targets).
pub use domain::net::is_public;

/// Why a target is refused before any connection.
pub fn check_target(url: &reqwest::Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "target scheme {} is not http or https",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str() else {
        return Err("target has no host".to_owned());
    };
    // Names are checked by the resolver instead.
    let Some(ip) = domain::net::literal_ip(host) else {
        return Ok(());
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(format!("target address {ip} is not a public address"))
    }
}

/// A resolver that drops every non-public address and fails when none is left.
#[derive(Debug, Default)]
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_targets_are_checked_unless_allowed() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(check_target(&url("http://127.0.0.1:9/x"), false).is_err());
        assert!(check_target(&url("http://[::1]/x"), false).is_err());
        assert!(check_target(&url("http://127.0.0.1:9/x"), true).is_ok());
        assert!(check_target(&url("https://example.com/x"), false).is_ok());
        assert!(check_target(&url("ftp://example.com/x"), true).is_err());
    }
}
