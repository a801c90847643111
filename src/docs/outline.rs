//! The structure of a Markdown file as byte ranges into its source, read with
//! pulldown-cmark's offset iterator: headings, and list items with their
//! checkbox, bold label and nested items. The plan-file readers build on this;
//! nothing here re-renders Markdown, so unchanged text stays byte-identical.

use std::ops::Range;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

#[derive(Debug, Clone)]
pub struct Heading {
    pub level: u8,
    pub text: String,
    /// The heading's own line(s).
    pub range: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Item {
    /// From the list marker to the end of the item's last line, without
    /// trailing blank lines.
    pub range: Range<usize>,
    /// `[ ]` / `[x]`: checked, and the range of the three characters.
    pub checkbox: Option<(bool, Range<usize>)>,
    /// The text of a bold run that opens the item (`**S1.1 – Title**`,
    /// `**Notes:**`), with the range of the whole `**…**`.
    pub label: Option<(String, Range<usize>)>,
    /// Plain text of the item's own content (not its nested items).
    pub text: String,
    /// Where the item's own content ends (where its nested list starts).
    pub own_end: usize,
    pub children: Vec<Item>,
}

#[derive(Debug, Clone, Default)]
pub struct Outline {
    pub headings: Vec<Heading>,
    /// Top-level list items, in order, with their nested items.
    pub items: Vec<Item>,
}

impl Outline {
    pub fn parse(text: &str) -> Outline {
        let mut out = Outline::default();
        // Open items, innermost last.
        let mut stack: Vec<Item> = Vec::new();
        let mut heading: Option<(u8, usize, String)> = None;
        // Depth of bold runs and whether we are inside the opening bold label.
        let mut strong_depth = 0usize;
        let mut label: Option<(String, usize)> = None;
        let parser = Parser::new_ext(
            text,
            Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH,
        );
        for (event, range) in parser.into_offset_iter() {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    heading = Some((heading_level(level), range.start, String::new()));
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some((level, start, text_)) = heading.take() {
                        out.headings.push(Heading {
                            level,
                            text: text_.trim().to_string(),
                            range: start..range.end,
                        });
                    }
                }
                Event::Start(Tag::Item) => {
                    stack.push(Item {
                        range: range.clone(),
                        own_end: range.end,
                        ..Item::default()
                    });
                }
                Event::End(TagEnd::Item) => {
                    let mut item = stack.pop().expect("balanced items");
                    item.range.end = trim_trailing_blank_lines(text, item.range.clone());
                    item.own_end = item.own_end.min(item.range.end);
                    item.text = item.text.trim().to_string();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(item),
                        None => out.items.push(item),
                    }
                }
                Event::Start(Tag::List(_)) => {
                    if let Some(parent) = stack.last_mut()
                        && parent.children.is_empty()
                        && parent.own_end > range.start
                    {
                        parent.own_end = line_start(text, range.start);
                    }
                }
                Event::TaskListMarker(checked) => {
                    if let Some(item) = stack.last_mut() {
                        item.checkbox = Some((checked, range.clone()));
                    }
                }
                Event::Start(Tag::Strong) => {
                    if let Some(item) = stack.last_mut()
                        && strong_depth == 0
                        && item.label.is_none()
                        && item.children.is_empty()
                        && item.text.trim().is_empty()
                    {
                        label = Some((String::new(), range.start));
                    }
                    strong_depth += 1;
                }
                Event::End(TagEnd::Strong) => {
                    strong_depth = strong_depth.saturating_sub(1);
                    if strong_depth == 0
                        && let (Some((l, start)), Some(item)) = (label.take(), stack.last_mut())
                    {
                        item.label = Some((l.trim().to_string(), start..range.end));
                    }
                }
                Event::Text(t) | Event::Code(t) => {
                    if let Some((_, level_text)) = heading.as_mut().map(|h| (h.0, &mut h.2)) {
                        level_text.push_str(&t);
                    } else if let Some((l, _)) = label.as_mut() {
                        l.push_str(&t);
                    } else if let Some(item) = stack.last_mut()
                        && item.children.is_empty()
                    {
                        item.text.push_str(&t);
                    }
                }
                Event::SoftBreak | Event::HardBreak => {
                    if let Some(item) = stack.last_mut()
                        && item.children.is_empty()
                        && label.is_none()
                    {
                        item.text.push(' ');
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// The end of `range` with trailing blank lines dropped, at the end of a line
/// (after its newline when there is one).
fn trim_trailing_blank_lines(text: &str, range: Range<usize>) -> usize {
    let slice = &text[range.clone()];
    let trimmed = slice.trim_end_matches([' ', '\t', '\r', '\n']);
    let end = range.start + trimmed.len();
    line_end(text, end)
}

/// The offset of the start of the line holding `pos`.
pub fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// The offset just after the newline ending the line holding `pos` (or the
/// end of the text).
pub fn line_end(text: &str, pos: usize) -> usize {
    if pos > 0 && text.as_bytes().get(pos - 1) == Some(&b'\n') {
        return pos;
    }
    text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1)
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// The whitespace that indents the line holding `pos`.
pub fn indent_at(text: &str, pos: usize) -> &str {
    let start = line_start(text, pos);
    let line = &text[start..];
    let n = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_with_checkbox_label_and_children() {
        let text = "# T\n\n- [x] **S1.1 – Title**\n  - **Notes:**\n    - one\n\n- plain item\n";
        let o = Outline::parse(text);
        assert_eq!(o.headings[0].text, "T");
        assert_eq!(o.items.len(), 2);
        let t = &o.items[0];
        assert!(t.checkbox.as_ref().unwrap().0);
        assert_eq!(&text[t.checkbox.as_ref().unwrap().1.clone()], "[x]");
        assert_eq!(t.label.as_ref().unwrap().0, "S1.1 – Title");
        assert_eq!(t.children[0].label.as_ref().unwrap().0, "Notes:");
        assert_eq!(t.children[0].children[0].text, "one");
        assert_eq!(
            &text[t.range.clone()],
            "- [x] **S1.1 – Title**\n  - **Notes:**\n    - one\n"
        );
        assert_eq!(o.items[1].text, "plain item");
        assert!(o.items[1].label.is_none());
    }

    #[test]
    fn a_label_must_open_the_item() {
        let o = Outline::parse("- see **S1.1 – x**\n");
        assert!(o.items[0].label.is_none());
        // Bold text after a nested list is not the item's label either.
        let o = Outline::parse("- [ ] **S1.1 – T**\n  - - a\n\n    **Foo:** b\n");
        assert_eq!(o.items[0].label.as_ref().unwrap().0, "S1.1 – T");
        assert!(o.items[0].children[0].label.is_none());
    }
}
