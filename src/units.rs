//! Human-readable sizes for flags (`512MiB`, `20GiB`, `10G`, `1048576`).

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The number part is not a number.
    #[error("invalid size {0:?}: expected e.g. 512MiB or 20GiB")]
    Number(String),
    /// The unit is not one of K, M, G, T.
    #[error("invalid size unit in {0:?}: use K, M, G or T (powers of 1024)")]
    Unit(String),
}

/// Parses a byte size: a number with an optional `K`/`M`/`G`/`T` suffix
/// (powers of 1024, with or without `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let value: f64 = num.parse().map_err(|_| SizeError::Number(s.to_string()))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(SizeError::Unit(s.to_string())),
    };
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `1.5 GiB`-style text for a byte count.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, parse_size, SizeError};

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("lots"), Err(SizeError::Number("lots".into())));
        assert_eq!(parse_size("5PB"), Err(SizeError::Unit("5PB".into())));
    }
}
