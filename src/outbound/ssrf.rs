//! SSRF guard for outbound connections: webhook requests and RabbitMQ brokers.
//!
//! Webhook URLs are typed by strangers, so a destination must never reach
//! loopback, private networks, cloud metadata (169.254.169.254) or any other
//! non-public address. Checking the URL when it is saved is not enough: a DNS
//! name can resolve to a public address at save time and to `127.0.0.1` at
//! send time (DNS rebinding). So the decisive check happens at connect time,
//! inside [`GuardedResolver`], on the very addresses the socket will use.
//!
//! Literal-IP URLs never reach a resolver (reqwest/hyper connect to them
//! directly), so callers must check those themselves with
//! [`parse_ip_literal`] + [`Policy::check`] before sending.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses are allowed despite being non-public.
///
/// The default refuses every non-public address; operators opt in to internal
/// destinations explicitly (e.g. a self-hosted receiver on 10.0.0.0/8).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Allow every address (for development and fully trusted deployments).
    pub allow_private: bool,
    /// Non-public ranges that are allowed anyway.
    pub allow_cidrs: Vec<Cidr>,
    /// Refuse plain `http://` destinations (checked when saved and when sent).
    pub https_only: bool,
}

impl Policy {
    /// Ok when the address may be connected to.
    ///
    /// `allow_private` allows everything; an `allow_cidrs` entry containing the
    /// address allows it; otherwise any non-public address is refused.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow_private || self.allow_cidrs.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match non_public_reason(ip) {
            Some(reason) => Err(Blocked { addr: ip, reason }),
            None => Ok(()),
        }
    }
}

/// An address refused by the [`Policy`].
///
/// Carried as the inner error of the resolver's `io::Error` so the sender can
/// find it in reqwest's error chain with [`find_blocked`] and record the
/// attempt as `blocked_address` rather than as a network failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {addr} is not allowed: {reason}")]
pub struct Blocked {
    pub addr: IpAddr,
    /// Short machine-friendly class, e.g. "loopback", "private", "cgnat".
    pub reason: &'static str,
}

// ---------------------------------------------------------------------------
// CIDR
// ---------------------------------------------------------------------------

/// An IP network: address plus prefix length, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrParseError {
    #[error("invalid IP address in CIDR {0:?}")]
    Address(String),
    #[error("invalid prefix length in CIDR {0:?}")]
    Prefix(String),
}

impl Cidr {
    /// Builds a network, clearing host bits so `10.1.2.3/8` equals `10.0.0.0/8`.
    /// Fails when `prefix` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_u32(prefix)))
            }
            IpAddr::V6(a) if prefix <= 128 => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_u128(prefix)))
            }
            _ => return None,
        };
        Some(Self { addr, prefix })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is matched against IPv4
    /// networks too, because it reaches the same host; otherwise an allow-list
    /// entry like `10.0.0.0/8` would not cover a resolver answering in v6 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_u32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_u128(self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(ip)) => ip
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    /// Accepts `addr/prefix` or a bare address (a host route: /32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part
            .parse()
            .map_err(|_| CidrParseError::Address(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_part {
            None => max,
            // Digits only: u8::from_str would also accept "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .map_err(|_| CidrParseError::Prefix(s.to_owned()))?,
            Some(_) => return Err(CidrParseError::Prefix(s.to_owned())),
        };
        Cidr::new(addr, prefix).ok_or_else(|| CidrParseError::Prefix(s.to_owned()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------

/// `(network, prefix, reason)`; first match wins, so narrower entries that
/// share space with broader ones (broadcast inside 240/4) come first.
const V4_RANGES: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 32, "unspecified"),
    ([0, 0, 0, 0], 8, "this-network"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([10, 0, 0, 0], 8, "private"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 168, 0, 0], 16, "private"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([100, 64, 0, 0], 10, "cgnat"),
    ([255, 255, 255, 255], 32, "broadcast"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([192, 0, 0, 0], 24, "ietf-protocol"),
];

/// IPv6 ranges refused outright (ranges embedding an IPv4 are handled in
/// [`non_public_reason_v6`] before these).
const V6_RANGES: &[(u128, u8, &str)] = &[
    (0xff00 << 112, 8, "multicast"),
    (0xfc00 << 112, 7, "unique-local"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x2001_0000 << 96, 32, "teredo"),
];

/// The classification: `Some(reason)` when the address is non-public.
///
/// IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible,
/// NAT64, 6to4) are judged by the embedded IPv4, because that is where the
/// packets can end up.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_reason_v4(v4),
        IpAddr::V6(v6) => non_public_reason_v6(v6),
    }
}

fn non_public_reason_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, prefix, _)| n & mask_u32(*prefix) == u32::from_be_bytes(*net))
        .map(|&(_, _, reason)| reason)
}

