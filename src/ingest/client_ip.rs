//! Which address a request comes from. The peer's own address unless the
//! peer is a trusted proxy; then the one header the config names
//! (`[server].client_ip_header`): `X-Forwarded-For` (the default) is read from
//! the right, skipping trusted proxies (the leftmost entries can be written by
//! anyone, so they are never believed on their own); any other header (such
//! as Cloudflare's `CF-Connecting-IP`) holds one address set by the proxy.
//! Only the named header is believed: a header the proxy passes through
//! unchanged would otherwise let a sender choose its own address.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], header: &str) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    if !header.eq_ignore_ascii_case("x-forwarded-for") {
        return headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_forwarded)
            .unwrap_or(peer);
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(s) = value.to_str() else { return client };
        for part in s.rsplit(',') {
            match parse_forwarded(part) {
                Some(ip) => {
                    client = ip;
                    if !is_trusted(&ip) {
                        return ip;
                    }
                }
                None => return client,
            }
        }
    }
    client
}

fn parse_forwarded(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, from a dual-stack listener) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let ip = client_ip(
            "10.0.0.5".parse().unwrap(),
            &h(&[
                ("x-forwarded-for", "3.3.3.3"),
                ("cf-connecting-ip", "4.4.4.4"),
            ]),
            &trusted,
            "x-forwarded-for",
        );
        assert_eq!(ip, "10.0.0.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let trusted: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            &h(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.1.1.1")]),
            &trusted,
            "x-forwarded-for",
        );
        assert_eq!(ip, "5.5.5.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn cf_connecting_ip_from_trusted_peer() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            &h(&[("cf-connecting-ip", "4.4.4.4")]),
            &trusted,
            "CF-Connecting-IP",
        );
        assert_eq!(ip, "4.4.4.4".parse::<IpAddr>().unwrap());
        // With X-Forwarded-For configured, CF-Connecting-IP is not believed.
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            &h(&[("cf-connecting-ip", "4.4.4.4")]),
            &trusted,
            "x-forwarded-for",
        );
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_header_stops_the_walk() {
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            &h(&[("x-forwarded-for", "1.1.1.1, nonsense")]),
            &trusted,
            "x-forwarded-for",
        );
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn mapped_v6_peer() {
        let ip = client_ip(
            "::ffff:9.9.9.9".parse().unwrap(),
            &HeaderMap::new(),
            &[],
            "x-forwarded-for",
        );
        assert_eq!(ip, "9.9.9.9".parse::<IpAddr>().unwrap());
    }
}
