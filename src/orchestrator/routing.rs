//! A step's route: the executor's role, its chain sized by the task's
//! least context (what cannot be cut), and, when the chain is empty, why.
//! The run and `route explain` both come here, so they give one answer.

use serde::Serialize;

use super::context::{Material, Vars};
use super::fit::{self, Fitted};
use super::machine::Empty;
use crate::error::Result;
use crate::prompts::Prompts;
use crate::registry::{Mode, Model, Registry};
use crate::role::Role;
use crate::router::{self, Conditions, Decision, Skip, TaskInfo, estimate_tokens};
use crate::store::Task;

/// The executor's route for a task.
#[derive(Debug, Clone, Serialize)]
pub struct Routed {
    /// The role whose template the executor's prompt uses.
    pub role: Role,
    pub decision: Decision,
    /// The prompt's tokens with everything that may be cut left out: the
    /// chain holds the models whose window takes at least this.
    pub least_tokens: u64,
    /// The template's answer limit.
    pub max_output: Option<u64>,
    /// Why the chain is empty, when it is.
    pub empty: Option<Empty>,
}

/// The task as the router sees it.
pub fn info<'t>(
    task: &'t Task,
    prompt_tokens: u64,
    output: Option<u64>,
    needs_json: bool,
) -> TaskInfo<'t> {
    TaskInfo {
        project_id: task.project_id,
        title: &task.title,
        description: &task.description,
        tags: &task.tags,
        role_hint: task.role,
        prompt_tokens,
        output_tokens: output,
        needs_json,
    }
}

/// Routes a task whose material is `vars`: the rule picks the role, then
/// the chain is sized by the least prompt the role's template makes.
pub fn route(
    registry: &Registry,
    prompts: &Prompts,
    mode: Mode,
    conditions: &dyn Conditions,
    task: &Task,
    vars: &Vars,
) -> Result<Routed> {
    let first = router::route(registry, &info(task, 0, None, false), mode, conditions);
    let mut role = first.role;
    if role == Role::Planner {
        // Planning comes first; the work itself goes to the role the task
        // would have without its planner hint.
        let mut i = info(task, 0, None, false);
        i.role_hint = None;
        let again = router::route(registry, &i, mode, conditions);
        role = if again.role == Role::Planner {
            Role::Coder
        } else {
            again.role
        };
    }
    if matches!(role, Role::Critic | Role::Summarizer) {
        // Their templates judge or condense other answers; a task of its
        // own ("review X", "summarize Y") is written work.
        role = Role::Writer;
    }
    let least = prompts.render(role.as_str(), fit::minimal(vars))?;
    let least_tokens = estimate_tokens(&least);
    let max_output = prompts.get(role.as_str()).max_tokens;
    let sized = info(task, least_tokens, max_output, false);
    let decision = if role == first.role {
        router::route(registry, &sized, mode, conditions)
    } else {
        let mut d = router::route_role(registry, role, &sized, mode, conditions);
        // A planner hint still plans first.
        d.plan = first.plan;
        d.rule = first.rule.clone();
        d
    };
    let empty = why_empty(registry, &decision, max_output, conditions);
    Ok(Routed {
        role,
        decision,
        least_tokens,
        max_output,
        empty,
    })
}

/// `material` fitted to `model`'s window for `template`, rendered by
/// `render` (which adds the template's other variables). The prompt, what
/// was cut, and whether it fits the window beside the answer's room (when
/// even the least of it does not, the caller must look further).
pub fn fit_for(
    prompts: &Prompts,
    template: &str,
    material: &Material,
    model: &Model,
    window: u64,
    render: &dyn Fn(&Vars) -> Result<String>,
) -> Result<(String, Fitted, bool)> {
    let asked = prompts.get(template).max_tokens.unwrap_or(2048);
    let budget = fit::prompt_budget(window, asked.min(model.max_output_tokens));
    let mut vars = material.vars.clone();
    // A template that fails measures as too big; its error comes from the
    // render below, once.
    let measure = |v: &Vars| render(v).map_or(u64::MAX, |t| estimate_tokens(&t));
    let (tokens, cut) = fit::fit(&mut vars, &material.summaries, budget, &measure);
    let text = render(&vars)?;
    let fitted = Fitted {
        model: model.id.clone(),
        window,
        budget,
        tokens,
        cut,
    };
    let fits = router::holds(model, window, tokens, Some(asked));
    Ok((text, fitted, fits))
}

