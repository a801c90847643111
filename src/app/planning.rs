//! Planning on demand: `task expand` asks the planner now for the split a
//! run's planner would make (the same prompt, the same task context, the
//! same rules for which subtasks are kept), and writes it down the way a
//! run does. The call is recorded with the task.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Context;
use super::tasks::TaskRef;
use crate::error::{Error, Result};
use crate::llm::{ChatRequest, Message};
use crate::orchestrator::machine::{MAX_SUBTASKS, Plan, kept_subtasks};
use crate::prompts::Prompts;
use crate::role::Role;
use crate::store::{Status, Store, Task};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpandTask {
    pub id: TaskRef,
    /// At most this many subtasks [default: 12, a run's limit].
    pub max: Option<usize>,
    /// The project a plans.md id is in.
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Expanded {
    pub task_id: i64,
    /// False when the planner kept the task whole.
    pub split: bool,
    pub reason: String,
    /// The model that planned.
    pub model: String,
    pub subtasks: Vec<Task>,
}

/// What routing reads about the work being planned, and the task its
/// calls are recorded with (none for a document).
struct About<'a> {
    project_id: i64,
    title: &'a str,
    description: &'a str,
    tags: &'a [String],
    record_for: Option<i64>,
}

/// The planner's answer for `template` rendered as `text`: routed to the
/// planner role, each attempt recorded, parsed as `T`.
async fn ask_planner<T: serde::de::DeserializeOwned>(
    ctx: &Context,
    store: &mut Store,
    prompts: &Prompts,
    template: &str,
    text: String,
    about: About<'_>,
    purpose: &str,
) -> Result<(T, String)> {
    let registry = Arc::new(ctx.registry()?);
    let p = prompts.get(template);
    let role_temp = registry
        .roles
        .get(&Role::Planner)
        .map_or(0.3, |r| r.temperature);
    let req = ChatRequest {
        messages: vec![Message::user(text.clone())],
        temperature: p.temperature.unwrap_or(role_temp),
        max_tokens: p.max_tokens.unwrap_or(2048),
        json_schema: p.response_schema.clone(),
        stream: true,
        ..Default::default()
    };
    let caller = ctx.caller(registry.clone(), Duration::from_secs(60));
    let info = crate::router::TaskInfo {
        project_id: about.project_id,
        title: about.title,
        description: about.description,
        tags: about.tags,
        role_hint: Some(Role::Planner),
        prompt_tokens: crate::tokens::estimate_tokens(&text),
        output_tokens: Some(req.max_tokens),
        needs_json: true,
    };
    let d = crate::router::route_role(&registry, Role::Planner, &info, ctx.mode(), &caller);
    if d.chain.is_empty() {
        let why: Vec<String> = d
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.model, super::models::skip_reason(&s.why)))
            .collect();
        return Err(Error::Model(format!(
            "no planner model can take this now ({}); `llmclis models list` shows the servers",
            why.join("; ")
        )));
    }
    let result = caller.call(&d.chain, &req, None).await;
    for (_, mut call) in
        crate::llm::caller::call_records(&result, &req, &registry, Role::Planner.as_str(), purpose)
    {
        call.task_id = about.record_for;
        store.record_model_call(&call)?;
    }
    let o = result.map_err(|f| Error::Model(caller.redact(&f.to_string())))?;
    let parsed = crate::orchestrator::step::parse_json::<T>(&o.response.text)
        .map_err(|why| Error::Model(format!("{} gave an unusable plan: {why}", o.model)))?;
    Ok((parsed, o.model))
}

/// Splits one task now, as a run's planner would.
pub async fn expand(ctx: &Context, store: &mut Store, req: ExpandTask) -> Result<Expanded> {
    let id = req.id.resolve(store, req.project_id)?;
    let task = store.task(id)?;
    if task.status == Status::Done {
        return Err(Error::InvalidInput(format!(
            "task {id} is done: there is nothing left to split"
        )));
    }
    let existing = store.subtasks(id)?;
    if !existing.is_empty() {
        return Err(Error::InvalidInput(format!(
            "task {id} is split already ({} subtasks); `llmclis task show {id}` lists them",
            existing.len()
        )));
    }
    let max = req.max.unwrap_or(MAX_SUBTASKS);
    if !(2..=MAX_SUBTASKS).contains(&max) {
        return Err(Error::InvalidInput(format!(
            "--max must be between 2 and {MAX_SUBTASKS}"
        )));
    }
    let material = crate::orchestrator::context::gather(store, &task)?;
    let prompts = Prompts::load(&ctx.paths.config_dir)?;
    let text = prompts.render("planner", &material.vars)?;
    let about = About {
        project_id: task.project_id,
        title: &task.title,
        description: &task.description,
        tags: &task.tags,
        record_for: Some(id),
    };
    let (plan, model): (Plan, String) =
        ask_planner(ctx, store, &prompts, "planner", text, about, "expand").await?;
    let subtasks = kept_subtasks(plan.subtasks, max);
    if !plan.split || subtasks.len() < 2 {
        let why = if plan.reason.trim().is_empty() {
            "it fits one step".to_string()
        } else {
            crate::text::short(&plan.reason, 300)
        };
        store.append_task_note(
            id,
            &format!("The planner kept the task whole: {why}"),
            &ctx.agent,
        )?;
        return Ok(Expanded {
            task_id: id,
            split: false,
            reason: plan.reason,
            model,
            subtasks: Vec::new(),
        });
    }
    let agent = ctx.agent.clone();
    let ids = store.batch(|s| {
        let (ids, note) =
            crate::orchestrator::split::write(s, &task, &subtasks, &plan.reason, &agent)?;
        s.append_task_note(id, &note, &agent)?;
        Ok(ids)
    })?;
    // The plan file shows the new subtasks under their task.
    crate::docs::sync::follow(store, id, &ctx.agent, None)?;
    let subtasks = ids.iter().map(|i| store.task(*i)).collect::<Result<_>>()?;
    Ok(Expanded {
        task_id: id,
        split: true,
        reason: plan.reason,
        model,
        subtasks,
    })
}

