//! Least privilege: `kiln doctor` on this machine (all met) and under the
//! conditions it must diagnose, each made real: a user without a
//! subordinate ID range, `user.max_user_namespaces` at 0 inside a user
//! namespace, a seccomp filter refusing `CLONE_NEWUSER` (libseccomp, as a
//! container runtime loads it), no `newuidmap` on PATH. `kiln serve` under
//! the blocking filter refuses within a second; under the shipped profile
//! (deploy/seccomp/kiln.json) a build runs, and without kiln's additions
//! to the runtime default it cannot start.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::*;

fn test_user() -> String {
    std::env::var("KILN_TEST_USER").unwrap_or_else(|_| "kiln-test".into())
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `python3 seccomp_exec.py ARGS -- kiln KILN_ARGS` as root, dropping to the test user.
fn under_seccomp(filter: &[&str], kiln_args: &[&str]) -> Output {
    Command::new("/usr/bin/python3")
        .arg(repo("tests/clients/seccomp_exec.py"))
        .args(filter)
        .args(["--user", &test_user(), "--", env!("CARGO_BIN_EXE_kiln")])
        .args(kiln_args)
        .current_dir("/")
        .output()
        .unwrap()
}

/// `kiln doctor --json` run by `prefix` (e.g. `runuser -u USER --`).
fn doctor_json(prefix: &[&str], data_dir: &Path) -> (bool, Vec<Value>) {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(kiln);
            c
        }
        None => Command::new(kiln),
    };
    let out = cmd.args(["doctor", "--json", "--data-dir"]).arg(data_dir).current_dir("/").output().unwrap();
    parse_report(&out)
}

fn parse_report(out: &Output) -> (bool, Vec<Value>) {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["can_build"].as_bool().unwrap(), out.status.success(), "exit code follows can_build: {report}");
    (out.status.success(), report["checks"].as_array().unwrap().clone())
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
}

/// Asserts that check `name` failed, its detail saying `detail` and its fix `fix`.
fn assert_diagnosis(checks: &[Value], name: &str, detail: &str, fix: &str) {
    let c = check(checks, name);
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains(detail), "{c}");
    assert!(c["fix"].as_str().unwrap().contains(fix), "{c}");
}

/// A data dir the test user can create.
fn user_scratch() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let ok = Command::new("chown").arg(test_user()).arg(tmp.path()).status().unwrap();
    assert!(ok.success());
    tmp
}

#[test]
fn doctor_finds_everything_in_place_here_as_root_and_as_a_user() {
    let tmp = user_scratch();
    let user = test_user();
    for prefix in [vec![], vec!["runuser", "-u", user.as_str(), "--"]] {
        let (ok, checks) = doctor_json(&prefix, &tmp.path().join(format!("data-{}", prefix.len())));
        assert!(ok, "{prefix:?}: {checks:#?}");
        for name in ["user namespace", "subordinate IDs", "namespace start-up", "overlayfs (userxattr)"] {
            assert_eq!(check(&checks, name)["status"], "ok", "{name}");
        }
        assert_eq!(check(&checks, "/proc in a PID namespace")["status"], "ok");
        assert_eq!(check(&checks, "mapped ID range")["status"], "ok");
        assert_ne!(check(&checks, "cgroup v2 delegation")["status"], "fail", "missing step limits never stop builds");
    }
}

#[test]
fn doctor_names_a_missing_subordinate_range_and_the_usermod_fix() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (ok, checks) = doctor_json(&["runuser", "-u", "kiln-nosubid", "--"], &tmp.path().join("data"));
    assert!(!ok);
    let subids = check(&checks, "subordinate IDs");
    assert_eq!(subids["status"], "fail");
    assert!(
        subids["detail"].as_str().unwrap().contains("no subordinate ID range for user \"kiln-nosubid\""),
        "{subids}"
    );
    assert!(subids["fix"].as_str().unwrap().contains("usermod --add-subuids"), "{subids}");
}

