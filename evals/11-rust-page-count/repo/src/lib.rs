//! Splitting a list of items into pages.

/// How many pages `total` items fill when a page holds `per_page` items.
///
/// The last page may be partly filled; no items means no pages.
/// Panics when `per_page` is 0.
pub fn page_count(total: usize, per_page: usize) -> usize {
    assert!(per_page > 0, "per_page must be positive");
    total / per_page + 1
}

/// The items on page `number` (pages are numbered from 1), or an empty slice
/// for page 0 and pages past the last one.
pub fn page<T>(items: &[T], number: usize, per_page: usize) -> &[T] {
    assert!(per_page > 0, "per_page must be positive");
    if number == 0 {
        return &[];
    }
    let start = (number - 1) * per_page;
    if start >= items.len() {
        return &[];
    }
    let end = (start + per_page).min(items.len());
    &items[start..end]
}
