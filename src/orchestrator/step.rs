//! The driver of one step: builds the task's context, routes it, runs the
//! state machine and carries out its effects (model calls, store writes,
//! memory, plans.md). Every model call is recorded with its prompt and
//! response; the step's end (status, event, note, step record) is one
//! transaction.

use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use serde_json::json;

use super::machine::{ChildResult, Effect, Event, Plan, Sample, Setup, Step, Verdict};
use super::run::{Progress, Shared};
use crate::error::Result;
use crate::llm::caller::{CallFailed, CallOutcome};
use crate::llm::{ChatRequest, Message};
use crate::router::{self, Decision, TaskInfo, estimate_tokens};
use crate::store::{ModelCall, NewTask, Status, Store, Task};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    Blocked,
    Split,
    /// Back to pending (interrupted).
    Released,
    /// Back to pending: no model server answered; the run stops.
    Unreachable,
    /// Something outside the models failed (the database, plans.md); the
    /// task went back to pending with a note.
    Failed,
    /// The lease ran out and another agent took the task; nothing written.
    Lost,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Blocked => "blocked",
            Outcome::Split => "split",
            Outcome::Released => "released",
            Outcome::Unreachable => "released",
            Outcome::Failed => "failed",
            Outcome::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct TaskView {
    id: i64,
    external_ref: Option<String>,
    title: String,
    description: String,
    priority: i64,
    tags: Vec<String>,
}

impl TaskView {
    fn of(t: &Task) -> TaskView {
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
struct ParentView {
    title: String,
    description: String,
    summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct DepView {
    id: i64,
    title: String,
    result: String,
}

#[derive(Debug, Clone, Serialize)]
struct NoteView {
    created_at: String,
    agent: String,
    text: String,
}

/// What the templates see.
#[derive(Debug, Clone, Serialize)]
struct Vars {
    task: TaskView,
    parent: Option<ParentView>,
    dependencies: Vec<DepView>,
    plan_section: Option<String>,
    notes: Vec<NoteView>,
    memory: Vec<String>,
}

/// Dependencies' results and notes are cut to this many characters each, so
/// a long history cannot crowd out the task itself.
const RESULT_CHARS: usize = 1_500;
const NOTES_SHOWN: usize = 10;

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        text.chars().take(max).collect::<String>() + " […]"
    }
}

/// A text field of the last step that finished the task, if one did.
fn last_done(db: &Store, task_id: i64, field: &str) -> Result<Option<String>> {
    Ok(db
        .task_steps(task_id)?
        .into_iter()
        .rev()
        .find(|s| s.outcome.as_deref() == Some("done"))
        .and_then(|s| s.detail.get(field)?.as_str().map(str::to_string)))
}

/// The answer of the last step that finished the task, if one did.
pub fn last_result(db: &Store, task_id: i64) -> Result<Option<String>> {
    last_done(db, task_id, "result")
}

/// The change the last done step made (or proposed) with the codebase tools.
pub fn last_diff(db: &Store, task_id: i64) -> Result<Option<String>> {
    last_done(db, task_id, "diff")
}

/// A task's latest summary in memory.
fn latest_summary(db: &Store, task_id: i64) -> Option<String> {
    db.conn()
        .query_row(
            "SELECT text FROM memories WHERE task_id = ?1 AND type = 'task_summary' ORDER BY id DESC LIMIT 1",
            [task_id],
            |r| r.get(0),
        )
        .ok()
}

/// A finished task's result: its last done step's answer, else its latest
/// task summary, else its last note.
pub fn result_of(db: &Store, task_id: i64) -> Result<String> {
    if let Some(r) = last_result(db, task_id)? {
        return Ok(r);
    }
    let summary = latest_summary(db, task_id);
    if let Some(s) = summary {
        return Ok(s);
    }
    Ok(db.notes(task_id)?.pop().map(|n| n.text).unwrap_or_default())
}

pub(super) struct StepRun<'a> {
    pub shared: &'a Shared,
    pub db: &'a mut Store,
    pub task: Task,
    pub number: usize,
    /// This step's claim: `agent/run-N/step-M`.
    claim: String,
    step_id: i64,
    vars: Vars,
    decision: Option<Decision>,
    exec_role: String,
    cost: f64,
    started: Instant,
    /// Codebase tools, for coders and testers of a project with a root.
    toolbox: Option<crate::tools::Toolbox>,
    /// The last test or command output, for the critic.
    test_output: Option<String>,
    /// Voting with tools: each candidate's answer, its toolbox and its
    /// last test output; the winner's become the step's.
    candidates: Vec<(String, crate::tools::Toolbox, Option<String>)>,
}

impl<'a> StepRun<'a> {
    pub fn new(
        shared: &'a Shared,
        db: &'a mut Store,
        task: Task,
        number: usize,
        claim: String,
    ) -> Self {
        StepRun {
            shared,
            db,
            claim,
            vars: Vars {
                task: TaskView::of(&task),
                parent: None,
                dependencies: vec![],
                plan_section: None,
                notes: vec![],
                memory: vec![],
            },
            task,
            number,
            step_id: 0,
            decision: None,
            exec_role: String::new(),
            cost: 0.0,
            started: Instant::now(),
            toolbox: None,
            test_output: None,
            candidates: Vec::new(),
        }
    }

    fn holder(&self) -> &str {
        &self.shared.holder
    }

    fn emit(&self, p: Progress) {
        (self.shared.observer)(&p);
    }

