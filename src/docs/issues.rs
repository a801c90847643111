//! `issues.md`: entries headed `### KM-001: Title` with fields (Status,
//! Linked Task, Created, Description, Notes). Entries are never removed:
//! closing one sets its status and appends a dated note.

use std::ops::Range;
use std::path::Path;

use super::outline::{Outline, indent_at, line_end, line_of};
use super::plans::{MetaField, note_line, parse_metadata, touch_metadata};
use super::{Edit, anchor, doc_error, end_of_content, newline_of, splice};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Issue {
    /// `KM-001`.
    pub id: String,
    pub number: u32,
    pub title: String,
    /// The heading's anchor, for links: `km-001-title`.
    pub anchor: String,
    pub level: u8,
    pub section: Range<usize>,
    pub status: Option<(String, Range<usize>)>,
    pub linked_task: Option<String>,
    /// The Notes field: where its items end, and their indentation.
    pub notes_end: Option<(usize, String)>,
    /// Where the entry's last field ends.
    pub fields_end: Option<(usize, String)>,
    pub line: usize,
}

impl Issue {
    pub fn is_open(&self) -> bool {
        !self.status.as_ref().is_some_and(|(s, _)| {
            matches!(
                s.to_lowercase().as_str(),
                "closed" | "resolved" | "done" | "wontfix"
            )
        })
    }

    /// Whether the entry names `task` (`S1.2`) as its linked task.
    pub fn links(&self, task: &str) -> bool {
        self.linked_task.as_deref().is_some_and(|l| {
            l.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '/'))
                .any(|w| w == task)
        })
    }
}

#[derive(Debug, Clone)]
pub struct IssuesDoc {
    pub text: String,
    pub metadata: Vec<MetaField>,
    pub issues: Vec<Issue>,
    /// Where new entries go: the end of an "Open Issues" section if there is
    /// one, else the end of the file.
    open_section_end: Option<usize>,
}

/// `KM-001: Title` → (1, `KM-001`, `Title`).
fn split_issue_heading(text: &str) -> Option<(u32, String, String)> {
    let rest = text.strip_prefix("KM-")?;
    let n_len = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number: u32 = rest[..n_len].parse().ok()?;
    let tail = rest[n_len..].trim_start();
    let title = tail
        .strip_prefix([':', '–', '—', '-'])
        .unwrap_or(tail)
        .trim();
    Some((number, format!("KM-{}", &rest[..n_len]), title.to_string()))
}

impl IssuesDoc {
    pub fn parse(text: &str, path: &Path) -> Result<IssuesDoc> {
        let outline = Outline::parse(text);
        let mut doc = IssuesDoc {
            text: text.to_string(),
            metadata: Vec::new(),
            issues: Vec::new(),
            open_section_end: None,
        };
        let hs = &outline.headings;
        for (i, h) in hs.iter().enumerate() {
            let end = hs[i + 1..]
                .iter()
                .find(|n| n.level <= h.level)
                .map_or(text.len(), |n| n.range.start);
            let items: Vec<_> = outline
                .items
                .iter()
                .filter(|it| it.range.start >= h.range.end && it.range.start < end)
                .collect();
            let lower = h.text.to_lowercase();
            if lower == "metadata" {
                doc.metadata = parse_metadata(text, &items);
                continue;
            }
            if lower.starts_with("open issues") {
                doc.open_section_end = Some(end);
                continue;
            }
            let Some((number, id, title)) = split_issue_heading(&h.text) else {
                continue;
            };
            if let Some(other) = doc.issues.iter().find(|x| x.number == number) {
                return Err(doc_error(
                    path,
                    text,
                    h.range.start,
                    format!(
                        "{id} is used twice (first at line {}); give this entry a new id",
                        other.line
                    ),
                ));
            }
            // Fields are the entry's own items, up to the next heading of any level.
            let field_end = hs[i + 1..].first().map_or(end, |n| n.range.start.min(end));
            let mut issue = Issue {
                anchor: anchor(&h.text),
                id,
                number,
                title,
                level: h.level,
                section: h.range.start..end,
                status: None,
                linked_task: None,
                notes_end: None,
                fields_end: None,
                line: line_of(text, h.range.start),
            };
            for f in parse_metadata(
                text,
                &items
                    .iter()
                    .copied()
                    .filter(|it| it.range.start < field_end)
                    .collect::<Vec<_>>(),
            ) {
                match f.name.to_lowercase().as_str() {
                    "status" => issue.status = Some((f.value.clone(), f.value_range.clone())),
                    "linked task" | "task" => issue.linked_task = Some(f.value.clone()),
                    _ => {}
                }
            }
            for it in items.iter().filter(|it| it.range.start < field_end) {
                let indent = indent_at(text, it.range.start).to_string();
                issue.fields_end = Some((it.range.end, indent.clone()));
                if it
                    .label
                    .as_ref()
                    .is_some_and(|(l, _)| l.trim_end_matches(':').eq_ignore_ascii_case("notes"))
                {
                    let child = it
                        .children
                        .first()
                        .map(|c| indent_at(text, c.range.start).to_string())
                        .unwrap_or_else(|| format!("{indent}  "));
                    issue.notes_end = Some((it.range.end, child));
                }
            }
            doc.issues.push(issue);
        }
        Ok(doc)
    }

