//! What each local server holds and how busy it is, asked the way each
//! one answers: Ollama `/api/ps`; vLLM `/metrics` and `/is_sleeping`; TGI
//! `/info` and `/metrics`; llama.cpp's C++ server `/props`, `/slots` and,
//! in router mode, `/v1/models` with each model's status; anything else
//! `/v1/models`. A garbled answer is a note on the server, never an error.

use std::time::Duration;

use serde_json::Value;

pub use super::snapshot::{Loaded, ServerState};
use crate::endpoints::root;
use crate::registry::Provider;

/// `key`: the provider's API key (vLLM `--api-key`, a proxy in front of
/// a server), so a guarded server is not taken for a down one.
async fn get(
    http: &reqwest::Client,
    key: Option<&str>,
    url: String,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut rb = http.get(&url).timeout(timeout);
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let resp = rb.send().await.map_err(|e| describe(&e, timeout))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| describe(&e, timeout))?;
    Ok((status, body))
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        e.to_string()
    }
}

/// Whether something accepts connections at `url`'s host and port.
async fn connects(url: &str, timeout: Duration) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = u.host_str().ok_or("no host")?.to_string();
    let port = u.port_or_known_default().ok_or("no port")?;
    match tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err("connection refused".into()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Asks one provider's server everything its kind can tell, each request
/// within `timeout`, the requests of one server at once. `last` is what it
/// said before: a server that must not be asked while it works
/// (`lists_only`) is then only connected to.
pub async fn probe(
    http: &reqwest::Client,
    p: &Provider,
    timeout: Duration,
    last: Option<&ServerState>,
) -> ServerState {
    if let Some(last) = last.filter(|l| l.lists_only && l.up) {
        let mut s = last.clone();
        if let Err(e) = connects(&p.base_url, timeout).await {
            s.up = false;
            s.error = Some(e);
            s.loaded.clear();
        }
        return s;
    }
    let mut s = ServerState {
        provider: p.name.clone(),
        flavour: p.flavour.clone(),
        device: p.device,
        ..Default::default()
    };
    let base = root(&p.base_url);
    let url = |path: &str| format!("{base}{path}");
    let key = p.api_key();
    let key = key.as_deref();
    match p.flavour.as_deref() {
        Some("ollama") => match get(http, key, url("/api/ps"), timeout).await {
            Ok((200, body)) => {
                s.up = true;
                match parse_ollama_ps(&body) {
                    Ok(l) => s.loaded = l,
                    Err(e) => s.notes.push(format!("/api/ps: {e}")),
                }
            }
            Ok((code, body)) => down(&mut s, "/api/ps", code, &body),
            Err(e) => s.error = Some(e),
        },
        Some("vllm") => {
            let (models, metrics, sleeping) = tokio::join!(
                get(http, key, url("/v1/models"), timeout),
                get(http, key, url("/metrics"), timeout),
                get(http, key, url("/is_sleeping"), timeout),
            );
            served(&mut s, models);
            if let Ok((200, text)) = metrics {
                s.running = prometheus(&text, "vllm:num_requests_running").map(|v| v as u32);
                s.waiting = prometheus(&text, "vllm:num_requests_waiting").map(|v| v as u32);
                s.kv_cache_usage = prometheus_max(&text, "vllm:kv_cache_usage_perc")
                    .or_else(|| prometheus_max(&text, "vllm:gpu_cache_usage_perc"));
            }
            // Without VLLM_SERVER_DEV_MODE=1 the sleep routes do not exist
            // (404): nothing is known about sleep, and nothing sleeps.
            if let Ok((200, body)) = sleeping {
                s.sleeping = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("is_sleeping")?.as_bool());
            }
        }
        Some("tgi") => {
            let (info, metrics) = tokio::join!(
                get(http, key, url("/info"), timeout),
                get(http, key, url("/metrics"), timeout),
            );
            match info {
                Ok((200, body)) => {
                    s.up = true;
                    match serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("model_id")?.as_str().map(String::from))
                    {
                        Some(id) => s.loaded.push(Loaded::named(&id)),
                        None => s.notes.push("/info: no model_id".into()),
                    }
                }
                Ok((code, body)) => down(&mut s, "/info", code, &body),
                Err(e) => s.error = Some(e),
            }
            if let Ok((200, text)) = metrics {
                s.waiting = prometheus(&text, "tgi_queue_size").map(|v| v as u32);
                s.running = prometheus(&text, "tgi_batch_current_size").map(|v| v as u32);
            }
        }
        Some("llamacpp") => {
            let (props, models) = tokio::join!(
                get(http, key, url("/props"), timeout),
                get(http, key, url("/v1/models"), timeout),
            );
            let props: Option<Value> = match &props {
                Ok((200, body)) => serde_json::from_str(body).ok(),
                _ => None,
            };
            let router = props
                .as_ref()
                .and_then(|p| p.get("role")?.as_str())
                .is_some_and(|r| r == "router");
            s.router_mode = router;
            if router {
                match models {
                    Ok((200, body)) => {
                        s.up = true;
                        match parse_llamacpp_router_models(&body) {
                            Ok(r) => {
                                s.loaded = r.loaded.iter().map(|n| Loaded::named(n)).collect();
                                s.unloaded = r.other;
                                s.failed = r.failed;
                            }
                            Err(e) => s.notes.push(format!("/v1/models: {e}")),
                        }
                    }
                    Ok((code, body)) => down(&mut s, "/v1/models", code, &body),
                    Err(e) => s.error = Some(e),
                }
            } else {
                served(&mut s, models);
                s.lists_only = s.up && props.is_none();
                if let Some(p) = &props {
                    s.sleeping = p.get("is_sleeping").and_then(Value::as_bool);
                }
                // The C++ server's slots; llama-cpp-python has none (404).
                if props.is_some()
                    && let Ok((200, body)) = get(http, key, url("/slots"), timeout).await
                {
                    match parse_llamacpp_slots(&body) {
                        Ok((busy, _)) => s.running = Some(busy),
                        Err(e) => s.notes.push(format!("/slots: {e}")),
                    }
                }
            }
        }
        _ => served(&mut s, get(http, key, url("/v1/models"), timeout).await),
    }
    // Asleep (vLLM's sleep mode, llama.cpp's): what it lists, it does not hold.
    if s.sleeping == Some(true) {
        s.loaded.clear();
    }
    s
}

