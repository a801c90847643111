//! The store → files direction: the plan files follow one task's state
//! in the store (its line, its stage's tick, its notes, its issues.md
//! entry). Below both the catch-up (`catchup`, which applies the outbox
//! through it) and the edits that start from the files (`sync`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::issues::{self, IssuesDoc};
use super::plans::{PlansDoc, StageState, note_line};
use super::{Written, read_doc, stamp_now, update_file};
use crate::error::{Error, Result};
use crate::fsutil::create_atomic;
use crate::store::{Note, Status, Store, Task};

/// What `follow` did to the files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowReport {
    /// The plans file, when the task is linked to one.
    pub plans: Option<String>,
    pub plans_changed: bool,
    /// The issues.md entry opened or kept open for a blocked task.
    pub issue: Option<String>,
    /// Entries closed because the task is no longer blocked.
    pub closed_issues: Vec<String>,
    /// The store change is saved but the file edit could not be written
    /// (another program changed the same lines): why, and what writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

/// Where a task's external ref points in plans.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Loc {
    Stage(u32),
    Task(String),
    Check(String, String),
}

impl Loc {
    /// Only the forms import writes: `S2`, `S2.1` (or deeper), `S2.1/slug`.
    /// Any other ref (`API/v2`) is the user's own and not in plans.md.
    pub(super) fn of(external_ref: &str) -> Option<Loc> {
        let (id, slug) = match external_ref.split_once('/') {
            Some((id, slug)) => (id, Some(slug)),
            None => (external_ref, None),
        };
        let parts: Vec<&str> = id.strip_prefix('S')?.split('.').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        match (parts.len(), slug) {
            (1, None) => parts[0].parse().ok().map(Loc::Stage),
            (n, None) if n > 1 => Some(Loc::Task(id.to_string())),
            (n, Some(slug)) if n > 1 && !slug.is_empty() => {
                Some(Loc::Check(id.to_string(), slug.to_string()))
            }
            _ => None,
        }
    }
}

/// Whether plans.md still holds what `loc` points at.
fn present(doc: &PlansDoc, loc: &Loc) -> bool {
    match loc {
        Loc::Task(id) => doc.task(id).is_some(),
        Loc::Stage(n) => doc.stage(*n).is_some(),
        Loc::Check(id, slug) => doc
            .task(id)
            .is_some_and(|t| t.checklist.iter().any(|c| &c.slug == slug)),
    }
}

/// Brings the plan files in line with one task's state in the store,
/// stamped with the agent and time of its newest status change as the
/// store recorded it (its newest event when it never changed status), so
/// whoever writes the file, and whenever, a completion reads as made by
/// whoever made it. `agent` and now only for a task with no events.
pub fn follow(
    store: &Store,
    task_id: i64,
    agent: &str,
    reason: Option<&str>,
) -> Result<FollowReport> {
    let events = store.events(task_id)?;
    let newest = events
        .iter()
        .rev()
        .find(|e| e.kind == "status")
        .or(events.last());
    match newest {
        Some(e) => follow_as(
            store,
            task_id,
            &e.agent,
            reason,
            &local_stamp(&e.created_at),
        ),
        None => follow_as(store, task_id, agent, reason, &stamp_now()),
    }
}

/// `follow`, stamping the files with `stamp` (when the change was made).
pub(super) fn follow_as(
    store: &Store,
    task_id: i64,
    agent: &str,
    reason: Option<&str>,
    stamp: &str,
) -> Result<FollowReport> {
    let task = store.task(task_id)?;
    let project = store.project(task.project_id)?;
    let mut report = FollowReport::default();
    let (Some(plans), Some(loc)) = (
        project.plans_path.as_deref().map(PathBuf::from),
        task.external_ref.as_deref().and_then(Loc::of),
    ) else {
        return Ok(report);
    };
    report.plans = Some(plans.to_string_lossy().into_owned());
    // A task whose ref left the file (closed by the last import) has nothing
    // to follow; the store change stands on its own.
    if !present(&PlansDoc::parse(&read_doc(&plans)?, &plans)?, &loc) {
        return Ok(report);
    }
    let issues_path = plans.with_file_name("issues.md");
    let mut link: Option<String> = None;
    if let Loc::Task(id) = &loc {
        if task.status == Status::Blocked {
            let why = reason
                .map(str::to_string)
                .unwrap_or_else(|| format!("Marked blocked by {agent}."));
            let (km, anchor) =
                ensure_open_issue(&issues_path, id, &task.title, &why, stamp, agent)?;
            report.issue = Some(km);
            link = Some(format!("issues.md#{anchor}"));
        } else if issues_path.exists() {
            report.closed_issues = close_issues(&issues_path, id, task.status, stamp, agent)?;
        }
    }
    let notes = store.notes(task_id)?;
    let verified_by = store.verified_by(task_id)?;
    let written = update_file(&plans, |text| {
        reconcile(
            text,
            &plans,
            &task,
            &loc,
            &notes,
            &verified_by,
            link.as_deref(),
            stamp,
            agent,
        )
    })?;
    report.plans_changed = written != Written::Unchanged;
    Ok(report)
}

