//! What a step's prompts see: the task, its parent, dependencies, plan
//! section, notes and memory; and the executor's request built from them.

use super::*;

impl StepRun<'_> {
    pub(super) async fn build_context(&mut self) -> Result<()> {
        let db = &*self.db;
        let task = &self.task;
        if let Some(pid) = task.parent_id {
            let p = db.task(pid)?;
            let summary = db.latest_summary(pid);
            self.vars.parent = Some(ParentView {
                title: p.title,
                description: cut(&p.description, RESULT_CHARS),
                summary,
            });
        }
        for dep in &task.depends_on {
            let d = db.task(*dep)?;
            self.vars.dependencies.push(DepView {
                id: d.id,
                title: d.title,
                result: cut(&db.result_of(*dep)?, RESULT_CHARS),
            });
        }
        let project = db.project(task.project_id)?;
        self.vars.plan_section =
            crate::docs::sync::plan_section(&project, task.external_ref.as_deref())
                .map(|s| cut(&s, 3 * RESULT_CHARS));
        let notes = db.notes(task.id)?;
        self.vars.notes = notes
            .iter()
            .skip(notes.len().saturating_sub(NOTES_SHOWN))
            .map(|n| NoteView {
                created_at: n.created_at.clone(),
                agent: n.agent.clone(),
                text: cut(&n.text, 500),
            })
            .collect();
        if let Some(mem) = &self.shared.memory {
            match mem
                .context(
                    db,
                    task.id,
                    self.shared.opts.context_tokens,
                    self.shared.opts.memory_top_k,
                )
                .await
            {
                Ok(records) => self.vars.memory = records.into_iter().map(|r| r.text).collect(),
                Err(e) => self.emit(Progress::Warning {
                    message: format!("task {}: memory context skipped: {e}", task.id),
                }),
            }
        }
        Ok(())
    }

    pub(super) fn exec_request(
        &self,
        critique: Option<String>,
        handoff: Option<String>,
    ) -> Result<ChatRequest> {
        #[derive(Serialize)]
        struct ExecVars<'v> {
            #[serde(flatten)]
            base: &'v Vars,
            critique: Option<String>,
            handoff: Option<String>,
        }
        let text = self.shared.prompts.render(
            self.exec_role.as_str(),
            ExecVars {
                base: &self.vars,
                critique,
                handoff,
            },
        )?;
        let mut req = self.request(self.exec_role.as_str(), text, None);
        req.role = Some(self.exec_role);
        Ok(req)
    }
}
