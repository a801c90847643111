//! `llmclis models …`, `llmclis route explain`, `llmclis chat`.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use serde_json::json;

use super::{Ctx, emit};
use crate::app::handles::Caller;
use crate::app::types::CallOutcome;
use crate::app::types::{ChatRequest, Message, StreamEvent};
use crate::app::types::{Mode, Registry};
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// The registry's models, and what each server actually serves
    List,
    /// A smoke prompt per model: status, latency, tokens/s, response size
    Health {
        /// Only this model
        #[arg(long, value_name = "ID")]
        model: Option<String>,
    },
    /// Memory per device, what each local server holds and how busy it is,
    /// and whether each local model is loaded, fits or does not
    Status,
    /// Load a local model now: Ollama (a preload), vLLM in sleep mode
    /// (wake up), llama.cpp's server in router mode
    Load {
        /// The model's id in the registry
        id: String,
        /// Ollama: how long it stays loaded when idle (`10m`, `-1` for ever)
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        keep_alive: Option<String>,
    },
    /// Unload a local model and free its memory: Ollama (keep_alive 0),
    /// vLLM in sleep mode (sleep), llama.cpp's server in router mode
    Unload {
        /// The model's id in the registry
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Which role and models a task would get, and why the others are skipped
    Explain {
        /// The task's id
        #[arg(long, value_name = "ID")]
        task: i64,
    },
}

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Use this role's models: planner, coder, tester, critic, researcher,
    /// writer or summarizer (by default the rules pick, from the prompt)
    #[arg(long, value_name = "R", conflicts_with = "model", value_parser = super::closed::closed::<crate::app::types::Role>(&crate::app::types::ROLES))]
    role: Option<crate::app::types::Role>,
    /// Use this model only
    #[arg(long, value_name = "ID")]
    model: Option<String>,
    /// The longest answer, in tokens
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_tokens: u64,
    /// [default: the role's temperature]
    #[arg(long, value_name = "T")]
    temperature: Option<f32>,
    /// A system message
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// What to ask; `-` reads it from stdin
    prompt: String,
}

fn caller(ctx: &Ctx) -> Result<(Arc<Registry>, Caller)> {
    let registry = Arc::new(ctx.registry()?);
    let caller = ctx.caller(registry.clone(), Duration::from_secs(30));
    Ok((registry, caller))
}

pub fn models(ctx: &Ctx, cmd: ModelsCmd, out: &mut impl Write) -> Result<()> {
    use crate::app::types::ResourceAction as Action;
    match cmd {
        ModelsCmd::Status => super::resources::status(ctx, out),
        ModelsCmd::Load { id, keep_alive } => {
            super::resources::act(ctx, &id, Action::Load, keep_alive.as_deref(), out)
        }
        ModelsCmd::Unload { id } => super::resources::act(ctx, &id, Action::Unload, None, out),
        ModelsCmd::List => list(ctx, out),
        ModelsCmd::Health { model } => health(ctx, model, out),
    }
}

fn list(ctx: &Ctx, out: &mut impl Write) -> Result<()> {
    let (registry, caller) = caller(ctx)?;
    let rt = crate::app::runtime()?;
    let status = rt.block_on(crate::app::models::status(&registry, &caller, ctx.mode()));
    emit(out, ctx.json, &status, || render_list(&registry, &status))
}

fn health(ctx: &Ctx, model: Option<String>, out: &mut impl Write) -> Result<()> {
    let (registry, caller) = caller(ctx)?;
    let mode = ctx.mode();
    let rt = crate::app::runtime()?;
    let ids: Vec<String> = match &model {
        Some(id) => {
            let m = registry.known_model(id)?;
            // Offline mode never sends a request to an online provider.
            if !registry.provider_of(m).local && mode == Mode::Offline {
                return Err(Error::InvalidInput(format!(
                    "{id} is an API model; the mode is offline: pass --mode online"
                )));
            }
            vec![id.clone()]
        }
        None => registry
            .models
            .iter()
            .filter(|m| mode == Mode::Online || registry.provider_of(m).local)
            .map(|m| m.id.clone())
            .collect(),
    };
    let results: Vec<serde_json::Value> = rt.block_on(async {
        let mut out = Vec::new();
        for id in &ids {
            out.push(smoke(&caller, id).await);
        }
        out
    });
    let failed = results.iter().filter(|r| r["ok"] == false).count();
    emit(out, ctx.json, &results, || render_health(&results))?;
    if failed > 0 {
        let down: Vec<&str> = results
            .iter()
            .filter(|r| r["ok"] == false)
            .filter_map(|r| r["model"].as_str())
            .collect();
        return Err(Error::Model(format!(
            "{failed} of {} model(s) did not answer the smoke prompt: {}; start their servers or fix model_registry.yaml",
            ids.len(),
            down.join(", ")
        )));
    }
    Ok(())
}

