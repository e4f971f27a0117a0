//! Go's `fmt` renderings that BuildKit writes into image history
//! (`CMD %q`, `SHELL %v`, `HEALTHCHECK %q` of its config struct): the same
//! text, so `docker history` shows what it shows for BuildKit's images.

use crate::graph::HealthConfig;

/// `%q` of one string (`strconv.Quote`).
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_escaped(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// `\a`, `\n`, … and `\xNN` for control characters; the rest as is.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push(c),
    }
}

/// `%q` of a `[]string`: `["a" "b"]`.
pub fn quote_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" "))
}

/// `%v` of a `[]string`: `[a b]`.
pub fn list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// `%q` of an int (`strconv.QuoteRune`): `'\x03'`, `'A'`.
fn quote_rune(n: i64) -> String {
    let Some(c) = u32::try_from(n).ok().and_then(char::from_u32) else { return "'\u{fffd}'".into() };
    let mut out = String::from("'");
    match c {
        '\'' => out.push_str("\\'"),
        '\\' => out.push_str("\\\\"),
        c => push_escaped(&mut out, c),
    }
    out.push('\'');
    out
}

/// Go's `time.Duration.String()` of `ns` nanoseconds (`5m0s`, `1.5s`,
/// `100ms`, `0s`).
pub fn duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let n = ns.unsigned_abs();
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let (hours, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let seconds = fraction(rest, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `n / unit` with the fraction's trailing zeros dropped.
fn fraction(n: u64, unit: u64) -> String {
    let (whole, part) = (n / unit, n % unit);
    if part == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{part:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// `HEALTHCHECK %q` of BuildKit's healthcheck config (a pointer to a
/// struct: `&{["CMD-SHELL" "curl …"] "5m0s" "3s" "0s" "0s" '\x03'}`).
pub fn healthcheck(hc: &HealthConfig) -> String {
    let test = quote_list(hc.test.as_deref().unwrap_or_default());
    let d = |v: Option<i64>| quote(&duration(v.unwrap_or(0)));
    format!(
        "HEALTHCHECK &{{{test} {} {} {} {} {}}}",
        d(hc.interval),
        d(hc.timeout),
        d(hc.start_period),
        d(hc.start_interval),
        quote_rune(hc.retries.unwrap_or(0))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_like_go_fmt() {
        assert_eq!(
            quote_list(&owned(&["/bin/sh", "-c", "echo \"hi\"\tthere"])),
            r#"["/bin/sh" "-c" "echo \"hi\"\tthere"]"#
        );
        assert_eq!(list(&owned(&["/bin/bash", "-c"])), "[/bin/bash -c]");
        assert_eq!(quote_rune(3), "'\\x03'");
        assert_eq!(quote_rune(0), "'\\x00'");
        assert_eq!(quote_rune(65), "'A'");
        let cases = [(0, "0s"), (300_000_000_000, "5m0s"), (3_000_000_000, "3s"), (1_500_000_000, "1.5s")];
        for (ns, text) in
            cases.into_iter().chain([(100_000_000, "100ms"), (3_600_000_000_000, "1h0m0s"), (1_500, "1.5µs")])
        {
            assert_eq!(duration(ns), text, "{ns}");
        }
        let hc = HealthConfig {
            test: Some(owned(&["CMD-SHELL", "curl -f http://localhost/"])),
            interval: Some(300_000_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(3),
            ..Default::default()
        };
        assert_eq!(
            healthcheck(&hc),
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/"] "5m0s" "3s" "0s" "0s" '\x03'}"#
        );
    }
}
