//! Helpers shared by the integration tests: a builder that runs the real
//! binary against a private config dir, data dir and database, and a logical
//! dump of a database for "nothing changed" checks.

#![allow(dead_code)]

pub mod fake_llm;
pub mod fake_qdrant;
pub mod fake_servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_llmclis");

/// A private installation: its own config dir, data dir and database.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Writes a one-model registry (see `one_model_registry`) into the
    /// environment's directory; its path, for `--registry`.
    pub fn one_model_registry(&self, provider: &str, model: &str, id: &str) -> String {
        let path = self.dir.path().join("registry.yaml");
        std::fs::write(&path, one_model_registry(provider, model, id)).unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data").join("llmclis.db")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The environment every command of this installation runs with.
    pub fn vars(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("PATH", std::env::var_os("PATH").unwrap_or_default()),
            ("LLMCLIS_CONFIG_DIR", self.config_dir().into()),
            ("LLMCLIS_DATA_DIR", self.dir.path().join("data").into()),
            ("LLMCLIS_DB", self.db().into()),
            ("LLMCLIS_AGENT", "tester".into()),
            // first-run would fetch the embedding assets from PyPI, and
            // probe the local ports (whatever this machine runs there).
            ("LLMCLIS_FETCH_ASSETS", "0".into()),
            ("LLMCLIS_DETECT", "0".into()),
        ]
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .envs(self.vars())
            // Not the repository: first-run would import its plans.md.
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Project 1, imported from a copy of the seed plans.md in the env's dir.
    pub fn with_seed_plans(&self) {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_plans.md"),
            self.dir.path().join("plans.md"),
        )
        .unwrap();
        self.run(&["project", "add", "demo"]).assert_ok();
        self.run(&["plans", "import", "plans.md", "--project-id", "1"])
            .assert_ok();
    }

    /// Writes a config.toml that points memory at the embedding assets;
    /// false (and nothing written) without them.
    pub fn with_memory_config(&self) -> bool {
        let Some((dir, lib)) = assets() else {
            return false;
        };
        std::fs::create_dir_all(self.config_dir()).unwrap();
        std::fs::write(
            self.config_dir().join("config.toml"),
            format!(
                "[memory]\nmodel_dir = {:?}\nonnxruntime = {:?}\n",
                dir.display().to_string(),
                lib.display().to_string()
            ),
        )
        .unwrap();
        true
    }

    /// Runs `llmclis ARGS…`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("spawn llmclis"))
    }

    /// Runs a command that must succeed and returns its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let r = self.run(&all);
        r.assert_ok();
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("stdout of {args:?} is not JSON ({e}): {}", r.stdout))
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn assert_ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Fails with `code`, one line on stderr containing every `needles`, no panic.
    pub fn assert_err(&self, code: i32, needles: &[&str]) -> &Run {
        assert_eq!(
            self.code, code,
            "wrong exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert!(
            !self.stderr.contains("backtrace"),
            "backtrace: {}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "error is not one line: {}",
            self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}: {}",
                self.stderr
            );
        }
        assert!(self.stdout.is_empty(), "stdout on error: {}", self.stdout);
        self
    }
}

/// Every row of every table, in a stable order: equal dumps mean an equal
/// database, whatever SQLite did to its pages.
pub fn dump(path: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open for dump");
    let mut out = String::new();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    out.push_str(&format!("user_version {version}\n"));
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2"))
            .unwrap();
        let cols = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut row = Vec::new();
                for i in 0..cols {
                    row.push(format!("{:?}", r.get_ref(i)?));
                }
                Ok(row.join("|"))
            })
            .unwrap();
        out.push_str(&format!("table {t}\n"));
        for row in rows {
            out.push_str(&row.unwrap());
            out.push('\n');
        }
    }
    out
}

/// Held by a test while it uses the real servers. llama-cpp-python serves
/// one request at a time, and a request interrupts the answer it is
/// streaming: tests that share a server take turns, or one test's long
/// generation starves another's probe.
pub type RealServers = std::sync::MutexGuard<'static, ()>;

