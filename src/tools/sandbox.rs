//! Every path a model names resolves inside the project's root, or is
//! refused with a message the model sees: `..`, absolute paths, NUL bytes,
//! percent-encoded dots and slashes, and symlinks that lead out of the root.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Canonical (symlinks resolved), so containment is a prefix check.
    root: PathBuf,
}

impl Sandbox {
    pub fn new(root: &Path) -> Result<Sandbox, String> {
        let root = std::fs::canonicalize(root)
            .map_err(|e| format!("the project root {} cannot be used: {e}", root.display()))?;
        if !root.is_dir() {
            return Err(format!(
                "the project root {} is not a directory",
                root.display()
            ));
        }
        Ok(Sandbox { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path relative to the root, for messages and diffs.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Resolves a path the model gave, relative to the root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let refuse = |why: &str| {
            Err(format!(
                "path {path:?} refused: {why}; give a path relative to the project root"
            ))
        };
        if path.contains('\0') {
            return refuse("it contains a NUL byte");
        }
        let lower = path.to_ascii_lowercase();
        if ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
        {
            return refuse("it contains percent-encoded dots or separators");
        }
        // Backslashes count as separators too: `..\\x` is a climb on Windows
        // and a confusion everywhere else.
        let normal = path.replace('\\', "/");
        let p = Path::new(&normal);
        if p.is_absolute() || normal.starts_with('~') || normal.get(1..2) == Some(":") {
            return refuse("it is absolute");
        }
        for c in p.components() {
            match c {
                // Git's own files run commands (hooks, fsmonitor, filters).
                Component::Normal(n) if n.eq_ignore_ascii_case(".git") => {
                    return refuse("git's own directory is off limits");
                }
                Component::ParentDir => return refuse("it climbs out with `..`"),
                Component::Prefix(_) | Component::RootDir => return refuse("it is absolute"),
                Component::CurDir | Component::Normal(_) => {}
            }
        }
        let joined = self.root.join(p);
        // Symlinks: the deepest part that exists, resolved, must stay inside.
        let mut existing = joined.as_path();
        let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
        let resolved = loop {
            match std::fs::canonicalize(existing) {
                Ok(c) => break c,
                Err(_) => match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name);
                        existing = parent;
                    }
                    _ => return refuse("it cannot be resolved"),
                },
            }
        };
        if !resolved.starts_with(&self.root) {
            return refuse("it leads out of the project root (a symlink)");
        }
        let mut out = resolved;
        for name in rest.into_iter().rev() {
            out.push(name);
        }
        Ok(out)
    }
}
