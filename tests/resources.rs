//! Resource-aware model management through the binary: `models status`
//! reads GPUs (recorded `nvidia-smi` outputs on PATH), RAM and each
//! scripted server's own answers; `models load|unload` speak each
//! server's protocol; `route explain` gives the memory reasons; a hung or
//! garbled server is reported, never fatal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::fake_servers::{Fake, Kind};
use crate::support::{Env, Run};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nvidia-smi");

struct Rig {
    env: Env,
    bin: PathBuf,
    ollama: Fake,
    vllm: Fake,
    tgi: Fake,
    llama: Fake,
}

fn registry(ollama: &str, vllm: &str, tgi: &str, llama: &str) -> String {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ temperature: 0.3, models: [coder, coder-tgi, qwen-7b, small, other-7b] }}\n"))
        .collect();
    format!(
        "providers:
  - {{ name: ollama, kind: openai-compatible, flavour: ollama, base_url: {ollama}/v1, local: true, device: gpu:0 }}
  - {{ name: vllm, kind: openai-compatible, flavour: vllm, base_url: {vllm}/v1, local: true, device: gpu:0 }}
  - {{ name: tgi, kind: openai-compatible, flavour: tgi, base_url: {tgi}/v1, local: true, device: gpu:1 }}
  - {{ name: llamacpp, kind: openai-compatible, flavour: llamacpp, base_url: {llama}/v1, local: true, device: cpu }}
models:
  - {{ id: qwen-7b, provider: ollama, served_name: 'qwen2.5:7b-instruct', context_window: 32768, max_output_tokens: 4096,
      memory: {{ weights_gib: 4.4, kv_gib_per_1k: 0.0534, overhead_gib: 0.5 }} }}
  - {{ id: other-7b, provider: ollama, served_name: 'mistral:7b', context_window: 32768, max_output_tokens: 4096 }}
  - {{ id: coder, provider: vllm, served_name: Qwen/Coder, context_window: 32768, max_output_tokens: 4096,
      capabilities: [json_schema], memory: {{ weights_gib: 18.0, kv_gib: 4.0, overhead_gib: 1.5 }} }}
  - {{ id: coder-tgi, provider: tgi, served_name: Qwen/Coder, context_window: 32768, max_output_tokens: 4096,
      memory: {{ weights_gib: 18.0, kv_gib: 4.0, overhead_gib: 1.5 }} }}
  - {{ id: small, provider: llamacpp, served_name: smol, context_window: 2048, max_output_tokens: 512,
      memory: {{ weights_gib: 0.1 }} }}
  - {{ id: small2, provider: llamacpp, served_name: smol2, context_window: 2048, max_output_tokens: 512,
      memory: {{ weights_gib: 0.1 }} }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"
    )
}

/// A directory with an `nvidia-smi` that prints `fixture` and exits
/// `code`; None for a PATH without one.
fn smi(dir: &Path, fixture: Option<(&str, i32)>) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("nvidia-smi");
    let _ = std::fs::remove_file(&path);
    if let Some((name, code)) = fixture {
        let script = format!("#!/bin/sh\ncat '{FIXTURES}/{name}'\nexit {code}\n");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

impl Rig {
    async fn start(ollama: Kind, vllm: Kind) -> Rig {
        let ollama = Fake::start(ollama, &["qwen2.5:7b-instruct"], &[]).await;
        let vllm = Fake::start(vllm, &["Qwen/Coder"], &["Qwen/Coder"]).await;
        let tgi = Fake::start(Kind::Tgi, &["Qwen/Coder"], &["Qwen/Coder"]).await;
        let llama = Fake::start(Kind::LlamaRouter, &["smol", "smol2"], &[]).await;
        let env = Env::new();
        std::fs::create_dir_all(env.config_dir()).unwrap();
        std::fs::write(
            env.config_dir().join("model_registry.yaml"),
            registry(&ollama.url, &vllm.url, &tgi.url, &llama.url),
        )
        .unwrap();
        let bin = smi(env.dir.path(), Some(("one.csv", 0)));
        Rig {
            env,
            bin,
            ollama,
            vllm,
            tgi,
            llama,
        }
    }

    /// The binary, off the runtime's threads (the fakes run on them).
    async fn run(&self, args: &[&str]) -> Run {
        let mut c = self.env.command();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path).env("LLMCLIS_NVML", "0").args(args);
        tokio::task::spawn_blocking(move || Run::from(c.output().unwrap()))
            .await
            .unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let r = self.run(&all).await;
        r.assert_ok();
        serde_json::from_str(&r.stdout).unwrap()
    }
}