pub fn real_servers_lock() -> RealServers {
    static REAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    REAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The servers' URLs and the turn to use them, or None (after saying so)
/// when they are not running.
pub fn servers() -> Option<(String, String, RealServers)> {
    let smollm = std::env::var("LLMCLIS_TEST_SMOLLM_URL").ok();
    let gemma = std::env::var("LLMCLIS_TEST_GEMMA_URL").ok();
    match (smollm, gemma) {
        (Some(s), Some(g)) => Some((s, g, real_servers_lock())),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but the llama.cpp test servers are not: run `scripts/llama-server start` and export its lines (scripts/test does)"
            )
        }
        _ => {
            skipped(
                "no llama.cpp test server (LLMCLIS_TEST_SMOLLM_URL / LLMCLIS_TEST_GEMMA_URL unset); run `eval \"$(scripts/llama-server start)\"`",
            );
            None
        }
    }
}

/// The real embedding model's files, or None (after saying so).
pub fn assets() -> Option<(PathBuf, PathBuf)> {
    match (
        std::env::var_os("LLMCLIS_EMBEDDING_MODEL_DIR"),
        std::env::var_os("LLMCLIS_ONNXRUNTIME"),
    ) {
        (Some(d), Some(l)) => Some((d.into(), l.into())),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set but the embedding assets are not: run `scripts/embedding-assets DIR` and export its lines (scripts/test does)"
            )
        }
        _ => {
            skipped(
                "no embedding assets (LLMCLIS_EMBEDDING_MODEL_DIR / LLMCLIS_ONNXRUNTIME unset); run scripts/embedding-assets",
            );
            None
        }
    }
}

/// A registry with one provider and one model that every role uses.
/// `provider` and `model` are the YAML flow mappings of each, `id` the
/// model's id.
pub fn one_model_registry(provider: &str, model: &str, id: &str) -> String {
    let roles: String = llmclis::registry::ROLES
        .iter()
        .map(|r| format!("  {r}: {{ temperature: 0.3, models: [{id}] }}\n"))
        .collect();
    format!(
        "providers:\n  - {provider}\nmodels:\n  - {model}\nroles:\n{roles}rules:\n  - {{ name: default, role: coder }}\nmodes:\n  offline: {{ providers: local }}\n  online: {{ providers: all }}\n"
    )
}

/// The Python with the real clients (`mcp`, `openai`) from
/// `scripts/py-clients`, or None (after saying so).
pub fn py_clients() -> Option<PathBuf> {
    match std::env::var_os("LLMCLIS_TEST_PYTHON") {
        Some(p) => Some(p.into()),
        None if std::env::var_os("CI").is_some() => panic!(
            "CI is set but LLMCLIS_TEST_PYTHON is not: run `scripts/py-clients` and export its line (scripts/test does)"
        ),
        None => {
            skipped("no Python clients (LLMCLIS_TEST_PYTHON unset); run scripts/py-clients");
            None
        }
    }
}

/// Runs `tests/clients/<script>` with the clients' Python, `calls` on its
/// stdin; its stdout as JSON.
pub fn py_client(
    python: &Path,
    script: &str,
    args: &[&str],
    envs: Vec<(&'static str, std::ffi::OsString)>,
    calls: &serde_json::Value,
) -> serde_json::Value {
    use std::io::Write as _;
    let mut child = std::process::Command::new(python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/clients")
                .join(script),
        )
        .args(args)
        .env_clear()
        .envs(envs)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the Python client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(calls.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Says that the running test does not run (or runs only in part) and
/// why, on stderr and, when `LLMCLIS_TEST_SKIPS` names a file, as a line
/// there: `scripts/test` lists those lines by name at its end, so a check
/// that did not run is never mistaken for one that passed.
pub fn skipped(why: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    eprintln!("\n*** SKIPPED: {why} ***\n");
    if let Some(path) = std::env::var_os("LLMCLIS_TEST_SKIPS") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{name}: {why}");
        }
    }
}
