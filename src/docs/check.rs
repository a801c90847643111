//! `llmclis plans check`: does a plans.md keep the history of an earlier
//! version? Every task, ticked box, checklist item, note and Done-log entry
//! must still be there, and timestamps may only move forward.

use serde::Serialize;

use super::plans::PlansDoc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The line in the checked file (or, for something removed, in the
    /// earlier version: see `in_earlier`).
    pub line: usize,
    pub in_earlier: bool,
    pub message: String,
}

/// The first backquoted timestamp of a field value, parsed.
fn timestamp(value: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let start = value.find('`')? + 1;
    let end = start + value[start..].find('`')?;
    chrono::DateTime::parse_from_rfc3339(value[start..end].trim()).ok()
}

pub fn compare(old: &PlansDoc, new: &PlansDoc) -> Vec<Violation> {
    let mut out = Vec::new();
    let gone = |line: usize, message: String| Violation {
        line,
        in_earlier: true,
        message,
    };
    let here = |line: usize, message: String| Violation {
        line,
        in_earlier: false,
        message,
    };
    for t in old.tasks() {
        let Some(n) = new.task(&t.id) else {
            out.push(gone(t.line, format!("task {} ({}) was removed; restore it (close tasks by ticking them, never by deleting)", t.id, t.title)));
            continue;
        };
        if t.checked && !n.checked {
            out.push(here(n.line, format!("task {} was done and is unticked; reopen it with `llmclis plans status {} pending`", t.id, t.id)));
        }
        for c in &t.checklist {
            match n.checklist.iter().find(|x| x.slug == c.slug) {
                None => out.push(gone(
                    c.line,
                    format!("checklist item {:?} of {} was removed", c.text, t.id),
                )),
                Some(x) if c.checked && !x.checked => out.push(here(
                    x.line,
                    format!(
                        "checklist item {:?} of {} was ticked and is unticked",
                        c.text, t.id
                    ),
                )),
                _ => {}
            }
        }
        let new_notes = n.notes();
        for (note, range) in t
            .field("Notes")
            .map(|f| f.children.clone())
            .unwrap_or_default()
        {
            if !new_notes.contains(&note.as_str()) {
                let line = super::outline::line_of(&old.text, range.start);
                out.push(gone(
                    line,
                    format!("a note of {} was removed or changed: {note:?}", t.id),
                ));
            }
        }
        for name in ["Created", "Completed"] {
            if let (Some(a), Some(b)) = (t.field(name), n.field(name))
                && let (Some(x), Some(y)) = (
                    timestamp(&old.text[a.value_range.clone()]),
                    timestamp(&new.text[b.value_range.clone()]),
                )
                && x != y
            {
                let line = super::outline::line_of(&new.text, b.item.start);
                out.push(here(
                    line,
                    format!(
                        "the {name} time of {} changed from {x} to {y}; it must not change",
                        t.id
                    ),
                ));
            }
        }
        if let (Some(a), Some(b)) = (t.field("Last Updated"), n.field("Last Updated"))
            && let (Some(x), Some(y)) = (
                timestamp(&old.text[a.value_range.clone()]),
                timestamp(&new.text[b.value_range.clone()]),
            )
            && y < x
        {
            let line = super::outline::line_of(&new.text, b.item.start);
            out.push(here(
                line,
                format!("Last Updated of {} went back from {x} to {y}", t.id),
            ));
        }
    }
    for r in &old.roadmap {
        let was = r.checkbox.as_ref().is_some_and(|(c, _)| *c);
        match new.roadmap_entry(r.number) {
            None => out.push(gone(
                r.line,
                format!("Stage {} was removed from the High-Level Roadmap", r.number),
            )),
            Some(n) if was && !n.checkbox.as_ref().is_some_and(|(c, _)| *c) => out.push(here(
                n.line,
                format!("Stage {} was done in the roadmap and is unticked", r.number),
            )),
            _ => {}
        }
    }
    if let Some(log) = &old.done_log {
        let kept: Vec<&str> = new
            .done_log
            .iter()
            .flat_map(|l| l.entries.iter().map(|(t, _)| t.as_str()))
            .collect();
        for (entry, range) in &log.entries {
            if entry.trim_start_matches(['*', '_']).starts_with("(Empty") {
                continue;
            }
            if !kept.contains(&entry.as_str()) {
                let line = super::outline::line_of(&old.text, range.start);
                out.push(gone(
                    line,
                    format!("the Done log entry {entry:?} was removed or changed"),
                ));
            }
        }
    }
    let meta = |d: &PlansDoc| {
        d.metadata
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case("Last Updated"))
            .and_then(|f| {
                timestamp(&d.text[f.value_range.clone()]).map(|t| (t, f.value_range.start))
            })
    };
    if let (Some((x, _)), Some((y, at))) = (meta(old), meta(new))
        && y < x
    {
        out.push(here(
            super::outline::line_of(&new.text, at),
            format!("the Metadata's Last Updated went back from {x} to {y}"),
        ));
    }
    out.sort_by_key(|v| (v.in_earlier, v.line));
    out
}
