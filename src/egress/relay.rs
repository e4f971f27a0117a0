//! Serving one step's network namespace from the server's: the TCP relay
//! (every connection a step opens arrives here, redirected by the
//! namespace's ruleset; its original destination is checked against the
//! policy again and connected from the host's namespace), the DNS
//! forwarder, and the NFLOG reader that reports what the ruleset refused.

use super::{EgressEvent, Reporter};
use crate::egress::policy::{EgressPolicy, Verdict};
use kiln_runtime::nflog;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// Most relayed connections one step may hold open.
const MAX_CONNECTIONS: usize = 256;
/// Most DNS queries of one step in flight.
const MAX_QUERIES: usize = 64;
/// How long an outside connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a listener waits after an error before it tries again.
const ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long an upstream resolver may take to answer.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the relay tasks share.
pub(super) struct Ctx {
    pub policy: Arc<EgressPolicy>,
    pub resolvers: Arc<Vec<SocketAddr>>,
    pub report: Reporter,
}

/// Accepts redirected connections until aborted; dropping the task drops
/// (and so aborts) every connection it relays.
pub(super) async fn serve_tcp(listener: TcpListener, ctx: Arc<Ctx>) {
    let mut open = JoinSet::new();
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(_) => {
                // Out of descriptors, say: back off instead of spinning.
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        while open.try_join_next().is_some() {}
        if open.len() >= MAX_CONNECTIONS {
            reset(conn);
            continue;
        }
        open.spawn(relay_one(conn, ctx.clone()));
    }
}

async fn relay_one(conn: TcpStream, ctx: Arc<Ctx>) {
    let Some(dst) = original_destination(&conn) else { return reset(conn) };
    let target = if dst.port() == 53 {
        // DNS over TCP goes to the server's resolver, whatever the step named.
        match ctx.resolvers.first() {
            Some(r) => *r,
            None => return reset(conn),
        }
    } else {
        match ctx.policy.verdict(dst) {
            Verdict::Allowed => dst,
            Verdict::Denied(why) => {
                (ctx.report)(EgressEvent::Blocked { destination: format!("tcp {dst}"), why });
                return reset(conn);
            }
        }
    };
    let outside = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            (ctx.report)(EgressEvent::Failed { destination: format!("tcp {dst}"), why: e.to_string() });
            return reset(conn);
        }
        Err(_) => {
            (ctx.report)(EgressEvent::Failed { destination: format!("tcp {dst}"), why: "timed out".into() });
            return reset(conn);
        }
    };
    if dst.port() != 53 {
        (ctx.report)(EgressEvent::Connected { destination: format!("tcp {dst}") });
    }
    let (mut inside, mut outside) = (conn, outside);
    let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
}

/// Closes with a reset, so the step sees its connection refused at once.
fn reset(conn: TcpStream) {
    let _ = conn.set_zero_linger();
}

/// The destination the step asked for, before the ruleset redirected it.
fn original_destination(conn: &TcpStream) -> Option<SocketAddr> {
    const SO_ORIGINAL_DST: i32 = 80;
    let fd = conn.as_raw_fd();
    if conn.local_addr().ok()?.is_ipv4() {
        // SAFETY: sockaddr_in is plain old data; getsockopt fills it.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        // SAFETY: valid socket, buffer and length.
        let rc = unsafe { libc::getsockopt(fd, libc::SOL_IP, SO_ORIGINAL_DST, &mut sa as *mut _ as *mut _, &mut len) };
        (rc == 0).then(|| {
            SocketAddr::new(
                std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)).into(),
                u16::from_be(sa.sin_port),
            )
        })
    } else {
        // SAFETY: sockaddr_in6 is plain old data; getsockopt fills it.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in6>() as u32;
        // SAFETY: valid socket, buffer and length.
        let rc =
            unsafe { libc::getsockopt(fd, libc::SOL_IPV6, SO_ORIGINAL_DST, &mut sa as *mut _ as *mut _, &mut len) };
        (rc == 0)
            .then(|| SocketAddr::new(std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr).into(), u16::from_be(sa.sin6_port)))
    }
}

