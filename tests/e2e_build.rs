//! End to end through `POST /build`: real registry, real rootless
//! containers, results checked with skopeo and umoci.

mod support;

use serde_json::json;
use support::*;

const DOCKERFILE: &str = r#"FROM {REG}/busybox:latest
RUN echo hello > /hello && echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app/data && chown 1000:1000 /home/app/data && rm /etc/base-marker
COPY src /home/app/src
ENV GREETING="hello world" MODE=test
WORKDIR /home/app
USER app
EXPOSE 8080
LABEL org.example.built-by=kiln
CMD ["cat", "/hello"]
"#;

fn e2e_request(image: &str) -> Vec<u8> {
    let dockerfile = DOCKERFILE.replace("{REG}", &registry());
    let config = json!({"image": image, "buildArgs": {"ADDITIONAL_PACKAGE": ""}});
    request_tar(
        &config,
        &[("Dockerfile", dockerfile.as_bytes()), ("src/main.py", b"print('hi')\n"), ("src/lib/util.py", b"X = 1\n")],
    )
}

fn check_e2e_image(image: &str) {
    let img = unpack_image(image, None);
    let root = &img.rootfs;
    assert_eq!(std::fs::read_to_string(root.join("hello")).unwrap(), "hello\n");
    assert!(!root.join("etc/base-marker").exists(), "a file deleted in RUN must be gone (whiteout)");
    assert!(root.join("bin/busybox").exists(), "base content survives");
    assert_eq!(owner_mode(&root.join("home/app/data")).0, 1000, "chown inside RUN");
    assert_eq!(owner_mode(&root.join("home/app/data")).1, 1000);
    assert_eq!(std::fs::read_to_string(root.join("home/app/src/main.py")).unwrap(), "print('hi')\n");
    assert_eq!(std::fs::read_to_string(root.join("home/app/src/lib/util.py")).unwrap(), "X = 1\n");
    assert_eq!(owner_mode(&root.join("home/app/src/main.py")), (0, 0, 0o644), "context files become root-owned");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000"), "{passwd}");
    let cfg = image_config(image, None);
    let c = &cfg["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/home/app");
    assert_eq!(c["Cmd"], json!(["cat", "/hello"]));
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(c["Labels"]["org.example.built-by"], "kiln");
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"GREETING=hello world") && env.contains(&"MODE=test"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    let layers = cfg["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(layers, 4, "base + RUN + COPY + WORKDIR");
    let history = cfg["history"].as_array().unwrap();
    assert_eq!(
        history.iter().filter(|h| h["empty_layer"] != true).count(),
        layers,
        "one non-empty history entry per layer"
    );
}

fn manifest_line(reply: &serde_json::Value) -> String {
    log_text(reply)
        .lines()
        .find(|l| l.contains("pushing manifest for"))
        .expect("manifest line")
        .split_once(' ')
        .unwrap()
        .1
        .to_string()
}

#[test]
fn e2e_build_push_and_cached_rebuild_as_root() {
    let server = Server::start(ServerOptions::default());
    let repo = unique("kiln/e2e-root");
    let image = format!("{}/{repo}:v1", registry());
    let body = e2e_request(&image);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    assert_eq!(reply["image"], image.as_str());
    assert!(manifest_line(&reply).starts_with(&format!("pushing manifest for {image}@sha256:")));
    let digest = reply["digest"].as_str().expect("the reply names the manifest digest");
    assert!(manifest_line(&reply).ends_with(digest), "{reply}");
    let pinned = image_manifest(&format!("{}/{repo}@{digest}", registry()));
    assert_eq!(pinned, image_manifest(&image), "the digest pins the pushed manifest");
    check_e2e_image(&image);

    let uploads = upload_count(&repo);
    assert!(uploads >= 3, "first build uploads its layers and config ({uploads})");
    let (status, again) = server.build(&body);
    assert_success(status, &again);
    let log = log_text(&again);
    assert_eq!(log.lines().filter(|l| l.ends_with(" CACHED")).count(), 4, "every step cached:\n{log}");
    assert_eq!(executed_runs(&reply), 1);
    assert_eq!(executed_runs(&again), 0, "no RUN executed:\n{log}");
    // Its SBOM is the same document; its provenance is this build's own.
    assert_eq!(upload_count(&repo), uploads + 1, "a cached rebuild uploads only its provenance");
    assert_eq!(manifest_line(&again), manifest_line(&reply), "same image digest");
}

#[test]
fn e2e_build_as_unprivileged_user() {
    let user = std::env::var("KILN_TEST_USER").unwrap_or_else(|_| "kiln-test".into());
    let server = Server::start(ServerOptions { user: Some(user), ..Default::default() });
    let image = test_image("kiln/e2e-rootless");
    let (status, reply) = server.build(&e2e_request(&image));
    assert_success(status, &reply);
    check_e2e_image(&image);
}

#[test]
fn failures_name_the_step_and_line_and_leave_the_server_working() {
    let server = Server::start(ServerOptions::default());
    let reg = registry();
    let image = test_image("kiln/failures");
    let req = |dockerfile: String| request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);

    let (status, reply) = server.build(&req(format!("FROM {reg}/does-not-exist:1\nRUN true\n")));
    assert_eq!((status, reply["status"].as_str()), (500, Some("failed")), "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(
        err.contains("Dockerfile:1") && err.contains("does-not-exist") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );

    let (status, reply) =
        server.build(&req(format!("FROM {reg}/busybox\nENV A=1\nRUN echo before-failure && exit 3\n")));
    assert_eq!((status, reply["status"].as_str()), (500, Some("failed")), "{reply}");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("Dockerfile line 3") && err.contains("RUN echo before-failure"), "{err}");
    assert!(err.contains("exit code: 3") && err.contains("before-failure"), "{err}");
    assert!(log_text(&reply).contains("before-failure"), "step output is in the log");

    let (status, reply) = server.build(&req(format!("FROM {reg}/busybox\nRUNN true\n")));
    assert_eq!(status, 400);
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("Dockerfile:2:1: unknown instruction: RUNN (did you mean RUN?)"), "{err}");

    let (status, reply) = server.build(&req(format!("FROM {reg}/busybox\nRUN echo recovered > /ok\n")));
    assert_success(status, &reply);
    let img = unpack_image(&image, None);
    assert_eq!(std::fs::read_to_string(img.rootfs.join("ok")).unwrap(), "recovered\n");
}

