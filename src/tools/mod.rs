//! Codebase tools for the executing roles: read, list, search, find
//! references, write, patch, git status and diff, and allow-listed commands,
//! all inside a `Sandbox` on the project's root.
//!
//! Without `allow_writes`, writes and patches land in an overlay: later reads
//! see them, the disk does not, and `diff()` is the proposed change. Every
//! outcome is text the model reads, errors included: a refused path or a
//! patch that does not apply is an answer, not a failure of the step.

pub mod check;
pub mod sandbox;
mod scratch;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

pub use sandbox::Sandbox;

/// How a tool call went, as recorded with the step.
#[derive(Debug, Clone, Serialize)]
pub struct ToolOutcome {
    pub ok: bool,
    /// What the model sees.
    pub output: String,
}

impl ToolOutcome {
    fn ok(output: impl Into<String>) -> ToolOutcome {
        ToolOutcome {
            ok: true,
            output: output.into(),
        }
    }

    fn err(output: impl Into<String>) -> ToolOutcome {
        ToolOutcome {
            ok: false,
            output: output.into(),
        }
    }
}

/// A file bigger than this is read in ranges.
const READ_CAP: usize = 256 * 1024;
const SEARCH_HITS: usize = 200;

#[derive(Clone)]
pub struct Toolbox {
    sandbox: Sandbox,
    pub allow_writes: bool,
    /// name → argv, run in the root.
    commands: BTreeMap<String, Vec<String>>,
    pub timeout: Duration,
    pub output_cap: usize,
    /// Proposed contents (no `allow_writes`), by path; `None`: deleted.
    overlay: BTreeMap<PathBuf, Option<String>>,
    /// What each touched file held first (`None`: it did not exist).
    originals: BTreeMap<PathBuf, Option<String>>,
    /// Without writes, where commands run: a copy with the overlay in it
    /// (made on the first command; a candidate gets its own).
    scratch: Arc<Mutex<Option<scratch::Scratch>>>,
}

/// The tools' names and JSON schemas, for native tool calling and for the
/// text protocol's instructions.
pub fn specs() -> Vec<(&'static str, &'static str, Value)> {
    let path = json!({"type": "string", "description": "relative to the project root"});
    vec![
        (
            "read_file",
            "Read a file, with line numbers; `start`/`end` (1-based, inclusive) for a range.",
            json!({"type": "object", "properties": {"path": path, "start": {"type": "integer"}, "end": {"type": "integer"}}, "required": ["path"]}),
        ),
        (
            "list_dir",
            "List a directory (`.` for the root); directories end with /.",
            json!({"type": "object", "properties": {"path": path}, "required": ["path"]}),
        ),
        (
            "search",
            "Search file contents for a regex (files ignored by git are skipped); path:line: text.",
            json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": path}, "required": ["pattern"]}),
        ),
        (
            "find_references",
            "Find where an identifier is used (whole words).",
            json!({"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}),
        ),
        (
            "write_file",
            "Replace a file's whole content (creates it if needed).",
            json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"]}),
        ),
        (
            "apply_patch",
            "Apply a unified diff (--- a/path, +++ b/path, @@ hunks); all files or none.",
            json!({"type": "object", "properties": {"patch": {"type": "string"}}, "required": ["patch"]}),
        ),
        (
            "git_status",
            "git status of the project.",
            json!({"type": "object", "properties": {}}),
        ),
        (
            "git_diff",
            "The change so far: proposed edits, or git diff when writes are allowed.",
            json!({"type": "object", "properties": {}}),
        ),
        (
            "run_command",
            "Run an allow-listed command by name (`run_tests` is `test`); exit code and output.",
            json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        ),
        (
            "run_tests",
            "Run the project's tests (the allow-listed `test` command).",
            json!({"type": "object", "properties": {}}),
        ),
    ]
}

fn arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolOutcome> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolOutcome::err(format!("missing argument `{key}` (a string)")))
}

impl Toolbox {
    pub fn new(
        root: &Path,
        allow_writes: bool,
        commands: BTreeMap<String, Vec<String>>,
        timeout: Duration,
        output_cap: usize,
    ) -> Result<Toolbox, String> {
        Ok(Toolbox {
            sandbox: Sandbox::new(root)?,
            allow_writes,
            commands,
            timeout,
            output_cap: output_cap.max(256),
            overlay: BTreeMap::new(),
            originals: BTreeMap::new(),
            scratch: Arc::default(),
        })
    }