/// One short prompt to one model, no retries: what a person checks first.
async fn smoke(caller: &Caller, id: &str) -> serde_json::Value {
    let req = ChatRequest {
        messages: vec![Message::user("Reply with the single word OK.")],
        temperature: 0.0,
        max_tokens: 16,
        ..Default::default()
    };
    let model = caller.registry().model(id).expect("checked");
    let provider = caller.registry().provider_of(model);
    let client = caller
        .client(&provider.name)
        .expect("a client per provider");
    match client.chat(&model.served_name, &req, None).await {
        Ok(r) => {
            let secs = r.latency.as_secs_f64().max(1e-6);
            json!({
                "model": id, "provider": provider.name, "ok": true,
                "latency_ms": r.latency.as_millis() as u64,
                "completion_tokens": r.usage.completion_tokens,
                "tokens_estimated": r.usage.estimated,
                "tokens_per_s": (r.usage.completion_tokens as f64 / secs * 10.0).round() / 10.0,
                "response_bytes": r.text.len(),
                "error": null,
            })
        }
        Err(e) => json!({
            "model": id, "provider": provider.name, "ok": false,
            "latency_ms": null, "completion_tokens": null, "tokens_estimated": null,
            "tokens_per_s": null, "response_bytes": null,
            "error": caller.redact(&e.to_string()),
        }),
    }
}

pub fn route(ctx: &Ctx, cmd: RouteCmd, out: &mut impl Write) -> Result<()> {
    let RouteCmd::Explain { task } = cmd;
    let e = crate::app::route::explain(ctx, task)?;
    let value = serde_json::to_value(&e).expect("serializes");
    let decision = &e.decision;
    emit(out, ctx.json, &value, || {
        let mut s = format!(
            "Task {} → role {} (temperature {}), rule {:?}, mode {}, ~{} prompt tokens at the least\n",
            e.task_id,
            decision.role,
            decision.temperature,
            decision.rule,
            json!(decision.mode).as_str().unwrap_or(""),
            e.least_tokens
        );
        if decision.chain.is_empty() {
            s.push_str("No model can take it now:\n");
        } else {
            let _ = writeln!(s, "Models, in order: {}", decision.chain.join(" → "));
        }
        for p in &decision.preferred {
            let _ = writeln!(s, "  {} before {}: {}", p.model, p.over, p.why);
        }
        for sk in &decision.skipped {
            let _ = writeln!(
                s,
                "  skipped {}: {}",
                sk.model,
                crate::app::models::skip_reason(&sk.why)
            );
        }
        for d in &e.servers_down {
            let _ = writeln!(s, "  down: {d}");
        }
        match (&e.context, &e.reason) {
            (Some(c), _) => {
                let _ = writeln!(
                    s,
                    "A run gives it to {} with ~{} prompt tokens of context (its budget {}, window {}; memory not counted).",
                    c.model, c.tokens, c.budget, c.window
                );
                if let Some(line) = c.describe() {
                    let _ = writeln!(s, "  {line}");
                }
            }
            (None, Some(why)) => {
                let verb = if e.outcome == "waits" {
                    "A run leaves it pending"
                } else {
                    "A run blocks it"
                };
                let _ = writeln!(s, "{verb}: {why}");
            }
            (None, None) => {}
        }
        for p in &e.setup_problems {
            let stops = if p.fatal {
                "no run starts"
            } else {
                "its tasks are blocked"
            };
            let _ = writeln!(
                s,
                "Setup: no {} model can serve ({}); {stops}. Fix: {}",
                p.role, p.why, p.fix
            );
        }
        s.trim_end().to_string()
    })
}

