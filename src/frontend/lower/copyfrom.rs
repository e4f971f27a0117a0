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

/// Every stage's name (`None` for unnamed stages), looked up by name.
#[derive(Debug, Default)]
pub struct StageNames {
    names: Vec<Option<String>>,
    index: std::collections::HashMap<String, usize>,
}

impl StageNames {
    /// The names in stage order; a repeated name means its last stage, as
    /// in BuildKit (so a `--from` naming it from an earlier stage fails).
    pub fn new(names: Vec<Option<String>>) -> Self {
        let mut index = std::collections::HashMap::new();
        for (i, n) in names.iter().enumerate() {
            if let Some(n) = n {
                index.insert(n.clone(), i);
            }
        }
        Self { names, index }
    }

    /// The stage named `lower` (already lower-cased).
    pub fn position(&self, lower: &str) -> Option<usize> {
        self.index.get(lower).copied()
    }

    /// How many stages there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The names that are set.
    pub fn named(&self) -> impl Iterator<Item = &str> {
        self.names.iter().filter_map(|n| n.as_deref())
    }
}

/// A `--from` that names no usable stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromError {
    /// `--from=`.
    #[error("COPY --from needs a stage name, index or image")]
    Empty,
    /// A stage after the current one, in a stage the build runs
    /// (BuildKit's message: the stage named, then the current one).
    #[error("cannot copy from stage {0:?}, it needs to be defined before current stage {1:?}")]
    NotBefore(String, String),
    /// Stages that read from each other through `--from`.
    #[error("circular dependency detected on stage: {0}")]
    Circular(String),
    /// An index past the last stage.
    #[error("COPY --from={0}: there is no stage with that index")]
    NoSuchIndex(String),
    /// A stage the lowering did not build (a kiln bug if it happens).
    #[error("stage {0:?} was not built")]
    NotBuilt(String),
    /// An image the base resolution did not resolve.
    #[error("image {0} for COPY --from was not resolved")]
    NotResolved(String),
}

/// Classifies `value`: a stage (earlier or not: BuildKit refuses a later
/// one only when it builds the stage that names it, and a cycle always),
/// or an image.
pub fn classify(value: &str, stages: &StageNames) -> Result<FromRef, FromError> {
    if value.is_empty() {
        return Err(FromError::Empty);
    }
    let target = match value.parse::<usize>() {
        Ok(n) => Some(n),
        Err(_) => stages.position(&value.to_ascii_lowercase()),
    };
    match target {
        Some(j) if j < stages.len() => Ok(FromRef::Stage(j)),
        Some(_) => Err(FromError::NoSuchIndex(value.to_string())),
        None => Ok(FromRef::Image(value.to_string())),
    }
}

/// The first stage (in order) from which `--from` edges lead into a cycle,
/// as BuildKit checks before building anything. `edges[i]` are the stages
/// stage `i` reads from.
pub fn find_cycle(edges: &[Vec<usize>]) -> Option<usize> {
    let mut visited = vec![false; edges.len()];
    let mut on_path = vec![false; edges.len()];
    (0..edges.len()).find(|&start| !visited[start] && reaches_cycle(start, edges, &mut visited, &mut on_path))
}

fn reaches_cycle(i: usize, edges: &[Vec<usize>], visited: &mut [bool], on_path: &mut [bool]) -> bool {
    visited[i] = true;
    on_path[i] = true;
    for &dep in &edges[i] {
        if on_path[dep] || (!visited[dep] && reaches_cycle(dep, edges, visited, on_path)) {
            return true;
        }
    }
    on_path[i] = false;
    false
}

/// Images per build checked for a stage-name typo; the check compares
/// with every stage name, so it is bounded for Dockerfiles with many.
pub const MAX_HINTED_IMAGES: usize = 64;

/// A bare `--from` name (no registry, tag or digest) within typo distance
/// of a stage name is read as an image, as BuildKit does, but deserves a
/// hint naming the stage.
pub fn stage_typo_hint(image: &str, stages: &StageNames) -> Option<String> {
    if image.contains(['/', ':', '@', '.']) {
        return None;
    }
    let stage = crate::frontend::diag::closest(image, stages.named())?;
    Some(format!("no stage is named {image:?}, so --from reads it as an image; did you mean the stage {stage:?}?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_indices_and_images() {
        let aliases = StageNames::new(vec![Some("build".to_string()), None, Some("ship".to_string())]);
        assert_eq!(classify("Build", &aliases), Ok(FromRef::Stage(0)));
        assert_eq!(classify("1", &aliases), Ok(FromRef::Stage(1)));
        assert_eq!(classify("ship", &aliases), Ok(FromRef::Stage(2)));
        assert_eq!(classify("7", &aliases), Err(FromError::NoSuchIndex("7".into())));
        assert_eq!(find_cycle(&[vec![], vec![0], vec![1]]), None);
        assert_eq!(find_cycle(&[vec![0]]), Some(0));
        assert_eq!(find_cycle(&[vec![2], vec![0], vec![1]]), Some(0));
        assert_eq!(find_cycle(&[vec![], vec![2], vec![1]]), Some(1));
        assert_eq!(
            classify("ghcr.io/openfaas/of-watchdog:0.10.7", &aliases),
            Ok(FromRef::Image("ghcr.io/openfaas/of-watchdog:0.10.7".into()))
        );
    }

    #[test]
    fn typo_hints_name_the_stage() {
        let names = |n: &[&str]| StageNames::new(n.iter().map(|s| Some(s.to_string())).collect());
        let hint = stage_typo_hint("buidl", &names(&["build", "ship"])).unwrap();
        assert!(hint.contains("did you mean the stage \"build\""), "{hint}");
        assert_eq!(stage_typo_hint("alpine", &names(&["build"])), None);
        assert_eq!(stage_typo_hint("bulid:1", &names(&["build"])), None, "a tag makes it an image");
    }
}
