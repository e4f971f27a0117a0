//! Package URLs (<https://github.com/package-url/purl-spec>).

use super::{Distro, Ecosystem, Package};

/// Percent-encodes everything but the unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `/`-separated path with each segment encoded.
fn enc_path(s: &str) -> String {
    s.split('/').filter(|p| !p.is_empty()).map(enc).collect::<Vec<_>>().join("/")
}

/// `?k=v&…` over the present qualifiers, sorted by key as the spec asks.
fn qualifiers(pairs: &[(&str, Option<String>)]) -> String {
    let mut present: Vec<_> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v))).collect();
    present.sort();
    let joined: Vec<String> = present.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

/// The package URL of `pkg` (OS packages are qualified with `distro`).
pub fn purl(pkg: &Package, distro: Option<&Distro>) -> String {
    let version = enc(&pkg.version);
    let distro_q = distro.filter(|d| !d.id.is_empty()).map(|d| format!("{}-{}", d.id, d.version_id));
    match pkg.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk => {
            let (kind, default_ns) =
                if pkg.ecosystem == Ecosystem::Deb { ("deb", "debian") } else { ("apk", "alpine") };
            let ns = distro.map(|d| d.id.as_str()).filter(|id| !id.is_empty()).unwrap_or(default_ns);
            let upstream = pkg.source.clone().filter(|s| *s != pkg.name);
            let q = qualifiers(&[("arch", pkg.arch.clone()), ("distro", distro_q), ("upstream", upstream)]);
            format!("pkg:{kind}/{}/{}@{version}{q}", enc(ns), enc(&pkg.name))
        }
        Ecosystem::Pypi => format!("pkg:pypi/{}@{version}", enc(&super::python::normalized(&pkg.name))),
        Ecosystem::Npm => format!("pkg:npm/{}@{version}", enc_path(&pkg.name)),
        Ecosystem::Golang => format!("pkg:golang/{}@{version}", enc_path(&pkg.name)),
        Ecosystem::Oci => {
            let (repo_url, name) = (pkg.source.clone(), pkg.name.rsplit('/').next().unwrap_or(&pkg.name));
            let q = qualifiers(&[("repository_url", repo_url), ("arch", pkg.arch.clone())]);
            format!("pkg:oci/{}@{version}{q}", enc(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_each_ecosystem_as_the_spec_does() {
        let debian = Distro { id: "debian".into(), version_id: "12".into() };
        let mut bash = Package::new(Ecosystem::Deb, "bash", "5.2.15-2+b2");
        bash.arch = Some("amd64".into());
        assert_eq!(purl(&bash, Some(&debian)), "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12");
        let scoped = Package::new(Ecosystem::Npm, "@types/node", "20.1.0");
        assert_eq!(purl(&scoped, None), "pkg:npm/%40types/node@20.1.0");
        assert_eq!(purl(&Package::new(Ecosystem::Pypi, "Flask_Login", "0.6.3"), None), "pkg:pypi/flask-login@0.6.3");
        let module = Package::new(Ecosystem::Golang, "github.com/a/b", "v1.2.3");
        assert_eq!(purl(&module, None), "pkg:golang/github.com/a/b@v1.2.3");
        let mut base = Package::new(Ecosystem::Oci, "127.0.0.1:5000/library/debian", "sha256:ab");
        base.source = Some("127.0.0.1:5000/library/debian".into());
        assert_eq!(purl(&base, None), "pkg:oci/debian@sha256%3Aab?repository_url=127.0.0.1%3A5000%2Flibrary%2Fdebian");
    }
}
