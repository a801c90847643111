//! The layering the architecture promises, checked on the sources. The
//! front ends (the command line, the board, MCP, serve) reach the rest of
//! llmclis only through the application layer (`crate::app`, and the types
//! it re-exports), plus the crate's shared vocabulary (its `Error` and
//! `Result`, `describe`'s text helpers, `logging`, `fsutil`'s atomic
//! writes). Nothing but the entry
//! point imports the command line, and serve and MCP do not import each
//! other. Paths are read as Rust resolves them: grouped and nested `use`
//! trees, `super::` and `self::`, and paths written inline in code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The module path of a source file: `cli/memory.rs` → [cli, memory];
/// `cli/mod.rs` → [cli].
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// The code without comments and string literals (a path in a doc
/// comment or a message is not an import).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '/' if b.get(i + 1) == Some(&'/') => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '/' if b.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            'r' if b.get(i + 1) == Some(&'#')
                || (b.get(i + 1) == Some(&'"') && (i == 0 || !b[i - 1].is_alphanumeric())) =>
            {
                // A raw string: r"…" or r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&'"') {
                    out.push(b[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            '"' => {
                i += 1;
                while i < b.len() && b[i] != '"' {
                    if b[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            '\'' if b.get(i + 2) == Some(&'\'') || (b.get(i + 1) == Some(&'\\')) => {
                // A char literal ('"', '\n'); lifetimes ('a) pass through.
                let mut j = i + 1;
                if b.get(j) == Some(&'\\') {
                    j += 1;
                }
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Expands a `use` tree (`crate::{a, b::{c, d as e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    // `Task as T`: the alias goes (whitespace goes next).
    let tree = tree.replace(" as ", "@");
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        if let Some(open) = t.find('{') {
            let head = &t[..open];
            let inner = &t[open + 1..t.rfind('}').unwrap_or(t.len())];
            let mut depth = 0;
            let mut start = 0;
            let mut parts = Vec::new();
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&inner[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&inner[start..]);
            for p in parts.into_iter().filter(|p| !p.is_empty()) {
                go(&format!("{prefix}{head}"), p, out);
            }
        } else {
            let t = t.split('@').next().unwrap_or(t);
            let t = t.trim_end_matches("::*");
            let full = format!("{prefix}{t}");
            out.push(full.trim_end_matches("::self").to_string());
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// The code without its `#[cfg(test)]` modules: a unit test may set up
/// what it needs from any layer.
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('{') else {
            rest = "";
            break;
        };
        if !after[..open].contains("mod ") {
            out.push_str("#[cfg(test)]");
            rest = &after["#[cfg(test)]".len()..];
            continue;
        }
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every crate path a file names, resolved to an absolute module path
/// (`crate::…` segments after the crate), from its `use` items and from
/// paths written inline (`crate::store::Store::open(…)`).
fn paths_in(rel: &str, text: &str) -> BTreeSet<Vec<String>> {
    let module = module_of(rel);
    let code = without_tests(&code_only(text));
    let mut raw: Vec<String> = Vec::new();
    // `use` items, which may span lines.
    let mut rest = code.as_str();
    while let Some(at) = find_use(rest) {
        let after = &rest[at..];
        let end = after.find(';').unwrap_or(after.len());
        raw.extend(expand(&after[..end]));
        rest = &after[end.min(after.len())..];
    }
    // Inline paths.
    for (i, _) in code.match_indices("::") {
        let start = code[..i]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |s| s + 1);
        let end = code[i..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(code.len(), |e| i + e);
        let path = &code[start..end];
        if path.starts_with("crate::")
            || path.starts_with("super::")
            || path.starts_with("llmclis::")
        {
            raw.push(path.trim_end_matches("::").to_string());
        }
    }
    let mut out = BTreeSet::new();
    for p in raw {
        let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let resolved: Option<Vec<String>> = match segs.first() {
            Some(&"crate") | Some(&"llmclis") => {
                Some(segs[1..].iter().map(|s| s.to_string()).collect())
            }
            Some(&"super") => {
                let mut base = module.clone();
                let mut k = 0;
                while segs.get(k) == Some(&"super") {
                    base.pop();
                    k += 1;
                }
                base.extend(segs[k..].iter().map(|s| s.to_string()));
                Some(base)
            }
            Some(&"self") => {
                let mut base = module.clone();
                base.extend(segs[1..].iter().map(|s| s.to_string()));
                Some(base)
            }
            _ => None,
        };
        if let Some(r) = resolved.filter(|r| !r.is_empty()) {
            out.insert(r);
        }
    }
    out
}

/// The byte offset just after the next `use ` keyword that starts an item.
fn find_use(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("use ") {
        let at = from + i;
        let before = s[..at].chars().last();
        if before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ';' || c == '}' || c == ')')
        {
            return Some(at + 4);
        }
        from = at + 4;
    }
    None
}

const FRONT_ENDS: [&str; 4] = ["cli", "tui", "serve", "mcp"];
/// Features that sit above the application layer beside the front ends
/// (`eval` runs the orchestrator's loop on fixed cases under set-ups it
/// builds itself): only the command line starts them, nothing below
/// imports them.
const HARNESSES: [&str; 1] = ["eval"];
/// The crate's shared vocabulary, open to every layer.
const SHARED: [&str; 7] = [
    "error", "Error", "Result", "describe", "logging", "fsutil", "text",
];

/// Why `module` (a front end's file) may not name `path`, if it may not.
fn refused(module: &[String], path: &[String]) -> Option<&'static str> {
    let me = module.first()?.as_str();
    let top = path.first()?.as_str();
    if top == me || top == "app" || SHARED.contains(&top) {
        return None;
    }
    if top == "cli" {
        return Some("only the entry point imports the command line");
    }
    // The command line starts the other front ends; they never import one
    // another (serve and MCP share the app, not each other).
    if me == "cli" && (FRONT_ENDS.contains(&top) || HARNESSES.contains(&top)) {
        return None;
    }
    if FRONT_ENDS.contains(&top) {
        return Some("front ends share the application layer, not each other");
    }
    Some("a front end reaches the lower layers through crate::app")
}

/// Why `module` (below the front ends) may not name `path`: nothing but
/// the entry point imports the command line, and no lower layer imports a
/// front end or a harness.
fn upward(module: &[String], path: &[String]) -> Option<&'static str> {
    let me = module.first()?.as_str();
    let top = path.first()?.as_str();
    if top == "cli" {
        return Some("only the entry point imports the command line");
    }
    if (HARNESSES.contains(&top) || FRONT_ENDS.contains(&top)) && !HARNESSES.contains(&me) {
        return Some("a lower layer never imports a front end or a harness above it");
    }
    None
}

/// Every place a front end names a lower layer (or another front end).
fn offenders() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for file in sources(&src) {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let module = module_of(&rel);
        let text = std::fs::read_to_string(&file).unwrap();
        for path in paths_in(&rel, &text) {
            let why = if module
                .first()
                .is_some_and(|m| FRONT_ENDS.contains(&m.as_str()))
            {
                refused(&module, &path)
            } else {
                upward(&module, &path)
            };
            if let Some(why) = why {
                out.push(format!("src/{rel}: crate::{} ({why})", path.join("::")));
            }
        }
    }
    out
}

#[test]
fn the_parser_reads_grouped_nested_super_and_inline_paths() {
    let text = r#"
        use crate::{app, store::{Store, Task as T}, memory::*};
        use super::progress::Bar;
        use self::inner::Thing;
        // use crate::orchestrator::run; (a comment)
        fn f() {
            let s = "crate::docs::sync"; // a string
            crate::router::route_role(1);
            let _ = llmclis::llm::Message::user("x");
        }
    "#;
    let got: Vec<String> = paths_in("cli/memory.rs", text)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        got,
        [
            "app",
            "cli::memory::inner::Thing",
            "cli::progress::Bar",
            "llm::Message::user",
            "memory",
            "router::route_role",
            "store::Store",
            "store::Task",
        ]
    );
    let tested =
        "fn f() {}\n#[cfg(test)]\nmod tests {\n use super::*;\n use crate::store::Store;\n}\n";
    assert!(
        paths_in("tui/app.rs", tested).is_empty(),
        "unit tests are skipped"
    );
    assert_eq!(
        module_of("tui/mod.rs"),
        ["tui"],
        "mod.rs is its directory's module"
    );
}

#[test]
fn each_forbidden_kind_of_import_is_refused() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    // A lower layer, grouped or nested: refused.
    for text in [
        "use crate::{app, store::Store};",
        "use crate::{app::{self}, orchestrator::run::{self, Options}};",
        "fn f() { crate::docs::sync::import(); }",
    ] {
        let paths = paths_in("tui/worker.rs", text);
        assert!(
            paths
                .iter()
                .any(|p| refused(&m("tui::worker"), p).is_some()),
            "{text}: {paths:?}"
        );
    }
    // super:: out of a front end lands in the crate root: refused.
    let paths = paths_in("serve/chat.rs", "use super::super::llm::Caller;");
    assert!(
        paths
            .iter()
            .any(|p| refused(&m("serve::chat"), p).is_some()),
        "{paths:?}"
    );
    // serve importing MCP, MCP importing serve: refused.
    assert!(refused(&m("serve"), &m("mcp::tools")).is_some());
    assert!(refused(&m("mcp"), &m("serve")).is_some());
    // The application layer, the shared vocabulary, its own modules: fine.
    for ok in [
        "app::tasks",
        "error::Result",
        "Error",
        "describe::short",
        "tui::ui",
    ] {
        assert_eq!(refused(&m("tui::app"), &m(ok)), None, "{ok}");
    }
    // The command line may start the other front ends and the harnesses;
    // no other front end may.
    assert_eq!(refused(&m("cli"), &m("tui::run")), None);
    assert_eq!(refused(&m("cli"), &m("eval::run_case")), None);
    assert!(refused(&m("serve"), &m("eval::run_case")).is_some());
    // Below the front ends: nothing imports them, the harnesses or the
    // command line; the harnesses may use the layers below.
    assert!(upward(&m("app::types"), &m("eval::Setup")).is_some());
    assert!(upward(&m("orchestrator::run"), &m("mcp::Agent")).is_some());
    assert!(upward(&m("store"), &m("cli::Ctx")).is_some());
    assert_eq!(upward(&m("eval"), &m("orchestrator::run")), None);
    assert_eq!(upward(&m("app::tasks"), &m("store::Store")), None);
    assert!(refused(&m("tui"), &m("cli::main")).is_some());
}

/// The front ends' direct reaches past the application layer, each named;
/// `cargo test layering -- --nocapture` prints the count by front end.
#[test]
fn front_ends_go_through_the_application_layer() {
    let found = offenders();
    let mut by_front: std::collections::BTreeMap<&str, usize> = Default::default();
    for o in &found {
        let f = FRONT_ENDS
            .iter()
            .find(|f| o.starts_with(&format!("src/{f}/")) || o.starts_with(&format!("src/{f}.rs")))
            .copied()
            .unwrap_or("other");
        *by_front.entry(f).or_default() += 1;
    }
    println!(
        "layering: {} direct reaches past crate::app: {by_front:?}",
        found.len()
    );
    assert!(
        found.is_empty(),
        "front ends go through crate::app (and lower layers import nothing above them):\n{}",
        found.join("\n")
    );
}

/// The file a module path names: the longest prefix that is a source file
/// (`store::tasks::Foo` → store/tasks.rs; `memory` → memory/mod.rs).
fn file_of(files: &BTreeSet<String>, path: &[String]) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let p = path[..n].join("/");
        for cand in [format!("{p}.rs"), format!("{p}/mod.rs")] {
            if files.contains(&cand) {
                return Some(cand);
            }
        }
    }
    None
}

