//! `llmclis eval SUITE`: runs each case under each configuration, prints
//! a line per case as it ends, then the table and the side-by-side totals.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::render::money;
use super::{Ctx, emit};
use crate::app::types::EvalResult;
use crate::error::{Error, Result};
use crate::eval;
use crate::eval::Setup;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The suite: a folder of cases, each a case.toml and a repo/ (this
    /// repository ships one in evals/).
    suite: PathBuf,
    /// A configuration: direct (one answer, no critic), pipeline (plan,
    /// execute, critique, escalate), voteK (the pipeline with K candidates
    /// voted on). Repeat to compare side by side [default: pipeline].
    #[arg(long = "config", value_name = "NAME")]
    configs: Vec<String>,
    /// Runs of each case under each configuration.
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// Only the cases whose folder name contains TEXT (repeat for more).
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
}

pub fn eval(ctx: &Ctx, args: EvalArgs, out: &mut impl Write) -> Result<()> {
    let names = if args.configs.is_empty() {
        vec!["pipeline".to_string()]
    } else {
        args.configs.clone()
    };
    let setups: Vec<Setup> = names
        .iter()
        .map(|n| Setup::parse(n))
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::InvalidInput)?;
    if args.repeat == 0 {
        return Err(Error::InvalidInput("--repeat must be at least 1".into()));
    }
    if !args.suite.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} is not a folder of eval cases (each a case.toml and a repo/)",
            args.suite.display()
        )));
    }
    let (mut cases, errors) =
        eval::suite::load(&args.suite).map_err(|e| Error::io(&args.suite, e))?;
    if !args.only.is_empty() {
        cases.retain(|c| args.only.iter().any(|o| c.name.contains(o.as_str())));
    }
    for e in &errors {
        eprintln!("error: {e} (skipped; the other cases run)");
    }
    if cases.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no case to run in {}{}",
            args.suite.display(),
            if errors.is_empty() {
                ""
            } else {
                " (every case has an error, above)"
            }
        )));
    }
    let env = eval::Env::new(&ctx.app)?;
    let mut store = ctx.store()?;
    let suite = args.suite.display().to_string();
    let run_id = store.start_eval_run(&suite, &names, args.repeat, &ctx.agent)?;
    let rt = crate::app::runtime()?;
    let total = cases.len() * setups.len() * args.repeat as usize;
    let mut results = Vec::new();
    let bar = super::progress::Bar::new(ctx.json, "eval", total as u64);
    for case in &cases {
        for setup in &setups {
            for attempt in 1..=args.repeat {
                bar.message(format!("{} · {}", case.name, setup.name()));
                let r = rt.block_on(eval::run_case(&env, case, *setup, attempt));
                store.record_eval_result(run_id, &r)?;
                bar.suspend(|| {
                    eprintln!(
                        "[{}/{total}] {} · {} · {}",
                        results.len() + 1,
                        r.case,
                        r.config,
                        case_line(&r)
                    )
                });
                bar.inc();
                results.push(r);
            }
        }
    }
    bar.finish();
    store.finish_eval_run(run_id)?;
    let totals = eval::totals(&names, &results);
    let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let value = json!({
        "eval_run_id": run_id,
        "suite": suite,
        "results": results,
        "totals": totals,
        "errors": errors,
    });
    emit(out, ctx.json, &value, || render(&results, &totals))?;
    if !errors.is_empty() {
        return Err(Error::CheckFailed {
            count: errors.len(),
        });
    }
    Ok(())
}

fn case_line(r: &EvalResult) -> String {
    format!(
        "{} in {:.1} s, {} step(s), {} call(s), {} tokens{}",
        r.outcome,
        r.seconds,
        r.steps,
        r.model_calls,
        r.prompt_tokens + r.completion_tokens,
        if r.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", r.detail)
        }
    )
}

fn render(results: &[EvalResult], totals: &[eval::Totals]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:<18} {:<17} {:>5} {:>5} {:>7} {:>5} {:>4} {:>6} {:>8}",
        "CASE",
        "CONFIG",
        "OUTCOME",
        "STEPS",
        "CALLS",
        "TOKENS",
        "TOOLS",
        "ESC",
        "REFUSED",
        "SECONDS"
    );
    for r in results {
        let _ = writeln!(
            s,
            "{:<28} {:<18} {:<17} {:>5} {:>5} {:>7} {:>5} {:>4} {:>7} {:>8.1}",
            r.case,
            r.config,
            r.outcome,
            r.steps,
            r.model_calls,
            r.prompt_tokens + r.completion_tokens,
            r.tool_calls,
            r.escalations,
            r.check_failures,
            r.seconds
        );
    }
    let _ = writeln!(
        s,
        "\n{:<18} {:>9} {:>6} {:>6} {:>10} {:>9} {:>8} {:>10} {:>14} {:>14}",
        "CONFIG",
        "SOLVED",
        "RATE",
        "DONE",
        "FALSE DONE",
        "TOKENS",
        "CALLS",
        "COST",
        "COST/SOLVED",
        "S/SOLVED"
    );
    for t in totals {
        let _ = writeln!(
            s,
            "{:<18} {:>9} {:>5.0}% {:>6} {:>10} {:>9} {:>8} {:>10} {:>14} {:>14}",
            t.config,
            format!("{}/{}", t.solved, t.runs),
            t.solve_rate * 100.0,
            t.done,
            t.false_done,
            t.tokens,
            t.model_calls,
            money(t.cost_usd),
            t.cost_per_solved.map_or("-".into(), money),
            t.seconds_per_solved
                .map_or("-".into(), |v| format!("{v:.1}"))
        );
    }
    let refused: u64 = totals.iter().map(|t| t.check_failures).sum();
    if refused > 0 {
        let _ = writeln!(
            s,
            "\nThe checks refused {refused} answer(s) in all: each one, without checks, a critic's approval alone could have closed."
        );
    }
    s.trim_end().to_string()
}
