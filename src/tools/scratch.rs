//! Where commands run when writes are off: a private copy of the project
//! (the files git does not ignore, without `.git`) with the proposed change
//! written into it, so tests and checks see the change and the user's tree
//! never does. Made on the first command, then kept in step with the
//! overlay: only what changed since the last command is written again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The copy and the proposals written into it so far.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    /// Root-relative path → the content written (None: deleted).
    written: BTreeMap<PathBuf, Option<String>>,
}

impl Scratch {
    /// Copies `root` into a new temporary directory.
    pub fn copy_of(root: &Path) -> Result<Scratch, String> {
        let dir = tempfile::Builder::new()
            .prefix("llmclis-change-")
            .tempdir()
            .map_err(|e| format!("cannot make a scratch copy: {e}"))?;
        copy_tree(root, dir.path())?;
        Ok(Scratch {
            dir,
            written: BTreeMap::new(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Brings the copy to `root` with `overlay` (absolute path → proposed
    /// content) applied: what the overlay no longer proposes comes back
    /// from `root`.
    pub fn sync(
        &mut self,
        root: &Path,
        overlay: &BTreeMap<PathBuf, Option<String>>,
    ) -> Result<(), String> {
        let mut now: BTreeMap<PathBuf, Option<String>> = BTreeMap::new();
        for (abs, content) in overlay {
            let Ok(rel) = abs.strip_prefix(root) else {
                continue;
            };
            now.insert(rel.to_path_buf(), content.clone());
        }
        for rel in self.written.keys().filter(|r| !now.contains_key(*r)) {
            let (from, to) = (root.join(rel), self.dir.path().join(rel));
            if from.is_file() {
                std::fs::copy(&from, &to).map_err(|e| format!("{}: {e}", to.display()))?;
            } else {
                let _ = std::fs::remove_file(&to);
            }
        }
        for (rel, content) in &now {
            if self.written.get(rel) == Some(content) {
                continue;
            }
            let to = self.dir.path().join(rel);
            match content {
                Some(text) => {
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("{}: {e}", parent.display()))?;
                    }
                    crate::fsutil::write_atomic(&to, text.as_bytes())
                        .map_err(|e| format!("{}: {e}", to.display()))?;
                }
                None => {
                    let _ = std::fs::remove_file(&to);
                }
            }
        }
        self.written = now;
        Ok(())
    }
}

/// Copies the files of `from` that git would see (ignored ones and `.git`
/// left out), keeping their permissions.
fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let walk = ignore::WalkBuilder::new(from)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walk {
        let entry = entry.map_err(|e| e.to_string())?;
        let Ok(rel) = entry.path().strip_prefix(from) else {
            continue;
        };
        let dest = to.join(rel);
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        } else if kind.is_symlink() {
            #[cfg(unix)]
            if let Ok(target) = std::fs::read_link(entry.path()) {
                let _ = std::os::unix::fs::symlink(target, &dest);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // fixtures
mod tests {
    use super::*;

    #[test]
    fn the_copy_follows_the_overlay_and_the_tree_is_untouched() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("a.py"), "one\n").unwrap();
        std::fs::create_dir_all(r.join("pkg")).unwrap();
        std::fs::write(r.join("pkg/b.py"), "two\n").unwrap();
        std::fs::write(r.join(".gitignore"), "build/\n").unwrap();
        std::fs::create_dir_all(r.join("build")).unwrap();
        std::fs::write(r.join("build/huge.bin"), "x").unwrap();
        let mut s = Scratch::copy_of(r).unwrap();
        assert!(s.path().join("pkg/b.py").is_file());
        assert!(!s.path().join("build").exists(), "ignored files stay out");
        let mut overlay = BTreeMap::new();
        overlay.insert(r.join("a.py"), Some("changed\n".to_string()));
        overlay.insert(r.join("pkg/b.py"), None);
        overlay.insert(r.join("new/c.py"), Some("new\n".to_string()));
        s.sync(r, &overlay).unwrap();
        assert_eq!(
            std::fs::read_to_string(s.path().join("a.py")).unwrap(),
            "changed\n"
        );
        assert!(!s.path().join("pkg/b.py").exists());
        assert_eq!(
            std::fs::read_to_string(s.path().join("new/c.py")).unwrap(),
            "new\n"
        );
        // Withdrawn proposals come back from the tree.
        overlay.remove(&r.join("a.py"));
        overlay.remove(&r.join("pkg/b.py"));
        s.sync(r, &overlay).unwrap();
        assert_eq!(
            std::fs::read_to_string(s.path().join("a.py")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(s.path().join("pkg/b.py")).unwrap(),
            "two\n"
        );
        assert_eq!(std::fs::read_to_string(r.join("a.py")).unwrap(), "one\n");
        assert!(!r.join("new").exists());
    }
}
