//! Python distributions: `*.dist-info/METADATA` and `*.egg-info/PKG-INFO`
//! (or an `*.egg-info` file), whose headers are RFC 822 style.

use super::{Ecosystem, Package};

/// Whether `path` (relative, `/`-separated) is a distribution's metadata.
pub fn is_metadata(path: &str) -> bool {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let dir_name = dir.rsplit('/').next().unwrap_or(dir);
    (file == "METADATA" && dir_name.ends_with(".dist-info"))
        || (file == "PKG-INFO" && dir_name.ends_with(".egg-info"))
        || file.ends_with(".egg-info")
}

/// The distribution a metadata file describes.
pub fn parse(text: &str) -> Option<Package> {
    let (mut name, mut version, mut license, mut author) = (None, None, None, None);
    for line in text.lines() {
        if line.is_empty() {
            break; // the body (long description) follows the headers
        }
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key {
            "Name" => name = Some(value),
            "Version" => version = Some(value),
            "License" if !value.is_empty() && value != "UNKNOWN" => license = Some(value),
            "License-Expression" => license = Some(value),
            "Author" | "Author-email" if author.is_none() && !value.is_empty() => author = Some(value),
            _ => {}
        }
    }
    let mut pkg = Package::new(Ecosystem::Pypi, name?, version?);
    pkg.license = license.map(str::to_string);
    pkg.supplier = author.map(str::to_string);
    Some(pkg)
}

/// A project name as PyPI normalises it (PEP 503): lowercase, runs of
/// `-`, `_` and `.` become one `-`.
pub fn normalized(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_dist_info_and_egg_info_metadata() {
        assert!(is_metadata("usr/lib/python3/dist-packages/requests-2.28.1.dist-info/METADATA"));
        assert!(is_metadata("app/pkg.egg-info/PKG-INFO"));
        assert!(is_metadata("usr/lib/python3/dist-packages/six-1.16.0.egg-info"));
        assert!(!is_metadata("app/METADATA"));
    }

    #[test]
    fn reads_the_headers_only() {
        let meta = "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\nLicense: MIT\n\nName: not-this\n";
        let pkg = parse(meta).unwrap();
        assert_eq!((pkg.name.as_str(), pkg.version.as_str()), ("Flask_Login", "0.6.3"));
        assert_eq!(normalized(&pkg.name), "flask-login");
        assert_eq!(pkg.license.as_deref(), Some("MIT"));
    }
}
