//! Turns an overlay upper directory into an OCI layer in one pass: the tar
//! is written while hashing the uncompressed stream (diff id) and the gzip
//! stream (blob digest). Entries are sorted, owners numeric, overlay
//! bookkeeping xattrs dropped, hardlinks detected, and mtimes optionally
//! clamped (`SOURCE_DATE_EPOCH`), so the same tree gives the same digest.

use crate::content::Store;
use crate::encode::{encoder, Encoder, LayerCompression};
use crate::fsx::{self, OPAQUE_XATTR};
use crate::headers::{index_path, EntryKind, HeaderEntry, LayerHeaders};
use crate::{Digest, IoContext, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// How layers are written.
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Compression and level.
    pub compression: LayerCompression,
    /// Cores one layer's compression may use.
    pub threads: usize,
    /// Clamp every mtime to at most this Unix time.
    pub mtime_clamp: Option<i64>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { compression: LayerCompression::Gzip(3), threads, mtime_clamp: None }
    }
}

/// A layer committed to the content store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Entries written.
    pub entries: u64,
    /// OCI media type of the blob.
    pub media_type: String,
}

struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type LayerTar = tar::Builder<HashWriter<Box<dyn Encoder>>>;

/// Diffs `upper` into a compressed layer committed to `store`.
pub fn diff_upper(upper: &Path, store: &dyn Store, opts: &DiffOptions) -> Result<Layer> {
    diff_upper_indexed(upper, store, opts).map(|(layer, _)| layer)
}

/// [`diff_upper`], also returning the layer's tar headers.
pub fn diff_upper_indexed(upper: &Path, store: &dyn Store, opts: &DiffOptions) -> Result<(Layer, LayerHeaders)> {
    let enc = encoder(store.ingest()?, opts.compression, opts.threads).ctx(|| "start compression".into())?;
    let mut tar = tar::Builder::new(HashWriter { inner: enc, hasher: Sha256::new() });
    tar.follow_symlinks(false);
    let mut walk = Walk { opts, links: HashMap::new(), entries: 0, headers: LayerHeaders::new() };
    walk.dir(&mut tar, upper, "")?;
    walk.headers.capture_account_files(upper);
    let hashing = tar.into_inner().ctx(|| "finish tar".into())?;
    let diff_id = Digest::from_hasher(hashing.hasher);
    let writer = hashing.inner.finish().ctx(|| "finish compression".into())?;
    let (digest, size) = writer.commit(None, None)?;
    let media_type = opts.compression.media_type().to_string();
    Ok((Layer { digest, size, diff_id, entries: walk.entries, media_type }, walk.headers))
}

struct Walk<'a> {
    opts: &'a DiffOptions,
    links: HashMap<(u64, u64), String>,
    entries: u64,
    headers: LayerHeaders,
}

