//! Which destinations a RUN step may connect to. By default: the internet
//! and nothing else — loopback, private, link-local, shared, documentation,
//! multicast and reserved ranges (IPv4 and IPv6, including the addresses
//! that embed IPv4 ones) and every address of the node's own interfaces are
//! refused. Operators open destinations with `--step-egress-allow` and close
//! more with `--step-egress-deny`; an allow wins over every deny.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Ranges no step reaches unless allowed, with why.
const DEFAULT_DENY: &[(&str, &str)] = &[
    ("0.0.0.0/8", "a reserved address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "the node's loopback"),
    ("169.254.0.0/16", "a link-local address (cloud metadata lives here)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "a reserved address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a reserved address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/127", "a reserved address"),
    ("::ffff:0:0/96", "an IPv4-mapped address"),
    ("64:ff9b::/96", "a NAT64 address"),
    ("64:ff9b:1::/48", "a NAT64 address"),
    ("100::/64", "a discard address"),
    ("2001::/23", "a reserved address"),
    ("2001:db8::/32", "a documentation address"),
    ("2002::/16", "a 6to4 address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
];

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(text: &str) -> Option<Net> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr, prefix })
    }

    fn host(addr: IpAddr) -> Net {
        Net { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }

    /// nftables match expression (`ip daddr 10.0.0.0/8`).
    fn nft_match(&self) -> String {
        let family = if self.addr.is_ipv4() { "ip" } else { "ip6" };
        format!("{family} daddr {}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// One operator rule: a range, optionally one TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    nets: Vec<Net>,
    port: Option<u16>,
    text: String,
}

impl Rule {
    fn matches(&self, dst: SocketAddr) -> bool {
        self.port.is_none_or(|p| p == dst.port()) && self.nets.iter().any(|n| n.contains(dst.ip()))
    }
}

/// A bad `--step-egress-*` value.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {why}")]
pub struct PolicyError {
    flag: &'static str,
    value: String,
    why: String,
}

/// Parses `CIDR`, `IP`, `HOST`, each optionally with `:PORT` (`[v6]:PORT`
/// for IPv6 addresses). Host names are resolved now, once.
pub fn parse_rule(flag: &'static str, value: &str) -> Result<Rule, PolicyError> {
    let err = |why: &str| PolicyError { flag, value: value.to_string(), why: why.to_string() };
    let v = value.trim();
    if let Some(net) = Net::parse(v) {
        return Ok(Rule { nets: vec![net], port: None, text: v.to_string() });
    }
    let (host, port) = split_port(v).ok_or_else(|| err("expected CIDR, IP or HOST, optionally with :PORT"))?;
    let port = port.map(|p| p.parse::<u16>().map_err(|_| err("bad port"))).transpose()?;
    if let Some(net) = Net::parse(host) {
        return Ok(Rule { nets: vec![net], port, text: v.to_string() });
    }
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(err("not an address, a range or a host name"));
    }
    let addrs = (host, port.unwrap_or(0)).to_socket_addrs().map_err(|e| err(&format!("cannot resolve: {e}")))?;
    let nets: Vec<Net> = addrs.map(|a| Net::host(a.ip())).collect();
    if nets.is_empty() {
        return Err(err("resolves to no address"));
    }
    Ok(Rule { nets, port, text: v.to_string() })
}

fn split_port(v: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = v.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        };
    }
    match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((v, None)),
    }
}

/// Whether a step may connect to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It may.
    Allowed,
    /// It may not, and why.
    Denied(String),
}

/// The egress policy of every step.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    defaults: Vec<(Net, &'static str)>,
    node: Vec<Net>,
}