    /// Runs the step to its end. Errors outside the models (the database)
    /// put the task back to pending and come back as `Failed`.
    pub async fn run(mut self) -> Result<Outcome> {
        match self.run_inner().await {
            Ok(o) => Ok(o),
            Err(e) => {
                let message = self.shared.caller.redact(&e.to_string());
                tracing::error!(task = self.task.id, error = %message, "step failed");
                self.emit(Progress::Warning {
                    message: format!("task {}: {message}", self.task.id),
                });
                let note = format!(
                    "The orchestrator stopped working on this task: {message}. It is back in the queue."
                );
                let holder = self.holder().to_string();
                let claim = self.claim.clone();
                let step_id = self.step_id;
                let outcome = self.db.batch(|s| {
                    let t = s.finish_claim(
                        self.task.id,
                        &claim,
                        &holder,
                        Status::Pending,
                        json!({"run_id": self.shared.run_id, "error": message}),
                        Some(&note),
                    )?;
                    if step_id > 0 {
                        let outcome = if t.is_some() { "failed" } else { "lost" };
                        s.finish_step(step_id, outcome, None, 0, 0.0, &json!({"error": message}))?;
                    }
                    Ok(t)
                });
                match outcome {
                    Ok(Some(_)) => Ok(Outcome::Failed),
                    Ok(None) => Ok(Outcome::Lost),
                    // The database itself is gone: the lease will expire.
                    Err(e2) => Err(e2),
                }
            }
        }
    }

    async fn run_inner(&mut self) -> Result<Outcome> {
        self.build_context().await?;
        let setup = self.route()?;
        let d = self.decision.as_ref().expect("routed");
        self.step_id = self.db.start_step(
            self.shared.run_id,
            self.task.id,
            self.number,
            &self.shared.holder,
            Some(&self.exec_role),
            Some(&d.rule),
        )?;
        self.emit(Progress::StepStarted {
            run_id: self.shared.run_id,
            step: self.number,
            task_id: self.task.id,
            external_ref: self.task.external_ref.clone(),
            title: self.task.title.clone(),
            role: self.exec_role.clone(),
            rule: d.rule.clone(),
            chain: setup.chain.clone(),
            plan: setup.plan,
        });
        let mut machine = Step::new(setup);
        let mut effects = machine.handle(Event::Started);
        loop {
            let mut request = None;
            for effect in effects {
                match effect {
                    Effect::Note(text) => {
                        let holder = self.shared.holder.as_str();
                        self.db.append_task_note(self.task.id, &text, holder)?;
                        self.emit(Progress::Note {
                            step: self.number,
                            task_id: self.task.id,
                            text,
                        });
                    }
                    e if e.is_terminal() => return self.finish(e, &machine).await,
                    e => request = Some(e),
                }
            }
            let Some(request) = request else {
                return Err(crate::Error::InvalidInput(format!(
                    "the orchestrator's state machine stalled on task {}",
                    self.task.id
                )));
            };
            let mut cancel = self.shared.cancel.clone();
            let (purpose, model) = in_flight(&request);
            let event = if *cancel.borrow() {
                Event::Cancelled
            } else {
                let cancelled = tokio::select! {
                    ev = self.perform(request) => Some(ev?),
                    _ = cancel.wait_for(|c| *c) => None,
                };
                match cancelled {
                    Some(ev) => ev,
                    None => {
                        // The call in flight was dropped: on record as such.
                        self.db.record_model_call(&ModelCall {
                            run_id: Some(self.shared.run_id),
                            step_id: Some(self.step_id),
                            task_id: Some(self.task.id),
                            role: self.exec_role.clone(),
                            purpose: Some(purpose.to_string()),
                            provider: String::new(),
                            model: model.unwrap_or_default(),
                            outcome: "cancelled".into(),
                            error: Some("interrupted (Ctrl-C) before it answered".into()),
                            ..Default::default()
                        })?;
                        Event::Cancelled
                    }
                }
            };
            effects = machine.handle(event);
        }
    }

