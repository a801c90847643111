//! The task board: render snapshots of every view at a fixed size (ratatui's
//! TestBackend + insta), key handling on the app state, and a smoke test that
//! drives the real binary in a real pseudo-terminal.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmclis::llm::Health;
use llmclis::memory::{Hit, MemoryRecord};
use llmclis::orchestrator::run::Progress;
use llmclis::store::{Event, ModelCall, Note, Project, Status, StatusCounts, Store, Task};
use llmclis::tui::app::{
    App, DetailData, Job, ModelRow, ModelsData, Msg, ProjectRow, ProviderRow, View,
};
use llmclis::tui::keys::KeyMap;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::support::Env;

const T: &str = "2026-11-21T09:00:00.000Z";

fn task(id: i64, title: &str, status: Status) -> Task {
    Task {
        id,
        project_id: 1,
        parent_id: None,
        external_ref: None,
        title: title.into(),
        description: String::new(),
        status,
        priority: 2,
        role: None,
        tags: vec![],
        depends_on: vec![],
        created_at: T.into(),
        created_by: "max".into(),
        updated_at: T.into(),
        last_agent: None,
        last_updated_at: None,
        claimed_by: None,
        lease_expires_at: None,
        attempts: 0,
        deleted_at: None,
        checks: vec![],
        protected: vec![],
        verified: None,
    }
}

fn project() -> Project {
    Project {
        id: 1,
        name: "compiler".into(),
        description: String::new(),
        root: None,
        plans_path: None,
        created_at: T.into(),
        created_by: "max".into(),
        updated_at: T.into(),
    }
}

fn tasks() -> Vec<Task> {
    let mut v = vec![
        task(1, "Tokenizer for the config language", Status::Done),
        task(2, "Parser with error recovery", Status::InProgress),
        task(3, "Type checker", Status::Pending),
        task(4, "Benchmark against the old parser", Status::Pending),
        task(5, "Decide on the error format", Status::Blocked),
        task(6, "Write the language reference", Status::Pending),
        task(7, "Fuzz the tokenizer", Status::Done),
    ];
    v[0].external_ref = Some("S1.1".into());
    v[1].external_ref = Some("S1.2".into());
    v[1].claimed_by = Some("max/run-4/step-2".into());
    v[1].role = Some(llmclis::role::Role::Coder);
    v[2].depends_on = vec![2];
    v[2].priority = 3;
    v[3].role = Some(llmclis::role::Role::Tester);
    v[3].depends_on = vec![2, 3];
    v[5].role = Some(llmclis::role::Role::Writer);
    v[5].tags = vec!["docs".into()];
    v
}

fn app() -> App {
    let mut a = App::new(KeyMap::default(), false);
    a.on_msg(Msg::Board {
        project: project(),
        tasks: tasks(),
        counts: StatusCounts {
            pending: 3,
            in_progress: 1,
            done: 2,
            blocked: 1,
            ready: 1,
        },
    });
    a
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| llmclis::tui::ui::draw(f, app)).unwrap();
    term.backend().to_string()
}

