//! Kubernetes quantities ("100m", "64Mi", "1e3"): one parser for validation,
//! the scheduler and the kubelet.

/// A Kubernetes quantity ("100m", "1.5Gi", "1e3") times 10^`exp10`,
/// e.g. exp10 = 3 gives CPU in millicores.
pub fn scaled(s: &str, exp10: i32) -> Option<f64> {
    let (sign, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let (binary_exp, decimal_exp) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        _ => (0, suffix.strip_prefix(['e', 'E'])?.parse::<i32>().ok()?),
    };
    // One decimal parse rounds once, so "100m" in millicores is exactly 100.
    let decimal = format!("{number}e{}", decimal_exp.checked_add(exp10)?);
    let value = decimal.parse::<f64>().ok()? * 2f64.powi(binary_exp);
    value.is_finite().then_some(sign * value)
}

/// A quantity as a plain number (bytes, cores).
pub fn parse(s: &str) -> Option<f64> {
    scaled(s, 0)
}
