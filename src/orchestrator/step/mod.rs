//! The driver of one step: builds the task's context, routes it, runs the
//! state machine and carries out its effects (model calls, store writes,
//! memory, plans.md). Every model call is recorded with its prompt and
//! response; the step's end (status, event, note, step record) is one
//! transaction.

mod calls;
mod check;
mod context;
mod finish;
mod tools;
mod workspace;

use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use serde_json::json;

use super::machine::{ChildResult, Effect, Event, Plan, Sample, Setup, Step, Verdict};
pub use super::progress::Outcome;
use super::progress::Progress;
use super::shared::{Shared, Spend};
use crate::error::Result;
use crate::llm::caller::{CallFailed, CallOutcome};
use crate::llm::{ChatRequest, Message};
use crate::role::Role;
use crate::router::{self, Decision, TaskInfo, estimate_tokens};
use crate::store::{ModelCall, Status, Store, Task};

use super::context::{Material, RESULT_CHARS, TaskView, Vars, cut};
use super::fit::Fitted;

pub(super) struct StepRun<'a> {
    pub shared: &'a Shared,
    pub db: &'a mut Store,
    pub task: Task,
    pub number: usize,
    /// This step's claim: `agent/run-N/step-M`.
    claim: String,
    step_id: i64,
    /// What the prompts may see, in full; each request gets it fitted.
    material: Material,
    /// The context as last fitted to a model (recorded with the step).
    fitted: Option<Fitted>,
    decision: Option<Decision>,
    exec_role: Role,
    cost: f64,
    started: Instant,
    /// Codebase tools, for coders and testers of a project with a root.
    toolbox: Option<crate::tools::Toolbox>,
    /// The last test or command output, for the critic.
    test_output: Option<String>,
    /// Voting with tools: each candidate's answer, its toolbox and its
    /// last test output; the winner's become the step's.
    candidates: Vec<(String, crate::tools::Toolbox, Option<String>)>,
    /// The task's checks (its own, else its project's), and how many times
    /// they have run in this step.
    checks: Vec<String>,
    check_attempt: u32,
    /// Writes on in a git project: the task's own worktree and branch.
    workspace: Option<super::land::Workspace>,
    /// Writes on outside git: the one writer's place, in this process and
    /// (the OS lock) across processes, held until the step ends.
    writer: Option<(tokio::sync::MutexGuard<'a, ()>, std::fs::File)>,
}