/// Why a decision's chain is empty: the servers are down, only models that
/// are down could hold the task, or no usable model could.
pub fn why_empty(
    registry: &Registry,
    d: &Decision,
    output: Option<u64>,
    conditions: &dyn Conditions,
) -> Option<Empty> {
    if !d.chain.is_empty() {
        return None;
    }
    let model = |id: &str| registry.model(id).expect("validated reference");
    let holds = |id: &str| {
        let m = model(id);
        router::holds(m, conditions.window(m), d.prompt_tokens, output)
    };
    let listed = || {
        d.skipped
            .iter()
            .map(|s| format!("{} ({})", s.model, s.why.reason()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let too_small: Vec<&str> = d
        .skipped
        .iter()
        .filter(|s| matches!(s.why, Skip::ContextTooSmall { .. }))
        .map(|s| s.model.as_str())
        .collect();
    // Skipped for now, and big enough: the router checks the window first.
    let waiting: Vec<String> = d
        .skipped
        .iter()
        .filter_map(|s| {
            let state = match s.why {
                Skip::CoolingDown => "down or cooling down",
                Skip::DoesNotFit { .. } => "not loaded and without room in memory",
                Skip::Asleep => "asleep",
                _ => return None,
            };
            Some(format!("{} ({state})", s.model))
        })
        .collect();
    if too_small.is_empty() {
        return Some(if waiting.is_empty() {
            Empty::NoModel(if d.skipped.is_empty() {
                "the role has no usable model".into()
            } else {
                listed()
            })
        } else {
            Empty::ServersDown(listed())
        });
    }
    let up_holds = too_small
        .iter()
        .filter(|id| !conditions.cooling_down(id))
        .map(|id| conditions.window(model(id)))
        .max();
    let needed = d.prompt_tokens + output.unwrap_or(1024);
    let up = match up_holds {
        Some(w) => format!("the models up hold {w}"),
        None => "no model that is up holds it".into(),
    };
    if !waiting.is_empty() {
        return Some(Empty::WaitsForWindow(format!(
            "Needs about {needed} tokens with its answer; {up}; {} can, and {} not available",
            waiting.join(", "),
            if waiting.len() == 1 { "is" } else { "are" }
        )));
    }
    // Big enough, but unusable in this setup: what would change that.
    let fixes: Vec<String> = d
        .skipped
        .iter()
        .filter(|s| holds(&s.model))
        .filter_map(|s| {
            let fix = match &s.why {
                Skip::Offline => "in online mode (--mode online)".to_string(),
                Skip::NoApiKey { env } => format!("with {env} set"),
                Skip::OverBudget { .. } => "with a larger budget".to_string(),
                Skip::NoStructuredOutput | Skip::ExcludedByRule => return None,
                _ => return None,
            };
            Some(format!("{} could, {fix}", s.model))
        })
        .collect();
    let largest = d
        .skipped
        .iter()
        .map(|s| (conditions.window(model(&s.model)), s.model.as_str()))
        .max();
    let mut why = format!(
        "it needs about {needed} tokens with its answer, more than any usable {} model holds",
        d.role
    );
    if let Some((w, m)) = largest {
        why.push_str(&format!(" (the largest: {m}, {w} tokens)"));
    }
    if fixes.is_empty() {
        why.push_str(&format!(
            "; shorten the task's description, or add a model with a bigger window to the {} role in model_registry.yaml",
            d.role
        ));
    } else {
        why.push_str(&format!("; {}", fixes.join("; ")));
    }
    Some(Empty::NoModel(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::for_tests(
            &[
                r#"{ name: gpu, kind: openai-compatible, flavour: vllm, base_url: "http://127.0.0.1:9/v1", local: true }"#,
                r#"{ name: cpu, kind: openai-compatible, flavour: llamacpp, base_url: "http://127.0.0.1:8/v1", local: true }"#,
                r#"{ name: cloud, kind: openai-compatible, flavour: openai, base_url: "http://127.0.0.1:7/v1", api_key_env: LLMCLIS_TEST_NO_SUCH_KEY, local: false }"#,
            ],
            &[
                "{ id: big, provider: gpu, served_name: b, context_window: 32768, max_output_tokens: 4096 }",
                "{ id: small, provider: cpu, served_name: s, context_window: 2048, max_output_tokens: 512 }",
                "{ id: api, provider: cloud, served_name: a, context_window: 200000, max_output_tokens: 8192 }",
            ],
            &["big", "small", "api"],
        )
    }

    struct Down(&'static [&'static str]);
    impl Conditions for Down {
        fn cooling_down(&self, id: &str) -> bool {
            self.0.contains(&id)
        }
        fn key_set(&self, _: &str) -> bool {
            false
        }
    }

    fn decide(tokens: u64, down: &'static [&'static str], mode: Mode) -> (Decision, Option<Empty>) {
        let r = registry();
        let task = TaskInfo {
            prompt_tokens: tokens,
            output_tokens: Some(4096),
            ..Default::default()
        };
        let d = router::route(&r, &task, mode, &Down(down));
        let e = why_empty(&r, &d, Some(4096), &Down(down));
        (d, e)
    }

    #[test]
    fn a_small_model_that_is_up_takes_what_it_can_hold() {
        let (d, e) = decide(1_000, &["big"], Mode::Offline);
        assert_eq!(d.chain, ["small"]);
        assert_eq!(e, None);
    }

    #[test]
    fn a_task_only_a_down_model_can_hold_waits_for_it() {
        let (d, e) = decide(9_000, &["big"], Mode::Offline);
        assert!(d.chain.is_empty());
        let Some(Empty::WaitsForWindow(why)) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            why,
            "Needs about 13096 tokens with its answer; the models up hold 2048; big (down or cooling down) can, and is not available"
        );
    }

    #[test]
    fn every_server_down_is_the_servers_state() {
        let (_, e) = decide(100, &["big", "small"], Mode::Offline);
        assert!(matches!(e, Some(Empty::ServersDown(w)) if w.contains("big (cooling_down)")));
    }

    #[test]
    fn a_task_no_model_could_ever_hold_is_blocked_naming_the_fix() {
        let (_, e) = decide(40_000, &[], Mode::Offline);
        let Some(Empty::NoModel(why)) = e else {
            panic!("{e:?}")
        };
        assert!(why.contains("the largest: api, 200000 tokens"), "{why}");
        assert!(why.contains("api could, in online mode"), "{why}");
        let (_, e) = decide(400_000, &[], Mode::Online);
        let Some(Empty::NoModel(why)) = e else {
            panic!("{e:?}")
        };
        assert!(
            why.contains("add a model with a bigger window to the coder role"),
            "{why}"
        );
    }
}
