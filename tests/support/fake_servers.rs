//! Scripted local model servers that present their resource state and
//! their load and unload endpoints the way each real one does (read from
//! their sources): Ollama `/api/ps` and `/api/generate` preload/unload,
//! vLLM `/metrics` and sleep mode (the routes exist only in dev mode),
//! TGI `/info` and `/metrics`, llama.cpp's router mode; and one that
//! never answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Ollama,
    /// vLLM; `true`: started with VLLM_SERVER_DEV_MODE=1 (sleep routes).
    Vllm(bool),
    Tgi,
    LlamaRouter,
    /// Accepts and never answers.
    Hang,
    /// Ollama whose `/api/ps` is not JSON.
    GarbageOllama,
    /// llama-cpp-python: `/v1/models` and nothing else (no `/props`).
    LlamaPython,
}

#[derive(Debug, Default)]
pub struct FakeState {
    /// Models it knows (Ollama: pulled; llama.cpp: in its models dir).
    pub known: Vec<String>,
    pub loaded: Vec<String>,
    /// llama.cpp: models loading, ready at the instant.
    pub loading: Vec<(String, Instant)>,
    pub sleeping: bool,
    pub running: u32,
    pub waiting: u32,
    /// Ollama: a load fails for memory.
    pub oom: bool,
    /// Every request: method, path and query, body.
    pub requests: Vec<(String, Value)>,
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
}

type S = State<(Kind, Arc<Mutex<FakeState>>)>;

impl Fake {
    pub async fn start(kind: Kind, known: &[&str], loaded: &[&str]) -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            known: known.iter().map(|s| s.to_string()).collect(),
            loaded: loaded.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }));
        let app: Router<(Kind, Arc<Mutex<FakeState>>)> = match kind {
            Kind::Ollama | Kind::GarbageOllama => Router::new()
                .route("/api/ps", get(ollama_ps))
                .route("/api/tags", get(ollama_tags))
                .route("/api/generate", post(ollama_generate)),
            Kind::Vllm(dev) => {
                let r = Router::new()
                    .route("/v1/models", get(openai_models))
                    .route("/metrics", get(vllm_metrics));
                if dev {
                    r.route("/is_sleeping", get(vllm_is_sleeping))
                        .route("/sleep", post(vllm_sleep))
                        .route("/wake_up", post(vllm_wake))
                } else {
                    r
                }
            }
            Kind::Tgi => Router::new()
                .route("/info", get(tgi_info))
                .route("/metrics", get(tgi_metrics))
                .route("/v1/models", get(tgi_models)),
            Kind::LlamaRouter => Router::new()
                .route("/props", get(llama_props))
                .route("/v1/models", get(llama_models))
                .route("/models/load", post(llama_load))
                .route("/models/unload", post(llama_unload)),
            Kind::LlamaPython => Router::new().route("/v1/models", get(openai_models)),
            Kind::Hang => Router::new(),
        };
        let app = if kind == Kind::Hang {
            app.fallback(hang)
        } else {
            // FastAPI's (and so vLLM's) answer to a route it lacks.
            app.fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))) })
        };
        let app = app
            .layer(axum::middleware::from_fn_with_state(state.clone(), record))
            .with_state((kind, state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake { url, state }
    }

    pub fn paths(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|r| r.0.clone())
            .collect()
    }

    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.0.ends_with(path))
            .map(|r| r.1.clone())
            .collect()
    }
}

async fn record(
    State(state): State<Arc<Mutex<FakeState>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let line = format!("{} {}", parts.method, parts.uri);
    state.lock().unwrap().requests.push((line, value));
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

async fn hang() -> Response {
    tokio::time::sleep(Duration::from_secs(120)).await;
    StatusCode::OK.into_response()
}

const GIB: u64 = 1 << 30;

async fn ollama_ps(State((kind, s)): S) -> Response {
    if kind == Kind::GarbageOllama {
        return "<html>502 Bad Gateway</html>".into_response();
    }
    let s = s.lock().unwrap();
    let models: Vec<Value> = s
        .loaded
        .iter()
        .map(|m| {
            json!({"name": m, "model": m, "size": 7 * GIB, "digest": "845dbda0ea48",
                   "details": {"parent_model": "", "format": "gguf", "family": "qwen2",
                               "families": ["qwen2"], "parameter_size": "7.6B",
                               "quantization_level": "Q4_K_M"},
                   "expires_at": "2026-11-27T23:10:00.123456789Z",
                   "size_vram": 7 * GIB, "context_length": 32768})
        })
        .collect();
    Json(json!({"models": models})).into_response()
}

async fn ollama_tags(State((_, s)): S) -> Json<Value> {
    let s = s.lock().unwrap();
    let models: Vec<Value> = s
        .known
        .iter()
        .map(|m| json!({"name": m, "model": m}))
        .collect();
    Json(json!({"models": models}))
}

async fn ollama_generate(State((_, s)): S, Json(body): Json<Value>) -> Response {
    let mut s = s.lock().unwrap();
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if !s.known.contains(&model) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("model '{model}' not found")})),
        )
            .into_response();
    }
    let prompt_empty = body["prompt"].as_str().unwrap_or("").is_empty();
    let unload =
        prompt_empty && (body["keep_alive"] == json!(0) || body["keep_alive"] == json!("0"));
    if unload {
        s.loaded.retain(|m| *m != model);
        return Json(json!({"model": model, "created_at": "2026-11-27T22:00:00Z",
                           "response": "", "done": true, "done_reason": "unload"}))
        .into_response();
    }
    if s.oom {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            // `llm.ErrLoadRequiredFull` (llm/server.go), which the scheduler
            // returns when the model does not fit and nothing else is loaded.
            Json(json!({"error": "unable to load full model on GPU"})),
        )
            .into_response();
    }
    if !s.loaded.contains(&model) {
        s.loaded.push(model.clone());
    }
    Json(json!({"model": model, "created_at": "2026-11-27T22:00:00Z",
                "response": "", "done": true, "done_reason": "load"}))
    .into_response()
}

