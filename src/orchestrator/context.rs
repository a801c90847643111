//! What a step's prompts see (the task, its parent, dependencies, plan
//! section, notes and memory), gathered from the store whole; `fit` then
//! cuts it for the model that answers.

use serde::Serialize;

use crate::error::Result;
use crate::store::{Store, Task};

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub external_ref: Option<String>,
    pub title: String,
    pub description: String,
    pub priority: i64,
    pub tags: Vec<String>,
}

impl TaskView {
    pub fn of(t: &Task) -> TaskView {
        TaskView {
            id: t.id,
            external_ref: t.external_ref.clone(),
            title: t.title.clone(),
            description: t.description.clone(),
            priority: t.priority,
            tags: t.tags.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ParentView {
    pub title: String,
    pub description: String,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DepView {
    pub id: i64,
    pub title: String,
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoteView {
    pub created_at: String,
    pub agent: String,
    pub text: String,
}

/// What the templates see.
#[derive(Debug, Clone, Serialize)]
pub struct Vars {
    pub task: TaskView,
    pub parent: Option<ParentView>,
    pub dependencies: Vec<DepView>,
    pub plan_section: Option<String>,
    pub notes: Vec<NoteView>,
    pub memory: Vec<String>,
}

impl Vars {
    /// The task alone, before anything is gathered.
    pub fn of(task: &Task) -> Vars {
        Vars {
            task: TaskView::of(task),
            parent: None,
            dependencies: vec![],
            plan_section: None,
            notes: vec![],
            memory: vec![],
        }
    }
}

/// A step's material in full, before it is fitted to a model: the
/// variables, and each dependency's summary (what its result is cut to
/// first).
#[derive(Debug, Clone)]
pub struct Material {
    pub vars: Vars,
    pub summaries: Vec<Option<String>>,
}

/// Each dependency's result and each note stop at this many characters, so
/// one long answer cannot crowd out the rest even in a big window.
pub const RESULT_CHARS: usize = 1_500;
pub const NOTES_SHOWN: usize = 10;

/// Everything but memory, from the store (and the plans.md section from
/// its file).
pub fn gather(db: &Store, task: &Task) -> Result<Material> {
    let mut vars = Vars::of(task);
    if let Some(pid) = task.parent_id {
        let p = db.task(pid)?;
        vars.parent = Some(ParentView {
            title: p.title,
            description: cut(&p.description, RESULT_CHARS),
            summary: db.latest_summary(pid).map(|s| cut(&s, RESULT_CHARS)),
        });
    }
    let mut summaries = Vec::with_capacity(task.depends_on.len());
    for dep in &task.depends_on {
        let d = db.task(*dep)?;
        vars.dependencies.push(DepView {
            id: d.id,
            title: d.title,
            result: cut(&db.result_of(*dep)?, RESULT_CHARS),
        });
        summaries.push(db.latest_summary(*dep));
    }
    let project = db.project(task.project_id)?;
    vars.plan_section = crate::docs::sync::plan_section(&project, task.external_ref.as_deref())
        .map(|s| cut(&s, 3 * RESULT_CHARS));
    let notes = db.notes(task.id)?;
    vars.notes = notes
        .iter()
        .skip(notes.len().saturating_sub(NOTES_SHOWN))
        .map(|n| NoteView {
            created_at: n.created_at.clone(),
            agent: n.agent.clone(),
            text: cut(&n.text, 500),
        })
        .collect();
    Ok(Material { vars, summaries })
}

/// The first `max` characters of `text`, marked when cut.
pub fn cut(text: &str, max: usize) -> String {
    crate::text::head(text, max, " […]")
}
