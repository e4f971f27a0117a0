//! A RUN step with the default network reaches the internet and what the
//! operator allows, and nothing of the builder or the node: the test puts
//! hosts on a link-local (metadata) address, a private address and an
//! allowed benchmarking address in a network namespace of its own, shows
//! that a step with the host network (the entitlement) reaches all three,
//! and that a default step is refused at once by all but the allowed one,
//! with every blocked destination named in the log and the audit line.

mod support;

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

/// One set of test hosts at a time (they share 169.254.169.254).
static HOSTS: Mutex<()> = Mutex::new(());

/// Answers every A query with one address (for `--step-dns`).
const DNS_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5353))
answer = socket.inet_aton(sys.argv[2])
while True:
    q, peer = s.recvfrom(512)
    end = q.index(b"\0", 12) + 5
    head = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00"
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + answer
    s.sendto(head + q[12:end] + rr, peer)
"#;

/// Hosts in a network namespace, routed from the node over a veth pair.
struct TestHosts {
    ns: String,
    /// An address steps may reach once allowed (198.18.N.2).
    allowed: String,
    /// A private address (10.213.N.2).
    private: String,
    servers: Vec<Child>,
    _web: tempfile::TempDir,
}

fn run_sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestHosts {
    fn start(n: u32) -> TestHosts {
        let ns = format!("kiln-eg{n}");
        let (host_if, ns_if) = (format!("kegh{n}"), format!("kegn{n}"));
        let (allowed, private) = (format!("198.18.{n}.2"), format!("10.213.{n}.2"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        run_sh(&format!(
            "ip netns add {ns} && ip link add {host_if} type veth peer name {ns_if} && ip link set {ns_if} netns {ns} && \
             ip addr add 198.18.{n}.1/24 dev {host_if} && ip link set {host_if} up && \
             ip -n {ns} addr add {allowed}/24 dev {ns_if} && ip -n {ns} addr add {private}/32 dev {ns_if} && \
             ip -n {ns} addr add 169.254.169.254/32 dev {ns_if} && ip -n {ns} link set {ns_if} up && \
             ip -n {ns} link set lo up && ip -n {ns} route add default via 198.18.{n}.1 && \
             ip route replace {private}/32 via {allowed} && ip route replace 169.254.169.254/32 via {allowed}"
        ));
        let web = tempfile::tempdir().unwrap();
        std::fs::write(web.path().join("hello.txt"), "hello from the allowed host\n").unwrap();
        let mut servers = vec![Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"])
            .current_dir(web.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()];
        servers.push(
            Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", DNS_SERVER, &allowed, &allowed])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let hosts = TestHosts { ns, allowed, private, servers, _web: web };
        let deadline = Instant::now() + Duration::from_secs(20);
        for addr in [&hosts.allowed, &hosts.private, &"169.254.169.254".to_string()] {
            while std::net::TcpStream::connect_timeout(&format!("{addr}:8080").parse().unwrap(), Duration::from_secs(1))
                .is_err()
            {
                assert!(Instant::now() < deadline, "the test host {addr}:8080 never came up");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        hosts
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip").args(["route", "del", "169.254.169.254/32"]).status();
        let _ = Command::new("ip").args(["route", "del", &format!("{}/32", self.private)]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The node's first global IPv4 address.
fn node_address() -> String {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().find(|l| !l.contains("kegh")).expect("a global IPv4 address");
    first.split_whitespace().nth(3).unwrap().split('/').next().unwrap().to_string()
}

/// A shell function for the step: `probe NAME HOST PORT` writes the exit
/// code, the elapsed seconds and nc's message to /out/NAME.
const PROBE: &str = "probe() { a=$(cut -d' ' -f1 /proc/uptime); m=$(echo | nc -w 5 $2 $3 2>&1 >/dev/null); r=$?; \
                     b=$(cut -d' ' -f1 /proc/uptime); echo \"$r $(awk \"BEGIN{print $b-$a}\") $m\" > /out/$1; }";

struct Probe {
    code: i32,
    seconds: f64,
    message: String,
}

fn probe(img: &Unpacked, name: &str) -> Probe {
    let text = std::fs::read_to_string(img.rootfs.join("out").join(name)).unwrap();
    let mut parts = text.trim().splitn(3, ' ');
    let code = parts.next().unwrap().parse().unwrap();
    let seconds = parts.next().unwrap().parse().unwrap();
    Probe { code, seconds, message: parts.next().unwrap_or("").to_string() }
}

fn blocked_at_once(img: &Unpacked, name: &str) {
    let p = probe(img, name);
    assert_ne!(p.code, 0, "{name}: the step connected ({})", p.message);
    assert!(p.seconds < 1.0, "{name}: refusal took {} s", p.seconds);
    assert!(p.message.contains("refused"), "{name}: refused, not a timeout: {}", p.message);
}

/// What a step would run to open its network: take loopback down, add an
/// address, drop the default route that leads to kiln's relay.
const RECONFIGURE: &str = "(ip link set lo down; echo rc=$?; ip addr add 10.9.9.9/32 dev lo; echo rc=$?; \
                           ip route del default; echo rc=$?)";

/// The control, in a network namespace the (root) test owns: the same
/// operations succeed with the capability.
const RECONFIGURE_CONTROL: &str =
    "ip link set lo up; ip addr add 10.9.9.9/32 dev lo; echo rc=$?; ip link set lo down; echo rc=$?";

fn step_egress(user: Option<String>) {
    let _one = HOSTS.lock().unwrap_or_else(|p| p.into_inner());
    let n = 100 + (std::process::id() % 50) * 2 + u32::from(user.is_some());
    let hosts = TestHosts::start(n);
    let args = vec![
        "--allow-insecure-entitlement".into(),
        "network.host".into(),
        "--step-egress-allow".into(),
        format!("{}:8080", hosts.allowed),
        "--step-dns".into(),
        format!("{}:5353", hosts.allowed),
    ];
    let server = Server::start(ServerOptions { args, user, ..Default::default() });
    let (main_port, internal_port) =
        (server.url.rsplit(':').next().unwrap(), server.metrics_url.rsplit(':').next().unwrap());
    let reg = registry();
    let reg_port = reg.rsplit(':').next().unwrap();
    let (node, allowed, private) = (node_address(), &hosts.allowed, &hosts.private);
    let dockerfile = format!(
        "FROM {reg}/busybox\nRUN mkdir /out\n\
         RUN --network=host {PROBE}; probe host-meta 169.254.169.254 8080; probe host-private {private} 8080\n\
         RUN {PROBE}; {RECONFIGURE} > /out/netconf 2>&1; (timeout 1 nc -l -p 80; true) > /out/bind80 2>&1; \
         probe main 127.0.0.1 {main_port}; probe internal {node} {internal_port}; \
         probe registry {node} {reg_port}; probe meta 169.254.169.254 8080; probe private {private} 8080; \
         wget -q -O /out/allowed http://{allowed}:8080/hello.txt; \
         wget -q -O /out/by-name http://allowed-host.kiln.test:8080/hello.txt; \
         (tftp -g -r x -l /tmp/x {allowed} 9999 2>/dev/null; ping -c 1 -W 1 {allowed} > /dev/null 2>&1; true); \
         ls /sys/class/net > /out/sys-net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /out/proc-net\n"
    );
    let image = test_image("kiln/egress");
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    let log = log_text(&reply);
    for control in ["host-meta", "host-private"] {
        assert_eq!(
            probe(&img, control).code,
            0,
            "{control}: the host network reaches the test host, so the block below is the policy's"
        );
    }
    // The step's root owns its user namespace, which owns the network
    // namespace, but holds no CAP_NET_ADMIN: it cannot take its filter
    // down (the blocks below come after these attempts).
    let netconf = std::fs::read_to_string(img.rootfs.join("out/netconf")).unwrap();
    assert_eq!(netconf.matches("rc=").count(), 3, "{netconf}");
    assert!(!netconf.contains("rc=0"), "every reconfiguration is refused: {netconf}");
    assert!(netconf.contains("Operation not permitted"), "{netconf}");
    let control = Command::new("unshare").args(["-n", "sh", "-c", RECONFIGURE_CONTROL]).output().unwrap();
    let control = String::from_utf8_lossy(&control.stdout);
    assert_eq!(control.matches("rc=0").count(), 2, "control: with CAP_NET_ADMIN the same commands work: {control}");
    let bind80 = std::fs::read_to_string(img.rootfs.join("out/bind80")).unwrap();
    assert!(!bind80.contains("denied"), "the step's root binds ports below 1024 in its own namespace: {bind80}");
    for name in ["main", "internal", "registry", "meta", "private"] {
        blocked_at_once(&img, name);
    }
    for dst in [
        format!("[egress] blocked tcp {node}:{internal_port}"),
        format!("[egress] blocked tcp {node}:{reg_port}"),
        "[egress] blocked tcp 169.254.169.254:8080: a link-local address".to_string(),
        format!("[egress] blocked tcp {private}:8080: a private address"),
        format!("[egress] blocked udp {allowed}:9999: only TCP connections and DNS queries leave a step"),
        format!("[egress] blocked icmp {allowed}: only TCP connections and DNS queries leave a step"),
        format!("[egress] connected to tcp {allowed}:8080"),
        "[egress] resolved allowed-host.kiln.test".to_string(),
    ] {
        assert!(log.contains(&dst), "the log names {dst:?}:\n{log}");
    }
    let read = |f: &str| std::fs::read_to_string(img.rootfs.join("out").join(f)).unwrap();
    assert_eq!(read("allowed"), "hello from the allowed host\n", "an allowed destination is reached");
    assert_eq!(read("by-name"), "hello from the allowed host\n", "names resolve through --step-dns");
    assert_eq!(read("sys-net").trim(), "lo", "/sys is the step's own network namespace's");
    assert_eq!(read("proc-net").trim(), "lo", "/proc/net shows only the step's own interfaces");
    let audit = server.audit_lines();
    let last = audit.iter().rev().find(|a| a["image"] == image.as_str()).expect("an audit line for the build");
    let blocked = last["egress"]["blocked"].as_array().expect("blocked destinations in the audit line");
    assert!(blocked.iter().any(|b| b == &json!("tcp 169.254.169.254:8080")), "{last}");
    assert!(last["egress"]["connected"].as_array().unwrap().iter().any(|c| c == &json!(format!("tcp {allowed}:8080"))));
}

#[test]
fn a_default_step_reaches_only_what_is_allowed_as_root() {
    step_egress(None);
}

#[test]
fn a_default_step_reaches_only_what_is_allowed_rootless() {
    step_egress(Some(std::env::var("KILN_TEST_USER").unwrap_or_else(|_| "kiln-test".into())));
}
