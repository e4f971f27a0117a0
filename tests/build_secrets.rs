//! Build secrets: GET /publickey, `com.openfaas.secrets` sealed like the
//! go-sdk does, `RUN --mount=type=secret` (file and env). The value is
//! visible to the step and nowhere else: not in a layer, the log, or the
//! data directory (cache, content store, snapshots).

mod support;

use kiln::buildsecrets::{seal, BuildKey};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::*;

fn secret_server() -> (Server, String, tempfile::TempDir) {
    let (private, public) = BuildKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, format!("{private}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = vec!["--build-secrets-key".to_string(), key.display().to_string()];
    (Server::start(ServerOptions { args, ..Default::default() }), public, dir)
}

/// The go-sdk appends `com.openfaas.secrets` (mode 0600) after the config.
fn with_secrets(tar_bytes: Vec<u8>, envelope: &str) -> Vec<u8> {
    kiln::client::tarball::append_entry(tar_bytes, "com.openfaas.secrets", envelope.as_bytes(), 0o600).unwrap()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whether `needle` occurs in any file under `dir`, gzip blobs decompressed.
fn found_under(dir: &Path, needle: &[u8]) -> Option<String> {
    for entry in walk(dir) {
        let Ok(mut data) = std::fs::read(&entry) else { continue };
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            if flate2::read::MultiGzDecoder::new(data.as_slice()).read_to_end(&mut out).is_ok() {
                data = out;
            }
        }
        if data.windows(needle.len()).any(|w| w == needle) {
            return Some(entry.display().to_string());
        }
    }
    None
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&e.path()));
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn sealed_secrets_reach_the_step_and_nothing_else() {
    let (server, public, _keydir) = secret_server();
    let key: serde_json::Value = reqwest::blocking::get(format!("{}/publickey", server.url)).unwrap().json().unwrap();
    assert_eq!(key, json!({"key_id": &public[..8], "algorithm": "nacl/box", "public_key": public}));

    let value = format!("kiln-secret-{}", unique("value"));
    let mut values = BTreeMap::new();
    values.insert("pip_token".to_string(), value.as_bytes().to_vec());
    let envelope = seal(&public, &values).unwrap();
    let reg = registry();
    let image = test_image("kiln/secrets");
    let dockerfile = format!(
        "FROM {reg}/busybox\n\
         RUN --mount=type=secret,id=pip_token sha256sum /run/secrets/pip_token | cut -d' ' -f1 > /file.sha && stat -c '%a %u' /run/secrets/pip_token > /file.mode\n\
         RUN --mount=type=secret,id=pip_token,env=PIP_TOKEN sh -c 'printf %s \"$PIP_TOKEN\" | sha256sum | cut -d\" \" -f1 > /env.sha'\n\
         RUN --mount=type=secret,id=not_sent test ! -e /run/secrets/not_sent && echo optional-ok\n"
    );
    let body = with_secrets(request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]), &envelope);
    let (status, reply) = server.build(&body);
    assert_success(status, &reply);
    let log = log_text(&reply);
    assert!(log.contains("optional-ok"));
    assert!(!log.contains(&value), "the log never carries a secret");

    let img = unpack_image(&image, None);
    let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap().trim().to_string();
    assert_eq!(read("file.sha"), sha_hex(value.as_bytes()), "the step read the file");
    assert_eq!(read("env.sha"), sha_hex(value.as_bytes()), "the step read the env var");
    assert_eq!(read("file.mode"), "400 0");
    assert!(!img.rootfs.join("run/secrets").exists(), "the mountpoint stub never reaches a layer");
    let written = sha_hex(value.as_bytes());
    assert!(found_under(&img.rootfs, written.as_bytes()).is_some(), "control: the scan finds what the step wrote");
    assert!(found_under(&server.data_dir, written.as_bytes()).is_some(), "control: the scan reads gzip layers");
    assert_eq!(found_under(&img.rootfs, value.as_bytes()), None, "no layer carries the secret");
    assert_eq!(found_under(&server.data_dir, value.as_bytes()), None, "no cache or store carries the secret");
}

#[test]
fn secret_errors_are_clear_and_never_echo_values() {
    let (server, public, _keydir) = secret_server();
    let reg = registry();
    let image = test_image("kiln/secret-errors");
    let dockerfile = format!("FROM {reg}/busybox\nRUN --mount=type=secret,id=absent,required=true true\n");
    let plain = request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]);
    let (status, reply) = server.build(&plain);
    assert_eq!((status, reply["status"].as_str()), (400, Some("failed")));
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("secret absent: not found") && err.contains("Dockerfile line 2"), "{err}");

    let mut values = BTreeMap::new();
    values.insert("absent".to_string(), b"zzz-secret-zzz".to_vec());
    let (_, other_public) = BuildKey::generate().unwrap();
    let wrong_key = with_secrets(plain.clone(), &seal(&other_public, &values).unwrap());
    let (status, reply) = server.build(&wrong_key);
    assert_eq!(status, 400);
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("sealed for key") && !err.contains("zzz-secret-zzz"), "{err}");

    let no_key = Server::start(ServerOptions::default());
    let sealed = with_secrets(plain, &seal(&public, &values).unwrap());
    let (status, reply) = no_key.build(&sealed);
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("build_secrets_private_key_path"), "{reply}");
    let resp = reqwest::blocking::get(format!("{}/publickey", no_key.url)).unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

/// BuildKit's testSecretAsEnviron, testSecretAsEnvironWithFileMount,
/// testSecretFileParams and testSecretRequiredWithoutValue: `env=` sets the
/// variable (over an ENV of the same name) without a file unless `target=`
/// also asks for one; `mode`/`uid`/`gid` set the file's; no stub is left;
/// a required secret that was not sent fails with BuildKit's message.
#[test]
fn secret_mount_options_as_buildkit_tests_them() {
    let (server, public, _keydir) = secret_server();
    let mut values = BTreeMap::new();
    values.insert("mysecret".to_string(), b"pw".to_vec());
    let envelope = seal(&public, &values).unwrap();
    let reg = registry();
    let dockerfile = format!(
        "FROM {reg}/busybox\nENV SECRET_ENV=foo\n\
         RUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ ! -f /run/secrets/mysecret ] || false\n\
         RUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV [ \"$SECRET_ENV\" == \"pw\" ] && [ -f /run/secrets/secret ] || false\n\
         RUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret [ \"$(stat -c \"%u %g %f\" /mysecret)\" = \"100 102 81e1\" ]\n\
         RUN [ ! -f /mysecret ]\n"
    );
    let body = |df: &str| {
        let tar = request_tar(&json!({"image": test_image("kiln/bk-secrets")}), &[("Dockerfile", df.as_bytes())]);
        with_secrets(tar, &envelope)
    };
    let (status, reply) = server.build(&body(&dockerfile));
    assert_success(status, &reply);

    let required = format!("FROM {reg}/busybox\nRUN --mount=type=secret,required,id=othersecret foo\n");
    let (status, reply) = server.build(&body(&required));
    assert_ne!(status, 200, "{reply}");
    assert!(reply.to_string().contains("secret othersecret: not found"), "{reply}");
}
