//! Network namespaces for RUN steps.
//!
//! Every step network namespace is owned by the step's own user namespace
//! ([`crate::step_userns`]); kiln configures it from one namespace up, and
//! the step, whose capabilities never include `CAP_NET_ADMIN`, cannot
//! change what kiln set. `--network=none` gets a namespace with only
//! loopback ([`isolate`], made by the helper itself). The default network
//! gets a namespace the server prepares ahead of the step
//! ([`Prepared::create`]): loopback up, default routes onto loopback, and
//! an nftables ruleset that
//! rejects denied destinations at once, logs them to an NFLOG group, and
//! redirects every other TCP connection to a relay socket and every DNS
//! query to a forwarder socket — both opened inside the namespace and
//! served by the server from the host's namespace. The helper joins the
//! namespace with `setns` before it starts the container.

use crate::step_userns::StepNamespaces;
use crate::{Error, Result};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

/// NFLOG group the ruleset logs rejected packets to.
pub const LOG_GROUP: u16 = 1;
/// The step's own IPv4 address (on loopback): connections need a source
/// address of global scope, or their replies go to 0.0.0.0.
pub const STEP_ADDR_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The step's own IPv6 address (on loopback).
pub const STEP_ADDR_V6: Ipv6Addr = Ipv6Addr::new(0xfd6b, 0x696c, 0x6e00, 0, 0, 0, 0, 0x100);

/// Sockets and ports a ruleset needs.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The TCP relay's port (on 127.0.0.1 and ::1).
    pub relay: u16,
    /// The DNS forwarder's port (UDP on 127.0.0.1).
    pub dns: u16,
}

/// A prepared step network namespace and the sockets that serve it.
pub struct Prepared {
    /// The network namespace.
    pub netns: OwnedFd,
    /// The step's user namespace, which owns `netns` (the helper joins it
    /// last).
    pub userns: OwnedFd,
    /// TCP relay listener on 127.0.0.1.
    pub relay_v4: TcpListener,
    /// TCP relay listener on ::1 (absent when IPv6 is off).
    pub relay_v6: Option<TcpListener>,
    /// DNS forwarder socket on 127.0.0.1.
    pub dns: UdpSocket,
    /// NFLOG netlink socket bound to [`LOG_GROUP`].
    pub nflog: OwnedFd,
}

impl Prepared {
    /// Makes a step user namespace owning a network namespace, configures
    /// the latter on a throwaway thread (a thread that joins a network
    /// namespace does not go back) and loads the ruleset that `ruleset`
    /// writes for the sockets' ports with `nft`.
    pub fn create(nft: &str, ruleset: impl FnOnce(Ports) -> String + Send + 'static) -> Result<Prepared> {
        let nft = nft.to_string();
        let ns = crate::step_userns::create(true)?;
        std::thread::Builder::new()
            .name("kiln-netns".into())
            .spawn(move || configure(ns, &nft, ruleset))
            .map_err(|e| Error::Io("spawn network namespace thread".into(), e))?
            .join()
            .map_err(|_| Error::Namespace("network namespace thread panicked".into()))?
    }
}

impl Prepared {
    /// As [`Prepared::create`], moving the calling thread itself into the
    /// new namespace (for a single-threaded process that cannot start
    /// threads, e.g. one that unshared its PID namespace).
    pub fn create_here(nft: &str, ruleset: impl FnOnce(Ports) -> String) -> Result<Prepared> {
        configure(crate::step_userns::create(true)?, nft, ruleset)
    }
}

fn configure(ns: StepNamespaces, nft: &str, ruleset: impl FnOnce(Ports) -> String) -> Result<Prepared> {
    let netns = ns.netns.expect("asked for a network namespace");
    enter(&netns)?;
    loopback_up()?;
    step_address_v4()?;
    default_route_v4()?;
    let io = |what: &'static str| move |e| Error::Io(what.into(), e);
    let relay_v4 = TcpListener::bind("127.0.0.1:0").map_err(io("relay listener"))?;
    let dns = UdpSocket::bind("127.0.0.1:0").map_err(io("DNS socket"))?;
    let ports = Ports {
        relay: relay_v4.local_addr().map_err(io("relay address"))?.port(),
        dns: dns.local_addr().map_err(io("DNS address"))?.port(),
    };
    // The ruleset names one relay port for both families; in a new
    // namespace it is free on ::1 too.
    let relay_v6 = TcpListener::bind(("::1", ports.relay)).ok();
    if relay_v6.is_some() {
        step_address_v6()?;
        default_route_v6()?;
    }
    let nflog = crate::nflog::bind(LOG_GROUP)?;
    load_ruleset(nft, &ruleset(ports))?;
    Ok(Prepared { netns, userns: ns.userns, relay_v4, relay_v6, dns, nflog })
}

