//! A registry in memory for the fast tier: repositories with tags,
//! manifests and blobs behind the [`Registry`] trait, counting what
//! clients did (uploads, mounts, blob downloads) so tests can assert on
//! it, plus a way to seed a base image built from a few files.

use super::{Error, PushOutcome, Reference, Registry, Result};
use crate::oci::{Descriptor, ImageIndex, ImageManifest, MediaType, PlatformSpec};
use futures_util::future::BoxFuture;
use kiln_snapshotter::content::Store;
use kiln_snapshotter::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::Mutex;

/// One repository.
#[derive(Default)]
struct Repository {
    tags: HashMap<String, Digest>,
    manifests: HashMap<Digest, (String, Vec<u8>)>,
    blobs: HashSet<Digest>,
}

/// What clients did, for assertions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Blobs uploaded.
    pub uploads: usize,
    /// Blobs mounted from another repository.
    pub mounts: usize,
    /// Blobs downloaded.
    pub downloads: usize,
    /// Manifests put.
    pub manifests_put: usize,
}

/// The registry.
#[derive(Default)]
pub struct MemoryRegistry {
    repositories: Mutex<HashMap<String, Repository>>,
    blobs: Mutex<HashMap<Digest, Vec<u8>>>,
    traffic: Mutex<Traffic>,
    /// Serve the OCI 1.1 referrers API (distribution 2.x does not).
    pub referrers_api: bool,
}

fn repo_key(r: &Reference) -> String {
    format!("{}/{}", r.registry, r.repository)
}

impl MemoryRegistry {
    /// What clients did so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.lock().unwrap().clone()
    }

    /// The manifest bytes `r` names, if any.
    pub fn manifest(&self, r: &Reference) -> Option<(String, Vec<u8>)> {
        let repos = self.repositories.lock().unwrap();
        let repo = repos.get(&repo_key(r))?;
        let digest = match &r.digest {
            Some(d) => Digest::parse(d).ok()?,
            None => repo.tags.get(r.tag.as_deref().unwrap_or("latest"))?.clone(),
        };
        repo.manifests.get(&digest).cloned()
    }

    /// A blob's bytes, if any repository has it.
    pub fn blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.blobs.lock().unwrap().get(digest).cloned()
    }

    /// Stores a blob in a repository.
    fn put_blob(&self, r: &Reference, bytes: Vec<u8>) -> Digest {
        let digest = Digest::of(&bytes);
        self.blobs.lock().unwrap().insert(digest.clone(), bytes);
        self.repositories.lock().unwrap().entry(repo_key(r)).or_default().blobs.insert(digest.clone());
        digest
    }

    /// Stores a manifest under its digest and, for a tag reference, the tag.
    fn store_manifest(&self, r: &Reference, bytes: &[u8], media_type: &str) -> Digest {
        let digest = Digest::of(bytes);
        let mut repos = self.repositories.lock().unwrap();
        let repo = repos.entry(repo_key(r)).or_default();
        repo.manifests.insert(digest.clone(), (media_type.to_string(), bytes.to_vec()));
        if r.digest.is_none() {
            repo.tags.insert(r.tag.clone().unwrap_or_else(|| "latest".into()), digest.clone());
        }
        digest
    }

    /// Seeds a single-layer image for `platform` whose layer holds `files`
    /// (path, content), owned by the current user (so the fast tier can
    /// unpack it without root); returns the manifest digest.
    pub fn seed_image(&self, r: &Reference, platform: &PlatformSpec, files: &[(&str, &str)]) -> Digest {
        let (layer, diff_id) = layer_tar_gz(files);
        let layer_size = layer.len() as u64;
        let layer_digest = self.put_blob(r, layer);
        let config = serde_json::json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_size = config.len() as u64;
        let config_digest = self.put_blob(r, config);
        let manifest = ImageManifest::oci(
            Descriptor::new(MediaType::OCI_CONFIG, &config_digest, config_size),
            vec![Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", &layer_digest, layer_size)],
        );
        self.store_manifest(r, &manifest.to_bytes(), MediaType::OCI_MANIFEST)
    }

    /// Seeds an index over images already seeded by digest in `r`'s
    /// repository, one per platform; tags it as `r`.
    pub fn seed_index(&self, r: &Reference, images: &[(PlatformSpec, Digest)]) -> Digest {
        let manifests = images
            .iter()
            .map(|(platform, digest)| {
                let (_, bytes) = self.manifest(&r.with_digest(digest.as_str())).expect("seeded image");
                Descriptor {
                    platform: Some(platform.clone()),
                    ..Descriptor::new(MediaType::OCI_MANIFEST, digest, bytes.len() as u64)
                }
            })
            .collect();
        self.store_manifest(r, &ImageIndex::oci(manifests).to_bytes(), MediaType::OCI_INDEX)
    }
}

