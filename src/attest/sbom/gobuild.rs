//! Go binaries: the module build info the Go linker embeds in the
//! `.go.buildinfo` ELF section (Go 1.18 and later, inline strings). Only
//! the ELF header, the section headers and that section are read.

use super::{Ecosystem, Package};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// The most of a `.go.buildinfo` section read.
const MAX_SECTION: u64 = 4 << 20;
/// The most section headers looked through.
const MAX_SECTIONS: u64 = 4096;

/// Reads the little- or big-endian integer of `n` bytes at `at`.
fn int(b: &[u8], at: usize, n: usize, little: bool) -> Option<u64> {
    let bytes = b.get(at..at + n)?;
    let fold = |acc: u64, x: &u8| (acc << 8) | *x as u64;
    Some(if little { bytes.iter().rev().fold(0, fold) } else { bytes.iter().fold(0, fold) })
}

/// The bytes of the ELF section named `wanted`, if any.
fn elf_section(file: &File, wanted: &[u8]) -> Option<Vec<u8>> {
    let mut head = [0u8; 64];
    file.read_exact_at(&mut head, 0).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let (wide, little) = (head[4] == 2, head[5] == 1);
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            int(&head, 0x28, 8, little)?,
            int(&head, 0x3a, 2, little)?,
            int(&head, 0x3c, 2, little)?,
            int(&head, 0x3e, 2, little)?,
        )
    } else {
        (
            int(&head, 0x20, 4, little)?,
            int(&head, 0x2e, 2, little)?,
            int(&head, 0x30, 2, little)?,
            int(&head, 0x32, 2, little)?,
        )
    };
    if shnum == 0 || shnum > MAX_SECTIONS || !(24..=256).contains(&shentsize) || shstrndx >= shnum {
        return None;
    }
    let mut table = vec![0u8; (shnum * shentsize) as usize];
    file.read_exact_at(&mut table, shoff).ok()?;
    let section = |i: u64| -> Option<(u64, u64, u64)> {
        let s = &table[(i * shentsize) as usize..];
        let name = int(s, 0, 4, little)?;
        Some(if wide {
            (name, int(s, 24, 8, little)?, int(s, 32, 8, little)?)
        } else {
            (name, int(s, 16, 4, little)?, int(s, 20, 4, little)?)
        })
    };
    let (_, names_at, names_len) = section(shstrndx)?;
    let mut names = vec![0u8; names_len.min(1 << 20) as usize];
    file.read_exact_at(&mut names, names_at).ok()?;
    for i in 0..shnum {
        let (name, offset, size) = section(i)?;
        let name = names.get(name as usize..)?;
        if name.starts_with(wanted) && name.get(wanted.len()) == Some(&0) {
            let mut data = vec![0u8; size.min(MAX_SECTION) as usize];
            file.read_exact_at(&mut data, offset).ok()?;
            return Some(data);
        }
    }
    None
}

/// A uvarint-prefixed string at the front of `b`, and the rest.
fn varint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut len, mut shift, mut used) = (0u64, 0, 0);
    for &byte in b.iter().take(10) {
        used += 1;
        len |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            let rest = &b[used..];
            let len = usize::try_from(len).ok().filter(|l| *l <= rest.len())?;
            return Some((&rest[..len], &rest[len..]));
        }
        shift += 7;
    }
    None
}

/// The Go version and module info of a `.go.buildinfo` section.
fn build_info(section: &[u8]) -> Option<(String, String)> {
    if !section.starts_with(MAGIC) || section.len() < 32 || section[15] & 2 == 0 {
        return None; // before Go 1.18 the strings are pointers into the binary
    }
    let (version, rest) = varint_string(&section[32..])?;
    let (mut modinfo, _) = varint_string(rest)?;
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    Some((String::from_utf8_lossy(version).into_owned(), String::from_utf8_lossy(modinfo).into_owned()))
}

/// The modules of a Go build info: the toolchain's standard library, the
/// main module and every dependency. A `=>` replacement by another module
/// stands for the dependency before it; one by a local directory keeps the
/// dependency's path, at version `(devel)`.
pub fn modules(go_version: &str, modinfo: &str) -> Vec<Package> {
    let mut out = vec![Package::new(Ecosystem::Golang, "stdlib", go_version.trim_start_matches("go"))];
    for line in modinfo.lines() {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["mod" | "dep", path, version, ..] => out.push(Package::new(Ecosystem::Golang, path, version)),
            ["=>", path, version, ..] if out.len() > 1 => {
                let replaced = out.pop().expect("checked above");
                let local = path.starts_with('.') || path.starts_with('/');
                out.push(match local {
                    true => Package::new(Ecosystem::Golang, &replaced.name, "(devel)"),
                    false => Package::new(Ecosystem::Golang, path, version),
                });
            }
            _ => {}
        }
    }
    out
}

