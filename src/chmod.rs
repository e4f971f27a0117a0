//! `COPY`/`ADD --chmod` values as BuildKit reads them: an octal mode up
//! to `07777`, or (Dockerfile 1.14) a symbolic mode in chmod(1)'s grammar
//! (`u=rwX,go=rX`, `a+X`, `go-w`, `g=u-w`), applied with a umask of 0 to
//! each copied file's own mode — BSD `setmode(3)` semantics, which
//! BuildKit's copier uses: `X` looks at the mode before the change, `=`
//! clears the named classes (every class and the set-id bits when none is
//! named), `s` and `t` are ignored for `o` alone.

use serde::{Deserialize, Serialize};

/// A `--chmod` value as it goes into the op graph: octal modes serialise
/// as the number they always did, so their cache keys are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Chmod {
    /// `0755`.
    Octal(u32),
    /// `u=rwX,go=rX`.
    Symbolic(String),
}

/// A `--chmod` value BuildKit refuses (its messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// A numeric value that is not octal or exceeds `07777`.
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    NotOctal(String),
    /// A symbolic value outside chmod(1)'s grammar.
    #[error("invalid chmod parameter: '{0}': invalid syntax")]
    Syntax(String),
}

const SET_UID: u32 = 0o4000;
const SET_GID: u32 = 0o2000;
const STICKY: u32 = 0o1000;
const USER: u32 = 0o700;
const GROUP: u32 = 0o070;
const OTHER: u32 = 0o007;
const READ: u32 = 0o444;
const WRITE: u32 = 0o222;
const EXEC: u32 = 0o111;
/// Every bit `=` clears when no class is named.
const STANDARD: u32 = SET_UID | SET_GID | USER | GROUP | OTHER;

impl Chmod {
    /// Parses and checks a value.
    pub fn parse(value: &str) -> Result<Self, ChmodError> {
        if value.starts_with(|c: char| c.is_ascii_digit()) {
            return match u32::from_str_radix(value, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(Chmod::Octal(mode)),
                _ => Err(ChmodError::NotOctal(value.to_string())),
            };
        }
        ModeChange::symbolic(value)?;
        Ok(Chmod::Symbolic(value.to_string()))
    }

    /// The change to apply to each copied file.
    pub fn change(&self) -> Result<ModeChange, ChmodError> {
        match self {
            Chmod::Octal(mode) => Ok(ModeChange::Set(*mode)),
            Chmod::Symbolic(text) => ModeChange::symbolic(text),
        }
    }
}

impl std::fmt::Display for Chmod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chmod::Octal(mode) => write!(f, "{mode:o}"),
            Chmod::Symbolic(text) => f.write_str(text),
        }
    }
}

/// A compiled `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeChange {
    /// Every file gets this mode.
    Set(u32),
    /// Each file's mode changes by these steps, in order.
    Steps(Vec<Step>),
}

/// One step of a symbolic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Set these bits.
    Add(u32),
    /// Clear these bits.
    Remove(u32),
    /// Set these bits when the file is a directory or was executable.
    AddIfExecutable(u32),
    /// Copy one class's bits (`u`, `g` or `o`) onto the classes in `to`.
    Copy {
        /// The class copied from.
        from: char,
        /// `+`, `-` or `=`.
        op: char,
        /// Which classes receive it (user, group, other).
        to: [bool; 3],
        /// Bits that may change.
        mask: u32,
    },
}

impl ModeChange {
    fn symbolic(text: &str) -> Result<Self, ChmodError> {
        compile(text).map(ModeChange::Steps).ok_or_else(|| ChmodError::Syntax(text.to_string()))
    }

    /// The mode of a file whose mode is `mode` (permission bits) after the
    /// change.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let steps = match self {
            ModeChange::Set(m) => return *m,
            ModeChange::Steps(steps) => steps,
        };
        let original = mode & 0o7777;
        let mut new = original;
        for step in steps {
            match *step {
                Step::Add(bits) => new |= bits,
                Step::Remove(bits) => new &= !bits,
                Step::AddIfExecutable(bits) => {
                    if is_dir || original & EXEC != 0 {
                        new |= bits;
                    }
                }
                Step::Copy { from, op, to, mask } => new = copy_class(new, from, op, to, mask),
            }
        }
        new
    }
}

/// `u`, `g` or `o` copied onto the `to` classes.
fn copy_class(mode: u32, from: char, op: char, to: [bool; 3], mask: u32) -> u32 {
    let value = match from {
        'u' => (mode & USER) >> 6,
        'g' => (mode & GROUP) >> 3,
        _ => mode & OTHER,
    };
    let mut new = mode;
    for (class, shift) in [(0, 6), (1, 3), (2, 0)] {
        if !to[class] {
            continue;
        }
        if op != '+' {
            let clear = if op == '=' { 0o7 } else { value };
            new &= !((clear << shift) & mask);
        }
        if op != '-' {
            new |= (value << shift) & mask;
        }
    }
    new
}

