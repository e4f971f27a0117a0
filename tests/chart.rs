//! The Helm chart (deploy/chart/kiln): `helm lint --strict`, `helm
//! template` validated against Kubernetes' own schemas with
//! kubernetes-validate, and the rendered manifests checked for what
//! operators rely on: non-root, unprivileged, probes, Prometheus
//! annotations, and pro-builder's values, secret names and mount paths
//! (a pro-builder values file renders unchanged). The tools come from
//! scripts/setup-host.sh (a venv in /opt/kiln-test-tools).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("KILN_TEST_TOOLS").unwrap_or_else(|_| "/opt/kiln-test-tools".into());
    let path = Path::new(&dir).join("bin").join(name);
    assert!(path.exists(), "{} missing: run scripts/setup-host.sh (scripts/test.sh does)", path.display());
    path
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/chart/kiln")
}

/// `helm template` with `args`: the YAML, or the error text.
fn render(args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool("helm")).args(["template", "kiln"]).arg(chart()).args(args).output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Validates rendered YAML against Kubernetes' schemas (strict: unknown
/// fields fail) and returns its documents as JSON.
fn validated(yaml: &str) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    for version in ["1.30.0", "1.37.0"] {
        let out =
            Command::new(tool("kubernetes-validate")).args(["--strict", "-k", version]).arg(&file).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !text.contains("ERROR"), "Kubernetes {version} rejects the chart:\n{text}");
    }
    let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))";
    let out = Command::new(tool("python")).args(["-c", script]).stdin(std::fs::File::open(&file).unwrap()).output();
    serde_json::from_slice(&out.unwrap().stdout).expect("rendered YAML parses")
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in {docs:#?}"))
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found = docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name);
    found.unwrap_or_else(|| panic!("no {kind} {name} in {docs:#?}"))
}

fn env_of(container: &Value) -> std::collections::BTreeMap<String, String> {
    let env = container["env"].as_array().unwrap();
    env.iter().map(|e| (e["name"].as_str().unwrap().into(), e["value"].as_str().unwrap_or("").into())).collect()
}

fn mount_of(container: &Value, name: &str) -> String {
    let mounts = container["volumeMounts"].as_array().unwrap();
    let m = mounts.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no mount {name}"));
    m["mountPath"].as_str().unwrap().to_string()
}

