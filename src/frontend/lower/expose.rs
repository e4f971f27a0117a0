//! `EXPOSE` port specs as BuildKit reads them (go-connections'
//! `nat.ParsePortSpec`, vendored by BuildKit v0.23):
//! `[ip:][hostPort:]containerPort[-end][/proto]`, one `ExposedPorts` key
//! per container port of a range, the protocol lower-cased (`tcp` when
//! absent), IPv6 addresses bracketed or bare. The history entry is
//! `EXPOSE map[80/tcp:{} …]` (Go's map format, keys sorted) before
//! Dockerfile 1.19 and `EXPOSE [80/tcp …]` (in argument order) from it.

use crate::frontend::version::{FrontendVersion, EXPOSE_LIST_HISTORY};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// A port spec BuildKit refuses (its messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Nothing before the protocol.
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    /// The container port is not a port or a range.
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
    /// The host port is not a port or a range.
    #[error("invalid hostPort: {0}")]
    HostPort(String),
    /// A range of container ports whose length differs from the host's.
    #[error("invalid ranges specified for container and host Ports: {container} and {host}")]
    Ranges {
        /// The container ports.
        container: String,
        /// The host ports.
        host: String,
    },
    /// An IP that does not parse.
    #[error("invalid IP address: {0}")]
    Ip(String),
    /// A protocol other than tcp, udp, sctp.
    #[error("invalid proto: {0}")]
    Proto(String),
}

/// The `ExposedPorts` keys of one spec (`7000-7002/udp` gives three).
pub fn port_keys(raw: &str) -> Result<Vec<String>, PortError> {
    let (ip, host_port, container) = split_parts(raw);
    let (proto, container) = split_proto_port(container);
    check_ip(ip)?;
    if container.is_empty() {
        return Err(PortError::NoPort(raw.to_string()));
    }
    let (start, end) = port_range(container).ok_or_else(|| PortError::ContainerPort(container.to_string()))?;
    if !host_port.is_empty() {
        let (host_start, host_end) = port_range(host_port).ok_or_else(|| PortError::HostPort(host_port.into()))?;
        if end - start != host_end - host_start && end != start {
            return Err(PortError::Ranges { container: container.into(), host: host_port.into() });
        }
    }
    let lower = proto.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&lower.as_str()) {
        return Err(PortError::Proto(proto.to_string()));
    }
    Ok((start..=end).map(|p| format!("{p}/{lower}")).collect())
}

/// `ip`, `hostPort`, `containerPort`: the last two `:`-fields are the
/// ports, everything before them the IP (an IPv6 address keeps its colons).
fn split_parts(raw: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [container] => ("", "", container),
        [host, container] => ("", host, container),
        [ip, host, container] => (ip, host, container),
        _ => {
            let n = parts.len();
            let ip_len = parts[..n - 2].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
            (&raw[..ip_len], parts[n - 2], parts[n - 1])
        }
    }
}

/// (`proto`, `port`): `80` is `tcp`; `80/` too; `/udp` has no port.
fn split_proto_port(raw: &str) -> (&str, &str) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or("");
    match (port, parts.next()) {
        ("", _) => ("", ""),
        (port, None | Some("")) => ("tcp", port),
        (port, Some(proto)) => (proto, port),
    }
}

/// An IPv4 or IPv6 address, brackets stripped; empty is fine.
fn check_ip(ip: &str) -> Result<(), PortError> {
    if ip.is_empty() {
        return Ok(());
    }
    let bare = match ip.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or_else(|| PortError::Ip(ip.to_string()))?,
        None => ip,
    };
    bare.parse::<IpAddr>().map(|_| ()).map_err(|_| PortError::Ip(bare.to_string()))
}

