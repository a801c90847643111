//! Writing tools: write a file, apply a patch (hunk by hunk, each checked),
//! and the change they make as a diff. Without `allow_writes` they land in
//! the overlay.

use super::*;

impl Toolbox {
    /// Records a file's first content, then writes (or proposes) the new
    /// one; `None` deletes it.
    pub(super) fn put(&mut self, path: PathBuf, content: Option<String>) -> Result<(), String> {
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

    pub(super) fn write_file(&mut self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
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
    pub(super) fn apply_patch(&mut self, patch: &str) -> ToolOutcome {
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
}

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
