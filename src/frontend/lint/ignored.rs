//! CopyIgnoredFile: a COPY or ADD (from the context) of a path that
//! `.dockerignore` excludes, in the stages the build runs. As in BuildKit,
//! nothing is judged when the ignore file has exceptions (`!`), and the
//! context root only when a pattern excludes every entry (`*`, `**`,
//! `**/*`).

use super::{warn, Warning};
use crate::dockerignore::DockerIgnore;
use crate::frontend::instructions::{Instruction, Kind};

/// The warnings for `stages` (the built ones flagged in `reached`).
pub fn copy_ignored(stages: &[&[Instruction]], reached: &[bool], ignore_text: &str) -> Vec<Warning> {
    let ignore = DockerIgnore::parse(ignore_text);
    let mut out = Vec::new();
    if ignore.has_exceptions() {
        return out;
    }
    let root_ignored = ignore_text.lines().map(str::trim).any(|l| matches!(l, "*" | "**" | "**/*"));
    for (stage, _) in stages.iter().zip(reached).filter(|(_, r)| **r) {
        for i in stage.iter() {
            let Kind::Copy { sources, from: None, add, .. } = &i.kind else { continue };
            let verb = if add.is_some() { "Add" } else { "Copy" };
            for src in sources.iter().filter(|s| !s.contains('$') && crate::frontend::remote::classify(s).is_none()) {
                let clean = clean(src);
                let ignored = match clean.as_str() {
                    "." | "/" => root_ignored,
                    path => ignore.is_excluded(path),
                };
                if ignored {
                    let msg = format!("Attempting to {verb} file {clean:?} that is excluded by .dockerignore");
                    warn(&mut out, "CopyIgnoredFile", i.line, msg);
                }
            }
        }
    }
    out
}

/// Go's `filepath.Clean` for the cases a COPY source takes, without the
/// leading `/` BuildKit strips.
fn clean(src: &str) -> String {
    let joined = crate::frontend::paths::join_path("/", src);
    match (joined.as_str(), src.starts_with('/')) {
        ("/", true) => "/".into(),
        ("/", false) => ".".into(),
        (path, _) => path.trim_start_matches('/').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BuildKit's testCopyIgnoredFiles and testCopyIgnoredFileContextRoot.
    #[test]
    fn copies_of_ignored_paths_are_reported() {
        let found = |dockerfile: &str, ignore: &str| -> Vec<(usize, String)> {
            let df = crate::frontend::parse(dockerfile).unwrap();
            let stages = super::super::stages(&df.instructions);
            let reached = super::super::reach::reachable(&stages, None);
            copy_ignored(&stages, &reached, ignore).into_iter().map(|w| (w.line, w.message)).collect()
        };
        let df = "\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n";
        assert_eq!(
            found(df, "\nDockerfile\n"),
            [
                (3, "Attempting to Copy file \"Dockerfile\" that is excluded by .dockerignore".to_string()),
                (4, "Attempting to Add file \"Dockerfile\" that is excluded by .dockerignore".to_string()),
            ]
        );
        assert!(found(df, "\nDockerfile\n!Dockerfile\n").is_empty(), "exceptions turn the rule off");
        let root = "\nFROM scratch\nCOPY . .\n";
        assert!(found(root, "\n.*\n").is_empty());
        assert_eq!(
            found(root, "\n*\n"),
            [(3, "Attempting to Copy file \".\" that is excluded by .dockerignore".to_string())]
        );
        assert!(found("FROM a AS x\nCOPY Dockerfile .\nFROM b\n", "Dockerfile\n").is_empty(), "stages not built");
    }
}
