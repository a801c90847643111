//! Summaries through the summarizer role: a task's, a project's, a
//! handoff, and compaction of a task's raw interactions.

use super::*;

/// When a task's raw interactions are rolled into a summary.
#[derive(Debug, Clone, Copy)]
pub struct CompactPolicy {
    pub max_raw: usize,
    pub max_tokens: u64,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy {
            max_raw: 20,
            max_tokens: 4_000,
        }
    }
}

/// The summary text of a task's uncompacted raw interactions and handoffs,
/// with the records it covers.
pub(super) async fn task_summary_text(
    db: &Store,
    caller: &Caller,
    mode: Mode,
    task_id: i64,
) -> Result<(i64, String, Vec<MemoryRecord>)> {
    let task = db.task(task_id)?;
    let raw = records(
        db,
        "task_id = ?1 AND type IN ('raw_interaction', 'handoff') AND compacted = 0",
        task_id,
    )?;
    if raw.is_empty() {
        return Err(Error::InvalidInput(format!(
            "task {task_id} has no raw interactions to summarize"
        )));
    }
    let items: Vec<String> = raw
        .iter()
        .map(|r| format!("[{}] {}", r.agent, r.text))
        .collect();
    let text = summarize(
        caller,
        mode,
        &format!("Task {}: {}", task.id, task.title),
        &items,
        None,
    )
    .await?;
    Ok((task.project_id, text, raw))
}

/// One summary through the summarizer role's chain.
pub(super) async fn summarize(
    caller: &Caller,
    mode: Mode,
    title: &str,
    items: &[String],
    handoff: Option<(&str, &str)>,
) -> Result<String> {
    let mut prompt = String::new();
    match handoff {
        Some((from, to)) => {
            let _ = writeln!(
                prompt,
                "Work on this task moves from {from} to {to}. Say what was tried, what worked, what did not, and what to do first. At most 150 words."
            );
        }
        None => {
            let _ = writeln!(
                prompt,
                "Summarize the notes below for the agents who work on this next: decisions, results, open questions and failures with their reasons. At most 200 words."
            );
        }
    }
    let _ = writeln!(prompt, "\n## {title}");
    for item in items {
        let _ = writeln!(prompt, "---\n{}", item.trim());
    }
    let registry = caller.registry();
    let info = TaskInfo {
        title,
        role_hint: Some(Role::Summarizer),
        prompt_tokens: estimate_tokens(&prompt),
        output_tokens: Some(400),
        ..Default::default()
    };
    let decision = router::route(registry, &info, mode, caller);
    // The summarizer role, whatever the rules say about the title.
    let chain: Vec<String> = if decision.role == Role::Summarizer {
        decision.chain
    } else {
        registry.roles[&Role::Summarizer].models.clone()
    };
    let req = ChatRequest {
        messages: vec![Message::user(prompt)],
        temperature: registry.roles[&Role::Summarizer].temperature,
        max_tokens: 400,
        role: Some(Role::Summarizer),
        // Streamed: the first-byte timeout then bounds the wait, not the answer.
        stream: true,
        ..Default::default()
    };
    let out = caller
        .call(&chain, &req, None)
        .await
        .map_err(|e| Error::Model(caller.redact(&e.to_string())))?;
    let text = out.response.text.trim().to_string();
    if text.is_empty() {
        return Err(Error::Model(format!(
            "{} returned an empty summary",
            out.model
        )));
    }
    Ok(text)
}

impl Memory {
    /// A task summary from the task's raw interactions and handoffs.
    pub async fn summarize_task(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        task_id: i64,
        agent: &str,
    ) -> Result<MemoryRecord> {
        let (project_id, text, covered) = task_summary_text(db, caller, mode, task_id).await?;
        let covers: Vec<i64> = covered.iter().map(|r| r.id).collect();
        self.store_with_covers(
            db,
            &text,
            project_id,
            Some(task_id),
            "task_summary",
            agent,
            &covers,
        )
        .await
    }

