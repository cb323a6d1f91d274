//! Which network addresses a webhook may be sent to: one classification shared by the
//! webhooks service (literal targets refused at create and update time) and the webhook
//! worker (every resolved address checked at delivery time).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address a webhook may be sent to: not loopback,
/// private, link-local (which holds the cloud metadata address), carrier-grade NAT,
/// multicast, documentation, benchmarking or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, including the cloud metadata address
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18/15
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7 (incl. fd00:ec2::254)
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first == 0x0064 && second == 0xff9b)) // NAT64 to anything
}

/// The address a URL host names literally, if it does: an IPv4 address in any form a
/// browser-style URL parser accepts (`127.0.0.1`, `127.1`, `2130706433`, `0x7f.0.0.1`),
/// or an IPv6 address, bracketed or not.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    let host = host.trim_end_matches('.');
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(ip);
    }
    literal_ipv4(host).map(IpAddr::V4)
}

/// The WHATWG IPv4 forms: one to four dot-separated decimal, `0x` hex or `0`-led octal
/// numbers; the last fills the bytes the others leave.
fn literal_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        let lower = part.to_ascii_lowercase();
        let parsed = if let Some(hex) = lower.strip_prefix("0x") {
            if hex.is_empty() {
                Some(0)
            } else {
                u64::from_str_radix(hex, 16).ok()
            }
        } else if lower.len() > 1 && lower.starts_with('0') {
            u64::from_str_radix(&lower[1..], 8).ok()
        } else if !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_digit()) {
            lower.parse::<u64>().ok()
        } else {
            None
        };
        numbers.push(parsed?);
    }
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - leading.len() as u32);
    if rest_bits < 64 && *last >= 1u64 << rest_bits {
        return None;
    }
    let mut value = *last;
    for (i, n) in leading.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// Host names that always mean this machine or the cloud's metadata service.
fn is_internal_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host == "metadata.google.internal"
}

/// Why a webhook target's host may not be used, judged from the URL alone (no DNS): a
/// literal non-public address or a name that always means this machine or a metadata
/// service. Names that resolve to such addresses are refused at delivery time instead.
pub fn refuse_host(host: &str) -> Option<String> {
    if is_internal_name(host) {
        return Some(format!("{host} is not a public host"));
    }
    match literal_ip(host) {
        Some(ip) if !is_public(ip) => Some(format!(
            "{ip} is a loopback, private, link-local or otherwise non-public address"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip(s)), "{s}");
        }
        for s in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip(s)), "{s}");
        }
    }

    #[test]
    fn every_literal_form_of_an_address_is_recognised() {
        let loopback = Some(ip("127.0.0.1"));
        for host in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f.0.0.1",
            "0177.0.0.1",
        ] {
            assert_eq!(literal_ip(host), loopback, "{host}");
        }
        assert_eq!(literal_ip("[::1]"), Some(ip("::1")));
        assert_eq!(literal_ip("example.com"), None);
        assert_eq!(literal_ip("1.2.3.4.5"), None);
        assert_eq!(literal_ip("256.0.0.1"), None);
    }

    #[test]
    fn internal_hosts_are_refused_and_public_ones_are_not() {
        for host in [
            "127.0.0.1",
            "[::1]",
            "169.254.169.254",
            "10.0.0.1",
            "localhost",
            "api.localhost",
            "metadata.google.internal",
            "2130706433",
        ] {
            assert!(refuse_host(host).is_some(), "{host}");
        }
        for host in ["example.com", "93.184.216.34", "[2606:4700::1111]"] {
            assert!(refuse_host(host).is_none(), "{host}");
        }
    }
}
