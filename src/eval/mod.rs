//! `llmclis eval`: does the pipeline finish tasks? Each case of a suite is
//! copied to a temp dir, made a project with that root and one task, worked
//! on by the orchestrator with writes on, then decided by the case's check
//! (exit 0: solved), never by the model's own claim. A change to a file the
//! check relies on fails the case. Each case runs on its own scratch
//! database, so the user's projects are untouched; the results go to the
//! user's store (`eval_runs`, `eval_results`).

pub mod suite;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ToolsConfig;
use crate::error::{Error, Result};
use crate::orchestrator::run::{self, Deps, Options};
use crate::prompts::Prompts;
use crate::registry::{Registry, Voting};
use crate::role::Role;
use crate::store::{EvalResult, NewTask, Store};
pub use suite::{Case, CaseError, Limits};

/// How the pipeline is set up for a run of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// One executor answer closes the task: no planner, no critic, no vote.
    Direct,
    /// Plan, execute, check, critique, escalate: the orchestrator as
    /// configured, the case's check on its task.
    Pipeline,
    /// The pipeline with no check on the task: the critic alone decides
    /// what is done (as before checks), to measure what checks change.
    Unchecked,
    /// The pipeline with k candidates voted on for the executing roles.
    Vote(u32),
}

impl Setup {
    pub fn parse(name: &str) -> std::result::Result<Setup, String> {
        match name {
            "direct" => Ok(Setup::Direct),
            "pipeline" => Ok(Setup::Pipeline),
            "pipeline-unchecked" => Ok(Setup::Unchecked),
            v if v.starts_with("vote") => match v["vote".len()..].parse::<u32>() {
                Ok(k) if (2..=9).contains(&k) => Ok(Setup::Vote(k)),
                _ => Err(format!(
                    "{name:?}: a voting configuration is vote2 … vote9 (k candidates)"
                )),
            },
            _ => Err(format!(
                "unknown configuration {name:?}: the configurations are direct, pipeline, pipeline-unchecked and voteK (vote3, vote5, …)"
            )),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Setup::Direct => "direct".into(),
            Setup::Pipeline => "pipeline".into(),
            Setup::Unchecked => "pipeline-unchecked".into(),
            Setup::Vote(k) => format!("vote{k}"),
        }
    }

    /// The registry this setup runs with: voting on the executing roles.
    fn registry(&self, base: &Registry) -> Registry {
        let mut r = base.clone();
        if let Setup::Vote(k) = *self {
            for role in [Role::Coder, Role::Tester, Role::Writer, Role::Researcher] {
                if let Some(role) = r.roles.get_mut(&role) {
                    role.voting = Some(Voting {
                        candidates: k,
                        ahead_by: 1,
                        max_tokens: 4096,
                        max_votes: None,
                    });
                }
            }
        }
        r
    }
}

/// What every case of a run shares.
pub struct Env {
    /// The user's settings: config, mode, and a caller on them.
    pub app: crate::app::Context,
    pub registry: Arc<Registry>,
    pub prompts: Arc<Prompts>,
}

impl Env {
    /// The registry and prompts the user's settings name.
    pub fn new(app: &crate::app::Context) -> crate::error::Result<Env> {
        Ok(Env {
            app: app.clone(),
            registry: Arc::new(app.registry()?),
            prompts: Arc::new(Prompts::load(&app.paths.config_dir)?),
        })
    }
}

/// Runs one case under one setup and decides it by its check.
pub async fn run_case(env: &Env, case: &Case, setup: Setup, attempt: u32) -> EvalResult {
    let mut result = EvalResult {
        case: case.name.clone(),
        config: setup.name(),
        attempt,
        ..Default::default()
    };
    if let Err(e) = work(env, case, setup, &mut result).await {
        result.outcome = "error".into();
        result.solved = false;
        result.detail = e.to_string();
    }
    result
}

