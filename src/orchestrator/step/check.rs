//! Running a task's checks on the step's change: protected paths first
//! (a change that touches one is refused and undone, and the model is told
//! why), then each command where the change is, each run recorded and
//! reported, until one fails.

use super::*;
use crate::store::CheckRecord;
use crate::tools::check::{CheckRun, tail, touched};

impl StepRun<'_> {
    /// What the task's checks need and do not have, said before any model
    /// is asked (a project without a root has nowhere to run them).
    pub(super) fn check_setup_problem(&self) -> Result<Option<String>> {
        if self.checks.is_empty() {
            return Ok(None);
        }
        let project = self.db.project(self.task.project_id)?;
        Ok(match project.root {
            None => Some(format!(
                "It has checks ({}) but project {} has no root directory to run them in; give it one (`llmclis project add NAME --root DIR` for a new project, or import its plans.md, whose folder becomes the root) and set the task back to pending.",
                self.checks.join(", "),
                project.id
            )),
            Some(_) => None,
        })
    }

    pub(super) async fn run_checks(&mut self, answer: &str) -> Result<Event> {
        self.adopt_winner(answer)?;
        self.check_attempt += 1;
        if self.toolbox.is_none() {
            // A role without the codebase tools: its checks run on the
            // project as it is (writes off: on a copy of it).
            let project = self.db.project(self.task.project_id)?;
            let root = self.work_root(&project).await?;
            let tools = &self.shared.opts.tools;
            match crate::tools::Toolbox::new(
                &root,
                tools.writes_for(project.id),
                Default::default(),
                std::time::Duration::from_secs(tools.timeout_secs.max(1)),
                tools.output_cap,
            ) {
                Ok(t) => self.toolbox = Some(t),
                Err(e) => {
                    let run = CheckRun {
                        command: "(setup)".into(),
                        exit_code: None,
                        passed: false,
                        seconds: 0.0,
                        output: e,
                    };
                    return self.checked(vec![run]);
                }
            }
        }
        let toolbox = self.toolbox.as_mut().expect("made above");
        let protected = self.shared.opts.tools.protected_for(&self.task);
        let changed = toolbox.changed_paths();
        let hit = touched(&protected, &changed)
            .map_err(|e| crate::Error::InvalidInput(format!("task {}: {e}", self.task.id)))?;
        if !hit.is_empty() {
            // Undone, so the next attempt starts from the real files.
            toolbox.revert(&hit).map_err(|e| {
                crate::Error::io(toolbox.sandbox().root(), std::io::Error::other(e))
            })?;
            let run = CheckRun {
                command: format!("protected: {}", hit.join(", ")),
                exit_code: None,
                passed: false,
                seconds: 0.0,
                output: format!(
                    "The change touched {}, which this task must not change (protected: {}). That part of the change was undone; make the checks pass by changing the code itself.",
                    hit.join(", "),
                    protected.join(", ")
                ),
            };
            self.record_check(&run)?;
            return self.checked(vec![run]);
        }
        let mut runs = Vec::new();
        for command in self.checks.clone() {
            self.emit(Progress::CheckStarted {
                step: self.number,
                task_id: self.task.id,
                command: command.clone(),
            });
            crate::crashpoint::here("check");
            let toolbox = self.toolbox.clone().expect("made above");
            let c = command.clone();
            let run = tokio::task::spawn_blocking(move || toolbox.run_check(&c))
                .await
                .unwrap_or_else(|e| CheckRun {
                    command: command.clone(),
                    exit_code: None,
                    passed: false,
                    seconds: 0.0,
                    output: format!("the check's thread failed: {e}"),
                });
            self.record_check(&run)?;
            let passed = run.passed;
            runs.push(run);
            if !passed {
                break;
            }
        }
        self.checked(runs)
    }

    fn record_check(&mut self, run: &CheckRun) -> Result<()> {
        self.db.record_check_run(&CheckRecord {
            id: 0,
            task_id: self.task.id,
            run_id: Some(self.shared.run_id),
            step_id: (self.step_id > 0).then_some(self.step_id),
            attempt: i64::from(self.check_attempt),
            command: run.command.clone(),
            exit_code: run.exit_code,
            passed: run.passed,
            seconds: run.seconds,
            output_tail: run.output.clone(),
            created_at: String::new(),
        })?;
        self.emit(Progress::CheckFinished {
            step: self.number,
            task_id: self.task.id,
            command: run.command.clone(),
            exit_code: run.exit_code,
            passed: run.passed,
            seconds: run.seconds,
        });
        Ok(())
    }

    /// The machine's event for the runs: passed when every one did; else
    /// the failing one's command, exit and output (also what the critic's
    /// test output shows).
    fn checked(&mut self, runs: Vec<CheckRun>) -> Result<Event> {
        let failed = runs.iter().find(|r| !r.passed);
        let output = match failed {
            Some(r) => format!(
                "`{}` {}:\n{}",
                r.command,
                match r.exit_code {
                    Some(c) => format!("exited {c}"),
                    None => "did not finish".to_string(),
                },
                tail(&r.output, 3_000)
            ),
            None => runs
                .iter()
                .map(|r| format!("`{}` passed in {:.1} s", r.command, r.seconds))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if let Some(r) = runs.last() {
            self.test_output = Some(format!("{}\n{}", output, tail(&r.output, 1_500)));
        }
        Ok(Event::Checked {
            passed: failed.is_none() && !runs.is_empty(),
            output,
        })
    }
}
