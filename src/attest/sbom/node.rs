//! npm packages: each installed `node_modules/<name>/package.json`
//! (`node_modules/@scope/<name>/package.json` for scoped ones), and the
//! packages a `package-lock.json` pins.

use super::{Ecosystem, Package};

/// Whether `path` is an installed package's manifest.
pub fn is_installed_manifest(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/package.json") else { return false };
    let parts: Vec<&str> = dir.rsplit('/').take(3).collect();
    match parts.as_slice() {
        [name, "node_modules", ..] => !name.starts_with('.') && !name.starts_with('@'),
        [name, scope, "node_modules"] => scope.starts_with('@') && !name.starts_with('.'),
        _ => false,
    }
}

/// Whether `path` is a lockfile of an application (not one a package
/// shipped inside `node_modules`).
pub fn is_lockfile(path: &str) -> bool {
    (path == "package-lock.json" || path.ends_with("/package-lock.json")) && !path.contains("node_modules/")
}

/// The package a `package.json` describes.
pub fn parse_manifest(text: &str) -> Option<Package> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut pkg = Package::new(Ecosystem::Npm, v.get("name")?.as_str()?, v.get("version")?.as_str()?);
    pkg.license = match v.get("license") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("type").and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    pkg.supplier = match v.get("author") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("name").and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    Some(pkg)
}

/// The packages a lockfile pins: `packages` (lockfile v2 and v3), else
/// the nested `dependencies` (v1).
pub fn parse_lockfile(text: &str) -> Vec<Package> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(packages) = v.get("packages").and_then(|p| p.as_object()) {
        for (key, entry) in packages {
            let Some(at) = key.rfind("node_modules/") else { continue };
            let name = entry.get("name").and_then(|n| n.as_str()).unwrap_or(&key[at + "node_modules/".len()..]);
            if let Some(version) = entry.get("version").and_then(|n| n.as_str()) {
                let mut pkg = Package::new(Ecosystem::Npm, name, version);
                pkg.license = entry.get("license").and_then(|l| l.as_str()).map(str::to_string);
                out.push(pkg);
            }
        }
        return out;
    }
    let mut stack: Vec<&serde_json::Value> = v.get("dependencies").into_iter().collect();
    while let Some(deps) = stack.pop() {
        let Some(deps) = deps.as_object() else { continue };
        for (name, entry) in deps {
            if let Some(version) = entry.get("version").and_then(|n| n.as_str()) {
                out.push(Package::new(Ecosystem::Npm, name, version));
            }
            stack.extend(entry.get("dependencies"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_installed_manifests_only() {
        assert!(is_installed_manifest("app/node_modules/express/package.json"));
        assert!(is_installed_manifest("app/node_modules/@types/node/package.json"));
        assert!(is_installed_manifest("app/node_modules/a/node_modules/b/package.json"));
        assert!(!is_installed_manifest("app/package.json"));
        assert!(!is_installed_manifest("app/node_modules/express/lib/package.json"));
        assert!(!is_installed_manifest("app/node_modules/.bin/package.json"));
        assert!(is_lockfile("home/app/package-lock.json"));
        assert!(!is_lockfile("app/node_modules/x/package-lock.json"));
    }

    #[test]
    fn reads_manifests_and_both_lockfile_shapes() {
        let pkg = parse_manifest(r#"{"name":"@scope/x","version":"1.0.0","license":{"type":"MIT"}}"#).unwrap();
        assert_eq!((pkg.name.as_str(), pkg.license.as_deref()), ("@scope/x", Some("MIT")));
        let v3 = r#"{"packages":{"":{"name":"app"},"node_modules/a":{"version":"1.2.3"},
                     "node_modules/a/node_modules/@s/b":{"version":"2.0.0"}}}"#;
        let mut names: Vec<_> = parse_lockfile(v3).into_iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
        names.sort();
        assert_eq!(names, ["@s/b@2.0.0", "a@1.2.3"]);
        let v1 = r#"{"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"0.1.0"}}}}}"#;
        assert_eq!(parse_lockfile(v1).len(), 2);
    }
}