/// An OpenAI-style model list: a single-model server holds what it lists.
fn served(s: &mut ServerState, answer: Result<(u16, String), String>) {
    match answer {
        Ok((200, body)) => {
            s.up = true;
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            match v.get("data").and_then(Value::as_array) {
                Some(list) => {
                    s.loaded = list
                        .iter()
                        .filter_map(|m| m.get("id")?.as_str())
                        .map(Loaded::named)
                        .collect()
                }
                None => s.notes.push("/v1/models: no data list".into()),
            }
        }
        Ok((code, body)) => down(s, "/v1/models", code, &body),
        Err(e) => s.error = Some(e),
    }
}

fn down(s: &mut ServerState, path: &str, code: u16, body: &str) {
    let said: String = body.chars().take(160).collect();
    s.error = Some(format!("{path} answered {code}: {}", said.trim()));
}

/// Ollama's `/api/ps`: `{"models":[{name, size, size_vram, expires_at…}]}`.
pub fn parse_ollama_ps(body: &str) -> Result<Vec<Loaded>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let list = v
        .get("models")
        .and_then(Value::as_array)
        .ok_or("no models list")?;
    list.iter()
        .map(|m| {
            let name = m
                .get("name")
                .or_else(|| m.get("model"))
                .and_then(Value::as_str)
                .ok_or("a model without a name")?;
            Ok(Loaded {
                name: name.to_string(),
                size: m.get("size").and_then(Value::as_u64),
                size_vram: m.get("size_vram").and_then(Value::as_u64),
                expires_at: m
                    .get("expires_at")
                    .and_then(Value::as_str)
                    .map(String::from),
            })
        })
        .collect()
}

/// What llama.cpp's router says of its models.
#[derive(Debug, Default, PartialEq)]
pub struct RouterModels {
    pub loaded: Vec<String>,
    /// Unloaded, loading, asleep: it can serve them on request.
    pub other: Vec<String>,
    /// A load that failed (`status.failed`), as `name (exit code N)`.
    pub failed: Vec<String>,
}

