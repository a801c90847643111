//! Stamps the build with the commit it came from, for `llmclis --version`:
//! from git in a checkout, from `.cargo_vcs_info.json` in a packaged crate
//! (`cargo install llmclis`), else "unknown". Never fails the build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The commit a packaged crate was made from (cargo writes its full hash).
fn packaged_commit() -> Option<String> {
    let text = std::fs::read_to_string(".cargo_vcs_info.json").ok()?;
    let at = text.find("\"sha1\"")?;
    let rest = &text[at + 6..];
    let start = rest.find('"')? + 1;
    let hash = &rest[start..start + rest[start..].find('"')?];
    Some(hash.chars().take(9).collect())
}

fn main() {
    // A new commit moves HEAD or the branch it names; both rerun this.
    for f in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    println!("cargo:rerun-if-changed=.cargo_vcs_info.json");
    let in_checkout = Path::new(".git").exists();
    let commit = in_checkout
        .then(|| git(&["rev-parse", "--short=9", "HEAD"]))
        .flatten()
        .or_else(packaged_commit)
        .unwrap_or_else(|| "unknown".into());
    let date = in_checkout
        .then(|| git(&["log", "-1", "--format=%cs"]))
        .flatten();
    let stamp = match date {
        Some(d) => format!("{commit} {d}"),
        None => commit,
    };
    println!("cargo:rustc-env=LLMCLIS_BUILD={stamp}");
}
