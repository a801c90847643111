use brackets::is_balanced;

#[test]
fn empty_and_plain_text() {
    assert!(is_balanced(""));
    assert!(is_balanced("no brackets here"));
}

#[test]
fn balanced() {
    assert!(is_balanced("()"));
    assert!(is_balanced("([]{})"));
    assert!(is_balanced("f(a[1], {b})"));
}

#[test]
fn wrong_kind() {
    assert!(!is_balanced("(]"));
    assert!(!is_balanced("{)"));
}

#[test]
fn wrong_nesting() {
    assert!(!is_balanced("([)]"));
}

#[test]
fn wrong_order_or_count() {
    assert!(!is_balanced(")("));
    assert!(!is_balanced("(("));
    assert!(!is_balanced("())"));
}
