//! The SPDX 2.3 JSON document for an image: the image itself as the
//! described package, every package found in it, and the images it was
//! built from, each with its package URL.

use super::{purl, Ecosystem, ImageInventory, Package};
use serde_json::{json, Value};

/// What the document is about.
pub struct Subject<'a> {
    /// The image reference as pushed (`registry/repo:tag`).
    pub name: &'a str,
    /// Its manifest digest (`sha256:…`).
    pub digest: &'a str,
    /// Its platform (`linux/amd64`).
    pub platform: &'a str,
    /// When the document was made (RFC 3339, seconds, `Z`).
    pub created: &'a str,
}

/// A base image: reference and manifest digest.
pub struct BaseImage<'a> {
    /// `registry/repo:tag`.
    pub reference: &'a str,
    /// `sha256:…`.
    pub digest: &'a str,
}

/// An SPDX identifier's allowed characters (letters, digits, `.`, `-`).
fn id_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect()
}

/// A supplier as SPDX wants it (`Person: …` or `Organization: …`).
fn supplier(pkg: &Package) -> Value {
    match pkg.supplier.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => json!(format!("Person: {}", s.replace(['\n', '\r'], " "))),
        None => json!("NOASSERTION"),
    }
}

fn package_entry(id: String, pkg: &Package, purl: &str, found_in: &str) -> Value {
    let mut entry = json!({
        "SPDXID": id,
        "name": pkg.name,
        "versionInfo": pkg.version,
        "supplier": supplier(pkg),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "sourceInfo": format!("found in /{found_in}"),
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    });
    if let Some(license) = pkg.license.as_deref().filter(|l| !l.trim().is_empty()) {
        entry["comment"] = json!(format!("declared license: {license}"));
    }
    entry
}

/// The document (its `documentNamespace` is derived from the image digest,
/// so the same image always gets the same document).
pub fn document(subject: &Subject<'_>, inventory: &ImageInventory, bases: &[BaseImage<'_>]) -> Value {
    let image_id = "SPDXRef-Image".to_string();
    let image_name = subject.name.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(subject.name, |(n, _)| n);
    let mut image = Package::new(Ecosystem::Oci, image_name, subject.digest);
    image.source = Some(image_name.to_string());
    let mut packages = vec![package_entry(image_id.clone(), &image, &purl(&image, None), "")];
    packages[0]["sourceInfo"] = json!(format!("the image {} ({})", subject.name, subject.platform));
    packages[0]["primaryPackagePurpose"] = json!("CONTAINER");
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (i, base) in bases.iter().enumerate() {
        let name = base.reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(base.reference, |(n, _)| n);
        let mut pkg = Package::new(Ecosystem::Oci, name, base.digest);
        pkg.source = Some(name.to_string());
        let id = format!("SPDXRef-BaseImage-{i}-{}", id_part(name));
        let mut entry = package_entry(id.clone(), &pkg, &purl(&pkg, None), "");
        entry["sourceInfo"] = json!(format!("base image {}@{}", base.reference, base.digest));
        entry["primaryPackagePurpose"] = json!("CONTAINER");
        packages.push(entry);
        relationships
            .push(json!({"spdxElementId": image_id, "relationshipType": "DESCENDANT_OF", "relatedSpdxElement": id}));
    }
    for (i, (path, pkg)) in inventory.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}-{}", id_part(&pkg.name));
        let locator = purl(pkg, inventory.distro.as_ref());
        packages.push(package_entry(id.clone(), pkg, &locator, path));
        relationships
            .push(json!({"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    let hex = subject.digest.trim_start_matches("sha256:");
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{} ({})", subject.name, subject.platform),
        "documentNamespace": format!("https://github.com/kiln-builder/kiln/spdx/{}/{hex}", id_part(image_name)),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": [image_id],
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_image_and_contains_each_package_with_a_purl() {
        let inv = ImageInventory {
            packages: vec![("app/node_modules/x/package.json".into(), Package::new(Ecosystem::Npm, "x", "1.0.0"))],
            distro: None,
        };
        let subject = Subject {
            name: "r.io/fn:1",
            digest: "sha256:aa",
            platform: "linux/amd64",
            created: "2026-01-01T00:00:00Z",
        };
        let base = BaseImage { reference: "r.io/debian:bookworm", digest: "sha256:bb" };
        let doc = document(&subject, &inv, &[base]);
        let packages = doc["packages"].as_array().unwrap();
        assert_eq!(packages.len(), 3);
        assert!(packages
            .iter()
            .all(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap().starts_with("pkg:")));
        assert_eq!(packages[2]["externalRefs"][0]["referenceLocator"], "pkg:npm/x@1.0.0");
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 3);
        assert_eq!(doc["documentNamespace"], "https://github.com/kiln-builder/kiln/spdx/r.io-fn/aa");
    }
}
