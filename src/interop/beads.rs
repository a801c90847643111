//! beads' `.beads/issues.jsonl`: one issue per line (`id`, `title`,
//! `description`, `design`, `acceptance_criteria`, `status` open |
//! in_progress | blocked | closed | tombstone, `priority` 0 (highest) to 4,
//! `issue_type`, `labels`, `dependencies` [{issue_id, depends_on_id,
//! type: blocks | parent-child | related | discovered-from}]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{Exported, Item, Parsed, text, with_sections};
use crate::store::Status;

fn status_in(s: &str) -> Option<Status> {
    Some(match s {
        "open" => Status::Pending,
        "in_progress" => Status::InProgress,
        "blocked" => Status::Blocked,
        "closed" => Status::Done,
        _ => return None,
    })
}

fn status_out(status: Status) -> &'static str {
    match status {
        Status::Pending => "open",
        Status::InProgress => "in_progress",
        Status::Blocked => "blocked",
        Status::Done => "closed",
    }
}

/// beads' 0 (most urgent) to 4 as llmclis's critical (4) to 0.
fn priority_in(p: i64) -> i64 {
    4 - p.clamp(0, 4)
}

fn priority_out(p: i64) -> i64 {
    4 - p.clamp(0, 4)
}

/// An issue's description as llmclis holds it: its description, design
/// and acceptance criteria.
fn description_of(v: &Value) -> String {
    with_sections(
        text(v, "description"),
        &[
            ("Design", text(v, "design")),
            ("Acceptance criteria", text(v, "acceptance_criteria")),
        ],
    )
}

/// Reads issues.jsonl. A tombstone (a deleted issue) is left out.
pub fn parse(text_in: &str) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut seen = BTreeSet::new();
    for (n, line) in text_in.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not a JSON issue: {e}", n + 1))?;
        let Some(id) = v.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Err(format!("line {}: the issue has no \"id\"", n + 1));
        };
        if !seen.insert(id.clone()) {
            out.warnings
                .push(format!("line {}: {id} again; the later line wins", n + 1));
            out.items.retain(|i| i.key != id);
        }
        let raw = v.get("status").and_then(Value::as_str).unwrap_or("open");
        if raw == "tombstone" {
            continue;
        }
        let status = status_in(raw).unwrap_or_else(|| {
            out.warnings.push(format!(
                "line {}: {id} has status {raw:?}, read as pending",
                n + 1
            ));
            Status::Pending
        });
        let mut parent = None;
        let mut depends_on = Vec::new();
        for d in v
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(on) = d.get("depends_on_id").and_then(Value::as_str) else {
                continue;
            };
            match d.get("type").and_then(Value::as_str).unwrap_or("blocks") {
                "blocks" => depends_on.push(on.to_string()),
                "parent-child" => parent = Some(on.to_string()),
                // related, discovered-from: links, not order.
                _ => {}
            }
        }
        let description = description_of(&v);
        let tags = v
            .get("labels")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut title = text(&v, "title");
        if title.is_empty() {
            title = id.clone();
        }
        out.items.push(Item {
            scope: String::new(),
            key: id,
            parent,
            title,
            description,
            status,
            priority: priority_in(v.get("priority").and_then(Value::as_i64).unwrap_or(2)),
            tags,
            depends_on,
            checks: Vec::new(),
            original: v,
        });
    }
    // Parents first, so each is made before the items inside it.
    let by_key: BTreeMap<&str, &Item> = out.items.iter().map(|i| (i.key.as_str(), i)).collect();
    let depth = |i: &Item| {
        let mut d = 0;
        let mut p = i.parent.as_deref();
        while let Some(k) = p {
            let Some(up) = by_key.get(k) else { break };
            d += 1;
            if d > by_key.len() {
                break;
            }
            p = up.parent.as_deref();
        }
        d
    };
    let depths: Vec<usize> = out.items.iter().map(depth).collect();
    drop(by_key);
    let mut order: Vec<usize> = (0..out.items.len()).collect();
    order.sort_by_key(|&i| depths[i]);
    let items = std::mem::take(&mut out.items);
    let mut slots: Vec<Option<Item>> = items.into_iter().map(Some).collect();
    out.items = order.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok(out)
}

/// Writes tasks as issues.jsonl. Issues that came from beads keep their
/// ids and every field llmclis does not model; the others get `llm-<id>`.
pub fn write(tasks: &[Exported<'_>]) -> String {
    let id_of: BTreeMap<i64, String> = tasks
        .iter()
        .map(|e| {
            (
                e.task.id,
                e.key
                    .clone()
                    .unwrap_or_else(|| format!("llm-{}", e.task.id)),
            )
        })
        .collect();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut out = String::new();
    for e in tasks {
        let t = e.task;
        let mut o: Map<String, Value> = e
            .original
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let id = &id_of[&t.id];
        o.insert("id".into(), json!(id));
        o.insert("title".into(), json!(t.title));
        let imported = e.original.map(description_of);
        if imported.as_deref() != Some(t.description.as_str()) {
            o.insert("description".into(), json!(t.description));
        }
        let status = status_out(t.status);
        let was_closed = o.get("status").and_then(Value::as_str) == Some("closed");
        o.insert("status".into(), json!(status));
        if status == "closed" && !was_closed {
            o.insert("closed_at".into(), json!(now));
        } else if status != "closed" {
            o.remove("closed_at");
        }
        o.insert("priority".into(), json!(priority_out(t.priority)));
        o.entry("issue_type").or_insert(json!("task"));
        o.entry("created_at").or_insert(json!(t.created_at));
        o.insert("updated_at".into(), json!(t.updated_at));
        if t.tags.is_empty() {
            o.remove("labels");
        } else {
            o.insert("labels".into(), json!(t.tags));
        }
        // Dependencies llmclis models are written from the task; the links
        // it does not (related, discovered-from) stay. The file's order and
        // records (who made each, when) are kept; new ones go last.
        let before: Vec<Value> = o
            .get("dependencies")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kind_of = |d: &Value| {
            d.get("type")
                .and_then(Value::as_str)
                .unwrap_or("blocks")
                .to_string()
        };
        let on_of = |d: &Value| {
            d.get("depends_on_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut wanted: Vec<(String, &str)> = Vec::new();
        if let Some(p) = t.parent_id.and_then(|p| id_of.get(&p)) {
            wanted.push((p.clone(), "parent-child"));
        }
        for d in t.depends_on.iter().filter_map(|d| id_of.get(d)) {
            wanted.push((d.clone(), "blocks"));
        }
        let modeled = |k: &str| k == "blocks" || k == "parent-child";
        let mut deps: Vec<Value> = before
            .iter()
            .filter(|d| {
                let k = kind_of(d);
                !modeled(&k) || wanted.iter().any(|(on, w)| *on == on_of(d) && *w == k)
            })
            .cloned()
            .collect();
        for (on, kind) in &wanted {
            if !before
                .iter()
                .any(|d| on_of(d) == *on && kind_of(d) == *kind)
            {
                deps.push(json!({"issue_id": id, "depends_on_id": on, "type": kind,
                                 "created_at": t.created_at, "created_by": "llmclis"}));
            }
        }
        if deps.is_empty() {
            o.remove("dependencies");
        } else {
            o.insert("dependencies".into(), Value::Array(deps));
        }
        out.push_str(&Value::Object(o).to_string());
        out.push('\n');
    }
    out
}