async fn work(env: &Env, case: &Case, setup: Setup, result: &mut EvalResult) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("llmclis-eval-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let root = scratch.path().join("repo");
    copy_dir(&case.repo, &root)?;
    let before = snapshot(&root, &case.protected);
    let db_path = scratch.path().join("eval.db");
    let (project_id, task_id) = {
        let mut db = Store::open(&db_path)?;
        let root_text = root.to_string_lossy();
        let p = db.create_project(&case.name, "", Some(&root_text), "eval")?;
        // The task carries the case's check and protected files, so the
        // run enforces exactly what decides the case (not in `direct`,
        // whose first answer closes the task, nor `pipeline-unchecked`).
        let checked = matches!(setup, Setup::Pipeline | Setup::Vote(_));
        let t = db.create_task(
            NewTask {
                project_id: p.id,
                title: case.title.clone(),
                description: case.description.clone(),
                tags: case.tags.clone(),
                role: Some(case.role),
                checks: if checked {
                    vec![check_command(&case.check)]
                } else {
                    vec![]
                },
                protected: if checked {
                    case.protected.clone()
                } else {
                    vec![]
                },
                ..Default::default()
            },
            "eval",
        )?;
        (p.id, t.id)
    };
    let mut tools = ToolsConfig {
        enabled: true,
        allow_writes: true,
        projects: BTreeMap::new(),
        ..env.app.config.tools.clone()
    };
    // The agent runs the case's check as its tests; it decides nothing.
    tools.commands = BTreeMap::from([("test".to_string(), case.check.clone())]);
    let caller = env.app.caller(
        Arc::new(setup.registry(&env.registry)),
        Duration::from_secs(60),
    );
    for w in caller.learn_windows().await {
        tracing::info!(model = %w.model, server = w.server, "eval: a smaller server window");
    }
    let orch = &env.app.config.orchestrator;
    let deps = Deps {
        db_path: db_path.clone(),
        caller: Arc::new(caller),
        prompts: env.prompts.clone(),
        memory: None,
        memory_note: Some("evals run without memory".into()),
        notes: Vec::new(),
    };
    let opts = Options {
        project_id,
        max_steps: case.limits.steps,
        workers: 1,
        mode: env.app.mode(),
        agent: "eval".into(),
        lease: env.app.config.lease(),
        max_rounds: orch.max_rounds,
        check_rounds: orch.check_rounds,
        context_tokens: orch.context_tokens,
        memory_top_k: orch.memory_top_k,
        project_summary_every: None,
        compact: crate::memory::rollup::CompactWhen::Off,
        max_plan_depth: orch.max_plan_depth,
        make_room: orch.make_room,
        task_id: None,
        stream_tokens: false,
        tools,
        no_review: setup == Setup::Direct,
    };
    let (cancel, cancelled) = tokio::sync::watch::channel(false);
    let limit = Duration::from_secs(case.limits.seconds.max(1));
    let timer = tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        let _ = cancel.send(true);
    });
    let started = Instant::now();
    let summary = run::run(deps, opts, Arc::new(|_| {}), cancelled).await;
    timer.abort();
    let elapsed = started.elapsed();
    result.seconds = elapsed.as_secs_f64();
    let summary = summary?;
    result.steps = summary.steps as u64;
    result.model_calls = summary.model_calls as u64;
    result.prompt_tokens = summary.prompt_tokens;
    result.completion_tokens = summary.completion_tokens;
    result.cost_usd = summary.cost_usd;
    {
        let db = Store::open(&db_path)?;
        let calls = db.model_calls(task_id)?;
        for c in calls.iter().filter(|c| c.outcome == "ok") {
            if !result.models.contains(&c.model) {
                result.models.push(c.model.clone());
            }
        }
        result.tool_calls = db.tool_calls(task_id)?.len() as u64;
        result.done = db.task(task_id)?.status == crate::store::Status::Done;
        result.check_failures = db.check_runs(task_id)?.iter().filter(|r| !r.passed).count() as u64;
        result.escalations = db
            .notes(task_id)?
            .iter()
            .filter(|n| n.text.starts_with("Escalating from"))
            .count() as u64;
    }
    // The check decides, on the files as the agent left them.
    let check = check(&root, &case.check).await;
    let changed: Vec<&String> = case
        .protected
        .iter()
        .zip(&before)
        .filter(|(p, was)| std::fs::read(root.join(p)).ok() != **was)
        .map(|(p, _)| p)
        .collect();
    let tokens = result.prompt_tokens + result.completion_tokens;
    (result.outcome, result.detail) = if !changed.is_empty() {
        (
            "protected_changed".into(),
            format!(
                "the agent changed {}, which the check relies on",
                changed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else if tokens > case.limits.tokens {
        (
            "over_tokens".into(),
            format!("{tokens} tokens, over the case's {}", case.limits.tokens),
        )
    } else if summary.stopped_because == "interrupted" && elapsed >= limit {
        (
            "timed_out".into(),
            format!("stopped at the case's {} s", case.limits.seconds),
        )
    } else if check.0 {
        ("solved".into(), last_line(&check.1))
    } else {
        ("unsolved".into(), last_line(&check.1))
    };
    result.solved = result.outcome == "solved";
    Ok(())
}

/// Runs the check in the worked-on copy with the orchestrator's runner:
/// (passed, its output).
async fn check(root: &Path, argv: &[String]) -> (bool, String) {
    let toolbox = match crate::tools::Toolbox::new(
        root,
        true,
        BTreeMap::new(),
        Duration::from_secs(300),
        64 * 1024,
    ) {
        Ok(t) => t,
        Err(e) => return (false, e),
    };
    let command = check_command(argv);
    match tokio::task::spawn_blocking(move || toolbox.run_check(&command)).await {
        Ok(r) => (r.passed, r.output),
        Err(_) => (false, "the check did not run".into()),
    }
}

/// A case's check (an argv) as the shell command a task's check is.
fn check_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// Each protected file's bytes before the agent starts (`None`: absent).
fn snapshot(root: &Path, protected: &[String]) -> Vec<Option<Vec<u8>>> {
    protected
        .iter()
        .map(|p| std::fs::read(root.join(p)).ok())
        .collect()
}

/// Copies a case's repository, keeping permissions (an executable check
/// stays executable). A symlink to a file is copied as that file; one to a
/// folder is not followed (it could lead back up and never end).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| Error::io(&src, e))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_file() || src.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

/// One configuration's totals over the cases it ran.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub config: String,
    pub runs: usize,
    pub solved: usize,
    pub solve_rate: f64,
    pub cost_usd: f64,
    pub seconds: f64,
    pub tokens: u64,
    pub model_calls: u64,
    /// Cases whose task the pipeline recorded done, and of those the ones
    /// whose check fails: done on a model's word alone.
    pub done: usize,
    pub false_done: usize,
    /// Answers the checks refused (each one a critic could have approved).
    pub check_failures: u64,
    /// Null when nothing was solved.
    pub cost_per_solved: Option<f64>,
    pub seconds_per_solved: Option<f64>,
}

/// Totals per configuration, in the order the configurations were given.
pub fn totals(configs: &[String], results: &[EvalResult]) -> Vec<Totals> {
    configs
        .iter()
        .map(|c| {
            let mine: Vec<&EvalResult> = results.iter().filter(|r| &r.config == c).collect();
            let solved = mine.iter().filter(|r| r.solved).count();
            let cost = crate::text::sum_usd(mine.iter().map(|r| r.cost_usd));
            let seconds: f64 = mine.iter().map(|r| r.seconds).sum();
            Totals {
                config: c.clone(),
                runs: mine.len(),
                solved,
                solve_rate: if mine.is_empty() {
                    0.0
                } else {
                    solved as f64 / mine.len() as f64
                },
                cost_usd: cost,
                seconds,
                tokens: mine
                    .iter()
                    .map(|r| r.prompt_tokens + r.completion_tokens)
                    .sum(),
                model_calls: mine.iter().map(|r| r.model_calls).sum(),
                done: mine.iter().filter(|r| r.done).count(),
                false_done: mine.iter().filter(|r| r.done && !r.solved).count(),
                check_failures: mine.iter().map(|r| r.check_failures).sum(),
                cost_per_solved: (solved > 0).then(|| cost / solved as f64),
                seconds_per_solved: (solved > 0).then(|| seconds / solved as f64),
            }
        })
        .collect()
}