/// `80` or `8000-8010` (Go's `ParseUint(s, 10, 16)`: digits only).
fn port_range(spec: &str) -> Option<(u32, u32)> {
    let number =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u16>().ok()).flatten();
    let mut parts = spec.split('-');
    let start = u32::from(number(parts.next()?)?);
    let end = match parts.next() {
        None => start,
        Some(end) => u32::from(number(end)?),
    };
    (end >= start).then_some((start, end))
}

/// The history entry of an `EXPOSE` whose specs gave `keys` (in argument
/// order), as the frontend `version` writes it.
pub fn history(keys: &[String], version: FrontendVersion) -> String {
    if version >= EXPOSE_LIST_HISTORY {
        return format!("EXPOSE [{}]", keys.join(" "));
    }
    let sorted: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let entries: Vec<String> = sorted.into_iter().map(|k| format!("{k}:{{}}")).collect();
    format!("EXPOSE map[{}]", entries.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(raw: &str) -> Vec<String> {
        port_keys(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn ranges_give_one_key_per_port() {
        assert_eq!(keys("7000-7002/udp"), ["7000/udp", "7001/udp", "7002/udp"]);
        assert_eq!(keys("1234-1236:1234-1236/sctp"), ["1234/sctp", "1235/sctp", "1236/sctp"]);
        assert_eq!(keys("0.0.0.0:1234-1235:3333-3334/tcp"), ["3333/tcp", "3334/tcp"]);
        assert_eq!(keys("8080"), ["8080/tcp"]);
        assert_eq!(keys("53/UDP"), ["53/udp"], "the protocol is lower-cased");
        assert_eq!(keys("80/"), ["80/tcp"]);
        assert_eq!(keys("0080"), ["80/tcp"]);
        assert_eq!(keys("1000-1000"), ["1000/tcp"]);
    }

    #[test]
    fn host_parts_and_ipv6_are_accepted_and_ignored() {
        assert_eq!(keys("1234:1234/tcp"), ["1234/tcp"]);
        assert_eq!(keys("127.0.0.1:8000:80"), ["80/tcp"]);
        assert_eq!(keys("[2001:4860:0:2001::68]::333"), ["333/tcp"]);
        assert_eq!(keys("[::1]:80:80"), ["80/tcp"]);
        assert_eq!(keys("2001:4860:0:2001::68::333"), ["333/tcp"]);
        assert_eq!(keys("::1:80:80"), ["80/tcp"]);
        assert_eq!(keys("::::80"), ["80/tcp"]);
        assert_eq!(keys("8000-8010:80"), ["80/tcp"], "a host range for one container port");
    }

    #[test]
    fn bad_specs_carry_buildkit_s_messages() {
        let err = |raw: &str| port_keys(raw).unwrap_err().to_string();
        assert_eq!(err(""), "no port specified: <empty>");
        assert_eq!(err("/udp"), "no port specified: /udp<empty>");
        assert_eq!(err("eighty"), "invalid containerPort: eighty");
        assert_eq!(err("70000"), "invalid containerPort: 70000");
        assert_eq!(err("+80"), "invalid containerPort: +80");
        assert_eq!(err("9-8"), "invalid containerPort: 9-8");
        assert_eq!(err("x:80"), "invalid hostPort: x");
        assert_eq!(err("localhost:1234:1234/tcp"), "invalid IP address: localhost");
        assert_eq!(err("1-3:5-6"), "invalid ranges specified for container and host Ports: 5-6 and 1-3");
        assert_eq!(err("80/quic"), "invalid proto: quic");
    }

    #[test]
    fn history_follows_the_frontend_version() {
        let keys: Vec<String> = ["2375/tcp", "5000/tcp", "1234/udp"].map(String::from).to_vec();
        let built_in = FrontendVersion { major: 1, minor: 17 };
        assert_eq!(history(&keys, built_in), "EXPOSE map[1234/udp:{} 2375/tcp:{} 5000/tcp:{}]");
        assert_eq!(history(&keys, EXPOSE_LIST_HISTORY), "EXPOSE [2375/tcp 5000/tcp 1234/udp]");
    }
}
