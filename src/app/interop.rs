//! `llmclis import taskmaster|beads PATH` and `llmclis export
//! taskmaster|beads`: another tool's tasks into a project, all or nothing,
//! and back. Importing again updates in place: an item whose text in the
//! file is unchanged since the last import is left as llmclis has it (so
//! work done here is not undone); one that changed there takes the file's
//! fields. Nothing is ever duplicated: each item's id is mapped to its task.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use crate::error::{Error, Result};
pub use crate::interop::Source;
use crate::interop::{self, Exported, Item};
use crate::store::{NewTask, Store, TaskPatch};

#[derive(Debug, Clone)]
pub struct Import {
    pub source: Source,
    /// The file, or the directory that holds `.taskmaster/` or `.beads/`.
    pub path: PathBuf,
    pub project_id: Option<i64>,
    /// Task Master: only this tag.
    pub tag: Option<String>,
}

/// One item and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Mapped {
    /// The other tool's id (`12.3`, `bd-a1b2`), with its tag when not
    /// Task Master's default (`feature-x/4`).
    pub from: String,
    pub task_id: i64,
    /// `created`, `updated` or `unchanged`.
    pub action: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Imported {
    pub project_id: i64,
    pub project: String,
    /// Which project and why (`created` when the import made it).
    pub project_by: String,
    pub file: String,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub ids: Vec<Mapped>,
    pub warnings: Vec<String>,
}

/// The file an import reads: PATH itself, or the tool's file under PATH.
fn file_of(source: Source, path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let inside = match source {
        Source::TaskMaster => path.join(".taskmaster/tasks/tasks.json"),
        Source::Beads => path.join(".beads/issues.jsonl"),
    };
    if inside.is_file() {
        return Ok(inside);
    }
    Err(Error::InvalidInput(format!(
        "no {} here: {} is not a file and {} does not exist",
        match source {
            Source::TaskMaster => "Task Master tasks.json",
            Source::Beads => "beads issues.jsonl",
        },
        path.display(),
        inside.display()
    )))
}

/// The project's directory: the one that holds `.taskmaster/` or
/// `.beads/`, else the file's own.
fn home_of(file: &Path) -> PathBuf {
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    for dir in file.ancestors().skip(1) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == ".taskmaster" || name == ".beads" {
            return dir.parent().unwrap_or(dir).to_path_buf();
        }
    }
    file.parent().unwrap_or(Path::new(".")).to_path_buf()
}

