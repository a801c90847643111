//! `llmclis serve` against a zero-latency upstream on loopback, side by
//! side with calling that upstream directly, in one run:
//! - added latency, sequential, non-streaming: p50 and p99 of (through the
//!   gateway) minus (direct), over interleaved requests;
//! - non-streaming throughput with 64 concurrent clients;
//! - 1,000 concurrent streams held open: the gateway's resident memory.
//!
//! The gateway is the release binary as a user runs it (its own process,
//! a client key, every call recorded in SQLite); the upstream and the load
//! run in this process, on the same 2 cores. Prints only what ran.
//!
//!   cargo bench --bench gateway
//!
//! With `-- --peers` (before the three runs above) or `-- --peers-only`
//! (instead of them), it puts LiteLLM's proxy and Portkey's
//! gateway in front of the same upstream and measures one interleaved
//! sequence through all of them (see `peers`); scripts/bench-peers installs
//! them and passes where they are:
//!   LLMCLIS_PEER_LITELLM  the `litellm` executable of a `litellm[proxy]` venv
//!   LLMCLIS_PEER_PORTKEY  `@portkey-ai/gateway`'s build/start-server.js (run
//!                         with `node`) or an executable that takes `--port=N`
//! A peer that is not given is left out; one that fails is reported, not fatal.

// Fixtures in a temp dir are written directly.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;

const ANSWER: &str = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

/// Answers at once; a request that asks to stream and says "hold" gets a
/// chunk every 200 ms for 6 s (a stream kept open).
async fn upstream_chat(body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    // Python's JSON writer (LiteLLM's client) puts a space after the colon.
    if !text.contains("\"stream\":true") && !text.contains("\"stream\": true") {
        return ([("content-type", "application/json")], ANSWER).into_response();
    }
    let n = if text.contains("hold") { 30 } else { 1 };
    let gap = if text.contains("hold") {
        Duration::from_millis(200)
    } else {
        Duration::ZERO
    };
    let chunks = futures_util::stream::iter(0..n).then(move |_| async move {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        Ok::<_, std::convert::Infallible>(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w \"},\"finish_reason\":null}]}\n\n".to_string(),
        )
    });
    let end = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":30}}\n\ndata: [DONE]\n\n".to_string(),
        )
    });
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(chunks.chain(end)),
    )
        .into_response()
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The three runs of the module doc.
    Gateway,
    /// Those and the peers.
    WithPeers,
    /// Only the peers.
    PeersOnly,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = if args.iter().any(|a| a == "--peers-only") {
        Mode::PeersOnly
    } else if args.iter().any(|a| a == "--peers") {
        Mode::WithPeers
    } else {
        Mode::Gateway
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(mode));
}

