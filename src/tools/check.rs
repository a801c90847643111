//! A task's checks: each command run with `sh -c` where the change is (the
//! project's root with writes on, else the scratch copy with the proposed
//! change in it), in the tools' sandbox (the process group killed at the
//! timeout, the output capped, no API keys in the environment); and the
//! protected paths a change must not touch. The orchestrator and `eval`
//! decide with this one runner.

use std::path::PathBuf;

use serde::Serialize;

use super::Toolbox;

/// One check's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRun {
    pub command: String,
    /// None: killed at the timeout (or by a signal), or it could not start.
    pub exit_code: Option<i32>,
    pub passed: bool,
    pub seconds: f64,
    /// Its output, the end kept (what a test run says last matters most).
    pub output: String,
}

/// How much of a check's output is kept with its record and shown to the
/// model: the end.
pub const TAIL_BYTES: usize = 4_000;

impl Toolbox {
    /// Runs `command` with `sh -c` where the change is.
    pub fn run_check(&self, command: &str) -> CheckRun {
        let argv = vec!["sh".to_string(), "-c".to_string(), command.to_string()];
        let r = match self.exec_dir() {
            Ok(dir) => self.spawn(&dir, &argv),
            Err(e) => {
                return CheckRun {
                    command: command.to_string(),
                    exit_code: None,
                    passed: false,
                    seconds: 0.0,
                    output: e,
                };
            }
        };
        let mut output = tail(&r.output, TAIL_BYTES);
        if r.killed {
            output.push_str(&format!(
                "\n[killed after the {} s timeout]",
                self.timeout.as_secs_f64()
            ));
        }
        CheckRun {
            command: command.to_string(),
            exit_code: r.exit,
            passed: r.started && !r.killed && r.exit == Some(0),
            seconds: r.seconds,
            output,
        }
    }

    /// The files the change touches, relative to the root, sorted.
    pub fn changed_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .originals
            .iter()
            .filter(|(path, original)| self.current(path).ok().as_ref() != Some(*original))
            .map(|(path, _)| self.sandbox.relative(path))
            .collect();
        out.sort();
        out
    }

    /// Puts files (relative paths) back as they were before the change.
    pub fn revert(&mut self, paths: &[String]) -> Result<(), String> {
        for rel in paths {
            let abs: PathBuf = self.sandbox.root().join(rel);
            if let Some(original) = self.originals.get(&abs).cloned() {
                self.put(abs, original)?;
            }
        }
        Ok(())
    }
}

/// The paths of `changed` that a pattern of `protected` covers: a path
/// (`test_mathx.py`, `tests/`) or a glob (`tests/**`, `*.lock`).
pub fn touched(protected: &[String], changed: &[String]) -> Result<Vec<String>, String> {
    let mut set = globset::GlobSetBuilder::new();
    for p in protected {
        let p = p.trim().trim_start_matches("./");
        let dir = p.trim_end_matches('/');
        for pattern in [dir.to_string(), format!("{dir}/**")] {
            set.add(
                globset::GlobBuilder::new(&pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("protected path {p:?}: {e}"))?,
            );
        }
    }
    let set = set.build().map_err(|e| e.to_string())?;
    Ok(changed
        .iter()
        .filter(|c| set.is_match(c.as_str()))
        .cloned()
        .collect())
}

/// The last `max` bytes of `text`, at a character boundary, marked when
/// cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let at = text.ceil_char_boundary(text.len() - max);
    format!("[… {at} bytes cut]\n{}", &text[at..])
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixtures
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn toolbox(writes: bool) -> (tempfile::TempDir, Toolbox) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("code.py"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("test_code.py"), "assert True\n").unwrap();
        let t = Toolbox::new(
            dir.path(),
            writes,
            BTreeMap::new(),
            Duration::from_secs(2),
            4_096,
        )
        .unwrap();
        (dir, t)
    }

    #[test]
    fn a_check_sees_the_proposed_change_and_the_tree_does_not() {
        let (dir, mut t) = toolbox(false);
        let r = t.run_check("grep -q 'x = 2' code.py");
        assert!(!r.passed && r.exit_code == Some(1), "{r:?}");
        t.call(
            "write_file",
            &serde_json::json!({"path": "code.py", "content": "x = 2\n"}),
        );
        let r = t.run_check("grep -q 'x = 2' code.py");
        assert!(r.passed, "{r:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("code.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(t.changed_paths(), ["code.py"]);
    }

    #[test]
    fn a_hung_check_is_killed_at_its_timeout_with_its_output_kept() {
        let (_dir, t) = toolbox(true);
        let r = t.run_check("echo started; sleep 30");
        assert!(!r.passed && r.exit_code.is_none(), "{r:?}");
        assert!(
            r.output.contains("started") && r.output.contains("timeout"),
            "{r:?}"
        );
        assert!(r.seconds < 10.0);
    }

    #[test]
    fn protected_paths_and_globs_are_matched_and_reverted() {
        let (dir, mut t) = toolbox(true);
        t.call(
            "write_file",
            &serde_json::json!({"path": "test_code.py", "content": "pass\n"}),
        );
        t.call(
            "write_file",
            &serde_json::json!({"path": "code.py", "content": "x = 3\n"}),
        );
        let changed = t.changed_paths();
        assert_eq!(
            touched(&["test_*.py".into()], &changed).unwrap(),
            ["test_code.py"]
        );
        assert_eq!(
            touched(&["tests/".into(), "code.py".into()], &changed).unwrap(),
            ["code.py"]
        );
        assert!(touched(&["docs/**".into()], &changed).unwrap().is_empty());
        t.revert(&["test_code.py".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("test_code.py")).unwrap(),
            "assert True\n"
        );
        assert_eq!(t.changed_paths(), ["code.py"]);
    }

    #[test]
    fn the_tail_keeps_the_end() {
        assert_eq!(tail("short", 10), "short");
        let t = tail(&"é".repeat(100), 11);
        assert!(t.ends_with("ééééé") && t.starts_with("[…"), "{t}");
    }
}