/// Stage 1 rolled up (its task's raw interaction compacted), stage 2 under way.
fn memory_tree() -> llmclis::memory::rollup::Tree {
    use llmclis::memory::rollup::{Node, Tree};
    let node = |id: i64, title: &str, status: &str, summary: Option<&str>, raw, compacted| Node {
        task_id: id,
        external_ref: None,
        title: title.into(),
        status: status.into(),
        summary: summary.map(String::from),
        summaries: usize::from(summary.is_some()),
        raw,
        compacted,
        children: vec![],
    };
    Tree {
        project_id: 1,
        project_summary: Some("The lexer is done; the parser is next.".into()),
        project_summaries: 2,
        tasks: vec![
            Node {
                children: vec![node(2, "Tokens", "done", Some("Tokens carry spans."), 1, 1)],
                ..node(1, "Lexer", "done", Some("Spans on every token."), 0, 0)
            },
            Node {
                children: vec![node(4, "Expressions", "pending", None, 0, 0)],
                ..node(3, "Parser", "pending", None, 0, 0)
            },
        ],
    }
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

#[test]
fn board_at_80x24_and_after_a_resize() {
    let mut a = app();
    insta::assert_snapshot!("board_80x24", render(&a, 80, 24));
    a.on_msg(key('l'));
    insta::assert_snapshot!("board_120x30_in_progress_selected", render(&a, 120, 30));
    // Too small to be useful, but never a panic.
    render(&a, 20, 5);
    render(&a, 1, 1);
}

#[test]
fn no_color_means_no_colour_only_modifiers() {
    let colours = |color: bool| {
        let mut a = App::new(KeyMap::default(), color);
        a.on_msg(Msg::Board {
            project: project(),
            tasks: tasks(),
            counts: StatusCounts::default(),
        });
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| llmclis::tui::ui::draw(f, &a)).unwrap();
        term.backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| {
                c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset
            })
            .count()
    };
    assert!(colours(true) > 0);
    assert_eq!(colours(false), 0);
    assert!(!llmclis::tui::color_enabled() || std::env::var_os("NO_COLOR").is_none());
}

#[test]
fn detail_view() {
    let mut a = app();
    a.on_msg(code(KeyCode::Enter));
    assert_eq!(a.view, View::Detail);
    let mut t = tasks()[2].clone();
    t.description = "Check every expression's type; report the first error with its span.".into();
    a.on_msg(Msg::Detail(Box::new(DetailData {
        task: Some(t),
        subtasks: vec![],
        notes: vec![Note {
            id: 1,
            task_id: 3,
            agent: "max".into(),
            text: "Generics can wait for v2.".into(),
            created_at: T.into(),
        }],
        events: vec![Event {
            id: 1,
            project_id: 1,
            task_id: Some(3),
            kind: "created".into(),
            from_status: None,
            to_status: Some(Status::Pending),
            agent: "max".into(),
            metadata: serde_json::json!({}),
            created_at: T.into(),
        }],
        steps: vec![],
        calls: vec![ModelCall {
            id: 1,
            task_id: Some(3),
            role: "coder".into(),
            purpose: Some("execute".into()),
            provider: "vllm".into(),
            model: "qwen-coder-32b".into(),
            prompt_tokens: Some(812),
            completion_tokens: Some(431),
            latency_ms: Some(5120),
            outcome: "ok".into(),
            created_at: T.into(),
            ..Default::default()
        }],
        result: Some("fn check(e: &Expr) -> Result<Type, TypeError> { … }".into()),
        memories: vec![MemoryRecord {
            id: 4,
            project_id: 1,
            task_id: Some(3),
            kind: "task_summary".into(),
            agent: "summarizer".into(),
            text: "The checker walks the AST once.".into(),
            tokens: 9,
            covers: vec![],
            compacted: false,
            created_at: T.into(),
        }],
        tool_calls: vec![llmclis::store::ToolCallRecord {
            task_id: 3,
            tool: "run_tests".into(),
            arguments: serde_json::json!({}),
            outcome: "ok".into(),
            result_bytes: 412,
            duration_ms: 2300,
            created_at: T.into(),
            ..Default::default()
        }],
        diff: Some(
            "--- a/src/check.rs\n+++ b/src/check.rs\n@@ -1 +1 @@\n-todo!()\n+check(e)\n".into(),
        ),
    })));
    insta::assert_snapshot!("detail_80x24", render(&a, 80, 24));
}

#[test]
fn run_panel_streams_and_reports() {
    let mut a = app();
    a.on_msg(key('r'));
    for p in [
        Progress::StepStarted {
            run_id: 5,
            step: 1,
            task_id: 3,
            external_ref: None,
            title: "Type checker".into(),
            role: "coder".into(),
            rule: "default".into(),
            chain: vec!["qwen-coder-32b".into(), "qwen-7b".into()],
            plan: false,
        },
        Progress::Token {
            step: 1,
            task_id: 3,
            text: "fn check(e: &Expr) -> Result<Type> {\n    match e {".into(),
        },
    ] {
        a.on_msg(Msg::Progress(Box::new(p)));
    }
    insta::assert_snapshot!("run_80x24", render(&a, 80, 24));
}