#[test]
fn helm_lint_passes_strictly() {
    let out = Command::new(tool("helm")).args(["lint", "--strict"]).arg(chart()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_default_render_is_valid_non_root_unprivileged_and_observable() {
    let yaml = render(&[]).unwrap();
    assert!(!yaml.contains("privileged: true"), "nothing runs privileged");
    let docs = validated(&yaml);
    let deployment = kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "8081");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 10001);
    assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 135, "drain timeout + 15 s");
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container: no BuildKit sidecar");
    let kiln = &containers[0];
    let sc = &kiln["securityContext"];
    assert_eq!((&sc["privileged"], &sc["runAsNonRoot"]), (&json!(false), &json!(true)));
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"], "add": ["SETUID", "SETGID"]}));
    assert_eq!(sc["seccompProfile"], json!({"type": "Localhost", "localhostProfile": "profiles/kiln.json"}));
    assert_eq!(sc["appArmorProfile"], json!({"type": "Localhost", "localhostProfile": "kiln"}));
    assert_eq!(kiln["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "http"}));
    assert_eq!(kiln["readinessProbe"]["httpGet"], json!({"path": "/ready", "port": "http"}));
    let env = env_of(kiln);
    assert_eq!(env["max_inflight"], "16", "a replica takes a bounded number of builds by default");
    assert_eq!(env["disable_hmac"], "false");
    assert_eq!(env["KILN_PAYLOAD_SECRET"], "/var/openfaas/secrets/payload-secret");
    assert!(!env.contains_key("build_secrets_private_key_path"));
    assert_eq!(mount_of(kiln, "payload-secret"), "/var/openfaas/secrets");
    assert_eq!(mount_of(kiln, "registry-secret"), "/home/app/.docker");
    let service = kind(&docs, "Service");
    assert_eq!(service["metadata"]["name"], "pro-builder", "the Service keeps pro-builder's name");
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn a_pro_builder_values_file_renders_unchanged_apart_from_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let values = tmp.path().join("pro-builder-values.yaml");
    std::fs::write(
        &values,
        "proBuilder:\n  image: ghcr.io/kiln-builder/kiln:0.1.0\n  maxInflight: 4\n  resources:\n    requests:\n      memory: 64Mi\n      cpu: 100m\n\
         buildkit:\n  image: moby/buildkit:v0.30.0-rootless\n  rootless: true\n  resources:\n    requests:\n      memory: 2Gi\n\
         disableHmac: false\nenableLchown: false\nreplicas: 2\n\
         buildSecrets:\n  privateKeySecret: pro-builder-build-secrets\n  privateKeyKey: key\n  mountPath: /var/secrets/buildkit\n",
    )
    .unwrap();
    let docs = validated(&render(&["-f", values.to_str().unwrap()]).unwrap());
    let deployment = kind(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let kiln = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(kiln["image"], "ghcr.io/kiln-builder/kiln:0.1.0");
    let env = env_of(kiln);
    assert_eq!(env["max_inflight"], "4");
    assert_eq!(env["build_secrets_private_key_path"], "/var/secrets/buildkit/key");
    assert_eq!(mount_of(kiln, "build-secrets-key"), "/var/secrets/buildkit");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let key = volumes.iter().find(|v| v["name"] == "build-secrets-key").unwrap();
    assert_eq!(key["secret"]["secretName"], "pro-builder-build-secrets");
    let secrets: Vec<&Value> = volumes.iter().filter(|v| v.get("secret").is_some()).collect();
    assert_eq!(secrets.len(), 3, "payload, registry and build-secrets key: {secrets:?}");
    for v in secrets {
        // 0440: the owner (root) and the pod's fsGroup (kiln) only.
        assert_eq!(v["secret"]["defaultMode"], 0o440, "{} is not readable by other users", v["name"]);
    }
}

#[test]
fn the_values_schema_refuses_bad_values_with_their_name() {
    for (set, field) in [
        ("proBuilder.maxInflight=-1", "maxInflight"),
        ("disableHmac=maybe", "disableHmac"),
        ("kiln.shutdownTimeout=soon", "shutdownTimeout"),
        ("payloadSecret.mountPath=relative/path", "mountPath"),
    ] {
        let err = render(&["--set", set]).expect_err(set);
        assert!(err.contains(field), "{set}: {err}");
    }
}

#[test]
fn the_faasd_snippet_is_one_service_in_pro_builders_place() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/faasd/docker-compose.kiln.yaml");
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let out = Command::new(tool("python")).args(["-c", script]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compose: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = compose["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), ["pro-builder"], "one service, no buildkit");
    let kiln = &services["pro-builder"];
    assert_eq!(kiln["ports"], json!(["127.0.0.1:8088:8080"]));
    assert_eq!(kiln["user"], "10001:10001");
    let targets: Vec<_> = kiln["volumes"].as_array().unwrap().iter().map(|v| v["target"].as_str().unwrap()).collect();
    assert!(targets.contains(&"/var/openfaas/secrets/payload-secret"), "{targets:?}");
    assert!(targets.contains(&"/home/app/.docker/config.json"), "{targets:?}");
    assert_eq!(kiln["environment"]["DOCKER_CONFIG"], "/home/app/.docker");
}

#[test]
fn the_profile_installer_ships_the_repositorys_seccomp_profile() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/seccomp/kiln.json")).unwrap();
    let in_chart = std::fs::read_to_string(chart().join("files/seccomp-kiln.json")).unwrap();
    assert_eq!(in_chart, shipped, "deploy/seccomp/kiln.json is the chart's file (a symlink), so the two cannot drift");
    let docs = validated(&render(&["--set", "kiln.profiles.install=true"]).unwrap());
    let config_map = named(&docs, "ConfigMap", "pro-builder-seccomp");
    let installed: Value = serde_json::from_str(config_map["data"]["kiln.json"].as_str().unwrap()).unwrap();
    assert_eq!(installed, serde_json::from_str::<Value>(&shipped).unwrap());
    let daemon = kind(&docs, "DaemonSet");
    let pod = &daemon["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][1]["hostPath"]["path"], "/var/lib/kubelet/seccomp/profiles");
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!((&sc["allowPrivilegeEscalation"], &sc["capabilities"]), (&json!(false), &json!({"drop": ["ALL"]})));
    assert!(!render(&[]).unwrap().contains("DaemonSet"), "off by default");
}

#[test]
fn unconfined_and_no_apparmor_remain_possible_fallbacks() {
    let unconfined =
        ["--set", "kiln.seccompProfile.type=Unconfined", "--set", "kiln.seccompProfile.localhostProfile=null"];
    let docs = validated(&render(&unconfined).unwrap());
    let sc = &kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["seccompProfile"], json!({"type": "Unconfined"}));
    let docs = validated(&render(&["--set", "kiln.appArmorProfile=null"]).unwrap());
    let sc = &kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert!(sc.get("appArmorProfile").is_none(), "{sc}");
}

#[test]
fn a_signing_key_secret_is_mounted_read_only_and_named_to_kiln() {
    let set = [
        "--set",
        "signing.keySecret=kiln-signing",
        "--set",
        "signing.passwordKey=password",
        "--set",
        "kiln.provenance=max",
    ];
    let docs = validated(&render(&set).unwrap());
    let deployment = kind(&docs, "Deployment");
    let kiln = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = env_of(kiln);
    assert_eq!(env["KILN_SIGNING_KEY"], "/var/secrets/kiln-signing/signing.key");
    assert_eq!(env["KILN_PROVENANCE"], "max");
    assert_eq!(env["KILN_SBOM"], "true");
    let password = kiln["env"].as_array().unwrap().iter().find(|e| e["name"] == "COSIGN_PASSWORD").unwrap();
    assert_eq!(password["valueFrom"]["secretKeyRef"]["key"], "password");
    assert_eq!(mount_of(kiln, "signing-key"), "/var/secrets/kiln-signing");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let key = volumes.iter().find(|v| v["name"] == "signing-key").unwrap();
    assert_eq!(key["secret"]["secretName"], "kiln-signing");
    assert_eq!(key["secret"]["defaultMode"], 0o440);
    // Only the key is mounted, not the password beside it in the Secret.
    assert_eq!(key["secret"]["items"], serde_json::json!([{"key": "signing.key", "path": "signing.key"}]));
    assert!(render(&["--set", "kiln.provenance=full"]).is_err(), "the schema refuses an unknown mode");
}

#[test]
fn scaled_out_replicas_share_the_registry_cache_by_default() {
    let cache_of = |set: &[&str]| {
        let docs = validated(&render(set).unwrap());
        env_of(&kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])["KILN_REGISTRY_CACHE"].clone()
    };
    assert_eq!(cache_of(&[]), "off", "one replica keeps its own cache");
    assert_eq!(cache_of(&["--set", "replicas=3"]), "image", "replicas share theirs through the registry");
    assert_eq!(cache_of(&["--set", "replicas=3", "--set", "kiln.registryCache=off"]), "off");
    let one = ["--set", "kiln.registryCache=registry.example/cache/kiln:cache"];
    assert_eq!(cache_of(&one), "registry.example/cache/kiln:cache", "a chosen cache is kept");
}

#[test]
fn the_grafana_dashboard_ships_for_the_sidecar_and_can_be_left_out() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/kiln.json")).unwrap();
    let in_chart = std::fs::read_to_string(chart().join("files/grafana-kiln.json")).unwrap();
    assert_eq!(in_chart, shipped, "deploy/grafana/kiln.json is the chart's file (a symlink), so the two cannot drift");
    let docs = validated(&render(&["--set", "kiln.grafanaDashboard.namespace=monitoring"]).unwrap());
    let config_map = named(&docs, "ConfigMap", "pro-builder-grafana-dashboard");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1", "the sidecar's label");
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
    let dashboard: Value = serde_json::from_str(config_map["data"]["kiln.json"].as_str().unwrap()).unwrap();
    assert_eq!(dashboard, serde_json::from_str::<Value>(&shipped).unwrap());
    let off = render(&["--set", "kiln.grafanaDashboard.enabled=false"]).unwrap();
    assert!(!off.contains("grafana-dashboard"), "left out when disabled");
    let bad = render(&["--set", "kiln.grafanaDashboard.label=x"]).unwrap_err();
    assert!(bad.contains("label"), "an unknown key is refused: {bad}");
}
