//! The Dockerfile frontend: text → instructions (with line spans) → op
//! graph plus image config. It never does I/O; base-image configs come in
//! through [`BaseResolver`] after [`base_images`] has said which are needed.

pub mod diag;
mod flags;
pub mod gitref;
mod heredoc;
mod instructions;
mod lexer;
pub mod lint;
mod lower;
pub mod paths;
mod pattern;
pub(crate) mod remote;
pub mod shapes;
pub mod version;
pub mod words;

pub use diag::Diagnostic;
pub use instructions::{CommandForm, Instruction, Kind, KEYWORDS};
pub use lower::{
    base_images, lower, resolve_bases, source_date_epoch, with_resolved_epoch, BaseImageRef, BaseResolver,
    BuildOptions, EpochError, EpochSource, HistoryStep, Lowered, Platform, ResolvedImage, ResolvedImages,
    MAX_BASE_ROUNDS, MAX_LOWERED_BYTES, SOURCE_DATE_EPOCH,
};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character.
    pub escape: char,
    /// Parser directives.
    pub directives: Vec<(String, String)>,
    /// Instructions in order.
    pub instructions: Vec<Instruction>,
}

/// Most instructions a Dockerfile may hold by default (`kiln serve
/// --max-dockerfile-instructions`).
pub const MAX_INSTRUCTIONS: usize = 10_000;

/// Largest Dockerfile read from a build context, in bytes.
pub const MAX_DOCKERFILE_BYTES: u64 = 8 << 20;

/// Parses Dockerfile text (at most [`MAX_INSTRUCTIONS`] instructions).
pub fn parse(text: &str) -> Result<Dockerfile, Diagnostic> {
    parse_limited(text, MAX_INSTRUCTIONS)
}

/// Parses Dockerfile text holding at most `max_instructions` instructions.
pub fn parse_limited(text: &str, max_instructions: usize) -> Result<Dockerfile, Diagnostic> {
    if text.trim().is_empty() {
        return Err(Diagnostic::new(1, 1, "the Dockerfile cannot be empty", ""));
    }
    if let Some(at) = text.find('\0') {
        let line = text[..at].matches('\n').count() + 1;
        return Err(Diagnostic::new(line, 1, "the Dockerfile contains a NUL byte", ""));
    }
    let lexed = lexer::lex(text)?;
    if let Some(over) = lexed.lines.get(max_instructions) {
        let msg = format!("the Dockerfile has more than {max_instructions} instructions");
        return Err(Diagnostic::new(over.line, 1, msg, &over.first));
    }
    let instructions =
        lexed.lines.iter().map(|l| instructions::parse_line(l, lexed.escape)).collect::<Result<Vec<_>, _>>()?;
    if instructions.is_empty() {
        return Err(Diagnostic::new(1, 1, "file with no instructions", ""));
    }
    if let Some(i) = instructions.iter().find(|i| !matches!(i.kind, Kind::Arg(_))) {
        if !matches!(i.kind, Kind::From { .. }) {
            let word = i.text.split_whitespace().next().unwrap_or("");
            return Err(Diagnostic::new(
                i.line,
                1,
                format!("no build stage in current context: {word} before the first FROM"),
                &i.first,
            ));
        }
    } else {
        return Err(Diagnostic::new(1, 1, "dockerfile contains no stages to build", ""));
    }
    Ok(Dockerfile { escape: lexed.escape, directives: lexed.directives, instructions })
}

/// The instructions before the first one that does not parse (for the
/// checks BuildKit still reports when a later line is bad); `None` when
/// the text does not lex or the lines before the bad one hold no stage.
pub fn parse_prefix(text: &str, max_instructions: usize) -> Option<Dockerfile> {
    let lexed = lexer::lex(text).ok()?;
    let lines = lexed.lines.iter().take(max_instructions);
    let instructions: Vec<Instruction> = lines.map_while(|l| instructions::parse_line(l, lexed.escape).ok()).collect();
    let starts_with_from = instructions
        .iter()
        .find(|i| !matches!(i.kind, Kind::Arg(_)))
        .is_some_and(|i| matches!(i.kind, Kind::From { .. }));
    starts_with_from.then_some(Dockerfile { escape: lexed.escape, directives: lexed.directives, instructions })
}