fn load_ruleset(nft: &str, rules: &str) -> Result<()> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Io(format!("run {nft}"), e))?;
    let written = child.stdin.take().expect("piped").write_all(rules.as_bytes());
    let out = child.wait_with_output().map_err(|e| Error::Io(format!("wait for {nft}"), e))?;
    written.map_err(|e| Error::Io(format!("write ruleset to {nft}"), e))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Namespace(format!("load step network ruleset: {nft}: {}", why.trim())));
    }
    Ok(())
}

/// Moves the calling (single-threaded helper) process into a new network
/// namespace with only loopback up (`RUN --network=none`), owned by a new
/// step user namespace, which is returned for the helper to join last.
pub fn isolate() -> Result<OwnedFd> {
    let ns = crate::step_userns::create(true)?;
    enter(ns.netns.as_ref().expect("asked for a network namespace"))?;
    loopback_up()?;
    Ok(ns.userns)
}

fn enter(netns: &OwnedFd) -> Result<()> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::Namespace(format!("join the step's network namespace: {e}")))
}

/// Moves the calling (single-threaded helper) process into the namespace
/// open at `fd`.
pub fn join(fd: i32) -> Result<()> {
    // SAFETY: the server hands the helper this descriptor; it is owned here.
    let ns = unsafe { OwnedFd::from_raw_fd(fd) };
    enter(&ns)
}

/// A datagram socket for interface and route ioctls.
fn ioctl_socket(family: i32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let sock = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Error::Io("socket for network ioctls".into(), std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor we just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(sock) })
}

fn loopback_up() -> Result<()> {
    let sock = ioctl_socket(libc::AF_INET)?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: valid socket and ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS.
    let ok = unsafe {
        libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) == 0
        }
    };
    if !ok {
        return Err(Error::Io("bring loopback up".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `ip addr add 10.0.2.100/32 dev lo label lo:1`.
fn step_address_v4() -> Result<()> {
    let sock = ioctl_socket(libc::AF_INET)?;
    for (request, addr) in [(libc::SIOCSIFADDR, STEP_ADDR_V4), (libc::SIOCSIFNETMASK, Ipv4Addr::BROADCAST)] {
        // SAFETY: ifreq is plain old data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo:1\0") {
            *dst = *src as libc::c_char;
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from(addr).to_be() },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes).
        req.ifr_ifru.ifru_addr = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) };
        // SAFETY: valid socket and ifreq for SIOCSIFADDR/SIOCSIFNETMASK.
        if unsafe { libc::ioctl(sock.as_raw_fd(), request, &req) } != 0 {
            return Err(Error::Io("add the step's address".into(), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Linux's `struct in6_ifreq`.
#[repr(C)]
struct In6Ifreq {
    addr: [u8; 16],
    prefixlen: u32,
    ifindex: libc::c_int,
}

/// `ip -6 addr add fd6b:696c:6e00::100/128 dev lo`.
fn step_address_v6() -> Result<()> {
    let sock = ioctl_socket(libc::AF_INET6)?;
    // SAFETY: if_nametoindex with a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    let req = In6Ifreq { addr: STEP_ADDR_V6.octets(), prefixlen: 128, ifindex };
    // SAFETY: valid socket and in6_ifreq for SIOCSIFADDR.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) } != 0 {
        return Err(Error::Io("add the step's IPv6 address".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `ip route add default dev lo`: without a route, a connection to an
/// outside address fails with "network unreachable" before the ruleset
/// sees it.
fn default_route_v4() -> Result<()> {
    let sock = ioctl_socket(libc::AF_INET)?;
    // SAFETY: rtentry is plain old data; zeroed is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    let any = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in sockaddr (both 16 bytes).
    unsafe {
        rt.rt_dst = std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(any);
        rt.rt_genmask = std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(any);
    }
    rt.rt_flags = libc::RTF_UP;
    let mut dev = *b"lo\0";
    rt.rt_dev = dev.as_mut_ptr() as *mut libc::c_char;
    // SAFETY: valid socket and rtentry for SIOCADDRT; `dev` outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } != 0 {
        return Err(Error::Io("add the default route".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Linux's `struct in6_rtmsg` (libc's has private fields).
#[repr(C)]
#[derive(Default)]
struct In6Rtmsg {
    dst: [u8; 16],
    src: [u8; 16],
    gateway: [u8; 16],
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

/// `ip -6 route add default dev lo`.
fn default_route_v6() -> Result<()> {
    let sock = ioctl_socket(libc::AF_INET6)?;
    // SAFETY: if_nametoindex with a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    let rt = In6Rtmsg { flags: libc::RTF_UP as u32, metric: 1, ifindex, ..Default::default() };
    // SAFETY: valid socket and in6_rtmsg for SIOCADDRT.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &rt) } != 0 {
        return Err(Error::Io("add the IPv6 default route".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}
