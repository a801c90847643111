//! Human text for what a run reports, shared by the command line and the
//! board: a progress event as one line, a step as one line, a cost.

use crate::text::{money, short};

/// One progress line of a headless run; `None` for events shown elsewhere
/// (warnings go to stderr).
pub fn progress(p: &crate::orchestrator::run::Progress) -> Option<String> {
    use crate::orchestrator::run::Progress as P;
    Some(match p {
        P::RunStarted {
            run_id,
            project_id,
            agent,
            mode,
            workers,
            max_steps,
            memory,
        } => format!(
            "run {run_id} on project {project_id} as {agent}: {} mode, {workers} worker(s), up to {max_steps} step(s); memory {memory}",
            serde_json::to_value(mode).ok()?.as_str()?
        ),
        P::StepStarted {
            step,
            task_id,
            external_ref,
            title,
            role,
            rule,
            chain,
            plan,
            ..
        } => format!(
            "[{step}] task {task_id}{} {}: {role} (rule {rule}){}; models {}",
            external_ref
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            short(title, 60),
            if *plan { ", planner first" } else { "" },
            if chain.is_empty() {
                "none".to_string()
            } else {
                chain.join(" → ")
            }
        ),
        P::ContextCut {
            step,
            model,
            window,
            tokens,
            cut,
            ..
        } => format!(
            "[{step}]   context cut for {model}'s {window}-token window (~{tokens} tokens): {}",
            short(
                &cut.iter()
                    .map(|c| c.what.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                160
            )
        ),
        P::CheckStarted { step, command, .. } => {
            format!("[{step}]   check     {}", short(command, 120))
        }
        P::CheckFinished {
            step,
            command,
            exit_code,
            passed,
            seconds,
            ..
        } => format!(
            "[{step}]   check     {} {} in {seconds:.1} s{}",
            short(command, 100),
            if *passed { "passed" } else { "failed" },
            match exit_code {
                Some(c) if !passed => format!(" (exit {c})"),
                None if !passed => " (did not finish, or refused before it ran)".into(),
                _ => String::new(),
            }
        ),
        P::TaskWaits {
            step,
            task_id,
            reason,
        } => format!(
            "{}task {task_id} waits for a model: {}",
            if *step > 0 {
                format!("[{step}] ")
            } else {
                String::new()
            },
            short(reason, 200)
        ),
        P::MadeRoom {
            step,
            unloaded,
            loaded,
            took_ms,
            error,
            ..
        } => match error {
            None => format!(
                "[{step}] unloaded {} to load {loaded} ({:.1} s)",
                unloaded.join(", "),
                *took_ms as f64 / 1000.0
            ),
            Some(e) => format!(
                "[{step}] could not make room for {loaded}: {}",
                short(e, 160)
            ),
        },
        P::ModelCall {
            step,
            purpose,
            model,
            outcome,
            prompt_tokens,
            completion_tokens,
            latency_ms,
            cost_usd,
            error,
            ..
        } => {
            let tokens = match (prompt_tokens, completion_tokens) {
                (Some(p), Some(c)) => format!(", {p}+{c} tokens"),
                _ => String::new(),
            };
            let cost = if *cost_usd > 0.0 {
                format!(", ${cost_usd:.4}")
            } else {
                String::new()
            };
            let err = error
                .as_deref()
                .map(|e| format!(": {}", short(e, 120)))
                .unwrap_or_default();
            format!(
                "[{step}]   {purpose:<9} {model} {outcome} in {:.1} s{tokens}{cost}{err}",
                *latency_ms as f64 / 1000.0
            )
        }
        P::ToolCall {
            step,
            tool,
            ok,
            result_bytes,
            duration_ms,
            ..
        } => format!(
            "[{step}]   tool      {tool} {} ({result_bytes} bytes, {duration_ms} ms)",
            if *ok { "ok" } else { "error" }
        ),
        P::Verdict {
            step,
            verdict,
            reasons,
            ..
        } => format!(
            "[{step}]   critic: {verdict}{}",
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", short(&reasons.join("; "), 140))
            }
        ),
        P::Note { step, text, .. } => format!("[{step}]   note: {}", short(text, 160)),
        P::StatusChange {
            step,
            task_id,
            from,
            to,
        } => format!("[{step}]   task {task_id}: {from} → {to}"),
        P::StepFinished {
            step,
            task_id,
            outcome,
            model,
            rounds,
            seconds,
            cost_usd,
            ..
        } => format!(
            "[{step}] task {task_id} {}{}{} in {seconds:.1} s{}",
            serde_json::to_value(outcome).ok()?.as_str()?,
            model
                .as_deref()
                .map(|m| format!(" by {m}"))
                .unwrap_or_default(),
            if *rounds > 0 {
                format!(" after {rounds} round(s)")
            } else {
                String::new()
            },
            if *cost_usd > 0.0 {
                format!(", ${cost_usd:.4}")
            } else {
                String::new()
            }
        ),
        P::Recovered { message } => format!("recovered: {message}"),
        P::Warning { .. } | P::Token { .. } => return None,
        P::Interrupting => {
            "interrupt: taking no new task; the work in flight goes back to the queue (Ctrl-C again to exit at once)".into()
        }
        P::RunSummary(s) => format!(
            "run {} {} ({}): {} step(s): {} done ({} verified), {} blocked, {} split, {} released, {} failed{}; {} model call(s), {} tokens, {}, {:.1} s\nproject {}: {}",
            s.run_id,
            s.status,
            s.stopped_because.replace('_', " "),
            s.steps,
            s.done,
            s.verified,
            s.blocked,
            s.split,
            s.released,
            s.failed,
            [
                (s.lost, "lost to another agent"),
                (s.waiting, "waiting for a model that is down")
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!(", {n} {what}"))
            .collect::<String>(),
            s.model_calls,
            s.prompt_tokens + s.completion_tokens,
            money(s.cost_usd),
            s.seconds,
            s.project_id,
            counts_line(&s.counts)
        ),
    })
}