/// Compiles clauses (`[ugoa]*([+-=]([rwxXst]*|[ugo]))+`, comma-separated)
/// into steps; `None` on a syntax error.
fn compile(text: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = text.as_bytes();
    loop {
        let mut who = 0u32;
        while let Some(&c) = rest.first() {
            who |= match c {
                b'a' => STANDARD,
                b'u' => SET_UID | USER,
                b'g' => SET_GID | GROUP,
                b'o' => OTHER,
                _ => break,
            };
            rest = &rest[1..];
        }
        loop {
            let (&op, tail) = rest.split_first()?;
            if !matches!(op, b'+' | b'-' | b'=') {
                return None;
            }
            rest = tail;
            rest = action(op as char, &mut who, rest, &mut steps);
            match rest.first() {
                None => return Some(steps),
                Some(b',') => {
                    rest = &rest[1..];
                    break;
                }
                Some(_) => {}
            }
        }
    }
}

/// One `op perms` action; returns what follows it.
fn action<'a>(op: char, who: &mut u32, mut rest: &'a [u8], steps: &mut Vec<Step>) -> &'a [u8] {
    let (mut perm, mut perm_x, mut equal_done) = (0u32, 0u32, false);
    *who &= !STICKY;
    loop {
        match rest.first().copied() {
            Some(b'r') => perm |= READ,
            Some(b'w') => perm |= WRITE,
            Some(b'x') => perm |= EXEC,
            Some(b'X') if op == '-' => perm |= EXEC,
            Some(b'X') => perm_x = EXEC,
            Some(b's') if *who == 0 || *who & !OTHER != 0 => perm |= SET_UID | SET_GID,
            Some(b't') if *who == 0 || *who & !OTHER != 0 => {
                *who |= STICKY;
                perm |= STICKY;
            }
            Some(b's' | b't') => {}
            Some(c @ (b'u' | b'g' | b'o')) => {
                if perm != 0 {
                    push(steps, op, *who, perm);
                    perm = 0;
                }
                equal_done |= op == '=';
                if perm_x != 0 {
                    steps.push(Step::AddIfExecutable(masked(*who, perm_x)));
                    perm_x = 0;
                }
                steps.push(copy_step(c as char, op, *who));
            }
            _ => {
                if perm != 0 || (op == '=' && !equal_done) {
                    push(steps, op, *who, perm);
                }
                if perm_x != 0 {
                    steps.push(Step::AddIfExecutable(masked(*who, perm_x)));
                }
                return rest;
            }
        }
        rest = &rest[1..];
    }
}

/// `perm` limited to the named classes (every bit when none is named).
fn masked(who: u32, perm: u32) -> u32 {
    if who == 0 {
        perm
    } else {
        who & perm
    }
}

fn push(steps: &mut Vec<Step>, op: char, who: u32, perm: u32) {
    match op {
        '=' => {
            steps.push(Step::Remove(if who == 0 { STANDARD } else { who }));
            steps.push(Step::Add(masked(who, perm)));
        }
        '+' => steps.push(Step::Add(masked(who, perm))),
        _ => steps.push(Step::Remove(masked(who, perm))),
    }
}

fn copy_step(from: char, op: char, who: u32) -> Step {
    if who == 0 {
        return Step::Copy { from, op, to: [true; 3], mask: 0o7777 };
    }
    let to = [who & 0o400 != 0, who & 0o040 != 0, who & 0o004 != 0];
    Step::Copy { from, op, to, mask: 0o7777 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(spec: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(spec).unwrap().change().unwrap().apply(mode, is_dir)
    }

    #[test]
    fn symbolic_modes_change_each_file_s_own_mode() {
        // testChmodNonOctal's cases: a 0666 file and a 0124 directory.
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("u=rw,g=r,o=r", 0o666, false), 0o644);
        assert_eq!(apply("a+X", 0o666, false), 0o666, "X needs a directory or an executable file");
        assert_eq!(apply("go-w", 0o124, true), 0o104);
        assert_eq!(apply("u+rw,g+r,o-x,o+w", 0o124, true), 0o766);
        assert_eq!(apply("a+X", 0o124, true), 0o135);
        assert_eq!(apply("u=rwX,go=rX", 0o640, false), 0o644);
        assert_eq!(apply("u=rwX,go=rX", 0o700, false), 0o755, "X sees the mode before the change");
        assert_eq!(apply("+x", 0o644, false), 0o755, "no class named: every class");
        assert_eq!(apply("g=u-w", 0o750, false), 0o750 & !0o070 | 0o050);
        assert_eq!(apply("go=", 0o4777, false), 0o4700);
        assert_eq!(apply("=r", 0o6755, false), 0o444, "= clears the set-id bits too");
        assert_eq!(apply("u+s,o+t", 0o755, false), 0o4755, "t is ignored for o alone");
        assert_eq!(apply("a+t", 0o755, true), 0o1755);
    }

    #[test]
    fn octal_values_keep_their_graph_form_and_errors_read_like_buildkit() {
        assert_eq!(Chmod::parse("0755"), Ok(Chmod::Octal(0o755)));
        assert_eq!(serde_json::to_string(&Chmod::Octal(0o755)).unwrap(), "493", "the number as before");
        assert_eq!(serde_json::to_string(&Chmod::Symbolic("a+X".into())).unwrap(), "\"a+X\"");
        let err = |v: &str| Chmod::parse(v).unwrap_err().to_string();
        assert_eq!(err("64a"), "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777");
        assert_eq!(err("10000"), "invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777");
        assert_eq!(err("u=z"), "invalid chmod parameter: 'u=z': invalid syntax");
        for bad in ["", "u", "rw", "u=rw,", "a+r,,g-w", "q+x"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?}");
        }
    }
}
