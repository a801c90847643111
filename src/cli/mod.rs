//! The command line: clap definitions, dispatch to the library, and the one
//! place where errors become messages and exit codes.

mod assets;
mod closed;
mod eval;
mod interop;
pub(crate) mod memory;
mod models;
pub(crate) mod orchestrate;
mod plans;
mod progress;
pub(crate) mod render;
mod resources;
mod serve;
mod task;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::app::setup as first_run;
use crate::app::tasks;
use crate::app::types::{Config, Paths, agent_name};
use crate::error::{Error, Result};

/// `llmclis --version`: the release and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("LLMCLIS_BUILD"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "llmclis",
    version = VERSION,
    about = "A terminal knowledge manager with a task queue for LLM agents",
    max_term_width = 100
)]
pub struct Cli {
    /// The SQLite database [default: <data dir>/llmclis.db]
    #[arg(
        long,
        global = true,
        env = "LLMCLIS_DB",
        hide_env_values = true,
        value_name = "PATH"
    )]
    db: Option<PathBuf>,
    /// Where config.toml, model_registry.yaml and prompts/ live
    #[arg(
        long,
        global = true,
        env = "LLMCLIS_CONFIG_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    config_dir: Option<PathBuf>,
    /// Where the database and other data live
    #[arg(
        long,
        global = true,
        env = "LLMCLIS_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    data_dir: Option<PathBuf>,
    /// The agent recorded for changes [default: config general.agent, then $USER]
    #[arg(
        long,
        global = true,
        env = "LLMCLIS_AGENT",
        hide_env_values = true,
        value_name = "NAME"
    )]
    agent: Option<String>,
    /// Print stable JSON (errors go to stderr as {"error": {"kind", "message"}})
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing on success (errors still go to stderr; --json still
    /// prints JSON): for scripts that read the exit code
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// The model registry [default: <config dir>/model_registry.yaml, else the built-in one]
    #[arg(
        long,
        global = true,
        env = "LLMCLIS_REGISTRY",
        hide_env_values = true,
        value_name = "PATH"
    )]
    registry: Option<PathBuf>,
    /// offline: local models only; online: API models too [default: config models.mode]
    #[arg(
        long,
        global = true,
        env = "LLMCLIS_MODE",
        hide_env_values = true,
        value_name = "MODE"
    )]
    mode: Option<crate::app::types::Mode>,
    /// Log to stderr as well as the log file (debug level unless LLMCLIS_LOG
    /// or RUST_LOG say otherwise; not in the board, which owns the screen)
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The task board (also what `llmclis` with no command opens).
    Tui,
    /// Check the database, config, registry, model servers, Qdrant and the
    /// embedding model; say how to fix each problem.
    Doctor,
    /// Serve the task queue, plans and memory to other agents over MCP (stdio).
    Mcp,
    /// An OpenAI- and Anthropic-compatible gateway to the router, and MCP
    /// over HTTP, for every agent on the machine or the network
    #[command(
        after_long_help = "Examples:\n  llmclis keys add laptop --rpm 60       # a client key, shown once\n  llmclis serve --listen 0.0.0.0:4242\n  llmclis serve --no-auth                # loopback only, no keys"
    )]
    Serve(serve::ServeArgs),
    /// The gateway's client keys: add, list, revoke
    #[command(subcommand)]
    Keys(serve::KeysCmd),
    /// Print a shell completion script (where it goes: README, Install)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `llmclis man > llmclis.1`
    Man,
    /// Which config, registry, database, log and model files are in use
    Paths,
    /// The config file's path, or the settings in effect
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Create the config and data directories, the database and the default files
    FirstRun {
        /// Do not ask; for scripts
        #[arg(long, short)]
        yes: bool,
    },
    /// The local embedding model and ONNX Runtime: fetch them
    #[command(subcommand)]
    Assets(assets::AssetsCmd),
    /// Projects: add, list, show
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Tasks: add, list, ready, next, claim, release, status, note, dep, edit
    #[command(subcommand)]
    #[command(
        after_long_help = "Examples:\n  llmclis task add \"Fix the parser\" --tag bug --priority high   # the project from where you stand\n  llmclis task ready --tag bug                        # the queue, in the order next gives it\n  llmclis task next --claim                           # take the next task with a lease\n  git log -1 --format=%B | llmclis task note 7 -      # text from stdin\n  llmclis task status 7 done --note \"merged in #12\""
    )]
    Task(task::TaskCmd),
    /// Work through a project's tasks: plan, execute, critique, record
    #[command(
        after_long_help = "Examples:\n  llmclis orchestrate --project-id 1 --dry-run          # the order, nothing run\n  llmclis orchestrate --project-id 1 --max-steps 20     # work through 20 tasks\n  llmclis orchestrate --project-id 1 --workers 4 --json # 4 at once, events as JSON lines"
    )]
    Orchestrate(orchestrate::OrchestrateArgs),
    /// Measure whether the pipeline solves tasks: run a suite of cases, each
    /// decided by its own check
    Eval(eval::EvalArgs),
    /// plans.md: import, done, add, note, status, check, sync
    #[command(subcommand)]
    #[command(
        after_long_help = "Examples:\n  llmclis plans import plans.md          # a project from the file (again: update it)\n  llmclis plans done S1.2 --note \"tested on CI\"\n  llmclis plans check --against HEAD       # history kept since the last commit?"
    )]
    Plans(plans::PlansCmd),
    /// Tasks from Task Master or beads, into a project (again: update it)
    #[command(subcommand)]
    #[command(
        after_long_help = "Examples:\n  llmclis import taskmaster                 # ./.taskmaster/tasks/tasks.json\n  llmclis import beads ~/src/app            # ~/src/app/.beads/issues.jsonl\n  llmclis import taskmaster --tag feature-x --project-id 2"
    )]
    Import(interop::ImportCmd),
    /// A project's tasks as Task Master or beads reads them
    #[command(subcommand)]
    Export(interop::ExportCmd),
    /// issues.md: open and close entries
    #[command(subcommand)]
    Issues(plans::IssuesCmd),
    /// research.md: add findings
    #[command(subcommand)]
    Research(plans::ResearchCmd),
    /// The model registry: list, health, status, load, unload
    #[command(subcommand)]
    #[command(
        after_long_help = "Examples:\n  llmclis models list                     # what each server serves\n  llmclis models status                   # memory per GPU, what is loaded, what fits\n  llmclis models unload qwen-7b           # free its memory (Ollama, vLLM sleep mode)"
    )]
    Models(models::ModelsCmd),
    /// The router: explain a task's route
    #[command(subcommand)]
    Route(models::RouteCmd),
    /// Ask a model; the answer streams to stdout
    #[command(
        after_long_help = "Examples:\n  llmclis chat \"Explain this error: $(tail -5 build.log)\"\n  llmclis chat --role researcher \"Compare vLLM and TGI\"\n  llmclis chat --model qwen-7b --max-tokens 64 \"Say hello\""
    )]
    Chat(models::ChatArgs),
    /// Memory: store, query, summarize, compact, reindex, stats
    #[command(subcommand)]
    #[command(
        after_long_help = "Examples:\n  llmclis memory store --project-id 1 \"The parser must accept CRLF\"\n  llmclis memory query --project-id 1 \"line endings\" --top-k 3\n  llmclis memory stats --verify           # the store's counts, checked against the index"
    )]
    Memory(memory::MemoryCmd),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print config.toml's path (`$EDITOR "$(llmclis config path)"`)
    Path,
    /// Every setting in effect (defaults filled in) as TOML, and which
    /// environment variables hold keys (their names, never the keys)
    Show,
}

