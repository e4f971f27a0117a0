//! NFLOG: the kernel hands packets a ruleset logs (`log group N`) to a
//! netlink socket. kiln binds one per step network namespace to learn which
//! destinations its ruleset rejected, and parses only what it needs: the
//! destination address, protocol and port of each logged packet.

use crate::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
/// Bytes of each packet copied: IP and transport headers.
const COPY_RANGE: u32 = 96;

/// A packet the ruleset rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// `tcp`, `udp`, `icmp` or another protocol number.
    pub protocol: Protocol,
    /// Destination (port 0 for protocols without ports).
    pub destination: SocketAddr,
}

/// The transport protocol of a rejected packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Anything else, by IP protocol number.
    Other(u8),
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Other(1) | Protocol::Other(58) => f.write_str("icmp"),
            Protocol::Other(n) => write!(f, "ip protocol {n}"),
        }
    }
}

/// Opens a non-blocking NFLOG socket in the calling thread's network
/// namespace, bound to `group`, copying packet headers.
pub fn bind(group: u16) -> Result<OwnedFd> {
    let io = |what: &'static str| move |e| Error::Io(what.into(), e);
    // SAFETY: plain socket(2).
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(Error::Io("NFLOG socket".into(), std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor we just opened.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain old data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
    // SAFETY: a valid address of the right length.
    if unsafe { libc::bind(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(Error::Io("bind NFLOG socket".into(), std::io::Error::last_os_error()));
    }
    send_config(&fd, group, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]).map_err(io("bind NFLOG group"))?;
    let mut mode = COPY_RANGE.to_be_bytes().to_vec();
    mode.extend([NFULNL_COPY_PACKET, 0]);
    send_config(&fd, group, NFULA_CFG_MODE, &mode).map_err(io("set NFLOG copy mode"))?;
    // One packet per message, sent at once (the default batches up to 100
    // for a second, which a short step outlives).
    send_config(&fd, group, NFULA_CFG_QTHRESH, &1u32.to_be_bytes()).map_err(io("set NFLOG queue threshold"))?;
    Ok(fd)
}

fn send_config(fd: &OwnedFd, group: u16, attr: u16, payload: &[u8]) -> std::io::Result<()> {
    let attr_len = 4 + payload.len();
    let mut msg = Vec::with_capacity(32);
    let total = 16 + 4 + align4(attr_len);
    msg.extend((total as u32).to_ne_bytes());
    msg.extend(((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    msg.extend((libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg.extend(0u32.to_ne_bytes()); // seq
    msg.extend(0u32.to_ne_bytes()); // port id
    msg.extend([libc::AF_UNSPEC as u8, 0]); // nfgenmsg: family, version
    msg.extend(group.to_be_bytes()); // res_id
    msg.extend((attr_len as u16).to_ne_bytes());
    msg.extend(attr.to_ne_bytes());
    msg.extend(payload);
    msg.resize(total, 0);
    // SAFETY: sending a buffer we own.
    let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr() as *const libc::c_void, msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Reads the packets in one datagram read from an NFLOG socket.
pub fn parse(datagram: &[u8]) -> Vec<Rejected> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
        if len < 16 || len > rest.len() {
            break;
        }
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
            if let Some(r) = packet(&rest[16..len]) {
                out.push(r);
            }
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    out
}

/// One NFULNL_MSG_PACKET body: nfgenmsg, then attributes.
fn packet(body: &[u8]) -> Option<Rejected> {
    let mut attrs = body.get(4..)?;
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFULA_PAYLOAD {
            return ip_packet(&attrs[4..len]);
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

/// Destination of an IPv4 or IPv6 packet (no IPv6 extension headers: the
/// ruleset only sees what a step sends, which has none for TCP/UDP).
pub fn ip_packet(p: &[u8]) -> Option<Rejected> {
    let (proto, dst, transport) = match p.first()? >> 4 {
        4 => {
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            (*p.get(9)?, IpAddr::V4(Ipv4Addr::from(dst)), p.get(ihl..)?)
        }
        6 => {
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            (*p.get(6)?, IpAddr::V6(Ipv6Addr::from(dst)), p.get(40..)?)
        }
        _ => return None,
    };
    let protocol = match proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        n => Protocol::Other(n),
    };
    let port = match protocol {
        Protocol::Tcp | Protocol::Udp => u16::from_be_bytes(transport.get(2..4)?.try_into().ok()?),
        Protocol::Other(_) => 0,
    };
    Some(Rejected { protocol, destination: SocketAddr::new(dst, port) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(dst: [u8; 4], port: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1];
        p.extend(dst);
        p.extend(40000u16.to_be_bytes());
        p.extend(port.to_be_bytes());
        p.resize(40, 0);
        p
    }

    fn nflog_message(payload: &[u8]) -> Vec<u8> {
        let attr_len = 4 + payload.len();
        let total = 16 + 4 + align4(attr_len);
        let mut m = Vec::new();
        m.extend((total as u32).to_ne_bytes());
        m.extend((NFNL_SUBSYS_ULOG << 8).to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend([libc::AF_INET as u8, 0, 0, 1]);
        m.extend((attr_len as u16).to_ne_bytes());
        m.extend(NFULA_PAYLOAD.to_ne_bytes());
        m.extend(payload);
        m.resize(total, 0);
        m
    }

    #[test]
    fn reads_the_destination_of_each_logged_packet() {
        let mut datagram = nflog_message(&ipv4_tcp([10, 1, 2, 3], 8081));
        datagram.extend(nflog_message(&ipv4_tcp([169, 254, 169, 254], 80)));
        let got = parse(&datagram);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].destination, "10.1.2.3:8081".parse().unwrap());
        assert_eq!(got[1].destination, "169.254.169.254:80".parse().unwrap());
        assert_eq!(got[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn reads_ipv6_udp() {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        p.extend([0u8; 16]);
        p.extend("fd00:ec2::254".parse::<Ipv6Addr>().unwrap().octets());
        p.extend(5000u16.to_be_bytes());
        p.extend(53u16.to_be_bytes());
        let r = ip_packet(&p).unwrap();
        assert_eq!(r.destination, "[fd00:ec2::254]:53".parse().unwrap());
        assert_eq!(r.protocol.to_string(), "udp");
    }

    /// A datagram the kernel sent: a UDP and an ICMP packet, then DONE.
    const CAPTURED: &str = "7000000000040000000000000000000002000001080001000800030005000a0000000000080005000000000108000b000000000008000e0000000000320009004500002e513a40004011ca0c0a000264c6124d029f25270f001a1fa4000178006f63746574007473697a6500300000009400000000040000000000000000000002000001080001000800030005000a0000000000080005000000000108000b000000000008000e0000000000580009004500005491904000400189a00a000264c6124d0208000cdd00040000f0b0fa6d000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001400000003000000000000000000000000000001";

    #[test]
    fn reads_a_datagram_the_kernel_sent() {
        let bytes: Vec<u8> =
            (0..CAPTURED.len()).step_by(2).map(|i| u8::from_str_radix(&CAPTURED[i..i + 2], 16).unwrap()).collect();
        let got = parse(&bytes);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].destination, "198.18.77.2:9999".parse().unwrap());
        assert_eq!(got[0].protocol, Protocol::Udp);
        assert_eq!(got[1].protocol.to_string(), "icmp");
    }

    #[test]
    fn truncated_input_yields_nothing_and_never_panics() {
        let full = nflog_message(&ipv4_tcp([10, 0, 0, 1], 1));
        for cut in 0..full.len() {
            let _ = parse(&full[..cut]);
        }
        assert!(parse(&full[..20]).is_empty());
        assert!(ip_packet(&[0x45, 0, 0]).is_none());
    }
}
