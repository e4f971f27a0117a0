//! Image references, normalised the way Docker does (`busybox` →
//! `docker.io/library/busybox:latest`).

use super::{Error, Result};
use std::fmt;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<String>,
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
        })
}

/// Longest normalised `registry/repository` name (distribution's limit,
/// which applies after `docker.io/library/` is added).
pub const MAX_NAME: usize = 255;

impl Reference {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |why: &str| Error::Invalid(format!("invalid image reference {s:?}: {why}"));
        let s = s.trim();
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (s, None),
        };
        if let Some(d) = &digest {
            kiln_snapshotter::Digest::parse(d).map_err(|_| invalid("bad digest"))?;
        }
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(name[last_slash + i + 1..].to_string())),
            None => (name, None),
        };
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" { "docker.io".to_string() } else { registry };
        let repository = if registry == "docker.io" && !repo.contains('/') { format!("library/{repo}") } else { repo };
        if !valid_repo(&repository) {
            return Err(invalid("repository names must be lowercase letters, digits and separators"));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(invalid(&format!("the full name is longer than {MAX_NAME} characters")));
        }
        if let Some(t) = &tag {
            let ok =
                !t.is_empty() && t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(invalid("bad tag"));
            }
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".into()) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The tag or digest to ask the registry for.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The host serving the API (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The same repository at another digest.
    pub fn with_digest(&self, digest: &str) -> Self {
        Reference { digest: Some(digest.to_string()), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_length_limit_applies_to_the_normalised_name() {
        let short = "a".repeat(255 - "docker.io/library/".len());
        assert!(Reference::parse(&short).is_ok());
        let err = Reference::parse(&format!("{short}b")).unwrap_err().to_string();
        assert!(err.contains("longer than 255"), "{err}");
        let r = Reference::parse(&short).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "a parsed name parses back");
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("openfaas/of-watchdog:0.10.7", "docker.io/openfaas/of-watchdog:0.10.7"),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            ("localhost/a/b:1", "localhost/a/b:1"),
            ("ghcr.io/openfaas/of-watchdog:0.10.7", "ghcr.io/openfaas/of-watchdog:0.10.7"),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse(input).unwrap().to_string(), want, "{input}");
        }
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("reg:5000/x@{d}")).unwrap();
        assert_eq!((r.tag.clone(), r.reference()), (None, d));
        assert!(Reference::parse("Busybox").is_err());
        assert!(Reference::parse("a/b:bad tag").is_err());
        assert!(Reference::parse("x@sha256:zz").is_err());
    }
}
