use paginate::{page, page_count};

#[test]
fn page_count_partial_last_page() {
    assert_eq!(page_count(11, 5), 3);
    assert_eq!(page_count(1, 5), 1);
}

#[test]
fn page_count_exact_multiple() {
    assert_eq!(page_count(10, 5), 2);
    assert_eq!(page_count(3, 1), 3);
}

#[test]
fn page_count_empty() {
    assert_eq!(page_count(0, 5), 0);
}

#[test]
fn pages() {
    let items: Vec<u32> = (1..=7).collect();
    assert_eq!(page(&items, 1, 3), &[1, 2, 3]);
    assert_eq!(page(&items, 3, 3), &[7]);
    assert!(page(&items, 4, 3).is_empty());
    assert!(page(&items, 0, 3).is_empty());
}
