//! Alpine packages: `lib/apk/db/installed`, one blank-line-separated
//! record per package of `X:value` lines.

use super::{Ecosystem, Package};

/// The packages of an apk database.
pub fn parse(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let mut pkg = Package::new(Ecosystem::Apk, "", "");
        for line in record.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            match key {
                "P" => pkg.name = value.to_string(),
                "V" => pkg.version = value.to_string(),
                "A" => pkg.arch = Some(value.to_string()),
                "L" => pkg.license = Some(value.to_string()),
                "o" => pkg.source = Some(value.to_string()),
                "m" => pkg.supplier = Some(value.to_string()),
                _ => {}
            }
        }
        if !pkg.name.is_empty() && !pkg.version.is_empty() {
            out.push(pkg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_name_version_arch_and_origin() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n";
        let found = super::parse(db);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].name.as_str(), found[0].version.as_str()), ("musl", "1.2.4-r2"));
        assert_eq!(found[0].license.as_deref(), Some("MIT"));
        assert_eq!(found[1].arch.as_deref(), Some("x86_64"));
    }
}