#[test]
fn doctor_diagnoses_max_user_namespaces_set_to_zero() {
    let tmp = user_scratch();
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} doctor --json --data-dir {}/data",
        env!("CARGO_BIN_EXE_kiln"),
        tmp.path().display()
    );
    let out = Command::new("runuser")
        .args(["-u", &test_user(), "--", "unshare", "--user", "--map-root-user", "sh", "-c", &script])
        .current_dir("/")
        .output()
        .unwrap();
    let (ok, checks) = parse_report(&out);
    assert!(!ok);
    let fix = "sysctl -w user.max_user_namespaces=";
    assert_diagnosis(&checks, "user namespace", "user.max_user_namespaces is 0", fix);
}

#[test]
fn doctor_diagnoses_a_seccomp_filter_refusing_clone_newuser() {
    let tmp = user_scratch();
    let data = tmp.path().join("data");
    let out = under_seccomp(&["--deny-newuser"], &["doctor", "--json", "--data-dir", data.to_str().unwrap()]);
    let (ok, checks) = parse_report(&out);
    assert!(!ok);
    assert_diagnosis(&checks, "user namespace", "[cause: Seccomp]", "deploy/seccomp/kiln.json");
}

#[test]
fn doctor_diagnoses_newuidmap_missing_from_path() {
    let tmp = user_scratch();
    let out = Command::new("runuser")
        .args(["-u", &test_user(), "--", "env", "PATH=/nonexistent", env!("CARGO_BIN_EXE_kiln"), "doctor", "--json"])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .current_dir("/")
        .output()
        .unwrap();
    let (ok, checks) = parse_report(&out);
    assert!(!ok);
    for tool in ["newuidmap", "newgidmap"] {
        assert_diagnosis(&checks, tool, "not on PATH", "apt-get install uidmap");
    }
}

