//! The effects that ask models: planning, executing, sampling, voting,
//! reviewing and handing off, each turned into the machine's next event.

use super::*;
use crate::orchestrator::fit;

/// Why a role's chain gave no usable answer: `server` when a server's
/// fault stood in the way (down, busy, erroring, nothing to ask), not
/// when every model that answered gave something unusable.
#[derive(Debug, Clone)]
pub(super) struct NoAnswer {
    pub why: String,
    pub server: bool,
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl StepRun<'_> {
    /// Calls a role's chain until a model's answer passes `parse`; an answer
    /// that does not is recorded as `invalid` and the next model is asked.
    pub(super) async fn call_parsed<T>(
        &mut self,
        purpose: &str,
        role: Role,
        req: ChatRequest,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<std::result::Result<T, NoAnswer>> {
        let chain = self.chain_for(role, &req).chain;
        self.call_parsed_on(purpose, role, &chain, req, parse).await
    }

    /// `call_parsed` on a chain the caller chose.
    pub(super) async fn call_parsed_on<T>(
        &mut self,
        purpose: &str,
        role: Role,
        chain: &[String],
        req: ChatRequest,
        parse: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> Result<std::result::Result<T, NoAnswer>> {
        let mut chain = chain;
        if chain.is_empty() {
            return Ok(Err(NoAnswer {
                why: format!("no {role} model is available now"),
                server: true,
            }));
        }
        let mut last = String::new();
        let mut server = false;
        while !chain.is_empty() {
            let result = self.shared.caller.call(chain, &req, None).await;
            match &result {
                Ok(o) => match parse(&o.response.text) {
                    Ok(v) => {
                        self.record(purpose, role.as_str(), &req, &result, None)?;
                        return Ok(Ok(v));
                    }
                    Err(why) => {
                        last = format!("{} gave an unusable answer: {why}", o.model);
                        self.record(
                            purpose,
                            role.as_str(),
                            &req,
                            &result,
                            Some(("invalid", why)),
                        )?;
                        let at = chain.iter().position(|m| *m == o.model).unwrap_or(0);
                        chain = &chain[at + 1..];
                    }
                },
                Err(f) => {
                    last = self.shared.caller.redact(&f.to_string());
                    server = f.server_fault();
                    self.record(purpose, role.as_str(), &req, &result, None)?;
                    break;
                }
            }
        }
        Ok(Err(NoAnswer { why: last, server }))
    }

    /// Carries out a request effect of the step's machine: one method per
    /// effect, each returning the event that answers it.
    pub(super) async fn perform(&mut self, effect: Effect) -> Result<Event> {
        match effect {
            Effect::Plan => self.plan().await,
            Effect::Execute {
                model,
                critique,
                handoff,
                ..
            } => self.execute(model, critique, handoff).await,
            Effect::Sample {
                model,
                n,
                critique,
                handoff,
                ..
            } => self.sample(model, n, critique, handoff).await,
            Effect::Vote {
                candidates,
                ballots,
            } => self.vote(candidates, ballots).await,
            Effect::Check { answer } => self.run_checks(&answer).await,
            Effect::Critique { answer } => self.critique(answer).await,
            Effect::Handoff {
                from,
                to,
                tried,
                min_window,
            } => self.handoff(from, to, tried, min_window).await,
            other => unreachable!("not a request: {other:?}"),
        }
    }

    /// The planner on whether to split the task, fitted to its first model.
    async fn plan(&mut self) -> Result<Event> {
        let prompts = self.shared.prompts.clone();
        let least = prompts.render("planner", fit::minimal(&self.material.vars))?;
        let sized = self.request("planner", least, None);
        let chain = self.chain_for(Role::Planner, &sized).chain;
        let Some(first) = chain.first().cloned() else {
            return Ok(Event::PlanFailed("no planner model is available".into()));
        };
        let (text, fitted) =
            match self.fitted("planner", &first, |v| prompts.render("planner", v))? {
                Ok(f) => f,
                Err(why) => return Ok(Event::PlanFailed(why)),
            };
        let req = self.request("planner", text, None);
        // Fitted to the first: the others that hold it too.
        let chain = self.holding(&chain, fitted.tokens, req.max_tokens);
        Ok(
            match self
                .call_parsed_on("plan", Role::Planner, &chain, req, parse_json::<Plan>)
                .await?
            {
                Ok(plan) => Event::Planned(plan),
                Err(e) => Event::PlanFailed(e.why),
            },
        )
    }

    /// One executor answer from `model` (with the codebase tools when the
    /// role has them).
    async fn execute(
        &mut self,
        model: String,
        critique: Option<String>,
        handoff: Option<String>,
    ) -> Result<Event> {
        let mut req = match self.exec_request(&model, critique, handoff)? {
            Ok(r) => r,
            Err(error) => return Ok(Event::Overflowed { error }),
        };
        if self.toolbox.is_some() {
            return self.tool_loop(model, req).await;
        }
        let role = self.exec_role;
        let chain = self.onward(&model, &req, |_| true);
        let mut relay = self.token_relay();
        let sink: Option<crate::llm::Sink<'_>> = if self.shared.opts.stream_tokens {
            Some(&mut relay)
        } else {
            None
        };
        req.stream = true;
        let result = self.shared.caller.call(&chain, &req, sink).await;
        self.record("execute", role.as_str(), &req, &result, None)?;
        Ok(match result {
            Ok(o)
                if o.response.finish_reason.as_deref() == Some("length")
                    && o.response.text.trim().is_empty() =>
            {
                Event::AnswerFailed {
                    error: "the answer was cut off before it said anything".into(),
                    server: false,
                    last: Some(o.model),
                }
            }
            Ok(o) => Event::Answered {
                by: self.moved_on(&model, &o)?,
                text: o.response.text,
            },
            Err(f) => self.failed(&f),
        })
    }

    /// `n` answers from `model` at once, each candidate with its own
    /// overlay, for voting.
    async fn sample(
        &mut self,
        model: String,
        n: u32,
        critique: Option<String>,
        handoff: Option<String>,
    ) -> Result<Event> {
        let mut req = match self.exec_request(&model, critique, handoff)? {
            Ok(r) => r,
            Err(error) => return Ok(Event::Overflowed { error }),
        };
        let voting = self.decision.as_ref().and_then(|d| d.voting);
        if let Some(v) = voting {
            // Room to see an overlong answer, so it can be flagged.
            req.max_tokens = req.max_tokens.min(v.max_tokens + v.max_tokens / 4 + 16);
        }
        if self.toolbox.is_some() {
            return self.sample_with_tools(model, n, req).await;
        }
        let chain = self.onward(&model, &req, |_| true);
        let caller = &self.shared.caller;
        let results = join_all((0..n).map(|_| caller.call(&chain, &req, None))).await;
        let role = self.exec_role;
        let server = results
            .iter()
            .all(|r| r.as_ref().err().is_some_and(CallFailed::server_fault));
        let mut samples = Vec::new();
        for r in results {
            self.record("sample", role.as_str(), &req, &r, None)?;
            samples.push(match r {
                Ok(o) => Ok(Sample {
                    truncated: o.response.finish_reason.as_deref() == Some("length"),
                    completion_tokens: o.response.usage.completion_tokens,
                    text: o.response.text,
                }),
                Err(f) => Err(self.shared.caller.redact(&f.to_string())),
            });
        }
        Ok(Event::Sampled { samples, server })
    }

    /// `ballots` voters each pick the best candidate.
    async fn vote(&mut self, candidates: Vec<String>, ballots: u32) -> Result<Event> {
        #[derive(Serialize)]
        struct VoteVars<'v> {
            task: &'v TaskView,
            candidates: &'v [String],
        }
        let text = self.shared.prompts.render(
            crate::prompts::VOTER,
            VoteVars {
                task: &self.material.vars.task,
                candidates: &candidates,
            },
        )?;
        let req = self.request(crate::prompts::VOTER, text, None);
        let decision = self.chain_for(Role::Critic, &req);
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

    /// The critic's verdict on `answer`, with the diff and the last test
    /// output.
    async fn critique(&mut self, answer: String) -> Result<Event> {
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
        let mut diff = self
            .toolbox
            .as_ref()
            .map(|t| cut(&t.diff(), 4 * RESULT_CHARS))
            .filter(|d| !d.is_empty());
        let no_change = self.toolbox.is_some() && diff.is_none();
        let mut test_output = self
            .test_output
            .as_deref()
            .map(|t| cut(t, 2 * RESULT_CHARS));
        let prompts = self.shared.prompts.clone();
        let task = &self.material.vars.task;
        let render = |diff: &Option<String>, test_output: &Option<String>| {
            prompts.render(
                "critic",
                CriticVars {
                    task,
                    answer: &answer,
                    diff: diff.clone(),
                    no_change,
                    test_output: test_output.clone(),
                },
            )
        };
        // The diff and the test output are cut, halving the longer,
        // until the prompt fits the first critic's window.
        let least = self.request("critic", render(&None, &None)?, None);
        let chain = self.chain_for(Role::Critic, &least).chain;
        let budget = chain
            .first()
            .and_then(|id| self.shared.caller.registry().model(id))
            .map(|m| {
                let output = least.max_tokens.min(m.max_output_tokens);
                fit::prompt_budget(self.shared.caller.window(m), output)
            });
        let mut text = render(&diff, &test_output)?;
        while let Some(budget) = budget
            && estimate_tokens(&text) > budget
        {
            let longer = match (&mut diff, &mut test_output) {
                (Some(d), Some(t)) if t.len() > d.len() => &mut test_output,
                (Some(_), _) => &mut diff,
                (None, Some(_)) => &mut test_output,
                (None, None) => break,
            };
            let half = longer.as_ref().map_or(0, |t| t.chars().count() / 2);
            *longer = longer
                .as_deref()
                .filter(|_| half >= 100)
                .map(|t| cut(t, half));
            text = render(&diff, &test_output)?;
        }
        let req = self.request("critic", text, None);
        Ok(
            match self
                .call_parsed("critique", Role::Critic, req, parse_verdict)
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
                Err(e) => Event::CriticFailed {
                    error: e.why,
                    server: e.server,
                },
            },
        )
    }