#[test]
fn run_steps_cannot_see_server_secrets() {
    let (auth_reg, user, pass) = auth_registry();
    let docker_config = json!({"auths": {auth_reg: {"auth": base64_encode(&format!("{user}:{pass}"))}}}).to_string();
    let server = Server::start(ServerOptions { docker_config: Some(docker_config), ..Default::default() });
    let paths = [
        server.secret_file.display().to_string(),
        server.docker_config.as_ref().unwrap().display().to_string(),
        server.data_dir.display().to_string(),
    ];
    let probe = |targets: &str| {
        format!(
            "FROM {}/busybox\nRUN for p in {targets}; do if [ -e \"$p\" ]; then echo \"LEAK: $p\"; exit 1; fi; done; \
             if tr '\\0' '\\n' < /proc/self/environ | grep -q '{SECRET}\\|{pass}'; then echo LEAK-ENV; exit 1; fi; \
             if grep -rqs '{SECRET}' /etc /root /tmp /run /home; then echo LEAK-FILE; exit 1; fi; echo sandbox-ok\n",
            registry()
        )
    };
    let image = test_image("kiln/sandbox");
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", probe(&paths.join(" ")).as_bytes())]);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    assert!(log_text(&reply).contains("sandbox-ok"));

    // Control: the same probe does fail when a path is visible.
    let body = request_tar(&json!({"image": image}), &[("Dockerfile", probe("/etc/passwd").as_bytes())]);
    let (_, reply) = server.build(&body);
    assert_eq!(reply["status"], "failed");
    assert!(log_text(&reply).contains("LEAK: /etc/passwd"), "{}", log_text(&reply));
}

#[test]
fn pulls_and_pushes_with_basic_auth_from_docker_config() {
    let (auth_reg, user, pass) = auth_registry();
    let image = format!("{auth_reg}/{}:v1", unique("kiln/authed"));
    let body = request_tar(
        &json!({"image": image}),
        &[("Dockerfile", format!("FROM {auth_reg}/busybox\nRUN echo authed > /authed\n").as_bytes())],
    );

    let anonymous = Server::start(ServerOptions::default());
    let (status, reply) = anonymous.build(&body);
    assert_eq!(reply["status"], "failed", "{reply}");
    assert_eq!(status, 500, "a registry auth failure is a build failure, not a bad signature");
    assert!(reply["error"].as_str().unwrap().contains("no credentials are configured"), "{reply}");

    let docker_config =
        json!({"auths": {auth_reg.clone(): {"auth": base64_encode(&format!("{user}:{pass}"))}}}).to_string();
    let server = Server::start(ServerOptions { docker_config: Some(docker_config), ..Default::default() });
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let img = unpack_image(&image, Some((&user, &pass)));
    assert_eq!(std::fs::read_to_string(img.rootfs.join("authed")).unwrap(), "authed\n");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn pulls_through_an_image_index_and_docker_v2_manifests() {
    let server = Server::start(ServerOptions::default());
    for tag in ["index", "v2s2"] {
        let image = format!("{}/{}:v1", registry(), unique(&format!("kiln/base-{tag}")));
        let dockerfile = format!(
            "FROM {}/busybox:{tag}\nRUN test ! -e /wrong-platform && test -x /bin/busybox && echo {tag} > /tag\n",
            registry()
        );
        let (status, reply) =
            server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
        assert_success(status, &reply);
        let img = unpack_image(&image, None);
        assert_eq!(std::fs::read_to_string(img.rootfs.join("tag")).unwrap(), format!("{tag}\n"));
        assert!(!img.rootfs.join("wrong-platform").exists(), "the host platform's manifest was chosen");
        let manifest = image_manifest(&image);
        assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(
                layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
                "base layers re-typed to OCI"
            );
        }
    }
}