#[derive(Debug, Clone)]
pub struct ParsePrd {
    /// The requirements document.
    pub document: std::path::PathBuf,
    /// The plans.md the stages go into (made when missing).
    pub into: std::path::PathBuf,
    pub project_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Parsed {
    pub plans: String,
    pub project_id: i64,
    /// The stages added, by number.
    pub stages: Vec<u32>,
    pub tasks: usize,
    pub model: String,
}

/// A free-form requirements document into plans.md stages and tasks with
/// dependencies, by the planner; appended after the file's own stages
/// (which are never touched), then imported.
pub async fn parse_prd(ctx: &Context, store: &mut Store, req: ParsePrd) -> Result<Parsed> {
    let document = crate::docs::read_doc(&req.document)?;
    if document.trim().is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} is empty: there is nothing to plan",
            req.document.display()
        )));
    }
    // The file as it is now: its stages are what the planner must not repeat.
    let existing = match req.into.exists() {
        true => Some(crate::docs::plans::PlansDoc::parse(
            &crate::docs::read_doc(&req.into)?,
            &req.into,
        )?),
        false => None,
    };
    let titles: Vec<String> = existing
        .iter()
        .flat_map(|d| d.stages.iter())
        .map(|s| format!("- Stage {}: {}", s.number, s.title))
        .collect();
    let name = req
        .document
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prompts = Prompts::load(&ctx.paths.config_dir)?;
    let text = prompts.render(
        crate::prompts::PRD,
        serde_json::json!({"document": document, "name": name, "existing": titles.join("\n")}),
    )?;
    let title = format!("Plan {name}");
    let about = About {
        project_id: req.project_id.unwrap_or(0),
        title: &title,
        description: "",
        tags: &[],
        record_for: None,
    };
    let (outline, model): (crate::docs::prd::Outline, String) = ask_planner(
        ctx,
        store,
        &prompts,
        crate::prompts::PRD,
        text,
        about,
        "plans_parse",
    )
    .await?;
    let stamp = crate::docs::stamp_now();
    let mut added = (Vec::new(), 0usize);
    let mut write = |base: &str| -> Result<String> {
        let doc = crate::docs::plans::PlansDoc::parse(base, &req.into)?;
        let first = doc.stages.iter().map(|s| s.number).max().unwrap_or(0) + 1;
        let (sections, n) = crate::docs::prd::render(&outline, first, &stamp, &ctx.agent);
        if n == 0 {
            return Err(Error::Model(format!(
                "{model} planned no task from {name}; nothing was written"
            )));
        }
        let mut text = base.trim_end().to_string();
        text.push('\n');
        text.push_str(&sections);
        let parsed = crate::docs::plans::PlansDoc::parse(&text, &req.into)?;
        added = (
            parsed
                .stages
                .iter()
                .map(|s| s.number)
                .filter(|n| *n >= first)
                .collect(),
            n,
        );
        Ok(text)
    };
    if req.into.exists() {
        crate::docs::update_file(&req.into, write)?;
    } else {
        let text = write(&format!("# {} – Plans\n", name.trim_end_matches(".md")))?;
        if !crate::fsutil::create_atomic(&req.into, text.as_bytes())? {
            return Err(Error::Conflict {
                path: req.into.clone(),
                message: "another program made it meanwhile; run again".into(),
            });
        }
    }
    let report = crate::docs::import::import(store, &req.into, req.project_id, &ctx.agent)?;
    Ok(Parsed {
        plans: req.into.display().to_string(),
        project_id: report.project_id,
        stages: added.0,
        tasks: added.1,
        model,
    })
}
