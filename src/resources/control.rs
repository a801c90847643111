//! Loading and unloading a model on the servers that can: Ollama (a
//! preload request, and `keep_alive: 0`), vLLM in sleep mode (`/wake_up`,
//! `/sleep`), and llama.cpp's server in router mode (`/models/load`,
//! `/models/unload`). The others say how they are started instead.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::endpoints::root;
use crate::error::{Error, Result};
use crate::registry::{Model, Provider, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Load,
    Unload,
}

/// What was asked and what the server said.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub model: String,
    pub provider: String,
    pub action: Action,
    /// The request, as `POST /api/generate`.
    pub request: String,
    /// It was already so (loaded, or not loaded).
    pub already: bool,
    pub took_ms: u64,
}

/// The local model `id`, or a usage error naming what exists.
pub fn local_model<'r>(registry: &'r Registry, id: &str) -> Result<(&'r Model, &'r Provider)> {
    let m = registry.known_model(id)?;
    let p = registry.provider_of(m);
    if !p.local {
        return Err(Error::InvalidInput(format!(
            "{id} is an API model ({}); only local servers load and unload models",
            p.name
        )));
    }
    Ok((m, p))
}

/// Loads or unloads `id` on its server, waiting up to `wait` for a load
/// that the server only starts (llama.cpp's router).
pub async fn act(
    http: &reqwest::Client,
    registry: &Registry,
    id: &str,
    action: Action,
    keep_alive: Option<&str>,
    wait: Duration,
) -> Result<Done> {
    let (m, p) = local_model(registry, id)?;
    let began = Instant::now();
    let base = root(&p.base_url);
    let (request, already) = match (p.flavour.as_deref(), action) {
        (Some("ollama"), _) => (ollama(http, &base, m, p, action, keep_alive).await?, false),
        (Some("vllm"), _) => vllm(http, &base, p, action).await?,
        (Some("llamacpp"), _) => llamacpp(http, &base, m, p, action, wait).await?,
        (Some("tgi"), _) => {
            return Err(Error::Model(format!(
                "{} (TGI) serves the one model it was started with and cannot {} it: start or stop its container (docker compose --profile tgi up -d tgi / docker compose stop tgi)",
                p.name,
                verb(action)
            )));
        }
        (flavour, _) => {
            return Err(Error::Model(format!(
                "{} ({}) cannot {} models through llmclis; use the server's own controls",
                p.name,
                flavour.unwrap_or("unknown"),
                verb(action)
            )));
        }
    };
    Ok(Done {
        model: id.to_string(),
        provider: p.name.clone(),
        action,
        request,
        already,
        took_ms: began.elapsed().as_millis() as u64,
    })
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Load => "load",
        Action::Unload => "unload",
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut rb = http.post(url).timeout(timeout);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.map_err(|e| {
        Error::Model(if e.is_connect() {
            format!("{url}: connection refused; is the server running?")
        } else if e.is_timeout() {
            format!("{url}: no answer within {} s", timeout.as_secs())
        } else {
            format!("{url}: {e}")
        })
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}

/// The server's own message: `{"error": "…"}`, `{"error": {"message": …}}`
/// or `{"detail": …}`, else the start of the body.
fn said(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v.get("error")
        .and_then(|e| e.as_str().or_else(|| e.get("message")?.as_str()))
        .or_else(|| v.get("detail")?.as_str())
        .map(String::from)
        .unwrap_or_else(|| {
            body.chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string()
        })
}

async fn ollama(
    http: &reqwest::Client,
    base: &str,
    m: &Model,
    p: &Provider,
    action: Action,
    keep_alive: Option<&str>,
) -> Result<String> {
    // The calls ask for the model's whole window, and Ollama reloads a
    // model whose num_ctx changes: load it with the same one.
    let mut body = json!({"model": m.served_name, "options": {"num_ctx": m.context_window}});
    match action {
        Action::Load => {
            // Ollama reads a number as seconds (negative: for ever) and a
            // string as a Go duration, which needs a unit.
            if let Some(k) = keep_alive {
                body["keep_alive"] = match k.trim().parse::<i64>() {
                    Ok(secs) => json!(secs),
                    Err(_) => json!(k),
                };
            }
        }
        Action::Unload => body["keep_alive"] = json!(0),
    }
    let url = format!("{base}/api/generate");
    let (status, text) = post(http, &url, Some(body), p.timeout).await?;
    let done_reason = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("done_reason")?.as_str().map(String::from));
    let want = verb(action);
    match status {
        200 if done_reason.as_deref() == Some(want) => Ok("POST /api/generate".into()),
        200 => Err(Error::Model(format!(
            "{}: /api/generate answered without done_reason {want:?}: {}",
            p.name,
            said(&text)
        ))),
        404 => Err(Error::Model(format!(
            "{}: Ollama has no model {:?} ({}); `ollama pull {}` first",
            p.name,
            m.served_name,
            said(&text),
            m.served_name
        ))),
        code => Err(Error::Model(format!(
            "{}: Ollama could not {} {} ({code}): {}",
            p.name,
            verb(action),
            m.served_name,
            said(&text)
        ))),
    }
}

async fn vllm(
    http: &reqwest::Client,
    base: &str,
    p: &Provider,
    action: Action,
) -> Result<(String, bool)> {
    let path = match action {
        Action::Load => "/wake_up",
        Action::Unload => "/sleep?level=1",
    };
    if action == Action::Unload {
        // Putting vLLM to sleep under load aborts what it is serving (and
        // has crashed it): refuse while its metrics show requests.
        let state = super::servers::probe(http, p, crate::endpoints::PROBE_TIMEOUT, None).await;
        let busy = state.running.unwrap_or(0) + state.waiting.unwrap_or(0);
        if busy > 0 {
            return Err(Error::Model(format!(
                "{}: vLLM is serving {busy} request(s); unloading now would abort them: try again when it is idle (`llmclis models status` shows its queue)",
                p.name
            )));
        }
    }
    let (status, text) = post(http, &format!("{base}{path}"), None, p.timeout).await?;
    match status {
        200 => Ok((format!("POST {path}"), false)),
        404 => Err(Error::Model(format!(
            "{}: vLLM has no {} endpoint: start it in sleep mode (VLLM_SERVER_DEV_MODE=1 in its environment and --enable-sleep-mode; docker-compose.yml's vllm service shows both)",
            p.name,
            path.split('?').next().unwrap_or(path)
        ))),
        code => Err(Error::Model(format!(
            "{}: POST {path} answered {code}: {}",
            p.name,
            said(&text)
        ))),
    }
}

async fn llamacpp(
    http: &reqwest::Client,
    base: &str,
    m: &Model,
    p: &Provider,
    action: Action,
    wait: Duration,
) -> Result<(String, bool)> {
    let router = super::servers::probe(http, p, crate::endpoints::PROBE_TIMEOUT, None)
        .await
        .router_mode;
    if !router {
        return Err(Error::Model(format!(
            "{}: this llama.cpp server serves the one model it was started with; to load and unload models, start llama-server in router mode (without -m, with --models-dir DIR)",
            p.name
        )));
    }
    let path = match action {
        Action::Load => "/models/load",
        Action::Unload => "/models/unload",
    };
    let body = json!({"model": m.served_name});
    let (status, text) = post(http, &format!("{base}{path}"), Some(body), p.timeout).await?;
    let message = said(&text);
    let already = match (status, action) {
        (200, _) => false,
        (400, Action::Load) if message.contains("already running") => true,
        (400, Action::Unload) if message.contains("not running") => true,
        (404, _) | (400, _) if message.contains("not found") => {
            return Err(Error::Model(format!(
                "{}: llama.cpp knows no model {:?}; its /v1/models lists what it can load",
                p.name, m.served_name
            )));
        }
        (code, _) => {
            return Err(Error::Model(format!(
                "{}: POST {path} answered {code}: {message}",
                p.name
            )));
        }
    };
    // The router answers as soon as it starts the model: wait for it.
    if action == Action::Load && !already {
        let until = Instant::now() + wait;
        loop {
            let state = super::servers::probe(http, p, crate::endpoints::PROBE_TIMEOUT, None).await;
            if state.loaded.iter().any(|l| l.name == m.served_name) {
                break;
            }
            if let Some(f) = state.failed.iter().find(|f| f.starts_with(&m.served_name)) {
                return Err(Error::Model(format!(
                    "{}: llama.cpp could not load {f}; its log says why",
                    p.name
                )));
            }
            if Instant::now() >= until {
                return Err(Error::Model(format!(
                    "{}: {} was still loading after {} s; `llmclis models status` shows when it is ready",
                    p.name,
                    m.served_name,
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok((format!("POST {path}"), already))
}
