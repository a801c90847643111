//! Deployment: docker-compose.yml against the registry's defaults, first-run
//! finding local servers and API keys, and doctor.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::fake_llm::{FakeLlm, Reply, Route};
use crate::support::{Env, Run};

fn compose() -> Value {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
            .unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn port_of(url: &str) -> String {
    url.rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

const GIB: f64 = (1u64 << 30) as f64;

#[test]
fn docker_compose_matches_the_registry_and_is_valid() {
    let c = compose();
    let s = &c["services"];
    let registry = llmclis::registry::Registry::builtin();
    let provider = |n: &str| registry.provider(n).unwrap().base_url.clone();

    // vLLM: the GPU, the models mount, the port and served name the registry uses.
    let vllm = &s["vllm"];
    assert!(
        vllm["image"]
            .as_str()
            .unwrap()
            .starts_with("vllm/vllm-openai:")
    );
    let args: Vec<&str> = vllm["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let served = registry
        .model("qwen-coder-32b")
        .unwrap()
        .served_name
        .clone();
    assert!(
        args.contains(&format!("--served-model-name={served}").as_str()),
        "{args:?}"
    );
    assert!(
        args.iter()
            .any(|a| a.starts_with("--gpu-memory-utilization="))
    );
    assert!(args.contains(&"--max-model-len=32768"));
    assert_eq!(
        registry.model("qwen-coder-32b").unwrap().context_window,
        32768,
        "the registry's window is the server's"
    );
    let port = port_of(&provider("vllm"));
    assert!(
        vllm["ports"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{port}:{port}"))
    );
    assert!(
        vllm["volumes"][0]
            .as_str()
            .unwrap()
            .contains("/models:/models")
    );
    let gpu = &vllm["deploy"]["resources"]["reservations"]["devices"][0];
    assert_eq!(
        (gpu["driver"].as_str(), gpu["count"].as_i64()),
        (Some("nvidia"), Some(1))
    );
    assert!(vllm["healthcheck"]["test"].to_string().contains("/health"));
    assert_eq!(vllm["restart"], "unless-stopped");

    // TGI under a profile on the registry's port; Ollama likewise.
    assert_eq!(s["tgi"]["profiles"][0], "tgi");
    let tgi_port = port_of(&provider("tgi"));
    assert!(
        s["tgi"]["ports"][0]
            .as_str()
            .unwrap()
            .contains(&format!(":{tgi_port}:"))
    );
    assert!(
        s["tgi"]["healthcheck"]["test"]
            .to_string()
            .contains("/health")
    );
    assert_eq!(s["ollama"]["profiles"][0], "ollama");
    let ollama_port = port_of(&provider("ollama"));
    assert!(
        s["ollama"]["ports"][0]
            .as_str()
            .unwrap()
            .contains(&format!(":{ollama_port}:"))
    );

    // Memory: on an RTX 5090 (32,607 MiB as nvidia-smi reports it) the
    // fraction vLLM and TGI take holds the registry's figure for their
    // model, and Ollama's largest model fits beside it.
    let card = (32607u64 << 20) as f64;
    let need = |id: &str| registry.model(id).unwrap().memory.unwrap().total() as f64;
    let fraction = |args: &[&str], flag: &str| -> f64 {
        args.iter()
            .find_map(|a| a.strip_prefix(flag))
            .unwrap_or_else(|| panic!("{flag} in {args:?}"))
            .parse()
            .unwrap()
    };
    let vllm_takes = fraction(&args, "--gpu-memory-utilization=") * card;
    assert!(
        vllm_takes >= need("qwen-coder-32b") && vllm_takes - need("qwen-coder-32b") < 0.5 * GIB,
        "vLLM takes {:.1} GiB, the registry says {:.1}",
        vllm_takes / GIB,
        need("qwen-coder-32b") / GIB
    );
    let tgi_args: Vec<&str> = s["tgi"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let tgi_takes = fraction(&tgi_args, "--cuda-memory-fraction=") * card;
    assert!(tgi_takes >= need("qwen-coder-32b-tgi"));
    let ollama_largest = registry
        .models
        .iter()
        .filter(|m| m.provider == "ollama")
        .map(|m| m.memory.unwrap().total() as f64)
        .fold(0.0, f64::max);
    assert!(
        vllm_takes + ollama_largest <= card,
        "vLLM {:.1} + Ollama {:.1} GiB on a {:.1} GiB card",
        vllm_takes / GIB,
        ollama_largest / GIB,
        card / GIB
    );
    // Ollama's KV cache is one slot, as the registry's figure assumes.
    let env = s["ollama"]["environment"].to_string();
    assert!(
        env.contains("OLLAMA_NUM_PARALLEL=1") && env.contains("OLLAMA_MAX_LOADED_MODELS=1"),
        "{env}"
    );
    assert_eq!(registry.provider("ollama").unwrap().max_concurrency, 1);
    // `models load|unload` need vLLM's sleep mode.
    assert!(args.contains(&"--enable-sleep-mode"));
    assert!(
        vllm["environment"]
            .to_string()
            .contains("VLLM_SERVER_DEV_MODE=1")
    );

    // Qdrant: a named volume, both ports, a healthcheck, the config's URL.
    let q = &s["qdrant"];
    let qport = port_of(&llmclis::config::Config::default().memory.qdrant_url);
    assert!(
        q["ports"]
            .to_string()
            .contains(&format!(":{qport}:{qport}"))
    );
    assert!(q["ports"].to_string().contains(":6334:6334"));
    let volume = q["volumes"][0].as_str().unwrap().split(':').next().unwrap();
    assert!(
        c["volumes"].get(volume).is_some(),
        "the volume {volume} is declared"
    );
    assert!(q.get("healthcheck").is_some());

    // With docker compose installed, compose itself must accept the file.
    let compose_present = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if compose_present {
        let out = std::process::Command::new("docker")
            .args(["compose", "-f", "docker-compose.yml", "config", "-q"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        crate::support::skipped(
            "docker compose is not installed: docker-compose.yml checked by parsing only",
        );
    }
}

fn registry_yaml(url: &str) -> String {
    let mut roles = String::new();
    for r in llmclis::registry::ROLES {
        roles.push_str(&format!(
            "  {r}: {{ temperature: 0.3, models: [m, api] }}\n"
        ));
    }
    format!(
        r#"providers:
  - {{ name: local, kind: openai-compatible, flavour: vllm, base_url: "{url}", local: true }}
  - {{ name: openai, kind: openai-compatible, flavour: openai, base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY, local: false }}
models:
  - {{ id: m, provider: local, served_name: fake-model, context_window: 8192, max_output_tokens: 1024, capabilities: [json_schema] }}
  - {{ id: api, provider: openai, served_name: gpt-4.1-mini, context_window: 8192, max_output_tokens: 1024 }}
roles:
{roles}rules:
  - {{ name: default, role: coder }}
modes:
  offline: {{ providers: local }}
  online: {{ providers: all }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_finds_servers_and_keys_and_writes_a_config_to_match() {
    let srv = FakeLlm::routed(
        vec![Route::new("", vec![], Reply::Ok("hi"))],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("model_registry.yaml"),
        registry_yaml(&srv.url),
    )
    .unwrap();
    let env = tokio::task::spawn_blocking(move || {
        env.run(&["project", "add", "demo"]).assert_ok();
        let r = Run::from(
            env.command()
                .env("LLMCLIS_DETECT", "1")
                .env("OPENAI_API_KEY", "sk-test-0123456789")
                .args(["--json", "first-run", "--yes"])
                .output()
                .unwrap(),
        );
        r.assert_ok();
        let report: Value = serde_json::from_str(&r.stdout).unwrap();
        let local = report["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["providers"][0] == "local")
            .unwrap_or_else(|| panic!("{report:#}"));
        assert_eq!(local["up"], true);
        assert_eq!(local["serves"][0], "fake-model");
        assert!(
            report["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "Qdrant")
        );
        assert_eq!(
            report["api_keys"][0],
            serde_json::json!({"env": "OPENAI_API_KEY", "set": true})
        );
        assert_eq!(report["mode"], "online");
        assert!(
            report["next_command"]
                .as_str()
                .unwrap()
                .starts_with("llmclis orchestrate")
        );
        assert!(
            !r.stdout.contains("sk-test-0123456789"),
            "the key's value never shows"
        );
        let config = std::fs::read_to_string(env.config_dir().join("config.toml")).unwrap();
        assert!(config.contains("\nmode = \"online\"\n"));
        // The human summary names the endpoint and what it serves.
        let r = Run::from(
            env.command()
                .env("LLMCLIS_DETECT", "1")
                .args(["first-run", "--yes"])
                .output()
                .unwrap(),
        );
        r.assert_ok();
        assert!(
            r.stdout.contains("up: fake-model → provider local"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("OPENAI_API_KEY unset"), "{}", r.stdout);
        env
    })
    .await
    .unwrap();
    // Without a key, a new config stays offline.
    let env2 = Env::new();
    let r = tokio::task::spawn_blocking(move || {
        let r = env2.json(&["first-run", "--yes"]);
        (r, env2)
    })
    .await
    .unwrap();
    assert_eq!(r.0["mode"], "offline");
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_what_is_wrong_and_how_to_fix_it() {
    let srv = FakeLlm::routed(vec![], None, Duration::ZERO).await;
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    // The fake server serves "fake-model": what the registry expects.
    std::fs::write(
        env.config_dir().join("model_registry.yaml"),
        registry_yaml(&srv.url),
    )
    .unwrap();
    let assets = crate::support::assets();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = env.command();
        if let Some((dir, lib)) = &assets {
            cmd.env("LLMCLIS_EMBEDDING_MODEL_DIR", dir)
                .env("LLMCLIS_ONNXRUNTIME", lib);
        }
        let healthy = Run::from(cmd.args(["--json", "doctor"]).output().unwrap());
        // Break things: the server answers with another model, the registry
        // gets a bad line, the embedding model is elsewhere.
        let broken = env.run(&["--registry", "/nonexistent/registry.yaml", "doctor"]);
        std::fs::write(
            env.config_dir().join("model_registry.yaml"),
            registry_yaml(&srv.url).replace("served_name: fake-model", "served_name: other-model"),
        )
        .unwrap();
        let wrong_model = env.run(&["doctor"]);
        (healthy, broken, wrong_model, assets.is_some())
    })
    .await
    .unwrap();
    let (healthy, broken, wrong_model, have_assets) = out;
    let report: Value = serde_json::from_str(&healthy.stdout).unwrap();
    let level = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .map(|c| c["level"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
    };
    assert_eq!(level("database"), "ok");
    assert_eq!(level("provider local"), "ok");
    assert_eq!(
        level("provider openai"),
        "info",
        "offline: API providers are not used"
    );
    if have_assets {
        assert_eq!(level("embedding model"), "ok");
        assert_eq!(healthy.code, 0, "{}", healthy.stdout);
        assert_eq!(report["ok"], true);
    }
    assert_eq!(broken.code, 1);
    assert!(
        broken.stdout.contains("FAIL model registry"),
        "{}",
        broken.stdout
    );
    assert!(broken.stdout.contains("fix: "), "{}", broken.stdout);
    assert!(
        wrong_model.stdout.contains("does not serve other-model"),
        "{}",
        wrong_model.stdout
    );
    // Every call to that name would be a 404: an error, not "ready".
    assert_eq!(wrong_model.code, 1, "{}", wrong_model.stdout);
    assert!(
        wrong_model.stdout.contains("FAIL provider local"),
        "{}",
        wrong_model.stdout
    );
    assert!(
        wrong_model.stdout.contains("fix: load that model"),
        "{}",
        wrong_model.stdout
    );
}

/// first-run reports the registry it was told to use (`LLMCLIS_REGISTRY`),
/// its keys and servers, not the shipped one's.
#[test]
fn first_run_reports_the_registry_it_was_given() {
    let env = Env::new();
    let reg = env.dir.path().join("mine.yaml");
    std::fs::write(
        &reg,
        crate::support::one_model_registry(
            "{ name: mine, kind: openai-compatible, flavour: openai, base_url: \"https://example.invalid/v1\", api_key_env: MY_OWN_KEY, local: false }",
            "{ id: api, provider: mine, served_name: m, context_window: 8192, max_output_tokens: 1024 }",
            "api",
        ),
    )
    .unwrap();
    let r = Run::from(
        env.command()
            .env("LLMCLIS_REGISTRY", &reg)
            .args(["--json", "first-run", "--yes"])
            .output()
            .unwrap(),
    );
    r.assert_ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["registry"], reg.display().to_string(), "{v}");
    let keys: Vec<&str> = v["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["env"].as_str())
        .collect();
    assert_eq!(keys, ["MY_OWN_KEY"], "{v}");
}
