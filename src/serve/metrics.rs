//! `/metrics` in Prometheus's text format: requests, tokens, latency
//! histograms, errors and fallbacks per provider and model; and the access
//! log, one line per request to the log file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Gateway;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Series {
    requests: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    completion_tokens: u64,
    /// Counts per bucket (not cumulative), then the sum in seconds.
    latency: [u64; BUCKETS.len() + 1],
    latency_sum: f64,
}

#[derive(Default)]
struct Inner {
    /// (provider, model, outcome) → counts.
    calls: BTreeMap<(String, String, String), Series>,
    /// (api, status) → requests.
    http: BTreeMap<(String, u16), u64>,
    fallbacks: BTreeMap<String, u64>,
    /// (client, limit) → requests refused.
    limited: BTreeMap<(String, String), u64>,
    /// client → its answered calls.
    clients: BTreeMap<String, KeySeries>,
}

#[derive(Default)]
struct KeySeries {
    calls: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    completion_tokens: u64,
    cost_usd: f64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

/// One model attempt, as the metrics count it.
pub(crate) struct Observed<'a> {
    pub client: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub outcome: &'a str,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn call(&self, o: &Observed<'_>) {
        self.with(|m| {
            let s = m
                .calls
                .entry((o.provider.into(), o.model.into(), o.outcome.into()))
                .or_default();
            s.requests += 1;
            s.prompt_tokens += o.prompt_tokens;
            s.cached_tokens += o.cached_tokens;
            s.completion_tokens += o.completion_tokens;
            let secs = o.latency_ms as f64 / 1000.0;
            let i = BUCKETS
                .iter()
                .position(|b| secs <= *b)
                .unwrap_or(BUCKETS.len());
            s.latency[i] += 1;
            s.latency_sum += secs;
            if o.outcome == "ok" {
                let k = m.clients.entry(o.client.into()).or_default();
                k.calls += 1;
                k.prompt_tokens += o.prompt_tokens;
                k.cached_tokens += o.cached_tokens;
                k.completion_tokens += o.completion_tokens;
                k.cost_usd += o.cost_usd;
            }
        });
    }

    /// A request that a later model of the chain answered.
    pub fn fallback(&self, model: &str) {
        self.with(|m| *m.fallbacks.entry(model.into()).or_default() += 1);
    }

    /// A request refused for one of its key's limits (rpm, tpm, budget,
    /// model, expired, revoked).
    pub fn limited(&self, client: &str, limit: &str) {
        self.with(|m| *m.limited.entry((client.into(), limit.into())).or_default() += 1);
    }

    fn http(&self, api: &str, status: u16) {
        self.with(|m| *m.http.entry((api.into(), status)).or_default() += 1);
    }

    pub fn text(&self) -> String {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let esc = label_value;
        fn family(out: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        family(
            &mut out,
            "llmclis_http_requests_total",
            "counter",
            "HTTP requests by API route and status.",
        );
        for ((api, status), n) in &m.http {
            let _ = writeln!(
                out,
                "llmclis_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                esc(api)
            );
        }
        family(
            &mut out,
            "llmclis_model_requests_total",
            "counter",
            "Model attempts by provider, model and outcome.",
        );
        for ((p, model, outcome), s) in &m.calls {
            let _ = writeln!(
                out,
                "llmclis_model_requests_total{{provider=\"{}\",model=\"{}\",outcome=\"{}\"}} {}",
                esc(p),
                esc(model),
                esc(outcome),
                s.requests
            );
        }
        family(
            &mut out,
            "llmclis_model_tokens_total",
            "counter",
            "Tokens by provider, model and direction (prompt includes cached).",
        );
        for ((p, model, _), s) in m.calls.iter().filter(|(k, _)| k.2 == "ok") {
            for (dir, n) in [
                ("prompt", s.prompt_tokens),
                ("cached", s.cached_tokens),
                ("completion", s.completion_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "llmclis_model_tokens_total{{provider=\"{}\",model=\"{}\",direction=\"{dir}\"}} {n}",
                    esc(p),
                    esc(model)
                );
            }
        }
        family(
            &mut out,
            "llmclis_model_latency_seconds",
            "histogram",
            "Model attempt latency by provider, model and outcome.",
        );
        for ((p, model, outcome), s) in &m.calls {
            let labels = format!(
                "provider=\"{}\",model=\"{}\",outcome=\"{}\"",
                esc(p),
                esc(model),
                esc(outcome)
            );
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += s.latency[i];
                let _ = writeln!(
                    out,
                    "llmclis_model_latency_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                );
            }
            cumulative += s.latency[BUCKETS.len()];
            let _ = writeln!(
                out,
                "llmclis_model_latency_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}\nllmclis_model_latency_seconds_sum{{{labels}}} {}\nllmclis_model_latency_seconds_count{{{labels}}} {cumulative}",
                s.latency_sum
            );
        }
        family(
            &mut out,
            "llmclis_fallbacks_total",
            "counter",
            "Requests answered by a model after the first of their chain.",
        );
        for (model, n) in &m.fallbacks {
            let _ = writeln!(
                out,
                "llmclis_fallbacks_total{{model=\"{}\"}} {n}",
                esc(model)
            );
        }
        family(
            &mut out,
            "llmclis_limited_total",
            "counter",
            "Requests refused by a client's key, by the limit that refused them.",
        );
        for ((client, limit), n) in &m.limited {
            let _ = writeln!(
                out,
                "llmclis_limited_total{{client=\"{}\",limit=\"{}\"}} {n}",
                esc(client),
                esc(limit)
            );
        }
        family(
            &mut out,
            "llmclis_client_calls_total",
            "counter",
            "Answered model calls by client (key name).",
        );
        for (client, k) in &m.clients {
            let _ = writeln!(
                out,
                "llmclis_client_calls_total{{client=\"{}\"}} {}",
                esc(client),
                k.calls
            );
        }
        family(
            &mut out,
            "llmclis_client_tokens_total",
            "counter",
            "Tokens by client and kind (prompt includes cached).",
        );
        for (client, k) in &m.clients {
            for (kind, n) in [
                ("prompt", k.prompt_tokens),
                ("cached", k.cached_tokens),
                ("completion", k.completion_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "llmclis_client_tokens_total{{client=\"{}\",kind=\"{kind}\"}} {n}",
                    esc(client)
                );
            }
        }
        family(
            &mut out,
            "llmclis_client_cost_usd_total",
            "counter",
            "What each client's calls cost, in USD, by the registry's prices.",
        );
        for (client, k) in &m.clients {
            let _ = writeln!(
                out,
                "llmclis_client_cost_usd_total{{client=\"{}\"}} {}",
                esc(client),
                k.cost_usd
            );
        }
        out
    }
}

