//! One model on a pair of real llama.cpp servers (SmolLM2-135M, one thread
//! each, `scripts/llama-server`'s python and model) against the same model
//! on one of them: 24 requests from 4 workers, each routed by the router
//! (which balances the replicas) and sent by the caller. Prints requests per
//! server and completion tokens/s in total.
//!
//!     eval "$(scripts/llama-server env)"; cargo bench --bench replicas
//!
//! On this two-core machine each server gets one core: the pair is two
//! machines' worth of a one-core server, the figure a second GPU box adds.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llmclis::llm::caller::{Breakers, Caller};
use llmclis::llm::{ChatRequest, Message};
use llmclis::net::http_client;
use llmclis::registry::{Mode, Registry};
use llmclis::role::Role;
use llmclis::router::{self, TaskInfo};

const REQUESTS: usize = 24;
const WORKERS: usize = 4;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(python: &str, model: &str, port: u16) -> Server {
    let child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model", model])
        .args(["--model_alias", "SmolLM2-135M-Instruct", "--n_ctx", "2048"])
        .args(["--n_threads", "1", "--host", "127.0.0.1"])
        .args(["--interrupt_requests", "False", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama_cpp.server");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    Server(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn registry(ports: &[u16]) -> Registry {
    let providers: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  - {{ name: s{i}, kind: openai-compatible, flavour: llamacpp, base_url: \"http://127.0.0.1:{p}/v1\", timeout_secs: 120, max_concurrency: 1, local: true }}\n"))
        .collect();
    let names: Vec<String> = (0..ports.len()).map(|i| format!("s{i}")).collect();
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ temperature: 0.0, models: [smollm] }}\n"))
        .collect();
    let yaml = format!(
        "providers:\n{providers}models:\n  - {{ id: smollm, provider: [{}], served_name: SmolLM2-135M-Instruct, context_window: 2048, max_output_tokens: 64 }}\nroles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n",
        names.join(", ")
    );
    Registry::parse(&yaml, "bench.yaml").unwrap()
}

/// Runs the requests; (requests per model, completion tokens, seconds).
fn run(rt: &tokio::runtime::Runtime, ports: &[u16]) -> (BTreeMap<String, usize>, u64, f64) {
    let caller = Arc::new(Caller::new(
        Arc::new(registry(ports)),
        http_client(),
        Arc::new(Breakers::new(3, Duration::from_secs(30))),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let results = rt.block_on(async {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (caller, next) = (caller.clone(), next.clone());
                tokio::spawn(async move {
                    let mut done = Vec::new();
                    while next.fetch_add(1, Ordering::SeqCst) < REQUESTS {
                        let task = TaskInfo {
                            title: "count",
                            prompt_tokens: 30,
                            ..Default::default()
                        };
                        let chain = router::route_role(
                            caller.registry(),
                            Role::Coder,
                            &task,
                            Mode::Offline,
                            caller.as_ref(),
                        )
                        .chain;
                        let req = ChatRequest {
                            messages: vec![Message::user(
                                "List the numbers from 1 to 30, separated by commas.",
                            )],
                            temperature: 0.0,
                            max_tokens: 64,
                            ..Default::default()
                        };
                        let out = caller.call(&chain, &req, None).await.expect("answered");
                        done.push((out.model, out.response.usage.completion_tokens));
                    }
                    done
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut per = BTreeMap::new();
    let mut tokens = 0;
    for (m, t) in results {
        *per.entry(m).or_default() += 1;
        tokens += t;
    }
    (per, tokens, seconds)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (Ok(python), Ok(model)) = (
        std::env::var("LLMCLIS_TEST_LLAMA_PYTHON"),
        std::env::var("LLMCLIS_TEST_SMOLLM_GGUF"),
    ) else {
        eprintln!("replicas: skipped: needs `eval \"$(scripts/llama-server env)\"`");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (pa, pb) = (free_port(), free_port());
    let _a = start(&python, &model, pa);
    let _b = start(&python, &model, pb);
    // Warm both (the first answer loads pages of the model).
    run(&rt, &[pa, pb]);
    let (one, one_tokens, one_s) = run(&rt, &[pa]);
    let (two, two_tokens, two_s) = run(&rt, &[pa, pb]);
    println!(
        "replicas: one server: {REQUESTS} requests in {one_s:.1} s, {:.0} completion tokens/s ({one:?})",
        one_tokens as f64 / one_s
    );
    println!(
        "replicas: two replicas: {REQUESTS} requests in {two_s:.1} s, {:.0} completion tokens/s, requests per server {two:?}; {:.2}x one server",
        two_tokens as f64 / two_s,
        (two_tokens as f64 / two_s) / (one_tokens as f64 / one_s)
    );
}