fn resources() -> llmclis::app::models::Resources {
    use llmclis::registry::Device;
    use llmclis::resources::{DeviceMemory, Fit, Loaded, Placement, ServerState};
    llmclis::app::models::Resources {
        registry: "model_registry.yaml".into(),
        gpu_source: "nvidia-smi",
        gpu_note: None,
        devices: vec![DeviceMemory {
            device: Device::Gpu(0),
            name: Some("NVIDIA GeForce RTX 5090".into()),
            total: Some(32607 << 20),
            used: Some(25_000 << 20),
            free: Some(7_607 << 20),
            source: "nvidia-smi",
        }],
        ram: None,
        servers: vec![ServerState {
            provider: "vllm".into(),
            flavour: Some("vllm".into()),
            device: Some(Device::Gpu(0)),
            up: true,
            loaded: vec![Loaded {
                name: "Qwen/Qwen2.5-Coder-32B-Instruct-AWQ".into(),
                size: None,
                size_vram: None,
                expires_at: None,
            }],
            running: Some(2),
            waiting: Some(0),
            ..Default::default()
        }],
        models: vec![llmclis::app::models::ModelPlacement {
            id: "qwen-coder-32b".into(),
            provider: "vllm".into(),
            device: Some(Device::Gpu(0)),
            need: Some(25_232_932_864),
            placement: Placement {
                fit: Fit::Loaded,
                running: Some(2),
                waiting: Some(0),
            },
        }],
        took_ms: 12,
        taken_at_ms: 0,
    }
}

#[test]
fn models_memory_projects_and_help() {
    let mut a = app();
    a.on_msg(Msg::Models(ModelsData {
        source: "model_registry.yaml".into(),
        mode: "offline".into(),
        providers: vec![
            ProviderRow {
                name: "vllm".into(),
                base_url: "http://127.0.0.1:8000/v1".into(),
                local: true,
                key_env: None,
                key_set: false,
                health: Some(Health {
                    ok: true,
                    checked: "/v1/models".into(),
                    served: vec!["Qwen/Qwen2.5-Coder-32B-Instruct-AWQ".into()],
                    error: None,
                }),
            },
            ProviderRow {
                name: "openai".into(),
                base_url: "https://api.openai.com/v1".into(),
                local: false,
                key_env: Some("OPENAI_API_KEY".into()),
                key_set: false,
                health: None,
            },
        ],
        models: vec![ModelRow {
            id: "qwen-coder-32b".into(),
            provider: "vllm".into(),
            served_name: "Qwen/Qwen2.5-Coder-32B-Instruct-AWQ".into(),
            context_window: 32768,
            roles: vec!["coder".into(), "critic".into()],
        }],
        checking: false,
        resources: None,
    }));
    a.view = View::Models;
    insta::assert_snapshot!("models_80x24", render(&a, 80, 24));
    // The background watch's view: memory bars, what each server holds,
    // each model's fit.
    a.on_msg(Msg::Resources(Box::new(resources())));
    insta::assert_snapshot!("models_memory_80x24", render(&a, 80, 24));

    // The memory view asks for the project's tree and shows it beside the
    // search.
    let jobs = a.on_msg(key('4'));
    assert!(
        jobs.iter().any(|j| matches!(j, Job::LoadMemoryTree(1))),
        "{jobs:?}"
    );
    a.on_msg(Msg::MemoryTree(Box::new(memory_tree())));
    for c in "error format".chars() {
        a.on_msg(key(c));
    }
    a.on_msg(Msg::MemoryHits {
        seq: a.memory_seq,
        hits: Ok(vec![Hit {
            record: MemoryRecord {
                id: 9,
                project_id: 1,
                task_id: Some(5),
                kind: "handoff".into(),
                agent: "qwen-7b".into(),
                text: "Errors print as file:line:col, then the message.".into(),
                tokens: 12,
                covers: vec![],
                compacted: false,
                created_at: T.into(),
            },
            score: 0.812,
        }]),
    });
    insta::assert_snapshot!("memory_80x24", render(&a, 80, 24));

    a.on_msg(code(KeyCode::Esc));
    a.on_msg(Msg::Projects(vec![ProjectRow {
        project: project(),
        counts: StatusCounts {
            pending: 3,
            in_progress: 1,
            done: 2,
            blocked: 1,
            ready: 1,
        },
    }]));
    a.view = View::Projects;
    insta::assert_snapshot!("projects_80x24", render(&a, 80, 24));

    a.view = View::Board;
    a.on_msg(key('?'));
    insta::assert_snapshot!("help_80x24", render(&a, 80, 24));
}