fn non_public_reason_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let n = u128::from(ip);
    let in_net = |net: u128, prefix: u8| n & mask_u128(prefix) == net;
    let low32 = Ipv4Addr::from(n as u32);

    if n == 0 {
        return Some("unspecified");
    }
    if n == 1 {
        return Some("loopback");
    }
    // ::ffff:0:0/96 IPv4-mapped, ::/96 IPv4-compatible, 64:ff9b::/96 NAT64.
    if in_net(0xffff << 32, 96) || in_net(0, 96) || in_net(0x0064_ff9b << 96, 96) {
        return non_public_reason_v4(low32);
    }
    // 2002::/16 6to4: the IPv4 sits in bits 16..48.
    if in_net(0x2002 << 112, 16) {
        return non_public_reason_v4(Ipv4Addr::from((n >> 80) as u32));
    }
    V6_RANGES
        .iter()
        .find(|&&(net, prefix, _)| in_net(net, prefix))
        .map(|&(_, _, reason)| reason)
}

// ---------------------------------------------------------------------------
// Literal parsing
// ---------------------------------------------------------------------------

/// Parses a URL host that is a literal IP, in any notation browsers
/// (WHATWG) or `inet_aton` accept, and returns the normalised address;
/// `None` when the host is not an IP literal (i.e. a DNS name).
///
/// IPv4: 1–4 dot-separated parts, each decimal, hex (`0x`) or octal (leading
/// `0`); the last part fills the remaining bytes (`127.1`, `2130706433`);
/// one trailing dot is allowed. IPv6: bracketed or bare; a zone id (`%eth0`
/// or `%25eth0`) is dropped since it does not change the address class.
///
/// The `url` crate already normalises these; this is the belt-and-braces
/// check on the raw host string so a refused literal gets a clear 422 when a
/// destination is saved.
pub fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if inner.contains(':') {
        let addr = inner.split_once('%').map_or(inner, |(a, _)| a);
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if inner.len() != host.len() {
        return None; // brackets around something that is not IPv6
    }
    parse_ipv4_lenient(host).map(IpAddr::V4)
}

fn parse_ipv4_lenient(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut count = 0;
    for part in host.split('.') {
        if count == 4 {
            return None;
        }
        parts[count] = parse_ipv4_number(part)?;
        count += 1;
    }
    let (last, init) = parts[..count].split_last()?;
    if init.iter().any(|&p| p > 255) {
        return None;
    }
    // The last part covers the 5 - count low bytes.
    let last_bits = 8 * (5 - count as u32);
    if last_bits < 64 && *last >= 1u64 << last_bits {
        return None;
    }
    let mut n = *last;
    for (i, &p) in init.iter().enumerate() {
        n |= p << (24 - 8 * i);
    }
    Some(Ipv4Addr::from(u32::try_from(n).ok()?))
}

fn parse_ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(h) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (h, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        // WHATWG: "0x" is zero; a bare empty part is not a number.
        return (radix == 16).then_some(0);
    }
    // Fold by hand: from_str_radix would accept a sign, and long runs of
    // leading zeros are legal so length alone must not overflow.
    digits.chars().try_fold(0u64, |acc, c| {
        let d = c.to_digit(radix)?;
        acc.checked_mul(u64::from(radix))?.checked_add(u64::from(d))
    })
}

// ---------------------------------------------------------------------------
// Resolver
// ---------------------------------------------------------------------------

/// reqwest DNS resolver that resolves with `tokio::net::lookup_host` and drops
/// every address the policy refuses, so the check applies to the addresses
/// actually connected to (defeating DNS rebinding).
///
/// If every resolved address is refused it fails with an `io::Error`
/// (`PermissionDenied`) whose inner error is a [`Blocked`]; use
/// [`find_blocked`] on the reqwest error to recognise it.
///
/// Note: reqwest does not call the resolver for literal-IP URLs; check those
/// with [`parse_ip_literal`] + [`Policy::check`] before sending.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
}