    /// A project summary from its task summaries.
    pub async fn summarize_project(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        project_id: i64,
        agent: &str,
    ) -> Result<MemoryRecord> {
        let project = db.project(project_id)?;
        let summaries = records(
            db,
            "project_id = ?1 AND type = 'task_summary' AND compacted = 0",
            project_id,
        )?;
        if summaries.is_empty() {
            return Err(Error::InvalidInput(format!(
                "project {project_id} has no task summaries yet; summarize its tasks first"
            )));
        }
        let items: Vec<String> = summaries.iter().map(|r| r.text.clone()).collect();
        let text = summarize(
            caller,
            mode,
            &format!("Project {}: {}", project.id, project.name),
            &items,
            None,
        )
        .await?;
        let covers: Vec<i64> = summaries.iter().map(|r| r.id).collect();
        self.store_with_covers(
            db,
            &text,
            project_id,
            None,
            "project_summary",
            agent,
            &covers,
        )
        .await
    }

    /// A handoff summary when work on a task moves between roles or models.
    pub async fn handoff(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        task_id: i64,
        (from, to): (&str, &str),
        tried: &[String],
    ) -> Result<MemoryRecord> {
        let task = db.task(task_id)?;
        let text = summarize(
            caller,
            mode,
            &format!("Task {}: {}", task.id, task.title),
            tried,
            Some((from, to)),
        )
        .await?;
        self.store_memory(db, &text, task.project_id, Some(task_id), "handoff", from)
            .await
    }

    /// Rolls each task's raw interactions into a summary once they pass the
    /// policy's count or token threshold; the raw records are marked
    /// compacted (kept in SQLite, dropped from the index). Returns the new
    /// summaries.
    pub async fn compact(
        &self,
        db: &mut Store,
        caller: &Caller,
        mode: Mode,
        project_id: Option<i64>,
        policy: CompactPolicy,
        agent: &str,
    ) -> Result<Vec<MemoryRecord>> {
        if let Some(p) = project_id {
            db.project(p)?;
        }
        let due: Vec<i64> = {
            let mut stmt = db.conn().prepare(
                "SELECT task_id FROM memories
                  WHERE type = 'raw_interaction' AND compacted = 0 AND task_id IS NOT NULL
                    AND (?1 IS NULL OR project_id = ?1)
                  GROUP BY task_id HAVING count(*) >= ?2 OR sum(tokens) >= ?3 ORDER BY task_id",
            )?;
            stmt.query_map(
                params![project_id, policy.max_raw as i64, policy.max_tokens as i64],
                |r| r.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?
        };
        let mut made = Vec::new();
        for task in due {
            let (project, text, covered) = task_summary_text(db, caller, mode, task).await?;
            let vector = self
                .embedder
                .embed(vec![text.clone()])
                .await?
                .pop()
                .unwrap_or_default();
            let covers: Vec<i64> = covered.iter().map(|r| r.id).collect();
            let raw: Vec<i64> = covered
                .iter()
                .filter(|r| r.kind == "raw_interaction")
                .map(|r| r.id)
                .collect();
            // The summary and the compacted marks land together or not at all.
            let summary = db.batch(|s| {
                let summary = insert(
                    s,
                    &text,
                    project,
                    Some(task),
                    "task_summary",
                    agent,
                    &covers,
                    Some(&vector),
                )?;
                for id in &raw {
                    s.conn()
                        .execute("UPDATE memories SET compacted = 1 WHERE id = ?1", [id])?;
                }
                Ok(summary)
            })?;
            // The index follows; if it is cut short, queries still skip
            // compacted rows and the next catch-up finishes it.
            self.upsert(db, &summary, vector).await?;
            self.index
                .delete(raw.iter().map(|i| *i as u64).collect())
                .await?;
            self.index.flush().await?;
            mark_indexed(db, &[summary.id], true)?;
            mark_indexed(db, &raw, false)?;
            made.push(summary);
        }
        Ok(made)
    }
}