    /// A voting candidate's toolbox: it sees everything proposed so far but
    /// proposes its own changes in its own overlay, never on disk, so
    /// candidates do not see or undo each other's work.
    pub fn candidate(&self) -> Toolbox {
        Toolbox {
            allow_writes: false,
            scratch: Arc::default(),
            ..self.clone()
        }
    }

    /// Takes a candidate's proposals as this toolbox's own: written to disk
    /// when writes are on, proposed otherwise.
    pub fn adopt(&mut self, candidate: &Toolbox) -> Result<(), String> {
        for (path, content) in &candidate.overlay {
            if self.current(path)? != *content {
                self.put(path.clone(), content.clone())?;
            }
        }
        Ok(())
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Runs one tool. `None` when the name is not a codebase tool (the
    /// caller may handle it, e.g. `memory_query`).
    pub fn call(&mut self, name: &str, args: &Value) -> Option<ToolOutcome> {
        let out = match name {
            "read_file" => self.read_file(args),
            "list_dir" => self.list_dir(args),
            "search" => self.search(args),
            "find_references" => arg(args, "symbol").map(|s| {
                let pattern = format!(r"\b{}\b", regex::escape(s));
                self.grep(&pattern, ".")
            }),
            "write_file" => self.write_file(args),
            "apply_patch" => arg(args, "patch").map(|p| self.apply_patch(p)),
            "git_status" => Ok(self.git(&["status", "--short", "--branch"])),
            "git_diff" => Ok(self.git_diff()),
            "run_command" => arg(args, "name").map(|n| self.run_command(n)),
            "run_tests" => Ok(self.run_command("test")),
            _ => return None,
        };
        Some(out.unwrap_or_else(|e| e))
    }

    fn current(&self, path: &Path) -> Result<Option<String>, String> {
        if let Some(text) = self.overlay.get(path) {
            return Ok(text.clone());
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > (READ_CAP * 4) as u64
        {
            return Err(format!(
                "{} is {} bytes, too big to edit here; read it in ranges",
                self.sandbox.relative(path),
                meta.len()
            ));
        }
        match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| format!("{} is not UTF-8 text", self.sandbox.relative(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.sandbox.relative(path))),
        }
    }

    fn read_file(&self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
        let path = self
            .sandbox
            .resolve(arg(args, "path")?)
            .map_err(ToolOutcome::err)?;
        if path.is_dir() {
            return Err(ToolOutcome::err("that is a directory; use list_dir"));
        }
        let start = args
            .get("start")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .max(1) as usize;
        let end = args.get("end").and_then(Value::as_u64).map(|e| e as usize);
        let text = match self.current(&path) {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(ToolOutcome::err(format!(
                    "{} does not exist",
                    self.sandbox.relative(&path)
                )));
            }
            // Too big to hold: the range is read line by line.
            Err(_) if !self.overlay.contains_key(&path) && path.is_file() => {
                use std::io::BufRead;
                let file =
                    std::fs::File::open(&path).map_err(|e| ToolOutcome::err(e.to_string()))?;
                let last = end.unwrap_or(start + 200);
                std::io::BufReader::new(file)
                    .lines()
                    .take(last)
                    .map_while(|l| l.ok())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(e) => return Err(ToolOutcome::err(e)),
        };
        let mut out = String::new();
        for (i, line) in text.lines().enumerate().skip(start - 1) {
            if end.is_some_and(|e| i + 1 > e) {
                break;
            }
            out.push_str(&format!("{:>5}| {line}\n", i + 1));
            if out.len() > READ_CAP {
                out.push_str("[… cut: read the rest with start/end]\n");
                break;
            }
        }
        Ok(ToolOutcome::ok(out))
    }

    fn list_dir(&self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
        let path = self
            .sandbox
            .resolve(arg(args, "path")?)
            .map_err(ToolOutcome::err)?;
        let entries = std::fs::read_dir(&path)
            .map_err(|e| ToolOutcome::err(format!("{}: {e}", self.sandbox.relative(&path))))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != ".git")
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    name + "/"
                } else {
                    name
                }
            })
            .collect();
        // Proposed new files show up, proposed deletions do not.
        for (p, text) in &self.overlay {
            if p.parent() != Some(path.as_path()) {
                continue;
            }
            let Some(n) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            match text {
                Some(_) if !names.contains(&n) => names.push(n),
                None => names.retain(|x| *x != n),
                _ => {}
            }
        }
        names.sort();
        Ok(ToolOutcome::ok(names.join("\n")))
    }

    fn search(&self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
        let pattern = arg(args, "pattern")?;
        let path = args.get("path").and_then(Value::as_str).unwrap_or(".");
        Ok(self.grep(pattern, path))
    }

    fn grep(&self, pattern: &str, path: &str) -> ToolOutcome {
        use grep_searcher::sinks::UTF8;
        let dir = match self.sandbox.resolve(path) {
            Ok(d) => d,
            Err(e) => return ToolOutcome::err(e),
        };
        let matcher = match grep_regex::RegexMatcher::new_line_matcher(pattern) {
            Ok(m) => m,
            Err(e) => return ToolOutcome::err(format!("invalid regex: {e}")),
        };
        let mut hits: Vec<String> = Vec::new();
        let mut searcher = grep_searcher::Searcher::new();
        for entry in ignore::WalkBuilder::new(&dir)
            .hidden(true)
            .build()
            .flatten()
        {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let rel = self.sandbox.relative(entry.path());
            let _ = searcher.search_path(
                &matcher,
                entry.path(),
                UTF8(|line, text| {
                    let text = text.trim_end();
                    let shown: String = text.chars().take(300).collect();
                    let more = if shown.len() < text.len() {
                        " […]"
                    } else {
                        ""
                    };
                    hits.push(format!("{rel}:{line}: {shown}{more}"));
                    Ok(hits.len() < SEARCH_HITS)
                }),
            );
            if hits.len() >= SEARCH_HITS {
                hits.push(format!(
                    "[… stopped at {SEARCH_HITS} matches: narrow the pattern or the path]"
                ));
                break;
            }
        }
        if hits.is_empty() {
            ToolOutcome::ok("no matches")
        } else {
            ToolOutcome::ok(self.cap(&hits.join("\n")))
        }
    }

    /// Records a file's first content, then writes (or proposes) the new
    /// one; `None` deletes it.
    fn put(&mut self, path: PathBuf, content: Option<String>) -> Result<(), String> {
        if !self.originals.contains_key(&path) {
            let first = self.current(&path)?;
            self.originals.insert(path.clone(), first);
        }
        if !self.allow_writes {
            self.overlay.insert(path, content);
            return Ok(());
        }
        match &content {
            Some(text) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())
            }
            None => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    fn write_file(&mut self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
        let path = self
            .sandbox
            .resolve(arg(args, "path")?)
            .map_err(ToolOutcome::err)?;
        let content = arg(args, "content")?.to_string();
        let rel = self.sandbox.relative(&path);
        self.put(path, Some(content)).map_err(ToolOutcome::err)?;
        Ok(ToolOutcome::ok(if self.allow_writes {
            format!("wrote {rel}")
        } else {
            format!("proposed a new {rel} (writes are off: it is recorded as a diff)")
        }))
    }

    /// All files of the patch apply, or none is touched.
    fn apply_patch(&mut self, patch: &str) -> ToolOutcome {
        // (path, new content; None deletes), staged before anything is written.
        let mut staged: Vec<(PathBuf, Option<String>)> = Vec::new();
        for (i, part) in split_patch(patch).iter().enumerate() {
            if let Some(bad) = oversized_hunk(part) {
                return ToolOutcome::err(format!("file {} of the patch: {bad}", i + 1));
            }
            let parsed = match diffy::Patch::from_str(part) {
                Ok(p) => p,
                Err(e) => {
                    return ToolOutcome::err(format!(
                        "file {} of the patch does not parse: {e}",
                        i + 1
                    ));
                }
            };
            let deletes = parsed.modified() == Some("/dev/null");
            let name = parsed
                .modified()
                .filter(|m| *m != "/dev/null")
                .or(parsed.original())
                .map(|n| {
                    n.trim_start_matches("b/")
                        .trim_start_matches("a/")
                        .to_string()
                });
            let Some(name) = name else {
                return ToolOutcome::err("the patch names no file (--- a/path / +++ b/path)");
            };
            let path = match self.sandbox.resolve(&name) {
                Ok(p) => p,
                Err(e) => return ToolOutcome::err(e),
            };
            // A second part for the same file applies on top of the first.
            let base = match staged.iter().rev().find(|(p, _)| *p == path) {
                Some((_, text)) => text.clone().unwrap_or_default(),
                None => match self.current(&path) {
                    Ok(b) => b.unwrap_or_default(),
                    Err(e) => return ToolOutcome::err(e),
                },
            };
            match diffy::apply(&base, &parsed) {
                Ok(new) => staged.push((path, (!deletes).then_some(new))),
                Err(e) => {
                    return ToolOutcome::err(format!(
                        "the patch does not apply to {name} ({e}); nothing was changed. Read the file again and make the context lines match it exactly"
                    ));
                }
            }
        }
        if staged.is_empty() {
            return ToolOutcome::err("no file in the patch");
        }
        let mut names: Vec<String> = Vec::new();
        for (path, _) in &staged {
            let n = self.sandbox.relative(path);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        // Written in order; a failure puts back what was already written.
        let before: Vec<(PathBuf, Option<String>)> = staged
            .iter()
            .map(|(p, _)| (p.clone(), self.current(p).ok().flatten()))
            .collect();
        for (i, (path, new)) in staged.into_iter().enumerate() {
            if let Err(e) = self.put(path, new) {
                for (p, old) in before.into_iter().take(i).rev() {
                    let _ = self.put(p, old);
                }
                return ToolOutcome::err(format!(
                    "the patch could not be written ({e}); nothing was changed"
                ));
            }
        }
        ToolOutcome::ok(format!(
            "{} {}",
            if self.allow_writes {
                "patched"
            } else {
                "proposed changes to"
            },
            names.join(", ")
        ))
    }

    /// The change so far, as one unified diff, against each file's first
    /// content.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for (path, original) in &self.originals {
            let now = match self.current(path) {
                Ok(n) => n,
                Err(_) => continue,
            };
            if *original == now {
                continue;
            }
            let rel = self.sandbox.relative(path);
            let before = original.clone().unwrap_or_default();
            let after = now.clone().unwrap_or_default();
            let d = similar::TextDiff::from_lines(&before, &after);
            out.push_str(
                &d.unified_diff()
                    .context_radius(3)
                    .header(
                        &if original.is_some() {
                            format!("a/{rel}")
                        } else {
                            "/dev/null".into()
                        },
                        &if now.is_some() {
                            format!("b/{rel}")
                        } else {
                            "/dev/null".into()
                        },
                    )
                    .to_string(),
            );
        }
        out
    }

    fn git_diff(&self) -> ToolOutcome {
        let d = self.diff();
        if d.is_empty() {
            ToolOutcome::ok("no changes yet")
        } else {
            ToolOutcome::ok(self.cap(&d))
        }
    }

    fn git(&self, args: &[&str]) -> ToolOutcome {
        // No repository setting may start a program from here.
        let argv: Vec<String> = [
            "git",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
        self.run(&argv)
    }

    fn run_command(&self, name: &str) -> ToolOutcome {
        match self.commands.get(name) {
            Some(argv) if !argv.is_empty() => match self.exec_dir() {
                Ok(dir) => self.run_in(&dir, argv),
                Err(e) => ToolOutcome::err(e),
            },
            _ => {
                let names: Vec<&str> = self.commands.keys().map(String::as_str).collect();
                ToolOutcome::err(format!(
                    "command {name:?} is not allowed here; the allowed ones are: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            }
        }
    }

    /// The output's end: test failures and summaries are last.
    fn cap(&self, text: &str) -> String {
        check::tail(text, self.output_cap)
    }

    /// Where commands see the change: the root when writes are on, else
    /// the scratch copy, brought up to date with the overlay.
    pub fn exec_dir(&self) -> Result<PathBuf, String> {
        let root = self.sandbox.root();
        if self.allow_writes {
            return Ok(root.to_path_buf());
        }
        let mut scratch = self.scratch.lock().expect("scratch lock");
        if scratch.is_none() {
            *scratch = Some(scratch::Scratch::copy_of(root)?);
        }
        let s = scratch.as_mut().expect("made above");
        s.sync(root, &self.overlay)?;
        Ok(s.path().to_path_buf())
    }

    /// Runs argv in the root (git, which needs the repository).
    fn run(&self, argv: &[String]) -> ToolOutcome {
        self.run_in(self.sandbox.root(), argv)
    }

    /// Runs argv in `dir`, as text for the model.
    fn run_in(&self, dir: &Path, argv: &[String]) -> ToolOutcome {
        let r = self.spawn(dir, argv);
        match r.exit {
            Some(0) => ToolOutcome::ok(format!("exit 0 in {:.1} s\n{}", r.seconds, r.output)),
            Some(code) if !r.killed && r.started => {
                ToolOutcome::err(format!("exit {code} in {:.1} s\n{}", r.seconds, r.output))
            }
            _ if !r.started => ToolOutcome::err(r.output),
            _ if r.killed => ToolOutcome::err(format!(
                "killed after the {} s timeout\n{}",
                self.timeout.as_secs_f64(),
                r.output
            )),
            _ => ToolOutcome::err(format!("exit signal in {:.1} s\n{}", r.seconds, r.output)),
        }
    }

    /// Runs argv in `dir` with the timeout (the whole process group is
    /// killed) and the output cap, with an environment that holds no API
    /// keys.
    fn spawn(&self, dir: &Path, argv: &[String]) -> Spawned {
        let mut cmd = Command::new(&argv[0]);
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            if k.to_str()
                .is_some_and(|k| PASSED_ENV.contains(&k) || k.starts_with("LC_"))
            {
                cmd.env(k, v);
            }
        }
        cmd.args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Spawned {
                    exit: None,
                    killed: false,
                    started: false,
                    seconds: 0.0,
                    output: format!("cannot run {}: {e}", argv[0]),
                };
            }
        };
        // Both streams into one buffer, kept to twice the cap while running.
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let limit = self.output_cap * 2;
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut r| {
            let buf = buf.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = buf.lock().expect("output buffer");
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > limit {
                        let drop = b.len() - limit;
                        b.drain(..drop);
                    }
                }
                let _ = done.send(());
            })
        })
        .count();
        // The child is waited for on a thread of its own, so its end is
        // seen at once (no polling); at the timeout its group is killed.
        let pid = child.id();
        let (status_tx, status_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = status_tx.send(child.wait().ok());
        });
        let status = match status_rx.recv_timeout(self.timeout) {
            Ok(s) => s,
            Err(_) => {
                kill_group(pid);
                let _ = status_rx.recv();
                None
            }
        };
        // What the command left running in its group goes too; a reader
        // still blocked after that (a process that left the group holds the
        // pipe) is abandoned rather than waited for.
        kill_group(pid);
        for _ in 0..readers {
            if done_rx.recv_timeout(Duration::from_secs(2)).is_err() {
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf.lock().expect("output buffer")).into_owned();
        let text = self.cap(&text);
        Spawned {
            exit: status.and_then(|s| s.code()),
            killed: status.is_none(),
            started: true,
            seconds: started.elapsed().as_secs_f64(),
            output: text,
        }
    }
}

