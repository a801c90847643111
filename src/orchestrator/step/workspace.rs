//! Where a step's change is made: the project's root when writes are off
//! (the tools keep the change in an overlay), the task's own git worktree
//! when writes are on in a git project, and the root itself outside git,
//! one writer at a time. A done task's worktree lands at the step's end.

use super::*;
use crate::store::Project;

impl<'a> StepRun<'a> {
    /// The directory the task's tools and checks work in.
    pub(super) async fn work_root(&mut self, project: &Project) -> Result<std::path::PathBuf> {
        let root = std::path::PathBuf::from(project.root.clone().unwrap_or_default());
        if !self.shared.opts.tools.writes_for(project.id) {
            return Ok(root);
        }
        if let Some(ws) = &self.workspace {
            return Ok(ws.root());
        }
        if let Some(ws) =
            super::super::land::Workspace::open(self.shared, &root, &self.task).await?
        {
            let path = ws.root();
            self.note(&format!(
                "Works on branch {} in its own worktree ({}).",
                ws.branch,
                ws.path.display()
            ))?;
            self.workspace = Some(ws);
            return Ok(path);
        }
        if self.writer.is_none() {
            self.writer = Some(self.one_writer(project.id).await?);
        }
        Ok(root)
    }

    /// Outside git two writers would edit the same files: the second waits.
    async fn one_writer(
        &self,
        project_id: i64,
    ) -> Result<(tokio::sync::MutexGuard<'a, ()>, std::fs::File)> {
        let here = self.shared.writers.lock().await;
        let path = self
            .shared
            .worktrees
            .join(format!("writer-project-{project_id}.lock"));
        let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
            }
            let f = std::fs::File::create(&path).map_err(|e| crate::Error::io(&path, e))?;
            f.lock().map_err(|e| crate::Error::io(&path, e))?;
            Ok(f)
        })
        .await
        .map_err(|e| {
            crate::Error::InvalidInput(format!("the writer lock's thread failed: {e}"))
        })??;
        Ok((here, file))
    }

    fn note(&mut self, text: &str) -> Result<()> {
        self.db
            .append_task_note(self.task.id, text, &self.shared.holder)?;
        Ok(())
    }

    /// A done task's change lands from its worktree (`land::land`); true
    /// when landing blocked the task (a conflict, or a check that fails
    /// after a rebase).
    pub(super) async fn land(&mut self, model: Option<&str>) -> Result<bool> {
        let Some(ws) = self.workspace.take() else {
            return Ok(false);
        };
        // The tools' copy of the tree is done with.
        self.toolbox = None;
        super::super::land::land(self.shared, self.db, &self.task, ws, model).await
    }

    /// A split task's attempt, or a parent closed by its subtasks: the
    /// worktree's uncommitted edits are not a change to land (the subtasks
    /// make theirs in worktrees of their own).
    pub(super) async fn discard_workspace(&mut self) {
        if let Some(ws) = self.workspace.take()
            && let Err(e) = ws.discard().await
        {
            self.emit(Progress::Warning {
                message: format!("task {}: its worktree stays ({e})", self.task.id),
            });
        }
    }

    /// A step that did not finish its task leaves its worktree for the
    /// next attempt when it holds work, and removes it when it is empty.
    pub(super) fn leave_workspace(&mut self) {
        if let Some(ws) = self.workspace.take()
            && let Err(e) = ws.repo.remove(Some(&ws.path), &ws.branch)
        {
            self.emit(Progress::Warning {
                message: format!("task {}: its worktree stays ({e})", self.task.id),
            });
        }
    }
}
