//! Supply-chain evidence against a real registry (Debian's
//! docker-registry 2.8, which has no referrers API): every pushed image
//! gets SLSA provenance and an SPDX SBOM as OCI artifacts found through
//! the referrers tag schema, and, with a signing key, a sigstore
//! signature. Checked with independent tools: `openssl` for the image
//! signature (Debian's skopeo 1.9 has sigstore compiled out: "Debian-local
//! change: sigstore disabled"), securesystemslib for the DSSE envelopes,
//! the SPDX project's validator (`pyspdxtools`), in-toto's attestation
//! library and a JSON schema of SLSA provenance v1 (`check-jsonschema`);
//! and with `kiln verify`.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().unwrap()
}

/// A signing key pair from `kiln keygen --signing`: (key, public key).
fn keypair(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let out = kiln(&["keygen", "--signing", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir.join("signing.key"), dir.join("signing.pub"))
}

fn signing_server(key: &Path) -> Server {
    let args = vec!["--signing-key".to_string(), key.display().to_string()];
    Server::start(ServerOptions { args, ..Default::default() })
}

fn build(server: &Server, image: &str, files: &[(&str, &[u8])], args: Value) -> Value {
    let (status, reply) = server.build(&request_tar(&json!({ "image": image, "buildArgs": args }), files));
    assert_success(status, &reply);
    reply
}

/// The test tools' venv (scripts/setup-host.sh).
fn tool(name: &str) -> PathBuf {
    let dir = std::env::var("KILN_TEST_TOOLS").unwrap_or_else(|_| "/opt/kiln-test-tools".into());
    PathBuf::from(dir).join("bin").join(name)
}

fn attestations_py(args: &[&Path]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/attestations.py");
    Command::new(tool("python3")).arg(script).args(args).output().unwrap()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `registry/repo:tag` → `repo`.
fn repo_of(image: &str) -> String {
    let without_tag = image.rsplit_once(':').unwrap().0;
    without_tag.split_once('/').unwrap().1.to_string()
}

/// The referrers tag schema's index for `digest`.
fn referrers_index(image: &str, digest: &str) -> Value {
    let tag = digest.replace(':', "-");
    serde_json::from_slice(&registry_get(&format!("{}/manifests/{tag}", repo_of(image)), OCI_INDEX)).unwrap()
}

/// The one layer of the artifact `digest` (a manifest in `image`'s repo).
fn artifact_layer(image: &str, digest: &str) -> (Value, Vec<u8>) {
    let repo = repo_of(image);
    let manifest: Value =
        serde_json::from_slice(&registry_get(&format!("{repo}/manifests/{digest}"), OCI_MANIFEST)).unwrap();
    let layer = manifest["layers"][0].clone();
    let blob = registry_get(&format!("{repo}/blobs/{}", layer["digest"].as_str().unwrap()), "*/*");
    (manifest, blob)
}

/// The attached document of `predicate_type`: the artifact's layer bytes.
fn attached(image: &str, digest: &str, predicate_type: &str) -> (Value, Vec<u8>) {
    let index = referrers_index(image, digest);
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["in-toto.io/predicate-type"] == predicate_type)
        .unwrap_or_else(|| panic!("no {predicate_type} in {index}"))
        .clone();
    artifact_layer(image, entry["digest"].as_str().unwrap())
}

/// The cosign signature of `digest`: (payload, DER signature).
fn cosign_signature(image: &str, digest: &str) -> (Vec<u8>, Vec<u8>) {
    let repo = repo_of(image);
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let manifest: Value =
        serde_json::from_slice(&registry_get(&format!("{repo}/manifests/{tag}"), OCI_MANIFEST)).unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    let payload = registry_get(&format!("{repo}/blobs/{}", layer["digest"].as_str().unwrap()), "*/*");
    use base64::Engine;
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap();
    (payload, base64::engine::general_purpose::STANDARD.decode(sig).unwrap())
}

/// `openssl dgst -sha256 -verify`: whether `public` signed `payload`.
fn openssl_verifies(public: &Path, payload: &[u8], signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (dir.path().join("payload"), dir.path().join("sig"));
    std::fs::write(&p, payload).unwrap();
    std::fs::write(&s, signature).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(&s)
        .arg(&p)
        .output()
        .unwrap();
    out.status.success()
}

fn kiln_verify(image: &str, extra: &[&str]) -> Output {
    let mut args = vec!["verify", image];
    args.extend(extra);
    kiln(&args)
}

#[test]
fn signatures_verify_with_independent_tools_and_a_changed_image_or_another_key_fails() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(&keys.path().join("ours"));
    let (other_key, other_public) = keypair(&keys.path().join("theirs"));
    let server = signing_server(&key);
    let image = test_image("kiln/signed");
    let dockerfile = format!("FROM {}/busybox\nRUN echo one > /one\n", registry());
    let reply = build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], json!({}));
    let digest = reply["digest"].as_str().unwrap().to_string();
    for field in ["provenance", "sbom", "signature"] {
        let reference = reply[field].as_str().unwrap_or_else(|| panic!("no {field} in {reply}"));
        assert!(reference.contains("@sha256:"), "{field}: {reference}");
    }

    // The cosign signature: openssl checks it, and its payload names the
    // image's digest and reference.
    let (payload, signature) = cosign_signature(&image, &digest);
    assert!(openssl_verifies(&public, &payload, &signature), "openssl refuses kiln's signature");
    assert!(!openssl_verifies(&other_public, &payload, &signature));
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["critical"]["type"], "cosign container image signature");
    assert_eq!(claims["critical"]["image"]["docker-manifest-digest"], digest.as_str());
    assert_eq!(claims["critical"]["identity"]["docker-reference"], image.as_str());

    // The attestations are DSSE envelopes securesystemslib verifies.
    for predicate in ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document"] {
        let (manifest, envelope) = attached(&image, &digest, predicate);
        assert_eq!(manifest["subject"]["digest"], digest.as_str());
        assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.dsse.envelope.v1+json");
        let file = keys.path().join("envelope.json");
        std::fs::write(&file, &envelope).unwrap();
        let ok = attestations_py(&[Path::new("dsse"), &file, &public]);
        assert!(ok.status.success(), "{predicate}: {}", String::from_utf8_lossy(&ok.stderr));
        let statement: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(statement["subject"][0]["digest"]["sha256"], digest.trim_start_matches("sha256:"));
        assert!(!attestations_py(&[Path::new("dsse"), &file, &other_public]).status.success());
    }
    let ok = kiln_verify(&image, &["--key", public.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // The same image with its last layer changed, under another tag, with
    // the original signature copied beside it: the signature still checks
    // cryptographically but names another digest, so it is refused.
    let changed = tag_of(&image, "changed");
    let dockerfile = format!("FROM {}/busybox\nRUN echo two > /one\n", registry());
    let unsigned = Server::start(ServerOptions::default());
    let reply = build(&unsigned, &changed, &[("Dockerfile", dockerfile.as_bytes())], json!({}));
    let changed_digest = reply["digest"].as_str().unwrap().to_string();
    assert_ne!(changed_digest, digest);
    let sig_tag = |d: &str| tag_of(&image, &format!("{}.sig", d.replace(':', "-")));
    let copied = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}", sig_tag(&digest)))
        .arg(format!("docker://{}", sig_tag(&changed_digest)))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let (payload, _) = cosign_signature(&changed, &changed_digest);
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_ne!(claims["critical"]["image"]["docker-manifest-digest"], changed_digest.as_str());
    let refused = kiln_verify(&changed, &["--key", public.to_str().unwrap()]);
    assert!(!refused.status.success(), "a changed image passed with a copied signature");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not signed by the key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // An image of the same repository signed by another key is refused.
    let other = signing_server(&other_key);
    let theirs = tag_of(&image, "theirs");
    build(&other, &theirs, &[("Dockerfile", b"FROM scratch\nCOPY Dockerfile /\n")], json!({}));
    let refused = kiln_verify(&theirs, &["--key", public.to_str().unwrap()]);
    assert!(!refused.status.success(), "an image signed by another key passed");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

fn tag_of(image: &str, tag: &str) -> String {
    format!("{}:{tag}", image.rsplit_once(':').unwrap().0)
}

/// A Debian image with a Python and a Node tree, built without a key: its
/// context files.
fn debian_app_files() -> Vec<(&'static str, Vec<u8>)> {
    let dockerfile = format!(
        "FROM {}/debian:bookworm-slim\nCOPY site-packages/ /usr/local/lib/python3.11/dist-packages/\n\
         COPY app/ /app/\nRUN dpkg-query -W > /dpkg-query.txt\n",
        registry()
    );
    vec![
        ("Dockerfile", dockerfile.into_bytes()),
        (
            "site-packages/requests-2.31.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nbody\n".to_vec(),
        ),
        (
            "site-packages/six-1.16.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n".to_vec(),
        ),
        ("app/package.json", br#"{"name":"fn","version":"1.0.0","dependencies":{"express":"^4"}}"#.to_vec()),
        ("app/node_modules/express/package.json", br#"{"name":"express","version":"4.18.2","license":"MIT"}"#.to_vec()),
        (
            "app/node_modules/@types/node/package.json",
            br#"{"name":"@types/node","version":"20.1.0","license":"MIT"}"#.to_vec(),
        ),
        ("app/handler.js", b"module.exports = () => 'hi'\n".to_vec()),
    ]
}

/// What `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum |
/// sha256sum` prints for these files laid out in a directory.
fn coreutils_context_digest(files: &[(&str, Vec<u8>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (path, data) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let script = "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum";
    let out = Command::new("sh").args(["-c", script]).current_dir(dir.path()).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn purls(sbom: &Value) -> Vec<String> {
    let packages = sbom["packages"].as_array().unwrap();
    packages
        .iter()
        .map(|p| {
            let refs = p["externalRefs"].as_array().unwrap_or_else(|| panic!("package without a purl: {p}"));
            let purl = refs.iter().find(|r| r["referenceType"] == "purl").unwrap_or_else(|| panic!("no purl: {p}"));
            purl["referenceLocator"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn the_sbom_and_provenance_of_a_debian_python_node_image_pass_their_validators() {
    let server = Server::start(ServerOptions::default());
    let image = test_image("kiln/sbom");
    let files = debian_app_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    let reply = build(&server, &image, &refs, json!({"GREETING": "hello"}));
    assert!(reply["signature"].is_null(), "no key, no signature: {reply}");
    let log = log_text(&reply);
    assert!(log.contains("(4 of 4 layers scanned, the rest cached)"), "a fresh server scans every layer:\n{log}");
    let again = build(&server, &image, &refs, json!({"GREETING": "hello"}));
    let log = log_text(&again);
    assert!(log.contains("(0 of 4 layers scanned, the rest cached)"), "a cached layer is not scanned again:\n{log}");
    assert_eq!(again["sbom"], reply["sbom"], "the same image has the same SBOM document");
    let out = tempfile::tempdir().unwrap();
    let (sbom_file, provenance_file) = (out.path().join("sbom.spdx.json"), out.path().join("provenance.json"));
    let verified = kiln_verify(
        &image,
        &["--sbom-out", sbom_file.to_str().unwrap(), "--provenance-out", provenance_file.to_str().unwrap()],
    );
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));

    // The SPDX project's validator accepts the SBOM.
    let spdx = Command::new(tool("pyspdxtools")).arg("-i").arg(&sbom_file).output().unwrap();
    assert!(
        spdx.status.success(),
        "pyspdxtools: {}{}",
        String::from_utf8_lossy(&spdx.stdout),
        String::from_utf8_lossy(&spdx.stderr)
    );
    let sbom: Value = serde_json::from_slice(&std::fs::read(&sbom_file).unwrap()).unwrap();
    let purls = purls(&sbom);
    let unpacked = unpack_image(&image, None);
    let listed = std::fs::read_to_string(unpacked.rootfs.join("dpkg-query.txt")).unwrap();
    let debs = purls.iter().filter(|p| p.starts_with("pkg:deb/debian/")).count();
    assert_eq!(debs, listed.lines().count(), "one deb package per `dpkg-query -W` line");
    assert!(purls.iter().any(|p| p.starts_with("pkg:deb/debian/bash@") && p.contains("distro=debian-12")), "{purls:?}");
    for want in
        ["pkg:pypi/requests@2.31.0", "pkg:pypi/six@1.16.0", "pkg:npm/express@4.18.2", "pkg:npm/%40types/node@20.1.0"]
    {
        assert!(purls.iter().any(|p| p == want), "{want} missing from {purls:?}");
    }
    let base = format!("{}/debian:bookworm-slim", registry());
    let base_digest = image_manifest_digest(&base);
    let base_purl = format!("pkg:oci/debian@{}", base_digest.replace(':', "%3A"));
    assert!(purls.iter().any(|p| p.starts_with(&base_purl)), "{base_purl} missing from {purls:?}");

    // The provenance: the in-toto library's strict parse, the SLSA v1
    // schema, and the exact inputs.
    let intoto = attestations_py(&[Path::new("statement"), &provenance_file]);
    assert!(intoto.status.success(), "in-toto-attestation: {}", String::from_utf8_lossy(&intoto.stderr));
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/schemas/slsa-provenance-v1.schema.json");
    let checked =
        Command::new(tool("check-jsonschema")).args(["--schemafile", schema]).arg(&provenance_file).output().unwrap();
    assert!(checked.status.success(), "check-jsonschema: {}", String::from_utf8_lossy(&checked.stdout));
    let provenance: Value = serde_json::from_slice(&std::fs::read(&provenance_file).unwrap()).unwrap();
    assert_eq!(
        provenance["subject"][0]["digest"]["sha256"],
        reply["digest"].as_str().unwrap().trim_start_matches("sha256:")
    );
    let deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let digest_of = |name: &str| deps.iter().find(|d| d["name"] == name).map(|d| d["digest"]["sha256"].clone());
    assert_eq!(digest_of("context").unwrap(), coreutils_context_digest(&files).as_str(), "{deps:?}");
    let image_dep = deps.iter().find(|d| d["name"] == "image").unwrap();
    assert_eq!(image_dep["digest"]["sha256"], base_digest.trim_start_matches("sha256:"));
    let expected_uri = format!("pkg:docker/{}/debian@bookworm-slim?platform=", registry());
    assert!(image_dep["uri"].as_str().unwrap().starts_with(&expected_uri), "{image_dep}");
    let params = &provenance["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["buildArgs"]["GREETING"], "hello");
    let audit = server.audit_lines();
    let records: Vec<&Value> = audit.iter().filter(|r| r["image"] == image.as_str()).collect();
    assert_eq!(records[0]["provenance"], reply["provenance"], "the audit record names the provenance");
    // The tag schema lists the newest build's provenance: the rebuild's.
    let record = records.last().unwrap();
    assert_eq!(record["provenance"], again["provenance"]);
    assert_eq!(provenance["predicate"]["runDetails"]["metadata"]["invocationId"], record["request_id"]);
}

/// The manifest digest `image` names.
fn image_manifest_digest(image: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn kiln_verify_finds_the_attestations_by_tag_schema_and_a_rebuild_reproduces_the_digest() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path());
    let server = signing_server(&key);
    let image = test_image("kiln/verify");
    let context = tempfile::tempdir().unwrap();
    let dockerfile =
        format!("FROM {}/busybox\nARG GREETING\nCOPY hello.txt /\nRUN echo $GREETING >> /hello.txt\n", registry());
    std::fs::write(context.path().join("Dockerfile"), &dockerfile).unwrap();
    std::fs::write(context.path().join("hello.txt"), "hi\n").unwrap();
    let files = [("Dockerfile", dockerfile.as_bytes()), ("hello.txt", &b"hi\n"[..])];
    let reply = build(&server, &image, &files, json!({"GREETING": "hello"}));
    let digest = reply["digest"].as_str().unwrap();

    // docker-registry 2.8 has no referrers API: the tag schema's index
    // lists both artifacts.
    let index = referrers_index(&image, digest);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let types: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().map(|m| m["artifactType"].as_str().unwrap()).collect();
    assert_eq!(types.len(), 2, "{index}");
    assert!(types.contains(&"application/vnd.in-toto+json") && types.contains(&"application/spdx+json"), "{types:?}");

    let verified = kiln_verify(&image, &["--key", public.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{stdout}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(stdout.contains("signature: verified"), "{stdout}");
    assert!(stdout.contains("provenance: sha256:") && stdout.contains("signature verified"), "{stdout}");
    assert!(stdout.contains("build arg: GREETING=hello"), "{stdout}");
    assert!(stdout.contains(&format!("image: pkg:docker/{}/busybox", registry())), "{stdout}");

    // A fresh server (empty cache) rebuilds the same digest from the
    // provenance's inputs.
    let fresh = Server::start(ServerOptions::default());
    let rebuilt = kiln_verify(
        &image,
        &[
            "--key",
            public.to_str().unwrap(),
            "--rebuild",
            "--context",
            context.path().to_str().unwrap(),
            "--url",
            &fresh.url,
            "--payload-secret",
            fresh.secret_file.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(rebuilt.status.success(), "{stdout}{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert!(stdout.contains(&format!("rebuild: reproduced {digest}")), "{stdout}");

    // A changed context does not reproduce it.
    std::fs::write(context.path().join("hello.txt"), "changed\n").unwrap();
    let args = ["--rebuild", "--context", context.path().to_str().unwrap(), "--url", &fresh.url];
    let mut args: Vec<&str> = args.to_vec();
    let secret = fresh.secret_file.display().to_string();
    args.extend(["--payload-secret", &secret]);
    let differs = kiln_verify(&image, &args);
    assert!(!differs.status.success());
    assert!(
        String::from_utf8_lossy(&differs.stderr).contains("not reproducible"),
        "{}",
        String::from_utf8_lossy(&differs.stderr)
    );
}

#[test]
fn no_secret_value_reaches_an_attestation_or_the_signature() {
    let (private, public_b64) = kiln::buildsecrets::BuildKey::generate().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keypair(&keys.path().join("signing"));
    let secrets_key = keys.path().join("secrets.key");
    std::fs::write(&secrets_key, format!("{private}\n")).unwrap();
    let args = vec![
        "--signing-key".to_string(),
        key.display().to_string(),
        "--build-secrets-key".to_string(),
        secrets_key.display().to_string(),
        "--provenance=max".to_string(),
    ];
    let server = Server::start(ServerOptions { args, ..Default::default() });
    let image = test_image("kiln/secrets");
    let (secret_value, arg_value) = ("s3cr3t-build-secret-value-42", "arg-token-value-1337");
    let dockerfile = format!(
        "FROM {}/busybox\nARG API_TOKEN\nRUN --mount=type=secret,id=npmrc test -s /run/secrets/npmrc && test -n \"$API_TOKEN\"\n",
        registry()
    );
    let config = json!({"image": image, "buildArgs": {"API_TOKEN": arg_value, "GREETING": "hi"}});
    let values = [("npmrc".to_string(), secret_value.as_bytes().to_vec())].into();
    let envelope = kiln::buildsecrets::seal(&public_b64, &values).unwrap();
    let body = request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]);
    let body = kiln::client::tarball::append_entry(body, "com.openfaas.secrets", envelope.as_bytes(), 0o600).unwrap();
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert!(log.contains("ARG or ENV instructions for sensitive data"), "BuildKit's check warns:\n{log}");
    assert!(log.contains("build arg \"API_TOKEN\" looks like a secret"), "the redaction is said:\n{log}");
    let digest = reply["digest"].as_str().unwrap();

    let mut documents = Vec::new();
    for predicate in ["https://slsa.dev/provenance/v1", "https://spdx.dev/Document"] {
        let (_, envelope) = attached(&image, digest, predicate);
        let envelope: Value = serde_json::from_slice(&envelope).unwrap();
        use base64::Engine;
        let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
        documents.push(String::from_utf8(payload).unwrap());
    }
    documents.push(String::from_utf8(cosign_signature(&image, digest).0).unwrap());
    for doc in &documents {
        assert!(!doc.contains(secret_value), "a build secret's value leaked: {doc}");
        assert!(!doc.contains(arg_value), "a secret-looking build arg's value leaked: {doc}");
    }
    let provenance: Value = serde_json::from_str(&documents[0]).unwrap();
    let params = &provenance["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["secrets"], json!([{"id": "npmrc", "optional": true}]), "secret ids are named");
    assert_eq!(params["buildArgs"]["API_TOKEN"], "<redacted>");
    assert_eq!(params["buildArgs"]["GREETING"], "hi");
    let steps = &provenance["predicate"]["runDetails"]["byproducts"][0]["annotations"]["steps"];
    assert!(steps.as_array().is_some_and(|s| s.len() >= 2), "max lists the steps: {steps}");
}

/// The attack: a step looks for the signing key and its password. A
/// cosign-format key (sealed with COSIGN_PASSWORD) signs, yet neither the
/// key file nor the password reaches a step, and the server process holds
/// no password in its environment.
#[test]
fn a_step_cannot_read_the_signing_key_or_its_password() {
    let password = "cosign-pass-phrase-771";
    let keys = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["keygen", "--signing", "--out", keys.path().to_str().unwrap()])
        .env("COSIGN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (key, public) = (keys.path().join("signing.key"), keys.path().join("signing.pub"));
    assert!(std::fs::read_to_string(&key).unwrap().contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
    let args = vec!["--signing-key".to_string(), key.display().to_string()];
    let env = vec![("COSIGN_PASSWORD".to_string(), password.to_string())];
    let server = Server::start(ServerOptions { args, env, ..Default::default() });
    let image = test_image("kiln/key-attack");
    let dockerfile = format!(
        "FROM {}/busybox\nRUN env > /env.txt; (cat {} || echo denied) > /key.txt 2>&1; \
         (grep -rl SIGSTORE /proc/1/environ /tmp /run 2>/dev/null || true) > /found.txt\n",
        registry(),
        key.display()
    );
    let reply = build(&server, &image, &[("Dockerfile", dockerfile.as_bytes())], json!({}));
    let digest = reply["digest"].as_str().unwrap();
    let (payload, signature) = cosign_signature(&image, digest);
    assert!(openssl_verifies(&public, &payload, &signature), "the cosign-format key signs");
    let rootfs = unpack_image(&image, None);
    let read = |f: &str| std::fs::read_to_string(rootfs.rootfs.join(f)).unwrap();
    assert!(!read("env.txt").contains(password), "the password reached a step");
    assert!(!read("key.txt").contains("PRIVATE KEY"), "the key reached a step: {}", read("key.txt"));
    assert!(read("found.txt").trim().is_empty(), "{}", read("found.txt"));
    let environ = std::fs::read(format!("/proc/{}/environ", server_process(server.pid()))).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains(password), "the server keeps the password");
}

/// A Go program built with the real toolchain (offline: one dependency,
/// replaced by a local directory).
fn go_binary(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("greet")).unwrap();
    std::fs::write(
        src.join("go.mod"),
        "module example.com/fn\n\ngo 1.22\n\nrequire example.com/greet v0.0.0\n\nreplace example.com/greet => ./greet\n",
    )
    .unwrap();
    std::fs::write(src.join("greet/go.mod"), "module example.com/greet\n\ngo 1.22\n").unwrap();
    std::fs::write(src.join("greet/greet.go"), "package greet\n\nfunc Hello() string { return \"hi\" }\n").unwrap();
    std::fs::write(
        src.join("main.go"),
        "package main\n\nimport \"example.com/greet\"\n\nfunc main() { println(greet.Hello()) }\n",
    )
    .unwrap();
    let out = Command::new(tool("go"))
        .args(["build", "-o", "../fn", "."])
        .current_dir(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    dir.join("fn")
}

/// Go's version (`1.27.3`) as `go version` prints it.
fn go_version() -> String {
    let out = Command::new(tool("go")).arg("version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(2).unwrap().trim_start_matches("go").to_string()
}

#[test]
fn a_go_binary_s_modules_and_an_added_download_are_recorded() {
    let work = tempfile::tempdir().unwrap();
    let binary = std::fs::read(go_binary(work.path())).unwrap();
    let files = FileServer::start("kiln-sbom-download");
    std::fs::write(files.dir.join("data.txt"), "downloaded\n").unwrap();
    let server = Server::start(ServerOptions { args: files.allow(), ..Default::default() });
    let image = test_image("kiln/sbom-go");
    let url = files.url("data.txt");
    let dockerfile = format!("FROM scratch\nCOPY fn /usr/local/bin/fn\nADD {url} /data.txt\n");
    let body = request_tar(&json!({ "image": image }), &[("Dockerfile", dockerfile.as_bytes())]);
    // An executable (request_tar writes 0644): the scan looks at executables.
    let body = kiln::client::tarball::append_entry(body, "context/fn", &binary, 0o755).unwrap();
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let out = tempfile::tempdir().unwrap();
    let (sbom_file, provenance_file) = (out.path().join("sbom.json"), out.path().join("provenance.json"));
    let verified = kiln_verify(
        &image,
        &["--sbom-out", sbom_file.to_str().unwrap(), "--provenance-out", provenance_file.to_str().unwrap()],
    );
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let sbom: Value = serde_json::from_slice(&std::fs::read(&sbom_file).unwrap()).unwrap();
    let purls = purls(&sbom);
    for want in [
        format!("pkg:golang/stdlib@{}", go_version()),
        "pkg:golang/example.com/fn@%28devel%29".to_string(),
        "pkg:golang/example.com/greet@%28devel%29".to_string(),
    ] {
        assert!(purls.contains(&want), "{want} missing from {purls:?}");
    }
    let spdx = Command::new(tool("pyspdxtools")).arg("-i").arg(&sbom_file).output().unwrap();
    assert!(spdx.status.success(), "{}", String::from_utf8_lossy(&spdx.stderr));
    let provenance: Value = serde_json::from_slice(&std::fs::read(&provenance_file).unwrap()).unwrap();
    let deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let download = deps.iter().find(|d| d["name"] == "download").unwrap_or_else(|| panic!("{deps:?}"));
    assert_eq!(download["uri"], url.as_str());
    use sha2::Digest;
    assert_eq!(download["digest"]["sha256"], hex::encode(sha2::Sha256::digest(b"downloaded\n")));
}