#[derive(Debug, Subcommand)]
enum ProjectCmd {
    /// Add a project
    Add {
        /// The project's name (unique)
        name: String,
        /// A longer description
        #[arg(long, short, default_value = "")]
        description: String,
        /// The project's workspace (an existing directory)
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// List projects with their task counts
    List,
    /// Show one project
    Show {
        /// The project's id
        id: i64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ProjectId {
    /// The project's id [default: the project from where you stand: a
    /// plans.md imported as a project, or a project's root, here or above;
    /// else [general] default_project; else the only one]
    #[arg(long = "project-id", visible_alias = "project_id", value_name = "N")]
    project_id: Option<i64>,
}

impl ProjectId {
    /// The project given, or the one from where you stand; said on stderr
    /// when it was not given.
    pub(crate) fn choose(&self, ctx: &Ctx, store: &crate::app::handles::Store) -> Result<Chosen> {
        let c = crate::app::here::project(&ctx.app, store, self.project_id)?;
        if c.by != "given" && !ctx.json && !ctx.quiet {
            eprintln!("(project {} {}: {})", c.project_id, c.name, c.why);
        }
        Ok(c)
    }
}

pub(crate) use crate::app::here::Chosen;

/// For commands that span every project when none is given: the project
/// from where you stand when one is found there or in config, else none.
pub(crate) fn scope(
    ctx: &Ctx,
    store: &crate::app::handles::Store,
    given: Option<i64>,
) -> Result<Option<Chosen>> {
    match crate::app::here::project(&ctx.app, store, given) {
        Ok(c) if c.by != "only" => {
            if c.by != "given" && !ctx.json && !ctx.quiet {
                eprintln!("(project {} {}: {})", c.project_id, c.name, c.why);
            }
            Ok(Some(c))
        }
        Ok(_) => Ok(None),
        Err(e) if given.is_some() => Err(e),
        // A default_project that names nothing is the user's to fix.
        Err(e @ Error::Config { .. }) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Text from an argument, or from stdin when it is `-`.
pub(crate) fn text_arg(text: String, what: &str) -> Result<String> {
    if text != "-" {
        return Ok(text);
    }
    use std::io::Read;
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| Error::io("<stdin>", e))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.trim().is_empty() {
        return Err(Error::InvalidInput(format!(
            "the {what} read from stdin (`-`) is empty"
        )));
    }
    Ok(s)
}

/// Parses `args`, runs the command, prints the result, and returns the exit
/// code. Nothing below this function prints errors.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    let json_errors = args.iter().any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = e.exit_code();
            if json_errors
                && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
            {
                let message = e.to_string();
                let first = message
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                print_json_error("usage", first);
            } else if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
            } else {
                eprintln!("{}", one_line(&e.to_string()));
            }
            return ExitCode::from(code as u8);
        }
    };
    let json = cli.json;
    // Not locked for the whole command: `mcp` writes the protocol from other
    // threads, and `orchestrate` prints progress as it goes.
    let mut out = std::io::stdout();
    let result = if cli.quiet && !json {
        dispatch(cli, &mut std::io::sink())
    } else {
        dispatch(cli, &mut out)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`llmclis … | head`): nothing to say.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => report(&e, json),
    }
}

