//! Small text helpers.

/// Truncates `s` to at most `max` bytes on a character boundary and
/// appends `marker` when anything was cut.
pub fn truncate_with(s: &mut String, max: usize, marker: &str) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(marker);
}

/// An error and its chain of causes, `outer: cause: root`; HTTP clients
/// say what actually went wrong only in the causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_on_char_boundaries() {
        let mut s = "héllo".to_string();
        super::truncate_with(&mut s, 2, "…");
        assert_eq!(s, "h…");
        let mut short = "ok".to_string();
        super::truncate_with(&mut short, 5, "…");
        assert_eq!(short, "ok");
    }
}