/// The gateway's traffic: `5` opens the view and asks the worker to watch.
#[test]
fn requests_view_lists_the_gateways_calls() {
    let mut a = app();
    let jobs = a.on_msg(key('5'));
    assert_eq!(a.view, View::Requests);
    assert!(
        matches!(jobs.as_slice(), [llmclis::tui::app::Job::WatchRequests]),
        "{jobs:?}"
    );
    insta::assert_snapshot!("requests_empty_80x24", render(&a, 80, 24));
    let call =
        |model: &str, client: &str, outcome: &str, tokens: Option<(u64, u64)>, ms: u64| ModelCall {
            id: 1,
            role: "coder".into(),
            purpose: Some("gateway".into()),
            provider: "local".into(),
            model: model.into(),
            prompt_tokens: tokens.map(|t| t.0),
            completion_tokens: tokens.map(|t| t.1),
            latency_ms: Some(ms),
            outcome: outcome.into(),
            created_at: T.into(),
            client: Some(client.into()),
            ..Default::default()
        };
    a.on_msg(Msg::Requests(vec![
        call("qwen-coder-32b", "continue", "ok", Some((812, 96)), 1430),
        call("qwen-7b", "open-webui", "error", None, 12),
        call("qwen-7b", "claude-code", "cancelled", None, 0),
    ]));
    insta::assert_snapshot!("requests_80x24", render(&a, 80, 24));
}

#[test]
fn form_and_status_overlays() {
    let mut a = app();
    a.on_msg(key('a'));
    a.on_msg(Msg::Key(KeyEvent::new(
        KeyCode::Char('s'),
        KeyModifiers::CONTROL,
    )));
    insta::assert_snapshot!("form_error_80x24", render(&a, 80, 24));
    a.on_msg(code(KeyCode::Esc));
    a.on_msg(key('s'));
    insta::assert_snapshot!("status_80x24", render(&a, 80, 24));
}

