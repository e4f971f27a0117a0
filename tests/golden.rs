//! Golden Dockerfile cases: `fixtures/dockerfiles/<case>/Dockerfile` (plus
//! optional `build-args.json` and `target`) → `ast.txt` (parsed
//! instructions), `graph.json` (ops and inputs) and `config.json` (image
//! config and history), or `error.txt` with the exact diagnostic for a
//! negative case. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them.
//! Base images resolve to one fixed config, so cases need no registry.

use kiln::frontend::{self, BuildOptions, Platform, ResolvedImage};
use kiln::graph::ImageConfig;
use kiln_snapshotter::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn base_config() -> ImageConfig {
    let mut c = ImageConfig { os: "linux".into(), architecture: "amd64".into(), ..Default::default() };
    c.config.env = Some(vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]);
    c.config.cmd = Some(vec!["sh".into()]);
    c
}

fn render(dir: &Path) -> BTreeMap<&'static str, String> {
    let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let args: BTreeMap<String, String> =
        std::fs::read(dir.join("build-args.json")).map(|b| serde_json::from_slice(&b).unwrap()).unwrap_or_default();
    let target = std::fs::read_to_string(dir.join("target")).ok().map(|t| t.trim().to_string());
    let opts = BuildOptions {
        build_args: args,
        target,
        platform: Platform { os: "linux".into(), architecture: "amd64".into(), variant: None },
    };
    let mut out = BTreeMap::new();
    let result = frontend::parse(&text).and_then(|df| {
        out.insert(
            "ast.txt",
            format!("{:#?}\n", df.instructions.iter().map(|i| (&i.line, &i.kind)).collect::<Vec<_>>()),
        );
        let (resolver, _) = frontend::resolve_bases(&df, &opts, |b| {
            let digest = Digest::of(b.image.as_bytes());
            Ok::<_, frontend::Diagnostic>(ResolvedImage { reference: b.image.clone(), digest, config: base_config() })
        })?;
        frontend::lower(&df, &opts, &resolver)
    });
    match result {
        Ok(l) => {
            let graph: Vec<_> =
                l.definition.nodes.iter().map(|n| serde_json::json!({"op": n.op, "inputs": n.inputs})).collect();
            out.insert(
                "graph.json",
                serde_json::to_string_pretty(&serde_json::json!({"root": l.root, "nodes": graph})).unwrap() + "\n",
            );
            let history: Vec<_> =
                l.history.iter().map(|h| serde_json::json!({"entry": h.entry, "layer_node": h.node})).collect();
            let cfg = serde_json::json!({"config": l.config, "history": history});
            out.insert("config.json", serde_json::to_string_pretty(&cfg).unwrap() + "\n");
        }
        Err(d) => {
            out.remove("ast.txt");
            out.insert("error.txt", format!("{d}\n"));
        }
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfiles");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

#[test]
fn golden_dockerfiles() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 80, "expected the golden corpus, found {} cases", all.len());
    for dir in &all {
        let got = render(dir);
        for name in ["ast.txt", "graph.json", "config.json", "error.txt"] {
            let path = dir.join(name);
            match (got.get(name), update) {
                (Some(text), true) => std::fs::write(&path, text).unwrap(),
                (None, true) => {
                    let _ = std::fs::remove_file(&path);
                }
                (want, false) => {
                    let have = std::fs::read_to_string(&path).ok();
                    if have.as_deref() != want.map(String::as_str) {
                        failures.push(format!("{}/{name}", dir.file_name().unwrap().to_string_lossy()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "golden files differ (inspect, then UPDATE_GOLDEN=1 if intended): {failures:?}");
}