impl<'a> StepRun<'a> {
    pub fn new(
        shared: &'a Shared,
        db: &'a mut Store,
        task: Task,
        number: usize,
        claim: String,
    ) -> Self {
        let checks = shared.opts.tools.checks_for(&task);
        StepRun {
            shared,
            db,
            claim,
            material: Material {
                vars: Vars::of(&task),
                summaries: Vec::new(),
            },
            fitted: None,
            task,
            number,
            step_id: 0,
            decision: None,
            exec_role: Role::Coder,
            cost: 0.0,
            started: Instant::now(),
            toolbox: None,
            test_output: None,
            candidates: Vec::new(),
            checks,
            check_attempt: 0,
            workspace: None,
            writer: None,
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
                        let outcome = if t.is_some() {
                            crate::store::StepOutcome::Failed
                        } else {
                            crate::store::StepOutcome::Lost
                        };
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
        let mut setup = self.route()?;
        if self.shared.opts.make_room && self.make_room().await {
            setup = self.route()?;
        }
        self.open_tools().await?;
        let d = self.decision.as_ref().expect("routed");
        self.step_id = self.db.start_step(
            self.shared.run_id,
            self.task.id,
            self.number,
            &self.shared.holder,
            Some(self.exec_role.as_str()),
            Some(&d.rule),
        )?;
        self.emit(Progress::StepStarted {
            run_id: self.shared.run_id,
            step: self.number,
            task_id: self.task.id,
            external_ref: self.task.external_ref.clone(),
            title: self.task.title.clone(),
            role: self.exec_role.to_string(),
            rule: d.rule.clone(),
            chain: setup.chain.clone(),
            plan: setup.plan,
        });
        let mut machine = Step::new(setup);
        if let Some(reason) = self.check_setup_problem()? {
            return self
                .finish(
                    Effect::Block {
                        reason,
                        last_answer: None,
                    },
                    &machine,
                )
                .await;
        }
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
                            role: self.exec_role.to_string(),
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

    fn info(&self, prompt_tokens: u64, output: Option<u64>, needs_json: bool) -> TaskInfo<'_> {
        super::routing::info(&self.task, prompt_tokens, output, needs_json)
    }

    /// The executor's role and chain, and the machine's setup.
    fn route(&mut self) -> Result<Setup> {
        let shared = self.shared;
        let registry = shared.caller.registry();
        let conditions = Spend {
            caller: &shared.caller,
            run: shared.spent(),
            task: self.db.task_cost(self.task.id)?,
        };
        let routed = super::routing::route(
            registry,
            &shared.prompts,
            shared.opts.mode,
            &conditions,
            &self.task,
            &self.material.vars,
        )?;
        let role = routed.role;
        let decision = routed.decision;
        let children = self.db.subtasks(self.task.id)?;
        let children = children
            .iter()
            .map(|c| {
                Ok(ChildResult {
                    id: c.id,
                    title: c.title.clone(),
                    result: self.db.result_of(c.id)?,
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
            empty: routed.empty,
            windows: decision
                .chain
                .iter()
                .filter_map(|id| registry.model(id))
                .map(|m| shared.caller.window(m))
                .collect(),
            chain: decision.chain.clone(),
            // Subtasks of subtasks are the deepest the planner goes.
            plan: decision.plan && depth < shared.opts.max_plan_depth && !shared.opts.no_review,
            max_rounds: shared.opts.max_rounds.max(1),
            voting: decision.voting.filter(|_| !shared.opts.no_review),
            children,
            no_review: shared.opts.no_review,
            checks: !self.checks.is_empty(),
            check_rounds: shared.opts.check_rounds,
            // A split of its own, once, within the planner's depth.
            may_split: depth < shared.opts.max_plan_depth && !shared.opts.no_review,
        };
        self.exec_role = role;
        self.decision = Some(decision);
        Ok(setup)
    }

    /// The codebase tools, for a role that uses them in a project with a
    /// root: on the task's worktree when writes are on in git.
    async fn open_tools(&mut self) -> Result<()> {
        let tools = &self.shared.opts.tools;
        if !(tools.enabled && self.exec_role.uses_tools()) {
            return Ok(());
        }
        let project = self.db.project(self.task.project_id)?;
        if project.root.is_none() {
            return Ok(());
        }
        let made = match self.work_root(&project).await {
            Ok(root) => crate::tools::Toolbox::new(
                &root,
                tools.writes_for(project.id),
                tools.commands_for(project.id),
                std::time::Duration::from_secs(tools.timeout_secs.max(1)),
                tools.output_cap,
            ),
            Err(e) => Err(e.to_string()),
        };
        match made {
            Ok(t) => self.toolbox = Some(t),
            Err(e) => self.emit(Progress::Warning {
                message: format!("task {}: no codebase tools: {e}", self.task.id),
            }),
        }
        Ok(())
    }

    /// The better model the router skipped for memory, loaded after
    /// unloading idle Ollama models on its device when that makes room.
    /// True when something was loaded (route again).
    async fn make_room(&mut self) -> bool {
        let shared = self.shared;
        let (Some(d), Some(watch)) = (&self.decision, shared.caller.resource_watch()) else {
            return false;
        };
        let registry = shared.caller.registry();
        let order = &registry.roles[&d.role].models;
        let rank = |id: &str| order.iter().position(|m| m == id).unwrap_or(usize::MAX);
        let first = d.chain.first().map_or(usize::MAX, |m| rank(m));
        let Some(target) = d
            .skipped
            .iter()
            .filter(|s| {
                matches!(
                    s.why,
                    router::Skip::DoesNotFit { .. } | router::Skip::Asleep
                )
            })
            .map(|s| s.model.clone())
            .find(|m| rank(m) < first)
        else {
            return false;
        };
        let view = watch.view();
        let Some(plan) =
            crate::resources::make_room(registry, &view, &target, &|m| shared.caller.busy(m))
        else {
            return false;
        };
        let began = std::time::Instant::now();
        let http = crate::net::http_client();
        let wait = std::time::Duration::from_secs(600);
        let mut result = Ok(());
        // The run's own runtime: a client made here, not the watch's.
        for (id, _) in &plan {
            if let Err(e) = crate::resources::control::act(
                &http,
                registry,
                id,
                crate::resources::control::Action::Unload,
                None,
                wait,
            )
            .await
            {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            result = crate::resources::control::act(
                &http,
                registry,
                &target,
                crate::resources::control::Action::Load,
                None,
                wait,
            )
            .await
            .map(|_| ());
        }
        watch.refresh().await;
        let error = result.err().map(|e| e.to_string());
        let loaded = error.is_none();
        self.emit(Progress::MadeRoom {
            step: self.number,
            task_id: self.task.id,
            unloaded: plan.into_iter().map(|(id, _)| id).collect(),
            loaded: target,
            took_ms: began.elapsed().as_millis() as u64,
            error,
        });
        loaded
    }

    fn request(&self, template: &str, text: String, temperature: Option<f32>) -> ChatRequest {
        let p = self.shared.prompts.get(template);
        let registry = self.shared.caller.registry();
        // One rule, as `chat` and `route explain` use it: the registry's
        // temperature for the template's role (the executor's for the
        // executor's templates), unless the prompt's front matter sets one.
        let role_temp = registry
            .roles
            .get(&template.parse::<Role>().unwrap_or(self.exec_role))
            .map_or(0.3, |r| r.temperature);
        ChatRequest {
            messages: vec![Message::user(text)],
            temperature: temperature.or(p.temperature).unwrap_or(role_temp),
            max_tokens: p.max_tokens.unwrap_or(2048),
            json_schema: p.response_schema.clone(),
            // Every call streams where the server does: `timeout_secs` then
            // bounds the wait for the first byte, never a long answer.
            stream: true,
            keep_alive: None,
            num_ctx: None,
            role: None,
            tools: Vec::new(),
            traceparent: None,
        }
    }

    /// The executor's chain for one call: `model`, then the models after
    /// it in the step's chain whose window holds `req` (and, with `same`,
    /// that pass it), so a server's fault moves the call on at once
    /// instead of waiting on a busy or broken server.
    fn onward(
        &self,
        model: &str,
        req: &ChatRequest,
        same: impl Fn(&crate::registry::Model) -> bool,
    ) -> Vec<String> {
        let chain = self
            .decision
            .as_ref()
            .map(|d| d.chain.as_slice())
            .unwrap_or_default();
        let after = chain
            .iter()
            .position(|m| m == model)
            .map_or(&[][..], |i| &chain[i + 1..]);
        let tokens = req
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let registry = self.shared.caller.registry();
        let mut out = vec![model.to_string()];
        out.extend(
            self.holding(after, tokens, req.max_tokens)
                .into_iter()
                .filter(|id| registry.model(id).is_some_and(&same)),
        );
        out
    }

    /// After a call that moved past `asked` to a later model, says why on
    /// the task; the model that answered, when it is not `asked`.
    fn moved_on(&mut self, asked: &str, o: &CallOutcome) -> Result<Option<String>> {
        if o.model == asked {
            return Ok(None);
        }
        let why: Vec<String> = o
            .attempts
            .iter()
            .filter(|a| a.model != o.model && a.outcome != "ok")
            .map(|a| {
                format!(
                    "{} {}",
                    a.model,
                    a.error
                        .as_deref()
                        .unwrap_or(a.error_kind.unwrap_or(a.outcome))
                )
            })
            .collect();
        let text = format!(
            "{asked}'s server failed ({}); {} answered instead.",
            cut(&why.join("; "), 300),
            o.model
        );
        self.db
            .append_task_note(self.task.id, &text, &self.shared.holder)?;
        self.emit(Progress::Note {
            step: self.number,
            task_id: self.task.id,
            text,
        });
        Ok(Some(o.model.clone()))
    }

    /// The models of `chain` whose window holds a prompt of `tokens` and
    /// an answer of up to `output`.
    fn holding(&self, chain: &[String], tokens: u64, output: u64) -> Vec<String> {
        let registry = self.shared.caller.registry();
        chain
            .iter()
            .filter(|id| {
                registry.model(id).is_some_and(|m| {
                    router::holds(m, self.shared.caller.window(m), tokens, Some(output))
                })
            })
            .cloned()
            .collect()
    }

    /// A role's chain for a pipeline call (planner, critic, summarizer).
    fn chain_for(&self, role: Role, req: &ChatRequest) -> Decision {
        let shared = self.shared;
        let prompt_tokens: u64 = req
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let conditions = Spend {
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
        let registry = self.shared.caller.registry();
        for (a, mut call) in crate::llm::caller::call_records(result, req, registry, role, purpose)
        {
            call.run_id = Some(self.shared.run_id);
            // A backfill outside any step (a roll-up a killed run left) has none.
            call.step_id = (self.step_id > 0).then_some(self.step_id);
            call.task_id = Some(self.task.id);
            if result.is_ok() && a.outcome == "ok" {
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
}

/// What a request effect asks for: the purpose, and the model when it names one.
fn in_flight(effect: &Effect) -> (&'static str, Option<String>) {
    match effect {
        Effect::Plan => ("plan", None),
        Effect::Execute { model, .. } => ("execute", Some(model.clone())),
        Effect::Sample { model, .. } => ("sample", Some(model.clone())),
        Effect::Vote { .. } => ("vote", None),
        Effect::Critique { .. } => ("critique", None),
        Effect::Check { .. } => ("check", None),
        Effect::Handoff { .. } => ("handoff", None),
        _ => ("other", None),
    }
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
    let object = &t[a..=b];
    serde_json::from_str(object)
        .or_else(|e| serde_json::from_str(&escape_controls(object)).map_err(|_| e))
        .map_err(|e| format!("invalid JSON: {e}"))
}

/// Raw line breaks and tabs inside JSON strings, escaped: what small models
/// (and grammar-held ones) write when a description runs over lines.
fn escape_controls(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        match c {
            '"' if !escaped => in_string = !in_string,
            '\n' if in_string => {
                out.push_str("\\n");
                escaped = false;
                continue;
            }
            '\t' if in_string => {
                out.push_str("\\t");
                escaped = false;
                continue;
            }
            c if in_string && (c as u32) < 0x20 => {
                escaped = false;
                continue;
            }
            _ => {}
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

/// A summarizer's answer: any text, trimmed; nothing is unusable.
fn nonempty(text: &str) -> std::result::Result<String, String> {
    match text.trim() {
        "" => Err("empty".to_string()),
        t => Ok(t.to_string()),
    }
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

#[cfg(test)]
mod json_tests {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct T {
        a: String,
    }

    #[test]
    fn line_breaks_inside_strings_are_read_and_escapes_kept() {
        let got: T = super::parse_json("{\"a\": \"one\ntwo\\\"q\\\\\"}").unwrap();
        assert_eq!(got.a, "one\ntwo\"q\\");
        let got: T = super::parse_json("Here: {\"a\": \"x\ty\r\"} done").unwrap();
        assert_eq!(got.a, "x\ty");
        assert!(super::parse_json::<T>("{\"a\": 1}").is_err());
    }
}
