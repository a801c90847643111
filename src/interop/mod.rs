//! Other task tools' files, read into llmclis's terms and written back:
//! Task Master's `.taskmaster/tasks/tasks.json` (`taskmaster.rs`) and
//! beads' `.beads/issues.jsonl` (`beads.rs`). Pure: text in, items out,
//! items and tasks in, text out. `app::interop` does the store side.

pub mod beads;
pub mod taskmaster;

use serde_json::Value;

use crate::store::Status;

/// The tools llmclis reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    TaskMaster,
    Beads,
}

impl Source {
    /// The name kept in the store (`imports.source`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::TaskMaster => "taskmaster",
            Source::Beads => "beads",
        }
    }
}

/// One item from another tool, in llmclis's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Task Master's tag (`master` by default); empty for beads.
    pub scope: String,
    /// The tool's own id: `12`, `12.3` (a subtask), `bd-a1b2`.
    pub key: String,
    /// The key of the item it is part of.
    pub parent: Option<String>,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: i64,
    pub tags: Vec<String>,
    /// Keys of the items that must be done first (same scope).
    pub depends_on: Vec<String>,
    /// Commands that decide it is done (a Task Master test strategy that is
    /// a command).
    pub checks: Vec<String>,
    /// The item as the file has it, kept so an export gives back what
    /// llmclis does not model.
    pub original: Value,
}

/// What a file held, and what in it could not be taken as it was.
#[derive(Debug, Default)]
pub struct Parsed {
    pub items: Vec<Item>,
    pub warnings: Vec<String>,
}

/// A task as an export sees it: the task, the key it had in the other
/// tool (when it came from there) and the item as last imported.
#[derive(Debug, Clone)]
pub struct Exported<'t> {
    pub task: &'t crate::store::Task,
    pub key: Option<String>,
    pub original: Option<&'t Value>,
}

/// A string field, trimmed; empty when absent.
fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `description`, then each non-empty section as `Head:\nbody`, a blank
/// line between: how llmclis holds the other tool's longer fields.
fn with_sections(mut description: String, sections: &[(&str, String)]) -> String {
    for (head, body) in sections {
        if !body.is_empty() {
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str(&format!("{head}:\n{body}"));
        }
    }
    description
}

/// A test strategy that is a command to run, not prose: `` `cargo test` ``,
/// `$ npm test`, or one line that starts with a test runner.
pub fn as_command(text: &str) -> Option<String> {
    let t = text.trim();
    if t.is_empty() || t.contains('\n') {
        return None;
    }
    let t = t.strip_prefix("$ ").unwrap_or(t);
    if let Some(inner) = t.strip_prefix('`').and_then(|s| s.strip_suffix('`'))
        && !inner.contains('`')
        && !inner.trim().is_empty()
    {
        return Some(inner.trim().to_string());
    }
    const RUNNERS: [&str; 24] = [
        "cargo",
        "npm",
        "pnpm",
        "yarn",
        "npx",
        "bun",
        "deno",
        "pytest",
        "python",
        "python3",
        "make",
        "go",
        "just",
        "uv",
        "tox",
        "dotnet",
        "mvn",
        "gradle",
        "./gradlew",
        "sh",
        "bash",
        "node",
        "ruby",
        "rspec",
    ];
    let first = t.split_whitespace().next()?;
    // Words commands do not have and sentences do ("make sure the …").
    const PROSE: [&str; 14] = [
        "the", "a", "an", "that", "should", "sure", "ensure", "verify", "works", "and", "is",
        "are", "be", "it",
    ];
    let prose = t.ends_with('.')
        || t.contains(": ")
        || t.split_whitespace()
            .any(|w| PROSE.contains(&w.to_ascii_lowercase().as_str()));
    (!prose && (RUNNERS.contains(&first) || first.starts_with("./"))).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::as_command;

    #[test]
    fn a_command_is_told_from_prose() {
        assert_eq!(
            as_command("`cargo test -p x`").as_deref(),
            Some("cargo test -p x")
        );
        assert_eq!(as_command("$ npm test").as_deref(), Some("npm test"));
        assert_eq!(
            as_command("pytest tests/test_api.py -q").as_deref(),
            Some("pytest tests/test_api.py -q")
        );
        assert_eq!(
            as_command("./scripts/check.sh").as_deref(),
            Some("./scripts/check.sh")
        );
        assert_eq!(as_command("Run the unit tests and check the output."), None);
        assert_eq!(as_command("make sure the login works"), None);
        assert_eq!(as_command("Verify: cargo test passes"), None);
        assert_eq!(as_command("cargo test\nthen npm test"), None);
        assert_eq!(as_command(""), None);
    }
}
