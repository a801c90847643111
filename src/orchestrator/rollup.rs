//! The project summary a run keeps fresh: every `project_summary_every`
//! done tasks and at the end of a run that finished any, from its stage
//! summaries and the task summaries no stage summary covers yet
//! (`memory::rollup::project_material`). Older project summaries stay as
//! history; the newest is the one prompts use.

use serde_json::json;

use super::context::{RESULT_CHARS, cut};
use super::progress::Progress;
use super::shared::{Shared, Spend};
use crate::error::Result;
use crate::llm::{ChatRequest, Message};
use crate::role::Role;
use crate::router::{self, TaskInfo, estimate_tokens};
use crate::store::Store;

/// The most summaries a project summary is made from.
const MAX_ITEMS: usize = 24;

/// Writes a new project summary; false when there is nothing to summarize
/// or no summarizer answered (said as a warning: the run's work is safe).
pub(super) async fn project_summary(shared: &Shared, db: &mut Store) -> Result<bool> {
    let project_id = shared.opts.project_id;
    let project = db.project(project_id)?;
    let material = crate::memory::rollup::project_material(db, project_id, MAX_ITEMS)?;
    if material.is_empty() {
        return Ok(false);
    }
    let items: Vec<String> = material
        .iter()
        .map(|r| cut(&r.text, 2 * RESULT_CHARS))
        .collect();
    let text = shared.prompts.render(
        "summarizer",
        json!({
            "kind": "project_summary",
            "title": format!("Project {}: {}", project.id, project.name),
            "items": items,
            "max_words": 250,
        }),
    )?;
    let registry = shared.caller.registry();
    let req = ChatRequest {
        messages: vec![Message::user(text.clone())],
        temperature: registry.roles[&Role::Summarizer].temperature,
        max_tokens: 600,
        stream: true,
        role: Some(Role::Summarizer),
        ..Default::default()
    };
    let info = TaskInfo {
        title: "project summary",
        role_hint: Some(Role::Summarizer),
        prompt_tokens: estimate_tokens(&text),
        output_tokens: Some(600),
        ..Default::default()
    };
    let conditions = Spend {
        caller: &shared.caller,
        run: shared.spent(),
        task: 0.0,
    };
    let chain = router::route_role(
        registry,
        Role::Summarizer,
        &info,
        shared.opts.mode,
        &conditions,
    )
    .chain;
    let result = shared.caller.call(&chain, &req, None).await;
    for (_, mut call) in
        crate::llm::caller::call_records(&result, &req, registry, "summarizer", "summarize")
    {
        call.run_id = Some(shared.run_id);
        shared.add_spent(call.cost_usd);
        db.record_model_call(&call)?;
    }
    let summary = match result {
        Ok(o) if !o.response.text.trim().is_empty() => o.response.text.trim().to_string(),
        Ok(o) => {
            warn(shared, format!("{} gave an empty project summary", o.model));
            return Ok(false);
        }
        Err(e) => {
            warn(shared, shared.caller.redact(&e.to_string()));
            return Ok(false);
        }
    };
    let covers: Vec<i64> = material.iter().map(|r| r.id).collect();
    crate::memory::rollup::save_summary(
        db,
        &summary,
        project_id,
        None,
        "project_summary",
        "summarizer",
        &covers,
    )?;
    compact(shared, db);
    shared.kick_indexer();
    Ok(true)
}

/// Takes out of the index the raw interactions `[memory] compact` says are
/// rolled up (after each summary the run writes, and at recovery: a kill
/// between a summary and this is caught up). A failure is a warning: the
/// rows stay indexed until the next summary.
pub(super) fn compact(shared: &Shared, db: &mut Store) {
    let project = shared.opts.project_id;
    if let Err(e) = crate::memory::rollup::compact_rolled_up(db, project, shared.opts.compact) {
        (shared.observer)(&Progress::Warning {
            message: format!("memory compaction of project {project} skipped ({e})"),
        });
    }
}

fn warn(shared: &Shared, why: String) {
    (shared.observer)(&Progress::Warning {
        message: format!("no new project summary ({why}); the last one stays"),
    });
}
