//! One step's decisions as a pure state machine: `handle(event) -> effects`.
//! No IO: the driver (`run.rs`, which the command line and the board start
//! through `app::run`) carries out each effect (a model call, a store
//! write) and feeds the outcome back as the next event. That keeps the pipeline's rules (plan, execute, critique, retry,
//! escalate, vote, block) testable without a network.

use crate::text::short;
use serde::{Deserialize, Serialize};

use crate::registry::Voting;

/// What the driver knows before the step starts.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The executor's models in escalation order (the router's chain).
    pub chain: Vec<String>,
    /// Each chain model's window (the smaller of the registry's and its
    /// server's); after an overflow only bigger ones are tried. Empty:
    /// unknown, every model counts as bigger.
    pub windows: Vec<u64>,
    /// Why the chain is empty, when it is.
    pub empty: Option<Empty>,
    /// Ask the planner first; it may split the task.
    pub plan: bool,
    /// Executor rounds per model before escalating.
    pub max_rounds: u32,
    pub voting: Option<Voting>,
    /// The task's subtasks, all done: the task closes with their results,
    /// with no model call.
    pub children: Vec<ChildResult>,
    /// Direct: the executor's first answer closes the task, with no critic
    /// (an evaluation's baseline).
    pub no_review: bool,
    /// The task has checks: every answer is checked (its change run
    /// against them) before the critic sees it, and only a passing check
    /// can make it done.
    pub checks: bool,
    /// Repairs on the same model after a failing check, before the next
    /// model takes over.
    pub check_rounds: u32,
    /// When every model's change failed the check, the planner may split
    /// the task, once.
    pub may_split: bool,
}

/// Why no model can take the task now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum Empty {
    /// The role's servers are down or cooling down (each model and why):
    /// the servers' state, not the task's; it waits.
    ServersDown(String),
    /// Only models that are down could hold the task's context (the whole
    /// sentence): it waits for them.
    WaitsForWindow(String),
    /// No usable model could take it, however long it waited (the whole
    /// sentence, or each model and why).
    NoModel(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildResult {
    pub id: i64,
    pub title: String,
    pub result: String,
}

/// The planner's answer (`prompts/planner.md`'s schema).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Plan {
    pub split: bool,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub subtasks: Vec<PlannedSubtask>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct PlannedSubtask {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub role: Option<String>,
    /// 0-based indexes of earlier subtasks.
    #[serde(default)]
    pub depends_on: Vec<i64>,
}

/// The critic's answer (`prompts/critic.md`'s schema).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Verdict {
    pub verdict: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub risks: Vec<String>,
}

impl Verdict {
    pub fn approves(&self) -> bool {
        self.verdict.eq_ignore_ascii_case("approve")
    }
}

/// One sampled candidate (voting), or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub text: String,
    /// The server stopped it at max_tokens.
    pub truncated: bool,
    pub completion_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started,
    Planned(Plan),
    PlanFailed(String),
    /// `by`: the model that answered, when a server fault moved the call
    /// past the one asked (None: the one asked).
    Answered {
        text: String,
        by: Option<String>,
    },
    /// No model from the one asked to the end of the chain gave an
    /// answer. `server`: a server's fault stood in the way (down, busy,
    /// hung, an error status, a cut stream), which is never the task's;
    /// otherwise the request's (refused as wrong) or the model's (no
    /// answer), and `last` is the model the call ended on.
    AnswerFailed {
        error: String,
        server: bool,
        last: Option<String>,
    },
    /// The executor's prompt did not fit its model's window.
    Overflowed {
        error: String,
    },
    /// The k answers, or why each failed; `server` when every one failed
    /// for a server's fault.
    Sampled {
        samples: Vec<Result<Sample, String>>,
        server: bool,
    },
    /// Each voter's pick, an index into the candidates; `None` when a voter
    /// gave no usable answer.
    Ballots(Vec<Option<usize>>),
    /// The checks ran on the change: passed, or the failing output (or why
    /// the change was refused before they ran).
    Checked {
        passed: bool,
        output: String,
    },
    Reviewed(Verdict),
    /// No critic gave a verdict: `server` when its servers failed (down,
    /// busy, erroring), otherwise every answer was unusable.
    CriticFailed {
        error: String,
        server: bool,
    },
    HandoffWritten(String),
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask the planner whether to split the task.
    Plan,
    /// One answer from `model`.
    Execute {
        model: String,
        round: u32,
        critique: Option<String>,
        handoff: Option<String>,
    },
    /// `n` answers from `model` at once, for voting.
    Sample {
        model: String,
        round: u32,
        n: u32,
        critique: Option<String>,
        handoff: Option<String>,
    },
    /// Run the task's checks on the change behind `answer` (protected
    /// paths first).
    Check {
        answer: String,
    },
    /// `ballots` voters each pick the best of `candidates`, at once.
    Vote {
        candidates: Vec<String>,
        ballots: u32,
    },
    Critique {
        answer: String,
    },
    /// Summarize what was tried for the next model.
    Handoff {
        from: String,
        to: String,
        tried: Vec<String>,
        /// After an overflow: the summary goes only to models with a
        /// bigger window than this.
        min_window: Option<u64>,
    },
    /// A line for the task's history.
    Note(String),
    // Terminal effects: exactly one ends every step.
    Split {
        reason: String,
        subtasks: Vec<PlannedSubtask>,
    },
    Complete {
        answer: String,
        model: Option<String>,
        rounds: u32,
        review: Vec<String>,
        /// Its checks passed on its change.
        verified: bool,
    },
    Block {
        reason: String,
        last_answer: Option<String>,
    },
    /// Back to pending, untouched by this step (Ctrl-C).
    Release {
        reason: String,
    },
    /// Back to pending because no model that could take the task is up,
    /// answered, or reviewed its answer: the servers' fault, not the
    /// task's. The run goes on with other tasks and leaves this one for a
    /// later run.
    Unreachable {
        reason: String,
    },
}