/// The real binary in a real pseudo-terminal: open, move, add a task,
/// change its status, quit; then the database has it.
/// The real binary in a pseudo-terminal, its screen read by a VT100 parser.
struct Pty {
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Pty {
    fn board(env: &Env, cwd: &std::path::Path) -> Pty {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(crate::support::BIN);
        cmd.env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("TERM", "xterm-256color");
        cmd.env("LLMCLIS_CONFIG_DIR", env.config_dir());
        cmd.env("LLMCLIS_DATA_DIR", env.dir.path().join("data"));
        cmd.env("LLMCLIS_DB", env.db());
        cmd.env("LLMCLIS_AGENT", "tester");
        cmd.env("LLMCLIS_NVML", "0");
        cmd.cwd(cwd);
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            24.try_into().unwrap(),
            80.try_into().unwrap(),
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::<u8>::new()));
        {
            let mut reader = pty.master.try_clone_reader().unwrap();
            let (screen, raw) = (screen.clone(), raw.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().process(&buf[..n]);
                    raw.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let writer = pty.master.take_writer().unwrap();
        Pty {
            screen,
            raw,
            writer,
            child,
            _master: pty.master,
        }
    }

    fn shown(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.shown().contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the screen never showed {what:?}:\n{}", self.shown());
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
        // Keys apart, so ESC is not read as the start of a sequence.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Quits with `q` and waits for the process to end.
    fn quit(&mut self) -> portable_pty::ExitStatus {
        self.send(b"q");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the board did not quit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn smoke_the_real_binary_in_a_pty() {
    let env = Env::new();
    env.run(&["project", "add", "demo"]).assert_ok();
    env.run(&["task", "add", "--project-id", "1", "Existing task"])
        .assert_ok();
    let mut pty = Pty::board(&env, env.dir.path());
    pty.wait_for("Existing task");
    pty.send(b"j");
    pty.send(b"a");
    pty.wait_for("Add a task");
    pty.send(b"Added from the board");
    pty.send(b"\x13"); // ctrl-s
    pty.wait_for("added task 2");
    // The new task is second in the pending column.
    pty.send(b"j");
    pty.send(b"s");
    pty.wait_for("Status of task 2");
    pty.send(b"4"); // done
    pty.send(b"\r");
    pty.wait_for("task 2: pending");
    // A change made by another process shows up on its own.
    env.run(&[
        "task",
        "add",
        "--project-id",
        "1",
        "Added by another process",
    ])
    .assert_ok();
    pty.wait_for("#3 Added by");
    let status = pty.quit();
    assert!(status.success(), "{}", pty.shown());
    let s = Store::open(&env.db()).unwrap();
    let t = s.task(2).unwrap();
    assert_eq!(
        (t.title.as_str(), t.status, t.created_by.as_str()),
        ("Added from the board", Status::Done, "tester")
    );
    assert_eq!(s.task(1).unwrap().status, Status::Pending);
    // The terminal was handed back: the alternate screen was left.
    let raw = String::from_utf8_lossy(&pty.raw.lock().unwrap()).into_owned();
    assert!(raw.contains("\u{1b}[?1049l"), "left the alternate screen");
}

/// The run panel streams each turn of the coder's tool loop, tool calls
/// included, while the step is still going (its critic answers 8 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_panel_streams_the_tool_loop_as_it_goes() {
    use crate::orchestrate::{CODER, CRITIC, SUMMARIZER, approve, text};
    use crate::support::fake_llm::{FakeLlm, Reply, Route};
    let srv = FakeLlm::routed(
        vec![
            Route::new(
                CRITIC,
                vec![],
                Reply::Delay(Duration::from_secs(8), Box::new(approve())),
            ),
            Route::new(SUMMARIZER, vec![], text("Read the notes.")),
            Route::new(
                CODER,
                vec![Reply::ToolCall(
                    "call_s1",
                    "read_file",
                    r#"{"path": "notes.txt"}"#,
                )],
                Reply::Slow("The notes say all is well. ", Duration::from_millis(60)),
            ),
        ],
        None,
        Duration::ZERO,
    )
    .await;
    let env = Env::new();
    let root = env.dir.path().join("ws");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("notes.txt"), "all is well\n").unwrap();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("model_registry.yaml"),
        crate::support::one_model_registry(
            &format!(
                "{{ name: fake, kind: openai-compatible, flavour: vllm, base_url: \"{}\", local: true }}",
                srv.url
            ),
            "{ id: m, provider: fake, served_name: m, context_window: 32768, max_output_tokens: 1024, capabilities: [tools, json_schema] }",
            "m",
        ),
    )
    .unwrap();
    env.run(&["project", "add", "ws", "--root", root.to_str().unwrap()])
        .assert_ok();
    env.run(&["task", "add", "--project-id", "1", "Read the notes"])
        .assert_ok();
    let dir = env.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut pty = Pty::board(&env, &dir);
        pty.wait_for("Read the notes");
        pty.send(b"r");
        let began = Instant::now();
        pty.wait_for("→ read_file");
        pty.wait_for("all is well.");
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "shown only after the step ended ({:?})",
            began.elapsed()
        );
        pty.send(b"x"); // stop the run
        let _ = pty.quit();
    })
    .await
    .unwrap();
}