pub fn chat(ctx: &Ctx, mut args: ChatArgs, out: &mut impl Write) -> Result<()> {
    args.prompt = super::text_arg(args.prompt, "prompt")?;
    let (registry, caller) = caller(ctx)?;
    let mode = ctx.mode();
    let (chain, temperature, role) = crate::app::models::chat_route(
        &registry,
        &caller,
        mode,
        args.model.as_deref(),
        args.role,
        &args.prompt,
        args.system.as_deref(),
        args.max_tokens,
    )?;
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(Message::system(s.clone()));
    }
    messages.push(Message::user(args.prompt.clone()));
    let req = ChatRequest {
        messages,
        temperature: args.temperature.unwrap_or(temperature),
        max_tokens: args.max_tokens,
        // Streamed always: `timeout_secs` bounds the wait for the first
        // byte, never a long answer.
        stream: true,
        role,
        ..Default::default()
    };
    let rt = crate::app::runtime()?;
    // The whole call, retries and fallbacks included: what the person waited.
    let started = std::time::Instant::now();
    // On a terminal the answer is shown as it comes, and a restart erases
    // it; anywhere else (a file, a pipe, --json) stdout gets the one whole
    // answer at the end, so `chat … > answer.md` never holds half of one.
    let live = !ctx.json && std::io::stdout().is_terminal();
    let mut restarts: Vec<Restart> = Vec::new();
    let result: std::result::Result<CallOutcome, _> = rt.block_on(async {
        let mut screen = Screen::default();
        let mut on_event = |ev: StreamEvent<'_>| match ev {
            StreamEvent::Token(t) if live => screen.show(t),
            StreamEvent::Token(_) => {}
            StreamEvent::Restart {
                failed_model,
                next_model,
            } => {
                if live {
                    screen.erase();
                }
                if !ctx.json {
                    if failed_model == next_model {
                        eprintln!("[{failed_model}'s answer broke off; asking it again]");
                    } else {
                        eprintln!(
                            "[{failed_model} failed mid-answer; starting over with {next_model}]"
                        );
                    }
                }
                restarts.push(Restart {
                    failed_model: failed_model.to_string(),
                    next_model: next_model.to_string(),
                });
            }
        };
        caller.call(&chain, &req, Some(&mut on_event)).await
    });
    let outcome = result.map_err(|e| Error::Model(caller.redact(&e.to_string())))?;
    if ctx.json {
        #[derive(Serialize)]
        struct Answered<'o> {
            #[serde(flatten)]
            outcome: &'o CallOutcome,
            /// Each answer that broke off mid-stream and started over.
            restarts: &'o [Restart],
        }
        let shown = Answered {
            outcome: &outcome,
            restarts: &restarts,
        };
        emit(out, true, &shown, String::new)
    } else {
        let r = &outcome.response;
        if !live {
            out.write_all(r.text.as_bytes())
                .map_err(|e| Error::io("<stdout>", e))?;
        }
        writeln!(out).map_err(|e| Error::io("<stdout>", e))?;
        eprintln!(
            "— {} ({}), {}+{} tokens{}, {:.2} s",
            outcome.model,
            outcome.provider,
            r.usage.prompt_tokens,
            r.usage.completion_tokens,
            if r.usage.estimated {
                " (estimated)"
            } else {
                ""
            },
            started.elapsed().as_secs_f64()
        );
        if r.finish_reason.as_deref() == Some("length") {
            eprintln!(
                "— the answer was cut at {} tokens; raise it with --max-tokens",
                args.max_tokens
            );
        }
        Ok(())
    }
}