/// A clap usage error on one line, like every other error: the message,
/// the possible values and the usage, without the blank lines and the
/// "try --help" footer.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .map(|l| match l.strip_prefix("Usage: ") {
            Some(u) => format!("(usage: {u})"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The one place an error becomes output and an exit code.
pub fn report(e: &Error, json: bool) -> ExitCode {
    if json {
        print_json_error(e.kind(), &e.to_string());
    } else if let Error::Interrupted(message) = e {
        eprintln!("{message}");
    } else {
        eprintln!("error: {e}");
    }
    ExitCode::from(e.exit_code())
}

fn print_json_error(kind: &str, message: &str) {
    eprintln!("{}", json!({"error": {"kind": kind, "message": message}}));
}

/// A command's context: the application's, and how to print.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) app: crate::app::Context,
    pub(crate) json: bool,
    /// `-q`: nothing on stdout but JSON asked for; notes on stderr too.
    pub(crate) quiet: bool,
}

impl std::ops::Deref for Ctx {
    type Target = crate::app::Context;

    fn deref(&self) -> &crate::app::Context {
        &self.app
    }
}

pub(crate) fn emit<T: Serialize>(
    out: &mut impl Write,
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(value).expect("output serializes")
    } else {
        human()
    };
    writeln!(out, "{text}").map_err(|e| Error::io("<stdout>", e))
}

