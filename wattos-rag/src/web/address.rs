//! Which network addresses the crawler may connect to (server-side request forgery guard).
//!
//! A crawler fed URLs by users must not become a way into the network it runs in: the cloud
//! metadata service (`169.254.169.254`), the database on `10.0.0.5`, an admin port on `127.0.0.1`.
//! The [`AddressPolicy`] is enforced on the address actually connected to:
//!
//! * IP-literal hosts (`http://10.0.0.5/`) are checked before every request (seeds, links,
//!   redirect hops, robots.txt and sitemaps alike);
//! * host names are checked by the crawler's DNS resolver, which drops every address the policy
//!   refuses, so a name that resolves to a private address (or re-resolves to one later: DNS
//!   rebinding) is never connected to.
//!
//! Always refused, whatever the policy: unspecified (`0.0.0.0`, `::`), multicast, broadcast and
//! reserved ranges, documentation and benchmarking ranges. IPv4-mapped, NAT64 and 6to4 IPv6
//! addresses are judged by the IPv4 address they carry.
//!
//! When the process uses an HTTP proxy (`HTTP_PROXY`/`HTTPS_PROXY`), the proxy resolves and
//! connects, so only IP-literal URLs are checked here: put egress rules on the proxy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What kind of network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressClass {
    /// Routable on the public internet.
    Public,
    /// This host: `127.0.0.0/8`, `::1`.
    Loopback,
    /// Private and link-local networks: RFC 1918, carrier-grade NAT `100.64.0.0/10`, link-local
    /// `169.254.0.0/16` (cloud metadata services) and `fe80::/10`, unique local `fc00::/7`.
    Private,
    /// Never a crawl target: unspecified, multicast, broadcast, reserved, documentation and
    /// benchmarking ranges.
    Special,
}

/// Classifies `ip`.
///
/// ```
/// use wattos_rag::web::{AddressClass, classify};
/// assert_eq!(classify("93.184.215.14".parse().unwrap()), AddressClass::Public);
/// assert_eq!(classify("169.254.169.254".parse().unwrap()), AddressClass::Private);
/// assert_eq!(classify("::ffff:127.0.0.1".parse().unwrap()), AddressClass::Loopback);
/// ```
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        return AddressClass::Private;
    }
    let special = a == 0                                   // "this network", 0.0.0.0/8
        || a >= 224                                        // multicast, reserved 240/4, broadcast
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // TEST-NET-1
        || (a == 198 && b == 51 && c == 100)               // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                // TEST-NET-3
        || (a == 198 && (b == 18 || b == 19))              // benchmarking
        || (a == 192 && b == 88 && c == 99); // 6to4 relay anycast
    if special {
        AddressClass::Special
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if (seg[0] & 0xfe00) == 0xfc00 || (seg[0] & 0xffc0) == 0xfe80 {
        return AddressClass::Private;
    }
    let special = ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)          // documentation
        || (seg[0] & 0xffc0) == 0xfec0                     // deprecated site-local
        || seg[0] == 0x0100 && seg[1..4] == [0, 0, 0]      // discard-only 100::/64
        || seg[0] & 0xe000 != 0x2000; // outside global unicast 2000::/3
    if special {
        AddressClass::Special
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` (deprecated), NAT64 `64:ff9b::/96` and 6to4 `2002:AABB:CCDD::/48`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let tail = || {
        Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        )
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail());
    }
    if seg[0] == 0x0064 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return Some(tail());
    }
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    None
}

/// The networks a crawl may reach. The default reaches only public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPolicy {
    /// Allow this host (`127.0.0.0/8`, `::1`): for tests and single-machine setups.
    pub allow_loopback: bool,
    /// Allow private and link-local networks (see [`AddressClass::Private`]): for intranet
    /// crawls. Link-local includes cloud metadata services; allow it only where none is reachable.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Whether `ip` may be connected to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::Private => self.allow_private,
            AddressClass::Special => false,
        }
    }
}

/// A connection the policy refused; the crawler reports it as
/// [`super::SkipReason::BlockedAddress`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves only to addresses the crawl policy refuses (e.g. {address}, {class:?})")]
pub struct BlockedAddress {
    /// The host name or literal.
    pub host: String,
    /// One refused address.
    pub address: IpAddr,
    /// Its class.
    pub class: AddressClass,
}

/// The reqwest DNS resolver that enforces `policy` on every resolved address.
pub(crate) struct PolicyResolver {
    pub(crate) policy: AddressPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                addrs.into_iter().partition(|a| policy.allows(a.ip()));
            if allowed.is_empty() {
                let address = refused.first().map(SocketAddr::ip).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} has no addresses"),
                    )
                })?;
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(BlockedAddress {
                    host,
                    address,
                    class: classify(address),
                });
                return Err(err);
            }
            let iter: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(iter)
        })
    }
}

impl PolicyResolver {
    pub(crate) fn shared(policy: AddressPolicy) -> Arc<Self> {
        Arc::new(Self { policy })
    }
}

/// The policy refusal in `err`'s source chain, if any.
pub(crate) fn blocked_in<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BlockedAddress> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<BlockedAddress>() {
            return Some(b);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classes() {
        for public in ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(class(public), AddressClass::Public, "{public}");
        }
        for lo in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
        ] {
            assert_eq!(class(lo), AddressClass::Loopback, "{lo}");
        }
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
        ] {
            assert_eq!(class(private), AddressClass::Private, "{private}");
        }
        for special in [
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert_eq!(class(special), AddressClass::Special, "{special}");
        }
        assert_eq!(class("172.32.0.1"), AddressClass::Public);
    }

    #[test]
    fn policy() {
        let strict = AddressPolicy::default();
        assert!(strict.allows("1.1.1.1".parse().unwrap()));
        assert!(!strict.allows("127.0.0.1".parse().unwrap()));
        assert!(!strict.allows("169.254.169.254".parse().unwrap()));
        let lo = AddressPolicy {
            allow_loopback: true,
            ..AddressPolicy::default()
        };
        assert!(lo.allows("127.0.0.1".parse().unwrap()));
        assert!(!lo.allows("10.0.0.1".parse().unwrap()));
        let all = AddressPolicy {
            allow_loopback: true,
            allow_private: true,
        };
        assert!(all.allows("10.0.0.1".parse().unwrap()));
        assert!(
            !all.allows("0.0.0.0".parse().unwrap()),
            "special stays refused"
        );
    }
}