fn render_list(registry: &Registry, status: &crate::app::models::ModelsStatus) -> String {
    let (providers, models) = (&status.providers, &status.models);
    let mut s = format!(
        "Registry: {} (mode {})\n\n",
        registry.source,
        json!(status.mode).as_str().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "{:<12} {:<18} {:<6} {:<10} URL",
        "PROVIDER", "KIND", "LOCAL", "STATUS"
    );
    for p in providers.iter() {
        let status = match (&p.health, p.local) {
            (Some(h), _) if h.ok => format!("up {}", h.checked),
            (Some(_), _) => "down".to_string(),
            (None, _) => "not asked".to_string(),
        };
        let kind = p.flavour.clone().unwrap_or_else(|| "anthropic".into());
        let key = match (&p.api_key_env, p.api_key_set) {
            (Some(v), true) => format!("  ({v} set)"),
            (Some(v), false) => format!("  ({v} not set)"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{:<12} {:<18} {:<6} {:<10} {}{key}",
            p.name,
            kind,
            if p.local { "yes" } else { "no" },
            status,
            p.base_url
        );
    }
    let _ = writeln!(
        s,
        "\n{:<26} {:<11} {:>8} {:>13}  SERVED",
        "MODEL", "PROVIDER", "CONTEXT", "$/1M IN/OUT"
    );
    let mut smaller = Vec::new();
    for m in models.iter() {
        let served = match m.served {
            Some(true) => "yes",
            Some(false) => "no (not listed by the server)",
            None => "-",
        };
        let context = match m.server_window {
            Some(w) => {
                smaller.push(format!(
                    "{}: the server runs a {w}-token window, the registry says {}; llmclis uses {w} (set context_window: {w} in the registry)",
                    m.model.id, m.model.context_window
                ));
                format!("{w}*")
            }
            None => m.model.context_window.to_string(),
        };
        let _ = writeln!(
            s,
            "{:<26} {:<11} {:>8} {:>13}  {served}",
            m.model.id,
            m.model.provider,
            context,
            format!(
                "{}/{}",
                m.model.cost_per_1m_input, m.model.cost_per_1m_output
            )
        );
    }
    if !smaller.is_empty() {
        let _ = writeln!(s, "\n* smaller than the registry says:");
        for line in smaller {
            let _ = writeln!(s, "  {line}");
        }
    }
    s.trim_end().to_string()
}

fn render_health(results: &[serde_json::Value]) -> String {
    let mut s = format!(
        "{:<26} {:<6} {:>9} {:>9} {:>7}  NOTE\n",
        "MODEL", "STATUS", "LATENCY", "TOKENS/S", "BYTES"
    );
    for r in results {
        if r["ok"] == true {
            let _ = writeln!(
                s,
                "{:<26} {:<6} {:>7}ms {:>9} {:>7}",
                r["model"].as_str().unwrap_or(""),
                "ok",
                r["latency_ms"],
                r["tokens_per_s"],
                r["response_bytes"]
            );
        } else {
            let _ = writeln!(
                s,
                "{:<26} {:<6} {:>9} {:>9} {:>7}  {}",
                r["model"].as_str().unwrap_or(""),
                "down",
                "-",
                "-",
                "-",
                r["error"].as_str().unwrap_or("")
            );
        }
    }
    s.trim_end().to_string()
}

/// An answer that broke off mid-stream, and the model that started over.
#[derive(Debug, Serialize)]
struct Restart {
    failed_model: String,
    next_model: String,
}

/// The answer shown on a terminal as it streams.
#[derive(Default)]
struct Screen {
    shown: String,
}

impl Screen {
    fn show(&mut self, t: &str) {
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(t.as_bytes());
        let _ = stdout.flush();
        self.shown.push_str(t);
    }

    /// Moves back to where the answer began and clears the screen below,
    /// counting the rows it took at the terminal's width.
    fn erase(&mut self) {
        let width = ratatui::crossterm::terminal::size()
            .map(|(w, _)| usize::from(w.max(1)))
            .unwrap_or(80);
        let rows: usize = self
            .shown
            .split('\n')
            .map(|line| {
                ratatui::text::Line::from(line)
                    .width()
                    .div_ceil(width)
                    .max(1)
            })
            .sum();
        let mut stdout = std::io::stdout();
        let up = if rows > 1 {
            format!("\x1b[{}A", rows - 1)
        } else {
            String::new()
        };
        let _ = write!(stdout, "\r{up}\x1b[J");
        let _ = stdout.flush();
        self.shown.clear();
    }
}
