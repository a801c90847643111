//! `research.md`: sections under `##` headings, linked by anchor
//! (`research.md#local-llm-runtimes`). Agents append dated findings; nothing
//! is rewritten.

use std::ops::Range;
use std::path::Path;

use super::outline::Outline;
use super::plans::{MetaField, note_line, parse_metadata, touch_metadata};
use super::{Edit, anchor, end_of_content, newline_of, splice};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub anchor: String,
    pub range: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct ResearchDoc {
    pub text: String,
    pub metadata: Vec<MetaField>,
    pub sections: Vec<Section>,
}

impl ResearchDoc {
    pub fn parse(text: &str, _path: &Path) -> Result<ResearchDoc> {
        let outline = Outline::parse(text);
        let tops: Vec<_> = outline.headings.iter().filter(|h| h.level <= 2).collect();
        let mut doc = ResearchDoc {
            text: text.to_string(),
            metadata: Vec::new(),
            sections: Vec::new(),
        };
        for (i, h) in tops.iter().enumerate().filter(|(_, h)| h.level == 2) {
            let end = tops.get(i + 1).map_or(text.len(), |n| n.range.start);
            if h.text.eq_ignore_ascii_case("metadata") {
                let items: Vec<_> = outline
                    .items
                    .iter()
                    .filter(|it| it.range.start >= h.range.end && it.range.start < end)
                    .collect();
                doc.metadata = parse_metadata(text, &items);
            }
            doc.sections.push(Section {
                title: h.text.clone(),
                anchor: anchor(&h.text),
                range: h.range.start..end,
            });
        }
        Ok(doc)
    }

    /// A section by title (any case) or by anchor (`local-llm-runtimes`).
    pub fn section(&self, name: &str) -> Option<&Section> {
        let want = name.trim().trim_start_matches('#');
        self.sections.iter().find(|s| {
            s.title.eq_ignore_ascii_case(want) || s.anchor == want || s.anchor == anchor(want)
        })
    }

    /// Appends a dated finding to a section, creating the section at the end
    /// of the file when it does not exist. Returns the text and the anchor.
    pub fn add(&self, section: &str, finding: &str, stamp: &str, agent: &str) -> (String, String) {
        let nl = newline_of(&self.text);
        let line = format!("- {}", note_line(stamp, agent, finding));
        match self.section(section) {
            Some(s) => {
                let at = end_of_content(&self.text, s.range.clone());
                let before = &self.text[..at];
                let lead = if before.ends_with('\n') { "" } else { nl };
                // Right under an earlier finding: same list; after prose: a blank line first.
                let last = before
                    .trim_end()
                    .rsplit('\n')
                    .next()
                    .unwrap_or("")
                    .trim_start();
                let gap = if last.starts_with("- ") { "" } else { nl };
                let text = splice(
                    &self.text,
                    vec![Edit::insert(at, format!("{lead}{gap}{line}{nl}"))],
                );
                (text, s.anchor.clone())
            }
            None => {
                let title = section.trim().trim_start_matches('#').trim();
                let body = self.text.trim_end_matches(['\n', '\r', ' ', '\t']);
                let sep = if body.is_empty() {
                    String::new()
                } else {
                    format!("{nl}{nl}")
                };
                let text = format!("{body}{sep}## {title}{nl}{nl}{line}{nl}");
                (text, anchor(title))
            }
        }
    }

    pub fn touch_metadata(&self, stamp: &str, agent: &str) -> String {
        touch_metadata(&self.text, &self.metadata, stamp, agent)
    }
}