/// llama.cpp's router-mode `/v1/models`: each model's `status.value`
/// (`loaded`, `loading`, `unloaded`, `sleeping`, …) and `status.failed`.
pub fn parse_llamacpp_router_models(body: &str) -> Result<RouterModels, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let list = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no data list")?;
    let mut out = RouterModels::default();
    for m in list {
        let Some(id) = m.get("id").and_then(Value::as_str) else {
            continue;
        };
        if m.pointer("/status/failed").and_then(Value::as_bool) == Some(true) {
            let code = m
                .pointer("/status/exit_code")
                .and_then(Value::as_i64)
                .unwrap_or(-1);
            out.failed.push(format!("{id} (exit code {code})"));
            out.other.push(id.to_string());
            continue;
        }
        match m.pointer("/status/value").and_then(Value::as_str) {
            Some("loaded") => out.loaded.push(id.to_string()),
            _ => out.other.push(id.to_string()),
        }
    }
    Ok(out)
}

/// llama.cpp's `/slots`: (slots processing, all slots).
pub fn parse_llamacpp_slots(body: &str) -> Result<(u32, u32), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e})"))?;
    let slots = v.as_array().ok_or("not a list of slots")?;
    let busy = slots
        .iter()
        .filter(|s| s.get("is_processing").and_then(Value::as_bool) == Some(true))
        .count();
    Ok((busy as u32, slots.len() as u32))
}

/// The sum of a Prometheus gauge over its series (one per engine under
/// data parallelism); labels in any order; None when absent.
pub fn prometheus(text: &str, name: &str) -> Option<f64> {
    series(text, name).reduce(|a, b| a + b)
}

fn prometheus_max(text: &str, name: &str) -> Option<f64> {
    series(text, name).reduce(f64::max)
}

fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines().filter_map(move |l| {
        let rest = l.strip_prefix(name)?;
        // `name{labels} value` or `name value`, never a longer name.
        let rest = match rest.chars().next()? {
            '{' => &rest[rest.find('}')? + 1..],
            ' ' => rest,
            _ => return None,
        };
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gauges_sum_over_engines_in_any_label_order() {
        let text = "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{engine=\"0\",model_name=\"Q\"} 2.0\n\
vllm:num_requests_running{model_name=\"Q\",engine=\"1\"} 3.0\n\
vllm:num_requests_running_total 99\n\
vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"Q\"} 0.25\n\
tgi_queue_size 4\n";
        assert_eq!(prometheus(text, "vllm:num_requests_running"), Some(5.0));
        assert_eq!(prometheus(text, "vllm:num_requests_waiting"), None);
        assert_eq!(prometheus_max(text, "vllm:kv_cache_usage_perc"), Some(0.25));
        assert_eq!(prometheus(text, "tgi_queue_size"), Some(4.0));
    }

    #[test]
    fn server_answers_are_read_and_garbage_is_an_error_not_a_panic() {
        let ps = r#"{"models":[{"name":"qwen2.5:7b-instruct","model":"qwen2.5:7b-instruct","size":7140000000,"digest":"x","details":{"format":"gguf"},"expires_at":"2026-11-27T22:00:00.5Z","size_vram":7140000000,"context_length":32768}]}"#;
        let l = parse_ollama_ps(ps).unwrap();
        assert_eq!(l[0].name, "qwen2.5:7b-instruct");
        assert_eq!(l[0].size_vram, Some(7_140_000_000));
        assert_eq!(parse_ollama_ps(r#"{"models":[]}"#).unwrap(), vec![]);
        assert!(parse_ollama_ps("<html>").unwrap_err().contains("not JSON"));
        assert!(parse_ollama_ps(r#"{"models":7}"#).is_err());
        let router = r#"{"object":"list","data":[{"id":"a","status":{"value":"loaded"}},{"id":"b","status":{"value":"unloaded"}},{"id":"c","status":{"value":"unloaded","exit_code":1,"failed":true}}]}"#;
        let r = parse_llamacpp_router_models(router).unwrap();
        assert_eq!(r.loaded, ["a"]);
        assert_eq!(r.other, ["b", "c"]);
        assert_eq!(r.failed, ["c (exit code 1)"]);
        let slots = r#"[{"id":0,"n_ctx":8192,"is_processing":true},{"id":1,"n_ctx":8192,"is_processing":false}]"#;
        assert_eq!(parse_llamacpp_slots(slots).unwrap(), (1, 2));
        assert!(parse_llamacpp_slots("{}").is_err());
    }
}