/// The modules of the Go binary `file` (opened by the caller), or nothing
/// when it is not one.
pub fn scan(mut file: File) -> Vec<Package> {
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
        return Vec::new();
    }
    let Some(section) = elf_section(&file, b".go.buildinfo") else { return Vec::new() };
    match build_info(&section) {
        Some((version, modinfo)) => modules(&version, &modinfo),
        None => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal little-endian ELF64 file with one `.go.buildinfo` section
    /// holding `version` and `modinfo` (Go 1.18+ layout).
    pub(crate) fn go_binary(version: &str, modinfo: &str) -> Vec<u8> {
        let mut info = MAGIC.to_vec();
        info.extend([8u8, 2]);
        info.resize(32, 0);
        let sentinel = [0x30u8; 16];
        let mut wrapped = sentinel.to_vec();
        wrapped.extend(modinfo.as_bytes());
        wrapped.extend(sentinel);
        for s in [version.as_bytes(), &wrapped[..]] {
            let mut n = s.len();
            while n >= 0x80 {
                info.push((n as u8 & 0x7f) | 0x80);
                n >>= 7;
            }
            info.push(n as u8);
            info.extend(s);
        }
        let names = b"\0.shstrtab\0.go.buildinfo\0";
        let (names_at, info_at) = (64u64, 64 + names.len() as u64);
        let shoff = info_at + info.len() as u64;
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf.extend(names);
        elf.extend(&info);
        let header = |name: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, names_at, names.len() as u64));
        elf.extend(header(11, info_at, info.len() as u64));
        elf
    }

    #[test]
    fn reads_the_modules_of_a_go_binary() {
        let modinfo = "path\texample.com/fn\nmod\texample.com/fn\t(devel)\t\n\
                       dep\tgithub.com/a/b\tv1.2.3\th1:x=\ndep\tgolang.org/x/sys\tv0.1.0\th1:y=\n\
                       =>\t../sys\t\t\ndep\tgithub.com/c/d\tv0.1.0\th1:z=\n=>\tgithub.com/e/d\tv0.2.0\th1:w=\n\
                       build\tGOOS=linux\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fn");
        std::fs::write(&path, go_binary("go1.22.1", modinfo)).unwrap();
        let found = scan(File::open(&path).unwrap());
        let names: Vec<_> = found.iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
        assert_eq!(
            names,
            [
                "stdlib@1.22.1",
                "example.com/fn@(devel)",
                "github.com/a/b@v1.2.3",
                "golang.org/x/sys@(devel)",
                "github.com/e/d@v0.2.0"
            ]
        );
    }

    #[test]
    fn hostile_headers_and_sections_are_refused_without_reading_much() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        let good = go_binary("go1.22.1", "mod\tx\tv1\t\n");
        let cases: [(&str, usize, &[u8]); 4] = [
            ("section count beyond the limit", 0x3c, &0xffffu16.to_le_bytes()),
            ("section table beyond the file", 0x28, &u64::MAX.to_le_bytes()),
            ("names index beyond the table", 0x3e, &7u16.to_le_bytes()),
            ("entry size too small", 0x3a, &4u16.to_le_bytes()),
        ];
        for (what, at, bytes) in cases {
            let mut elf = good.clone();
            elf[at..at + bytes.len()].copy_from_slice(bytes);
            std::fs::write(&path, &elf).unwrap();
            assert!(scan(File::open(&path).unwrap()).is_empty(), "{what}");
        }
        // A varint length past the section's end.
        let mut info = MAGIC.to_vec();
        info.extend([8u8, 2]);
        info.resize(32, 0);
        info.extend([0xff, 0xff, 0xff, 0x7f]);
        assert!(build_info(&info).is_none());
    }

    #[test]
    fn other_files_have_no_modules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sh");
        std::fs::write(&path, b"\x7fELF\x02\x01 truncated").unwrap();
        assert!(scan(File::open(&path).unwrap()).is_empty());
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        assert!(scan(File::open(&path).unwrap()).is_empty());
    }
}