fn dispatch(cli: Cli, out: &mut impl Write) -> Result<()> {
    // These need no settings: a broken config does not stop them.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            // Into memory first: the generator panics on a write error
            // (a closed pipe), which must stay an error.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "llmclis", &mut script);
            return out.write_all(&script).map_err(|e| Error::io("<stdout>", e));
        }
        Some(Command::Man) => {
            use clap::CommandFactory;
            return clap_mangen::Man::new(Cli::command())
                .render(out)
                .map_err(|e| Error::io("<stdout>", e));
        }
        _ => {}
    }
    let board = matches!(cli.command, None | Some(Command::Tui));
    if cli.verbose && !board {
        crate::logging::VERBOSE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let paths = Paths::resolve(cli.config_dir, cli.data_dir, cli.db)?;
    if !board {
        crate::logging::init(&paths);
    }
    let config = Config::load(&paths.config_file())?;
    let agent = agent_name(cli.agent.as_deref(), &config);
    let ctx = Ctx {
        app: crate::app::Context::new(paths, config, agent, cli.registry, cli.mode),
        json: cli.json,
        quiet: cli.quiet,
    };
    let Some(command) = cli.command else {
        return crate::tui::run(&ctx.app);
    };
    match command {
        Command::Tui => crate::tui::run(&ctx.app),
        Command::Mcp => crate::mcp::serve_stdio(&ctx.app),
        Command::Serve(args) => serve::serve(&ctx, args),
        Command::Keys(cmd) => serve::keys_cmd(&ctx, cmd, out),
        Command::Completions { .. } | Command::Man => unreachable!("answered above"),
        Command::Config(ConfigCmd::Path) => {
            let file = ctx.app.paths.config_file();
            let value = serde_json::json!({"config_file": file.display().to_string(), "exists": file.is_file()});
            emit(out, ctx.json, &value, || file.display().to_string())
        }
        Command::Config(ConfigCmd::Show) => {
            let e = crate::app::paths::effective(&ctx.app);
            emit(out, ctx.json, &e, || render::effective(&e))
        }
        Command::Paths => {
            let places = crate::app::paths::places(&ctx.app);
            emit(out, ctx.json, &places, || {
                places
                    .iter()
                    .map(|p| {
                        format!(
                            "{:<16} {}{}\n{:<16} ({})",
                            p.what,
                            p.path,
                            if p.exists { "" } else { "  [missing]" },
                            "",
                            p.note
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Doctor => {
            let report = crate::app::doctor(&ctx);
            emit(out, ctx.json, &report, || render::doctor(&report))?;
            if report.ok {
                Ok(())
            } else {
                Err(Error::CheckFailed {
                    count: report.errors,
                })
            }
        }
        Command::FirstRun { yes } => cmd_first_run(&ctx, yes, out),
        Command::Project(cmd) => cmd_project(&ctx, cmd, out),
        Command::Task(cmd) => task::cmd_task(&ctx, cmd, out),
        Command::Plans(cmd) => plans::plans(&ctx, cmd, out),
        Command::Assets(cmd) => assets::assets(&ctx, cmd, out),
        Command::Import(cmd) => interop::import(&ctx, cmd, out),
        Command::Export(cmd) => interop::export(&ctx, cmd, out),
        Command::Issues(cmd) => plans::issues(&ctx, cmd, out),
        Command::Research(cmd) => plans::research(&ctx, cmd, out),
        Command::Models(cmd) => models::models(&ctx, cmd, out),
        Command::Route(cmd) => models::route(&ctx, cmd, out),
        Command::Chat(args) => models::chat(&ctx, args, out),
        Command::Memory(cmd) => memory::memory(&ctx, cmd, out),
        Command::Orchestrate(args) => orchestrate::orchestrate(&ctx, args, out),
        Command::Eval(args) => eval::eval(&ctx, args, out),
    }
}

fn cmd_first_run(ctx: &Ctx, yes: bool, out: &mut impl Write) -> Result<()> {
    let workspace = std::env::current_dir().ok();
    // LLMCLIS_FETCH_ASSETS=0 keeps first-run off the network.
    let fetch = std::env::var("LLMCLIS_FETCH_ASSETS").map_or(true, |v| v != "0");
    let changes = first_run::pending_changes(&ctx.paths, workspace.as_deref(), fetch);
    if !changes.is_empty() && !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::InvalidInput(
                "first-run asks before it creates files; pass --yes to run it without a terminal"
                    .into(),
            ));
        }
        eprintln!("llmclis first-run will:");
        for c in &changes {
            eprintln!("  - {c}");
        }
        eprint!("Proceed? [Y/n] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Error::io("<stdin>", e))?;
        if !matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "" | "y" | "yes"
        ) {
            return Err(Error::InvalidInput(
                "first-run cancelled; nothing was changed".into(),
            ));
        }
    }
    // LLMCLIS_DETECT=0 skips probing the local ports.
    let detect = std::env::var("LLMCLIS_DETECT").map_or(true, |v| v != "0");
    let report = first_run::run(
        &ctx.paths,
        ctx.registry_file(),
        workspace.as_deref(),
        &ctx.agent,
        fetch,
        detect,
        !ctx.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;
    emit(out, ctx.json, &report, || render::first_run(&report))
}

fn cmd_project(ctx: &Ctx, cmd: ProjectCmd, out: &mut impl Write) -> Result<()> {
    let mut store = ctx.store()?;
    match cmd {
        ProjectCmd::Add {
            name,
            description,
            root,
        } => {
            let req = tasks::AddProject {
                name,
                description,
                root: root.map(|r| r.to_string_lossy().into_owned()),
            };
            let p = tasks::add_project(ctx, &mut store, req)?;
            emit(out, ctx.json, &p, || {
                format!(
                    "Created project {} {:?}. Next: llmclis task add --project-id {} \"TITLE\"",
                    p.id, p.name, p.id
                )
            })
        }
        ProjectCmd::List => {
            let rows = tasks::list_projects(&store)?;
            emit(out, ctx.json, &rows, || render::project_list(&rows))
        }
        ProjectCmd::Show { id } => {
            let view = tasks::show_project(&store, id)?;
            emit(out, ctx.json, &view, || render::project_show(&view))
        }
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") || a.is_hide_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (command)", sub.get_name()));
                }
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "llmclis".into(), &mut missing);
        assert!(
            missing.is_empty(),
            "{} without help:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }
}