/// One orchestrator step of a task: its run, how it ended (a step whose
/// run died is `lost`, with why), when, and by which model.
pub fn step_line(st: &crate::store::RunStep) -> String {
    let outcome = st.outcome.map_or("running", |o| o.as_str());
    let mut why = st
        .detail
        .get("lost_because")
        .and_then(|w| w.as_str())
        .map(|w| format!(" ({})", short(w, 100)))
        .unwrap_or_default();
    if let Some(c) = st
        .detail
        .get("context")
        .and_then(|c| serde_json::from_value::<crate::orchestrator::fit::Fitted>(c.clone()).ok())
        && let Some(line) = c.describe()
    {
        why.push_str(&format!("; {}", short(&line, 300)));
    }
    format!(
        "{} run {} step {}: {outcome}{why}{}{}",
        &st.started_at[..st.started_at.len().min(19)],
        st.run_id,
        st.step,
        st.model
            .as_deref()
            .map(|m| format!(" by {m}"))
            .unwrap_or_default(),
        st.role
            .as_deref()
            .map(|r| format!(" as {r}"))
            .unwrap_or_default(),
    )
}

/// A project's task counts in one line.
pub fn counts_line(c: &crate::store::StatusCounts) -> String {
    format!(
        "{} pending ({} ready), {} in progress, {} blocked, {} done",
        c.pending, c.ready, c.in_progress, c.blocked, c.done
    )
}

/// A model's fit in a word or two, for a table column.
pub fn fit_short(fit: &crate::resources::Fit) -> String {
    use crate::resources::Fit;
    match fit {
        Fit::Loaded => "loaded".into(),
        Fit::Fits { need, .. } => format!("fits ({})", crate::registry::gib(*need)),
        Fit::DoesNotFit { need, free, .. } => format!(
            "no room ({} > {})",
            crate::registry::gib(*need),
            crate::registry::gib(*free)
        ),
        Fit::Asleep => "asleep".into(),
        Fit::Unknown { .. } => "?".into(),
    }
}
