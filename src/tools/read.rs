//! Reading tools: read a file (the overlay first), list a directory,
//! search the tree.

use super::*;

impl Toolbox {
    pub(super) fn read_file(&self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
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

    pub(super) fn list_dir(&self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
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

    pub(super) fn search(&self, args: &Value) -> Result<ToolOutcome, ToolOutcome> {
        let pattern = arg(args, "pattern")?;
        let path = args.get("path").and_then(Value::as_str).unwrap_or(".");
        Ok(self.grep(pattern, path))
    }

    pub(super) fn grep(&self, pattern: &str, path: &str) -> ToolOutcome {
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
}
