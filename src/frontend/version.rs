//! Which Dockerfile frontend's behaviour a build follows. BuildKit runs
//! the frontend the `# syntax=` directive names (`docker/dockerfile:1.N`
//! pulls that release, `:1` the newest 1.x) and its built-in one when
//! there is no directive. kiln has no frontend images to pull, so it
//! follows the named release where their behaviours differ: no directive
//! means the frontend built into BuildKit v0.23 (the pro-builder's, the
//! 1.17 line); `:1`, `:1-labs` and `:latest` mean [`NEWEST`]; a release
//! newer than that is read as [`NEWEST`] too.

/// A Dockerfile frontend release (`major.minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrontendVersion {
    /// Major version (1).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

/// The frontend built into BuildKit v0.23 (what a Dockerfile without a
/// `# syntax=` directive gets from the pro-builder).
pub const BUILT_IN: FrontendVersion = FrontendVersion { major: 1, minor: 17 };

/// The newest release whose behaviour kiln follows.
pub const NEWEST: FrontendVersion = FrontendVersion { major: 1, minor: 20 };

/// The first release that writes `EXPOSE [80/tcp]` (not Go's map format)
/// into the image history.
pub const EXPOSE_LIST_HISTORY: FrontendVersion = FrontendVersion { major: 1, minor: 19 };

impl FrontendVersion {
    /// The version a `# syntax=` value selects (`None`: no directive).
    pub fn from_syntax(syntax: Option<&str>) -> Self {
        let Some(image) = syntax.map(str::trim).filter(|s| !s.is_empty()) else { return BUILT_IN };
        let image = image.split('@').next().unwrap_or(image);
        let Some((name, tag)) = image.rsplit_once(':') else { return NEWEST };
        if !is_official_frontend(name) {
            return NEWEST;
        }
        let release = tag.split('-').next().unwrap_or(tag);
        let mut parts = release.split('.').map(|p| p.parse::<u32>());
        match (parts.next(), parts.next()) {
            (Some(Ok(1)), Some(Ok(minor))) => FrontendVersion { major: 1, minor }.min(NEWEST),
            _ => NEWEST,
        }
    }

    /// The version of a parsed Dockerfile.
    pub fn of(df: &super::Dockerfile) -> Self {
        let syntax = df.directives.iter().find(|(k, _)| k == "syntax").map(|(_, v)| v.as_str());
        Self::from_syntax(syntax)
    }
}

impl std::fmt::Display for FrontendVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// `docker/dockerfile` under any of the names Docker Hub answers to.
fn is_official_frontend(name: &str) -> bool {
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    matches!(name, "docker/dockerfile" | "docker/dockerfile-upstream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32) -> FrontendVersion {
        FrontendVersion { major: 1, minor }
    }

    #[test]
    fn the_syntax_directive_selects_the_release() {
        assert_eq!(FrontendVersion::from_syntax(None), BUILT_IN);
        assert_eq!(FrontendVersion::from_syntax(Some("docker/dockerfile:1")), NEWEST);
        assert_eq!(FrontendVersion::from_syntax(Some("docker/dockerfile:1-labs")), NEWEST);
        assert_eq!(FrontendVersion::from_syntax(Some("docker/dockerfile:1.14")), v(14));
        assert_eq!(FrontendVersion::from_syntax(Some("docker.io/docker/dockerfile:1.18.1")), v(18));
        assert_eq!(FrontendVersion::from_syntax(Some("docker/dockerfile:1.19-labs")), v(19));
        assert_eq!(FrontendVersion::from_syntax(Some("docker/dockerfile:1.99")), NEWEST, "capped at what kiln knows");
        let pinned = "docker/dockerfile:1.16@sha256:e2dd261f92e4b763d789984f6eab84be66ab4f5f08052316d8eb8f173593acf7";
        assert_eq!(FrontendVersion::from_syntax(Some(pinned)), v(16));
        assert_eq!(FrontendVersion::from_syntax(Some("example.com/custom/frontend:2")), NEWEST);
        assert!(FrontendVersion::from_syntax(Some("docker/dockerfile:1.18")) < EXPOSE_LIST_HISTORY);
    }
}
