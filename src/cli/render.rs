//! Human-readable output. The `--json` shapes are the `Serialize` impls of
//! these views and of the store's types (see docs/reference.md, "JSON output").

use crate::text::fit;
use std::collections::HashMap;
use std::fmt::Write;

use crate::app::types::DryRun;
use crate::app::types::FollowReport;
use crate::app::types::{FirstRunOutcome as Outcome, FirstRunReport as Report};
use crate::app::types::{StatusCounts, Task};
use crate::describe::counts_line;
pub use crate::describe::{progress, step_line};
pub use crate::text::money;
use crate::text::short;

pub use crate::app::tasks::{NoteView, ProjectRow, ProjectView, StatusView, TaskView};

pub fn project_list(rows: &[ProjectRow]) -> String {
    if rows.is_empty() {
        return "No projects yet. Add one: llmclis project add NAME --root DIR".into();
    }
    let mut s = format!(
        "{:>4}  {:<24}  {:>5}  {:>5}  {:>5}  {:>5}\n",
        "ID", "NAME", "PEND", "PROG", "BLOCK", "DONE"
    );
    for r in rows {
        let c = &r.counts;
        let _ = writeln!(
            s,
            "{:>4}  {:<24}  {:>5}  {:>5}  {:>5}  {:>5}",
            r.project.id,
            fit(&r.project.name, 24),
            c.pending,
            c.in_progress,
            c.blocked,
            c.done
        );
    }
    s.trim_end().to_string()
}

pub fn project_show(v: &ProjectView) -> String {
    let p = &v.project;
    let mut s = format!("Project {}: {}\n", p.id, p.name);
    if !p.description.is_empty() {
        let _ = writeln!(s, "  {}", p.description);
    }
    let _ = writeln!(s, "  root:    {}", p.root.as_deref().unwrap_or("(none)"));
    let _ = writeln!(s, "  created: {} by {}", p.created_at, p.created_by);
    let _ = writeln!(s, "  tasks:   {}", counts_line(&v.counts));
    match &v.next_task {
        Some(t) => {
            let _ = write!(s, "  next:    task {} {}", t.id, t.title);
        }
        None => {
            let _ = write!(s, "  next:    nothing is ready");
        }
    }
    s
}

/// Tasks in tree order: each parent followed by its subtasks, indented.
/// The project column of a task table, when every project is listed.
fn project_cell(show_project: bool, text: &str) -> String {
    if show_project {
        format!("{text:>4}  ")
    } else {
        String::new()
    }
}

