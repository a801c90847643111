//! Codebase tools for the executing roles: read, list, search, find
//! references, write, patch, git status and diff, and allow-listed commands,
//! all inside a `Sandbox` on the project's root.
//!
//! Without `allow_writes`, writes and patches land in an overlay: later reads
//! see them, the disk does not, and `diff()` is the proposed change. Every
//! outcome is text the model reads, errors included: a refused path or a
//! patch that does not apply is an answer, not a failure of the step.
//!
//! One file per family: `read.rs` (read, list, search), `write.rs` (write,
//! patch, the diff), `run.rs` (git and allow-listed commands); `check.rs`
//! runs a task's checks, `sandbox.rs` keeps every path inside the root.

pub mod check;
mod read;
mod run;
pub mod sandbox;
mod scratch;
mod write;

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
}
