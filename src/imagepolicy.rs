//! `--allowed-images`: which registry images a Dockerfile may name. A
//! builder pulls with its own registry credentials, so without a policy
//! any tenant can `FROM` another tenant's private image. Patterns match
//! the normalised `registry/repository` (tag and digest aside) segment by
//! segment: within a segment `*`, `?` and `[…]` as Go's `filepath.Match`,
//! and a whole `**` segment matches any number of segments.

use crate::registry::Reference;

/// The operator's allow-list; empty allows every image.
#[derive(Debug, Clone, Default)]
pub struct ImagePolicy {
    patterns: Vec<Vec<String>>,
}

impl ImagePolicy {
    /// A policy from `--allowed-images` values.
    pub fn new(patterns: &[String]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| p.split('/').map(str::to_string).collect())
            .collect();
        Self { patterns }
    }

    /// Whether `image` may be used.
    pub fn allows(&self, image: &Reference) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let name = format!("{}/{}", image.registry, image.repository);
        let segments: Vec<&str> = name.split('/').collect();
        self.patterns.iter().any(|p| matches(p, &segments))
    }

    /// The patterns, for error messages.
    pub fn describe(&self) -> String {
        self.patterns.iter().map(|p| p.join("/")).collect::<Vec<_>>().join(", ")
    }
}

/// Segment-wise match with `**`, in time proportional to pattern × name.
fn matches(pattern: &[String], name: &[&str]) -> bool {
    // reach[j]: the pattern so far matches the first j name segments.
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for seg in pattern {
        let mut next = vec![false; name.len() + 1];
        for j in 0..=name.len() {
            if seg == "**" {
                next[j] = reach[..=j].iter().any(|r| *r);
            } else if j > 0 && reach[j - 1] {
                next[j] = crate::glob::glob_match(seg, name[j - 1]);
            }
        }
        reach = next;
    }
    reach[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(p: &[&str]) -> ImagePolicy {
        ImagePolicy::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn allows(p: &ImagePolicy, image: &str) -> bool {
        p.allows(&Reference::parse(image).unwrap())
    }

    #[test]
    fn patterns_match_segments_and_double_stars_span_them() {
        let p = policy(&["reg.io/acme/*", "docker.io/library/**"]);
        assert!(allows(&p, "reg.io/acme/base:1"));
        assert!(allows(&p, "reg.io/acme/base@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert!(!allows(&p, "reg.io/acme/team/base"), "* stays within a segment");
        assert!(!allows(&p, "reg.io/other/base"));
        assert!(allows(&p, "busybox"), "normalised to docker.io/library/busybox");
        assert!(allows(&policy(&["reg.io/**"]), "reg.io/a/b/c"));
        assert!(!allows(&policy(&["reg.io/**"]), "reg.iox/a"));
        assert!(allows(&policy(&[]), "anything.io/x"), "no patterns: any image");
    }
}
