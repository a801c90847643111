//! Finding local model servers and Qdrant: the well-known ports (vLLM 8000,
//! TGI 8080, Ollama 11434, llama.cpp 8081, LM Studio 1234, Qdrant 6333) and
//! every local provider in the registry, probed at once with a short
//! timeout. first-run and doctor report what answers and what it serves.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::registry::Registry;

pub use crate::resources::snapshot::serves_name;

/// How long a probe waits: a local server answers in milliseconds, and a
/// closed port refuses at once.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `GET /v1/models`, names under `data[].id`.
    OpenAi,
    /// `GET /api/tags`, names under `models[].name`.
    Ollama,
    /// Qdrant's REST port: its version from `GET /` (finding one).
    Qdrant,
    /// Qdrant's gRPC port, the memory backend's: its health check through
    /// qdrant-client, with the configured key.
    QdrantGrpc,
}

impl Api {
    pub fn is_qdrant(self) -> bool {
        matches!(self, Api::Qdrant | Api::QdrantGrpc)
    }
}

/// The Qdrant server `[memory]` names.
#[derive(Debug, Clone, Copy)]
pub struct QdrantAt<'a> {
    pub url: &'a str,
    /// The variable holding its API key.
    pub key_env: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// What usually listens there, or the registry provider's name.
    pub name: String,
    /// The base URL, without `/v1`.
    pub url: String,
    pub api: Api,
    /// The variable holding the key it wants, if any (never the key).
    #[serde(skip)]
    pub key_env: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub name: String,
    pub url: String,
    pub api: Api,
    pub up: bool,
    /// Models it serves (Qdrant: its version).
    pub serves: Vec<String>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// Registry providers that point at this endpoint.
    pub providers: Vec<String>,
}

/// The well-known local ports.
pub fn well_known() -> Vec<Candidate> {
    let c = |name: &str, port: u16, api| Candidate {
        name: name.into(),
        url: format!("http://127.0.0.1:{port}"),
        api,
        key_env: None,
    };
    vec![
        c("vLLM", 8000, Api::OpenAi),
        c("TGI", 8080, Api::OpenAi),
        c("Ollama", 11434, Api::Ollama),
        c("llama.cpp", 8081, Api::OpenAi),
        c("LM Studio", 1234, Api::OpenAi),
        c("Qdrant", 6333, Api::Qdrant),
    ]
}

/// `http://host:port/v1` → `http://host:port`, and localhost spelt one way.
pub fn root(url: &str) -> String {
    let u = url.trim_end_matches('/');
    let u = u.strip_suffix("/v1").unwrap_or(u);
    u.replace("://localhost", "://127.0.0.1")
}

/// The registry's local providers, and the Qdrant server when given, each
/// endpoint once: what doctor and orchestrate probe.
pub fn configured(registry: &Registry, qdrant: Option<QdrantAt<'_>>) -> Vec<Candidate> {
    add_configured(Vec::new(), registry, qdrant)
}

/// The well-known ports plus `configured`, each endpoint once: what
/// first-run probes.
pub fn candidates(registry: &Registry, qdrant: Option<QdrantAt<'_>>) -> Vec<Candidate> {
    add_configured(well_known(), registry, qdrant)
}

fn add_configured(
    mut out: Vec<Candidate>,
    registry: &Registry,
    qdrant: Option<QdrantAt<'_>>,
) -> Vec<Candidate> {
    let providers = registry
        .providers
        .iter()
        .filter(|p| p.local)
        .map(|p| Candidate {
            name: p.name.clone(),
            url: root(&p.base_url),
            api: if p.is_ollama() {
                Api::Ollama
            } else {
                Api::OpenAi
            },
            key_env: p.api_key_env.clone(),
        });
    let qdrant = qdrant.map(|q| Candidate {
        name: "Qdrant".into(),
        url: root(q.url),
        api: Api::QdrantGrpc,
        key_env: q.key_env.map(String::from),
    });
    for c in providers.chain(qdrant) {
        if !out.iter().any(|o| o.url == c.url) {
            out.push(c);
        }
    }
    out
}