/// A label value in Prometheus's text format: backslash, double quote and
/// line feed escaped (a raw newline in a key's name would end the sample).
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) async fn render(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.text(),
    )
}

/// One access-log line per request (to the log file), and the HTTP count.
pub(crate) async fn access_log(
    State(gw): State<Arc<Gateway>>,
    req: Request,
    next: Next,
) -> Response {
    let began = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = route_of(&path);
    let span = gw.trace.request(req.headers(), method.as_str(), route);
    let mut req = req;
    req.extensions_mut().insert(span.parent());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    gw.metrics.http(route, status);
    let client = super::trace::client_of(&response);
    tracing::info!(
        target: "llmclis::access",
        %method,
        path,
        status,
        client,
        ms = began.elapsed().as_millis() as u64,
        "request"
    );
    span.finish(response)
}

/// The route a path is counted under (ids folded, unknown paths as one).
fn route_of(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/models" => "/v1/models",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/messages" => "/v1/messages",
        "/v1/messages/count_tokens" => "/v1/messages/count_tokens",
        "/v1/responses" => "/v1/responses",
        "/health" => "/health",
        "/metrics" => "/metrics",
        p if p.starts_with("/mcp") => "/mcp",
        p if p.starts_with("/v1/responses/") => "/v1/responses/{id}",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_prometheus_exposition_with_cumulative_buckets() {
        let m = Metrics::default();
        for ms in [40, 300, 70_000] {
            m.call(&Observed {
                client: "ci",
                provider: "local",
                model: "m\"1",
                outcome: "ok",
                latency_ms: ms,
                prompt_tokens: 10,
                cached_tokens: 4,
                completion_tokens: 5,
                cost_usd: 0.5,
            });
        }
        m.fallback("m2");
        m.limited("ci", "tpm");
        m.http("/v1/chat/completions", 200);
        let t = m.text();
        assert!(
            t.contains("# TYPE llmclis_model_latency_seconds histogram"),
            "{t}"
        );
        assert!(t.contains(r#"model="m\"1""#), "labels are escaped: {t}");
        assert!(t.contains(r#"le="0.05"} 1"#), "{t}");
        assert!(t.contains(r#"le="0.5"} 2"#), "{t}");
        assert!(t.contains(r#"le="+Inf"} 3"#), "{t}");
        assert!(t.contains(r#"direction="prompt"} 30"#), "{t}");
        assert!(t.contains(r#"direction="cached"} 12"#), "{t}");
        assert!(
            t.contains(r#"llmclis_client_tokens_total{client="ci",kind="cached"} 12"#),
            "{t}"
        );
        assert!(
            t.contains(r#"llmclis_client_cost_usd_total{client="ci"} 1.5"#),
            "{t}"
        );
        assert!(
            t.contains(r#"llmclis_limited_total{client="ci",limit="tpm"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"llmclis_fallbacks_total{model="m2"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"llmclis_http_requests_total{route="/v1/chat/completions",status="200"} 1"#
            ),
            "{t}"
        );
    }

    #[test]
    fn hostile_label_values_stay_inside_their_quotes() {
        let v = super::label_value("evil\"} 1\nfake_metric{a=\"b\\");
        assert_eq!(v, r#"evil\"} 1\nfake_metric{a=\"b\\"#);
        assert!(!v.contains('\n'));
    }
}
