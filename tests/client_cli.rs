//! `kiln build` and `kiln keygen` against a running server.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::*;

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

#[test]
fn kiln_build_honours_dockerignore_seals_secrets_and_reports_failures() {
    let keys = tempfile::tempdir().unwrap();
    let out = kiln().args(["keygen", "--out"]).arg(keys.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = |n: &str| std::fs::metadata(keys.path().join(n)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("key"), mode("key.pub")), (0o600, 0o644));
    let args = vec!["--build-secrets-key".to_string(), keys.path().join("key").display().to_string()];
    let server = Server::start(ServerOptions { args, ..Default::default() });

    let ctx = tempfile::tempdir().unwrap();
    let reg = registry();
    let dockerfile = format!(
        "FROM {reg}/busybox\nARG GREETING\nCOPY . /app\nRUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha && echo \"$GREETING\" > /greeting\n"
    );
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.path().join(".dockerignore"), "secret.txt\nlogs\n").unwrap();
    std::fs::write(ctx.path().join("main.py"), "print(1)\n").unwrap();
    std::fs::write(ctx.path().join("secret.txt"), "do not send\n").unwrap();
    std::fs::create_dir(ctx.path().join("logs")).unwrap();
    std::fs::write(ctx.path().join("logs/x.log"), "x\n").unwrap();
    let token = ctx.path().join("token-file");
    std::fs::write(&token, "tok-value").unwrap();
    let image = test_image("kiln/cli");
    let run = |dir: &std::path::Path| {
        kiln()
            .arg("build")
            .arg(dir)
            .args(["--image", &image, "--url", &format!("{}/build", server.url), "--build-arg", "GREETING=hello"])
            .arg("--payload-secret")
            .arg(&server.secret_file)
            .arg("--secret-file")
            .arg(format!("tok={}", token.display()))
            .output()
            .unwrap()
    };
    let out = run(ctx.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("built and pushed {image}")), "{stdout}");
    assert!(stdout.contains("] RUN --mount=type=secret"), "plain step lines when not on a terminal: {stdout}");
    let img = unpack_image(&image, None);
    assert!(img.rootfs.join("app/main.py").exists());
    assert!(!img.rootfs.join("app/secret.txt").exists(), ".dockerignore is honoured client-side");
    assert!(!img.rootfs.join("app/logs").exists());
    assert_eq!(std::fs::read_to_string(img.rootfs.join("greeting")).unwrap(), "hello\n");
    let sha = std::fs::read_to_string(img.rootfs.join("tok.sha")).unwrap();
    assert_eq!(sha.trim(), sha256_hex(b"tok-value"));

    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {reg}/busybox\nRUNN broken\n")).unwrap();
    let out = run(ctx.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:2:1: unknown instruction: RUNN") && stderr.contains("2 | RUNN broken"),
        "{stderr}"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}
