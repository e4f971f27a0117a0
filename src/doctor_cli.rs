//! `kiln doctor` and its in-namespace half, `kiln __doctor-probe`.

use crate::cli::DoctorArgs;
use crate::serve;
use kiln::doctor::{self, probes, Check};
use kiln::registry::{Credentials, RegistryClient};
use kiln_runtime::userns::{spawn_mapped, IdMap};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// Runs every check and prints the report; exit code 0 only when a build
/// can run.
pub fn main(args: DoctorArgs) -> ExitCode {
    let checks = run_checks(&args);
    if args.json {
        let report = serde_json::json!({"can_build": doctor::can_build(&checks), "checks": checks});
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        print!("{}", doctor::render(&checks));
    }
    ExitCode::from(if doctor::can_build(&checks) { 0 } else { 1 })
}

fn run_checks(args: &DoctorArgs) -> Vec<Check> {
    let opts = &args.serve;
    let range = match serve::parse_range(&opts.root_id_range) {
        Ok(r) => r,
        Err(e) => return vec![Check::fail("--root-id-range", e.to_string(), "use START:COUNT, e.g. 700000000:65536")],
    };
    let mut checks = probes::outside(range);
    let data_dir = opts.data_dir.clone().unwrap_or_else(serve::default_data_dir);
    checks.push(doctor::data_dir_space(&data_dir));
    checks.push(serve::secret_files(opts, &data_dir));
    if doctor::can_build(&checks) {
        checks.extend(namespace_checks(range, &data_dir, &opts.nft));
    } else {
        let why = "skipped: fix the failures above first";
        checks.push(Check::fail("namespace start-up", why, "see the fixes above"));
    }
    if let Some(image) = &args.image {
        checks.push(registry_check(opts, image));
    }
    checks
}

/// Starts `kiln __doctor-probe` the way `kiln serve` starts its server:
/// mapped into its own user namespace.
fn namespace_checks(range: (u32, u32), data_dir: &Path, nft: &str) -> Vec<Check> {
    let started = IdMap::detect(range).map_err(|e| e.to_string()).and_then(|map| {
        serve::prepare_data_dir(data_dir, map.ns_root_owner()).map_err(|e| format!("data dir: {e}"))?;
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("__doctor-probe")
            .arg(data_dir)
            .env("KILN_NFT", nft)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        spawn_mapped(cmd, &map).map_err(|e| e.to_string())
    });
    let child = match started {
        Ok(child) => child,
        Err(e) => return vec![Check::fail("namespace start-up", e, "see the checks above")],
    };
    let out = match child.wait_with_output() {
        Ok(out) => out,
        Err(e) => return vec![Check::fail("namespace start-up", e.to_string(), "run kiln doctor again")],
    };
    match doctor::probe_output(&out, "namespace start-up") {
        Ok(mut checks) => {
            checks.insert(0, Check::ok("namespace start-up", "entered a mapped user, mount and cgroup namespace"));
            checks
        }
        Err(failed) => vec![failed],
    }
}

/// The in-namespace checks, printed as JSON (`kiln __doctor-probe`).
pub fn probe(data_dir: &Path, in_namespace: bool) -> ExitCode {
    // First: it forks nft, which the PID-namespace probe below rules out.
    let network = in_namespace.then(step_network_check);
    let mut checks = probes::inside(data_dir);
    if in_namespace {
        checks.push(doctor::cgroup_check());
    }
    checks.extend(network);
    println!("{}", serde_json::to_string(&checks).expect("checks serialize"));
    ExitCode::SUCCESS
}

/// Whether a step network namespace with kiln's egress ruleset can be made.
fn step_network_check() -> Check {
    let name = "step network";
    let nft = std::env::var("KILN_NFT").unwrap_or_else(|_| "nft".into());
    let policy = kiln::egress::policy::EgressPolicy::new(Vec::new(), Vec::new(), Vec::new());
    // It moves this (single-threaded) probe into the namespace.
    match kiln_runtime::netns::Prepared::create_here(&nft, move |ports| policy.ruleset(ports)) {
        Ok(_) => Check::ok(name, "a network namespace with the egress ruleset, relay and NFLOG sockets"),
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "install nftables (apt-get install nftables) or point --nft at it; the kernel needs nf_tables with NAT, \
             reject and NFLOG (CONFIG_NFT_NAT, CONFIG_NFT_REJECT, CONFIG_NETFILTER_NETLINK_LOG)",
        ),
    }
}

/// Whether `image`'s registry answers and the credentials may push there.
fn registry_check(opts: &crate::cli::ServeArgs, image: &str) -> Check {
    let name = "registry";
    let client = serve::read_docker_config(opts.docker_config.as_deref())
        .and_then(|raw| match raw {
            Some(b) => Credentials::from_docker_config(&b).map_err(anyhow::Error::from),
            None => Ok(Credentials::default()),
        })
        .and_then(|creds| serve::registry_options(opts, creds, serve::parse_mirrors(&opts.registry_mirrors)?))
        .and_then(|o| RegistryClient::new(o).map_err(|e| anyhow::anyhow!("{e}")));
    let client = match client {
        Ok(c) => c,
        Err(e) => return Check::fail(name, e.to_string(), "fix the credentials file or registry flags"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(doctor::registry_check(&client, image))
}