/// Strongly connected groups of more than one file in the import graph of
/// `sources` (path relative to src/, text), each sorted, the groups sorted.
/// A child using its parent `mod.rs` is the module tree, not an import.
/// Each file's resolved imports, as indexes into the file list (a parent
/// `mod.rs` named by its own children aside: that is the module tree).
fn import_graph(sources: &[(String, String)]) -> (Vec<String>, Vec<BTreeSet<usize>>) {
    let files: Vec<String> = sources.iter().map(|(f, _)| f.clone()).collect();
    let set: BTreeSet<String> = files.iter().cloned().collect();
    let index: std::collections::HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), i))
        .collect();
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (i, (rel, text)) in sources.iter().enumerate() {
        for path in paths_in(rel, text) {
            if let Some(to) = file_of(&set, &path).and_then(|f| index.get(f.as_str()).copied())
                && to != i
                && !(files[to].ends_with("mod.rs")
                    && rel.starts_with(files[to].trim_end_matches("mod.rs")))
            {
                edges[i].insert(to);
            }
        }
    }
    (files, edges)
}

/// Every file `from` reaches through its imports, itself included.
fn reachable(sources: &[(String, String)], from: &str) -> BTreeSet<String> {
    let (files, edges) = import_graph(sources);
    let mut seen = BTreeSet::new();
    let mut todo: Vec<usize> = files.iter().position(|f| f == from).into_iter().collect();
    while let Some(v) = todo.pop() {
        if seen.insert(v) {
            todo.extend(edges[v].iter().copied());
        }
    }
    seen.into_iter().map(|i| files[i].clone()).collect()
}

