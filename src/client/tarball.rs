//! The request tar as the go-sdk's `MakeTar` writes it: a `context`
//! directory entry without a trailing slash, the context's files, and
//! `com.openfaas.docker.config` last. Paths excluded by `.dockerignore` are
//! left out (the Dockerfile and `.dockerignore` themselves always go).

use crate::dockerignore::DockerIgnore;
use std::fs;
use std::io;
use std::path::Path;

/// Builds the request tar for context `dir` and `config`.
pub fn context_tar(dir: &Path, config: &serde_json::Value) -> io::Result<Vec<u8>> {
    let ignore = DockerIgnore::parse(&fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default());
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "context", io::empty())?;
    add_dir(&mut b, dir, "", &ignore)?;
    let cfg = serde_json::to_vec(config).expect("config serializes");
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o664);
    h.set_size(cfg.len() as u64);
    b.append_data(&mut h, crate::wire::CONFIG_ENTRY, cfg.as_slice())?;
    b.into_inner()
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &str, ignore: &DockerIgnore) -> io::Result<()> {
    let mut names: Vec<_> =
        fs::read_dir(root.join(rel))?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let child = if rel.is_empty() {
            name.to_string_lossy().to_string()
        } else {
            format!("{rel}/{}", name.to_string_lossy())
        };
        let always = child == "Dockerfile" || child == ".dockerignore";
        let excluded = !always && ignore.is_excluded(&child);
        let md = fs::symlink_metadata(root.join(&child))?;
        if md.is_dir() {
            if !excluded {
                b.append_path_with_name(root.join(&child), format!("context/{child}"))?;
            }
            if !excluded || ignore.has_exceptions() {
                add_dir(b, root, &child, ignore)?;
            }
        } else if !excluded {
            b.append_path_with_name(root.join(&child), format!("context/{child}"))?;
        }
    }
    Ok(())
}

/// Appends an entry after stripping the end-of-archive blocks, as the
/// go-sdk does for `com.openfaas.secrets`.
pub fn append_entry(mut tar_bytes: Vec<u8>, name: &str, data: &[u8], mode: u32) -> io::Result<Vec<u8>> {
    while tar_bytes.len() >= 1024 && tar_bytes[tar_bytes.len() - 1024..].iter().all(|b| *b == 0) {
        tar_bytes.truncate(tar_bytes.len() - 1024);
    }
    let mut b = tar::Builder::new(tar_bytes);
    let mut h = tar::Header::new_ustar();
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, data)?;
    b.into_inner()
}
