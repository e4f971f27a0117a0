//! `COPY --from=<stage|index|image>`: a name or index of an earlier stage
//! (names compare case-insensitively), a later stage is an error, anything
//! else is an image reference.

/// What a `--from` value refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    /// An earlier stage, by index.
    Stage(usize),
    /// A registry image.
    Image(String),
}

/// Classifies `value` for the stage at `current`; `aliases` lists every
/// stage's name.
pub fn classify(value: &str, current: usize, aliases: &[Option<String>]) -> Result<FromRef, String> {
    if value.is_empty() {
        return Err("COPY --from needs a stage name, index or image".into());
    }
    let lower = value.to_ascii_lowercase();
    let target = match value.parse::<usize>() {
        Ok(n) => Some(n),
        Err(_) => aliases.iter().position(|a| a.as_deref() == Some(lower.as_str())),
    };
    match target {
        Some(j) if j < current => Ok(FromRef::Stage(j)),
        Some(j) if j < aliases.len() => {
            Err(format!("cannot copy from stage \"{value}\", it needs to be defined before current stage"))
        }
        Some(_) => Err(format!("COPY --from={value}: there is no stage with that index")),
        None => Ok(FromRef::Image(value.to_string())),
    }
}

/// A bare `--from` name (no registry, tag or digest) within typo distance
/// of a stage name is read as an image, as BuildKit does, but deserves a
/// hint naming the stage.
pub fn stage_typo_hint(image: &str, aliases: &[&str]) -> Option<String> {
    if image.contains(['/', ':', '@', '.']) {
        return None;
    }
    let stage = crate::frontend::diag::closest(image, aliases.iter().copied())?;
    Some(format!("no stage is named {image:?}, so --from reads it as an image; did you mean the stage {stage:?}?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_indices_and_images() {
        let aliases = vec![Some("build".to_string()), None, Some("ship".to_string())];
        assert_eq!(classify("Build", 2, &aliases), Ok(FromRef::Stage(0)));
        assert_eq!(classify("1", 2, &aliases), Ok(FromRef::Stage(1)));
        assert!(classify("ship", 1, &aliases).unwrap_err().contains("needs to be defined before"));
        assert!(classify("7", 2, &aliases).is_err());
        assert_eq!(
            classify("ghcr.io/openfaas/of-watchdog:0.10.7", 2, &aliases),
            Ok(FromRef::Image("ghcr.io/openfaas/of-watchdog:0.10.7".into()))
        );
    }

    #[test]
    fn typo_hints_name_the_stage() {
        let hint = stage_typo_hint("buidl", &["build", "ship"]).unwrap();
        assert!(hint.contains("did you mean the stage \"build\""), "{hint}");
        assert_eq!(stage_typo_hint("alpine", &["build"]), None);
        assert_eq!(stage_typo_hint("bulid:1", &["build"]), None, "a tag makes it an image");
    }
}