#[test]
fn serve_refuses_within_a_second_under_a_filter_blocking_user_namespaces() {
    let tmp = user_scratch();
    let data = tmp.path().join("data");
    let started = Instant::now();
    let out = under_seccomp(
        &["--deny-newuser"],
        &["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--data-dir", data.to_str().unwrap()],
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(stderr.contains("a seccomp filter confines this process"), "{stderr}");
    assert!(stderr.contains("kiln doctor"), "{stderr}");
    assert!(!data.exists(), "nothing was written before the refusal");
}

/// A server started by the seccomp loader with `profile`, as the test user.
fn server_under_profile(profile: &Path) -> Server {
    let wrapper = vec![
        "/usr/bin/python3".into(),
        repo("tests/clients/seccomp_exec.py").display().to_string(),
        "--profile".into(),
    ];
    let wrapper = [wrapper, vec![profile.display().to_string(), "--user".into(), test_user(), "--".into()]].concat();
    Server::start(ServerOptions { user: Some(test_user()), wrapper, ..Default::default() })
}

#[test]
fn a_build_runs_under_the_shipped_seccomp_profile() {
    let server = server_under_profile(&repo("deploy/seccomp/kiln.json"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    assert!(status.contains("Seccomp:\t2"), "the server runs under the filter:\n{status}");
    let image = test_image(&unique("kiln/seccomp-profile"));
    let dockerfile = format!(
        "FROM {}/busybox\nRUN echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd && mkdir -p /home/app \
         && echo ok > /home/app/ok && chown -R 1000:1000 /home/app\n\
         RUN --network=none --mount=type=cache,target=/cache echo cached > /cache/x && cp /cache/x /x\n\
         USER app\nRUN id -u > /home/app/uid\n",
        registry()
    );
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let root = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(root.rootfs.join("home/app/ok")).unwrap(), "ok\n");
    assert_eq!(std::fs::read_to_string(root.rootfs.join("x")).unwrap(), "cached\n");
    assert_eq!(std::fs::read_to_string(root.rootfs.join("home/app/uid")).unwrap().trim(), "1000");
}

#[test]
fn without_kilns_additions_the_runtime_default_stops_it_at_start() {
    let mut profile: Value = serde_json::from_slice(&std::fs::read(repo("deploy/seccomp/kiln.json")).unwrap()).unwrap();
    let rules = profile["syscalls"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|r| !r["comment"].as_str().unwrap_or("").starts_with("kiln:"));
    assert_eq!(rules.len(), before - 1, "the profile marks its additions");
    let tmp = user_scratch();
    let default_like = tmp.path().join("runtime-default.json");
    std::fs::write(&default_like, profile.to_string()).unwrap();
    let data = tmp.path().join("data");
    let out = under_seccomp(
        &["--profile", default_like.to_str().unwrap()],
        &["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--data-dir", data.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("a seccomp filter confines this process"), "{stderr}");
}

#[test]
fn a_running_server_reports_the_doctor_checks_on_its_admin_listener() {
    let server = Server::start(ServerOptions { user: Some(test_user()), ..Default::default() });
    let image = format!("{}/kiln/doctor-target:1", registry());
    let resp = server.admin("GET", &format!("/doctor?image={}", image.replace('/', "%2F")));
    assert_eq!(resp.status().as_u16(), 200);
    let report: Value = resp.json().unwrap();
    assert_eq!(report["can_build"], true, "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    for name in ["user namespace", "subordinate IDs", "newuidmap", "overlayfs (userxattr)", "/proc in a PID namespace"]
    {
        assert_eq!(check(checks, name)["status"], "ok", "{name}: {report:#}");
    }
    let reg = check(checks, "registry");
    assert_eq!(reg["status"], "ok", "{reg}");
    let unreachable = server.admin("GET", "/doctor?image=127.0.0.1:9%2Fx:1");
    assert_eq!(unreachable.status().as_u16(), 503);
    let report: Value = unreachable.json().unwrap();
    assert_eq!(check(report["checks"].as_array().unwrap(), "registry")["status"], "fail");
    assert_eq!(
        reqwest::blocking::get(format!("{}/doctor", server.url)).unwrap().status().as_u16(),
        404,
        "not on the API port"
    );
    let modes = check(checks, "secret file modes");
    assert_eq!(modes["status"], "ok", "the test's secret is 0600: {modes}");
    for _ in 0..3 {
        assert_eq!(server.admin("GET", "/doctor").status().as_u16(), 200);
    }
    let left: Vec<_> = std::fs::read_dir(&server.data_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("doctor-"))
        .collect();
    assert!(left.is_empty(), "every probe cleans up after itself: {left:?}");
}

#[test]
fn the_apparmor_profile_parses_with_this_hosts_apparmor_parser() {
    let text = std::fs::read_to_string(repo("deploy/apparmor/kiln")).unwrap();
    for rule in ["userns,", "mount fstype=overlay,", "pivot_root,", "umount,"] {
        assert!(text.lines().any(|l| l.trim() == rule), "the profile grants {rule}");
    }
    // Debian 12's parser is AppArmor 3, which has no `userns` rule (AppArmor 4 does).
    let tmp = tempfile::tempdir().unwrap();
    let v3 = tmp.path().join("kiln");
    std::fs::write(&v3, text.lines().filter(|l| l.trim() != "userns,").collect::<Vec<_>>().join("\n")).unwrap();
    let out = Command::new("apparmor_parser").args(["-Q", "-K", "-T"]).arg(&v3).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn doctor_checks_a_registrys_push_credentials() {
    let (reg, user, pass) = auth_registry();
    let tmp = tempfile::tempdir().unwrap();
    let image = format!("{reg}/kiln/doctor-push:1");
    let run = |config: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.args(["doctor", "--json", "--insecure", "--image", &image, "--data-dir"]).arg(tmp.path().join("data"));
        let empty = tmp.path().join("none.json");
        std::fs::write(&empty, "{}").unwrap();
        cmd.arg("--docker-config").arg(config.unwrap_or(&empty));
        parse_report(&cmd.current_dir("/").output().unwrap())
    };
    let (ok, checks) = run(None);
    assert!(!ok);
    assert_diagnosis(&checks, "registry", "", "--docker-config");
    let config = tmp.path().join("config.json");
    std::fs::write(&config, docker_config_for(&reg, &user, &pass)).unwrap();
    let (ok, checks) = run(Some(&config));
    assert!(ok, "{checks:#?}");
    assert_eq!(check(&checks, "registry")["status"], "ok");
}
