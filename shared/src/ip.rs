//! Which IP addresses a webhook may reach: the blocked ranges (SSRF protection) and the operator's
//! allowlist. One definition for the admission server (IP-literal URLs at apply time) and the
//! dispatcher (every resolved address at delivery time).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::LazyLock;

use ipnet::IpNet;

/// Blocked ranges (DESIGN.md, "SSRF") as `(CIDR, reason)`, IPv4 first; where ranges nest, the
/// more specific one comes first (`::` and `::1` before `::/96`), so the first hit names it.
/// IPv4-mapped `::ffff:0:0/96` is not listed: it is judged by the embedded IPv4 address.
static BLOCKED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network; 0.0.0.0 reaches the local host"),
    ("10.0.0.0/8", "private network"),
    ("100.64.0.0/10", "shared address space, carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, cloud metadata endpoints"),
    ("172.16.0.0/12", "private network"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation, TEST-NET-1"),
    ("192.88.99.0/24", "6to4 relay anycast, deprecated"),
    ("192.168.0.0/16", "private network"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation, TEST-NET-2"),
    ("203.0.113.0/24", "documentation, TEST-NET-3"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, includes broadcast"),
    ("::/128", "unspecified address"),
    ("::1/128", "loopback"),
    // Not in the contract's list, added deliberately: IPv4-compatible addresses (::a.b.c.d, RFC 4291
    // §2.5.5.1, deprecated) are still mapped to the embedded IPv4 address by some stacks and
    // tunnels, so ::127.0.0.1 or ::10.0.0.1 could reach what the IPv4 list blocks. Nothing public
    // lives there.
    ("::/96", "IPv4-compatible IPv6, deprecated"),
    ("64:ff9b::/96", "NAT64, can reach internal IPv4"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments, Teredo"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4, embeds an IPv4 address"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 segment identifiers"),
    ("fc00::/7", "unique local, private network"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local, deprecated"),
    ("ff00::/8", "multicast"),
];

/// [`BLOCKED`] parsed once. An entry that does not parse would be a typo in the table above; the
/// `table_parses` test keeps that from ever shipping.
static BLOCKED_NETS: LazyLock<Vec<(IpNet, &'static str, &'static str)>> = LazyLock::new(|| {
    BLOCKED
        .iter()
        .filter_map(|&(range, reason)| Some((range.parse().ok()?, range, reason)))
        .collect()
});

/// The blocked range containing `ip` and why it is blocked, as `(range, reason)`; `None` when the
/// address is publicly routable. Pure: ignores any allowlist. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is judged by its embedded IPv4 address.
pub fn blocked_range(ip: IpAddr) -> Option<(&'static str, &'static str)> {
    let ip = canonical(ip);
    BLOCKED_NETS
        .iter()
        .find(|(net, _, _)| net.contains(&ip))
        .map(|&(_, range, reason)| (range, reason))
}

/// Every blocked range with its reason, IPv4 first (for documentation and `--help` texts).
pub fn blocked_ranges() -> impl Iterator<Item = (&'static str, &'static str)> {
    BLOCKED.iter().copied()
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; every other address is returned as is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The operator's policy: blocked ranges, opened by an allowlist of CIDRs (`--allow-cidr`).
/// The default is an empty allowlist (every blocked range stays blocked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpPolicy {
    allow: Vec<IpNet>,
}

impl IpPolicy {
    /// No allowlist: every blocked range stays blocked (same as `default()`, usable in statics).
    pub const EMPTY: IpPolicy = IpPolicy { allow: Vec::new() };

    /// A policy allowing `allow` in addition to every publicly routable address.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow: allow.into_iter().map(|n| n.trunc()).collect(),
        }
    }

    /// Parses `--allow-cidr` values: CIDRs (`10.0.0.0/8`, `fd00::/8`) or bare addresses
    /// (`10.1.2.3` = `/32`, `::1` = `/128`). Surrounding whitespace is ignored.
    pub fn from_cidrs<S: AsRef<str>>(cidrs: &[S]) -> Result<Self, InvalidCidr> {
        let mut allow = Vec::with_capacity(cidrs.len());
        for input in cidrs {
            let text = input.as_ref().trim();
            let net = IpNet::from_str(text)
                .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
                .map_err(|_| InvalidCidr {
                    input: input.as_ref().to_owned(),
                    reason: if text.contains('/') {
                        "expected a CIDR such as 10.0.0.0/8 or fd00::/8 (prefix length at most 32 \
                         for IPv4, 128 for IPv6)"
                            .to_owned()
                    } else {
                        "expected a CIDR such as 10.0.0.0/8 or a single IP address such as 10.1.2.3"
                            .to_owned()
                    },
                })?;
            allow.push(net);
        }
        Ok(Self::new(allow))
    }

    /// `Ok` when a webhook may connect to `ip`: it is on the allowlist (which wins), or in no blocked
    /// range. An IPv4-mapped address is matched against both its IPv6 and its IPv4 form.
    pub fn judge(&self, ip: IpAddr) -> Result<(), Blocked> {
        let plain = canonical(ip);
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&plain))
        {
            return Ok(());
        }
        match blocked_range(ip) {
            Some((range, reason)) => Err(Blocked { ip, range, reason }),
            None => Ok(()),
        }
    }

    /// The allowlisted networks (normalised to their network address).
    pub fn allow_list(&self) -> &[IpNet] {
        &self.allow
    }
}

