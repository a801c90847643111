//! `plans.md`, `issues.md` and `research.md`: readers that keep every byte,
//! edits that touch only the lines they must, and file updates that never
//! clobber a concurrent change. The grammar is in docs/plan-files.md.
//!
//! Edits are byte splices on the original text, never a re-render, so a file
//! read and written with no change is byte-identical.

pub mod catchup;
pub mod check;
pub mod follow;
pub mod import;
pub mod issues;
pub mod outline;
pub mod plans;
pub mod prd;
pub mod research;
pub mod sync;

use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic_then;

/// One splice: replace `range` of the source with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: Range<usize>,
    pub text: String,
}

impl Edit {
    pub fn replace(range: Range<usize>, text: impl Into<String>) -> Edit {
        Edit {
            range,
            text: text.into(),
        }
    }

    pub fn insert(at: usize, text: impl Into<String>) -> Edit {
        Edit {
            range: at..at,
            text: text.into(),
        }
    }
}

/// Applies non-overlapping edits (in any order) to `text`.
pub fn splice(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let mut out =
        String::with_capacity(text.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut at = 0;
    for e in edits {
        debug_assert!(e.range.start >= at, "overlapping edits");
        out.push_str(&text[at..e.range.start]);
        out.push_str(&e.text);
        at = e.range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where the content of `range` ends: after the last line that is neither
/// blank nor a thematic break (`---`), so new text goes before the rule that
/// closes a section.
pub fn end_of_content(text: &str, range: Range<usize>) -> usize {
    let mut end = range.start;
    let mut pos = range.start;
    for line in text[range].split_inclusive('\n') {
        let t = line.trim();
        let rule = t.len() >= 3
            && (t.chars().all(|c| c == '-' || c == ' ')
                || t.chars().all(|c| c == '*' || c == ' ')
                || t.chars().all(|c| c == '_' || c == ' '));
        pos += line.len();
        if !t.is_empty() && !rule {
            end = pos;
        }
    }
    end
}

/// The newline a file uses, so inserted lines match it.
pub fn newline_of(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

/// The timestamp written into the files: ISO 8601 with the local offset,
/// to the second (`2026-11-21T03:05:00+00:00`).
pub fn stamp_now() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A readable error about a file, with its line.
pub fn doc_error(path: &Path, text: &str, at: usize, message: impl Into<String>) -> Error {
    Error::Document {
        path: path.to_path_buf(),
        line: outline::line_of(text, at),
        message: message.into(),
    }
}

/// Reads a plan file, refusing what is not UTF-8 with the line of the first bad byte.
pub fn read_doc(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        Error::Document {
            path: path.to_path_buf(),
            line,
            message: "not valid UTF-8; save the file as UTF-8".into(),
        }
    })
}

/// What `update_file` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Unchanged,
    Written,
    /// The file changed on disk while we worked; our edit was re-applied to
    /// the new content.
    Merged,
}

/// Applies `transform` to the file and writes the result atomically, under
/// the file's lock from the read to the rename: llmclis processes take
/// turns, so one never sees another's edit as a conflict. A program that
/// takes no lock (an editor) can still change the file between our read
/// and our write: if its change touched other lines, the transform runs
/// again on the new content (a merge); if it touched the same lines,
/// nothing is written and a conflict is reported.
pub fn update_file(
    path: &Path,
    mut transform: impl FnMut(&str) -> Result<String>,
) -> Result<Written> {
    let mut lock = FileLock::acquire(path)?;
    let mut merged = false;
    for _ in 0..8 {
        let base = read_doc(path)?;
        let ours = transform(&base)?;
        if ours == base {
            return Ok(if merged {
                Written::Merged
            } else {
                Written::Unchanged
            });
        }
        let current = read_doc(path)?;
        if current == base {
            write_atomic_then(path, ours.as_bytes(), || {
                crate::crashpoint::here("plans_write")
            })?;
            drop(lock);
            return Ok(if merged {
                Written::Merged
            } else {
                Written::Written
            });
        }
        if let Some(line) = overlapping_change(&base, &ours, &current) {
            return Err(Error::Conflict {
                path: path.to_path_buf(),
                message: format!(
                    "line {line} was changed by another program while llmclis edited it; their version is kept, run the command again to apply yours on top"
                ),
            });
        }
        merged = true;
        // The other program may have replaced the file (a rename): the
        // lock is taken again on the file as it is now.
        drop(lock);
        lock = FileLock::acquire(path)?;
    }
    drop(lock);
    Err(Error::Conflict {
        path: path.to_path_buf(),
        message: "the file keeps changing while llmclis edits it; try again".into(),
    })
}

/// The first line of `base` (1-based) that both `ours` and `theirs` changed,
/// if any. Insertions count as touching the line they follow.
fn overlapping_change(base: &str, ours: &str, theirs: &str) -> Option<usize> {
    // (range widened by one line each side, the line their change starts at)
    let touched = |other: &str| -> Vec<(Range<usize>, usize)> {
        similar::TextDiff::from_lines(base, other)
            .ops()
            .iter()
            .filter(|op| !matches!(op, similar::DiffOp::Equal { .. }))
            .map(|op| {
                let r = op.old_range();
                // A pure insertion touches the line before it and the one after.
                (r.start.saturating_sub(1)..(r.end + 1), r.start)
            })
            .collect()
    };
    let ours = touched(ours);
    touched(theirs).into_iter().find_map(|(y, first)| {
        ours.iter()
            .any(|(x, _)| x.start.max(y.start) < x.end.min(y.end))
            .then_some(first + 1)
    })
}

/// An exclusive OS lock (flock) on the file itself, so two llmclis
/// processes never interleave their check-and-write. The kernel releases it
/// when its holder exits or dies: no lock file outlives a process and no
/// staleness is guessed. A writer replaces the file by a rename, so a waiter
/// that wakes up holding the lock of the replaced file tries again on the
/// new one.
struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    fn acquire(target: &Path) -> Result<FileLock> {
        loop {
            let file = std::fs::File::open(target).map_err(|e| Error::io(target, e))?;
            file.lock().map_err(|e| Error::io(target, e))?;
            if same_file(&file, target) {
                // A writer killed between writing and renaming left its
                // temporary file; the lock says no live writer owns one now.
                crate::fsutil::remove_dead_temps(target);
                remove_legacy_lock(target);
                return Ok(FileLock { _file: file });
            }
        }
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, _path: &Path) -> bool {
    true
}

/// Versions before OS locks kept a `.NAME.lock` file beside the plan file,
/// and a killed process left it behind; it means nothing now.
fn remove_legacy_lock(target: &Path) {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = std::fs::remove_file(target.with_file_name(format!(".{name}.lock")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github() {
        assert_eq!(
            anchor("KM-001: Orchestrator SQLite Integration"),
            "km-001-orchestrator-sqlite-integration"
        );
        assert_eq!(anchor("Orchestrator and CrewAI"), "orchestrator-and-crewai");
        assert_eq!(anchor("Next-Task Selection"), "next-task-selection");
    }

    #[test]
    fn splice_applies_in_position_order() {
        let out = splice(
            "abcdef",
            vec![
                Edit::replace(4..5, "E"),
                Edit::insert(0, ">"),
                Edit::replace(1..2, ""),
            ],
        );
        assert_eq!(out, ">acdEf");
    }

    #[test]
    fn overlap_is_found_only_on_shared_lines() {
        let base = "a\nb\nc\nd\ne\nf\n";
        assert_eq!(
            overlapping_change(base, "a\nB\nc\nd\ne\nf\n", "a\nb\nc\nd\ne\nF\n"),
            None
        );
        assert_eq!(
            overlapping_change(base, "a\nB\nc\nd\ne\nf\n", "a\nb2\nc\nd\ne\nf\n"),
            Some(2)
        );
    }
}