/// A gzip layer tar of `files` owned by the current user, and its diff id.
fn layer_tar_gz(files: &[(&str, &str)]) -> (Vec<u8>, Digest) {
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut tar = tar::Builder::new(Vec::new());
    let sorted: BTreeMap<&str, &str> = files.iter().copied().collect();
    for (path, content) in sorted {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, content.as_bytes()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let diff_id = Digest::of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

impl Registry for MemoryRegistry {
    fn pull_route(&self, r: &Reference) -> Reference {
        r.clone()
    }

    fn get_manifest<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<(Digest, String, Vec<u8>)>> {
        Box::pin(async move {
            let (media_type, bytes) =
                self.manifest(r).ok_or_else(|| Error::NotFound(format!("{r}: manifest unknown")))?;
            let digest = Digest::of(&bytes);
            super::seam::check_manifest_digest(r, &digest)?;
            let media_type = super::seam::manifest_media_type(r, &bytes, media_type)?;
            Ok((digest, media_type, bytes))
        })
    }

    fn fetch_blob<'a>(
        &'a self,
        r: &'a Reference,
        desc: &'a Descriptor,
        store: &'a dyn Store,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let digest = Digest::parse(&desc.digest)?;
            if store.info(&digest)?.is_some() {
                return Ok(0);
            }
            let has = self.repositories.lock().unwrap().get(&repo_key(r)).is_some_and(|x| x.blobs.contains(&digest));
            let bytes = self.blob(&digest).filter(|_| has).ok_or_else(|| Error::NotFound(format!("{r}: {digest}")))?;
            let mut w = store.ingest()?;
            w.write_all(&bytes).map_err(|e| kiln_snapshotter::Error::Io { context: "write blob".into(), source: e })?;
            super::seam::verified(r, &digest, w.commit(Some(desc.size), Some(&digest)))?;
            self.traffic.lock().unwrap().downloads += 1;
            Ok(bytes.len() as u64)
        })
    }

    fn blob_exists<'a>(&'a self, r: &'a Reference, digest: &'a Digest) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Ok(self.repositories.lock().unwrap().get(&repo_key(r)).is_some_and(|x| x.blobs.contains(digest)))
        })
    }

    fn push_blob<'a>(
        &'a self,
        r: &'a Reference,
        digest: &'a Digest,
        store: &'a dyn Store,
        mount_from: Option<&'a Reference>,
    ) -> BoxFuture<'a, Result<PushOutcome>> {
        Box::pin(async move {
            if self.blob_exists(r, digest).await? {
                return Ok(PushOutcome::Existed);
            }
            let mountable = match mount_from.filter(|m| m.registry == r.registry && m.repository != r.repository) {
                Some(m) => self.blob_exists(m, digest).await?,
                None => false,
            };
            if mountable {
                self.repositories.lock().unwrap().entry(repo_key(r)).or_default().blobs.insert(digest.clone());
                self.traffic.lock().unwrap().mounts += 1;
                return Ok(PushOutcome::Mounted);
            }
            if store.info(digest)?.is_none() {
                return Err(Error::NotLocal(format!("blob {digest} is not stored here")));
            }
            let mut bytes = Vec::new();
            let read = store.open(digest)?.read_to_end(&mut bytes);
            read.map_err(|e| kiln_snapshotter::Error::Io { context: format!("read {digest}"), source: e })?;
            self.put_blob(r, bytes);
            self.traffic.lock().unwrap().uploads += 1;
            Ok(PushOutcome::Uploaded)
        })
    }

    fn put_manifest<'a>(
        &'a self,
        r: &'a Reference,
        bytes: &'a [u8],
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<Digest>> {
        Box::pin(async move {
            let manifest: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("{r}: manifest: {e}")))?;
            let named = manifest["config"]
                .as_object()
                .into_iter()
                .chain(manifest["layers"].as_array().into_iter().flatten().filter_map(|l| l.as_object()));
            for desc in named {
                let digest = Digest::parse(desc["digest"].as_str().unwrap_or(""))?;
                if !self.blob_exists(r, &digest).await? {
                    return Err(Error::Invalid(format!("{r}: manifest names blob {digest}, which is not pushed")));
                }
            }
            self.traffic.lock().unwrap().manifests_put += 1;
            Ok(self.store_manifest(r, bytes, media_type))
        })
    }

    fn referrers<'a>(&'a self, r: &'a Reference, digest: &'a Digest) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            if !self.referrers_api {
                return Ok(None);
            }
            let repos = self.repositories.lock().unwrap();
            let mut found = Vec::new();
            for (d, (media_type, bytes)) in repos.get(&repo_key(r)).map(|repo| &repo.manifests).into_iter().flatten() {
                let Ok(m) = serde_json::from_slice::<ImageManifest>(bytes) else { continue };
                if m.subject.as_ref().is_some_and(|s| s.digest == digest.as_str()) {
                    let artifact_type = m.artifact_type.clone().or(Some(m.config.media_type.clone()));
                    found.push(Descriptor {
                        artifact_type,
                        annotations: m.annotations.clone(),
                        ..Descriptor::new(media_type, d, bytes.len() as u64)
                    });
                }
            }
            found.sort_by(|a, b| a.digest.cmp(&b.digest));
            Ok(Some(ImageIndex::oci(found).to_bytes()))
        })
    }
}