    /// What was tried, for the next model: a summary when a summarizer
    /// answers, the facts whatever it makes of them.
    async fn handoff(
        &mut self,
        from: String,
        to: String,
        tried: Vec<String>,
        min_window: Option<u64>,
    ) -> Result<Event> {
        let mut fallback = format!(
            "Work on this task moves from {from} to {to}. What was tried:\n{}",
            tried
                .iter()
                .map(|t| format!("- {t}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The change so far, which the next model starts from.
        if let Some(d) = self
            .toolbox
            .as_ref()
            .map(|t| t.diff())
            .filter(|d| !d.is_empty())
        {
            fallback.push_str(&format!(
                "\n\nThe change so far:\n```diff\n{}\n```",
                cut(&d, 2 * RESULT_CHARS).trim_end()
            ));
        }
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
            .chain_for(Role::Summarizer, &req)
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
            .call_parsed_on("handoff", Role::Summarizer, &chain, req, nonempty)
            .await?
        {
            // The facts stay in, whatever the summarizer made of them.
            Ok(s) => format!("{s}\n\n{fallback}"),
            Err(_) => fallback,
        };
        self.remember(&summary, "handoff", &from).await;
        Ok(Event::HandoffWritten(summary))
    }

    /// The event for an executor call no model answered: an overflow
    /// (escalates to a bigger window), or a failure, the servers' when a
    /// server's fault stood in the way.
    pub(super) fn failed(&self, f: &CallFailed) -> Event {
        let error = self.shared.caller.redact(&f.to_string());
        if f.server_fault() {
            return Event::AnswerFailed {
                error,
                server: true,
                last: f.last_model().map(str::to_string),
            };
        }
        if matches!(f.last, Some(crate::llm::LlmError::ContextLength(_))) {
            return Event::Overflowed { error };
        }
        Event::AnswerFailed {
            error,
            server: false,
            last: f.last_model().map(str::to_string),
        }
    }
    /// Watchers (the TUI's run panel) see the answer as it is written.
    pub(super) fn token_relay(&self) -> impl FnMut(crate::llm::StreamEvent<'_>) + Send + use<> {
        let observer = self.shared.observer.clone();
        let (step, task_id) = (self.number, self.task.id);
        move |ev: crate::llm::StreamEvent<'_>| {
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
        }
    }

    /// A line in the streamed answer (a tool call, as it happens).
    pub(super) fn say(&self, text: String) {
        (self.shared.observer)(&Progress::Token {
            step: self.number,
            task_id: self.task.id,
            text,
        });
    }
}