pub fn import(ctx: &Context, store: &mut Store, req: Import) -> Result<Imported> {
    let file = file_of(req.source, &req.path)?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let parsed = match req.source {
        Source::TaskMaster => interop::taskmaster::parse(&text, req.tag.as_deref()),
        Source::Beads => interop::beads::parse(&text),
    }
    .map_err(|e| Error::InvalidInput(format!("{}: {e}", file.display())))?;
    let home = home_of(&file);
    let (project, project_by) = match req.project_id {
        Some(id) => (store.project(id)?, "given".to_string()),
        None => match super::here::choose(ctx, store, None, &home) {
            Ok(c) if c.by != "only" && c.by != "config" => {
                (store.project(c.project_id)?, c.by.to_string())
            }
            _ => {
                // A new project for the other tool's directory.
                let name = home
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("imported")
                    .to_string();
                let name = match store.project_by_name(&name)? {
                    Some(_) => format!("{name} ({})", req.source.as_str()),
                    None => name,
                };
                let root = home.to_string_lossy().into_owned();
                (
                    store.create_project(&name, "", Some(&root), &ctx.agent)?,
                    "created".to_string(),
                )
            }
        },
    };
    let mut report = Imported {
        project_id: project.id,
        project: project.name.clone(),
        project_by,
        file: file.display().to_string(),
        created: 0,
        updated: 0,
        unchanged: 0,
        ids: Vec::new(),
        warnings: parsed.warnings,
    };
    let source = req.source.as_str();
    let agent = ctx.agent.clone();
    store.batch(|s| {
        // Every item's task, made or found, before any dependency: an item
        // may depend on one later in the file.
        let mut task_of: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut changed: BTreeSet<i64> = BTreeSet::new();
        let before: BTreeMap<(String, String), serde_json::Value> = s
            .imports(project.id, source)?
            .into_iter()
            .map(|i| ((i.scope, i.ext_id), i.original))
            .collect();
        for item in &parsed.items {
            let k = (item.scope.clone(), item.key.clone());
            let parent = item
                .parent
                .as_ref()
                .and_then(|p| task_of.get(&(item.scope.clone(), p.clone())).copied());
            let (id, action) = match s.imported_task(project.id, source, &item.scope, &item.key)? {
                Some(id) if s.task(id).is_ok_and(|t| t.deleted_at.is_none()) => {
                    if before.get(&k) == Some(&item.original) {
                        (id, "unchanged")
                    } else {
                        update(s, id, item, &agent)?;
                        changed.insert(id);
                        (id, "updated")
                    }
                }
                _ => {
                    let t = s.create_task(
                        NewTask {
                            project_id: project.id,
                            title: item.title.clone(),
                            description: item.description.clone(),
                            parent_id: parent,
                            external_ref: None,
                            priority: Some(item.priority),
                            role: None,
                            tags: item.tags.clone(),
                            depends_on: Vec::new(),
                            status: Some(item.status),
                            checks: item.checks.clone(),
                            protected: Vec::new(),
                        },
                        &agent,
                    )?;
                    changed.insert(t.id);
                    (t.id, "created")
                }
            };
            s.record_import(
                project.id,
                source,
                &item.scope,
                &item.key,
                id,
                &item.original,
            )?;
            task_of.insert(k, id);
            match action {
                "created" => report.created += 1,
                "updated" => report.updated += 1,
                _ => report.unchanged += 1,
            }
            report.ids.push(Mapped {
                from: if item.scope.is_empty() || item.scope == interop::taskmaster::DEFAULT_TAG {
                    item.key.clone()
                } else {
                    format!("{}/{}", item.scope, item.key)
                },
                task_id: id,
                action,
            });
        }
        let imported: BTreeSet<i64> = task_of.values().copied().collect();
        for item in &parsed.items {
            let id = task_of[&(item.scope.clone(), item.key.clone())];
            if !changed.contains(&id) {
                continue;
            }
            let want: BTreeSet<i64> = item
                .depends_on
                .iter()
                .filter_map(|d| {
                    let found = task_of.get(&(item.scope.clone(), d.clone())).copied();
                    if found.is_none() {
                        report.warnings.push(format!(
                            "{} depends on {d}, which is not in the file",
                            item.key
                        ));
                    }
                    found
                })
                .collect();
            let have: BTreeSet<i64> = s.task(id)?.depends_on.into_iter().collect();
            for d in want.difference(&have) {
                if let Err(e) = s.add_dependency(id, *d, &agent) {
                    report.warnings.push(format!("{} → {d}: {e}", item.key));
                }
            }
            // Only dependencies on imported tasks follow the file; one
            // added here on a task of llmclis's own stays.
            for d in have.difference(&want).filter(|d| imported.contains(d)) {
                s.remove_dependency(id, *d, &agent)?;
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// An item that changed in its file: the file's fields win.
fn update(s: &mut Store, id: i64, item: &Item, agent: &str) -> Result<()> {
    let t = s.task(id)?;
    let patch = TaskPatch {
        title: (t.title != item.title).then(|| item.title.clone()),
        description: (t.description != item.description).then(|| item.description.clone()),
        priority: (t.priority != item.priority).then_some(item.priority),
        tags: (t.tags != item.tags).then(|| item.tags.clone()),
        checks: (!item.checks.is_empty() && t.checks != item.checks).then(|| item.checks.clone()),
        ..Default::default()
    };
    if !patch.is_empty() {
        s.update_task(id, patch, agent)?;
    }
    if t.status != item.status {
        s.mark_task_status(
            id,
            item.status,
            agent,
            serde_json::json!({"imported": true}),
        )?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Export {
    pub source: Source,
    pub project_id: Option<i64>,
    /// Task Master: the tag written [default: master].
    pub tag: Option<String>,
}

/// The other tool's file for a project's tasks.
pub fn export(ctx: &Context, store: &Store, req: Export) -> Result<String> {
    let chosen = super::here::project(ctx, store, req.project_id)?;
    let tasks = store.tasks(Some(chosen.project_id), None)?;
    let mapped = store.imports(chosen.project_id, req.source.as_str())?;
    let tag = req
        .tag
        .clone()
        .unwrap_or_else(|| interop::taskmaster::DEFAULT_TAG.to_string());
    let by_task: BTreeMap<i64, &crate::store::imports::Imported> =
        mapped.iter().map(|m| (m.task_id, m)).collect();
    let items: Vec<Exported<'_>> = tasks
        .iter()
        // A task from another Task Master tag goes with that tag.
        .filter(|t| {
            by_task
                .get(&t.id)
                .is_none_or(|m| req.source == Source::Beads || m.scope == tag)
        })
        .map(|t| Exported {
            task: t,
            key: by_task.get(&t.id).map(|m| m.ext_id.clone()),
            original: by_task.get(&t.id).map(|m| &m.original),
        })
        .collect();
    Ok(match req.source {
        Source::TaskMaster => interop::taskmaster::write(&tag, &items),
        Source::Beads => interop::beads::write(&items),
    })
}
