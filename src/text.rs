//! Text helpers every layer uses, with no dependency of their own: cutting
//! a text to a line, money as people read it, a usage bar.

/// The first `max` characters of `text`, with `mark` added when cut. The
/// one way llmclis cuts text: never inside a character.
pub fn head(text: &str, max: usize, mark: &str) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}{mark}", &text[..at]),
    }
}

/// `text` on one line, cut to `max` characters with an ellipsis.
pub fn short(text: &str, max: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    head(&one, max, "…")
}

/// `text` in `width` characters at most, the ellipsis included: for
/// columns and lines that must not wrap.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else if width == 0 {
        String::new()
    } else {
        head(text, width - 1, "…")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_characters_and_marks_only_what_it_cut() {
        assert_eq!(head("héllo wörld", 5, "…"), "héllo…");
        assert_eq!(head("héllo", 5, "…"), "héllo");
        assert_eq!(head("日本語のテキスト", 3, " […]"), "日本語 […]");
        assert_eq!(short("a\n  b\tc", 10), "a b c");
        assert_eq!(short("one two three", 7), "one two…");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abcd", 4), "abcd");
        assert_eq!(fit("abcd", 0), "");
    }
}