    async fn build_context(&mut self) -> Result<()> {
        let db = &*self.db;
        let task = &self.task;
        if let Some(pid) = task.parent_id {
            let p = db.task(pid)?;
            let summary = latest_summary(db, pid);
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
                result: cut(&result_of(db, *dep)?, RESULT_CHARS),
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

    fn info(&self, prompt_tokens: u64, output: Option<u64>, needs_json: bool) -> TaskInfo<'_> {
        TaskInfo {
            project_id: self.task.project_id,
            title: &self.task.title,
            description: &self.task.description,
            tags: &self.task.tags,
            role_hint: self.task.role.as_deref(),
            prompt_tokens,
            output_tokens: output,
            needs_json,
        }
    }

    /// The executor's role and chain, and the machine's setup.
    fn route(&mut self) -> Result<Setup> {
        let shared = self.shared;
        let registry = shared.caller.registry();
        let spent = shared.spent();
        let conditions = super::run::Spend {
            caller: &shared.caller,
            run: spent,
            task: self.db.task_cost(self.task.id)?,
        };
        // A first routing picks the role; the prompt it implies sizes the chain.
        let first = router::route(
            registry,
            &self.info(0, None, false),
            shared.opts.mode,
            &conditions,
        );
        let mut role = first.role.clone();
        if role == "planner" {
            // Planning comes first; the work itself goes to the role the
            // task would have without its planner hint.
            let mut info = self.info(0, None, false);
            info.role_hint = None;
            let again = router::route(registry, &info, shared.opts.mode, &conditions);
            role = if again.role == "planner" {
                "coder".into()
            } else {
                again.role
            };
        }
        if role == "critic" || role == "summarizer" {
            // Their templates judge or condense other answers; a task of
            // its own ("review X", "summarize Y") is written work.
            role = "writer".into();
        }
        let prompt = shared.prompts.render(&role, &self.vars)?;
        let tokens = estimate_tokens(&prompt);
        let max_out = shared.prompts.get(&role).max_tokens;
        let decision = if role == first.role {
            router::route(
                registry,
                &self.info(tokens, max_out, false),
                shared.opts.mode,
                &conditions,
            )
        } else {
            let mut d = router::route_role(
                registry,
                &role,
                &self.info(tokens, max_out, false),
                shared.opts.mode,
                &conditions,
            );
            // A planner hint still plans first.
            d.plan = first.plan;
            d.rule = first.rule.clone();
            d
        };
        let children = self.db.subtasks(self.task.id)?;
        let children = children
            .iter()
            .map(|c| {
                Ok(ChildResult {
                    id: c.id,
                    title: c.title.clone(),
                    result: result_of(self.db, c.id)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let depth = {
            let mut d = 0;
            let mut p = self.task.parent_id;
            while let Some(id) = p {
                d += 1;
                p = self.db.task(id)?.parent_id;
            }
            d
        };
        let setup = Setup {
            servers_down: decision
                .skipped
                .iter()
                .any(|s| s.why == router::Skip::CoolingDown),
            windows: decision
                .chain
                .iter()
                .filter_map(|id| registry.model(id))
                .map(|m| shared.caller.window(m))
                .collect(),
            chain: decision.chain.clone(),
            no_model_reason: decision
                .skipped
                .iter()
                .map(|s| format!("{} ({})", s.model, skip_reason(&s.why)))
                .collect::<Vec<_>>()
                .join(", "),
            // Subtasks of subtasks are the deepest the planner goes.
            plan: decision.plan && depth < shared.opts.max_plan_depth && !shared.opts.no_review,
            max_rounds: shared.opts.max_rounds.max(1),
            voting: decision.voting.filter(|_| !shared.opts.no_review),
            children,
            no_review: shared.opts.no_review,
        };
        self.exec_role = role;
        self.decision = Some(decision);
        let tools = &shared.opts.tools;
        if tools.enabled && matches!(self.exec_role.as_str(), "coder" | "tester") {
            let project = self.db.project(self.task.project_id)?;
            if let Some(root) = project.root.as_deref() {
                match crate::tools::Toolbox::new(
                    std::path::Path::new(root),
                    tools.writes_for(project.id),
                    tools.commands_for(project.id),
                    std::time::Duration::from_secs(tools.timeout_secs.max(1)),
                    tools.output_cap,
                ) {
                    Ok(t) => self.toolbox = Some(t),
                    Err(e) => self.emit(Progress::Warning {
                        message: format!("task {}: no codebase tools: {e}", self.task.id),
                    }),
                }
            }
        }
        Ok(setup)
    }

    fn request(&self, template: &str, text: String, temperature: Option<f32>) -> ChatRequest {
        let p = self.shared.prompts.get(template);
        let registry = self.shared.caller.registry();
        // One rule, as `chat` and `route explain` use it: the registry's
        // temperature for the template's role (the executor's for the
        // executor's templates), unless the prompt's front matter sets one.
        let role_temp = registry
            .roles
            .get(template)
            .or_else(|| registry.roles.get(&self.exec_role))
            .map_or(0.3, |r| r.temperature);
        ChatRequest {
            messages: vec![Message::user(text)],
            temperature: temperature.or(p.temperature).unwrap_or(role_temp),
            max_tokens: p.max_tokens.unwrap_or(2048),
            json_schema: p.response_schema.clone(),
            stream: false,
            keep_alive: None,
            num_ctx: None,
            role: None,
            tools: Vec::new(),
        }
    }

    /// A role's chain for a pipeline call (planner, critic, summarizer).
    fn chain_for(&self, role: &str, req: &ChatRequest) -> Decision {
        let shared = self.shared;
        let prompt_tokens: u64 = req
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let conditions = super::run::Spend {
            caller: &shared.caller,
            run: shared.spent(),
            task: self.cost,
        };
        router::route_role(
            shared.caller.registry(),
            role,
            &self.info(
                prompt_tokens,
                Some(req.max_tokens),
                req.json_schema.is_some(),
            ),
            shared.opts.mode,
            &conditions,
        )
    }

    /// Records one call's attempts: errors as they were, the answer with its
    /// prompt and response.
    fn record(
        &mut self,
        purpose: &str,
        role: &str,
        req: &ChatRequest,
        result: &Result<CallOutcome, CallFailed>,
        outcome_override: Option<(&str, String)>,
    ) -> Result<()> {
        let attempts = match result {
            Ok(o) => &o.attempts,
            Err(f) => &f.attempts,
        };
        let prompt = serde_json::to_string(&req.messages).expect("messages serialize");
        let registry = self.shared.caller.registry();
        for a in attempts.iter().filter(|a| a.outcome != "skipped") {
            let mut call = ModelCall {
                run_id: Some(self.shared.run_id),
                step_id: Some(self.step_id),
                task_id: Some(self.task.id),
                role: role.to_string(),
                purpose: Some(purpose.to_string()),
                provider: a.provider.clone(),
                model: a.model.clone(),
                latency_ms: Some(a.latency_ms),
                outcome: a.outcome.to_string(),
                error: a.error.clone(),
                prompt: Some(prompt.clone()),
                ..Default::default()
            };
            if let (Ok(o), "ok") = (result, a.outcome) {
                let u = o.response.usage;
                call.prompt_tokens = Some(u.prompt_tokens);
                call.completion_tokens = Some(u.completion_tokens);
                call.tokens_estimated = u.estimated;
                call.cost_usd = registry
                    .model(&o.model)
                    .map_or(0.0, |m| m.cost(u.prompt_tokens, u.completion_tokens));
                call.response = Some(o.response.text.clone());
                if let Some((outcome, why)) = &outcome_override {
                    call.outcome = outcome.to_string();
                    call.error = Some(why.clone());
                }
                self.cost += call.cost_usd;
                self.shared.add_spent(call.cost_usd);
            }
            self.db.record_model_call(&call)?;
            self.emit(Progress::ModelCall {
                step: self.number,
                task_id: self.task.id,
                purpose: purpose.to_string(),
                role: role.to_string(),
                model: call.model.clone(),
                provider: call.provider.clone(),
                outcome: call.outcome.clone(),
                prompt_tokens: call.prompt_tokens,
                completion_tokens: call.completion_tokens,
                latency_ms: a.latency_ms,
                cost_usd: call.cost_usd,
                error: call.error.clone(),
            });
        }
        Ok(())
    }

    /// Calls a role's chain until a model's answer passes `parse`; an answer
    /// that does not is recorded as `invalid` and the next model is asked.
    async fn call_parsed<T>(
        &mut self,
        purpose: &str,
        role: &str,
        req: ChatRequest,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<std::result::Result<T, String>> {
        let chain = self.chain_for(role, &req).chain;
        self.call_parsed_on(purpose, role, &chain, req, parse).await
    }

    /// `call_parsed` on a chain the caller chose.
    async fn call_parsed_on<T>(
        &mut self,
        purpose: &str,
        role: &str,
        chain: &[String],
        req: ChatRequest,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<std::result::Result<T, String>> {
        let mut chain = chain;
        if chain.is_empty() {
            return Ok(Err(format!("no {role} model is available")));
        }
        let mut last = String::new();
        while !chain.is_empty() {
            let result = self.shared.caller.call(chain, &req, None).await;
            match &result {
                Ok(o) => match parse(&o.response.text) {
                    Ok(v) => {
                        self.record(purpose, role, &req, &result, None)?;
                        return Ok(Ok(v));
                    }
                    Err(why) => {
                        last = format!("{} gave an unusable answer: {why}", o.model);
                        self.record(purpose, role, &req, &result, Some(("invalid", why)))?;
                        let at = chain.iter().position(|m| *m == o.model).unwrap_or(0);
                        chain = &chain[at + 1..];
                    }
                },
                Err(f) => {
                    last = self.shared.caller.redact(&f.to_string());
                    self.record(purpose, role, &req, &result, None)?;
                    break;
                }
            }
        }
        Ok(Err(last))
    }

    async fn perform(&mut self, effect: Effect) -> Result<Event> {
        match effect {
            Effect::Plan => {
                let text = self.shared.prompts.render("planner", &self.vars)?;
                let req = self.request("planner", text, None);
                Ok(
                    match self
                        .call_parsed("plan", "planner", req, parse_json::<Plan>)
                        .await?
                    {
                        Ok(plan) => Event::Planned(plan),
                        Err(e) => Event::PlanFailed(e),
                    },
                )
            }
            Effect::Execute {
                model,
                critique,
                handoff,
                ..
            } => {
                let mut req = self.exec_request(critique, handoff)?;
                if self.toolbox.is_some() {
                    return self.tool_loop(model, req).await;
                }
                let role = self.exec_role.clone();
                // Watchers (the TUI's run panel) see the answer as it is written.
                let observer = self.shared.observer.clone();
                let (step, task_id) = (self.number, self.task.id);
                let mut relay = move |ev: crate::llm::StreamEvent<'_>| {
                    let text = match ev {
                        crate::llm::StreamEvent::Token(t) => t.to_string(),
                        crate::llm::StreamEvent::Restart { next_model, .. } => {
                            format!("\n[restarting on {next_model}]\n")
                        }
                    };
                    observer(&Progress::Token {
                        step,
                        task_id,
                        text,
                    });
                };
                let sink: Option<crate::llm::Sink<'_>> = if self.shared.opts.stream_tokens {
                    req.stream = true;
                    Some(&mut relay)
                } else {
                    None
                };
                let result = self
                    .shared
                    .caller
                    .call(std::slice::from_ref(&model), &req, sink)
                    .await;
                self.record("execute", &role, &req, &result, None)?;
                Ok(match result {
                    Ok(o)
                        if o.response.finish_reason.as_deref() == Some("length")
                            && o.response.text.trim().is_empty() =>
                    {
                        Event::AnswerFailed {
                            error: "the answer was cut off before it said anything".into(),
                            unreachable: false,
                        }
                    }
                    Ok(o) => Event::Answered {
                        text: o.response.text,
                    },
                    Err(f) => self.failed(&f),
                })
            }
            Effect::Sample {
                model,
                n,
                critique,
                handoff,
                ..
            } => {
                let mut req = self.exec_request(critique, handoff)?;
                let voting = self.decision.as_ref().and_then(|d| d.voting);
                if let Some(v) = voting {
                    // Room to see an overlong answer, so it can be flagged.
                    req.max_tokens = req.max_tokens.min(v.max_tokens + v.max_tokens / 4 + 16);
                }
                if self.toolbox.is_some() {
                    return self.sample_with_tools(model, n, req).await;
                }
                let chain = std::slice::from_ref(&model);
                let caller = &self.shared.caller;
                let results = join_all((0..n).map(|_| caller.call(chain, &req, None))).await;
                let role = self.exec_role.clone();
                let unreachable = results
                    .iter()
                    .all(|r| r.as_ref().err().is_some_and(only_refused));
                let mut samples = Vec::new();
                for r in results {
                    self.record("sample", &role, &req, &r, None)?;
                    samples.push(match r {
                        Ok(o) => Ok(Sample {
                            truncated: o.response.finish_reason.as_deref() == Some("length"),
                            completion_tokens: o.response.usage.completion_tokens,
                            text: o.response.text,
                        }),
                        Err(f) => Err(self.shared.caller.redact(&f.to_string())),
                    });
                }
                Ok(Event::Sampled {
                    samples,
                    unreachable,
                })
            }
            Effect::Vote {
                candidates,
                ballots,
            } => {
                #[derive(Serialize)]
                struct VoteVars<'v> {
                    task: &'v TaskView,
                    candidates: &'v [String],
                }
                let text = self.shared.prompts.render(
                    "voter",
                    VoteVars {
                        task: &self.vars.task,
                        candidates: &candidates,
                    },
                )?;
                let req = self.request("voter", text, None);
                let decision = self.chain_for("critic", &req);
                let caller = &self.shared.caller;
                let chain = &decision.chain;
                let results = join_all((0..ballots).map(|_| caller.call(chain, &req, None))).await;
                let mut picks = Vec::new();
                for r in results {
                    let pick = match &r {
                        Ok(o) => parse_json::<Ballot>(&o.response.text)
                            .ok()
                            .map(|b| b.best)
                            .filter(|b| *b < candidates.len()),
                        Err(_) => None,
                    };
                    let flag = match (&r, pick) {
                        (Ok(_), None) => Some(("invalid", "not a valid ballot".to_string())),
                        _ => None,
                    };
                    self.record("vote", "critic", &req, &r, flag)?;
                    picks.push(pick);
                }
                Ok(Event::Ballots(picks))
            }
            Effect::Critique { answer } => {
                #[derive(Serialize)]
                struct CriticVars<'v> {
                    task: &'v TaskView,
                    answer: &'v str,
                    diff: Option<String>,
                    /// A code task whose agent changed no file: the critic
                    /// is told, so "done" with nothing done is not approved.
                    no_change: bool,
                    test_output: Option<String>,
                }
                self.adopt_winner(&answer)?;
                let diff = self
                    .toolbox
                    .as_ref()
                    .map(|t| cut(&t.diff(), 4 * RESULT_CHARS))
                    .filter(|d| !d.is_empty());
                let no_change = self.toolbox.is_some() && diff.is_none();
                let text = self.shared.prompts.render(
                    "critic",
                    CriticVars {
                        task: &self.vars.task,
                        answer: &answer,
                        diff,
                        no_change,
                        test_output: self
                            .test_output
                            .as_deref()
                            .map(|t| cut(t, 2 * RESULT_CHARS)),
                    },
                )?;
                let req = self.request("critic", text, None);
                Ok(
                    match self
                        .call_parsed("critique", "critic", req, parse_verdict)
                        .await?
                    {
                        Ok(v) => {
                            self.emit(Progress::Verdict {
                                step: self.number,
                                task_id: self.task.id,
                                verdict: v.verdict.clone(),
                                reasons: v.reasons.clone(),
                                risks: v.risks.clone(),
                            });
                            Event::Reviewed(v)
                        }
                        Err(e) => Event::CriticFailed(e),
                    },
                )
            }
            Effect::Handoff {
                from,
                to,
                tried,
                min_window,
            } => {
                let fallback = format!(
                    "Work on this task moves from {from} to {to}. What was tried:\n{}",
                    tried
                        .iter()
                        .map(|t| format!("- {t}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                let text = self.shared.prompts.render(
                    "summarizer",
                    json!({
                        "kind": "handoff",
                        "from_agent": from,
                        "to_agent": to,
                        "title": format!("Task {}: {}", self.task.id, self.task.title),
                        "items": tried,
                        "max_words": 150,
                    }),
                )?;
                let req = self.request("summarizer", text, None);
                // After an overflow, not the model that overflowed nor one
                // as small: only bigger windows write the handoff.
                let registry = self.shared.caller.registry();
                let chain: Vec<String> = self
                    .chain_for("summarizer", &req)
                    .chain
                    .into_iter()
                    .filter(|id| {
                        min_window.is_none_or(|w| {
                            registry
                                .model(id)
                                .is_some_and(|m| self.shared.caller.window(m) > w)
                        })
                    })
                    .collect();
                let summary = match self
                    .call_parsed_on("handoff", "summarizer", &chain, req, |t| {
                        if t.trim().is_empty() {
                            Err("empty".to_string())
                        } else {
                            Ok(t.trim().to_string())
                        }
                    })
                    .await?
                {
                    // The facts stay in, whatever the summarizer made of them.
                    Ok(s) => format!("{s}\n\n{fallback}"),
                    Err(_) => fallback,
                };
                self.remember(&summary, "handoff", &from).await;
                Ok(Event::HandoffWritten(summary))
            }
            other => unreachable!("not a request: {other:?}"),
        }
    }

    /// Voting for a role with tools: each candidate runs the tool loop in
    /// its own overlay, one after another (they share the project's files
    /// and commands). The voters see each answer with its proposed diff.
    async fn sample_with_tools(
        &mut self,
        model: String,
        n: u32,
        req: ChatRequest,
    ) -> Result<Event> {
        let base = self
            .toolbox
            .take()
            .expect("sampling with tools has a toolbox");
        self.candidates.clear();
        let mut samples = Vec::new();
        let mut unreachable = true;
        for _ in 0..n {
            self.toolbox = Some(base.candidate());
            self.test_output = None;
            let event = self.tool_loop(model.clone(), req.clone()).await;
            let toolbox = self.toolbox.take().expect("the tool loop gives it back");
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    self.toolbox = Some(base);
                    return Err(e);
                }
            };
            samples.push(match event {
                Event::Answered { text } => {
                    unreachable = false;
                    let diff = toolbox.diff();
                    let shown = if diff.is_empty() {
                        text.clone()
                    } else {
                        format!(
                            "{text}\n\nProposed change:\n```diff\n{}\n```",
                            cut(&diff, 2 * RESULT_CHARS)
                        )
                    };
                    self.candidates
                        .push((shown.clone(), toolbox, self.test_output.take()));
                    Ok(Sample {
                        completion_tokens: estimate_tokens(&text),
                        truncated: false,
                        text: shown,
                    })
                }
                Event::AnswerFailed {
                    error,
                    unreachable: u,
                } => {
                    unreachable &= u;
                    Err(error)
                }
                Event::Overflowed { error } => {
                    unreachable = false;
                    Err(error)
                }
                other => {
                    unreachable = false;
                    Err(format!("no answer ({other:?})"))
                }
            });
        }
        self.toolbox = Some(base);
        Ok(Event::Sampled {
            samples,
            unreachable,
        })
    }

    /// The answer chosen by vote is about to be reviewed: its candidate's
    /// changes become the step's (written when writes are on).
    fn adopt_winner(&mut self, answer: &str) -> Result<()> {
        let Some(at) = self.candidates.iter().position(|(text, ..)| text == answer) else {
            return Ok(());
        };
        let (_, chosen, test_output) = self.candidates.swap_remove(at);
        self.candidates.clear();
        if let Some(toolbox) = self.toolbox.as_mut() {
            let root = toolbox.sandbox().root().to_path_buf();
            toolbox
                .adopt(&chosen)
                .map_err(|e| crate::Error::io(&root, std::io::Error::other(e)))?;
        }
        if test_output.is_some() {
            self.test_output = test_output;
        }
        Ok(())
    }

    /// The event for an executor call no model answered: an overflow
    /// (escalates to a bigger window), or a failure, `unreachable` when
    /// only the servers' state stood in the way.
    fn failed(&self, f: &CallFailed) -> Event {
        let error = self.shared.caller.redact(&f.to_string());
        if matches!(f.last, Some(crate::llm::LlmError::ContextLength(_))) {
            return Event::Overflowed { error };
        }
        Event::AnswerFailed {
            unreachable: only_refused(f),
            error,
        }
    }

    /// The executor with codebase tools: the model asks for tools (natively,
    /// or with a JSON action block when its server has no tool calling),
    /// each call runs in the sandbox and its result goes back, until it
    /// answers without a tool or reaches `max_calls`.
    async fn tool_loop(&mut self, model: String, mut req: ChatRequest) -> Result<Event> {
        // Native tool calls where the client speaks them (not Ollama's
        // native API); the text protocol elsewhere.
        let registry = self.shared.caller.registry();
        let native = registry.model(&model).is_some_and(|m| {
            m.capabilities.iter().any(|c| c == "tools") && !registry.provider_of(m).is_ollama()
        });
        let specs = tool_specs();
        req.stream = false;
        req.json_schema = None;
        if native {
            req.tools = specs
                .iter()
                .map(|(name, description, parameters)| {
                    json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
                })
                .collect();
        } else if let Some(first) = req.messages.first_mut() {
            first.content.push_str(&text_protocol(&specs));
        }
        let role = self.exec_role.clone();
        let max = self.shared.opts.tools.max_calls;
        let mut calls = 0usize;
        // The same call failing again and again (a model stuck on one
        // mistake): after this many in a row the tools are taken away.
        let mut repeats = (String::new(), 0usize);
        let mut stopped: Option<String> = None;
        loop {
            if let Some(why) = &stopped {
                // One last turn without tools must give the answer.
                req.tools.clear();
                req.messages.push(Message::user(format!(
                    "{why} No more tool calls: answer now with what you did and what is left."
                )));
            }
            let result = self
                .shared
                .caller
                .call(std::slice::from_ref(&model), &req, None)
                .await;
            self.record("execute", &role, &req, &result, None)?;
            let o = match result {
                Ok(o) => o,
                Err(f) => return Ok(self.failed(&f)),
            };
            let asked: Vec<crate::llm::ToolCall> = if native {
                o.response.tool_calls.clone()
            } else {
                parse_action(&o.response.text, calls).into_iter().collect()
            };
            if let Some(why) = &stopped {
                // Still asking for tools, or nothing said: no answer at all,
                // a failed attempt, never a "done".
                if !asked.is_empty() || o.response.text.trim().is_empty() {
                    return Ok(Event::AnswerFailed {
                        unreachable: false,
                        error: format!("{why} The model gave no answer without tools."),
                    });
                }
                return Ok(Event::Answered {
                    text: o.response.text,
                });
            }
            if asked.is_empty() {
                let mut text = o.response.text;
                if text.trim().is_empty() {
                    text = "(The agent made its changes with tools and wrote no summary.)".into();
                }
                return Ok(Event::Answered { text });
            }
            if calls >= max {
                stopped = Some(format!("The tool budget of {max} calls is spent."));
                continue;
            }
            // No more calls than the limit leaves, even when a turn asks for many.
            let asked: Vec<crate::llm::ToolCall> = asked.into_iter().take(max - calls).collect();
            if native {
                req.messages
                    .push(Message::tool_request(o.response.text.clone(), &asked));
            } else {
                req.messages
                    .push(Message::assistant(o.response.text.clone()));
            }
            for call in asked {
                calls += 1;
                let out = self.run_tool(&call).await?;
                let failed = out.starts_with("error: ");
                let key = format!("{} {}", call.name, call.arguments);
                repeats = match (failed, repeats.0 == key) {
                    (true, true) => (key, repeats.1 + 1),
                    (true, false) => (key, 1),
                    (false, _) => (String::new(), 0),
                };
                if native {
                    req.messages.push(Message::tool_result(&call.id, out));
                } else {
                    req.messages
                        .push(Message::user(format!("Result of {}:\n{out}", call.name)));
                }
            }
            if repeats.1 >= SAME_FAILURE_LIMIT {
                stopped = Some(format!(
                    "The same tool call failed {} times in a row ({}).",
                    repeats.1,
                    cut(&repeats.0, 120)
                ));
            }
        }
    }

    /// One tool call, recorded; the text the model reads.
    async fn run_tool(&mut self, call: &crate::llm::ToolCall) -> Result<String> {
        let started = Instant::now();
        let outcome = match call.name.as_str() {
            "memory_query" => {
                let query = call
                    .arguments
                    .get("text")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                match &self.shared.memory {
                    Some(m) if !query.trim().is_empty() => match m
                        .query_memory(self.db, query, Some(self.task.project_id), None, None, 5)
                        .await
                    {
                        Ok(hits) => crate::tools::ToolOutcome {
                            ok: true,
                            output: if hits.is_empty() {
                                "nothing found".into()
                            } else {
                                hits.iter()
                                    .map(|h| {
                                        format!("[{}] {}", h.record.kind, cut(&h.record.text, 600))
                                    })
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            },
                        },
                        Err(e) => crate::tools::ToolOutcome {
                            ok: false,
                            output: e.to_string(),
                        },
                    },
                    Some(_) => crate::tools::ToolOutcome {
                        ok: false,
                        output: "missing argument `text`".into(),
                    },
                    None => crate::tools::ToolOutcome {
                        ok: false,
                        output: "memory search is not available in this run".into(),
                    },
                }
            }
            "task_note" => {
                let text = call
                    .arguments
                    .get("text")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if text.is_empty() {
                    crate::tools::ToolOutcome {
                        ok: false,
                        output: "missing argument `text`".into(),
                    }
                } else {
                    let holder = self.shared.holder.clone();
                    self.db.append_task_note(self.task.id, &text, &holder)?;
                    crate::tools::ToolOutcome {
                        ok: true,
                        output: "noted".into(),
                    }
                }
            }
            name => {
                // Off the run's thread: commands block up to the timeout, and
                // the other workers go on meanwhile.
                let mut toolbox = self.toolbox.take().expect("tool loop has a toolbox");
                let (n, args) = (name.to_string(), call.arguments.clone());
                let (toolbox, out) = tokio::task::spawn_blocking(move || {
                    let out = toolbox.call(&n, &args);
                    (toolbox, out)
                })
                .await
                .map_err(|e| crate::Error::InvalidInput(format!("a tool stopped: {e}")))?;
                self.toolbox = Some(toolbox);
                match out {
                    Some(o) => o,
                    None => crate::tools::ToolOutcome {
                        ok: false,
                        output: format!(
                            "unknown tool {name:?}; the tools are {}",
                            tool_specs()
                                .iter()
                                .map(|s| s.0)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                }
            }
        };
        if matches!(call.name.as_str(), "run_tests" | "run_command") {
            self.test_output = Some(outcome.output.clone());
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        self.db.record_tool_call(&crate::store::ToolCallRecord {
            run_id: Some(self.shared.run_id),
            step_id: Some(self.step_id),
            task_id: self.task.id,
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            outcome: if outcome.ok { "ok" } else { "error" }.into(),
            result_bytes: outcome.output.len() as u64,
            result: outcome.output.clone(),
            duration_ms,
            ..Default::default()
        })?;
        self.emit(Progress::ToolCall {
            step: self.number,
            task_id: self.task.id,
            tool: call.name.clone(),
            ok: outcome.ok,
            result_bytes: outcome.output.len(),
            duration_ms,
        });
        Ok(if outcome.ok {
            outcome.output
        } else {
            format!("error: {}", outcome.output)
        })
    }

    fn exec_request(
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
            &self.exec_role,
            ExecVars {
                base: &self.vars,
                critique,
                handoff,
            },
        )?;
        let mut req = self.request(&self.exec_role, text, None);
        req.role = Some(self.exec_role.clone());
        Ok(req)
    }

    /// Saves a memory in SQLite, not yet indexed: the run's indexer embeds
    /// and indexes it off the step's path (or, without an index, the next
    /// process that opens one). Failures are warnings: the task's result is
    /// already safe in the store.
    async fn remember(&mut self, text: &str, kind: &str, agent: &str) {
        let (project, task) = (self.task.project_id, Some(self.task.id));
        let saved = crate::memory::save_unindexed(self.db, text, project, task, kind, agent);
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

    async fn finish(&mut self, effect: Effect, machine: &Step) -> Result<Outcome> {
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
            } => {
                let who = match model {
                    Some(m) => format!("Done by {m} in {rounds} round(s)"),
                    None => "Done".to_string(),
                };
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
        let task = self.task.clone();
        let transition = self.db.batch(|s| {
            let mut note = note.clone();
            let mut detail = detail.clone();
            if let Effect::Split { reason, subtasks } = &effect {
                let mut ids: Vec<i64> = Vec::new();
                for sub in subtasks {
                    let t = s.create_task(
                        NewTask {
                            project_id: task.project_id,
                            title: sub.title.clone(),
                            description: sub.description.clone(),
                            parent_id: Some(task.id),
                            priority: Some(task.priority),
                            role: sub
                                .role
                                .clone()
                                .filter(|r| crate::registry::ROLES.contains(&r.as_str())),
                            depends_on: sub.depends_on.iter().map(|i| ids[*i as usize]).collect(),
                            ..Default::default()
                        },
                        &holder,
                    )?;
                    ids.push(t.id);
                }
                note = format!(
                    "Split by the planner into {} subtasks ({}): {}",
                    ids.len(),
                    ids.iter()
                        .map(|i| format!("#{i}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    cut(reason, 300)
                );
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
                return Err(crate::Error::Conflict {
                    path: Default::default(),
                    message: "lost".into(),
                });
            }
            s.finish_step(
                step_id,
                outcome.as_str(),
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
            Err(crate::Error::Conflict { message, .. }) if message == "lost" => {
                self.db
                    .finish_step(step_id, "lost", model.as_deref(), rounds, cost, &json!({}))?;
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
            Effect::Block {
                last_answer: Some(a),
                ..
            } => {
                let raw = format!("Task {} (blocked): {}\n{a}", self.task.id, self.task.title);
                self.remember(&raw, "raw_interaction", &holder).await;
            }
            _ => {}
        }
        self.shared.kick_indexer();
        self.emit_finished(outcome, model, rounds);
        Ok(outcome)
    }

    /// The task summary, through the summarizer role; a failure is a warning.
    async fn summarize(&mut self, answer: &str) -> Result<()> {
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
            .call_parsed("summarize", "summarizer", req, |t| {
                if t.trim().is_empty() {
                    Err("empty".to_string())
                } else {
                    Ok(t.trim().to_string())
                }
            })
            .await?
        {
            Ok(summary) => self.remember(&summary, "task_summary", "summarizer").await,
            Err(e) => self.emit(Progress::Warning {
                message: format!("task {}: no task summary ({e})", self.task.id),
            }),
        }
        Ok(())
    }

    fn emit_finished(&self, outcome: Outcome, model: Option<String>, rounds: u32) {
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

/// What a request effect asks for: the purpose, and the model when it names one.
fn in_flight(effect: &Effect) -> (&'static str, Option<String>) {
    match effect {
        Effect::Plan => ("plan", None),
        Effect::Execute { model, .. } => ("execute", Some(model.clone())),
        Effect::Sample { model, .. } => ("sample", Some(model.clone())),
        Effect::Vote { .. } => ("vote", None),
        Effect::Critique { .. } => ("critique", None),
        Effect::Handoff { .. } => ("handoff", None),
        _ => ("other", None),
    }
}

/// The same failing tool call this many times in a row ends the tool loop.
const SAME_FAILURE_LIMIT: usize = 3;

/// Every try failed for the servers' state (refused, overloaded, loading;
/// and there was at least one): no server can take the request now, as
/// opposed to models that answered badly. The task goes back to the queue,
/// never blocked.
fn only_refused(f: &CallFailed) -> bool {
    let mut errors = f
        .attempts
        .iter()
        .filter(|a| a.outcome == "error")
        .peekable();
    errors.peek().is_some() && errors.all(|a| a.transient)
}

fn skip_reason(s: &router::Skip) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| "skipped".into())
}

#[derive(serde::Deserialize)]
struct Ballot {
    best: usize,
}

/// JSON from a model: the whole answer, or the first `{…}` in it (small
/// models wrap JSON in prose or code fences).
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Ok(v);
    }
    let (Some(a), Some(b)) = (t.find('{'), t.rfind('}')) else {
        return Err("no JSON object in the answer".into());
    };
    if b < a {
        return Err("no JSON object in the answer".into());
    }
    serde_json::from_str(&t[a..=b]).map_err(|e| format!("invalid JSON: {e}"))
}

fn parse_verdict(text: &str) -> std::result::Result<Verdict, String> {
    let v: Verdict = parse_json(text)?;
    let lower = v.verdict.to_ascii_lowercase();
    if lower != "approve" && lower != "revise" {
        return Err(format!(
            "verdict {:?} is neither approve nor revise",
            v.verdict
        ));
    }
    Ok(v)
}

impl std::fmt::Debug for StepRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRun")
            .field("task", &self.task.id)
            .finish()
    }
}

/// The executor's tools: the codebase ones and two of llmclis's own.
fn tool_specs() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    let mut specs = crate::tools::specs();
    specs.push((
        "memory_query",
        "Search what the project already knows (summaries, earlier answers) by meaning.",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    ));
    specs.push((
        "task_note",
        "Add a note to the task's history (a decision, a finding).",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
    ));
    specs
}

/// The text protocol for models without native tool calling (documented in
/// README): one JSON action block per turn.
fn text_protocol(specs: &[(&str, &str, serde_json::Value)]) -> String {
    let mut s = String::from(
        "\n\n## Tools\nYou can work on the project's files with tools. To call one, answer with only a JSON block:\n```json\n{\"tool\": \"read_file\", \"args\": {\"path\": \"src/lib.rs\"}}\n```\nThe next message gives you its result. Call one tool per answer. When the work is done, answer normally (no JSON block) with a short summary of what you changed and how you checked it.\n",
    );
    for (name, description, params) in specs {
        let args: Vec<String> = params["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        s.push_str(&format!("- {name}({}): {description}\n", args.join(", ")));
    }
    s
}

/// A text-protocol tool call: the answer's JSON block (or bare object) with a
/// `tool` name and `args`.
pub fn parse_action(text: &str, n: usize) -> Option<crate::llm::ToolCall> {
    let body = match text.find("```json") {
        Some(a) => {
            let rest = &text[a + 7..];
            &rest[..rest.find("```").unwrap_or(rest.len())]
        }
        None => text,
    };
    let v: serde_json::Value = parse_json(body).ok()?;
    let name = v.get("tool")?.as_str()?.to_string();
    Some(crate::llm::ToolCall {
        id: format!("text-{n}"),
        name,
        arguments: v.get("args").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_actions_are_found_in_a_block_or_bare_and_prose_is_an_answer() {
        let a = parse_action("I will read it.\n```json\n{\"tool\": \"read_file\", \"args\": {\"path\": \"a.rs\"}}\n```", 0).unwrap();
        assert_eq!(
            (a.name.as_str(), a.arguments["path"].as_str()),
            ("read_file", Some("a.rs"))
        );
        assert_eq!(
            parse_action("{\"tool\": \"run_tests\"}", 3).unwrap().id,
            "text-3"
        );
        assert!(parse_action("Done: fixed the sign in add().", 0).is_none());
        assert!(parse_action("{\"verdict\": \"approve\"}", 0).is_none());
    }
}