async fn probe(http: &reqwest::Client, c: &Candidate) -> Found {
    let started = Instant::now();
    let key = c.key_env.as_deref().and_then(crate::registry::key_from_env);
    let result = match c.api {
        Api::QdrantGrpc => {
            match tokio::time::timeout(
                PROBE_TIMEOUT,
                crate::memory::vector::server_version(&c.url, key),
            )
            .await
            {
                Ok(Ok(version)) => Ok(vec![format!("Qdrant {version}")]),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer in time".to_string()),
            }
        }
        _ => probe_http(http, c, key).await,
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(serves) => Found {
            name: c.name.clone(),
            url: c.url.clone(),
            api: c.api,
            up: true,
            serves,
            latency_ms,
            error: None,
            providers: vec![],
        },
        Err(e) => Found {
            name: c.name.clone(),
            url: c.url.clone(),
            api: c.api,
            up: false,
            serves: vec![],
            latency_ms,
            error: Some(e),
            providers: vec![],
        },
    }
}

async fn probe_http(
    http: &reqwest::Client,
    c: &Candidate,
    key: Option<String>,
) -> Result<Vec<String>, String> {
    let (path, list, name) = match c.api {
        Api::Ollama => ("/api/tags", "models", "name"),
        Api::Qdrant | Api::QdrantGrpc => ("/", "", "version"),
        Api::OpenAi => ("/v1/models", "data", "id"),
    };
    let mut rb = http.get(format!("{}{path}", c.url)).timeout(PROBE_TIMEOUT);
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let resp = rb.send().await.map_err(|e| {
        if e.is_timeout() {
            "no answer in time".to_string()
        } else if e.is_connect() {
            "nothing listens there".to_string()
        } else {
            e.to_string()
        }
    })?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|_| "not the API expected".to_string())?;
    Ok(if c.api.is_qdrant() {
        let version = v.get(name).and_then(|x| x.as_str()).ok_or("not Qdrant")?;
        vec![format!("Qdrant {version}")]
    } else {
        v.get(list)
            .and_then(|l| l.as_array())
            .ok_or("not the API expected")?
            .iter()
            .filter_map(|m| m.get(name)?.as_str().map(str::to_string))
            .collect()
    })
}

/// Probes every candidate at once; each result names the registry providers
/// that use that endpoint.
pub async fn detect(registry: &Registry, candidates: &[Candidate]) -> Vec<Found> {
    let http = crate::net::http_client();
    let mut found =
        futures_util::future::join_all(candidates.iter().map(|c| probe(&http, c))).await;
    for f in &mut found {
        f.providers = registry
            .providers
            .iter()
            .filter(|p| root(&p.base_url) == f.url)
            .map(|p| p.name.clone())
            .collect();
    }
    found
}

/// API keys: each provider's variable and whether it is set (names only,
/// never values).
pub fn api_keys(registry: &Registry) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for p in &registry.providers {
        if let Some(env) = &p.api_key_env
            && !out.iter().any(|(e, _)| e == env)
        {
            out.push((env.clone(), p.api_key().is_some()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_add_the_registrys_local_providers_once() {
        let r = Registry::builtin();
        let c = candidates(
            &r,
            Some(QdrantAt {
                url: "http://localhost:6334",
                key_env: Some("QDRANT_API_KEY"),
            }),
        );
        // vllm :8000, tgi :8080, ollama :11434, llamacpp :8081 are well
        // known; the memory backend's gRPC port is added, with its key's name.
        assert_eq!(c.len(), well_known().len() + 1);
        let q = c.last().unwrap();
        assert_eq!(
            (q.api, q.url.as_str()),
            (Api::QdrantGrpc, "http://127.0.0.1:6334")
        );
        assert_eq!(q.key_env.as_deref(), Some("QDRANT_API_KEY"));
        assert_eq!(root("http://localhost:8000/v1/"), "http://127.0.0.1:8000");
        let keys = api_keys(&r);
        assert!(keys.iter().any(|(k, _)| k == "OPENAI_API_KEY"));
    }
}
