//! Target platforms (`os/arch[/variant]`), normalised the way containerd
//! does it, and whether the host can run a platform's binaries.

pub mod binfmt;

use crate::oci::PlatformSpec;
use serde::{Deserialize, Serialize};

/// A normalised target platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, …
    pub architecture: String,
    /// `v7`, `v6`, … (`None` where the architecture has a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform kiln runs on.
    pub fn host() -> Self {
        Platform::normalized("linux", std::env::consts::ARCH, None)
    }

    /// Parses `os/arch[/variant]` (or a bare `arch`, taken as linux), with
    /// the usual aliases: `x86_64` → `amd64`, `aarch64` → `arm64`,
    /// `armhf` → `arm/v7`, `i686` → `386`.
    pub fn parse(value: &str) -> Result<Self, PlatformError> {
        let value = value.trim();
        let parts: Vec<&str> = value.split('/').collect();
        let bad = || PlatformError::Malformed(value.to_string());
        if parts.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
            return Err(bad());
        }
        match parts.as_slice() {
            [arch] => Ok(Platform::normalized("linux", arch, None)),
            [os, arch] => Ok(Platform::normalized(os, arch, None)),
            [os, arch, variant] => Ok(Platform::normalized(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }

    fn normalized(os: &str, arch: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let variant = variant.map(str::to_ascii_lowercase);
        let (architecture, variant) = match (arch.to_ascii_lowercase().as_str(), variant.as_deref()) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.filter(|v| *v != "v1").map(String::from)),
            ("aarch64" | "arm64", Some("v8") | None) => ("arm64", None),
            ("aarch64" | "arm64", Some(v)) => ("arm64", Some(v.to_string())),
            ("armhf", _) => ("arm", Some("v7".to_string())),
            ("armel", _) => ("arm", Some("v6".to_string())),
            ("arm", None) => ("arm", Some("v7".to_string())),
            ("arm", Some(v)) => ("arm", Some(v.to_string())),
            ("i386" | "i486" | "i586" | "i686" | "386", _) => ("386", None),
            (a, v) => return Platform { os, architecture: a.to_string(), variant: v.map(String::from) },
        };
        Platform { os, architecture: architecture.into(), variant }
    }

    /// An index entry's platform, normalised.
    pub fn from_spec(spec: &PlatformSpec) -> Self {
        Platform::normalized(&spec.os, &spec.architecture, spec.variant.as_deref())
    }

    /// As an index entry's platform.
    pub fn spec(&self) -> PlatformSpec {
        PlatformSpec { os: self.os.clone(), architecture: self.architecture.clone(), variant: self.variant.clone() }
    }

    /// Whether the host runs this platform's binaries without emulation.
    pub fn is_native(&self) -> bool {
        let host = Platform::host();
        self.os == host.os
            && (self.architecture == host.architecture || (host.architecture == "amd64" && self.architecture == "386"))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A platform list a request may not ask for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Not `os/arch[/variant]`.
    #[error("{0:?} is not a platform (want os/arch[/variant], e.g. linux/arm64)")]
    Malformed(String),
    /// Another operating system.
    #[error("platform {0}: kiln builds linux images only")]
    NotLinux(Platform),
    /// An architecture no image is published for.
    #[error("platform {0}: unknown architecture (known: {known})", known = KNOWN_ARCHITECTURES.join(", "))]
    UnknownArchitecture(Platform),
    /// More than [`MAX_PLATFORMS`].
    #[error("{0} platforms requested, at most {MAX_PLATFORMS}")]
    TooMany(usize),
}

/// Most platforms one request may ask for.
pub const MAX_PLATFORMS: usize = 16;

/// Architectures images are published for (Go's GOARCH names).
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64", "mips64le", "mips64", "mipsle", "mips",
    "loong64",
];

/// The platforms a request asks for, trimmed, normalised and without
/// repeats (faas-cli sends `--platforms` split on commas, untrimmed); the
/// host platform when none are given.
pub fn requested(values: Option<&[String]>) -> Result<Vec<Platform>, PlatformError> {
    let mut out: Vec<Platform> = Vec::new();
    for v in values.unwrap_or_default().iter().flat_map(|v| v.split(',')).filter(|v| !v.trim().is_empty()) {
        let p = Platform::parse(v)?;
        if p.os != "linux" {
            return Err(PlatformError::NotLinux(p));
        }
        if !KNOWN_ARCHITECTURES.contains(&p.architecture.as_str()) {
            return Err(PlatformError::UnknownArchitecture(p));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.len() > MAX_PLATFORMS {
        return Err(PlatformError::TooMany(out.len()));
    }
    if out.is_empty() {
        out.push(Platform::host());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_normalise_like_containerd() {
        let p = |s: &str| Platform::parse(s).unwrap().to_string();
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p(" Linux/AMD64 "), "linux/amd64");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(p("linux/riscv64"), "linux/riscv64");
    }

    #[test]
    fn malformed_platforms_are_refused() {
        for bad in ["", "linux/", "/amd64", "linux/amd64/v2/x", "linux/am d64", "linux/$ARCH"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn requests_are_trimmed_deduplicated_and_default_to_the_host() {
        let list = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            requested(Some(&v)).map(|ps| ps.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(list(&[" linux/amd64", "linux/arm64 ", "linux/x86_64"]).unwrap(), ["linux/amd64", "linux/arm64"]);
        assert_eq!(list(&["linux/amd64,linux/arm64"]).unwrap(), ["linux/amd64", "linux/arm64"]);
        assert_eq!(list(&[]).unwrap(), [Platform::host().to_string()]);
        assert_eq!(requested(None).unwrap(), [Platform::host()]);
        assert!(matches!(requested(Some(&["windows/amd64".into()])), Err(PlatformError::NotLinux(_))));
        assert!(matches!(requested(Some(&["linux/arch0".into()])), Err(PlatformError::UnknownArchitecture(_))));
        let many = vec!["linux/amd64"; 17].join(",").replace("amd64", "arm64");
        assert_eq!(list(&[many.as_str()]).unwrap().len(), 1, "repeats collapse");
        let distinct: Vec<String> = KNOWN_ARCHITECTURES
            .iter()
            .map(|a| format!("linux/{a}"))
            .chain(["linux/arm/v6", "linux/arm/v5", "linux/arm64/v9", "linux/amd64/v2"].map(String::from))
            .collect();
        let refs: Vec<&str> = distinct.iter().map(String::as_str).collect();
        let owned: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        assert_eq!(requested(Some(&owned)), Err(PlatformError::TooMany(17)));
        assert_eq!(PlatformError::TooMany(17).to_string(), "17 platforms requested, at most 16");
    }
}