impl GuardedResolver {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest substitutes the URL's (or the scheme's) port.
            let allowed = resolve_allowed(&policy, &host, 0).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Resolves `host` (a name or an IP literal) and keeps only the addresses the policy allows:
/// the one check every outbound connection goes through, so the addresses connected to are
/// exactly the ones checked.
///
/// Fails with an `io::Error` whose inner error is a [`Blocked`] (`PermissionDenied`) when
/// every address is refused, `NotFound` when none resolved, or the resolver's own error.
pub async fn resolve_allowed(
    policy: &Policy,
    host: &str,
    port: u16,
) -> io::Result<Vec<SocketAddr>> {
    // `[::1]` as URLs spell it is `::1` to the resolver.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved = tokio::net::lookup_host((bare, port)).await?;
    let mut allowed: Vec<SocketAddr> = Vec::new();
    let mut first_blocked = None;
    for addr in resolved {
        match policy.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(b) => {
                first_blocked.get_or_insert(b);
            }
        }
    }
    if allowed.is_empty() {
        return Err(match first_blocked {
            Some(b) => io::Error::new(io::ErrorKind::PermissionDenied, b),
            None => io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host}: no addresses resolved"),
            ),
        });
    }
    Ok(allowed)
}

/// Walks an error's `source()` chain looking for a [`Blocked`].
///
/// `io::Error::source()` skips over its own inner error (it returns the
/// inner error's source), so `io::Error`s are also opened with `get_ref()`.
pub fn find_blocked<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Blocked> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref)
            && let Some(b) = find_blocked(inner)
        {
            return Some(b);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reason(s: &str) -> Option<&'static str> {
        non_public_reason(ip(s))
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    // --- IPv4 ranges ---------------------------------------------------------

    #[test]
    fn loopback_v4_is_refused_across_127_slash_8() {
        assert_eq!(reason("127.0.0.0"), Some("loopback"));
        assert_eq!(reason("127.0.0.1"), Some("loopback"));
        assert_eq!(reason("127.255.255.255"), Some("loopback"));
        assert_eq!(reason("126.255.255.255"), None);
        assert_eq!(reason("128.0.0.0"), None);
    }

    #[test]
    fn rfc1918_private_ranges_are_refused_at_both_edges() {
        for a in ["10.0.0.0", "10.255.255.255", "172.16.0.0", "172.31.255.255"] {
            assert_eq!(reason(a), Some("private"), "{a}");
        }
        for a in ["192.168.0.0", "192.168.255.255"] {
            assert_eq!(reason(a), Some("private"), "{a}");
        }
        for a in ["9.255.255.255", "11.0.0.0", "172.15.255.255", "172.32.0.0"] {
            assert_eq!(reason(a), None, "{a}");
        }
        assert_eq!(reason("192.167.255.255"), None);
        assert_eq!(reason("192.169.0.0"), None);
    }

    #[test]
    fn link_local_including_cloud_metadata_is_refused() {
        assert_eq!(reason("169.254.0.0"), Some("link-local"));
        assert_eq!(reason("169.254.169.254"), Some("link-local"));
        assert_eq!(reason("169.254.255.255"), Some("link-local"));
        assert_eq!(reason("169.253.255.255"), None);
        assert_eq!(reason("169.255.0.0"), None);
    }

    #[test]
    fn cgnat_100_64_slash_10_is_refused() {
        assert_eq!(reason("100.64.0.0"), Some("cgnat"));
        assert_eq!(reason("100.127.255.255"), Some("cgnat"));
        assert_eq!(reason("100.63.255.255"), None);
        assert_eq!(reason("100.128.0.0"), None);
    }

    #[test]
    fn this_network_and_unspecified_are_refused() {
        assert_eq!(reason("0.0.0.0"), Some("unspecified"));
        assert_eq!(reason("0.0.0.1"), Some("this-network"));
        assert_eq!(reason("0.255.255.255"), Some("this-network"));
        assert_eq!(reason("1.0.0.0"), None);
    }

    #[test]
    fn broadcast_multicast_and_reserved_are_refused() {
        assert_eq!(reason("255.255.255.255"), Some("broadcast"));
        assert_eq!(reason("224.0.0.0"), Some("multicast"));
        assert_eq!(reason("239.255.255.255"), Some("multicast"));
        assert_eq!(reason("223.255.255.255"), None);
        assert_eq!(reason("240.0.0.0"), Some("reserved"));
        assert_eq!(reason("255.255.255.254"), Some("reserved"));
    }

    #[test]
    fn benchmarking_198_18_slash_15_is_refused() {
        assert_eq!(reason("198.18.0.0"), Some("benchmarking"));
        assert_eq!(reason("198.19.255.255"), Some("benchmarking"));
        assert_eq!(reason("198.17.255.255"), None);
        assert_eq!(reason("198.20.0.0"), None);
    }

    #[test]
    fn documentation_ranges_are_refused() {
        for net in ["192.0.2", "198.51.100", "203.0.113"] {
            assert_eq!(reason(&format!("{net}.0")), Some("documentation"));
            assert_eq!(reason(&format!("{net}.255")), Some("documentation"));
        }
        assert_eq!(reason("192.0.3.0"), None);
        assert_eq!(reason("198.51.101.0"), None);
        assert_eq!(reason("203.0.112.255"), None);
    }

    #[test]
    fn ietf_protocol_assignments_are_refused() {
        assert_eq!(reason("192.0.0.0"), Some("ietf-protocol"));
        assert_eq!(reason("192.0.0.255"), Some("ietf-protocol"));
        assert_eq!(reason("191.255.255.255"), None);
        assert_eq!(reason("192.0.1.0"), None);
    }

    #[test]
    fn public_addresses_are_allowed() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(reason(a), None, "{a}");
            assert!(Policy::default().check(ip(a)).is_ok(), "{a}");
        }
    }

    // --- IPv6 ranges ---------------------------------------------------------

    #[test]
    fn ipv6_unspecified_and_loopback_are_refused() {
        assert_eq!(reason("::"), Some("unspecified"));
        assert_eq!(reason("::1"), Some("loopback"));
    }

    #[test]
    fn ipv6_local_scopes_are_refused_at_both_edges() {
        assert_eq!(reason("fc00::"), Some("unique-local"));
        assert_eq!(
            reason("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some("unique-local")
        );
        assert_eq!(reason("fe80::"), Some("link-local"));
        assert_eq!(reason("febf:ffff::1"), Some("link-local"));
        assert_eq!(reason("fec0::"), Some("site-local"));
        assert_eq!(reason("feff:ffff::1"), Some("site-local"));
        assert_eq!(reason("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None);
    }

    #[test]
    fn ipv6_multicast_documentation_and_teredo_are_refused() {
        assert_eq!(reason("ff00::"), Some("multicast"));
        assert_eq!(reason("ff02::1"), Some("multicast"));
        assert_eq!(reason("2001:db8::"), Some("documentation"));
        assert_eq!(reason("2001:db8:ffff:ffff::1"), Some("documentation"));
        assert_eq!(reason("2001:db9::1"), None);
        assert_eq!(reason("2001::"), Some("teredo"));
        assert_eq!(reason("2001:0:ffff:ffff::1"), Some("teredo"));
        assert_eq!(reason("2001:1::1"), None);
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_by_the_embedded_ipv4() {
        assert_eq!(reason("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::ffff:10.0.0.1"), Some("private"));
        assert_eq!(reason("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(reason("::ffff:8.8.8.8"), None);
        assert!(Policy::default().check(ip("::ffff:127.0.0.1")).is_err());
        assert!(Policy::default().check(ip("::ffff:10.0.0.1")).is_err());
    }

    #[test]
    fn ipv4_compatible_addresses_are_judged_by_the_embedded_ipv4() {
        assert_eq!(reason("::127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::10.0.0.1"), Some("private"));
        assert_eq!(reason("::0.0.0.2"), Some("this-network"));
    }

    #[test]
    fn nat64_with_an_embedded_private_ipv4_is_refused() {
        assert_eq!(reason("64:ff9b::127.0.0.1"), Some("loopback"));
        assert_eq!(reason("64:ff9b::a00:1"), Some("private"));
        assert_eq!(reason("64:ff9b::8.8.8.8"), None);
    }

    #[test]
    fn sixtofour_with_an_embedded_private_ipv4_is_refused() {
        // 2002:AABB:CCDD:: embeds AA.BB.CC.DD.
        assert_eq!(reason("2002:7f00:1::"), Some("loopback"));
        assert_eq!(reason("2002:c0a8:101::1"), Some("private"));
        assert_eq!(reason("2002:a9fe:a9fe::"), Some("link-local"));
        assert_eq!(reason("2002:808:808::1"), None);
    }

    // --- Literal parsing -----------------------------------------------------

    #[test]
    fn every_notation_of_127_0_0_1_parses_to_127_0_0_1() {
        let want = Some(ip("127.0.0.1"));
        for host in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0x7f.0.0.1",
            "0x7f.0x0.0x0.0x1",
            "0177.0.0.1",
            "0177.0.0.01",
            "017700000001",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0177.0x0.1",
            "127.0.0.1.",
            "0000000000000000000000177.0.0.1",
            "0x0000000000000000000000007f.0.0.1",
        ] {
            assert_eq!(parse_ip_literal(host), want, "{host}");
        }
    }

    #[test]
    fn short_forms_fill_the_remaining_bytes_from_the_last_part() {
        assert_eq!(parse_ip_literal("10.1.1"), Some(ip("10.1.0.1")));
        assert_eq!(parse_ip_literal("10.65535"), Some(ip("10.0.255.255")));
        assert_eq!(parse_ip_literal("0x"), Some(ip("0.0.0.0")));
    }

    #[test]
    fn bracketed_ipv6_literals_parse() {
        assert_eq!(parse_ip_literal("[::1]"), Some(ip("::1")));
        assert_eq!(
            parse_ip_literal("[::ffff:127.0.0.1]"),
            Some(ip("::ffff:127.0.0.1"))
        );
        assert_eq!(parse_ip_literal("::1"), Some(ip("::1")));
        assert_eq!(parse_ip_literal("[fe80::1%25eth0]"), Some(ip("fe80::1")));
    }

    #[test]
    fn dns_names_are_not_ip_literals() {
        for host in [
            "localhost",
            "example.com",
            "1.2.3.4.example.com",
            "deadbeef",
            "0x7g",
        ] {
            assert_eq!(parse_ip_literal(host), None, "{host}");
        }
    }

    #[test]
    fn malformed_or_overflowing_numbers_are_not_ip_literals() {
        for host in [
            "",
            ".",
            "1..2",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "1.2.3.4.5",
            "08",
            "+1",
            "-1",
            "[1.2.3.4]",
            "[::1",
            "[nope]",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_ip_literal(host), None, "{host:?}");
        }
    }

    proptest! {
        #[test]
        fn any_u32_in_decimal_parses_to_the_same_ipv4(n: u32) {
            prop_assert_eq!(parse_ip_literal(&n.to_string()), Some(IpAddr::V4(Ipv4Addr::from(n))));
        }

        #[test]
        fn any_dotted_ipv4_round_trips(a: Ipv4Addr) {
            prop_assert_eq!(parse_ip_literal(&a.to_string()), Some(IpAddr::V4(a)));
        }
    }

    // --- CIDR ----------------------------------------------------------------

    #[test]
    fn ipv4_cidr_parses_and_contains_its_range_only() {
        let c = cidr("10.0.0.0/8");
        assert_eq!(c.prefix_len(), 8);
        assert!(c.contains(ip("10.0.0.0")));
        assert!(c.contains(ip("10.255.255.255")));
        assert!(!c.contains(ip("11.0.0.0")));
        assert!(!c.contains(ip("::a00:1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert_eq!(c.to_string(), "10.0.0.0/8");
    }

    #[test]
    fn ipv6_cidr_parses_and_contains_its_range_only() {
        let c = cidr("fd00::/8");
        assert!(c.contains(ip("fd12:3456::1")));
        assert!(!c.contains(ip("fc00::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        let host = cidr("::1/128");
        assert!(host.contains(ip("::1")));
        assert!(!host.contains(ip("::2")));
    }

    #[test]
    fn bare_address_is_a_host_route() {
        assert_eq!(cidr("127.0.0.1"), cidr("127.0.0.1/32"));
        assert_eq!(cidr("::1"), cidr("::1/128"));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
    }

    #[test]
    fn zero_prefix_contains_the_whole_family() {
        assert!(cidr("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(cidr("::/0").contains(ip("ffff::1")));
    }

    #[test]
    fn host_bits_are_cleared_so_equal_networks_compare_equal() {
        assert_eq!(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("10.1.2.3/8").addr(), ip("10.0.0.0"));
    }

    #[test]
    fn bad_cidr_input_is_an_error() {
        for s in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "example.com/8",
            "10.0.0.0/0008",
            " 10.0.0.0/8",
        ] {
            assert!(s.parse::<Cidr>().is_err(), "{s:?}");
        }
    }

    // --- Policy --------------------------------------------------------------

    #[test]
    fn default_policy_refuses_with_the_address_and_reason() {
        let err = Policy::default().check(ip("169.254.169.254")).unwrap_err();
        assert_eq!(
            err,
            Blocked {
                addr: ip("169.254.169.254"),
                reason: "link-local"
            }
        );
        assert_eq!(
            err.to_string(),
            "address 169.254.169.254 is not allowed: link-local"
        );
    }

    #[test]
    fn allow_private_allows_every_address() {
        let p = Policy {
            allow_private: true,
            ..Policy::default()
        };
        for a in ["127.0.0.1", "10.0.0.1", "::1", "169.254.169.254", "8.8.8.8"] {
            assert!(p.check(ip(a)).is_ok(), "{a}");
        }
    }

    #[test]
    fn allow_cidrs_allow_only_the_listed_ranges() {
        let p = Policy {
            allow_private: false,
            allow_cidrs: vec![cidr("10.0.0.0/8"), cidr("fd00::/8")],
            https_only: false,
        };
        assert!(p.check(ip("10.1.2.3")).is_ok());
        assert!(p.check(ip("::ffff:10.1.2.3")).is_ok());
        assert!(p.check(ip("fd00::1")).is_ok());
        assert!(p.check(ip("192.168.1.1")).is_err());
        assert!(p.check(ip("127.0.0.1")).is_err());
        assert!(p.check(ip("8.8.8.8")).is_ok());
    }

    // --- Resolver ------------------------------------------------------------

    fn name(s: &str) -> Name {
        s.parse().unwrap()
    }

    /// Stands in for reqwest/hyper's wrappers: an error whose source is the
    /// resolver's error.
    #[derive(Debug, thiserror::Error)]
    #[error("client error")]
    struct Outer(#[source] Box<dyn StdError + Send + Sync>);

    #[tokio::test]
    async fn resolver_refuses_localhost_with_a_blocked_found_through_the_chain() {
        let resolver = GuardedResolver::new(Policy::default());
        let err = match resolver.resolve(name("localhost")).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let blocked = find_blocked(&*err).expect("Blocked in the error");
        assert_eq!(blocked.reason, "loopback");
        assert!(blocked.addr.is_loopback());

        let wrapped = Outer(err);
        assert_eq!(find_blocked(&wrapped).map(|b| b.reason), Some("loopback"));
    }

    #[tokio::test]
    async fn resolver_allows_localhost_when_private_addresses_are_allowed() {
        let resolver = GuardedResolver::new(Policy {
            allow_private: true,
            ..Policy::default()
        });
        let addrs: Vec<SocketAddr> = match resolver.resolve(name("localhost")).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("localhost refused: {e}"),
        };
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn reqwest_error_for_a_refused_host_carries_blocked() {
        // The resolver refuses before any connection is attempted, so this
        // sends no traffic.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver::new(Policy::default()))
            .build()
            .unwrap();
        let err = client.get("http://localhost:9/").send().await.unwrap_err();
        let blocked = find_blocked(&err).expect("Blocked in the reqwest error chain");
        assert_eq!(blocked.reason, "loopback");
    }

    #[test]
    fn find_blocked_is_none_for_unrelated_errors() {
        let e = io::Error::other("boom");
        assert!(find_blocked(&e).is_none());
        assert!(find_blocked(&Outer(Box::new(e))).is_none());
    }
}
