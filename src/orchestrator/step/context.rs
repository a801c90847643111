//! What a step's prompts see: the material gathered whole (with memory),
//! and each request built from it, fitted to the model that answers.

use super::*;
use crate::orchestrator::context::{self, Vars};
use crate::orchestrator::fit::Fitted;

impl StepRun<'_> {
    pub(super) async fn build_context(&mut self) -> Result<()> {
        self.material = context::gather(self.db, &self.task)?;
        let Some(mem) = &self.shared.memory else {
            // No index: the summaries of the tree still come, from SQLite.
            let tree = crate::memory::rollup::tree_context(self.db, &self.task)?;
            self.material.vars.memory =
                crate::memory::rollup::within(tree, self.shared.opts.context_tokens)
                    .into_iter()
                    .map(|r| r.text)
                    .collect();
            return Ok(());
        };
        {
            match mem
                .context(
                    self.db,
                    self.task.id,
                    self.shared.opts.context_tokens,
                    self.shared.opts.memory_top_k,
                )
                .await
            {
                Ok(records) => {
                    self.material.vars.memory = records.into_iter().map(|r| r.text).collect()
                }
                Err(e) => self.emit(Progress::Warning {
                    message: format!("task {}: memory context skipped: {e}", self.task.id),
                }),
            }
        }
        Ok(())
    }

    /// The material fitted to `model`'s window for `template`, whose other
    /// variables `render` adds. Err: even the least of it does not fit the
    /// window with the answer's room (the text says by how much).
    pub(super) fn fitted<R>(
        &mut self,
        template: &str,
        model: &str,
        render: R,
    ) -> Result<std::result::Result<(String, Fitted), String>>
    where
        R: Fn(&Vars) -> Result<String>,
    {
        let registry = self.shared.caller.registry();
        let Some(m) = registry.model(model) else {
            return Err(crate::Error::InvalidInput(format!("unknown model {model}")));
        };
        let window = self.shared.caller.window(m);
        let (text, fitted, fits) = crate::orchestrator::routing::fit_for(
            &self.shared.prompts,
            template,
            &self.material,
            m,
            window,
            &render,
        )?;
        if !fits {
            return Ok(Err(format!(
                "the prompt needs about {} tokens even with everything that may be cut left out, more than {model}'s {window}-token window leaves beside the answer",
                fitted.tokens
            )));
        }
        if let Some(line) = fitted.describe()
            && self.fitted.as_ref().and_then(Fitted::describe).as_ref() != Some(&line)
        {
            tracing::info!(task = self.task.id, "{line}");
            self.emit(Progress::ContextCut {
                step: self.number,
                task_id: self.task.id,
                model: fitted.model.clone(),
                window,
                tokens: fitted.tokens,
                cut: fitted.cut.clone(),
            });
        }
        self.fitted = Some(fitted.clone());
        Ok(Ok((text, fitted)))
    }

    /// The executor's request for `model`: its template over the material
    /// fitted to that model. Err: it does not fit even cut to the least.
    pub(super) fn exec_request(
        &mut self,
        model: &str,
        critique: Option<String>,
        handoff: Option<String>,
    ) -> Result<std::result::Result<ChatRequest, String>> {
        #[derive(Serialize)]
        struct ExecVars<'v> {
            #[serde(flatten)]
            base: &'v Vars,
            critique: &'v Option<String>,
            handoff: &'v Option<String>,
        }
        let role = self.exec_role;
        let prompts = self.shared.prompts.clone();
        let fitted = self.fitted(role.as_str(), model, |v| {
            prompts.render(
                role.as_str(),
                ExecVars {
                    base: v,
                    critique: &critique,
                    handoff: &handoff,
                },
            )
        })?;
        Ok(fitted.map(|(text, _)| {
            let mut req = self.request(role.as_str(), text, None);
            req.role = Some(role);
            req
        }))
    }
}