async fn openai_models(State((_, s)): S) -> Json<Value> {
    let s = s.lock().unwrap();
    let data: Vec<Value> = s
        .known
        .iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "vllm", "max_model_len": 32768}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// TGI's `/v1/models` (router/src/server.rs `openai_get_model_info`): its
/// one model, owned by itself, created 0, and no window (that is in
/// `/info`).
async fn tgi_models(State((_, s)): S) -> Json<Value> {
    let s = s.lock().unwrap();
    let id = s.known.first().cloned().unwrap_or_default();
    Json(
        json!({"object": "list", "data": [{"id": id, "object": "model", "created": 0, "owned_by": id}]}),
    )
}

async fn vllm_metrics(State((_, s)): S) -> String {
    let s = s.lock().unwrap();
    let m = s.known.first().cloned().unwrap_or_default();
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{{engine=\"0\",model_name=\"{m}\"}} {}.0\n\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
# TYPE vllm:num_requests_waiting gauge\n\
vllm:num_requests_waiting{{engine=\"0\",model_name=\"{m}\"}} {}.0\n\
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
# TYPE vllm:kv_cache_usage_perc gauge\n\
vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"{m}\"}} 0.42\n",
        s.running, s.waiting
    )
}

async fn vllm_is_sleeping(State((_, s)): S) -> Json<Value> {
    Json(json!({"is_sleeping": s.lock().unwrap().sleeping}))
}

async fn vllm_sleep(State((_, s)): S) -> StatusCode {
    s.lock().unwrap().sleeping = true;
    StatusCode::OK
}

async fn vllm_wake(State((_, s)): S) -> StatusCode {
    s.lock().unwrap().sleeping = false;
    StatusCode::OK
}

async fn tgi_info(State((_, s)): S) -> Json<Value> {
    let s = s.lock().unwrap();
    Json(
        json!({"model_id": s.known.first(), "model_sha": null, "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
                "max_input_tokens": 30720, "max_total_tokens": 32768, "validation_workers": 2,
                "max_client_batch_size": 4, "router": "text-generation-router", "version": "3.3.4",
                "sha": null, "docker_label": null}),
    )
}

async fn tgi_metrics(State((_, s)): S) -> String {
    let s = s.lock().unwrap();
    format!(
        "# TYPE tgi_queue_size gauge\ntgi_queue_size {}\n# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size {}\n",
        s.waiting, s.running
    )
}

async fn llama_props() -> Json<Value> {
    Json(
        json!({"role": "router", "max_instances": 4, "models_autoload": true,
                "model_alias": "llama-server", "model_path": "none",
                "default_generation_settings": {"params": {}, "n_ctx": 0}}),
    )
}

fn llama_error(code: u16, message: &str, kind: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        Json(json!({"error": {"code": code, "message": message, "type": kind}})),
    )
        .into_response()
}

async fn llama_models(State((_, s)): S) -> Json<Value> {
    let mut s = s.lock().unwrap();
    let now = Instant::now();
    let ready: Vec<String> = s
        .loading
        .iter()
        .filter(|(_, at)| *at <= now)
        .map(|(m, _)| m.clone())
        .collect();
    s.loading.retain(|(_, at)| *at > now);
    s.loaded.extend(ready);
    let data: Vec<Value> = s
        .known
        .iter()
        .map(|m| {
            let status = if s.loaded.contains(m) {
                "loaded"
            } else if s.loading.iter().any(|(x, _)| x == m) {
                "loading"
            } else {
                "unloaded"
            };
            json!({"id": m, "aliases": [], "tags": [], "object": "model", "owned_by": "llamacpp",
                   "created": 1767225600, "status": {"value": status, "args": []},
                   "source": "models_dir", "can_remove": false})
        })
        .collect();
    Json(json!({"data": data, "object": "list"}))
}

async fn llama_load(State((_, s)): S, Json(body): Json<Value>) -> Response {
    let mut s = s.lock().unwrap();
    let m = body["model"].as_str().unwrap_or_default().to_string();
    if !s.known.contains(&m) {
        return llama_error(404, "model is not found", "not_found_error");
    }
    if s.loaded.contains(&m) || s.loading.iter().any(|(x, _)| *x == m) {
        return llama_error(400, "model is already running", "invalid_request_error");
    }
    s.loading
        .push((m, Instant::now() + Duration::from_millis(400)));
    Json(json!({"success": true})).into_response()
}

async fn llama_unload(State((_, s)): S, Json(body): Json<Value>) -> Response {
    let mut s = s.lock().unwrap();
    let m = body["model"].as_str().unwrap_or_default().to_string();
    if !s.known.contains(&m) {
        return llama_error(400, "model is not found", "invalid_request_error");
    }
    if !s.loaded.contains(&m) {
        return llama_error(400, "model is not running", "invalid_request_error");
    }
    s.loaded.retain(|x| *x != m);
    Json(json!({"success": true})).into_response()
}