async fn run(mode: Mode) {
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream_chat))
        .route("/v1/models", get(|| async { r#"{"data":[{"id":"m"}]}"# }))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ models: [m], temperature: 0.2 }}\n"))
        .collect();
    std::fs::write(
        cfg.join("model_registry.yaml"),
        format!(
            "providers:\n  - {{ name: up, kind: openai-compatible, flavour: vllm, base_url: '{upstream}', local: true, max_concurrency: 2000 }}\nmodels:\n  - {{ id: m, provider: up, served_name: m, context_window: 8192, max_output_tokens: 256 }}\nroles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_llmclis");
    let envs = [
        ("LLMCLIS_CONFIG_DIR", cfg.clone()),
        ("LLMCLIS_DATA_DIR", dir.path().join("data")),
        ("LLMCLIS_DB", dir.path().join("llmclis.db")),
    ];
    let key_out = Command::new(bin)
        .envs(envs.iter().cloned())
        .args(["--json", "keys", "add", "bench"])
        .output()
        .unwrap();
    assert!(key_out.status.success(), "{key_out:?}");
    let key = serde_json::from_slice::<serde_json::Value>(&key_out.stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let mut child = Command::new(bin)
        .envs(envs.iter().cloned())
        .env("LLMCLIS_LOG", "warn")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let gateway = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break format!("{}/v1", rest.split_whitespace().next().unwrap());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();
    let _gw = Gateway(child);

    let http = llmclis::net::http_client();
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16});
    let call = |base: &str, key: Option<&str>, body: &serde_json::Value| {
        let mut r = http.post(format!("{base}/chat/completions")).json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };

    // Warm both paths (connections, the gateway's first records).
    for _ in 0..200 {
        call(&upstream, None, &body)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let r = call(&gateway, Some(&key), &body).await.unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    if mode != Mode::Gateway {
        let ours = Target::llmclis(&gateway, &key, pid);
        peers(&http, &upstream, ours, dir.path()).await;
        if mode == Mode::PeersOnly {
            return;
        }
    }
    // 1. Added latency, sequential, interleaved.
    let n = 3000;
    let (mut direct, mut through) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        call(&upstream, None, &body)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        direct.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        call(&gateway, Some(&key), &body)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        through.push(t.elapsed().as_secs_f64() * 1e3);
    }
    direct.sort_by(f64::total_cmp);
    through.sort_by(f64::total_cmp);
    println!(
        "gateway: added latency, sequential non-streaming, {n} interleaved requests: p50 {:.3} ms (direct {:.3}, through {:.3}), p99 {:.3} ms (direct {:.3}, through {:.3})",
        percentile(&through, 0.5) - percentile(&direct, 0.5),
        percentile(&direct, 0.5),
        percentile(&through, 0.5),
        percentile(&through, 0.99) - percentile(&direct, 0.99),
        percentile(&direct, 0.99),
        percentile(&through, 0.99),
    );

    // 2. Throughput, 64 concurrent clients for 10 s.
    for (label, base, k) in [
        ("direct", upstream.clone(), None),
        ("through the gateway", gateway.clone(), Some(key.clone())),
    ] {
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + Duration::from_secs(10);
        let workers: Vec<_> = (0..64)
            .map(|_| {
                let (http, base, k, body, done, failed) = (
                    http.clone(),
                    base.clone(),
                    k.clone(),
                    body.clone(),
                    done.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    while Instant::now() < until {
                        let mut r = http.post(format!("{base}/chat/completions")).json(&body);
                        if let Some(k) = &k {
                            r = r.bearer_auth(k);
                        }
                        match r.send().await {
                            Ok(r) if r.status() == 200 => {
                                let _ = r.bytes().await;
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        let began = Instant::now();
        for w in workers {
            w.await.unwrap();
        }
        let secs = began.elapsed().as_secs_f64();
        println!(
            "gateway: throughput, non-streaming, 64 concurrent clients, 10 s, {label}: {:.0} requests/s ({} failed)",
            done.load(Ordering::Relaxed) as f64 / secs,
            failed.load(Ordering::Relaxed)
        );
    }

    // 3. 1,000 streams held open at once.
    let idle = rss_mb(pid);
    let hold = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hold"}], "max_tokens": 64});
    let opened = Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> = (0..1000)
        .map(|_| {
            let (http, gateway, key, hold, opened) = (
                http.clone(),
                gateway.clone(),
                key.clone(),
                hold.clone(),
                opened.clone(),
            );
            tokio::spawn(async move {
                let mut r = http
                    .post(format!("{gateway}/chat/completions"))
                    .bearer_auth(&key)
                    .json(&hold)
                    .send()
                    .await
                    .ok()?;
                let mut seen = String::new();
                while !seen.contains("\"w \"") {
                    seen.push_str(&String::from_utf8_lossy(&r.chunk().await.ok()??));
                }
                opened.fetch_add(1, Ordering::Relaxed);
                let rest = r.text().await.ok()?;
                Some(rest.contains("[DONE]"))
            })
        })
        .collect();
    let began = Instant::now();
    while opened.load(Ordering::Relaxed) < 1000 && began.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = opened.load(Ordering::Relaxed);
    let peak = rss_mb(pid);
    let mut whole = 0;
    for s in streams {
        if s.await.unwrap() == Some(true) {
            whole += 1;
        }
    }
    println!(
        "gateway: {held} concurrent streams open at once: resident memory {peak:.1} MB (idle after the runs above: {idle:.1} MB); {whole} of 1000 ended whole"
    );
}

/// Somewhere a chat completion can be sent, and how it is addressed there.
struct Target {
    name: String,
    /// Ends in `/v1`.
    base: String,
    bearer: Option<String>,
    headers: Vec<(&'static str, String)>,
    /// A peer's own process and where its stderr went (its stdout is
    /// beside it, with the extension `out`).
    process: Option<(Gateway, std::path::PathBuf)>,
    /// Its process, stopped while others are timed (`Turn`).
    pid: Option<u32>,
    /// Added milliseconds per measured round: [plain, streamed][after
    /// idle, in use].
    added: [[Vec<f64>; 2]; 2],
    /// The first failure (round, what the client saw), plain and streamed;
    /// a kind that failed once is not sent there again.
    failed: [Option<(usize, String)>; 2],
}

impl Target {
    fn new(name: String, base: String, bearer: Option<String>) -> Self {
        Self {
            name,
            base,
            bearer,
            headers: Vec::new(),
            process: None,
            pid: None,
            added: Default::default(),
            failed: [None, None],
        }
    }

    fn llmclis(gateway: &str, key: &str, pid: u32) -> Self {
        let mut t = Self::new("llmclis".into(), gateway.into(), Some(key.into()));
        t.pid = Some(pid);
        t
    }

    /// The first line of the peer's stderr (else stdout) that names an error.
    fn log_error(&self) -> Option<String> {
        let (_, log) = self.process.as_ref()?;
        [log.clone(), log.with_extension("out")]
            .iter()
            .find_map(|f| first_error_line(&std::fs::read_to_string(f).ok()?))
    }
}

/// Lines as a terminal would end them (a spinner redraws with `\r`).
fn log_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(['\n', '\r'])
        .map(strip_ansi)
        .filter(|l| !l.trim().is_empty())
}

fn first_error_line(text: &str) -> Option<String> {
    log_lines(text)
        .find(|l| l.contains("Error") || l.contains("error") || l.contains("ERROR"))
        .map(|l| l.trim().chars().take(240).collect())
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a peer with its stderr in `log` and its stdout beside it, and
/// waits (up to `within`) until `ready` answers 200.
async fn start_peer(
    http: &reqwest::Client,
    mut cmd: Command,
    log: std::path::PathBuf,
    ready: &str,
    within: Duration,
) -> Result<Gateway, String> {
    let out = std::fs::File::create(log.with_extension("out")).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{cmd:?} did not start: {e}"))?;
    let mut peer = Gateway(child);
    let began = Instant::now();
    loop {
        if let Ok(Some(status)) = peer.0.try_wait() {
            let said = std::fs::read_to_string(&log).unwrap_or_default()
                + &std::fs::read_to_string(log.with_extension("out")).unwrap_or_default();
            // A Python traceback ends with the exception; what LiteLLM
            // prints after it is the fix, so the first line naming an
            // error that is not a traceback's header.
            let why = log_lines(&said)
                .find(|l| {
                    (l.contains("Error:") || l.contains("error:")) && !l.contains("Traceback")
                })
                .or_else(|| log_lines(&said).last())
                .unwrap_or_default();
            return Err(format!(
                "exited at start ({status}): {}",
                why.trim().chars().take(240).collect::<String>()
            ));
        }
        if let Ok(r) = http.get(ready).send().await
            && r.status() == 200
        {
            return Ok(peer);
        }
        if began.elapsed() > within {
            return Err(format!("{ready} did not answer within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// LiteLLM's proxy, as a plain proxy: one model `m` that is the upstream as
/// an OpenAI-compatible endpoint; a master key (it refuses to start
/// without one; requests carry it, as llmclis's carry its key); no
/// database (no DATABASE_URL: no spend logs, no virtual keys); no
/// callbacks; message logging off; spend and error logs off;
/// LITELLM_LOG=ERROR (uvicorn's per-request access log off, as llmclis
/// runs with LLMCLIS_LOG=warn); the bundled model cost map
/// (LITELLM_LOCAL_MODEL_COST_MAP: no fetch at start).
async fn litellm(
    http: &reqwest::Client,
    exe: &str,
    upstream: &str,
    dir: &std::path::Path,
) -> Result<Target, String> {
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_base: {upstream}\n      api_key: sk-bench\nlitellm_settings:\n  set_verbose: false\n  json_logs: false\n  turn_off_message_logging: true\n  callbacks: []\n  success_callback: []\n  failure_callback: []\ngeneral_settings:\n  disable_spend_logs: true\n  disable_error_logs: true\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let master = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("sk-bench-{:016x}{:016x}", h.finish(), std::process::id())
    };
    let port = free_port();
    let mut cmd = Command::new(exe);
    cmd.args(["--config", &config.to_string_lossy(), "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--num_workers", "1"])
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_MASTER_KEY", &master)
        .env_remove("DATABASE_URL");
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join("litellm.log");
    let peer = start_peer(
        http,
        cmd,
        log.clone(),
        &format!("{base}/health/liveliness"),
        Duration::from_secs(180),
    )
    .await?;
    // Its version, from the venv the executable is in.
    let python = std::path::Path::new(exe).with_file_name("python");
    let version = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .map_or_else(String::new, |v| format!(" {v}"));
    let mut t = Target::new(
        format!("LiteLLM proxy{version}"),
        format!("{base}/v1"),
        Some(master),
    );
    t.pid = Some(peer.0.id());
    t.process = Some((peer, log));
    Ok(t)
}

/// Portkey's gateway (its Node server, `--headless`: no UI, no log stream
/// page), told per request by its headers to call the upstream as OpenAI.
async fn portkey(
    http: &reqwest::Client,
    entry: &str,
    upstream: &str,
    dir: &std::path::Path,
) -> Result<Target, String> {
    let port = free_port();
    let mut cmd = if entry.ends_with(".js") {
        let mut c = Command::new("node");
        c.arg(entry);
        c
    } else {
        Command::new(entry)
    };
    cmd.args([format!("--port={port}"), "--headless".into()]);
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join("portkey.log");
    let peer = start_peer(http, cmd, log.clone(), &base, Duration::from_secs(60)).await?;
    let version = std::path::Path::new(entry)
        .parent()
        .and_then(|build| std::fs::read_to_string(build.with_file_name("package.json")).ok())
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| Some(format!(" {}", p["version"].as_str()?)))
        .unwrap_or_default();
    let mut t = Target::new(
        format!("Portkey gateway{version}"),
        format!("{base}/v1"),
        Some("sk-bench".into()),
    );
    t.headers = vec![
        ("x-portkey-provider", "openai".into()),
        ("x-portkey-custom-host", upstream.into()),
    ];
    t.pid = Some(peer.0.id());
    t.process = Some((peer, log));
    Ok(t)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// One whole call: milliseconds until the last byte, or what went wrong
/// (not 200, not an answer, a stream that did not end with `[DONE]`).
async fn once(
    http: &reqwest::Client,
    t: &Target,
    body: &serde_json::Value,
    stream: bool,
) -> Result<f64, String> {
    let began = Instant::now();
    let call = async {
        let mut r = http.post(format!("{}/chat/completions", t.base)).json(body);
        if let Some(k) = &t.bearer {
            r = r.bearer_auth(k);
        }
        for (name, value) in &t.headers {
            r = r.header(*name, value);
        }
        let mut resp = r.send().await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!(
                "HTTP {status}: {}",
                text.lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(240)
                    .collect::<String>()
            ));
        }
        let mut got = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| error_chain(&e))? {
            got.extend_from_slice(&chunk);
        }
        Ok(got)
    };
    let got = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| "no whole answer within 10 s".to_string())??;
    let ms = began.elapsed().as_secs_f64() * 1e3;
    let text = String::from_utf8_lossy(&got);
    if stream && !text.contains("data: [DONE]") {
        return Err(format!(
            "the stream ended without `data: [DONE]` after {} bytes",
            got.len()
        ));
    }
    if !stream && !text.contains("\"choices\"") {
        return Err(format!(
            "not a chat completion: {}",
            text.chars().take(240).collect::<String>()
        ));
    }
    Ok(ms)
}

/// A pause after each call through a target, untimed and before the
/// target is stopped: its post-call work (llmclis's record commit, which
/// waits up to 10 ms for company; LiteLLM's post-call hooks) runs then,
/// while nothing is timed.
const SETTLE: Duration = Duration::from_millis(15);

/// A process that is measured alone: stopped (SIGSTOP) while anything else
/// is timed and continued (SIGCONT) for its own calls, so on these 2 cores
/// one gateway's background work (a Python event loop's housekeeping,
/// Node's collector, a record commit) is never charged to another.
struct Turn(Option<nix::unistd::Pid>);

impl Turn {
    fn of(t: &Target) -> Turn {
        Turn(t.pid.map(|p| nix::unistd::Pid::from_raw(p as i32)))
    }

    fn signal(&self, s: nix::sys::signal::Signal) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(pid, s);
        }
    }

    fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Continued, and a moment to be back in its wait for work.
    async fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// llmclis and each peer given in the environment, in front of the same
/// upstream, in one interleaved sequence. Each round, for plain and then
/// streamed requests (`stream: true`, read to `[DONE]`), each target has a
/// turn (their order turning by one each round, so no one always follows
/// the same neighbour): it is continued, measured as two pairs, each one
/// request straight to the upstream then one through the target, and
/// stopped after `SETTLE` (`Turn`: each runs alone). The first pair finds
/// the target idle since its last turn ("after idle": its threads asleep,
/// its caches cold, as a lightly used gateway is); the second finds it
/// just used ("in use", as a gateway under steady traffic is). Added
/// latency is (through) − (direct) within a pair.
async fn peers(http: &reqwest::Client, upstream: &str, ours: Target, dir: &std::path::Path) {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "none".into());
    println!("gateway peers: node {node}");
    let mut targets = vec![ours];
    if let Ok(exe) = std::env::var("LLMCLIS_PEER_LITELLM") {
        match litellm(http, &exe, upstream, dir).await {
            Ok(t) => targets.push(t),
            Err(e) => println!("gateway peers: LiteLLM proxy ({exe}) did not start: {e}"),
        }
    } else {
        println!("gateway peers: LiteLLM proxy left out (LLMCLIS_PEER_LITELLM not set)");
    }
    if let Ok(entry) = std::env::var("LLMCLIS_PEER_PORTKEY") {
        match portkey(http, &entry, upstream, dir).await {
            Ok(t) => targets.push(t),
            Err(e) => println!("gateway peers: Portkey gateway ({entry}) did not start: {e}"),
        }
    } else {
        println!("gateway peers: Portkey gateway left out (LLMCLIS_PEER_PORTKEY not set)");
    }
    let direct = Target::new("direct".into(), upstream.into(), None);
    let plain = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16});
    let mut streamed = plain.clone();
    streamed["stream"] = true.into();
    let (warm, n) = (50, 1000);
    // [kind][state]: state 0 after idle, 1 in use.
    let mut direct_ms: [[Vec<f64>; 2]; 2] = Default::default();
    for t in &targets {
        Turn::of(t).stop();
    }
    for round in 0..warm + n {
        for (kind, body) in [&plain, &streamed].into_iter().enumerate() {
            let count = targets.len();
            for i in 0..count {
                let t = &mut targets[(i + round) % count];
                if t.failed[kind].is_some() {
                    continue;
                }
                let turn = Turn::of(t);
                turn.resume().await;
                for (state, directs) in direct_ms[kind].iter_mut().enumerate() {
                    let d = once(http, &direct, body, kind == 1)
                        .await
                        .unwrap_or_else(|e| panic!("the upstream itself failed: {e}"));
                    if t.failed[kind].is_some() {
                        break;
                    }
                    match once(http, t, body, kind == 1).await {
                        Ok(ms) if round >= warm => {
                            t.added[kind][state].push(ms - d);
                            directs.push(d);
                        }
                        Ok(_) => {}
                        Err(e) => t.failed[kind] = Some((round, e)),
                    }
                }
                tokio::time::sleep(SETTLE).await;
                turn.stop();
            }
        }
    }
    for t in &targets {
        Turn::of(t).signal(nix::sys::signal::Signal::SIGCONT);
    }
    println!(
        "gateway peers: {n} interleaved rounds against one zero-latency upstream, after {warm} warm-up rounds; in each, plain then streamed, each target's turn (order turning; the others stopped with SIGSTOP) is two pairs of (direct, through the target), then {} ms before it is stopped; \"after idle\" is its first pair, \"in use\" its second; added = through − direct in the same pair",
        SETTLE.as_millis()
    );
    for (kind, label) in ["plain", "streamed"].into_iter().enumerate() {
        for (state, when) in ["after idle", "in use"].into_iter().enumerate() {
            let label = format!("{label}, {when}");
            direct_ms[kind][state].sort_by(f64::total_cmp);
            if !direct_ms[kind][state].is_empty() {
                println!(
                    "gateway peers: {label:<20}  direct                  p50 {:7.3} ms   p99 {:7.3} ms",
                    percentile(&direct_ms[kind][state], 0.5),
                    percentile(&direct_ms[kind][state], 0.99)
                );
            }
            for t in &mut targets {
                t.added[kind][state].sort_by(f64::total_cmp);
            }
            // targets[0] is llmclis.
            let ours_p50 = targets[0].failed[kind]
                .is_none()
                .then(|| percentile(&targets[0].added[kind][state], 0.5));
            for (i, t) in targets.iter().enumerate() {
                if let Some((round, e)) = &t.failed[kind] {
                    if state == 1 {
                        continue;
                    }
                    let log = t
                        .log_error()
                        .map(|l| format!("; its log: {l}"))
                        .unwrap_or_default();
                    println!(
                        "gateway peers: {label:<20}  {:<22}  failing (first at round {}, {} measured before): {e}{log}",
                        t.name,
                        round + 1,
                        t.added[kind][state].len()
                    );
                    continue;
                }
                let p50 = percentile(&t.added[kind][state], 0.5);
                let ratio = match ours_p50 {
                    Some(o) if i > 0 => format!("   {:.1}× llmclis's added p50", p50 / o),
                    _ => String::new(),
                };
                println!(
                    "gateway peers: {label:<20}  {:<22}  added p50 {p50:7.3} ms   p99 {:7.3} ms{ratio}",
                    t.name,
                    percentile(&t.added[kind][state], 0.99)
                );
            }
        }
    }
}