#[test]
fn zstd_layers_push_and_unpack() {
    let server =
        Server::start(ServerOptions { args: vec!["--compression".into(), "zstd".into()], ..Default::default() });
    let image = test_image("kiln/zstd");
    let dockerfile = format!("FROM {}/busybox\nRUN echo zstd > /marker\n", registry());
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let manifest = image_manifest(&image);
    let types: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert_eq!(types.last(), Some(&"application/vnd.oci.image.layer.v1.tar+zstd"), "{manifest}");
    assert!(types[0].ends_with("gzip"), "base layers pass through untouched: {types:?}");
    // umoci 0.4 cannot read zstd: skopeo (containers/image) decodes it and
    // writes gzip for umoci to unpack.
    let tmp = tempfile::tempdir().unwrap();
    let layout = format!("{}:img", tmp.path().join("oci").display());
    let ok = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", "--dest-compress", "--dest-compress-format", "gzip"])
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{layout}"))
        .status()
        .unwrap();
    assert!(ok.success(), "skopeo decodes the zstd layer");
    let bundle = tmp.path().join("bundle");
    let ok = std::process::Command::new("umoci").args(["unpack", "--image", &layout]).arg(&bundle).status().unwrap();
    assert!(ok.success());
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/marker")).unwrap(), "zstd\n");
}

/// Builds the reproducibility Dockerfile on a fresh server with `env`;
/// returns the manifest digest (by skopeo) and the config's `created`.
fn build_on_fresh_server(env: &[(String, String)], round: usize) -> (String, String) {
    let dockerfile = format!(
        "FROM {}/busybox\nCOPY app.txt /app/\nRUN mkdir -p /app/data && echo same > /app/data/f && ln -s data/f /app/link && touch /app/empty\n",
        registry()
    );
    let server = Server::start(ServerOptions { env: env.to_vec(), ..Default::default() });
    let image = test_image(&unique(&format!("kiln/reproducible-{round}")));
    let files: &[(&str, &[u8])] = &[("Dockerfile", dockerfile.as_bytes()), ("app.txt", b"app\n")];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), files));
    assert_success(status, &reply);
    assert_eq!(executed_runs(&reply), 1, "each server runs the step itself");
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &format!("docker://{image}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let created = image_config(&image, None)["created"].as_str().unwrap_or_default().to_string();
    assert_eq!(reply["digest"].as_str().unwrap(), String::from_utf8_lossy(&out.stdout).trim());
    (String::from_utf8(out.stdout).unwrap().trim().to_string(), created)
}

#[test]
fn builds_are_reproducible_by_default_and_honour_source_date_epoch() {
    let (first, created) = build_on_fresh_server(&[], 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (second, _) = build_on_fresh_server(&[], 1);
    assert_eq!(first, second, "two servers, two runs of every step, one image digest");
    assert_eq!(created, "1970-01-01T00:00:00Z");
    let epoch = vec![("SOURCE_DATE_EPOCH".to_string(), "1700000000".to_string())];
    let (third, created) = build_on_fresh_server(&epoch, 2);
    assert_ne!(third, first);
    assert_eq!(created, "2023-11-14T22:13:20Z");
    let now = vec![("SOURCE_DATE_EPOCH".to_string(), "now".to_string())];
    let (_, created) = build_on_fresh_server(&now, 3);
    assert!(created.starts_with("20"), "real time: {created}");
}

#[test]
fn a_second_repository_gets_layers_by_mount_not_upload() {
    // Layers only: no attestations, whose blobs each repository gets too.
    let args = vec!["--provenance=off".to_string(), "--sbom=false".to_string()];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let dockerfile = format!("FROM {}/busybox\nRUN head -c 100000 /dev/urandom > /blob\n", registry());
    let body = |repo: &str| {
        let image = format!("{}/{repo}:v1", registry());
        request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())])
    };
    let (first, second) = (unique("kiln/mount-a"), unique("kiln/mount-b"));
    let (status, reply) = server.build(&body(&first));
    assert_success(status, &reply);
    assert!(blob_uploads(&first) >= 2, "the first repository receives the built layer and the config");
    let (status, reply) = server.build(&body(&second));
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert_eq!(log.matches("(mounted)").count(), 2, "base and built layer are mounted:\n{log}");
    assert_eq!(blob_uploads(&second), 1, "only the config blob is uploaded:\n{log}");
}
