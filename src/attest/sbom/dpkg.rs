//! Debian packages: `var/lib/dpkg/status` (one paragraph per package) and
//! distroless's `var/lib/dpkg/status.d/<name>` (one file per package).

use super::{Ecosystem, Package};

/// The fields of a control paragraph (continuation lines dropped: kiln
/// needs none of the multi-line fields).
fn fields(paragraph: &str) -> impl Iterator<Item = (&str, &str)> {
    paragraph
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// Whether a `Status:` value counts as present, as `dpkg-query -W` does:
/// everything but `not-installed` (and `config-files`, which leaves only
/// configuration behind).
fn present(status: Option<&str>) -> bool {
    match status.and_then(|s| s.split_whitespace().nth(2)) {
        Some(state) => !matches!(state, "not-installed" | "config-files"),
        None => true,
    }
}

/// The packages a status file (or a `status.d` entry) lists.
pub fn parse(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut source, mut status, mut maintainer) =
            (None, None, None, None, None, None);
        for (key, value) in fields(paragraph) {
            match key {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Architecture" => arch = Some(value),
                "Source" => source = Some(value),
                "Status" => status = Some(value),
                "Maintainer" => maintainer = Some(value),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else { continue };
        if !present(status) {
            continue;
        }
        out.push(Package {
            ecosystem: Ecosystem::Deb,
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.map(str::to_string),
            source: source.map(|s| s.split_whitespace().next().unwrap_or(s).to_string()),
            supplier: maintainer.map(str::to_string),
            license: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_present_packages_with_their_source_and_arch() {
        let status = "Package: bash\nEssential: yes\nStatus: install ok installed\nArchitecture: amd64\n\
                      Version: 5.2.15-2+b2\nMaintainer: Matthias Klose <doko@debian.org>\nDescription: shell\n \
                      more text: with a colon\n\nPackage: gone\nStatus: purge ok not-installed\nVersion: 1\n\n\
                      Package: conf\nStatus: deinstall ok config-files\nVersion: 2\n\n\
                      Package: libc6\nStatus: install ok installed\nSource: glibc (2.36-9)\nVersion: 2.36-9\n\
                      Architecture: amd64\n";
        let found = parse(status);
        let names: Vec<_> = found.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(names, [("bash", "5.2.15-2+b2"), ("libc6", "2.36-9")]);
        assert_eq!(found[1].source.as_deref(), Some("glibc"));
        assert_eq!(found[0].supplier.as_deref(), Some("Matthias Klose <doko@debian.org>"));
    }
}
