//! Registry credentials: token auth (Bearer challenge → token service) with
//! Basic credentials and with an identity token, and credential helpers
//! (`credHelpers`, `credsStore`) run by the supervisor.

mod support;

use base64::Engine;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use support::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn build_and_check(server: &Server, reg: &str, tag: &str, creds: (&str, &str)) {
    let image = format!("{reg}/{}:v1", unique(&format!("kiln/{tag}")));
    let dockerfile = format!("FROM {reg}/busybox\nRUN echo {tag} > /auth\n");
    let (status, reply) =
        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
    assert_success(status, &reply);
    let img = unpack_image(&image, Some(creds));
    assert_eq!(std::fs::read_to_string(img.rootfs.join("auth")).unwrap(), format!("{tag}\n"));
}

/// Grants of `how` (basic|refresh) that include a push action. The registry
/// lists actions in no fixed order (`pull,push` or `push,pull`).
fn grants(log: &str, how: &str) -> usize {
    let pushes = |scope: &str| scope.rsplit(':').next().unwrap_or("").split(',').any(|a| a == "push");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(how) && l.split(' ').skip(2).any(pushes))
        .count()
}

#[test]
fn token_auth_with_basic_credentials_from_config_json() {
    let (reg, _, log) = token_registry();
    let (_, user, pass) = auth_registry();
    let config = json!({"auths": {reg.clone(): {"auth": b64(&format!("{user}:{pass}"))}}}).to_string();
    let server = Server::start(ServerOptions { docker_config: Some(config), ..Default::default() });
    let before = grants(&log, "basic");
    build_and_check(&server, &reg, "token-basic", (&user, &pass));
    assert!(grants(&log, "basic") > before, "a push token was issued for Basic credentials");

    let wrong = json!({"auths": {reg.clone(): {"auth": b64(&format!("{user}:wrong"))}}}).to_string();
    let server = Server::start(ServerOptions { docker_config: Some(wrong), ..Default::default() });
    let image = format!("{reg}/kiln/denied:v1");
    let (_, reply) = server
        .build(&request_tar(&json!({"image": image}), &[("Dockerfile", format!("FROM {reg}/busybox\n").as_bytes())]));
    assert_eq!(reply["status"], "failed");
    let err = reply["error"].as_str().unwrap();
    assert!(err.contains("get a token") && err.contains("401"), "{err}");
}

#[test]
fn token_auth_with_an_identity_token() {
    let (reg, refresh, log) = token_registry();
    let (_, user, pass) = auth_registry();
    let config = json!({"auths": {reg.clone(): {"identitytoken": refresh}}}).to_string();
    let server = Server::start(ServerOptions { docker_config: Some(config), ..Default::default() });
    let before = grants(&log, "refresh");
    build_and_check(&server, &reg, "token-refresh", (&user, &pass));
    assert!(grants(&log, "refresh") > before, "the OAuth2 refresh-token flow was used");
}

/// Writes `docker-credential-<name>` answering for `registry` and logging calls.
fn helper_script(dir: &std::path::Path, name: &str, registry: &str, user: &str, pass: &str) -> std::path::PathBuf {
    let calls = dir.join(format!("{name}.calls"));
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"$server\" >> {calls}\n\
         if [ \"$server\" = \"{registry}\" ]; then printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}' \"$server\"; \
         else echo 'credentials not found in native keychain'; exit 1; fi\n",
        calls = calls.display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    calls
}

#[test]
fn credential_helpers_and_stores_run_outside_the_namespace() {
    let (auth_reg, user, pass) = auth_registry();
    let (token_reg, _, _) = token_registry();
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper_calls = helper_script(bin.path(), "kilntest", &auth_reg, &user, &pass);
    let store_calls = helper_script(bin.path(), "kilnstore", &token_reg, &user, &pass);
    let config = json!({"credHelpers": {auth_reg.clone(): "kilntest"}, "credsStore": "kilnstore"}).to_string();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
    let server = Server::start(ServerOptions {
        docker_config: Some(config),
        env: vec![("PATH".into(), path)],
        ..Default::default()
    });
    build_and_check(&server, &auth_reg, "cred-helper", (&user, &pass));
    build_and_check(&server, &token_reg, "creds-store", (&user, &pass));
    assert!(std::fs::read_to_string(helper_calls).unwrap().lines().any(|l| l == auth_reg));
    assert!(std::fs::read_to_string(store_calls).unwrap().lines().any(|l| l == token_reg));
}

/// The HTTP client follows the rules the in-memory registry of the fast
/// tier follows (`kiln::registry::conformance`), on the anonymous registry
/// and through token auth.
#[test]
fn the_http_client_passes_the_registry_conformance_suite() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let anonymous = kiln::registry::RegistryClient::new(Default::default()).unwrap();
    let base = format!("{}/{}", registry(), unique("conformance"));
    runtime.block_on(kiln::registry::conformance::registry(&anonymous, &base, &unique("n")));

    let (token_reg, user, pass) = (token_registry().0, auth_registry().1, auth_registry().2);
    let config = docker_config_for(&token_reg, &user, &pass);
    let credentials = kiln::registry::Credentials::from_docker_config(config.as_bytes()).unwrap();
    let options = kiln::registry::RegistryOptions { credentials, ..Default::default() };
    let authenticated = kiln::registry::RegistryClient::new(options).unwrap();
    let base = format!("{token_reg}/{}", unique("kiln/conformance"));
    runtime.block_on(kiln::registry::conformance::registry(&authenticated, &base, &unique("n")));
}