impl Walk<'_> {
    fn dir(&mut self, tar: &mut LayerTar, abs: &Path, rel: &str) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(abs)
            .ctx(|| format!("read {}", abs.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(|| format!("read {}", abs.display()))?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let name_str = name.to_string_lossy();
            let child_rel = format!("{rel}{name_str}");
            let child_abs = abs.join(&name);
            let md = fs::symlink_metadata(&child_abs).ctx(|| format!("stat {child_rel}"))?;
            self.entry(tar, &child_abs, &child_rel, &md, rel, &name_str)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        tar: &mut LayerTar,
        abs: &Path,
        rel: &str,
        md: &Metadata,
        parent: &str,
        name: &str,
    ) -> Result<()> {
        let ft = md.file_type();
        self.entries += 1;
        if ft.is_char_device() && md.rdev() == 0 {
            let mut h = self.header(md, tar::EntryType::Regular, 0);
            h.set_mode(0);
            return self.append(tar, h, &format!("{parent}.wh.{name}"), None, Vec::new(), io::empty());
        }
        let xattrs = xattr_records(abs)?;
        if ft.is_dir() {
            let h = self.header(md, tar::EntryType::Directory, 0);
            self.append(tar, h, &format!("{rel}/"), None, xattrs, io::empty())?;
            if fsx::get_xattr(abs, OPAQUE_XATTR).ctx(|| "read opaque".into())?.as_deref() == Some(b"y") {
                let mut h = self.header(md, tar::EntryType::Regular, 0);
                h.set_mode(0);
                self.append(tar, h, &format!("{rel}/.wh..wh..opq"), None, Vec::new(), io::empty())?;
            }
            return self.dir(tar, abs, &format!("{rel}/"));
        }
        if ft.is_file() {
            return self.file(tar, abs, rel, md, xattrs);
        }
        if ft.is_symlink() {
            let target = fs::read_link(abs).ctx(|| format!("readlink {rel}"))?;
            let h = self.header(md, tar::EntryType::Symlink, 0);
            return self.append(tar, h, rel, Some(target.as_os_str().as_encoded_bytes()), xattrs, io::empty());
        }
        if ft.is_fifo() {
            let h = self.header(md, tar::EntryType::Fifo, 0);
            return self.append(tar, h, rel, None, xattrs, io::empty());
        }
        tracing::debug!(path = rel, "skipping socket or device in layer");
        self.entries -= 1;
        Ok(())
    }

    fn file(&mut self, tar: &mut LayerTar, abs: &Path, rel: &str, md: &Metadata, xattrs: Pax) -> Result<()> {
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let h = self.header(md, tar::EntryType::Link, 0);
                return self.append(tar, h, rel, Some(first.as_bytes()), xattrs, io::empty());
            }
            self.links.insert(key, rel.to_string());
        }
        let file = File::open(abs).ctx(|| format!("open {rel}"))?;
        let h = self.header(md, tar::EntryType::Regular, md.len());
        self.append(tar, h, rel, None, xattrs, file)
    }

    /// Writes one entry and records its header.
    fn append(
        &mut self,
        tar: &mut LayerTar,
        h: tar::Header,
        path: &str,
        link: Option<&[u8]>,
        pax: Pax,
        data: impl io::Read,
    ) -> Result<()> {
        self.headers.push(header_entry(&h, path, link, !pax.is_empty()));
        append(tar, h, path, link, pax, data)
    }

    fn header(&self, md: &Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid() as u64);
        h.set_gid(md.gid() as u64);
        let mtime = md.mtime().max(0);
        h.set_mtime(self.opts.mtime_clamp.map_or(mtime, |c| mtime.min(c)) as u64);
        h.set_size(size);
        h
    }
}

/// The index record of a header written for `path`.
fn header_entry(h: &tar::Header, path: &str, link: Option<&[u8]>, xattrs: bool) -> HeaderEntry {
    let kind = match h.entry_type() {
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Regular | tar::EntryType::Link => EntryKind::File,
        _ => EntryKind::Other,
    };
    let symlink = (kind == EntryKind::Symlink).then(|| link.map(|l| String::from_utf8_lossy(l).into_owned()));
    HeaderEntry {
        path: index_path(path),
        kind,
        mode: h.mode().unwrap_or(0),
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mtime: h.mtime().unwrap_or(0) as i64,
        link: symlink.flatten(),
        xattrs,
    }
}

/// PAX records for one entry.
type Pax = Vec<(String, Vec<u8>)>;

/// The entry's xattrs (overlay bookkeeping excluded) as PAX records.
fn xattr_records(abs: &Path) -> Result<Pax> {
    let mut pax = Vec::new();
    for name in fsx::list_xattrs(abs).ctx(|| "list xattrs".into())? {
        if fsx::is_overlay_xattr(&name) {
            continue;
        }
        if let Some(value) = fsx::get_xattr(abs, &name).ctx(|| "read xattr".into())? {
            pax.push((format!("SCHILY.xattr.{}", String::from_utf8_lossy(&name)), value));
        }
    }
    Ok(pax)
}

/// Writes one ustar entry; a name or link target longer than the header's
/// 100 bytes goes into the entry's PAX record (with its xattrs), as Go's
/// archive/tar and BuildKit write them.
fn append(
    tar: &mut LayerTar,
    mut h: tar::Header,
    path: &str,
    link: Option<&[u8]>,
    mut pax: Pax,
    data: impl io::Read,
) -> Result<()> {
    let ctx = || format!("write {path}");
    if path.len() > 100 {
        pax.push(("path".into(), path.as_bytes().to_vec()));
    }
    if let Some(l) = link.filter(|l| l.len() > 100) {
        pax.push(("linkpath".into(), l.to_vec()));
    }
    if !pax.is_empty() {
        pax.sort();
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).ctx(ctx)?;
    }
    let old = h.as_old_mut();
    copy_truncated(&mut old.name, path.as_bytes());
    copy_truncated(&mut old.linkname, link.unwrap_or_default());
    h.set_cksum();
    tar.append(&h, data).ctx(ctx)
}

fn copy_truncated(field: &mut [u8; 100], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}