/// The plans.md text with one task's state applied.
#[allow(clippy::too_many_arguments)] // the task's whole state, passed once
fn reconcile(
    original: &str,
    path: &Path,
    task: &Task,
    loc: &Loc,
    notes: &[Note],
    verified_by: &[String],
    link: Option<&str>,
    stamp: &str,
    agent: &str,
) -> Result<String> {
    let parse = |t: &str| PlansDoc::parse(t, path);
    let missing = |what: &str| {
        Error::InvalidInput(format!(
            "{what} is no longer in {}; restore it or re-import with `llmclis plans import`",
            path.display()
        ))
    };
    let done = task.status == Status::Done;
    let mut text = original.to_string();
    match loc {
        Loc::Task(id) => {
            let doc = parse(&text)?;
            let t = doc.task(id).ok_or_else(|| missing(id))?;
            let stage = t.stage;
            if done && !t.checked {
                let verified = if verified_by.is_empty() {
                    String::new()
                } else {
                    format!(", verified by {}", super::plans::code_spans_of(verified_by))
                };
                let entry = format!(
                    "`{stamp}` – **{}** completed by `{agent}`{verified}.",
                    t.label_source
                );
                text = doc.complete_task(id, stamp, agent, verified_by)?;
                text = parse(&text)?.log_done(&entry);
            } else if !done && t.checked {
                text = doc.reopen_task(id, stamp, agent, task.status.as_str())?;
            }
            if let Some(link) = link {
                let doc = parse(&text)?;
                let t = doc.task(id).ok_or_else(|| missing(id))?;
                let linked = t
                    .field("Links")
                    .is_some_and(|f| f.children.iter().any(|(c, _)| c.contains(link)));
                if !linked {
                    text = doc.add_link(id, "Issues", link)?;
                }
            }
            // The checks and protected paths the store holds (a field the
            // file has and the store lacks is left for the next import).
            for (name, items) in [("Check", &task.checks), ("Protected", &task.protected)] {
                let doc = parse(&text)?;
                let t = doc.task(id).ok_or_else(|| missing(id))?;
                let written = doc.task_list_field(t, name).unwrap_or_default();
                if !items.is_empty() && written != *items {
                    text = doc.set_list_field(id, name, items)?;
                }
            }
            for n in notes {
                let doc = parse(&text)?;
                let t = doc.task(id).ok_or_else(|| missing(id))?;
                if !note_written(&doc.text[t.item.clone()], n) {
                    text = doc.add_note(id, &local_stamp(&n.created_at), &n.agent, &n.text)?;
                }
            }
            if text != original {
                text = parse(&text)?.touch_task(id, stamp, agent)?;
            }
            let doc = parse(&text)?;
            if let Some(s) = doc.stage(stage) {
                let all_done = !s.tasks.is_empty() && s.tasks.iter().all(|t| t.checked);
                let started = all_done
                    || s.tasks.iter().any(|t| t.checked)
                    || matches!(task.status, Status::InProgress | Status::Blocked);
                if all_done {
                    text = doc.set_stage_state(stage, StageState::Done);
                } else if started {
                    text = doc.set_stage_state(stage, StageState::InProgress);
                }
            }
        }
        Loc::Stage(n) => {
            // The stage task's own notes, under the stage's **Notes:**.
            for note in notes {
                let doc = parse(&text)?;
                let s = doc
                    .stage(*n)
                    .ok_or_else(|| missing(&format!("Stage {n}")))?;
                let written = s
                    .notes
                    .as_ref()
                    .is_some_and(|r| note_written(&doc.text[r.clone()], note));
                if !written {
                    text = doc.add_stage_note(
                        *n,
                        &local_stamp(&note.created_at),
                        &note.agent,
                        &note.text,
                    )?;
                }
            }
            let doc = parse(&text)?;
            let s = doc
                .stage(*n)
                .ok_or_else(|| missing(&format!("Stage {n}")))?;
            let ticked = doc
                .roadmap_entry(*n)
                .and_then(|r| r.checkbox.as_ref())
                .is_some_and(|(c, _)| *c);
            let title = s.title.clone();
            if done && !ticked {
                let before = text.clone();
                text = doc.set_roadmap(*n, true);
                text = parse(&text)?.set_stage_state(*n, StageState::Done);
                // Logged when this marked the stage done; a stage with no box
                // or Status line to mark is logged once, not on every sync.
                let logged = doc.done_log.as_ref().is_some_and(|l| {
                    l.entries
                        .iter()
                        .any(|(e, _)| e.contains(&format!("Stage {n} ")) && e.contains("completed"))
                });
                if text != before || (s.status_line.is_none() && !logged) {
                    text = parse(&text)?.log_done(&format!(
                        "`{stamp}` – **Stage {n} {} {title}** completed by `{agent}`.",
                        doc.dash
                    ));
                }
            } else if !done && ticked {
                text = doc.set_roadmap(*n, false);
                text = parse(&text)?.set_stage_state(*n, StageState::InProgress);
            } else if task.status == Status::InProgress {
                text = doc.set_stage_state(*n, StageState::InProgress);
            }
        }
        Loc::Check(id, slug) => {
            let doc = parse(&text)?;
            let t = doc.task(id).ok_or_else(|| missing(id))?;
            let item = t
                .checklist
                .iter()
                .find(|c| &c.slug == slug)
                .ok_or_else(|| missing(&format!("checklist item {slug} of {id}")))?;
            if item.checked != done {
                text = doc.set_check_item(id, slug, done)?;
                text = parse(&text)?.touch_task(id, stamp, agent)?;
            }
        }
    }
    if text != original {
        text = parse(&text)?.touch_metadata(stamp, agent);
    }
    Ok(text)
}