/// A command's end: its exit code (None: a signal, or killed at the
/// timeout), its time and its capped output.
struct Spawned {
    exit: Option<i32>,
    killed: bool,
    /// False when it could not be started (`output` says why).
    started: bool,
    seconds: f64,
    output: String,
}

/// Variables a command keeps; API keys and everything else are dropped.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TERM",
    "TMPDIR",
    "SHELL",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "CARGO_TARGET_DIR",
    "RUSTFLAGS",
    "GOPATH",
    "GOCACHE",
    "JAVA_HOME",
    "NODE_PATH",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "CI",
];

/// A hunk header with absurd line numbers (diffy would overflow on them).
fn oversized_hunk(part: &str) -> Option<String> {
    for line in part.lines().filter(|l| l.starts_with("@@")) {
        if line
            .split(|c: char| !c.is_ascii_digit())
            .any(|n| n.len() > 9)
        {
            return Some(format!(
                "the hunk header {line:?} has an impossible line number"
            ));
        }
    }
    None
}

fn kill_group(pid: u32) {
    #[cfg(unix)]
    {
        // The whole group (the child leads it): a test runner's own
        // children go too.
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A multi-file unified diff, one part per file (split at `--- ` headers
/// that start a file, skipping `diff --git` and index lines).
fn split_patch(patch: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    let lines: Vec<&str> = patch.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let starts_file =
            line.starts_with("--- ") && lines.get(i + 1).is_some_and(|n| n.starts_with("+++ "));
        if starts_file && current.contains("@@") {
            parts.push(std::mem::take(&mut current));
        }
        if line.starts_with("diff --git") || line.starts_with("index ") {
            continue;
        }
        if starts_file || !current.is_empty() {
            current.push_str(line);
        }
    }
    if current.contains("@@") {
        parts.push(current);
    }
    parts
}