impl EgressPolicy {
    /// The policy with operator rules and the node's own addresses.
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>, node: Vec<IpAddr>) -> EgressPolicy {
        let defaults =
            DEFAULT_DENY.iter().map(|(n, why)| (Net::parse(n).expect("valid default range"), *why)).collect();
        EgressPolicy { allow, deny, defaults, node: node.into_iter().map(Net::host).collect() }
    }

    /// The verdict for a TCP connection to `dst`.
    pub fn verdict(&self, dst: SocketAddr) -> Verdict {
        if self.allow.iter().any(|r| r.matches(dst)) {
            return Verdict::Allowed;
        }
        if let Some(r) = self.deny.iter().find(|r| r.matches(dst)) {
            return Verdict::Denied(format!("denied by --step-egress-deny {}", r.text));
        }
        let hint = "allow it with --step-egress-allow";
        if let Some((_, why)) = self.defaults.iter().find(|(n, _)| n.contains(dst.ip())) {
            return Verdict::Denied(format!("{why}; {hint}"));
        }
        if self.node.iter().any(|n| n.contains(dst.ip())) {
            return Verdict::Denied(format!("an address of this node; {hint}"));
        }
        Verdict::Allowed
    }

    /// Whether connections to `ip` are allowed on some port (for a
    /// resolver, which does not know the port).
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|r| r.nets.iter().any(|n| n.contains(ip))) {
            return true;
        }
        let denied_everywhere = |r: &Rule| r.port.is_none() && r.nets.iter().any(|n| n.contains(ip));
        !(self.deny.iter().any(denied_everywhere)
            || self.defaults.iter().any(|(n, _)| n.contains(ip))
            || self.node.iter().any(|n| n.contains(ip)))
    }

    /// The nftables ruleset of a step namespace whose relay and DNS
    /// forwarder listen on `ports`.
    pub fn ruleset(&self, ports: kiln_runtime::netns::Ports) -> String {
        let mut r = String::from("table inet kiln {\n  chain guard {\n");
        r.push_str("    type filter hook output priority -150; policy accept;\n");
        // Only what opens a flow is judged: replies of kiln's sockets and
        // the resets the refuse chain sends back pass (at this hook their
        // destination may still be the step's unset source, 0.0.0.0). Nothing
        // leaves the namespace but through kiln's sockets anyway.
        r.push_str("    ct state != new accept\n");
        let (own4, own6) = (kiln_runtime::netns::STEP_ADDR_V4, kiln_runtime::netns::STEP_ADDR_V6);
        let _ = writeln!(r, "    ip daddr {{ 127.0.0.0/8, {own4} }} accept\n    ip6 daddr {{ ::1, {own6} }} accept");
        r.push_str("    meta l4proto { tcp, udp } th dport 53 accept\n");
        for rule in &self.allow {
            let port = rule.port.map(|p| format!("tcp dport {p}")).unwrap_or_else(|| "meta l4proto tcp".into());
            for n in &rule.nets {
                let _ = writeln!(r, "    {} {port} accept", n.nft_match());
            }
        }
        for rule in &self.deny {
            let port = rule.port.map(|p| format!(" tcp dport {p}")).unwrap_or_default();
            for n in &rule.nets {
                let _ = writeln!(r, "    {}{port} jump refuse", n.nft_match());
            }
        }
        for n in self.defaults.iter().map(|(n, _)| n).chain(&self.node) {
            let _ = writeln!(r, "    {} jump refuse", n.nft_match());
        }
        r.push_str("    meta l4proto != tcp jump refuse\n  }\n");
        let _ = write!(
            r,
            "  chain refuse {{\n    log group {}\n    meta l4proto tcp reject with tcp reset\n    \
             reject with icmpx type port-unreachable\n  }}\n",
            kiln_runtime::netns::LOG_GROUP
        );
        let _ = write!(
            r,
            "  chain divert {{\n    type nat hook output priority -100; policy accept;\n    \
             udp dport 53 redirect to :{}\n",
            ports.dns
        );
        // Allowed loopback destinations are the node's, not the step's own.
        for rule in &self.allow {
            let port = rule.port.map(|p| format!("tcp dport {p}")).unwrap_or_else(|| "meta l4proto tcp".into());
            for n in rule.nets.iter().filter(|n| n.addr.is_loopback()) {
                let _ = writeln!(r, "    {} {port} redirect to :{}", n.nft_match(), ports.relay);
            }
        }
        let _ = write!(
            r,
            "    ip daddr {{ 127.0.0.0/8, {own4} }} return\n    ip6 daddr {{ ::1, {own6} }} return\n    \
             meta l4proto tcp redirect to :{}\n  }}\n}}\n",
            ports.relay
        );
        r
    }
}

/// Addresses of the node's own interfaces.
pub fn node_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if let Some(ip) = sockaddr_ip(ifa.ifa_addr) {
            out.push(ip);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs.
    unsafe { libc::freeifaddrs(list) };
    out.sort();
    out.dedup();
    out
}

fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the family says which struct the address is.
    unsafe {
        match (*sa).sa_family as i32 {
            libc::AF_INET => {
                let a = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let a = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> EgressPolicy {
        let allow = allow.iter().map(|a| parse_rule("--step-egress-allow", a).unwrap()).collect();
        let deny = deny.iter().map(|d| parse_rule("--step-egress-deny", d).unwrap()).collect();
        EgressPolicy::new(allow, deny, vec!["203.0.113.7".parse().unwrap(), "8.8.4.4".parse().unwrap()])
    }

    fn verdict(p: &EgressPolicy, dst: &str) -> Verdict {
        p.verdict(dst.parse().unwrap())
    }

    #[test]
    fn the_internet_is_allowed_and_everything_local_is_not() {
        let p = policy(&[], &[]);
        assert_eq!(verdict(&p, "151.101.2.132:443"), Verdict::Allowed);
        assert_eq!(verdict(&p, "[2a04:4e42::644]:443"), Verdict::Allowed);
        for local in [
            "127.0.0.1:8081",
            "10.1.2.3:80",
            "172.20.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.100.100.200:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00:ec2::254]:80",
            "[::ffff:10.0.0.1]:80",
            "[64:ff9b::a00:1]:80",
            "0.0.0.0:80",
            "8.8.4.4:53",
        ] {
            assert!(matches!(verdict(&p, local), Verdict::Denied(_)), "{local} must be denied");
        }
        let Verdict::Denied(why) = verdict(&p, "169.254.169.254:80") else { unreachable!() };
        assert!(why.contains("metadata") && why.contains("--step-egress-allow"), "{why}");
    }

    #[test]
    fn allows_win_over_denies_and_ports_narrow_them() {
        let p = policy(&["10.0.0.5:5000", "192.168.7.0/24"], &["151.101.0.0/16", "1.1.1.1:80"]);
        assert_eq!(verdict(&p, "10.0.0.5:5000"), Verdict::Allowed);
        assert!(matches!(verdict(&p, "10.0.0.5:5001"), Verdict::Denied(_)));
        assert_eq!(verdict(&p, "192.168.7.9:22"), Verdict::Allowed);
        let Verdict::Denied(why) = verdict(&p, "151.101.2.132:443") else { panic!("must be denied") };
        assert!(why.contains("--step-egress-deny 151.101.0.0/16"), "{why}");
        assert!(matches!(verdict(&p, "1.1.1.1:80"), Verdict::Denied(_)));
        assert_eq!(verdict(&p, "1.1.1.1:443"), Verdict::Allowed);
    }

    #[test]
    fn an_address_is_allowed_when_some_port_of_it_is() {
        let p = policy(&["10.0.0.5:5000"], &["1.1.1.1:80", "9.9.9.9"]);
        assert!(p.allows_address("10.0.0.5".parse().unwrap()));
        assert!(!p.allows_address("10.0.0.6".parse().unwrap()));
        assert!(p.allows_address("1.1.1.1".parse().unwrap()), "denied on one port only");
        assert!(!p.allows_address("9.9.9.9".parse().unwrap()));
        assert!(!p.allows_address("203.0.113.7".parse().unwrap()), "a node address");
    }

    #[test]
    fn rules_parse_addresses_ranges_hosts_and_ports() {
        assert_eq!(parse_rule("f", "[fd00::1]:8080").unwrap().port, Some(8080));
        assert_eq!(parse_rule("f", "fd00::/8").unwrap().port, None);
        let local = parse_rule("f", "localhost:80").unwrap();
        assert!(local.matches("127.0.0.1:80".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0.1:http", "no spaces", "", "a:b:c"] {
            assert!(parse_rule("f", bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_ruleset_names_ports_and_rejects_what_the_policy_denies() {
        let p = policy(&["198.18.0.2:8080"], &["1.1.1.1"]);
        let r = p.ruleset(kiln_runtime::netns::Ports { relay: 4000, dns: 4001 });
        assert!(r.contains("udp dport 53 redirect to :4001"));
        assert!(r.contains("meta l4proto tcp redirect to :4000"));
        assert!(r.contains("ip daddr 198.18.0.2/32 tcp dport 8080 accept"));
        assert!(r.contains("ip daddr 1.1.1.1/32 jump refuse"));
        assert!(r.contains("ip daddr 169.254.0.0/16 jump refuse"));
        assert!(r.contains("ip daddr 203.0.113.7/32 jump refuse"));
        assert!(r.find("198.18.0.2/32").unwrap() < r.find("198.18.0.0/15").unwrap(), "allows come first");
        let local = policy(&["127.0.0.1:5000"], &[]).ruleset(kiln_runtime::netns::Ports { relay: 4000, dns: 4001 });
        let redirect = local.find("ip daddr 127.0.0.1/32 tcp dport 5000 redirect to :4000").expect("node loopback");
        assert!(redirect < local.find("ip daddr { 127.0.0.0/8, 10.0.2.100 } return").unwrap());
    }
}
