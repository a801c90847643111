//! `llmclis import taskmaster|beads PATH` and `llmclis export
//! taskmaster|beads`: the door in from other task tools, and back out.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::{Ctx, emit};
use crate::app::interop::{self, Export, Import, Source};
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Task Master's tasks (tags, tasks, subtasks, dependencies, status,
    /// priority, details; a testStrategy that is a command becomes a check)
    Taskmaster {
        /// tasks.json, or the directory that holds .taskmaster/
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Into this project [default: the one from where the file is, else
        /// a new one named after its directory]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// Only this tag [default: every tag; tasks of a tag other than
        /// master are tagged with it]
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
    },
    /// beads' issues (dependencies, status, priority, labels)
    Beads {
        /// issues.jsonl, or the directory that holds .beads/
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Into this project [default: the one from where the file is, else
        /// a new one named after its directory]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// A tasks.json Task Master reads (ids and fields it had are kept)
    Taskmaster {
        /// The project [default: the one from where you stand]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// The tag to write [default: master]
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
        /// Write it here (atomically) instead of stdout
        #[arg(long, short, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// An issues.jsonl beads reads (ids and fields it had are kept)
    Beads {
        /// The project [default: the one from where you stand]
        #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
        project_id: Option<i64>,
        /// Write it here (atomically) instead of stdout
        #[arg(long, short, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

pub fn import(ctx: &Ctx, cmd: ImportCmd, out: &mut impl Write) -> Result<()> {
    let req = match cmd {
        ImportCmd::Taskmaster {
            path,
            project_id,
            tag,
        } => Import {
            source: Source::TaskMaster,
            path,
            project_id,
            tag,
        },
        ImportCmd::Beads { path, project_id } => Import {
            source: Source::Beads,
            path,
            project_id,
            tag: None,
        },
    };
    let mut store = ctx.store()?;
    let r = interop::import(ctx, &mut store, req)?;
    if !ctx.json && !ctx.quiet {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    emit(out, ctx.json, &r, || {
        const SHOWN: usize = 20;
        let mut s = format!(
            "Imported {} into project {} ({}): {} created, {} updated, {} unchanged.",
            r.file, r.project_id, r.project, r.created, r.updated, r.unchanged
        );
        for m in r.ids.iter().filter(|m| m.action != "unchanged").take(SHOWN) {
            s.push_str(&format!(
                "\n  {:>10} → task {} ({})",
                m.from, m.task_id, m.action
            ));
        }
        let changed = r.created + r.updated;
        if changed > SHOWN {
            s.push_str(&format!(
                "\n  … {} more (--json lists every id)",
                changed - SHOWN
            ));
        }
        s
    })
}

pub fn export(ctx: &Ctx, cmd: ExportCmd, out: &mut impl Write) -> Result<()> {
    let (req, path) = match cmd {
        ExportCmd::Taskmaster {
            project_id,
            tag,
            out,
        } => (
            Export {
                source: Source::TaskMaster,
                project_id,
                tag,
            },
            out,
        ),
        ExportCmd::Beads { project_id, out } => (
            Export {
                source: Source::Beads,
                project_id,
                tag: None,
            },
            out,
        ),
    };
    let store = ctx.store()?;
    let text = interop::export(ctx, &store, req)?;
    match path {
        Some(p) => {
            crate::fsutil::write_atomic(&p, text.as_bytes())?;
            emit(out, ctx.json, &serde_json::json!({"written": p}), || {
                format!("Wrote {}", p.display())
            })
        }
        None => out
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("<stdout>", e)),
    }
}
