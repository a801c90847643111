//! The executor with codebase tools: the tool loop (native tool calls or
//! the JSON action protocol), one tool call, and voting candidates that each
//! run the loop in their own overlay.

use super::*;

impl StepRun<'_> {
    /// Voting for a role with tools: each candidate runs the tool loop in
    /// its own overlay, one after another (they share the project's files
    /// and commands). The voters see each answer with its proposed diff.
    pub(super) async fn sample_with_tools(
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
        let mut server = true;
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
                Event::Answered { text, .. } => {
                    server = false;
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
                    error, server: s, ..
                } => {
                    server &= s;
                    Err(error)
                }
                Event::Overflowed { error } => {
                    server = false;
                    Err(error)
                }
                other => {
                    server = false;
                    Err(format!("no answer ({other:?})"))
                }
            });
        }
        self.toolbox = Some(base);
        Ok(Event::Sampled { samples, server })
    }

    /// The answer chosen by vote is about to be reviewed: its candidate's
    /// changes become the step's (written when writes are on).
    pub(super) fn adopt_winner(&mut self, answer: &str) -> Result<()> {
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

    /// The executor with codebase tools: the model asks for tools (natively,
    /// or with a JSON action block when its server has no tool calling),
    /// each call runs in the sandbox and its result goes back, until it
    /// answers without a tool or reaches `max_calls`.
    pub(super) async fn tool_loop(
        &mut self,
        mut model: String,
        mut req: ChatRequest,
    ) -> Result<Event> {
        // Native tool calls where the client speaks them (not Ollama's
        // native API); the text protocol elsewhere.
        let registry = self.shared.caller.registry();
        let native = registry.model(&model).is_some_and(|m| {
            m.capabilities.iter().any(|c| c == "tools") && !registry.provider_of(m).is_ollama()
        });
        let specs = tool_specs();
        // Each turn streams (a long turn is never cut by the first-byte
        // timeout); watchers (the board's run panel) see it as it comes.
        let streams = self.shared.opts.stream_tokens;
        req.stream = true;
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
        let role = self.exec_role;
        let max = self.shared.opts.tools.max_calls;
        let mut calls = 0usize;
        // The same call failing again and again (a model stuck on one
        // mistake): after this many in a row the tools are taken away.
        let mut repeats = (String::new(), 0usize);
        let mut stopped: Option<String> = None;
        // The model that took over when a server failed mid-loop.
        let mut answered_by: Option<String> = None;
        loop {
            if let Some(why) = &stopped {
                // One last turn without tools must give the answer.
                req.tools.clear();
                req.messages.push(Message::user(format!(
                    "{why} No more tool calls: answer now with what you did and what is left."
                )));
            }
            // A server's fault moves the turn on to a later model that
            // speaks the same tool protocol; that model then goes on.
            let same_protocol = |m: &crate::registry::Model| {
                (m.capabilities.iter().any(|c| c == "tools")
                    && !registry.provider_of(m).is_ollama())
                    == native
            };
            let chain = self.onward(&model, &req, same_protocol);
            let mut relay = self.token_relay();
            let sink: Option<crate::llm::Sink<'_>> = if streams { Some(&mut relay) } else { None };
            let result = self.shared.caller.call(&chain, &req, sink).await;
            self.record("execute", role.as_str(), &req, &result, None)?;
            let o = match result {
                Ok(o) => o,
                Err(f) => return Ok(self.failed(&f)),
            };
            if let Some(next) = self.moved_on(&model, &o)? {
                answered_by = Some(next.clone());
                model = next;
            }
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
                        server: false,
                        last: Some(model),
                        error: format!("{why} The model gave no answer without tools."),
                    });
                }
                return Ok(Event::Answered {
                    text: o.response.text,
                    by: answered_by,
                });
            }
            if asked.is_empty() {
                let mut text = o.response.text;
                if text.trim().is_empty() {
                    text = "(The agent made its changes with tools and wrote no summary.)".into();
                }
                return Ok(Event::Answered {
                    text,
                    by: answered_by,
                });
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
                if streams {
                    self.say(format!(
                        "\n→ {} {}\n",
                        call.name,
                        cut(&call.arguments.to_string(), 100)
                    ));
                }
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
    pub(super) async fn run_tool(&mut self, call: &crate::llm::ToolCall) -> Result<String> {
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
                        .query_memory(
                            self.db,
                            query,
                            &crate::memory::Scope::project(self.task.project_id),
                            5,
                        )
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
                .map_err(|e| crate::Error::Internal(format!("a tool stopped: {e}")))?;
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
}

/// The same failing tool call this many times in a row ends the tool loop.
const SAME_FAILURE_LIMIT: usize = 3;

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
