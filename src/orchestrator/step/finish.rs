//! How a step ends: the store's records in one transaction, the plan files,
//! the memories (raw interaction, summary, handoff) and the step's event.

use super::*;

impl StepRun<'_> {
    /// Saves a memory in SQLite, not yet indexed: the run's indexer embeds
    /// and indexes it off the step's path (or, without an index, the next
    /// process that opens one). Failures are warnings: the task's result is
    /// already safe in the store.
    pub(super) async fn remember(&mut self, text: &str, kind: &str, agent: &str) {
        self.remember_covering(text, kind, agent, &[]).await
    }

    /// `remember`, for a summary of the memories `covers` names.
    async fn remember_covering(&mut self, text: &str, kind: &str, agent: &str, covers: &[i64]) {
        let (project, task) = (self.task.project_id, Some(self.task.id));
        let saved =
            crate::memory::rollup::save_summary(self.db, text, project, task, kind, agent, covers);
        crate::crashpoint::here("memory_row");
        if let Err(e) = saved {
            self.emit(Progress::Warning {
                message: format!("task {}: {kind} memory not saved: {e}", self.task.id),
            });
        }
    }

    /// Fills in the memories a done task's step did not leave (its process
    /// was killed after the commit), from the step's recorded answer: the
    /// raw interaction, and the summary through the summarizer. The
    /// summarizer's call is recorded under that step.
    pub async fn backfill(mut self, step: &crate::store::RunStep, raw: bool, summary: bool) {
        self.step_id = step.id;
        let Some(answer) = step.detail.get("result").and_then(|r| r.as_str()) else {
            return;
        };
        let answer = answer.to_string();
        let model = step.model.clone().unwrap_or_else(|| "unknown".into());
        if raw {
            let text = format!("Task {}: {}\n{answer}", self.task.id, self.task.title);
            self.remember(&text, "raw_interaction", &model).await;
        }
        if summary && let Err(e) = self.summarize(&answer).await {
            self.emit(Progress::Warning {
                message: format!("task {}: no task summary ({e})", self.task.id),
            });
        }
    }

    pub(super) async fn finish(&mut self, effect: Effect, machine: &Step) -> Result<Outcome> {
        let holder = self.holder().to_string();
        let claim = self.claim.clone();
        let run_id = self.shared.run_id;
        let step_id = self.step_id;
        let cost = self.cost;
        let rounds = machine.rounds();
        let (outcome, status, note, model, detail) = match &effect {
            Effect::Complete {
                answer,
                model,
                rounds,
                review,
                verified,
            } => {
                let mut who = match model {
                    Some(m) => format!("Done by {m} in {rounds} round(s)"),
                    None => "Done".to_string(),
                };
                if *verified {
                    who.push_str(&format!(
                        ", verified by {}",
                        crate::docs::plans::code_spans_of(&self.checks)
                    ));
                } else {
                    who.push_str(" (unverified: no check ran)");
                }
                let said = if review.is_empty() {
                    String::new()
                } else {
                    format!("; the critic: {}", cut(&review.join("; "), 300))
                };
                (
                    Outcome::Done,
                    Status::Done,
                    format!(
                        "{who}{said}. Result: {} (full result: `llmclis task show {}`)",
                        cut(
                            &answer.split_whitespace().collect::<Vec<_>>().join(" "),
                            400
                        ),
                        self.task.id
                    ),
                    model.clone(),
                    json!({
                        "result": answer,
                        "review": review,
                        "verified": verified,
                        "diff": self.toolbox.as_ref().map(|t| t.diff()).filter(|d| !d.is_empty()),
                        "writes": self.toolbox.as_ref().map(|t| t.allow_writes),
                    }),
                )
            }
            Effect::Block {
                reason,
                last_answer,
            } => (
                Outcome::Blocked,
                Status::Blocked,
                reason.clone(),
                machine.current_model().map(str::to_string),
                json!({"reason": reason, "last_answer": last_answer}),
            ),
            Effect::Unreachable { reason } => (
                Outcome::Unreachable,
                Status::Pending,
                reason.clone(),
                None,
                json!({"reason": reason}),
            ),
            Effect::Release { reason } => (
                Outcome::Released,
                Status::Pending,
                reason.clone(),
                None,
                json!({"reason": reason}),
            ),
            Effect::Split { reason, subtasks } => (
                Outcome::Split,
                Status::Pending,
                String::new(),
                None,
                json!({"reason": reason, "subtasks": subtasks}),
            ),
            other => unreachable!("not terminal: {other:?}"),
        };
        let mut detail = detail;
        if let Some(f) = &self.fitted {
            // What the answering model saw, for `task show`.
            detail["context"] = json!(f);
        }
        if let Effect::Unreachable { reason } = &effect {
            self.emit(Progress::TaskWaits {
                step: self.number,
                task_id: self.task.id,
                reason: reason.clone(),
            });
        }
        let task = self.task.clone();
        let transition = self.db.batch(|s| {
            let mut note = note.clone();
            let mut detail = detail.clone();
            if let Effect::Split { reason, subtasks } = &effect {
                let (ids, split_note) =
                    crate::orchestrator::split::write(s, &task, subtasks, reason, &holder)?;
                note = split_note;
                detail["subtask_ids"] = json!(ids);
            }
            let t = s.finish_claim(
                task.id,
                &claim,
                &holder,
                status,
                json!({"run_id": run_id, "step": self.number, "outcome": outcome.as_str()}),
                Some(&note),
            )?;
            if t.is_none() {
                // The claim ran out under this step: another agent owns the
                // task now, so nothing of this step's ending is written.
                return Err(crate::Error::ClaimLost(task.id));
            }
            s.finish_step(
                step_id,
                outcome.recorded(),
                model.as_deref(),
                rounds,
                cost,
                &detail,
            )?;
            Ok(t)
        });
        // The claim is settled either way: the heartbeat stops renewing it.
        self.shared.settled(self.task.id);
        let transition = match transition {
            Ok(t) => t.expect("checked above"),
            Err(crate::Error::ClaimLost(_)) => {
                self.db.finish_step(
                    step_id,
                    crate::store::StepOutcome::Lost,
                    model.as_deref(),
                    rounds,
                    cost,
                    &json!({}),
                )?;
                self.emit(Progress::Warning {
                    message: format!(
                        "task {}: the lease ran out and another agent took the task; this step's result is dropped",
                        self.task.id
                    ),
                });
                self.emit_finished(Outcome::Lost, model, rounds);
                return Ok(Outcome::Lost);
            }
            Err(e) => return Err(e),
        };
        self.emit(Progress::StatusChange {
            step: self.number,
            task_id: self.task.id,
            from: transition.from.as_str().to_string(),
            to: transition.task.status.as_str().to_string(),
        });
        crate::crashpoint::here("step_committed");
        // plans.md and issues.md follow the store through the outbox the
        // commit filled; what cannot be written now stays pending for the
        // next command (the warning says so).
        match crate::docs::catchup::catch_up(self.db, self.task.project_id)
            .and_then(|c| c.into_result(self.task.project_id))
        {
            Ok(_) => {}
            Err(e) => self.emit(Progress::Warning {
                message: format!("task {}: {e}", self.task.id),
            }),
        }
        match &effect {
            Effect::Complete {
                answer,
                model: Some(m),
                ..
            } => {
                let raw = format!("Task {}: {}\n{answer}", self.task.id, self.task.title);
                self.remember(&raw, "raw_interaction", m).await;
                // The task is done and saved: a summary that cannot be made
                // is a warning, never a failed step.
                let mut cancel = self.shared.cancel.clone();
                crate::crashpoint::here("summary");
                let summarized = tokio::select! {
                    r = self.summarize(answer) => r,
                    _ = cancel.wait_for(|c| *c) => Err(crate::Error::InvalidInput("interrupted".into())),
                };
                if let Err(e) = summarized {
                    self.emit(Progress::Warning {
                        message: format!("task {}: no task summary ({e})", self.task.id),
                    });
                }
            }
            // Its subtasks are all done: the parent's own summary, from
            // theirs (a stage rolls up).
            Effect::Complete { model: None, .. } => {
                crate::crashpoint::here("rollup");
                if let Err(e) = self.summarize_parent().await {
                    self.emit(Progress::Warning {
                        message: format!("task {}: no roll-up summary ({e})", self.task.id),
                    });
                }
            }
            Effect::Block {
                last_answer: Some(a),
                ..
            } => {
                let raw = format!("Task {} (blocked): {}\n{a}", self.task.id, self.task.title);
                self.remember(&raw, "raw_interaction", &holder).await;
            }
            _ => {}
        }
        // The change lands once the store says done: a kill before this
        // leaves a done task's worktree that the next run lands.
        let mut outcome = outcome;
        match &effect {
            Effect::Complete { model: Some(_), .. } => {
                crate::crashpoint::here("land");
                if self.land(model.as_deref()).await? {
                    outcome = Outcome::Blocked;
                }
            }
            Effect::Complete { model: None, .. } | Effect::Split { .. } => {
                self.discard_workspace().await
            }
            _ => self.leave_workspace(),
        }
        self.shared.kick_indexer();
        self.emit_finished(outcome, model, rounds);
        Ok(outcome)
    }

    /// The task summary, through the summarizer role; a failure is a warning.
    pub(super) async fn summarize(&mut self, answer: &str) -> Result<()> {
        let text = self.shared.prompts.render(
            "summarizer",
            json!({
                "kind": "task_summary",
                "title": format!("Task {}: {}", self.task.id, self.task.title),
                "items": [cut(&self.task.description, RESULT_CHARS), cut(answer, 4 * RESULT_CHARS)],
                "max_words": 120,
            }),
        )?;
        let req = self.request("summarizer", text, None);
        match self
            .call_parsed("summarize", Role::Summarizer, req, nonempty)
            .await?
        {
            Ok(summary) => {
                // It covers the task's raw interactions: what a compaction
                // may take out of the index once it is rolled up.
                let raw = crate::memory::rollup::uncompacted_raw(self.db, self.task.id)?;
                self.remember_covering(&summary, "task_summary", "summarizer", &raw)
                    .await;
                super::super::rollup::compact(self.shared, self.db);
            }
            Err(e) => self.emit(Progress::Warning {
                message: format!("task {}: no task summary ({e})", self.task.id),
            }),
        }
        Ok(())
    }

    /// A done parent's summary from its subtasks' newest summaries (their
    /// results where a subtask has none), through the summarizer: a
    /// `task_summary` on the parent whose `covers` lists theirs. Without a
    /// usable summarizer answer, their summaries joined stand in, so a
    /// stage always has one.
    pub async fn summarize_parent(&mut self) -> Result<()> {
        let children = crate::memory::rollup::child_summaries(self.db, self.task.id)?;
        if children.is_empty() {
            return Ok(());
        }
        let mut items = Vec::new();
        let mut covers = Vec::new();
        for (child, summary) in &children {
            let text = match summary {
                Some(s) => {
                    covers.push(s.id);
                    s.text.clone()
                }
                None => self
                    .db
                    .task_steps(child.id)?
                    .iter()
                    .rev()
                    .find_map(|s| {
                        s.detail
                            .get("result")
                            .and_then(|r| r.as_str())
                            .map(String::from)
                    })
                    .unwrap_or_default(),
            };
            items.push(format!(
                "{} (task {}): {}",
                child.title,
                child.id,
                cut(&text, 2 * RESULT_CHARS)
            ));
        }
        let label = self
            .task
            .external_ref
            .as_deref()
            .map_or(format!("Task {}", self.task.id), |r| {
                format!("{r} (task {})", self.task.id)
            });
        let text = self.shared.prompts.render(
            "summarizer",
            json!({
                "kind": "stage_summary",
                "title": format!("{label}: {}, all {} subtasks done", self.task.title, children.len()),
                "items": items,
                "max_words": 200,
            }),
        )?;
        let req = self.request("summarizer", text, None);
        let summary = match self
            .call_parsed("summarize", Role::Summarizer, req, nonempty)
            .await?
        {
            Ok(s) => s,
            Err(e) => {
                self.emit(Progress::Warning {
                    message: format!(
                        "task {}: the summarizer gave no roll-up ({e}); its subtasks' summaries stand in",
                        self.task.id
                    ),
                });
                items.join("\n")
            }
        };
        crate::memory::rollup::save_summary(
            self.db,
            &summary,
            self.task.project_id,
            Some(self.task.id),
            "task_summary",
            "summarizer",
            &covers,
        )?;
        super::super::rollup::compact(self.shared, self.db);
        Ok(())
    }

    pub(super) fn emit_finished(&self, outcome: Outcome, model: Option<String>, rounds: u32) {
        self.emit(Progress::StepFinished {
            step: self.number,
            task_id: self.task.id,
            title: self.task.title.clone(),
            outcome,
            model,
            rounds,
            seconds: self.started.elapsed().as_secs_f64(),
            cost_usd: self.cost,
        });
    }
}