    pub fn issue(&self, id: &str) -> Option<&Issue> {
        let want = id.trim().to_uppercase();
        self.issues.iter().find(|i| i.id == want).or_else(|| {
            // KM-1 and KM-001 are the same entry.
            let n: u32 = want.strip_prefix("KM-")?.parse().ok()?;
            self.issues.iter().find(|i| i.number == n)
        })
    }

    /// The id the next entry gets: one more than the highest, three digits.
    pub fn next_id(&self) -> String {
        format!(
            "KM-{:03}",
            self.issues.iter().map(|i| i.number).max().unwrap_or(0) + 1
        )
    }

    /// Adds an open entry and returns the new text and the entry's id and anchor.
    pub fn open(
        &self,
        title: &str,
        task: Option<&str>,
        description: &str,
        stamp: &str,
        agent: &str,
    ) -> Result<(String, String, String)> {
        let title = title.trim();
        if title.is_empty() || title.contains('\n') {
            return Err(Error::InvalidInput(
                "an issue title must be one non-empty line".into(),
            ));
        }
        let nl = newline_of(&self.text);
        let id = self.next_id();
        let level = self.issues.last().map_or(
            if self.open_section_end.is_some() {
                3
            } else {
                2
            },
            |i| i.level,
        );
        let heading = format!("{id}: {title}");
        let mut block = format!(
            "{} {heading}{nl}{nl}- **Status:** `open`{nl}",
            "#".repeat(level as usize)
        );
        if let Some(t) = task {
            block.push_str(&format!("- **Linked Task:** {t}{nl}"));
        }
        block.push_str(&format!("- **Created:** `{stamp}` by `{agent}`{nl}"));
        let description = description.trim();
        if !description.is_empty() {
            block.push_str(&format!(
                "- **Description:** {}{nl}",
                description.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        let at = end_of_content(
            &self.text,
            0..self.open_section_end.unwrap_or(self.text.len()),
        );
        // A blank line before the entry; the text after it keeps its own spacing.
        let lead = if at == 0 {
            String::new()
        } else if self.text[..at].ends_with('\n') {
            nl.to_string()
        } else {
            format!("{nl}{nl}")
        };
        let text = splice(&self.text, vec![Edit::insert(at, format!("{lead}{block}"))]);
        Ok((text, id, anchor(&heading)))
    }

    /// Sets an entry's status and appends a dated note.
    pub fn set_status(
        &self,
        id: &str,
        status: &str,
        note: &str,
        stamp: &str,
        agent: &str,
    ) -> Result<String> {
        let issue = self
            .issue(id)
            .ok_or_else(|| Error::InvalidInput(format!("issues.md has no entry {id}")))?;
        let nl = newline_of(&self.text);
        let mut edits = Vec::new();
        let (fields_end, indent) = issue
            .fields_end
            .clone()
            .unwrap_or_else(|| (line_end(&self.text, issue.section.start), String::new()));
        match &issue.status {
            Some((_, r)) => edits.push(Edit::replace(r.clone(), format!("`{status}`"))),
            None => edits.push(Edit::insert(
                line_end(&self.text, issue.section.start),
                format!("{nl}{indent}- **Status:** `{status}`{nl}"),
            )),
        }
        let line = format!("- {}", note_line(stamp, agent, note));
        // After a last line with no newline (end of file), start a new line.
        let lead = |at: usize| {
            if at > 0 && !self.text[..at].ends_with('\n') {
                nl
            } else {
                ""
            }
        };
        match &issue.notes_end {
            Some((end, child)) => edits.push(Edit::insert(
                *end,
                format!("{}{child}{line}{nl}", lead(*end)),
            )),
            None => edits.push(Edit::insert(
                fields_end,
                format!(
                    "{}{indent}- **Notes:**{nl}{indent}  {line}{nl}",
                    lead(fields_end)
                ),
            )),
        }
        let text = splice(&self.text, edits);
        Ok(text)
    }

    pub fn touch_metadata(&self, stamp: &str, agent: &str) -> String {
        touch_metadata(&self.text, &self.metadata, stamp, agent)
    }
}

/// The skeleton of a new issues.md, when a project has none yet.
pub fn template(stamp: &str, agent: &str) -> String {
    format!(
        "# Issues\n\n> Blockers, bugs and open questions. Never delete an entry: close it with a dated note.\n\n---\n\n## Metadata\n\n- Created: `{stamp}`\n- Last Updated: `{stamp}`\n- Last Editor (Agent / CLI): `{agent}`\n\n---\n\n## Open Issues\n"
    )
}
