//! Checking the brackets in a line of code.

/// Whether the brackets in `s` are balanced.
///
/// The brackets are `()`, `[]` and `{}`; every other character is ignored.
/// Balanced means that every opening bracket is closed later by the closing
/// bracket of the same kind, and that pairs nest properly: `"([]{})"` and
/// `"f(a[1], {b})"` are balanced; `"(]"`, `"([)]"`, `")("` and `"(("` are not.
/// The empty string is balanced.
pub fn is_balanced(s: &str) -> bool {
    todo!()
}
