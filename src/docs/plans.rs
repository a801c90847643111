//! `plans.md`: Metadata, High-Level Roadmap, stage sections with tasks
//! (`- [ ] **S1.1 – Title**` and their fields), and the Done log.
//!
//! Every edit returns the new text; callers re-parse before the next edit.

use std::ops::Range;
use std::path::Path;

use super::outline::{Item, Outline, indent_at, line_end, line_of, line_start};
use super::{Edit, doc_error, end_of_content, newline_of, splice};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct MetaField {
    pub name: String,
    pub value: String,
    /// The value's source, without the newline (and without a trailing
    /// two-space line break).
    pub value_range: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct RoadmapEntry {
    pub number: u32,
    pub title: String,
    pub checkbox: Option<(bool, Range<usize>)>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Field {
    /// Without the colon: `Description`, `Last Updated`, `Notes`.
    pub name: String,
    /// Plain text after the label, on the field's own lines.
    pub value: String,
    /// From just after `**Name:**` to the end of the field's own content.
    pub value_range: Range<usize>,
    pub item: Range<usize>,
    /// Nested items: their plain text and source range.
    pub children: Vec<(String, Range<usize>)>,
}

#[derive(Debug, Clone)]
pub struct CheckItem {
    pub text: String,
    pub checked: bool,
    pub checkbox: Range<usize>,
    pub line: usize,
    /// Stable within its task: the text, slugged, with `-2`, `-3` for repeats.
    pub slug: String,
}

#[derive(Debug, Clone)]
pub struct PlanTask {
    /// `S1.1`.
    pub id: String,
    /// Plain text: `Agent Commands and plans check`.
    pub title: String,
    /// The label as written, between the `**`: `S2.4 – Agent Commands and `plans check``.
    pub label_source: String,
    pub stage: u32,
    pub checked: bool,
    pub checkbox: Option<Range<usize>>,
    pub item: Range<usize>,
    pub fields: Vec<Field>,
    pub checklist: Vec<CheckItem>,
    pub line: usize,
}

impl PlanTask {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The task's description: the Description field and the items under it.
    pub fn description(&self) -> String {
        let Some(f) = self.field("Description") else {
            return String::new();
        };
        let mut out = f.value.clone();
        for (child, _) in &f.children {
            out.push_str("\n- ");
            out.push_str(child);
        }
        out.trim().to_string()
    }

    /// The note lines under **Notes:**.
    pub fn notes(&self) -> Vec<&str> {
        self.field("Notes")
            .map(|f| f.children.iter().map(|(t, _)| t.as_str()).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub number: u32,
    pub title: String,
    pub goal: String,
    /// The stage's own `**Check:**` and `**Protected:**` lines (code
    /// spans): its check runs on its tasks' combined change.
    pub checks: Option<Vec<String>>,
    pub protected: Option<Vec<String>>,
    pub section: Range<usize>,
    /// The `**Status:**` line, when the stage has one.
    pub status_line: Option<Range<usize>>,
    pub tasks: Vec<PlanTask>,
    pub line: usize,
    /// The stage's own `**Notes:**` paragraph and the note items under
    /// it, when it has them: a note on the stage task itself.
    pub notes: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
pub struct DoneLog {
    pub section: Range<usize>,
    pub entries: Vec<(String, Range<usize>)>,
}

#[derive(Debug, Clone)]
pub struct PlansDoc {
    pub text: String,
    pub title: Option<String>,
    pub metadata: Vec<MetaField>,
    pub roadmap: Vec<RoadmapEntry>,
    pub stages: Vec<Stage>,
    pub done_log: Option<DoneLog>,
    /// The dash the file puts between ids and titles (`–` in the template).
    pub dash: String,
}

/// The state a stage's `**Status:**` line shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    NotStarted,
    InProgress,
    Done,
}

impl StageState {
    fn label(self) -> &'static str {
        match self {
            StageState::NotStarted => "Not started",
            StageState::InProgress => "In progress",
            StageState::Done => "Done",
        }
    }
}

/// `S1.1 – Title` → (`S1.1`, `Title`). Accepts an en dash, em dash, hyphen or
/// colon between them; `None` when the text does not start with a task id.
pub fn split_task_label(label: &str) -> Option<(String, String, Option<char>)> {
    let rest = label.strip_prefix('S')?;
    let id_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let id = &rest[..id_len];
    let parts: Vec<&str> = id.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (title, dash) = strip_separator(&rest[id_len..])?;
    Some((format!("S{id}"), title, dash))
}

/// `Stage 2 – Title` → (2, `Title`).
pub fn split_stage_label(label: &str) -> Option<(u32, String)> {
    let rest = label.trim().strip_prefix("Stage")?.trim_start();
    let n_len = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number: u32 = rest[..n_len].parse().ok()?;
    let (title, _) = strip_separator(&rest[n_len..])?;
    Some((number, title))
}

/// ` – Title` → `Title`, with the dash used. Empty input gives an empty title.
fn strip_separator(s: &str) -> Option<(String, Option<char>)> {
    let t = s.trim_start();
    if t.is_empty() {
        return Some((String::new(), None));
    }
    let c = t.chars().next()?;
    if !matches!(c, '–' | '—' | '-' | ':') {
        return None;
    }
    Some((t[c.len_utf8()..].trim().to_string(), Some(c)))
}

/// A checklist item's identity: its text, lowercased, non-alphanumerics
/// folded to single hyphens, at most 48 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.to_lowercase().chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.chars().count() >= 48 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The range of a value on an item's first line: after `:`, to the line's end
/// (without a trailing two-space break or the newline).
fn value_on_line(text: &str, after: usize, limit: usize) -> Range<usize> {
    let end = line_end(text, after).min(limit).max(after);
    let line = &text[after..end];
    let trimmed = line.trim_end_matches(['\n', '\r', ' ', '\t']);
    after..after + trimmed.len()
}

/// `- Name: value` or `- **Name:** value` items of a Metadata section.
pub(crate) fn parse_metadata(text: &str, items: &[&Item]) -> Vec<MetaField> {
    let mut out = Vec::new();
    for item in items {
        let (name, after) = match &item.label {
            Some((l, r)) if l.ends_with(':') => (l.trim_end_matches(':').trim().to_string(), r.end),
            _ => {
                let own = &text[item.range.start..item.own_end];
                let Some(colon) = own.find(':') else { continue };
                let marker = own
                    .find(|c: char| !(c == '-' || c == '*' || c == '+' || c.is_whitespace()))
                    .unwrap_or(0);
                if colon <= marker {
                    continue;
                }
                (
                    own[marker..colon].trim().to_string(),
                    item.range.start + colon + 1,
                )
            }
        };
        let mut start = after;
        while text[start..].starts_with([' ', '\t']) {
            start += 1;
        }
        let value_range = value_on_line(text, start, item.own_end);
        out.push(MetaField {
            name,
            value: text[value_range.clone()].trim_matches('`').to_string(),
            value_range,
        });
    }
    out
}

/// Level-2 sections: (heading index, heading text, range up to the next
/// heading of level 1 or 2).
fn sections(text: &str, outline: &Outline) -> Vec<(String, Range<usize>)> {
    let tops: Vec<&super::outline::Heading> =
        outline.headings.iter().filter(|h| h.level <= 2).collect();
    tops.iter()
        .enumerate()
        .filter(|(_, h)| h.level == 2)
        .map(|(i, h)| {
            let end = tops.get(i + 1).map_or(text.len(), |n| n.range.start);
            (h.text.clone(), h.range.start..end)
        })
        .collect()
}

fn items_in<'a>(outline: &'a Outline, range: &Range<usize>) -> Vec<&'a Item> {
    outline
        .items
        .iter()
        .filter(|i| i.range.start >= range.start && i.range.start < range.end)
        .collect()
}

fn field_of(text: &str, item: &Item) -> Option<Field> {
    let (label, lrange) = item.label.as_ref()?;
    if !label.ends_with(':') {
        return None;
    }
    // The value's range is the rest of the label's line only: replacing it
    // never swallows a continuation line someone wrote below.
    let value_range = value_on_line(text, lrange.end, item.own_end.max(lrange.end));
    Some(Field {
        name: label.trim_end_matches(':').trim().to_string(),
        value: {
            let full = item.text.trim();
            full.strip_prefix(label.as_str())
                .unwrap_or(full)
                .trim()
                .to_string()
        },
        value_range,
        item: item.range.clone(),
        children: item
            .children
            .iter()
            .map(|c| (c.text.clone(), c.range.clone()))
            .collect(),
    })
}

impl PlansDoc {
    pub fn parse(text: &str, path: &Path) -> Result<PlansDoc> {
        let outline = Outline::parse(text);
        let mut doc = PlansDoc {
            text: text.to_string(),
            title: outline
                .headings
                .iter()
                .find(|h| h.level == 1)
                .map(|h| h.text.clone()),
            metadata: Vec::new(),
            roadmap: Vec::new(),
            stages: Vec::new(),
            done_log: None,
            dash: "–".into(),
        };
        let mut dash_seen = false;
        let mut seen_ids: Vec<(String, usize)> = Vec::new();
        for (heading, range) in sections(text, &outline) {
            let lower = heading.to_lowercase();
            let items = items_in(&outline, &range);
            if lower == "metadata" {
                doc.metadata = parse_metadata(text, &items);
            } else if lower.contains("roadmap") {
                for item in &items {
                    let Some((label, lrange)) = &item.label else {
                        continue;
                    };
                    if let Some((number, title)) = split_stage_label(label) {
                        doc.roadmap.push(RoadmapEntry {
                            number,
                            title,
                            checkbox: item.checkbox.clone(),
                            line: line_of(text, lrange.start),
                        });
                    }
                }
            } else if let Some((number, title)) = split_stage_label(&heading) {
                if title.is_empty() {
                    return Err(doc_error(
                        path,
                        text,
                        range.start,
                        format!(
                            "Stage {number} has no title: write `## Stage {number} {} Title`",
                            doc.dash
                        ),
                    ));
                }
                if let Some(other) = doc.stages.iter().find(|s| s.number == number) {
                    return Err(doc_error(
                        path,
                        text,
                        range.start,
                        format!(
                            "a second Stage {number} (the first is at line {}); renumber one of them",
                            other.line
                        ),
                    ));
                }
                let mut stage = Stage {
                    number,
                    title,
                    goal: String::new(),
                    checks: None,
                    protected: None,
                    section: range.clone(),
                    status_line: None,
                    tasks: Vec::new(),
                    line: line_of(text, range.start),
                    notes: None,
                };
                // **Goal:** and **Status:** are paragraph lines of the section.
                let mut pos = range.start;
                for line in text[range.clone()].split_inclusive('\n') {
                    let t = line.trim_start();
                    if let Some(rest) = t.strip_prefix("**Goal:**") {
                        stage.goal = rest.trim().to_string();
                    } else if let Some(rest) = t.strip_prefix("**Check:**") {
                        stage.checks = Some(code_spans(rest));
                    } else if let Some(rest) = t.strip_prefix("**Protected:**") {
                        stage.protected = Some(code_spans(rest));
                    } else if t.starts_with("**Status:**") && stage.status_line.is_none() {
                        let end = pos + line.trim_end_matches(['\n', '\r']).len();
                        stage.status_line = Some(pos..end);
                    } else if line.starts_with("**Notes:**") && stage.notes.is_none() {
                        // The paragraph, then the note items right after it.
                        let after = pos + line.len();
                        let mut end = after;
                        for item in items.iter().filter(|i| i.range.start >= after) {
                            if item.label.is_some() || text[end..item.range.start].trim() != "" {
                                break;
                            }
                            end = item.range.end;
                        }
                        stage.notes = Some(pos..end);
                    }
                    pos += line.len();
                }
                for item in &items {
                    let Some((label, lrange)) = &item.label else {
                        continue;
                    };
                    let Some((id, title, dash)) = split_task_label(label) else {
                        continue;
                    };
                    if title.is_empty() {
                        return Err(doc_error(
                            path,
                            text,
                            lrange.start,
                            format!("task {id} has no title: write `**{id} – Title**`"),
                        ));
                    }
                    if let Some((_, line)) = seen_ids.iter().find(|(s, _)| *s == id) {
                        return Err(doc_error(
                            path,
                            text,
                            lrange.start,
                            format!(
                                "task id {id} is used twice (first at line {line}); give this task a new id"
                            ),
                        ));
                    }
                    if let (false, Some(d)) = (dash_seen, dash)
                        && d != ':'
                    {
                        doc.dash = d.to_string();
                        dash_seen = true;
                    }
                    let line = line_of(text, lrange.start);
                    seen_ids.push((id.clone(), line));
                    stage
                        .tasks
                        .push(task_of(text, item, id, title, number, line));
                }
                doc.stages.push(stage);
            } else if lower.starts_with("done") || lower.contains("work log") {
                doc.done_log = Some(DoneLog {
                    section: range.clone(),
                    entries: items
                        .iter()
                        .map(|i| (i.text.clone(), i.range.clone()))
                        .collect(),
                });
            }
        }
        Ok(doc)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &PlanTask> {
        self.stages.iter().flat_map(|s| s.tasks.iter())
    }

    pub fn task(&self, id: &str) -> Option<&PlanTask> {
        self.tasks().find(|t| t.id == id)
    }

    pub fn stage(&self, number: u32) -> Option<&Stage> {
        self.stages.iter().find(|s| s.number == number)
    }

    pub fn roadmap_entry(&self, number: u32) -> Option<&RoadmapEntry> {
        self.roadmap.iter().find(|r| r.number == number)
    }

    fn nl(&self) -> &'static str {
        newline_of(&self.text)
    }

    fn need_task(&self, id: &str) -> Result<&PlanTask> {
        self.task(id).ok_or_else(|| {
            Error::InvalidInput(format!(
                "plans.md has no task {id}; `llmclis plans check` lists what it has"
            ))
        })
    }

    /// The edits that put `line` (without indentation or newline) as the
    /// last nested item of the item `parent` whose own children are indented
    /// by `child_indent`.
    fn append_child(&self, parent_end: usize, child_indent: &str, line: &str) -> Edit {
        let nl = self.nl();
        let at = parent_end;
        let lead = if at == self.text.len() && !self.text.ends_with('\n') && !self.text.is_empty() {
            nl
        } else {
            ""
        };
        Edit::insert(at, format!("{lead}{child_indent}{line}{nl}"))
    }

    /// The indentation of a task's fields.
    fn field_indent(&self, task: &PlanTask) -> String {
        match task.fields.first() {
            Some(f) => indent_at(&self.text, f.item.start).to_string(),
            None => format!("{}  ", indent_at(&self.text, task.item.start)),
        }
    }

    fn child_indent(&self, task: &PlanTask, field: &Field) -> String {
        match field.children.first() {
            Some((_, r)) => indent_at(&self.text, r.start).to_string(),
            None => format!("{}  ", self.field_indent(task)),
        }
    }

    /// Sets a field's value (`**Name:** value`), adding the field after
    /// `after` (or at the end of the fields) when the task has none.
    fn set_field(&self, task: &PlanTask, name: &str, value: &str, after: &[&str]) -> Edit {
        if let Some(f) = task.field(name) {
            return Edit::replace(f.value_range.clone(), format!(" {value}"));
        }
        self.add_field(task, name, value, after)
    }

    fn add_field(&self, task: &PlanTask, name: &str, value: &str, after: &[&str]) -> Edit {
        let at = after
            .iter()
            .find_map(|a| task.field(a))
            .map_or(task.item.end, |f| f.item.end);
        let indent = self.field_indent(task);
        self.append_child(at, &indent, &format!("- **{name}:** {value}"))
    }

    /// The commands in a task's `**Check:**` field (its code spans), and
    /// the paths in its `**Protected:**` field (code spans, or a comma
    /// list); None when the task has no such field.
    pub fn task_list_field(&self, t: &PlanTask, name: &str) -> Option<Vec<String>> {
        let f = t.field(name)?;
        let source = &self.text[f.value_range.clone()];
        let spans = code_spans(source);
        if !spans.is_empty() || name.eq_ignore_ascii_case("Check") {
            return Some(spans);
        }
        Some(
            f.value
                .split([',', ';'])
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        )
    }

    /// Sets a task's list field (`**Check:** \`a\`, \`b\``) to `items`,
    /// added after its Tags or Depends On when it has none.
    pub fn set_list_field(&self, id: &str, name: &str, items: &[String]) -> Result<String> {
        let t = self.need_task(id)?;
        let value = items
            .iter()
            .map(|i| code_span(i))
            .collect::<Vec<_>>()
            .join(", ");
        let edit = self.set_field(
            t,
            name,
            &value,
            &["Check", "Depends On", "Tags", "Description"],
        );
        Ok(splice(&self.text, vec![edit]))
    }

    /// Ticks a task's box and records who completed it and when, and what
    /// verified it (its checks' commands), when anything did.
    pub fn complete_task(
        &self,
        id: &str,
        stamp: &str,
        agent: &str,
        verified_by: &[String],
    ) -> Result<String> {
        let t = self.need_task(id)?;
        let mut by = format!("`{stamp}` by `{agent}`");
        if !verified_by.is_empty() {
            by.push_str(&format!(" — verified by {}", code_spans_of(verified_by)));
        }
        let mut edits = vec![self.checkbox_edit(t, true)];
        edits.push(self.set_field(t, "Last Updated", &by, &["Created"]));
        let completed = self.add_field(t, "Completed", &by, &["Last Updated", "Created"]);
        // Both may insert at the same point; keep "Last Updated" first.
        if edits[1].range.is_empty() && edits[1].range.start == completed.range.start {
            edits[1].text.push_str(&completed.text);
        } else {
            edits.push(completed);
        }
        Ok(splice(&self.text, edits))
    }

    /// Unticks a task (it was reopened), keeping its completion record.
    pub fn reopen_task(&self, id: &str, stamp: &str, agent: &str, status: &str) -> Result<String> {
        let t = self.need_task(id)?;
        let edits = vec![
            self.checkbox_edit(t, false),
            self.set_field(
                t,
                "Last Updated",
                &format!("`{stamp}` by `{agent}`"),
                &["Created"],
            ),
        ];
        let text = splice(&self.text, edits);
        let doc = PlansDoc::parse(&text, Path::new("plans.md"))?;
        doc.add_note(
            id,
            stamp,
            agent,
            &format!("reopened; status is now {status}"),
        )
    }

    pub fn touch_task(&self, id: &str, stamp: &str, agent: &str) -> Result<String> {
        let t = self.need_task(id)?;
        let edit = self.set_field(
            t,
            "Last Updated",
            &format!("`{stamp}` by `{agent}`"),
            &["Created"],
        );
        Ok(splice(&self.text, vec![edit]))
    }

    fn checkbox_edit(&self, t: &PlanTask, checked: bool) -> Edit {
        let mark = if checked { "[x]" } else { "[ ]" };
        match &t.checkbox {
            Some(r) => Edit::replace(r.clone(), mark),
            // `- **S1.1 …` without a box: put one after the list marker.
            None => Edit::insert(content_start(&self.text, t.item.start), format!("{mark} ")),
        }
    }

    /// Ticks or unticks a checklist item of a task.
    pub fn set_check_item(&self, id: &str, slug: &str, checked: bool) -> Result<String> {
        let t = self.need_task(id)?;
        let item = t.checklist.iter().find(|c| c.slug == slug).ok_or_else(|| {
            Error::InvalidInput(format!(
                "task {id} in plans.md has no checklist item {slug:?}"
            ))
        })?;
        let mark = if checked { "[x]" } else { "[ ]" };
        Ok(splice(
            &self.text,
            vec![Edit::replace(item.checkbox.clone(), mark)],
        ))
    }

    /// Appends a dated note under the task's **Notes:** (created when missing).
    pub fn add_note(&self, id: &str, stamp: &str, agent: &str, text: &str) -> Result<String> {
        let t = self.need_task(id)?;
        let line = format!("- {}", note_line(stamp, agent, text));
        Ok(splice(
            &self.text,
            vec![self.append_to_field(t, "Notes", &line)],
        ))
    }

    /// Appends a dated note under the stage's own `**Notes:**` (a paragraph
    /// after its tasks, created when missing): a note on the stage task.
    pub fn add_stage_note(&self, n: u32, stamp: &str, agent: &str, text: &str) -> Result<String> {
        let nl = self.nl();
        let stage = self.stage(n).ok_or_else(|| {
            Error::InvalidInput(format!("no Stage {n} in the plan; add it or re-import"))
        })?;
        let line = format!("- {}", note_line(stamp, agent, text));
        // Past the end of a line, never inside one.
        let past = |at: usize| {
            at + self.text[at..]
                .find('\n')
                .map_or(self.text.len() - at, |i| i + 1)
        };
        let edit = match &stage.notes {
            Some(r) => {
                let at = if self.text[..r.end].ends_with('\n') {
                    r.end
                } else {
                    past(r.end)
                };
                let lead = if self.text[..at].ends_with('\n') {
                    ""
                } else {
                    nl
                };
                Edit::insert(at, format!("{lead}{line}{nl}"))
            }
            None => {
                // After the tasks (or the stage's own lines), before what
                // follows the stage (a rule, the next heading).
                let at = stage
                    .tasks
                    .iter()
                    .map(|t| t.item.end)
                    .chain(stage.status_line.as_ref().map(|r| r.end))
                    .max()
                    .unwrap_or_else(|| last_content_line_end(&self.text, &stage.section));
                let at = if self.text[..at].ends_with('\n') {
                    at
                } else {
                    past(at)
                };
                let lead = if self.text[..at].ends_with('\n') {
                    ""
                } else {
                    nl
                };
                Edit::insert(at, format!("{lead}{nl}**Notes:**{nl}{nl}{line}{nl}"))
            }
        };
        Ok(splice(&self.text, vec![edit]))
    }

    /// Adds a line under the task's **Links:** (created when missing).
    pub fn add_link(&self, id: &str, kind: &str, target: &str) -> Result<String> {
        let t = self.need_task(id)?;
        let line = format!("- {kind}: `{target}`");
        Ok(splice(
            &self.text,
            vec![self.append_to_field(t, "Links", &line)],
        ))
    }

    fn append_to_field(&self, t: &PlanTask, field: &str, line: &str) -> Edit {
        match t.field(field) {
            Some(f) => {
                let indent = self.child_indent(t, f);
                self.append_child(f.item.end, &indent, line)
            }
            None => {
                let nl = self.nl();
                let indent = self.field_indent(t);
                let at = t.item.end;
                let lead = if at == self.text.len() && !self.text.ends_with('\n') {
                    nl
                } else {
                    ""
                };
                Edit::insert(
                    at,
                    format!("{lead}{indent}- **{field}:**{nl}{indent}  {line}{nl}"),
                )
            }
        }
    }

    /// Sets the Metadata's Last Updated and Last Editor, when the file has them.
    pub fn touch_metadata(&self, stamp: &str, agent: &str) -> String {
        touch_metadata(&self.text, &self.metadata, stamp, agent)
    }

    /// Appends an entry to the Done log (created at the end when missing);
    /// replaces the template's "(Empty …)" placeholder.
    pub fn log_done(&self, entry: &str) -> String {
        let nl = self.nl();
        let line = format!("- {entry}");
        let Some(log) = &self.done_log else {
            let sep = if self.text.ends_with(&format!("{nl}{nl}")) || self.text.is_empty() {
                ""
            } else if self.text.ends_with('\n') {
                nl
            } else {
                "\n\n"
            };
            return format!(
                "{}{sep}## Done / Completed Work Log{nl}{nl}{line}{nl}",
                self.text
            );
        };
        let placeholder = log.entries.iter().find(|(t, _)| is_placeholder(t));
        let edit = match (placeholder, log.entries.last()) {
            (Some((_, r)), _) if log.entries.len() == 1 => {
                let end = line_end(&self.text, r.end.saturating_sub(1).max(r.start));
                Edit::replace(r.start..end, format!("{line}{nl}"))
            }
            (_, Some((_, r))) => self.append_child(r.end, indent_at(&self.text, r.start), &line),
            (_, None) => {
                let end = end_of_content(&self.text, log.section.clone());
                let lead = if self.text[..end].ends_with('\n') {
                    nl.to_string()
                } else {
                    format!("{nl}{nl}")
                };
                Edit::insert(end, format!("{lead}{line}{nl}"))
            }
        };
        splice(&self.text, vec![edit])
    }

    /// Ticks (or unticks) a stage in the High-Level Roadmap.
    pub fn set_roadmap(&self, number: u32, checked: bool) -> String {
        let Some(Some((was, r))) = self.roadmap_entry(number).map(|e| e.checkbox.clone()) else {
            return self.text.clone();
        };
        if was == checked {
            return self.text.clone();
        }
        splice(
            &self.text,
            vec![Edit::replace(r, if checked { "[x]" } else { "[ ]" })],
        )
    }

    /// Marks the stage's `**Status:**` line. The template's form,
    /// `` `[ ] Not started` / `[ ] In progress` / `[ ] Done` ``, gets its
    /// boxes set; any other form gets its value replaced.
    pub fn set_stage_state(&self, number: u32, state: StageState) -> String {
        let Some(range) = self.stage(number).and_then(|s| s.status_line.clone()) else {
            return self.text.clone();
        };
        let line = &self.text[range.clone()];
        let all = [
            StageState::NotStarted,
            StageState::InProgress,
            StageState::Done,
        ];
        let mut edits = Vec::new();
        for s in all {
            for mark in ["[ ] ", "[x] ", "[X] "] {
                if let Some(i) = line.find(&format!("{mark}{}", s.label())) {
                    let want = if s == state { "[x]" } else { "[ ]" };
                    if &mark[..3] != want {
                        edits.push(Edit::replace(range.start + i..range.start + i + 3, want));
                    }
                }
            }
        }
        let boxed = all.iter().any(|s| {
            ["[ ] ", "[x] ", "[X] "]
                .iter()
                .any(|m| line.contains(&format!("{m}{}", s.label())))
        });
        if !boxed {
            let after = range.start + line.find("**Status:**").unwrap_or(0) + "**Status:**".len();
            edits.push(Edit::replace(
                after..range.end,
                format!(" `{}`", state.label()),
            ));
        }
        splice(&self.text, edits)
    }

    /// Adds a task at the end of stage `number` and returns the new text and
    /// id, which is past every id in the stage and in `taken`.
    pub fn add_task(
        &self,
        number: u32,
        title: &str,
        description: &str,
        stamp: &str,
        agent: &str,
        taken: &[String],
    ) -> Result<(String, String)> {
        let stage = self.stage(number).ok_or_else(|| {
            let have: Vec<String> = self.stages.iter().map(|s| s.number.to_string()).collect();
            Error::InvalidInput(format!(
                "plans.md has no Stage {number}; its stages are {}",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            ))
        })?;
        let title = title.trim();
        if title.is_empty() || title.contains('\n') {
            return Err(Error::InvalidInput(
                "a task title must be one non-empty line".into(),
            ));
        }
        let prefix = format!("S{number}.");
        // Past every id the file has, and every id in `taken` (the store may
        // remember tasks someone deleted from the file).
        let next = stage
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .chain(taken.iter().map(String::as_str))
            .filter_map(|id| {
                id.strip_prefix(&prefix)?
                    .split(['.', '/'])
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        let id = format!("S{number}.{next}");
        let nl = self.nl();
        let (indent, at) = match stage.tasks.last() {
            Some(t) => (indent_at(&self.text, t.item.start).to_string(), t.item.end),
            None => {
                let body = &self.text[stage.section.clone()];
                // After the `**Tasks:**` line (`line_end` of its first byte
                // would be the line before it: the line start counts as the
                // end of the previous line).
                let at = match body.find("**Tasks") {
                    Some(i) => line_end(&self.text, stage.section.start + i + 1),
                    None => end_of_content(&self.text, stage.section.clone()),
                };
                (String::new(), at)
            }
        };
        let dash = &self.dash;
        let by = format!("`{stamp}` by `{agent}`");
        let mut block = format!("{nl}{indent}- [ ] **{id} {dash} {title}**{nl}");
        let description = description.trim();
        if !description.is_empty() {
            block.push_str(&format!(
                "{indent}  - **Description:** {}{nl}",
                description.replace('\n', " ")
            ));
        }
        block.push_str(&format!("{indent}  - **Created:** {by}{nl}"));
        block.push_str(&format!("{indent}  - **Last Updated:** {by}{nl}"));
        let lead = if at == self.text.len() && !self.text.ends_with('\n') {
            nl
        } else {
            ""
        };
        let text = splice(&self.text, vec![Edit::insert(at, format!("{lead}{block}"))]);
        Ok((text, id))
    }
}

fn task_of(
    text: &str,
    item: &Item,
    id: String,
    title: String,
    stage: u32,
    line: usize,
) -> PlanTask {
    let mut fields = Vec::new();
    let mut checklist: Vec<CheckItem> = Vec::new();
    let mut push_check = |c: &Item| {
        // An empty box is not an item anyone can work on.
        if c.text.trim().is_empty() {
            return;
        }
        if let Some((checked, r)) = &c.checkbox {
            let base = slug(&c.text);
            let mut s = base.clone();
            let mut n = 2;
            while checklist.iter().any(|x| x.slug == s) {
                s = format!("{base}-{n}");
                n += 1;
            }
            checklist.push(CheckItem {
                text: c.text.clone(),
                checked: *checked,
                checkbox: r.clone(),
                line: line_of(text, c.range.start),
                slug: s,
            });
        }
    };
    for child in &item.children {
        match field_of(text, child) {
            Some(f) => {
                if f.name.eq_ignore_ascii_case("Checklist") {
                    for c in &child.children {
                        push_check(c);
                    }
                }
                fields.push(f);
            }
            None => push_check(child),
        }
    }
    PlanTask {
        id,
        title,
        // Between the `**`: the label as written, code spans and all.
        label_source: item
            .label
            .as_ref()
            .and_then(|(_, r)| text.get(r.start + 2..r.end.saturating_sub(2)))
            .unwrap_or_default()
            .to_string(),
        stage,
        checked: item.checkbox.as_ref().is_some_and(|(c, _)| *c),
        checkbox: item.checkbox.as_ref().map(|(_, r)| r.clone()),
        item: item.range.clone(),
        fields,
        checklist,
        line,
    }
}

/// The text of each code span in `source` (`` `a`, `b` `` → a, b).
fn code_spans(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].len() - rest[start..].trim_start_matches('`').len();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        let Some(end) = after.find(fence) else { break };
        let inner = after[..end].trim();
        if !inner.is_empty() {
            out.push(inner.to_string());
        }
        rest = &after[end + ticks..];
    }
    out
}

/// `text` as a code span, with a fence longer than any run of backticks
/// in it.
fn code_span(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if longest > 0 {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// Commands as code spans, joined: `` `a`, `b` ``.
pub fn code_spans_of(items: &[String]) -> String {
    items
        .iter()
        .map(|i| code_span(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a list item's content starts: after its marker (`-`, `*`, `+`,
/// `1.`, `1)`) and the spaces that follow it.
fn content_start(text: &str, item_start: usize) -> usize {
    let rest = &text[item_start..];
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let marker = if digits > 0 { digits + 1 } else { 1 };
    let after = &rest[marker.min(rest.len())..];
    let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
    item_start + marker.min(rest.len()) + spaces
}

fn is_placeholder(entry: &str) -> bool {
    entry.trim_start_matches(['*', '_']).starts_with("(Empty")
}

/// `` `2026-11-21T03:05:00+00:00` by `agent`: text `` on one line.
/// Where a stage's own content ends: just past its last line that is
/// neither blank nor a `---` rule (the heading line at least), so what is
/// added there stays in the stage, never before its heading or after the
/// rule that closes it.
fn last_content_line_end(text: &str, section: &Range<usize>) -> usize {
    let mut end = section.start;
    let mut pos = section.start;
    for line in text[section.clone()].split_inclusive('\n') {
        pos += line.len();
        let t = line.trim();
        if !t.is_empty() && !t.starts_with("---") {
            end = pos;
        }
    }
    end
}

pub fn note_line(stamp: &str, agent: &str, text: &str) -> String {
    let one_line: Vec<&str> = text.split_whitespace().collect();
    format!("`{stamp}` by `{agent}`: {}", one_line.join(" "))
}

pub(crate) fn touch_metadata(
    text: &str,
    metadata: &[MetaField],
    stamp: &str,
    agent: &str,
) -> String {
    let mut edits = Vec::new();
    for f in metadata {
        let lower = f.name.to_lowercase();
        if lower == "last updated" {
            edits.push(Edit::replace(f.value_range.clone(), format!("`{stamp}`")));
        } else if lower.starts_with("last editor") {
            edits.push(Edit::replace(f.value_range.clone(), format!("`{agent}`")));
        }
    }
    splice(text, edits)
}

/// The line range holding `pos`, for messages.
pub fn line_range(text: &str, pos: usize) -> Range<usize> {
    line_start(text, pos)..line_end(text, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(
            split_task_label("S1.1 – Title"),
            Some(("S1.1".into(), "Title".into(), Some('–')))
        );
        assert_eq!(
            split_task_label("S12.3.4 - x"),
            Some(("S12.3.4".into(), "x".into(), Some('-')))
        );
        assert_eq!(
            split_task_label("S1.1: x"),
            Some(("S1.1".into(), "x".into(), Some(':')))
        );
        assert_eq!(
            split_task_label("S1.1"),
            Some(("S1.1".into(), String::new(), None))
        );
        assert_eq!(split_task_label("Stage 1 – x"), None);
        assert_eq!(split_task_label("S1 – x"), None);
        assert_eq!(split_task_label("Summary: x"), None);
        assert_eq!(
            split_stage_label("Stage 2 – Local LLM (RTX 5090)"),
            Some((2, "Local LLM (RTX 5090)".into()))
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("GPU enabled (`--gpus all` + NVIDIA container toolkit)."),
            "gpu-enabled-gpus-all-nvidia-container-toolkit"
        );
    }
}