/// Whether a store note is already under the task: a line with its agent and
/// text whose timestamp is the same instant (to the second), whatever offset
/// it was written with.
pub(super) fn note_written(task_source: &str, n: &Note) -> bool {
    let tail = note_line("", &n.agent, &n.text);
    let tail = tail.trim_start_matches("`` ");
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&n.created_at) else {
        return false;
    };
    task_source.lines().any(|line| {
        let Some(head) = line.trim_start().strip_prefix("- `") else {
            return false;
        };
        let Some((stamp, rest)) = head.split_once('`') else {
            return false;
        };
        rest.trim_start() == tail
            && chrono::DateTime::parse_from_rfc3339(stamp)
                .is_ok_and(|t| t.timestamp() == at.timestamp())
    })
}

/// A store time (`2026-11-21T03:05:00.123Z`) as the files write it.
pub(super) fn local_stamp(store_time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(store_time)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|_| store_time.to_string())
}

/// The open issues.md entry for a blocked task, opened when there is none.
fn ensure_open_issue(
    path: &Path,
    task_ref: &str,
    title: &str,
    why: &str,
    stamp: &str,
    agent: &str,
) -> Result<(String, String)> {
    create_atomic(path, issues::template(stamp, agent).as_bytes())?;
    let mut found = None;
    update_file(path, |text| {
        let doc = IssuesDoc::parse(text, path)?;
        if let Some(i) = doc.issues.iter().find(|i| i.is_open() && i.links(task_ref)) {
            found = Some((i.id.clone(), i.anchor.clone()));
            return Ok(text.to_string());
        }
        let (new, id, anchor) = doc.open(
            &format!("{task_ref} blocked: {title}"),
            Some(task_ref),
            why,
            stamp,
            agent,
        )?;
        found = Some((id, anchor));
        Ok(IssuesDoc::parse(&new, path)?.touch_metadata(stamp, agent))
    })?;
    Ok(found.expect("the transform ran"))
}

/// Closes the open entries linked to a task that is no longer blocked.
fn close_issues(
    path: &Path,
    task_ref: &str,
    status: Status,
    stamp: &str,
    agent: &str,
) -> Result<Vec<String>> {
    let mut closed = Vec::new();
    update_file(path, |text| {
        closed.clear();
        let mut text = text.to_string();
        loop {
            let doc = IssuesDoc::parse(&text, path)?;
            let Some(i) = doc.issues.iter().find(|i| {
                i.is_open()
                    && i.links(task_ref)
                    && i.title.starts_with(&format!("{task_ref} blocked"))
            }) else {
                break;
            };
            closed.push(i.id.clone());
            text = doc.set_status(
                &i.id,
                "closed",
                &format!("task {task_ref} is {status} now"),
                stamp,
                agent,
            )?;
        }
        if !closed.is_empty() {
            text = IssuesDoc::parse(&text, path)?.touch_metadata(stamp, agent);
        }
        Ok(text)
    })?;
    Ok(closed)
}