fn cycles_in(sources: &[(String, String)]) -> Vec<Vec<String>> {
    let (files, edges) = import_graph(sources);
    // Tarjan's algorithm.
    struct T<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in t.edges[v].iter() {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                t.out.push(group);
            }
        }
    }
    let n = files.len();
    let mut t = T {
        edges: &edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    let mut groups: Vec<Vec<String>> = t
        .out
        .into_iter()
        .map(|g| {
            let mut g: Vec<String> = g.into_iter().map(|i| files[i].clone()).collect();
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_not_the_module_tree() {
    let src = |f: &str, t: &str| (f.to_string(), t.to_string());
    let found = cycles_in(&[
        src("a.rs", "use crate::b::B;"),
        src("b.rs", "fn f() { crate::c::g(); }"),
        src("c.rs", "use super::a::A;"),
        src("d/mod.rs", "pub use self::e::E;"),
        src("d/e.rs", "use super::D;"),
        src("f.rs", "use crate::a::A;"),
    ]);
    assert_eq!(found, [["a.rs", "b.rs", "c.rs"]]);
}

/// No file reaches, through its imports, a file that reaches it back (a
/// parent `mod.rs` and its children aside).
/// Every source file of the crate, by its path under src/, with its text.
fn crate_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    sources(&root)
        .iter()
        .map(|f| {
            (
                f.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read_to_string(f).unwrap(),
            )
        })
        .collect()
}

/// The router decides from data: it reaches no network, process or
/// database code, so a routing decision never waits and is tested pure.
#[test]
fn the_router_reaches_no_io() {
    let reached = reachable(&crate_sources(), "router.rs");
    let io: Vec<&String> = reached
        .iter()
        .filter(|f| {
            f.as_str() == "net.rs"
                || f.starts_with("llm/")
                || f.starts_with("store/")
                || f.as_str() == "endpoints.rs"
                || [
                    "servers.rs",
                    "gpu.rs",
                    "system.rs",
                    "watch.rs",
                    "control.rs",
                ]
                .iter()
                .any(|x| f.as_str() == format!("resources/{x}"))
        })
        .collect();
    assert!(
        io.is_empty(),
        "router.rs reaches IO through its imports: {io:?} (all it reaches: {reached:?})"
    );
    // The finder does follow imports: the router reaches its placement data.
    assert!(reached.contains("resources/placement.rs"), "{reached:?}");
}

#[test]
fn there_are_no_import_cycles() {
    let sources = crate_sources();
    let found = cycles_in(&sources);
    assert!(
        found.is_empty(),
        "import cycles (break them with a lower module both sides use):\n{}",
        found
            .iter()
            .map(|g| g.join(" → "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