/// Answers the step's DNS queries by asking the server's resolvers.
pub(super) async fn serve_dns(sock: UdpSocket, ctx: Arc<Ctx>) {
    let sock = Arc::new(sock);
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(_) => {
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        while inflight.try_join_next().is_some() {}
        if inflight.len() >= MAX_QUERIES {
            continue;
        }
        let query = buf[..n].to_vec();
        if let Some(name) = query_name(&query) {
            (ctx.report)(EgressEvent::Resolved { name });
        }
        inflight.spawn(forward_query(query, from, sock.clone(), ctx.resolvers.clone()));
    }
}

async fn forward_query(query: Vec<u8>, from: SocketAddr, sock: Arc<UdpSocket>, resolvers: Arc<Vec<SocketAddr>>) {
    for resolver in resolvers.iter() {
        let bind: SocketAddr = if resolver.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("address");
        let Ok(up) = UdpSocket::bind(bind).await else { continue };
        if up.connect(resolver).await.is_err() || up.send(&query).await.is_err() {
            continue;
        }
        let mut answer = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(DNS_TIMEOUT, up.recv(&mut answer)).await {
            let _ = sock.send_to(&answer[..n], from).await;
            return;
        }
    }
}

/// The first question's name of a DNS query (`None` when malformed).
pub fn query_name(msg: &[u8]) -> Option<String> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 || labels.len() >= 127 {
            return None;
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    (!labels.is_empty()).then(|| labels.join("."))
}

/// Reports every packet the ruleset refused, until `stop` fires; then
/// reports what is still queued (the kernel queues each packet as it is
/// refused, so nothing of a finished step is missed) and returns.
pub(super) async fn serve_nflog(fd: OwnedFd, ctx: Arc<Ctx>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    // SAFETY: the descriptor is owned by the AsyncFd and closed only when
    // it drops (after deregistering).
    let Ok(fd) = (unsafe { AsyncFd::register(fd) }) else { return };
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            ready = fd.readable() => {
                let Ok(mut ready) = ready else { return };
                if !drain(fd.get_ref(), &mut buf, &ctx) {
                    ready.clear_ready();
                }
            }
            _ = &mut stop => {
                while drain(fd.get_ref(), &mut buf, &ctx) {}
                return;
            }
        }
    }
}

/// Reads and reports one datagram; false when none is queued.
fn drain(fd: &OwnedFd, buf: &mut [u8], ctx: &Ctx) -> bool {
    // SAFETY: reading into a buffer we own from a socket we own.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        // ENOBUFS (the kernel dropped some) is not the end of the queue.
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS);
    }
    for r in nflog::parse(&buf[..n as usize]) {
        let why = match (r.protocol, ctx.policy.verdict(r.destination)) {
            (nflog::Protocol::Tcp, Verdict::Denied(why)) => why,
            (nflog::Protocol::Tcp, Verdict::Allowed) => "refused".into(),
            _ => "only TCP connections and DNS queries leave a step".into(),
        };
        let destination = match r.protocol {
            nflog::Protocol::Tcp | nflog::Protocol::Udp => format!("{} {}", r.protocol, r.destination),
            other => format!("{other} {}", r.destination.ip()),
        };
        (ctx.report)(EgressEvent::Blocked { destination, why });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::query_name;

    #[test]
    fn reads_the_question_name() {
        let mut q = vec![0u8; 12];
        q.extend(b"\x03deb\x06debian\x03org\x00\x00\x01\x00\x01");
        assert_eq!(query_name(&q).as_deref(), Some("deb.debian.org"));
        assert_eq!(query_name(&q[..15]), None);
        assert_eq!(query_name(&[0u8; 13]), None);
    }
}
