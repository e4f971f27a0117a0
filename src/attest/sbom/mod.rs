//! The software bill of materials kiln makes from an image's own files,
//! with no scanner image and no network: each layer's package databases
//! and metadata are read once into a [`LayerInventory`] (cached by the
//! layer's diff id, so a cached layer is never scanned again), and an
//! image's inventories are merged in layer order, whiteouts applied.

mod apk;
mod dpkg;
mod gobuild;
mod node;
mod purl;
mod python;
mod scan;
pub mod spdx;

pub use purl::purl;
pub use scan::scan_layer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// Debian/Ubuntu (`dpkg`).
    Deb,
    /// Alpine (`apk`).
    Apk,
    /// Python distributions.
    Pypi,
    /// npm packages.
    Npm,
    /// Go modules of a binary.
    Golang,
    /// A container image the build started from.
    Oci,
}

/// One package found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// Its name as the ecosystem spells it.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Architecture, when the package manager records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Source package or origin, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Declared license, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Maintainer or author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
}

impl Package {
    /// A package with only a name and a version.
    pub fn new(ecosystem: Ecosystem, name: &str, version: &str) -> Self {
        Package {
            ecosystem,
            name: name.to_string(),
            version: version.to_string(),
            arch: None,
            source: None,
            license: None,
            supplier: None,
        }
    }
}

/// The distribution an image says it is (`/etc/os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Distro {
    /// `ID` (`debian`, `alpine`, …).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`, …).
    pub version_id: String,
}

impl Distro {
    /// Reads an os-release file.
    pub fn parse(text: &str) -> Self {
        let mut d = Distro::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "ID" => d.id = v,
                "VERSION_ID" => d.version_id = v,
                _ => {}
            }
        }
        d
    }
}

/// The version of the [`LayerInventory`] format (a cached inventory of
/// another version is scanned again).
pub const INVENTORY_VERSION: u32 = 1;

/// What one layer adds and removes, as far as packages go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInventory {
    /// [`INVENTORY_VERSION`].
    pub version: u32,
    /// Packages by the file that records them (relative path).
    pub found: BTreeMap<String, Vec<Package>>,
    /// os-release files by path.
    pub distros: BTreeMap<String, Distro>,
    /// Paths the layer deletes (whiteouts).
    pub whiteouts: Vec<String>,
    /// Directories the layer makes opaque (hiding what lower layers had).
    pub opaque: Vec<String>,
    /// Files looked at.
    pub files: u64,
}

/// The packages an image holds, merged from its layers' inventories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInventory {
    /// Packages with the file that records them, deduplicated by purl.
    pub packages: Vec<(String, Package)>,
    /// The image's distribution, when it says.
    pub distro: Option<Distro>,
}

/// Whether `path` is `dir` or below it.
fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

fn remove_under<V>(map: &mut BTreeMap<String, V>, dir: &str, keep_dir_itself: bool) {
    map.retain(|path, _| !under(path, dir) || (keep_dir_itself && path == dir));
}

/// Merges layer inventories, base first, as the overlay would: a layer's
/// whiteouts and opaque directories hide what the layers below recorded.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a LayerInventory>) -> ImageInventory {
    let (mut found, mut distros) = (BTreeMap::new(), BTreeMap::new());
    for layer in layers {
        for dir in layer.opaque.iter().chain(&layer.whiteouts) {
            let opaque = layer.opaque.contains(dir);
            remove_under(&mut found, dir, false);
            remove_under(&mut distros, dir, opaque);
        }
        found.extend(layer.found.iter().map(|(k, v)| (k.clone(), v.clone())));
        distros.extend(layer.distros.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let distro = distros.get("etc/os-release").or_else(|| distros.get("usr/lib/os-release")).cloned();
    let mut seen = std::collections::HashSet::new();
    let mut packages = Vec::new();
    for (path, list) in found {
        for pkg in list {
            if seen.insert(purl(&pkg, distro.as_ref())) {
                packages.push((path.clone(), pkg));
            }
        }
    }
    ImageInventory { packages, distro }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(found: &[(&str, &str)], whiteouts: &[&str], opaque: &[&str]) -> LayerInventory {
        LayerInventory {
            version: INVENTORY_VERSION,
            found: found.iter().map(|(p, n)| (p.to_string(), vec![Package::new(Ecosystem::Npm, n, "1.0.0")])).collect(),
            whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
            opaque: opaque.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn upper_layers_replace_and_hide_what_lower_ones_recorded() {
        let base = layer(&[("a/node_modules/x/package.json", "x"), ("b/node_modules/y/package.json", "y")], &[], &[]);
        let removes_a = layer(&[], &["a/node_modules"], &[]);
        let replaces_b = layer(&[("b/node_modules/z/package.json", "z")], &[], &["b"]);
        let names = |inv: ImageInventory| inv.packages.into_iter().map(|(_, p)| p.name).collect::<Vec<_>>();
        assert_eq!(names(merge([&base])), ["x", "y"]);
        assert_eq!(names(merge([&base, &removes_a])), ["y"]);
        assert_eq!(names(merge([&base, &removes_a, &replaces_b])), ["z"]);
    }

    #[test]
    fn a_package_recorded_twice_is_listed_once() {
        let twice = layer(&[("a/node_modules/x/package.json", "x"), ("b/node_modules/x/package.json", "x")], &[], &[]);
        assert_eq!(merge([&twice]).packages.len(), 1);
    }

    #[test]
    fn os_release_names_the_distribution() {
        let d = Distro::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", "12"));
    }
}