impl Effect {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Effect::Split { .. }
                | Effect::Complete { .. }
                | Effect::Block { .. }
                | Effect::Release { .. }
                | Effect::Unreachable { .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Planning,
    Executing,
    Sampling,
    Voting,
    Checking,
    Critiquing,
    HandingOff,
    Finished,
}

/// The most subtasks a planner may create for one task.
pub const MAX_SUBTASKS: usize = 12;

/// The planner's subtasks a split takes: titled ones, at most `max`, each
/// depending only on earlier kept ones (indexes remapped; no cycles, none
/// dangling). `task expand` and a run's split share it.
pub fn kept_subtasks(planned: Vec<PlannedSubtask>, max: usize) -> Vec<PlannedSubtask> {
    // The planner's indexes, mapped to the kept subtasks' positions.
    let mut kept_at: Vec<Option<i64>> = Vec::new();
    let mut subtasks: Vec<PlannedSubtask> = Vec::new();
    for s in planned {
        if s.title.trim().is_empty() || subtasks.len() == max {
            kept_at.push(None);
            continue;
        }
        kept_at.push(Some(subtasks.len() as i64));
        subtasks.push(s);
    }
    for (i, s) in subtasks.iter_mut().enumerate() {
        // Only earlier subtasks: no cycles, no dangling indexes.
        let mut deps: Vec<i64> = s
            .depends_on
            .iter()
            .filter_map(|d| {
                usize::try_from(*d)
                    .ok()
                    .and_then(|d| kept_at.get(d).copied().flatten())
            })
            .filter(|d| (*d as usize) < i)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        s.depends_on = deps;
    }
    subtasks
}

#[derive(Debug, Clone)]
pub struct Step {
    setup: Setup,
    phase: Phase,
    /// Index into `setup.chain`.
    model: usize,
    /// The model a handoff under way goes to.
    next: usize,
    /// Round on the current model, from 1.
    round: u32,
    /// Executor rounds over all models.
    rounds: u32,
    critique: Option<String>,
    handoff: Option<String>,
    /// One line per model given up on, for the handoff and the block note.
    tried: Vec<String>,
    answer: Option<String>,
    /// Voting: the distinct candidates and their votes.
    candidates: Vec<String>,
    votes: Vec<u32>,
    ballots: u32,
    /// Failing checks on the current model.
    check_fails: u32,
    /// The current answer's change passed the checks.
    checked: bool,
    /// The last failing check's output, for the block reason.
    last_check: Option<String>,
    /// The planner was asked to split after every model failed the check.
    split_tried: bool,
    /// A parent's roll-up is being checked: one repair, then blocked.
    rolling_up: bool,
    parent_fix_tried: bool,
}

fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Step {
    pub fn new(setup: Setup) -> Step {
        Step {
            setup,
            phase: Phase::Idle,
            model: 0,
            next: 0,
            round: 1,
            rounds: 0,
            critique: None,
            handoff: None,
            tried: Vec::new(),
            answer: None,
            candidates: Vec::new(),
            votes: Vec::new(),
            ballots: 0,
            check_fails: 0,
            checked: false,
            last_check: None,
            split_tried: false,
            rolling_up: false,
            parent_fix_tried: false,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The model working on the task now.
    pub fn current_model(&self) -> Option<&str> {
        self.setup.chain.get(self.model).map(String::as_str)
    }

    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The next effects. Events that do not fit the phase (a late answer
    /// after a cancel) change nothing and give no effects.
    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        if self.phase == Phase::Finished {
            return Vec::new();
        }
        match (self.phase, event) {
            (_, Event::Cancelled) => self.finish(Effect::Release {
                reason: "the run was interrupted before this step finished; the task is back in the queue".into(),
            }),
            (Phase::Idle, Event::Started) => self.start(),
            (Phase::Planning, Event::Planned(plan)) if self.split_tried => {
                self.split_rescue(plan)
            }
            (Phase::Planning, Event::PlanFailed(e)) if self.split_tried => {
                let why = format!("the planner gave no usable answer ({})", short(&e, 200));
                self.check_blocked(&why)
            }
            (Phase::Planning, Event::Planned(plan)) => self.planned(plan),
            (Phase::Planning, Event::PlanFailed(e)) => {
                let mut out = vec![Effect::Note(format!(
                    "The planner gave no usable answer ({}); working on the task as it is.",
                    short(&e, 200)
                ))];
                out.extend(self.execute());
                out
            }
            (Phase::Executing, Event::Answered { text, by }) if self.setup.no_review => {
                self.adopt(by);
                self.answer = Some(text.clone());
                self.finish(Effect::Complete {
                    answer: text,
                    model: self.current_model().map(str::to_string),
                    rounds: self.rounds,
                    review: Vec::new(),
                    verified: false,
                })
            }
            (Phase::Executing, Event::Answered { text, by }) if !text.trim().is_empty() => {
                self.adopt(by);
                self.answer = Some(text.clone());
                self.judge(text)
            }
            (Phase::Checking, Event::Checked { passed, output }) => self.checked(passed, output),
            (Phase::Executing, Event::Answered { by, .. }) => {
                self.adopt(by);
                self.escalate("it answered with nothing")
            }
            (Phase::Executing, Event::AnswerFailed { error, server, .. }) if server => {
                self.servers_failed(&error)
            }
            (Phase::Executing, Event::AnswerFailed { error, last, .. }) => {
                let why = format!("it failed: {}", short(&error, 200));
                self.adopt_as(last, &why);
                self.escalate(&why)
            }
            (Phase::Executing, Event::Overflowed { error }) => self.overflowed(&error),
            (Phase::Sampling, Event::Sampled { samples, server })
                if server && samples.iter().all(Result::is_err) =>
            {
                let why = samples
                    .into_iter()
                    .find_map(Result::err)
                    .unwrap_or_default();
                self.servers_failed(&why)
            }
            (Phase::Sampling, Event::Sampled { samples, .. }) => self.sampled(samples),
            (Phase::Voting, Event::Ballots(picks)) => self.ballots(picks),
            (Phase::Critiquing, Event::Reviewed(v)) => self.reviewed(v),
            (Phase::Critiquing, Event::CriticFailed { error, server }) => {
                self.critic_failed(&error, server)
            }
            (Phase::HandingOff, Event::HandoffWritten(text)) => {
                self.model = self.next;
                self.round = 1;
                self.check_fails = 0;
                self.critique = None;
                self.handoff = Some(text);
                self.execute()
            }
            _ => Vec::new(),
        }
    }

    fn finish(&mut self, effect: Effect) -> Vec<Effect> {
        self.phase = Phase::Finished;
        vec![effect]
    }

    /// No critic gave a verdict. A change that passed its check is done
    /// (the check is the fact, the review an opinion). Otherwise: back to
    /// the queue when the critic's servers failed, blocked when its models
    /// answered but never with a usable verdict (a setup to fix, which
    /// waiting does not).
    fn critic_failed(&mut self, error: &str, server: bool) -> Vec<Effect> {
        let why = short(error, 200);
        if self.checked {
            return self.finish(Effect::Complete {
                answer: self.answer.clone().unwrap_or_default(),
                model: self.current_model().map(str::to_string),
                rounds: self.rounds,
                review: vec![format!(
                    "no critic could review it ({why}); its check passed"
                )],
                verified: true,
            });
        }
        if server {
            return self.finish(Effect::Unreachable {
                reason: format!(
                    "No critic could review the answer ({why}); not the task's fault, so it is back in the queue. Check the critic's models (`llmclis models health`). The answer began: {}",
                    short(self.answer.as_deref().unwrap_or(""), 300)
                ),
            });
        }
        self.finish(Effect::Block {
            reason: format!(
                "No critic gave a usable verdict ({why}); the answer is kept with the task. Give the critic role a model that answers in JSON reliably (`llmclis route explain` shows its chain), then set the task back to pending."
            ),
            last_answer: self.answer.clone(),
        })
    }

    /// The call moved past a failing server to a later model of the chain,
    /// which now works on the task.
    fn adopt(&mut self, by: Option<String>) {
        self.adopt_as(by, "its server failed; the next model took over");
    }

    /// `adopt`, saying `why` of each model the call moved past.
    fn adopt_as(&mut self, by: Option<String>, why: &str) {
        let Some(i) = by.and_then(|m| self.setup.chain.iter().position(|c| *c == m)) else {
            return;
        };
        if i > self.model {
            for skipped in &self.setup.chain[self.model..i] {
                self.tried.push(format!("{skipped}: {why}"));
            }
            self.model = i;
            self.round = 1;
            self.check_fails = 0;
        }
    }

    /// Every model from the current one on failed for its server's fault:
    /// back to the queue, never blocked.
    fn servers_failed(&mut self, error: &str) -> Vec<Effect> {
        let from = self.current_model().unwrap_or("the chain").to_string();
        self.tried.push(format!(
            "{from} and the models after it: {}",
            short(error, 300)
        ));
        self.finish(Effect::Unreachable {
            reason: format!(
                "The model servers failed, not the task ({}); it is back in the queue. Start or fix the servers (`llmclis models health` shows each) and run again.",
                self.tried.join("; ")
            ),
        })
    }

    fn start(&mut self) -> Vec<Effect> {
        if !self.setup.children.is_empty() {
            let answer = self
                .setup
                .children
                .iter()
                .map(|c| format!("- {} (task {}): {}", c.title, c.id, short(&c.result, 300)))
                .collect::<Vec<_>>()
                .join("\n");
            let answer = format!(
                "All {} subtasks are done:\n{answer}",
                self.setup.children.len()
            );
            if self.setup.checks {
                // Its own check, on its subtasks' combined change.
                self.rolling_up = true;
                self.answer = Some(answer.clone());
                self.phase = Phase::Checking;
                return vec![Effect::Check { answer }];
            }
            return self.finish(Effect::Complete {
                answer,
                model: None,
                rounds: 0,
                review: Vec::new(),
                verified: false,
            });
        }
        if self.setup.chain.is_empty() {
            return self.finish(match self.setup.empty.clone() {
                Some(Empty::ServersDown(why)) => Effect::Unreachable {
                    reason: format!(
                        "No model server for this task is up ({why}); the task is back in the queue."
                    ),
                },
                Some(Empty::WaitsForWindow(why)) => Effect::Unreachable {
                    reason: format!("{why}; the task is back in the queue."),
                },
                Some(Empty::NoModel(why)) => Effect::Block {
                    reason: format!("No model can take this task: {why}"),
                    last_answer: None,
                },
                None => Effect::Block {
                    reason: "No model can take this task: the role has no usable model".into(),
                    last_answer: None,
                },
            });
        }
        if self.setup.plan {
            self.phase = Phase::Planning;
            return vec![Effect::Plan];
        }
        self.execute()
    }

    fn planned(&mut self, plan: Plan) -> Vec<Effect> {
        let subtasks = kept_subtasks(plan.subtasks, MAX_SUBTASKS);
        if plan.split && subtasks.len() >= 2 {
            return self.finish(Effect::Split {
                reason: plan.reason,
                subtasks,
            });
        }
        let mut out = vec![Effect::Note(format!(
            "The planner kept the task whole: {}",
            if plan.reason.trim().is_empty() {
                "it fits one step".to_string()
            } else {
                short(&plan.reason, 300)
            }
        ))];
        out.extend(self.execute());
        out
    }

    fn execute(&mut self) -> Vec<Effect> {
        let model = self.setup.chain[self.model].clone();
        self.rounds += 1;
        match self.setup.voting {
            Some(v) => {
                self.phase = Phase::Sampling;
                self.candidates.clear();
                self.votes.clear();
                self.ballots = 0;
                vec![Effect::Sample {
                    model,
                    round: self.round,
                    n: v.candidates,
                    critique: self.critique.clone(),
                    handoff: self.handoff.clone(),
                }]
            }
            None => {
                self.phase = Phase::Executing;
                vec![Effect::Execute {
                    model,
                    round: self.round,
                    critique: self.critique.clone(),
                    handoff: self.handoff.clone(),
                }]
            }
        }
    }

    /// Gives up on the current model: a handoff to the next, or blocked
    /// when the chain is exhausted.
    fn escalate(&mut self, why: &str) -> Vec<Effect> {
        self.escalate_to(why, self.model + 1, None)
    }

    /// The prompt did not fit: the next model is the first with a bigger
    /// window, and so is the model writing the handoff.
    fn overflowed(&mut self, error: &str) -> Vec<Effect> {
        let window = |i: usize| self.setup.windows.get(i).copied();
        let Some(w) = window(self.model) else {
            return self.escalate(&format!("its window is too small: {}", short(error, 200)));
        };
        let next = (self.model + 1..self.setup.chain.len())
            .find(|&i| window(i).is_none_or(|v| v > w))
            .unwrap_or(self.setup.chain.len());
        self.escalate_to(
            &format!(
                "the prompt does not fit its {w}-token window ({})",
                short(error, 160)
            ),
            next,
            Some(w),
        )
    }

    fn escalate_to(&mut self, why: &str, next: usize, min_window: Option<u64>) -> Vec<Effect> {
        let from = self.setup.chain[self.model].clone();
        self.tried.push(format!("{from}: {why}"));
        for skipped in self.setup.chain.iter().take(next).skip(self.model + 1) {
            self.tried
                .push(format!("{skipped}: passed over, its window is no bigger"));
        }
        match self.setup.chain.get(next) {
            // Nothing came back from this model (down, busy, skipped, a
            // failed call): there is nothing new to hand off, so the next
            // model starts at once with whatever handoff there already was.
            Some(to) if self.answer.is_none() && self.critique.is_none() => {
                let mut out = vec![Effect::Note(format!(
                    "Escalating from {from} to {to}: {why}."
                ))];
                self.model = next;
                self.round = 1;
                self.check_fails = 0;
                out.extend(self.execute());
                out
            }
            Some(to) => {
                self.phase = Phase::HandingOff;
                self.next = next;
                vec![
                    Effect::Note(format!("Escalating from {from} to {to}: {why}.")),
                    Effect::Handoff {
                        from,
                        to: to.clone(),
                        tried: self.tried.clone(),
                        min_window,
                    },
                ]
            }
            None if self.last_check.is_some() && self.setup.may_split && !self.split_tried => {
                self.split_tried = true;
                self.phase = Phase::Planning;
                vec![
                    Effect::Note(
                        "Every model's change failed the check; the planner may split the task."
                            .into(),
                    ),
                    Effect::Plan,
                ]
            }
            None if self.last_check.is_some() => {
                self.check_blocked("every model in the chain was tried")
            }
            None => self.finish(Effect::Block {
                reason: format!(
                    "Every model in the chain was tried. {}",
                    self.tried.join("; ")
                ),
                last_answer: self.answer.clone(),
            }),
        }
    }

    /// An answer goes to its checks first when the task has any, then to
    /// the critic.
    fn judge(&mut self, answer: String) -> Vec<Effect> {
        self.checked = false;
        if self.setup.checks {
            self.phase = Phase::Checking;
            vec![Effect::Check { answer }]
        } else {
            self.phase = Phase::Critiquing;
            vec![Effect::Critique { answer }]
        }
    }

    fn checked(&mut self, passed: bool, output: String) -> Vec<Effect> {
        if passed {
            self.checked = true;
            self.last_check = None;
            let answer = self.answer.clone().unwrap_or_default();
            if self.rolling_up && !self.parent_fix_tried {
                return self.finish(Effect::Complete {
                    answer,
                    model: None,
                    rounds: 0,
                    review: Vec::new(),
                    verified: true,
                });
            }
            self.phase = Phase::Critiquing;
            return vec![Effect::Critique { answer }];
        }
        self.last_check = Some(output.clone());
        let feedback = format!(
            "- The task's check failed on your change. Fix the code so that it passes; do not change the check or the files it protects. Its output ends:\n```\n{}\n```\n",
            output.trim_end()
        );
        if self.rolling_up {
            if self.parent_fix_tried || self.setup.chain.is_empty() {
                return self.check_blocked("its subtasks' combined change fails it");
            }
            self.parent_fix_tried = true;
            self.critique = Some(feedback);
            let mut out = vec![Effect::Note(format!(
                "Its subtasks are done but its own check fails on their combined change; {} gets one try to fix it.",
                self.setup.chain[self.model]
            ))];
            out.extend(self.execute());
            return out;
        }
        self.check_fails += 1;
        let model = self.setup.chain[self.model].clone();
        if self.check_fails <= self.setup.check_rounds {
            self.critique = Some(feedback);
            let mut out = vec![Effect::Note(format!(
                "The check failed on {model}'s change (repair {} of {}); it gets the output.",
                self.check_fails, self.setup.check_rounds
            ))];
            out.extend(self.execute());
            return out;
        }
        self.critique = None;
        self.escalate(&format!(
            "its change failed the check {} time(s): {}",
            self.check_fails,
            short(&output, 300)
        ))
    }

    /// The planner's answer after every model failed the check: a split,
    /// or blocked.
    fn split_rescue(&mut self, plan: Plan) -> Vec<Effect> {
        let out = self.planned(plan);
        if matches!(out.last(), Some(Effect::Split { .. })) {
            return out;
        }
        self.phase = Phase::Planning;
        self.check_blocked("every model in the chain was tried and the planner kept it whole")
    }

    fn check_blocked(&mut self, why: &str) -> Vec<Effect> {
        let output = self.last_check.clone().unwrap_or_default();
        self.finish(Effect::Block {
            reason: format!(
                "Its check still fails ({why}). {}\nThe check's output ends:\n{}",
                self.tried.join("; "),
                output.trim_end()
            ),
            last_answer: self.answer.clone(),
        })
    }

    fn reviewed(&mut self, v: Verdict) -> Vec<Effect> {
        let answer = self.answer.clone().unwrap_or_default();
        if v.approves() {
            return self.finish(Effect::Complete {
                answer,
                model: self.current_model().map(str::to_string),
                rounds: self.rounds,
                review: v.reasons,
                verified: self.setup.checks && self.checked,
            });
        }
        let mut critique = String::new();
        for r in &v.reasons {
            critique.push_str(&format!("- {r}\n"));
        }
        for r in &v.risks {
            critique.push_str(&format!("- Risk: {r}\n"));
        }
        if critique.is_empty() {
            critique = "- The reviewer asked for a revision without saying why; check the task's requirements again.\n".into();
        }
        let summary = short(&v.reasons.join("; "), 300);
        let model = self.setup.chain[self.model].clone();
        let mut out = vec![Effect::Note(format!(
            "The critic asked {model} for changes (round {} of {}): {summary}",
            self.round, self.setup.max_rounds
        ))];
        if self.round < self.setup.max_rounds {
            self.round += 1;
            self.critique = Some(critique);
            out.extend(self.execute());
        } else {
            out.extend(self.escalate(&format!(
                "after {} rounds the critic still asked for changes ({summary}); its last answer began: {}",
                self.round,
                short(&answer, 200)
            )));
        }
        out
    }

    fn sampled(&mut self, samples: Vec<Result<Sample, String>>) -> Vec<Effect> {
        let v = self.setup.voting.expect("sampling only with voting");
        let total = samples.len();
        let mut dropped = Vec::new();
        self.candidates.clear();
        self.votes.clear();
        for s in samples {
            let why = match &s {
                Err(e) => Some(format!("failed ({})", short(e, 80))),
                Ok(s) if s.text.trim().is_empty() => Some("empty".into()),
                Ok(s) if s.truncated => Some("cut off at max_tokens".into()),
                Ok(s) if s.completion_tokens > v.max_tokens => Some(format!(
                    "overlong ({} > {} tokens)",
                    s.completion_tokens, v.max_tokens
                )),
                Ok(_) => None,
            };
            match (why, s) {
                (Some(why), _) => dropped.push(why),
                (None, Ok(s)) => {
                    let key = normalized(&s.text);
                    match self.candidates.iter().position(|c| normalized(c) == key) {
                        Some(i) => self.votes[i] += 1,
                        None => {
                            self.candidates.push(s.text);
                            self.votes.push(1);
                        }
                    }
                }
                (None, Err(_)) => unreachable!("errors are always red-flagged"),
            }
        }
        let mut out = Vec::new();
        if !dropped.is_empty() {
            out.push(Effect::Note(format!(
                "Voting: {} of {total} answers red-flagged and dropped: {}.",
                dropped.len(),
                dropped.join(", ")
            )));
        }
        if self.candidates.is_empty() {
            out.extend(self.escalate(&format!("all {total} sampled answers were red-flagged")));
            return out;
        }
        out.extend(self.decide_or_vote());
        out
    }

    fn ballots(&mut self, picks: Vec<Option<usize>>) -> Vec<Effect> {
        self.ballots += picks.len() as u32;
        for i in picks.into_iter().flatten() {
            if let Some(v) = self.votes.get_mut(i) {
                *v += 1;
            }
        }
        self.decide_or_vote()
    }

    /// The leader's index and its lead over the runner-up.
    fn lead(&self) -> (usize, u32) {
        let mut order: Vec<usize> = (0..self.votes.len()).collect();
        // Most votes first; ties go to the earlier answer.
        order.sort_by(|a, b| self.votes[*b].cmp(&self.votes[*a]).then(a.cmp(b)));
        let first = self.votes[order[0]];
        let second = order.get(1).map_or(0, |i| self.votes[*i]);
        (order[0], first - second)
    }

    fn decide_or_vote(&mut self) -> Vec<Effect> {
        let v = self.setup.voting.expect("voting");
        let (leader, margin) = self.lead();
        let mut out = Vec::new();
        if self.candidates.len() > 1 && margin < v.ahead_by {
            if self.ballots < v.max_votes() {
                let need = (v.ahead_by - margin).min(v.max_votes() - self.ballots);
                self.phase = Phase::Voting;
                out.push(Effect::Vote {
                    candidates: self.candidates.clone(),
                    ballots: need.max(1),
                });
                return out;
            }
            out.push(Effect::Note(format!(
                "Voting: no answer led by {} after {} ballots; taking the one with the most votes ({} of {}).",
                v.ahead_by,
                self.ballots,
                self.votes[leader],
                self.votes.iter().sum::<u32>()
            )));
        }
        let answer = self.candidates[leader].clone();
        self.answer = Some(answer.clone());
        out.extend(self.judge(answer));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_escalates_only_to_a_bigger_window_handoff_included() {
        let mut s = Step::new(Setup {
            windows: vec![8192, 4096, 8192, 32768],
            ..setup(&["a", "small", "same", "big"])
        });
        s.handle(Event::Started);
        // A first answer, sent back: the revision (with the critique in its
        // prompt) overflows, so there is a handoff to write.
        s.handle(answered("v1"));
        s.handle(Event::Reviewed(verdict("revise", &["too short"])));
        let e = s.handle(Event::Overflowed {
            error: "maximum context length is 8192".into(),
        });
        assert!(
            matches!(&e[..], [Effect::Note(n), Effect::Handoff { to, min_window: Some(8192), tried, .. }]
                if n.contains("from a to big") && to == "big" && tried.len() == 3),
            "{e:?}"
        );
        let e = s.handle(Event::HandoffWritten("h".into()));
        assert!(matches!(&e[..], [Effect::Execute { model, .. }] if model == "big"));
        // The biggest overflowing too: nothing bigger is left; blocked.
        let e = s.handle(Event::Overflowed {
            error: "too long".into(),
        });
        assert!(
            matches!(&e[..], [Effect::Block { reason, .. }] if reason.contains("passed over")),
            "{e:?}"
        );
    }

    #[test]
    fn a_direct_step_takes_the_first_answer_without_a_critic() {
        let mut s = Step::new(Setup {
            no_review: true,
            ..setup(&["a", "b"])
        });
        s.handle(Event::Started);
        let e = s.handle(answered("done it"));
        assert!(
            matches!(&e[..], [Effect::Complete { answer, review, .. }] if answer == "done it" && review.is_empty()),
            "{e:?}"
        );
        assert!(s.is_finished());
    }

    fn setup(chain: &[&str]) -> Setup {
        Setup {
            chain: chain.iter().map(|s| s.to_string()).collect(),
            max_rounds: 3,
            ..Default::default()
        }
    }

    fn verdict(v: &str, reasons: &[&str]) -> Verdict {
        Verdict {
            verdict: v.into(),
            reasons: reasons.iter().map(|s| s.to_string()).collect(),
            risks: vec![],
        }
    }

    fn answered(t: &str) -> Event {
        Event::Answered {
            text: t.into(),
            by: None,
        }
    }

    fn requests(effects: &[Effect]) -> Vec<&Effect> {
        effects
            .iter()
            .filter(|e| !matches!(e, Effect::Note(_)))
            .collect()
    }

    #[test]
    fn execute_critique_approve_completes() {
        let mut s = Step::new(setup(&["a", "b"]));
        let e = s.handle(Event::Started);
        assert!(
            matches!(&e[..], [Effect::Execute { model, round: 1, critique: None, handoff: None }] if model == "a")
        );
        let e = s.handle(answered("the fix"));
        assert_eq!(
            e,
            [Effect::Critique {
                answer: "the fix".into()
            }]
        );
        let e = s.handle(Event::Reviewed(verdict("approve", &["correct"])));
        assert_eq!(
            e,
            [Effect::Complete {
                answer: "the fix".into(),
                model: Some("a".into()),
                rounds: 1,
                review: vec!["correct".into()],
                verified: false,
            }]
        );
        assert!(s.is_finished());
        assert!(s.handle(answered("late")).is_empty());
    }

    #[test]
    fn revise_twice_then_approve_sends_the_critique_back() {
        let mut s = Step::new(setup(&["a"]));
        s.handle(Event::Started);
        s.handle(answered("v1"));
        let e = s.handle(Event::Reviewed(verdict("revise", &["tabs vanish"])));
        assert!(matches!(&e[0], Effect::Note(n) if n.contains("round 1 of 3")));
        assert!(
            matches!(&e[1], Effect::Execute { round: 2, critique: Some(c), .. } if c.contains("- tabs vanish"))
        );
        s.handle(answered("v2"));
        let e = s.handle(Event::Reviewed(verdict("revise", &["still"])));
        assert!(matches!(&e[1], Effect::Execute { round: 3, .. }));
        s.handle(answered("v3"));
        let e = s.handle(Event::Reviewed(verdict("approve", &[])));
        assert!(matches!(&e[..], [Effect::Complete { answer, rounds: 3, .. }] if answer == "v3"));
    }

    #[test]
    fn too_many_revisions_escalate_with_a_handoff_then_block_at_the_end() {
        let mut s = Step::new(Setup {
            max_rounds: 1,
            ..setup(&["a", "b"])
        });
        s.handle(Event::Started);
        s.handle(answered("v1"));
        let e = s.handle(Event::Reviewed(verdict("revise", &["wrong"])));
        let r = requests(&e);
        assert!(
            matches!(r[..], [Effect::Handoff { from, to, tried, min_window: None }] if from == "a" && to == "b" && tried[0].contains("wrong"))
        );
        let e = s.handle(Event::HandoffWritten(
            "a tried v1; the critic said wrong".into(),
        ));
        assert!(
            matches!(&e[..], [Effect::Execute { model, round: 1, critique: None, handoff: Some(h) }] if model == "b" && h.contains("tried v1"))
        );
        let e = s.handle(Event::AnswerFailed {
            error: "request refused (400): bad schema".into(),
            server: false,
            last: None,
        });
        // b's request was refused after a's rejected answer: blocked,
        // saying why, keeping a's answer.
        assert!(
            matches!(&e[..], [Effect::Block { reason, last_answer: Some(a) }] if reason.contains("after 1 rounds") && reason.contains("bad schema") && a == "v1"),
            "{e:?}"
        );
    }

    #[test]
    fn a_servers_fault_after_a_rejected_answer_sends_the_task_back_never_blocks() {
        let mut s = Step::new(Setup {
            max_rounds: 1,
            ..setup(&["a", "b"])
        });
        s.handle(Event::Started);
        s.handle(answered("v1"));
        s.handle(Event::Reviewed(verdict("revise", &["wrong"])));
        s.handle(Event::HandoffWritten("h".into()));
        let e = s.handle(Event::AnswerFailed {
            error: "server error 500: EngineCore died".into(),
            server: true,
            last: None,
        });
        assert!(
            matches!(&e[..], [Effect::Unreachable { reason }] if reason.contains("not the task") && reason.contains("EngineCore died")),
            "{e:?}"
        );
    }

    #[test]
    fn a_critic_that_cannot_be_reached_never_blocks_a_task() {
        let mut s = Step::new(Setup {
            checks: true,
            ..setup(&["a"])
        });
        s.handle(Event::Started);
        s.handle(answered("the fix"));
        s.handle(Event::Checked {
            passed: true,
            output: String::new(),
        });
        let e = s.handle(Event::CriticFailed {
            error: "TGI 429 Model is overloaded".into(),
            server: true,
        });
        assert!(
            matches!(&e[..], [Effect::Complete { verified: true, review, .. }] if review[0].contains("no critic could review it")),
            "a passed check is done without the review: {e:?}"
        );
        // No check: back to the queue for a server, blocked for a critic
        // that answers but never usably.
        for (server, blocked) in [(true, false), (false, true)] {
            let mut s = Step::new(setup(&["a"]));
            s.handle(Event::Started);
            s.handle(answered("the fix"));
            let e = s.handle(Event::CriticFailed {
                error: "no JSON object in the answer".into(),
                server,
            });
            assert_eq!(
                matches!(&e[..], [Effect::Block { .. }]),
                blocked,
                "server {server}: {e:?}"
            );
            assert_eq!(
                matches!(&e[..], [Effect::Unreachable { reason }] if reason.contains("not the task's fault") && reason.contains("the fix")),
                !blocked,
                "server {server}: {e:?}"
            );
        }
    }

    #[test]
    fn an_answer_from_a_later_model_makes_it_the_one_working() {
        let mut s = Step::new(setup(&["a", "b", "c"]));
        s.handle(Event::Started);
        s.handle(Event::Answered {
            text: "v1".into(),
            by: Some("b".into()),
        });
        assert_eq!(s.current_model(), Some("b"));
        let e = s.handle(Event::Reviewed(verdict("approve", &[])));
        assert!(
            matches!(&e[..], [Effect::Complete { model: Some(m), .. }] if m == "b"),
            "{e:?}"
        );
    }

    #[test]
    fn a_failed_model_passes_on_at_once_and_an_exhausted_chain_blocks_with_the_reasons() {
        let mut s = Step::new(setup(&["a", "b"]));
        s.handle(Event::Started);
        let e = s.handle(Event::AnswerFailed {
            error: "request refused (400): no such parameter".into(),
            server: false,
            last: None,
        });
        assert!(matches!(&e[0], Effect::Note(n) if n.contains("Escalating from a to b")));
        // Nothing came back from a: nothing to hand off, b starts at once.
        assert!(
            matches!(&e[1], Effect::Execute { model, handoff: None, .. } if model == "b"),
            "{e:?}"
        );
        let e = s.handle(Event::AnswerFailed {
            error: "the model gave no answer without tools".into(),
            server: false,
            last: None,
        });
        match &e[..] {
            [Effect::Block { reason, .. }] => {
                assert!(reason.contains("a: it failed: request refused"), "{reason}");
                assert!(
                    reason.contains("b: it failed: the model gave no answer"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_model_blocks_at_once_and_done_subtasks_roll_up_without_a_call() {
        let mut s = Step::new(Setup {
            empty: Some(Empty::NoModel(
                "offline, and every coder model is an API model".into(),
            )),
            ..setup(&[])
        });
        assert!(
            matches!(&s.handle(Event::Started)[..], [Effect::Block { reason, .. }] if reason.contains("offline"))
        );
        let mut s = Step::new(Setup {
            children: vec![ChildResult {
                id: 4,
                title: "Parse".into(),
                result: "parser added".into(),
            }],
            ..setup(&["a"])
        });
        assert!(
            matches!(&s.handle(Event::Started)[..], [Effect::Complete { answer, model: None, .. }] if answer.contains("Parse (task 4): parser added"))
        );
    }

    #[test]
    fn the_planner_splits_or_keeps_the_task() {
        let mut s = Step::new(Setup {
            plan: true,
            ..setup(&["a"])
        });
        assert_eq!(s.handle(Event::Started), [Effect::Plan]);
        let sub = |t: &str, deps: Vec<i64>| PlannedSubtask {
            title: t.into(),
            description: String::new(),
            role: None,
            depends_on: deps,
        };
        let e = s.handle(Event::Planned(Plan {
            split: true,
            reason: "two parts".into(),
            subtasks: vec![
                sub("one", vec![1, -1]),
                sub("two", vec![0, 0, 5]),
                sub(" ", vec![]),
            ],
        }));
        match &e[..] {
            [Effect::Split { subtasks, .. }] => {
                assert_eq!(subtasks.len(), 2, "blank titles dropped");
                assert!(
                    subtasks[0].depends_on.is_empty(),
                    "forward and negative refs dropped"
                );
                assert_eq!(subtasks[1].depends_on, [0]);
            }
            other => panic!("{other:?}"),
        }
        let mut s = Step::new(Setup {
            plan: true,
            ..setup(&["a"])
        });
        s.handle(Event::Started);
        let e = s.handle(Event::Planned(Plan {
            split: true,
            reason: "just one".into(),
            subtasks: vec![sub("only", vec![])],
        }));
        assert!(
            matches!(&e[1], Effect::Execute { .. }),
            "one subtask is no split"
        );
        let mut s = Step::new(Setup {
            plan: true,
            ..setup(&["a"])
        });
        s.handle(Event::Started);
        let e = s.handle(Event::PlanFailed("bad JSON".into()));
        assert!(matches!(&e[1], Effect::Execute { .. }));
    }

    fn voting(k: u32, n: u32) -> Setup {
        Setup {
            voting: Some(Voting {
                candidates: k,
                ahead_by: n,
                max_tokens: 100,
                max_votes: None,
            }),
            ..setup(&["a", "b"])
        }
    }

    fn sample(t: &str) -> Result<Sample, String> {
        Ok(Sample {
            text: t.into(),
            truncated: false,
            completion_tokens: 10,
        })
    }

    #[test]
    fn voting_red_flags_then_votes_until_one_leads_by_n() {
        let mut s = Step::new(voting(5, 2));
        assert!(matches!(
            &s.handle(Event::Started)[..],
            [Effect::Sample { n: 5, .. }]
        ));
        let e = s.handle(Event::Sampled {
            samples: vec![
                sample("x = 1"),
                sample("x  =  1"),
                sample("y = 2"),
                Ok(Sample {
                    text: "cut".into(),
                    truncated: true,
                    completion_tokens: 100,
                }),
                Err("timeout".into()),
            ],
            server: false,
        });
        assert!(matches!(&e[0], Effect::Note(n) if n.contains("2 of 5 answers red-flagged")));
        // "x = 1" has 2 votes (whitespace-equal), "y = 2" one: a lead of 1 < 2.
        assert!(matches!(&e[1], Effect::Vote { candidates, ballots: 1 } if candidates.len() == 2));
        let e = s.handle(Event::Ballots(vec![Some(0)]));
        assert_eq!(
            e,
            [Effect::Critique {
                answer: "x = 1".into()
            }]
        );
    }

    #[test]
    fn voting_takes_the_plurality_when_ballots_run_out_and_escalates_when_all_are_flagged() {
        let mut s = Step::new(voting(2, 3));
        s.handle(Event::Started);
        let e = s.handle(Event::Sampled {
            samples: vec![sample("p"), sample("q")],
            server: false,
        });
        assert!(matches!(&e[..], [Effect::Vote { ballots: 3, .. }]));
        let e = s.handle(Event::Ballots(vec![Some(1), None, Some(1)]));
        assert!(matches!(&e[..], [Effect::Vote { ballots: 1, .. }]), "{e:?}");
        let e = s.handle(Event::Ballots(vec![Some(0)]));
        assert!(matches!(&e[..], [Effect::Vote { ballots: 2, .. }]), "{e:?}");
        let e = s.handle(Event::Ballots(vec![None, None]));
        assert!(
            matches!(&e[0], Effect::Note(n) if n.contains("no answer led by 3 after 6 ballots"))
        );
        assert_eq!(e[1], Effect::Critique { answer: "q".into() });

        let mut s = Step::new(voting(2, 1));
        s.handle(Event::Started);
        let e = s.handle(Event::Sampled {
            samples: vec![Err("x".into()), sample("  ")],
            server: false,
        });
        // Every answer flagged: the next model samples at once.
        assert!(
            requests(&e)
                .iter()
                .any(|e| matches!(e, Effect::Sample { model, .. } if model == "b")),
            "{e:?}"
        );
    }

    #[test]
    fn no_server_answering_at_all_is_not_the_tasks_fault() {
        let mut s = Step::new(setup(&["a", "b"]));
        s.handle(Event::Started);
        // The caller went down the chain itself: one event says it all.
        let e = s.handle(Event::AnswerFailed {
            error: "cannot connect".into(),
            server: true,
            last: Some("b".into()),
        });
        assert!(
            matches!(&e[..], [Effect::Unreachable { reason }] if reason.contains("The model servers failed, not the task")),
            "{e:?}"
        );
    }

    #[test]
    fn an_empty_chain_because_servers_are_down_releases_the_task() {
        let mut s = Step::new(Setup {
            empty: Some(Empty::ServersDown("qwen-7b (cooling_down)".into())),
            ..setup(&[])
        });
        assert!(matches!(
            &s.handle(Event::Started)[..],
            [Effect::Unreachable { .. }]
        ));
    }

    #[test]
    fn cancel_releases_in_any_phase() {
        let mut s = Step::new(setup(&["a"]));
        s.handle(Event::Started);
        assert!(matches!(
            &s.handle(Event::Cancelled)[..],
            [Effect::Release { .. }]
        ));
        assert!(s.is_finished());
    }

    fn checked_setup(chain: &[&str]) -> Setup {
        Setup {
            checks: true,
            check_rounds: 1,
            ..setup(chain)
        }
    }

    fn check(passed: bool, output: &str) -> Event {
        Event::Checked {
            passed,
            output: output.into(),
        }
    }

    #[test]
    fn a_failing_check_goes_back_with_its_output_and_only_a_pass_reaches_the_critic() {
        let mut s = Step::new(checked_setup(&["a", "b"]));
        s.handle(Event::Started);
        let e = s.handle(answered("wrong fix"));
        assert!(
            matches!(&e[..], [Effect::Check { answer }] if answer == "wrong fix"),
            "{e:?}"
        );
        let e = s.handle(check(false, "FAILED (failures=1)"));
        assert!(
            matches!(&e[..], [Effect::Note(n), Effect::Execute { model, critique: Some(c), .. }]
                if n.contains("repair 1 of 1") && model == "a" && c.contains("FAILED (failures=1)")),
            "{e:?}"
        );
        // The critic approving everything cannot matter before a pass.
        assert!(
            s.handle(Event::Reviewed(verdict("approve", &[])))
                .is_empty()
        );
        s.handle(answered("right fix"));
        let e = s.handle(check(true, "OK"));
        assert!(matches!(&e[..], [Effect::Critique { answer }] if answer == "right fix"));
        // A revise after a pass sends it back, and it is checked again.
        let e = s.handle(Event::Reviewed(verdict("revise", &["name it better"])));
        assert!(matches!(&e[..], [_, Effect::Execute { .. }]), "{e:?}");
        let e = s.handle(answered("right fix, renamed"));
        assert!(matches!(&e[..], [Effect::Check { .. }]), "{e:?}");
        s.handle(check(true, "OK"));
        let e = s.handle(Event::Reviewed(verdict("approve", &["good"])));
        assert!(
            matches!(&e[..], [Effect::Complete { verified: true, answer, .. }] if answer == "right fix, renamed"),
            "{e:?}"
        );
    }

    #[test]
    fn failing_checks_escalate_then_split_once_then_block_with_the_output() {
        let mut s = Step::new(Setup {
            may_split: true,
            ..checked_setup(&["a", "b"])
        });
        s.handle(Event::Started);
        s.handle(answered("a1"));
        s.handle(check(false, "fail 1"));
        s.handle(answered("a2"));
        // Past its repairs: the next model, with a handoff of what was tried.
        let e = s.handle(check(false, "fail 2"));
        assert!(
            matches!(&e[..], [Effect::Note(_), Effect::Handoff { to, tried, .. }]
                if to == "b" && tried[0].contains("failed the check") && tried[0].contains("fail 2")),
            "{e:?}"
        );
        let e = s.handle(Event::HandoffWritten("h".into()));
        assert!(matches!(&e[..], [Effect::Execute { model, .. }] if model == "b"));
        s.handle(answered("b1"));
        s.handle(check(false, "fail 3"));
        s.handle(answered("b2"));
        let e = s.handle(check(false, "fail 4"));
        assert!(matches!(&e[..], [Effect::Note(_), Effect::Plan]), "{e:?}");
        let e = s.handle(Event::Planned(Plan {
            split: false,
            reason: "one change".into(),
            subtasks: vec![],
        }));
        match &e[..] {
            [Effect::Block { reason, .. }] => {
                assert!(reason.contains("Its check still fails"), "{reason}");
                assert!(reason.contains("fail 4"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A split is taken instead.
        let mut s = Step::new(Setup {
            may_split: true,
            check_rounds: 0,
            ..checked_setup(&["a"])
        });
        s.handle(Event::Started);
        s.handle(answered("a1"));
        s.handle(check(false, "fail"));
        let planned = Plan {
            split: true,
            reason: "two parts".into(),
            subtasks: vec![
                PlannedSubtask {
                    title: "one".into(),
                    description: String::new(),
                    role: None,
                    depends_on: vec![],
                },
                PlannedSubtask {
                    title: "two".into(),
                    description: String::new(),
                    role: None,
                    depends_on: vec![0],
                },
            ],
        };
        assert!(matches!(
            &s.handle(Event::Planned(planned))[..],
            [Effect::Split { .. }]
        ));
    }

    #[test]
    fn a_parent_with_a_check_is_done_only_when_the_combined_change_passes() {
        let children = vec![ChildResult {
            id: 4,
            title: "Parse".into(),
            result: "parser added".into(),
        }];
        let mut s = Step::new(Setup {
            children: children.clone(),
            ..checked_setup(&["a"])
        });
        assert!(matches!(
            &s.handle(Event::Started)[..],
            [Effect::Check { .. }]
        ));
        assert!(matches!(
            &s.handle(check(true, "ok"))[..],
            [Effect::Complete {
                verified: true,
                model: None,
                ..
            }]
        ));
        // Failing: one try by the coder with the output, then blocked.
        let mut s = Step::new(Setup {
            children,
            ..checked_setup(&["a"])
        });
        s.handle(Event::Started);
        let e = s.handle(check(false, "combined: 2 failures"));
        assert!(
            matches!(&e[..], [Effect::Note(_), Effect::Execute { critique: Some(c), .. }] if c.contains("combined")),
            "{e:?}"
        );
        s.handle(answered("fixed?"));
        let e = s.handle(check(false, "still 1 failure"));
        assert!(
            matches!(&e[..], [Effect::Block { reason, .. }] if reason.contains("still 1 failure")),
            "{e:?}"
        );
    }

    #[test]
    fn without_checks_the_critic_decides_and_the_task_is_unverified() {
        let mut s = Step::new(setup(&["a"]));
        s.handle(Event::Started);
        assert!(matches!(
            &s.handle(answered("x"))[..],
            [Effect::Critique { .. }]
        ));
        assert!(matches!(
            &s.handle(Event::Reviewed(verdict("approve", &[])))[..],
            [Effect::Complete {
                verified: false,
                ..
            }]
        ));
    }
}