/// An `--allow-cidr` value that is neither a CIDR nor an IP address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowlist entry {input:?}: {reason}")]
pub struct InvalidCidr {
    /// The value as given.
    pub input: String,
    /// What was expected.
    pub reason: String,
}

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The address as judged (an IPv4-mapped address keeps its IPv6 form here).
    pub ip: IpAddr,
    /// The blocked range containing it, e.g. `127.0.0.0/8`.
    pub range: &'static str,
    /// Why the range is blocked, e.g. `loopback`.
    pub reason: &'static str,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is in blocked range {} ({})",
            self.ip, self.range, self.reason
        )
    }
}

impl std::error::Error for Blocked {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range_of(s: &str) -> Option<&'static str> {
        blocked_range(ip(s)).map(|(range, _)| range)
    }

    /// The table is exactly the contract's list plus ::/96, so nobody drops a range by accident.
    #[test]
    fn table_is_the_contract_list() {
        let ranges: Vec<_> = blocked_ranges().map(|(r, _)| r).collect();
        let expected = [
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "::/128",
            "::1/128",
            "::/96",
            "64:ff9b::/96",
            "64:ff9b:1::/48",
            "100::/64",
            "2001::/23",
            "2001:db8::/32",
            "2002::/16",
            "3fff::/20",
            "5f00::/16",
            "fc00::/7",
            "fe80::/10",
            "fec0::/10",
            "ff00::/8",
        ];
        assert_eq!(ranges, expected);
    }

    /// Every entry parses and is a network address (no host bits), so none is dropped silently.
    #[test]
    fn table_parses() {
        assert_eq!(BLOCKED_NETS.len(), BLOCKED.len());
        for (net, range, _) in BLOCKED_NETS.iter() {
            assert_eq!(*net, net.trunc(), "{range} has host bits");
        }
    }

    /// First and last address of every range are inside it; the addresses just outside are not
    /// (they may fall into a neighbouring range, never this one).
    #[test]
    fn every_range_inside_and_just_outside() {
        for (range, _) in blocked_ranges() {
            let net: IpNet = range.parse().unwrap();
            let (first, last) = (net.network(), net.broadcast());
            let inside_first = range_of(&first.to_string());
            let inside_last = range_of(&last.to_string());
            // ::/96 starts with :: and ::1, which have their own more specific entries.
            if range != "::/96" {
                assert_eq!(
                    inside_first,
                    Some(range),
                    "first address {first} of {range}"
                );
            }
            assert_eq!(inside_last, Some(range), "last address {last} of {range}");
            let (before, after) = match (first, last) {
                (IpAddr::V4(a), IpAddr::V4(b)) => (
                    a.to_bits()
                        .checked_sub(1)
                        .map(|x| IpAddr::V4(Ipv4Addr::from_bits(x))),
                    b.to_bits()
                        .checked_add(1)
                        .map(|x| IpAddr::V4(Ipv4Addr::from_bits(x))),
                ),
                (IpAddr::V6(a), IpAddr::V6(b)) => (
                    a.to_bits()
                        .checked_sub(1)
                        .map(|x| IpAddr::V6(Ipv6Addr::from_bits(x))),
                    b.to_bits()
                        .checked_add(1)
                        .map(|x| IpAddr::V6(Ipv6Addr::from_bits(x))),
                ),
                _ => unreachable!(),
            };
            for outside in before.into_iter().chain(after) {
                if net.contains(&outside) {
                    continue;
                }
                assert_ne!(
                    blocked_range(outside).map(|(r, _)| r),
                    Some(range),
                    "{outside} is outside {range}"
                );
            }
        }
    }

    #[test]
    fn ipv4_ranges_by_hand() {
        let cases = [
            ("0.0.0.0", Some("0.0.0.0/8")),
            ("0.255.255.255", Some("0.0.0.0/8")),
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("10.0.0.1", Some("10.0.0.0/8")),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.64.0.0", Some("100.64.0.0/10")),
            ("100.127.255.255", Some("100.64.0.0/10")),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("127.0.0.1", Some("127.0.0.0/8")),
            ("127.255.255.254", Some("127.0.0.0/8")),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.254.169.254", Some("169.254.0.0/16")),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", Some("172.16.0.0/12")),
            ("172.31.255.255", Some("172.16.0.0/12")),
            ("172.32.0.0", None),
            ("192.0.0.8", Some("192.0.0.0/24")),
            ("192.0.1.0", None),
            ("192.0.2.1", Some("192.0.2.0/24")),
            ("192.0.3.0", None),
            ("192.88.98.255", None),
            ("192.88.99.1", Some("192.88.99.0/24")),
            ("192.88.100.0", None),
            ("192.167.255.255", None),
            ("192.168.1.1", Some("192.168.0.0/16")),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.19.255.255", Some("198.18.0.0/15")),
            ("198.20.0.0", None),
            ("198.51.100.7", Some("198.51.100.0/24")),
            ("198.51.101.0", None),
            ("203.0.112.255", None),
            ("203.0.113.9", Some("203.0.113.0/24")),
            ("203.0.114.0", None),
            ("223.255.255.255", None),
            ("224.0.0.1", Some("224.0.0.0/4")),
            ("239.255.255.255", Some("224.0.0.0/4")),
            ("240.0.0.1", Some("240.0.0.0/4")),
            ("255.255.255.255", Some("240.0.0.0/4")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(range_of(addr), want, "{addr}");
        }
    }

    #[test]
    fn ipv6_ranges_by_hand() {
        let cases = [
            ("::", Some("::/128")),
            ("::1", Some("::1/128")),
            ("::2", Some("::/96")),
            ("::127.0.0.1", Some("::/96")),
            ("::1:0:0", None), // just past ::/96 (0:0:0:0:0:1::)
            ("64:ff9b::8.8.8.8", Some("64:ff9b::/96")),
            ("64:ff9b::1:0:0", None),
            ("64:ff9b:1::1", Some("64:ff9b:1::/48")),
            ("64:ff9b:2::", None),
            ("100::1", Some("100::/64")),
            ("100:0:0:1::", None),
            ("2001::1", Some("2001::/23")),
            ("2001:1ff:ffff::", Some("2001::/23")),
            ("2001:200::", None),
            ("2001:db8::1", Some("2001:db8::/32")),
            ("2001:db9::", None),
            ("2002::1", Some("2002::/16")),
            ("2003::", None),
            ("3fff:fff::1", Some("3fff::/20")),
            ("3fff:1000::", None),
            ("5f00::1", Some("5f00::/16")),
            ("5f01::", None),
            ("fbff:ffff::", None),
            ("fc00::1", Some("fc00::/7")),
            ("fdff:ffff::", Some("fc00::/7")),
            ("fe00::", None),
            ("fe80::1", Some("fe80::/10")),
            ("febf:ffff::", Some("fe80::/10")),
            ("fec0::1", Some("fec0::/10")),
            ("feff:ffff::", Some("fec0::/10")),
            ("ff02::1", Some("ff00::/8")),
            ("2606:4700:4700::1111", None),
            ("2a00:1450::1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(range_of(addr), want, "{addr}");
        }
    }

    #[test]
    fn ipv4_mapped_is_judged_by_the_embedded_ipv4() {
        let policy = IpPolicy::default();
        assert_eq!(policy.judge(ip("::ffff:8.8.8.8")), Ok(()));
        let blocked = policy.judge(ip("::ffff:10.0.0.1")).unwrap_err();
        assert_eq!(blocked.range, "10.0.0.0/8");
        assert_eq!(blocked.ip, ip("::ffff:10.0.0.1"));
        assert_eq!(range_of("::ffff:127.0.0.1"), Some("127.0.0.0/8"));
        assert_eq!(range_of("::ffff:169.254.169.254"), Some("169.254.0.0/16"));
        // Mapped form of an allowed-by-CIDR IPv4 address is allowed too, and vice versa.
        let policy = IpPolicy::from_cidrs(&["10.0.0.0/8"]).unwrap();
        assert_eq!(policy.judge(ip("::ffff:10.0.0.1")), Ok(()));
        assert!(policy.judge(ip("::ffff:192.168.0.1")).is_err());
        let policy = IpPolicy::from_cidrs(&["::ffff:10.0.0.0/104"]).unwrap();
        assert_eq!(policy.judge(ip("::ffff:10.0.0.1")), Ok(()));
    }

    #[test]
    fn allowlist_wins_over_blocked_ranges() {
        let policy =
            IpPolicy::from_cidrs(&["127.0.0.0/8", "10.1.2.3", " fd00::/8 ", "::1"]).unwrap();
        assert_eq!(policy.judge(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.judge(ip("10.1.2.3")), Ok(()));
        assert!(policy.judge(ip("10.1.2.4")).is_err());
        assert_eq!(policy.judge(ip("fd12::1")), Ok(()));
        assert!(policy.judge(ip("fc00::1")).is_err());
        assert_eq!(policy.judge(ip("::1")), Ok(()));
        assert!(policy.judge(ip("::")).is_err());
        assert_eq!(policy.judge(ip("8.8.8.8")), Ok(()));
        let listed: Vec<String> = policy.allow_list().iter().map(|n| n.to_string()).collect();
        assert_eq!(
            listed,
            ["127.0.0.0/8", "10.1.2.3/32", "fd00::/8", "::1/128"]
        );
    }

    #[test]
    fn allowlist_is_normalised() {
        let policy = IpPolicy::from_cidrs(&["10.9.8.7/8"]).unwrap();
        assert_eq!(policy.allow_list()[0].to_string(), "10.0.0.0/8");
        assert_eq!(policy.judge(ip("10.200.0.1")), Ok(()));
    }

    #[test]
    fn default_policy_blocks() {
        let policy = IpPolicy::default();
        assert!(policy.allow_list().is_empty());
        assert!(policy.judge(ip("127.0.0.1")).is_err());
        assert!(policy.judge(ip("::1")).is_err());
        assert_eq!(policy.judge(ip("93.184.215.14")), Ok(()));
    }

    #[test]
    fn invalid_cidrs_are_reported() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "not-an-ip",
            "10.0.0",
            "10.0.0.0/",
            "host.example",
        ] {
            let err = IpPolicy::from_cidrs(&[bad]).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("expected a CIDR"), "{err}");
        }
        let err = IpPolicy::from_cidrs(&["10.0.0.0/8", "nope"]).unwrap_err();
        assert_eq!(err.input, "nope");
    }

    #[test]
    fn blocked_display() {
        let blocked = IpPolicy::default().judge(ip("127.0.0.1")).unwrap_err();
        assert_eq!(
            blocked.to_string(),
            "127.0.0.1 is in blocked range 127.0.0.0/8 (loopback)"
        );
        let blocked = IpPolicy::default().judge(ip("::1")).unwrap_err();
        assert_eq!(
            blocked.to_string(),
            "::1 is in blocked range ::1/128 (loopback)"
        );
    }
}
