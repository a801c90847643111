//! Text helpers every layer uses, with no dependency of their own: cutting
//! a text to a line, money as people read it, a usage bar.

/// `text` on one line, cut to `max` characters with an ellipsis.
pub fn short(text: &str, max: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        one.chars().take(max).collect::<String>() + "…"
    }
}

/// A sum of money that is never -0.0: `Iterator::sum` of no floats is
/// -0.0, which JSON then shows as `-0.0`.
pub fn sum_usd(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |a, b| a + b)
}

/// A cost as people read it: `$0` for nothing (local models), never
/// `$-0.0000`; four decimals otherwise.
pub fn money(usd: f64) -> String {
    if usd.abs() < 0.00005 {
        "$0".into()
    } else {
        format!("${usd:.4}")
    }
}

/// `[██████░░░░]`: `cells` wide, by used over total.
pub fn bar(used: u64, total: u64, cells: usize) -> String {
    let full = ((used as f64 / total.max(1) as f64) * cells as f64).round() as usize;
    let full = full.min(cells);
    format!("[{}{}]", "█".repeat(full), "░".repeat(cells - full))
}
