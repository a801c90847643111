//! A plan a planner made from a requirements document, written as new
//! plans.md stages after the ones the file has: `## Stage N – Title`, its
//! goal, and its tasks with ids `SN.M` and `Depends On` fields. Existing
//! sections are never touched; the result is parsed before it is used.

use serde::Deserialize;

/// The planner's answer (`prompts/prd.md`'s schema).
#[derive(Debug, Clone, Deserialize)]
pub struct Outline {
    pub stages: Vec<OutlineStage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutlineStage {
    pub title: String,
    #[serde(default)]
    pub goal: String,
    pub tasks: Vec<OutlineTask>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutlineTask {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// 0-based indexes of earlier tasks, over the whole plan.
    #[serde(default)]
    pub depends_on: Vec<i64>,
}

/// One line, no markdown that would end the item: what a title may hold.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("**", "")
}

/// The new stages' text, numbered from `first`, and how many tasks they
/// hold. Stages and tasks without a title are left out; a dependency on a
/// task that is not earlier (or was left out) is dropped.
pub fn render(outline: &Outline, first: u32, stamp: &str, agent: &str) -> (String, usize) {
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut out = String::new();
    let mut number = first;
    let mut count = 0;
    for stage in &outline.stages {
        let title = one_line(&stage.title);
        let tasks: Vec<&OutlineTask> = stage.tasks.iter().collect();
        if title.is_empty() || !tasks.iter().any(|t| !one_line(&t.title).is_empty()) {
            ids.extend(tasks.iter().map(|_| None));
            continue;
        }
        out.push_str(&format!("\n---\n\n## Stage {number} – {title}\n\n"));
        let goal = one_line(&stage.goal);
        if !goal.is_empty() {
            out.push_str(&format!("**Goal:** {goal}\n\n"));
        }
        out.push_str("**Tasks:**\n\n");
        let mut m = 0;
        for t in tasks {
            let task_title = one_line(&t.title);
            if task_title.is_empty() {
                ids.push(None);
                continue;
            }
            m += 1;
            count += 1;
            let id = format!("S{number}.{m}");
            let deps: Vec<String> = t
                .depends_on
                .iter()
                .filter_map(|d| usize::try_from(*d).ok())
                .filter(|d| *d < ids.len())
                .filter_map(|d| ids[d].clone())
                .collect();
            out.push_str(&format!("- [ ] **{id} – {task_title}**\n"));
            let desc = one_line(&t.description);
            if !desc.is_empty() {
                out.push_str(&format!("  - **Description:** {desc}\n"));
            }
            out.push_str(&format!("  - **Created:** `{stamp}` by `{agent}`\n"));
            if !deps.is_empty() {
                out.push_str(&format!("  - **Depends On:** {}\n", deps.join(", ")));
            }
            ids.push(Some(id));
        }
        number += 1;
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_follow_the_file_and_dependencies_point_back_only() {
        let o: Outline = serde_json::from_str(
            r#"{"stages": [
              {"title": "Core", "goal": "the parser", "tasks": [
                {"title": "Lexer", "description": "tokens", "depends_on": []},
                {"title": "  ", "description": "dropped", "depends_on": []},
                {"title": "Grammar **bold**", "description": "rules\nover lines", "depends_on": [0, 3]}
              ]},
              {"title": "", "goal": "", "tasks": [{"title": "orphan", "description": "", "depends_on": []}]},
              {"title": "CLI", "goal": "", "tasks": [{"title": "Flags", "description": "", "depends_on": [2, 0]}]}
            ]}"#,
        )
        .unwrap();
        let (text, n) = render(&o, 3, "2026-12-04T00:00:00+00:00", "me");
        assert_eq!(n, 3);
        assert!(text.contains("## Stage 3 – Core"));
        assert!(
            text.contains("- [ ] **S3.2 – Grammar bold**\n  - **Description:** rules over lines\n")
        );
        assert!(text.contains("  - **Depends On:** S3.1\n"), "{text}");
        assert!(
            text.contains("## Stage 4 – CLI"),
            "an untitled stage takes no number: {text}"
        );
        assert!(text.contains("- [ ] **S4.1 – Flags**"));
        assert!(text.contains("  - **Depends On:** S3.2, S3.1\n"), "{text}");
        assert!(!text.contains("orphan"));
    }
}