pub fn task_list(tasks: &[Task], show_project: bool) -> String {
    if tasks.is_empty() {
        return "No tasks.".into();
    }
    let listed: HashMap<i64, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut children: HashMap<Option<i64>, Vec<&Task>> = HashMap::new();
    for t in tasks {
        let parent = t.parent_id.filter(|p| listed.contains_key(p));
        children.entry(parent).or_default().push(t);
    }
    let mut s = String::new();
    let project_col = project_cell(show_project, "PROJ");
    let _ = writeln!(
        s,
        "{:>5}  {project_col}{:<8} {:<11} {:>3}  {:<10} TITLE",
        "ID", "REF", "STATUS", "PRI", "CLAIMED"
    );
    let mut stack: Vec<(&Task, usize)> = children
        .get(&None)
        .map(|v| v.iter().rev().map(|t| (*t, 0)).collect())
        .unwrap_or_default();
    while let Some((t, depth)) = stack.pop() {
        let project = project_cell(show_project, &t.project_id.to_string());
        let deps = if t.depends_on.is_empty() {
            String::new()
        } else {
            let ids: Vec<String> = t.depends_on.iter().map(|d| d.to_string()).collect();
            format!("  (after {})", ids.join(", "))
        };
        let _ = writeln!(
            s,
            "{:>5}  {project}{:<8} {:<11} {:>3}  {:<10} {}{}{}",
            t.id,
            fit(t.external_ref.as_deref().unwrap_or("-"), 8),
            // A done task whose checks passed is marked: verified.
            if t.verified == Some(true) {
                "done ✓"
            } else {
                t.status.as_str()
            },
            t.priority,
            fit(t.claimed_by.as_deref().unwrap_or("-"), 10),
            "  ".repeat(depth),
            t.title,
            deps
        );
        if let Some(kids) = children.get(&Some(t.id)) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    s.trim_end().to_string()
}

pub fn task_show(v: &TaskView) -> String {
    let t = &v.task;
    let mut s = format!("Task {}: {}\n", t.id, t.title);
    let field = |s: &mut String, name: &str, value: &str| {
        let _ = writeln!(s, "  {name:<11}{value}");
    };
    field(&mut s, "project", &t.project_id.to_string());
    if let Some(r) = &t.external_ref {
        field(&mut s, "ref", r);
    }
    field(
        &mut s,
        "status",
        &match t.verified {
            Some(true) => "done, verified".to_string(),
            Some(false) => "done, unverified (no passing check)".to_string(),
            None => t.status.as_str().to_string(),
        },
    );
    if !t.checks.is_empty() {
        field(&mut s, "checks", &t.checks.join(" ; "));
    }
    if !t.protected.is_empty() {
        field(&mut s, "protected", &t.protected.join(", "));
    }
    field(&mut s, "priority", &t.priority.to_string());
    if let Some(r) = t.role {
        field(&mut s, "role", r.as_str());
    }
    if !t.tags.is_empty() {
        field(&mut s, "tags", &t.tags.join(", "));
    }
    if let Some(p) = t.parent_id {
        field(&mut s, "parent", &p.to_string());
    }
    if !t.depends_on.is_empty() {
        let ids: Vec<String> = t.depends_on.iter().map(|d| d.to_string()).collect();
        field(&mut s, "depends on", &ids.join(", "));
    }
    if !v.subtasks.is_empty() {
        let ids: Vec<String> = v.subtasks.iter().map(|d| d.to_string()).collect();
        field(&mut s, "subtasks", &ids.join(", "));
    }
    if let Some(c) = &t.claimed_by {
        let lease = t
            .lease_expires_at
            .as_deref()
            .map(|l| format!(" (lease until {l})"))
            .unwrap_or_default();
        field(&mut s, "claimed by", &format!("{c}{lease}"));
    }
    field(&mut s, "attempts", &t.attempts.to_string());
    field(
        &mut s,
        "created",
        &format!("{} by {}", t.created_at, t.created_by),
    );
    field(
        &mut s,
        "updated",
        &format!(
            "{} by {}",
            t.updated_at,
            t.last_agent.as_deref().unwrap_or("-")
        ),
    );
    if !t.description.is_empty() {
        let _ = writeln!(s, "\n{}", t.description.trim_end());
    }
    if !v.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &v.notes {
            let _ = writeln!(s, "  {} {}: {}", n.created_at, n.agent, n.text);
        }
    }
    if let Some(r) = &v.result {
        let _ = writeln!(s, "\nResult:\n{}", r.trim_end());
    }
    if !v.tool_calls.is_empty() {
        let _ = writeln!(s, "\nTool calls ({}):", v.tool_calls.len());
        for c in &v.tool_calls {
            let _ = writeln!(
                s,
                "  {} {:<15} {:<5} {} {} bytes, {} ms",
                c.created_at,
                c.tool,
                c.outcome,
                short(&c.arguments.to_string(), 60),
                c.result_bytes,
                c.duration_ms
            );
        }
    }
    if !v.check_runs.is_empty() {
        let _ = writeln!(s, "\nCheck runs ({}):", v.check_runs.len());
        for c in &v.check_runs {
            let _ = writeln!(
                s,
                "  {} attempt {} {} {:.1} s: {}{}",
                c.created_at,
                c.attempt,
                if c.passed { "passed" } else { "FAILED" },
                c.seconds,
                short(&c.command, 70),
                match (c.passed, c.exit_code) {
                    (true, _) => String::new(),
                    (false, Some(code)) =>
                        format!(" (exit {code}): {}", short(last_line(&c.output_tail), 90)),
                    (false, None) => format!(": {}", short(last_line(&c.output_tail), 90)),
                }
            );
        }
    }
    if let Some(d) = &v.diff {
        let _ = writeln!(s, "\nDiff:\n{}", d.trim_end());
    }
    if !v.steps.is_empty() {
        let _ = writeln!(s, "\nSteps:");
        for st in &v.steps {
            let _ = writeln!(s, "  {}", step_line(st));
        }
    }
    if !v.model_calls.is_empty() {
        let tokens: u64 = v
            .model_calls
            .iter()
            .map(|c| c.prompt_tokens.unwrap_or(0) + c.completion_tokens.unwrap_or(0))
            .sum();
        let cost = crate::text::sum_usd(v.model_calls.iter().map(|c| c.cost_usd));
        let _ = writeln!(
            s,
            "\nModel calls ({}, {tokens} tokens, {}; prompts and responses with --json):",
            v.model_calls.len(),
            money(cost)
        );
        for c in &v.model_calls {
            let tokens = match (c.prompt_tokens, c.completion_tokens) {
                (Some(p), Some(o)) => format!(" {p}+{o} tok"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  {} {:<9} {:<10} {} {}{tokens} {} ms{}",
                c.created_at,
                c.purpose.as_deref().unwrap_or("-"),
                c.role,
                c.model,
                c.outcome,
                c.latency_ms.unwrap_or(0),
                c.error
                    .as_deref()
                    .map(|e| format!(": {}", short(e, 100)))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(s, "\nHistory:");
    for e in &v.events {
        let change = match (e.from_status, e.to_status) {
            (Some(f), Some(t)) => format!("{f} → {t}"),
            (None, Some(t)) => t.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  {} {:<13} {:<24} {}",
            e.created_at, e.kind, change, e.agent
        );
    }
    s.trim_end().to_string()
}

/// The ready queue, in claim order: one line per task.
pub fn ready(tasks: &[Task], show_project: bool) -> String {
    if tasks.is_empty() {
        return "No task is ready.".into();
    }
    let mut s = String::new();
    let project_col = project_cell(show_project, "PROJ");
    let _ = writeln!(
        s,
        "{:>5}  {project_col}{:<8} {:>3}  {:<10} TITLE",
        "ID", "REF", "PRI", "TAGS"
    );
    for t in tasks {
        let project = project_cell(show_project, &t.project_id.to_string());
        let _ = writeln!(
            s,
            "{:>5}  {project}{:<8} {:>3}  {:<10} {}",
            t.id,
            fit(t.external_ref.as_deref().unwrap_or("-"), 8),
            t.priority,
            fit(&t.tags.join(","), 10),
            t.title
        );
    }
    s.trim_end().to_string()
}

pub fn next(task: Option<&Task>, claimed: bool, counts: Option<&StatusCounts>) -> String {
    match task {
        Some(t) => {
            let verb = if claimed { "Claimed" } else { "Next" };
            let lease = match (&t.claimed_by, &t.lease_expires_at) {
                (Some(by), Some(until)) if claimed => format!(" (held by {by} until {until})"),
                _ => String::new(),
            };
            format!("{verb}: task {} {}{lease}", t.id, t.title)
        }
        None => {
            let why = counts
                .map(|c| format!(": {}", counts_line(c)))
                .unwrap_or_default();
            format!("No task is ready{why}")
        }
    }
}

pub fn status_change(v: &StatusView) -> String {
    let mut s = if v.changed {
        format!(
            "Task {}: {} → {}",
            v.task.id, v.previous_status, v.task.status
        )
    } else {
        format!(
            "Task {} is already {}; status unchanged.",
            v.task.id, v.task.status
        )
    };
    s.push_str(&files(&v.files));
    s
}

pub fn note_added(v: &NoteView) -> String {
    format!(
        "Added note {} to task {}.{}",
        v.note.id,
        v.note.task_id,
        files(&v.files)
    )
}

/// One line per plan file that changed, for human output.
pub fn files(f: &FollowReport) -> String {
    let mut s = String::new();
    if let (true, Some(p)) = (f.plans_changed, &f.plans) {
        let _ = write!(s, "\nUpdated {p}");
    }
    if let Some(km) = &f.issue {
        let _ = write!(s, "\nBlocked: issues.md entry {km}");
    }
    for km in &f.closed_issues {
        let _ = write!(s, "\nClosed issues.md entry {km}");
    }
    if let Some(p) = &f.pending {
        let _ = write!(s, "\nPending: {p}");
    }
    s
}

pub fn dry_run(plan: &DryRun) -> String {
    let mut s = format!(
        "Dry run for project {} (no model is called; each task is assumed to succeed):\n",
        plan.project_id
    );
    if plan.steps.is_empty() {
        let _ = writeln!(s, "  nothing to do: {}", counts_line(&plan.counts));
        return s.trim_end().to_string();
    }
    for step in &plan.steps {
        let r = step
            .external_ref
            .as_deref()
            .map(|r| format!("{r} "))
            .unwrap_or_default();
        let role = step.role.map(|r| format!(" [{r}]")).unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:>3}. task {} {r}{}{role}",
            step.step, step.task_id, step.title
        );
    }
    if plan.left_pending > 0 {
        let _ = writeln!(
            s,
            "{} pending task(s) left after {} step(s) (over --max-steps, or waiting on blocked or in-progress work).",
            plan.left_pending,
            plan.steps.len()
        );
    }
    s.trim_end().to_string()
}

pub fn first_run(r: &Report) -> String {
    let mut s = String::new();
    for step in &r.steps {
        let what = match step.outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::KeptEdited => "kept (edited)",
            Outcome::Imported => "imported",
            Outcome::Missing => "missing",
        };
        let _ = writeln!(s, "  {what:<14} {}", step.path.display());
        if let Some(note) = &step.note {
            let _ = writeln!(s, "  {:<14} {note}", "");
        }
    }
    if r.changed() {
        s.insert_str(0, "llmclis is set up:\n");
    } else {
        s.insert_str(0, "Nothing to do: llmclis was already set up.\n");
    }
    let _ = writeln!(s, "\nModel registry: {}", r.registry);
    if !r.endpoints.is_empty() {
        let _ = writeln!(s, "\nLocal servers:");
        for e in &r.endpoints {
            let state = if e.up {
                if e.serves.is_empty() {
                    "up, serves nothing yet".to_string()
                } else {
                    format!("up: {}", short(&e.serves.join(", "), 60))
                }
            } else {
                format!("down ({})", e.error.as_deref().unwrap_or("no answer"))
            };
            let used = if e.providers.is_empty() {
                if e.up && !e.api.is_qdrant() {
                    " (no provider in model_registry.yaml points here)".to_string()
                } else {
                    String::new()
                }
            } else {
                format!(" → provider {}", e.providers.join(", "))
            };
            let _ = writeln!(s, "  {:<10} {:<24} {state}{used}", e.name, e.url);
        }
    }
    if !r.api_keys.is_empty() {
        let keys: Vec<String> = r
            .api_keys
            .iter()
            .map(|k| format!("{} {}", k.env, if k.set { "set" } else { "unset" }))
            .collect();
        let _ = writeln!(s, "API keys: {}", keys.join(", "));
    }
    let _ = write!(
        s,
        "Mode: {}. Database schema version {}, {} project(s).\nNext: {}",
        serde_json::to_value(r.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        r.schema_version,
        r.projects,
        r.next_command
    );
    s
}

pub fn doctor(r: &crate::app::types::DoctorReport) -> String {
    use crate::app::types::DoctorLevel as Level;
    let mut s = String::new();
    for c in &r.checks {
        let mark = match c.level {
            Level::Ok => "ok  ",
            Level::Info => "info",
            Level::Warning => "warn",
            Level::Error => "FAIL",
        };
        let _ = writeln!(s, "{mark} {:<22} {}", c.check, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(s, "     {:<22} fix: {fix}", "");
        }
    }
    let _ = write!(
        s,
        "{} error(s), {} warning(s){}",
        r.errors,
        r.warnings,
        if r.ok { ": ready to run" } else { "" }
    );
    s
}

/// `plans check`: each drift and violation as `file:line: what`, then the
/// verdict.
pub fn plans_check(c: &crate::app::docs::PlansCheck) -> String {
    let shown = &c.path;
    let label = c.against.as_deref().unwrap_or("");
    let mut s = String::new();
    if let Some(p) = c.project_id {
        for d in &c.drift {
            let _ = writeln!(
                s,
                "{shown}:{}: {} is {} in the store, the file shows {}",
                d.line, d.external_ref, d.store, d.file
            );
        }
        if c.pending_edits > 0 {
            let _ = writeln!(
                s,
                "{} task(s) have store changes not yet written to the plan files",
                c.pending_edits
            );
        }
        if c.pending_edits > 0 || !c.drift.is_empty() {
            let _ = writeln!(
                s,
                "the store is the truth: `llmclis plans sync --project-id {p}` writes it into the file (or `llmclis plans import {shown} --project-id {p}` takes the file's edits)"
            );
        }
    }
    for v in &c.violations {
        if v.in_earlier {
            let _ = writeln!(s, "{shown} ({label}, line {}): {}", v.line, v.message);
        } else {
            let _ = writeln!(s, "{shown}:{}: {}", v.line, v.message);
        }
    }
    match (&c.against, c.violations.len()) {
        (None, _) => {
            let _ = write!(
                s,
                "{shown}: parses, {} task(s); no earlier version to compare (pass --against)",
                c.tasks
            );
        }
        (Some(_), 0) => {
            let _ = write!(
                s,
                "{shown}: keeps all history of {label} ({} task(s))",
                c.tasks
            );
        }
        (Some(_), n) => {
            let _ = write!(s, "{n} violation(s) of the history rules against {label}");
        }
    }
    s
}

/// `config show`: the file in use, the settings as TOML, the key variables.
pub fn effective(e: &crate::app::paths::Effective) -> String {
    let mut s = format!(
        "# {}{}\n",
        e.config_file,
        if e.exists {
            ""
        } else {
            " (not there: every value below is a default)"
        }
    );
    s.push_str(&toml::to_string_pretty(&e.settings).unwrap_or_default());
    if !e.keys.is_empty() {
        s.push_str("\n# Keys come from these environment variables (never from a file):\n");
        for k in &e.keys {
            s.push_str(&format!(
                "#   {:<22} {} ({})\n",
                k.variable,
                if k.set { "set" } else { "not set" },
                k.for_
            ));
        }
    }
    if let Some(err) = &e.registry_error {
        s.push_str(&format!("\n# The registry could not be read: {err}\n"));
    }
    s.trim_end().to_string()
}

/// The last line with something on it.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// `memory tree`: the project summary, then each task indented under its
/// parent with its newest summary's first line and its counts.
pub fn memory_tree(t: &crate::app::types::MemoryTree) -> String {
    t.render()
}
