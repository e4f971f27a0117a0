//! Which stages a build runs, read from the Dockerfile alone: the target
//! (named, or the last stage) and, transitively, the stages it is built
//! `FROM` and those its `COPY --from` and `RUN --mount=from=` name. Values
//! with variables are not followed (a lint needs no base images).

use crate::frontend::instructions::{Instruction, Kind};

/// One flag per stage of `stages`: whether a build of `target` runs it.
pub fn reachable(stages: &[&[Instruction]], target: Option<&str>) -> Vec<bool> {
    let aliases: Vec<Option<&str>> = stages
        .iter()
        .map(|s| match &s[0].kind {
            Kind::From { alias, .. } => alias.as_deref(),
            _ => None,
        })
        .collect();
    // A repeated name means its latest stage (BuildKit's lookup).
    let named = |name: &str, before: usize| {
        let lower = name.to_ascii_lowercase();
        (0..before).rev().find(|&i| aliases[i] == Some(lower.as_str()))
    };
    let mut reached = vec![false; stages.len()];
    let start = match target {
        Some(t) => named(t, stages.len()),
        None => stages.len().checked_sub(1),
    };
    let mut todo: Vec<usize> = start.into_iter().collect();
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut reached[i], true) {
            continue;
        }
        if let Kind::From { image, .. } = &stages[i][0].kind {
            todo.extend(named(image, i));
        }
        for source in stages[i][1..].iter().flat_map(sources) {
            let by_index = source.parse::<usize>().ok().filter(|&n| n < i);
            todo.extend(by_index.or_else(|| named(&source, stages.len())));
        }
    }
    reached
}

/// The stage names or indexes an instruction reads from.
fn sources(i: &Instruction) -> Vec<String> {
    let values: Vec<&str> = match &i.kind {
        Kind::Copy { from: Some(from), .. } => vec![from.as_str()],
        Kind::Run { mounts, .. } => mounts
            .iter()
            .flat_map(|m| m.split(','))
            .filter_map(|f| f.split_once('=').filter(|(k, _)| k.trim().eq_ignore_ascii_case("from")).map(|(_, v)| v))
            .collect(),
        _ => Vec::new(),
    };
    values.into_iter().filter(|v| !v.contains('$')).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_bases_copies_and_mounts_from_the_target() {
        let text = "FROM a AS one\nFROM b AS two\nFROM one AS three\nCOPY --from=1 / /\n\
                    FROM c AS four\nRUN --mount=from=three,target=/x true\nFROM d AS five\n";
        let df = crate::frontend::parse(text).unwrap();
        let starts: Vec<usize> = df
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.kind, Kind::From { .. }))
            .map(|(n, _)| n)
            .collect();
        let stages: Vec<&[Instruction]> = starts
            .iter()
            .enumerate()
            .map(|(k, s)| &df.instructions[*s..starts.get(k + 1).copied().unwrap_or(df.instructions.len())])
            .collect();
        assert_eq!(reachable(&stages, None), [false, false, false, false, true]);
        assert_eq!(reachable(&stages, Some("four")), [true, true, true, true, false]);
        assert_eq!(reachable(&stages, Some("nope")), [false; 5]);
    }
}
