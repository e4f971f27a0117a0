//! A registry with a certificate from a private CA: kiln pushes to it when
//! given the CA (`--registry-ca HOST=ca.pem`, which also means HTTPS on
//! loopback) and refuses with a clear message when the CA it trusts is not
//! the one that signed the registry's certificate.

mod support;

use serde_json::json;
use std::path::Path;
use std::process::Command;
use support::*;

/// A CA (`<name>.pem`) and, for the first, a server certificate for 127.0.0.1.
fn make_certs(dir: &Path) {
    let ca = |name: &str| {
        format!("openssl req -x509 -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name} 2>/dev/null")
    };
    sh(dir, &ca("ca"));
    sh(dir, &ca("other-ca"));
    sh(
        dir,
        "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null && \
         printf 'subjectAltName=IP:127.0.0.1\\n' > ext && \
         openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null",
    );
}

fn start_tls_registry(dir: &Path) -> Daemon {
    let port = free_port();
    let config = format!(
        "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {d}/storage}}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/srv.pem\n    key: {d}/srv.key\n",
        d = dir.display()
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(dir.join("config.yml")).stderr(std::process::Stdio::null());
    Daemon::spawn(cmd, port)
}

#[test]
fn pushes_with_a_private_ca_and_refuses_without_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    make_certs(dir.path());
    let tls = start_tls_registry(dir.path());
    let image = format!("{}/{}:v1", tls.addr, unique("kiln/tls"));
    let dockerfile = format!("FROM {}/busybox\nRUN echo tls > /tls\n", registry());
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);

    let ca = |name: &str| format!("{}={}/{name}.pem", tls.addr, dir.path().display());
    let trusted = Server::start(ServerOptions { args: vec!["--registry-ca".into(), ca("ca")], ..Default::default() });
    let (status, reply) = trusted.build(&body);
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("tls")).unwrap(), "tls\n");

    let wrong =
        Server::start(ServerOptions { args: vec!["--registry-ca".into(), ca("other-ca")], ..Default::default() });
    let (status, reply) = wrong.build(&body);
    assert_eq!(status, 500, "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("certificate is not trusted") && err.contains("--registry-ca"), "{err}");
}