fn model<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {status}"))
}

fn server<'a>(status: &'a Value, provider: &str) -> &'a Value {
    status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == provider)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_status_reads_the_gpu_and_each_servers_own_answers() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    {
        let mut v = rig.vllm.state.lock().unwrap();
        v.running = 3;
        v.waiting = 2;
        v.sleeping = true;
        let mut t = rig.tgi.state.lock().unwrap();
        t.waiting = 5;
        t.running = 1;
    }
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(s["gpu_source"], "nvidia-smi");
    let gpu0 = &s["devices"][0];
    assert_eq!(gpu0["device"], "gpu:0");
    assert_eq!(gpu0["total"], 32607u64 << 20);
    assert_eq!(gpu0["name"], "NVIDIA GeForce RTX 5090");
    // vLLM: its metrics, and asleep: it holds no model.
    let v = server(&s, "vllm");
    assert_eq!(
        (v["running"].as_u64(), v["waiting"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(v["kv_cache_usage"], 0.42);
    assert_eq!(v["sleeping"], true);
    assert_eq!(v["loaded"], serde_json::json!([]));
    // TGI's queue and batch from its label-less gauges.
    let t = server(&s, "tgi");
    assert_eq!(
        (t["waiting"].as_u64(), t["running"].as_u64()),
        (Some(5), Some(1))
    );
    // 6,253 MiB free on GPU 0: the 7B (6.6 GiB at its window) does not
    // fit; the 32B's vLLM is asleep; TGI holds the 32B on GPU 1.
    assert_eq!(model(&s, "qwen-7b")["fit"], "does_not_fit");
    assert_eq!(model(&s, "coder")["fit"], "asleep");
    assert_eq!(model(&s, "coder-tgi")["fit"], "loaded");
    assert_eq!(model(&s, "small")["fit"], "fits", "RAM holds 0.1 GiB");
    assert_eq!(model(&s, "other-7b")["fit"], "unknown", "no memory figure");
    // What the router makes of it.
    rig.env.run(&["project", "add", "p"]).assert_ok();
    rig.env
        .run(&["task", "add", "--project-id", "1", "Fix the parser"])
        .assert_ok();
    let r = rig.run(&["route", "explain", "--task", "1"]).await;
    r.assert_ok();
    for needle in [
        "skipped coder: its server is asleep; `llmclis models load` wakes it",
        "skipped qwen-7b: not loaded, and needs 6.6 GiB, 6.1 GiB free on GPU 0",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    assert!(
        r.stdout
            .contains("Models, in order: coder-tgi → small → other-7b"),
        "{}",
        r.stdout
    );
    // For people: a bar per device, each server's state.
    let r = rig.run(&["models", "status"]).await;
    r.assert_ok();
    for needle in [
        "GPU 0  [",
        "25.4 GiB / 31.8 GiB used",
        "vllm      GPU 0  asleep (holds no model); 3 running, 2 waiting, KV cache 42%",
        "qwen-7b   ",
        "does not fit: needs 6.6 GiB, 6.1 GiB free on GPU 0",
        "small      llamacpp   not loaded, fits: needs 0.1 GiB",
        "other-7b",
        "unknown: no memory figure in the registry",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} in\n{}", r.stdout);
    }
    // Once vLLM wakes, a loaded 32B goes first again.
    rig.vllm.state.lock().unwrap().sleeping = false;
    let r = rig.run(&["route", "explain", "--task", "1"]).await;
    assert!(
        r.stdout.contains("Models, in order: coder → coder-tgi"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_loads_and_unloads_the_way_ollama_does() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    let r = rig
        .run(&["models", "load", "qwen-7b", "--keep-alive", "10m"])
        .await;
    r.assert_ok();
    assert!(
        r.stdout
            .contains("qwen-7b loaded on ollama (POST /api/generate"),
        "{}",
        r.stdout
    );
    let body = &rig.ollama.bodies("/api/generate")[0];
    assert_eq!(body["keep_alive"], "10m");
    // The window the calls use, or Ollama would reload it on the first call.
    assert_eq!(body["options"]["num_ctx"], 32768);
    assert!(body.get("prompt").is_none(), "a preload has no prompt");
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(model(&s, "qwen-7b")["fit"], "loaded");
    assert_eq!(server(&s, "ollama")["loaded"][0]["size_vram"], 7u64 << 30);
    rig.run(&["models", "unload", "qwen-7b"]).await.assert_ok();
    assert_eq!(rig.ollama.bodies("/api/generate")[1]["keep_alive"], 0);
    // For ever: a number, as Ollama reads it (a string needs a unit).
    rig.run(&["models", "load", "qwen-7b", "--keep-alive", "-1"])
        .await
        .assert_ok();
    assert_eq!(rig.ollama.bodies("/api/generate")[2]["keep_alive"], -1);
    rig.run(&["models", "unload", "qwen-7b"]).await.assert_ok();
    let s = rig.json(&["models", "status"]).await;
    assert_ne!(model(&s, "qwen-7b")["fit"], "loaded");
    // A model Ollama has not pulled: its 404, and what to do.
    rig.run(&["models", "load", "other-7b"]).await.assert_err(
        1,
        &[
            "Ollama has no model \"mistral:7b\"",
            "ollama pull mistral:7b",
        ],
    );
    // Out of memory: Ollama's own words.
    rig.ollama.state.lock().unwrap().oom = true;
    rig.run(&["models", "load", "qwen-7b"]).await.assert_err(
        1,
        &[
            "could not load qwen2.5:7b-instruct (500)",
            "unable to load full model on GPU",
        ],
    );
    // Usage mistakes are refused before any request.
    let before = rig.ollama.paths().len();
    rig.run(&["models", "load", "nope"])
        .await
        .assert_err(2, &["no model \"nope\""]);
    assert_eq!(rig.ollama.paths().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_sleeps_and_wakes_in_sleep_mode_and_says_how_to_start_it_otherwise() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    rig.run(&["models", "unload", "coder"]).await.assert_ok();
    assert!(
        rig.vllm
            .paths()
            .contains(&"POST /sleep?level=1".to_string())
    );
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(server(&s, "vllm")["sleeping"], true);
    assert_eq!(model(&s, "coder")["fit"], "asleep");
    rig.run(&["models", "load", "coder"]).await.assert_ok();
    assert!(rig.vllm.paths().contains(&"POST /wake_up".to_string()));
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(model(&s, "coder")["fit"], "loaded");

    let plain = Rig::start(Kind::Ollama, Kind::Vllm(false)).await;
    plain
        .run(&["models", "unload", "coder"])
        .await
        .assert_err(1, &["VLLM_SERVER_DEV_MODE=1", "--enable-sleep-mode"]);
    // Without the routes the model is simply loaded; nothing is asleep.
    let s = plain.json(&["models", "status"]).await;
    assert_eq!(server(&s, "vllm")["sleeping"], Value::Null);
    assert_eq!(model(&s, "coder")["fit"], "loaded");
    // TGI cannot: it says how its container is started and stopped.
    plain
        .run(&["models", "unload", "coder-tgi"])
        .await
        .assert_err(1, &["TGI", "cannot unload", "docker compose stop tgi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_cpp_router_mode_loads_waits_until_ready_and_unloads() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    let r = rig.run(&["models", "load", "small"]).await;
    r.assert_ok();
    assert!(
        r.stdout
            .contains("small loaded on llamacpp (POST /models/load"),
        "{}",
        r.stdout
    );
    // The router answers at once; the command waited for `loaded`.
    assert_eq!(rig.llama.state.lock().unwrap().loaded, ["smol"]);
    // One of its models loaded is not all of them.
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(model(&s, "small")["fit"], "loaded");
    assert_eq!(model(&s, "small2")["fit"], "fits");
    assert_eq!(server(&s, "llamacpp")["router_mode"], true);
    let r = rig.run(&["models", "load", "small"]).await;
    assert!(
        r.stdout.contains("small was already loaded"),
        "{}",
        r.stdout
    );
    rig.run(&["models", "unload", "small"]).await.assert_ok();
    let r = rig.run(&["models", "unload", "small"]).await;
    assert!(r.stdout.contains("small was not loaded"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_garbled_server_is_reported_within_the_probe_timeout() {
    let rig = Rig::start(Kind::GarbageOllama, Kind::Hang).await;
    let began = Instant::now();
    let s = rig.json(&["models", "status"]).await;
    let took = began.elapsed();
    // Probes run at once, each within 1.5 s: a hung server costs that once.
    assert!(took < Duration::from_secs(5), "{took:?}");
    let v = server(&s, "vllm");
    assert_eq!(v["up"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1500 ms"),
        "{v}"
    );
    let o = server(&s, "ollama");
    assert_eq!(o["up"], true);
    assert!(
        o["notes"][0]
            .as_str()
            .unwrap()
            .contains("/api/ps: not JSON"),
        "{o}"
    );
    assert!(
        model(&s, "coder")["why"]
            .as_str()
            .unwrap()
            .contains("not answering")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_nvidia_smi_outputs_one_several_mig_no_driver_and_none() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    let dir = rig.env.dir.path();
    smi(dir, Some(("several.csv", 0)));
    let s = rig.json(&["models", "status"]).await;
    let gpus: Vec<&Value> = s["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["device"].as_str().unwrap().starts_with("gpu"))
        .collect();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[1]["free"], 31616u64 << 20);
    // GPU 1 has room: TGI's model there is loaded, and GPU 0's 7B fits
    // nowhere but GPU 0 (3,132 MiB free).
    assert_eq!(model(&s, "qwen-7b")["fit"], "does_not_fit");

    smi(dir, Some(("mig.csv", 0)));
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(s["devices"][0]["name"], "NVIDIA A100-SXM4-80GB (MIG)");
    assert_eq!(model(&s, "qwen-7b")["fit"], "unknown");

    smi(dir, Some(("no-driver.txt", 9)));
    let s = rig.json(&["models", "status"]).await;
    assert_eq!(s["gpu_source"], "none");
    let note = s["gpu_note"].as_str().unwrap();
    assert!(
        note.contains("no NVIDIA GPU seen")
            && note.contains("NVIDIA-SMI has failed")
            && note.contains("9"),
        "{note}"
    );

    smi(dir, None);
    let r = rig.run(&["models", "status"]).await;
    r.assert_ok();
    assert!(r.stdout.contains("nvidia-smi not found"), "{}", r.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_make_room_unloads_the_idle_7b_and_wakes_the_32b() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    smi(rig.env.dir.path(), Some(("room.csv", 0)));
    rig.ollama.state.lock().unwrap().loaded = vec!["qwen2.5:7b-instruct".into()];
    rig.vllm.state.lock().unwrap().sleeping = true;
    std::fs::write(
        rig.env.config_dir().join("config.toml"),
        "[orchestrator]\nmake_room = true\n",
    )
    .unwrap();
    rig.env.run(&["project", "add", "p"]).assert_ok();
    rig.env
        .run(&["task", "add", "--project-id", "1", "Fix the parser"])
        .assert_ok();
    // 20 GiB free, the 32B needs 23.5: the idle 7B (7 GiB) makes room.
    let r = rig
        .run(&[
            "--json",
            "orchestrate",
            "--project-id",
            "1",
            "--max-steps",
            "1",
        ])
        .await;
    let events: Vec<Value> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let made = events
        .iter()
        .find(|e| e["event"] == "made_room")
        .unwrap_or_else(|| panic!("no made_room in\n{}\n{}", r.stdout, r.stderr));
    assert_eq!(made["unloaded"], serde_json::json!(["qwen-7b"]));
    assert_eq!(made["loaded"], "coder");
    assert_eq!(made["error"], Value::Null);
    assert_eq!(rig.ollama.bodies("/api/generate")[0]["keep_alive"], 0);
    assert!(rig.vllm.paths().contains(&"POST /wake_up".to_string()));
    // The step then starts on the woken 32B: asleep, it would be skipped,
    // so the look after waking saw it awake.
    let started = events
        .iter()
        .find(|e| e["event"] == "step_started")
        .unwrap();
    assert_eq!(started["chain"][0], "coder", "{started}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_whether_the_local_stack_fits_its_gpu_and_what_to_change() {
    let rig = Rig::start(Kind::Ollama, Kind::Vllm(true)).await;
    let find = |report: &Value, name: &str| -> Value {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name:?} in {report}"))
    };
    let r = rig.run(&["--json", "doctor"]).await;
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    // vLLM's 23.5 GiB and Ollama's largest (6.6 GiB) on a 31.8 GiB card.
    let gpu0 = find(&report, "memory on GPU 0");
    assert_eq!(gpu0["level"], "ok", "{gpu0}");
    assert!(
        gpu0["detail"]
            .as_str()
            .unwrap()
            .contains("ollama 6.6 GiB + vllm 23.5 GiB = 30.1 GiB of 31.8 GiB"),
        "{gpu0}"
    );
    // GPU 1 is not seen: said, not failed.
    assert_eq!(find(&report, "memory on GPU 1")["level"], "info");
    // TGI on the same card as vLLM: too much, and which to stop.
    let yaml = std::fs::read_to_string(rig.env.config_dir().join("model_registry.yaml"))
        .unwrap()
        .replace("device: gpu:1", "device: gpu:0");
    std::fs::write(rig.env.config_dir().join("model_registry.yaml"), yaml).unwrap();
    let r = rig.run(&["--json", "doctor"]).await;
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let gpu0 = find(&report, "memory on GPU 0");
    assert_eq!(gpu0["level"], "warning", "{gpu0}");
    assert!(
        gpu0["fix"]
            .as_str()
            .unwrap()
            .contains("docker compose stop tgi"),
        "{gpu0}"
    );
}

/// llama-cpp-python stops the answer it is streaming when another request
/// comes in: the background watch asks it once, then only connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_llama_cpp_python_server_is_asked_once_then_only_connected_to() {
    let py = Fake::start(Kind::LlamaPython, &["smol"], &[]).await;
    let registry = std::sync::Arc::new(
        llmclis::registry::Registry::parse(
            &crate::support::one_model_registry(
                &format!("{{ name: py, kind: openai-compatible, flavour: llamacpp, base_url: \"{}/v1\", local: true, device: cpu }}", py.url),
                "{ id: small, provider: py, served_name: smol, context_window: 2048, max_output_tokens: 256 }",
                "small",
            ),
            "py.yaml",
        )
        .unwrap(),
    );
    let watch = llmclis::resources::Watch::new(registry);
    let first = watch.refresh().await;
    assert!(first.snapshot.servers[0].lists_only);
    let asked = py.paths().len();
    assert!(asked >= 1, "the first look asks");
    for _ in 0..3 {
        let v = watch.refresh().await;
        assert!(v.snapshot.servers[0].up);
        assert_eq!(v.placements["small"].fit, llmclis::resources::Fit::Loaded);
    }
    assert_eq!(
        py.paths().len(),
        asked,
        "later looks only connect: {:?}",
        py.paths()
    );
}
