//! `kiln verify` and `kiln keygen --signing`.

use crate::cli::VerifyArgs;
use kiln::attest::{cosignkey, PublicKey, SigningKey};
use kiln::platform::Platform;
use kiln::registry::{Credentials, Reference, RegistryClient, RegistryOptions};
use kiln::verify::{inputs_of, Verified};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// `kiln keygen --signing`: `signing.key` (0600; cosign's encrypted form
/// when `COSIGN_PASSWORD` is set) and `signing.pub`.
pub fn keygen(out: &Path) -> ExitCode {
    let key = SigningKey::generate();
    let private = match std::env::var("COSIGN_PASSWORD") {
        Ok(password) => cosignkey::encrypt(&key.to_der(), &password),
        Err(_) => key.to_pem(),
    };
    let result = write_new(&out.join("signing.key"), &private, 0o600)
        .and_then(|()| write_new(&out.join("signing.pub"), &key.public().to_pem(), 0o644));
    match result {
        Ok(()) => {
            println!(
                "wrote {} and {} (key id {})",
                out.join("signing.key").display(),
                out.join("signing.pub").display(),
                key.public().key_id()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln keygen: {e}");
            ExitCode::from(1)
        }
    }
}

/// `kiln verify`: exit 0 when every check passed.
pub fn main(args: VerifyArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln verify: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln verify: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: &VerifyArgs) -> Result<(), String> {
    let image = Reference::parse(&args.image).map_err(|e| e.to_string())?;
    let key = match &args.key {
        Some(p) => Some(
            PublicKey::from_pem(&std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).map_err(|e| e.to_string())?,
        None => Platform::host(),
    };
    let docker_config =
        crate::serve::options::read_docker_config(args.docker_config.as_deref()).map_err(|e| e.to_string())?;
    let credentials = match docker_config {
        Some(bytes) => Credentials::from_docker_config(&bytes).map_err(|e| e.to_string())?,
        None => Credentials::default(),
    };
    let registry =
        RegistryClient::new(RegistryOptions { credentials, ..Default::default() }).map_err(|e| e.to_string())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = kiln_snapshotter::ContentStore::at(scratch.path()).map_err(|e| e.to_string())?;
    let verified =
        kiln::verify::verify(&registry, &store, &image, key.as_ref(), &platform).await.map_err(|e| e.to_string())?;
    report(&image, &verified, key.is_some());
    write_outputs(args, &verified)?;
    if args.rebuild {
        rebuild(args, &verified, &platform).await?;
    }
    Ok(())
}

fn report(image: &Reference, v: &Verified, keyed: bool) {
    println!("{image}: {}", v.digest);
    match &v.signed_as {
        Some(r) => println!("signature: verified (signed as {r})"),
        None if keyed => {}
        None => println!("signature: not checked (no --key)"),
    }
    if v.manifest != v.digest {
        println!("platform image: {}", v.manifest);
    }
    for (what, a) in [("provenance", &v.provenance), ("sbom", &v.sbom)] {
        match a {
            Some(a) => {
                let how = if a.signed { "signature verified" } else { "unsigned" };
                println!("{what}: {} (subject matches, {how})", a.artifact)
            }
            None => println!("{what}: none attached"),
        }
    }
    if let Some(sbom) = &v.sbom {
        println!("sbom packages: {}", sbom.statement["predicate"]["packages"].as_array().map_or(0, |p| p.len()));
    }
    for line in v.provenance.iter().flat_map(|p| inputs_of(&p.statement)) {
        println!("  {line}");
    }
}

fn write_outputs(args: &VerifyArgs, v: &Verified) -> Result<(), String> {
    let write = |path: &Path, value: &serde_json::Value| {
        std::fs::write(path, serde_json::to_vec_pretty(value).expect("serializes"))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    if let Some(path) = &args.sbom_out {
        let sbom = v.sbom.as_ref().ok_or("--sbom-out: the image has no SBOM")?;
        write(path, &sbom.statement["predicate"])?;
    }
    if let Some(path) = &args.provenance_out {
        let provenance = v.provenance.as_ref().ok_or("--provenance-out: the image has no provenance")?;
        write(path, &provenance.statement)?;
    }
    Ok(())
}

/// Sends the provenance's build (same Dockerfile inputs, build args,
/// target and platform) with `skipPush` and compares the digest.
async fn rebuild(args: &VerifyArgs, v: &Verified, platform: &Platform) -> Result<(), String> {
    let provenance = v.provenance.as_ref().ok_or("--rebuild: the image has no provenance")?;
    let dir = args.context.clone().ok_or("--rebuild needs --context DIR (the build context)")?;
    let ext = &provenance.statement["predicate"]["buildDefinition"]["externalParameters"];
    let mut build_args = std::collections::BTreeMap::new();
    for (k, value) in ext["buildArgs"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        if value == "<redacted>" {
            return Err(format!("--rebuild: build arg {k} was redacted from the provenance; it cannot be replayed"));
        }
        build_args.insert(k.clone(), value.to_string());
    }
    let req = kiln::client::BuildRequest {
        dir,
        image: ext["image"].as_str().unwrap_or(&args.image).to_string(),
        build_args,
        platforms: vec![platform.to_string()],
        target: ext["target"].as_str().map(str::to_string),
        url: args.url.clone(),
        secret_files: Vec::new(),
        skip_push: true,
        payload_secret: crate::client_cli::read_payload_secret(args.payload_secret.as_deref())?,
        public_key: None,
    };
    let last = kiln::client::build_reply(&req).await.map_err(|e| e.to_string())?.ok_or("--rebuild: no reply")?;
    let digest = last["digest"].as_str().ok_or("--rebuild: the rebuild failed")?;
    if digest != v.manifest.as_str() {
        return Err(format!(
            "rebuild gave {digest}, not {}: the image is not reproducible from these inputs",
            v.manifest
        ));
    }
    println!("rebuild: reproduced {digest}");
    Ok(())
}
