//! Task Master's `tasks.json`: the tagged layout (`{"master": {"tasks":
//! [...], "metadata": {...}}, "feature-x": {...}}`) and the older one
//! (`{"tasks": [...]}`, read as the `master` tag). A task has `id`,
//! `title`, `description`, `details`, `testStrategy`, `status`, `priority`,
//! `dependencies` and `subtasks`; a subtask's numeric dependency names a
//! sibling (`3` in task 12 is `12.3`), a dotted one names any subtask.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Exported, Item, Parsed, as_command, text, with_sections};
use crate::store::Status;

/// The tag the older layout's tasks belong to.
pub const DEFAULT_TAG: &str = "master";

fn status_in(s: &str) -> Option<Status> {
    Some(match s {
        "pending" => Status::Pending,
        "in-progress" | "review" => Status::InProgress,
        "done" | "completed" => Status::Done,
        // Not done and not to be started: a task waiting on them waits in
        // Task Master too.
        "blocked" | "deferred" | "cancelled" => Status::Blocked,
        _ => return None,
    })
}

/// The status Task Master gets back: the one it had when that still means
/// the task's status here, else the plain one.
fn status_out(status: Status, original: Option<&Value>) -> String {
    let before = original.and_then(|o| o["status"].as_str());
    if let Some(b) = before
        && status_in(b) == Some(status)
    {
        return b.to_string();
    }
    match status {
        Status::Pending => "pending",
        Status::InProgress => "in-progress",
        Status::Done => "done",
        Status::Blocked => "blocked",
    }
    .to_string()
}

fn priority_in(p: Option<&str>) -> Option<i64> {
    match p.unwrap_or("medium") {
        "low" => Some(1),
        "medium" => Some(2),
        "high" => Some(3),
        "critical" => Some(4),
        _ => None,
    }
}

fn priority_out(p: i64) -> &'static str {
    match p {
        i64::MIN..=1 => "low",
        2 => "medium",
        _ => "high",
    }
}

/// An id as text: `12` whether the file wrote `12` or `"12"`.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// The tags and their task lists, in the file's order.
fn tags(doc: &Value) -> Result<Vec<(String, &Vec<Value>)>, String> {
    if let Some(tasks) = doc.get("tasks").and_then(Value::as_array) {
        return Ok(vec![(DEFAULT_TAG.to_string(), tasks)]);
    }
    let obj = doc
        .as_object()
        .ok_or("the file is not a JSON object: expected {\"master\": {\"tasks\": [...]}} or {\"tasks\": [...]}")?;
    let found: Vec<(String, &Vec<Value>)> = obj
        .iter()
        .filter_map(|(tag, v)| Some((tag.clone(), v.get("tasks")?.as_array()?)))
        .collect();
    if found.is_empty() && !obj.is_empty() {
        return Err("no tag in the file has a \"tasks\" list".into());
    }
    Ok(found)
}

/// Reads a tasks.json; `only` keeps one tag.
pub fn parse(text_in: &str, only: Option<&str>) -> Result<Parsed, String> {
    let doc: Value = serde_json::from_str(text_in)
        .map_err(|e| format!("not JSON at line {}, column {}: {e}", e.line(), e.column()))?;
    let mut out = Parsed::default();
    let all = tags(&doc)?;
    if let Some(t) = only
        && !all.iter().any(|(tag, _)| tag == t)
    {
        let names: Vec<&str> = all.iter().map(|(t, _)| t.as_str()).collect();
        return Err(format!(
            "no tag {t:?} in the file; its tags: {}",
            names.join(", ")
        ));
    }
    for (tag, tasks) in all {
        if only.is_some_and(|t| t != tag) {
            continue;
        }
        for (n, task) in tasks.iter().enumerate() {
            let Some(id) = task.get("id").and_then(id_text) else {
                out.warnings
                    .push(format!("{tag}: task #{} has no id; skipped", n + 1));
                continue;
            };
            let deps: Vec<String> = task
                .get("dependencies")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(id_text).collect())
                .unwrap_or_default();
            let parent_deps = deps.clone();
            let mut original = task.clone();
            // Subtasks are items of their own.
            if let Some(o) = original.as_object_mut() {
                o.remove("subtasks");
            }
            out.items.push(item(
                &tag,
                &id,
                None,
                task,
                deps,
                original,
                &mut out.warnings,
            ));
            for sub in task
                .get("subtasks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(sid) = sub.get("id").and_then(id_text) else {
                    out.warnings
                        .push(format!("{tag}: a subtask of task {id} has no id; skipped"));
                    continue;
                };
                let key = format!("{id}.{sid}");
                let mut deps: Vec<String> = sub
                    .get("dependencies")
                    .and_then(Value::as_array)
                    .map(|d| {
                        d.iter()
                            .filter_map(id_text)
                            .map(|d| {
                                if d.contains('.') {
                                    d
                                } else {
                                    format!("{id}.{d}")
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                // What the task waits for, its subtasks wait for too (Task
                // Master offers none of them before it); `write` leaves
                // these out again.
                for d in &parent_deps {
                    if !deps.contains(d) {
                        deps.push(d.clone());
                    }
                }
                // A subtask without a priority has its task's, as Task
                // Master reads it; the file's text is kept as it was.
                let mut read = sub.clone();
                if read.get("priority").is_none()
                    && let (Some(p), Some(o)) = (task.get("priority"), read.as_object_mut())
                {
                    o.insert("priority".into(), p.clone());
                }
                out.items.push(item(
                    &tag,
                    &key,
                    Some(&id),
                    &read,
                    deps,
                    sub.clone(),
                    &mut out.warnings,
                ));
            }
        }
    }
    Ok(out)
}

fn item(
    tag: &str,
    key: &str,
    parent: Option<&str>,
    v: &Value,
    depends_on: Vec<String>,
    original: Value,
    warnings: &mut Vec<String>,
) -> Item {
    let raw_status = v.get("status").and_then(Value::as_str).unwrap_or("pending");
    let status = status_in(raw_status).unwrap_or_else(|| {
        warnings.push(format!(
            "{tag}: task {key} has status {raw_status:?}, read as pending"
        ));
        Status::Pending
    });
    let raw_priority = v.get("priority").and_then(Value::as_str);
    let priority = priority_in(raw_priority).unwrap_or_else(|| {
        warnings.push(format!(
            "{tag}: task {key} has priority {:?}, read as medium",
            raw_priority.unwrap_or("")
        ));
        2
    });
    let (description, check) = description_of(v);
    let mut title = text(v, "title");
    if title.is_empty() {
        title = format!("Task {key}");
    }
    Item {
        scope: tag.to_string(),
        key: key.to_string(),
        parent: parent.map(str::to_string),
        title,
        description,
        status,
        priority,
        tags: if tag == DEFAULT_TAG {
            Vec::new()
        } else {
            vec![tag.to_string()]
        },
        depends_on,
        checks: check.into_iter().collect(),
        original,
    }
}

/// A task's description as llmclis holds it (its description, details and
/// a prose test strategy), and the check a command test strategy becomes.
fn description_of(v: &Value) -> (String, Option<String>) {
    let strategy = text(v, "testStrategy");
    let check = as_command(&strategy);
    let prose = if check.is_some() {
        String::new()
    } else {
        strategy
    };
    let description = with_sections(
        text(v, "description"),
        &[("Details", text(v, "details")), ("Test strategy", prose)],
    );
    (description, check)
}

/// Writes tasks as a tagged tasks.json. Tasks that came from Task Master
/// keep their ids and the fields llmclis does not model; the others get
/// the next free ids. A task nested deeper than Task Master's two levels
/// becomes a subtask of its top-level ancestor.
pub fn write(tag: &str, tasks: &[Exported<'_>]) -> String {
    let by_id: BTreeMap<i64, &Exported<'_>> = tasks.iter().map(|e| (e.task.id, e)).collect();
    let top_of = |mut id: i64| {
        while let Some(p) = by_id.get(&id).and_then(|e| e.task.parent_id)
            && by_id.contains_key(&p)
        {
            id = p;
        }
        id
    };
    // Task Master ids: kept when imported, else the next free ones.
    let mut next_top = tasks
        .iter()
        .filter_map(|e| e.key.as_deref()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let mut tm_id: BTreeMap<i64, String> = BTreeMap::new();
    for e in tasks.iter().filter(|e| top_of(e.task.id) == e.task.id) {
        let id = e
            .key
            .clone()
            .filter(|k| !k.contains('.'))
            .unwrap_or_else(|| {
                next_top += 1;
                next_top.to_string()
            });
        tm_id.insert(e.task.id, id);
    }
    let mut next_sub: BTreeMap<String, u64> = BTreeMap::new();
    for e in tasks.iter() {
        if let Some(k) = &e.key
            && let Some((p, s)) = k.split_once('.')
            && let Ok(s) = s.parse::<u64>()
        {
            let n = next_sub.entry(p.to_string()).or_default();
            *n = (*n).max(s);
        }
    }
    for e in tasks.iter().filter(|e| top_of(e.task.id) != e.task.id) {
        let parent = tm_id[&top_of(e.task.id)].clone();
        let id = match e.key.as_deref().and_then(|k| k.split_once('.')) {
            Some((p, s)) if p == parent => format!("{p}.{s}"),
            _ => {
                let n = next_sub.entry(parent.clone()).or_default();
                *n += 1;
                format!("{parent}.{n}")
            }
        };
        tm_id.insert(e.task.id, id);
    }
    let number = |s: &str| -> Value {
        s.parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(s))
    };
    let fill = |e: &Exported<'_>, id: Value, deps: Vec<Value>, inherited: Option<i64>| -> Value {
        let t = e.task;
        let mut o: Map<String, Value> = e
            .original
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        o.insert("id".into(), id);
        o.insert("title".into(), json!(t.title));
        // The description as imported held details and the test strategy
        // too: it goes back only when it was changed here.
        let imported = e.original.map(|v| description_of(v).0);
        if imported.as_deref() != Some(t.description.as_str()) {
            o.insert("description".into(), json!(t.description));
        }
        if e.original.is_none() {
            o.insert("details".into(), json!(""));
        }
        if !t.checks.is_empty() {
            let checks = t.checks.join(" && ");
            let before = o.get("testStrategy").and_then(Value::as_str).unwrap_or("");
            let prose = !before.trim().is_empty() && as_command(before).is_none();
            // A prose strategy stays; a command one follows the checks.
            if !prose && as_command(before).as_deref() != Some(checks.as_str()) {
                o.insert("testStrategy".into(), json!(format!("`{checks}`")));
            }
        }
        o.insert("status".into(), json!(status_out(t.status, e.original)));
        // A subtask that had no priority and still has its task's gets none.
        if !(inherited == Some(t.priority)
            && e.original.is_some_and(|v| v.get("priority").is_none()))
        {
            o.insert("priority".into(), json!(priority_out(t.priority)));
        }
        o.insert("dependencies".into(), Value::Array(deps));
        Value::Object(o)
    };
    let mut out_tasks: Vec<Value> = Vec::new();
    let mut index: BTreeMap<i64, usize> = BTreeMap::new();
    for e in tasks.iter().filter(|e| top_of(e.task.id) == e.task.id) {
        let deps = e
            .task
            .depends_on
            .iter()
            .filter_map(|d| tm_id.get(d))
            .map(|d| number(d))
            .collect();
        let mut v = fill(e, number(&tm_id[&e.task.id]), deps, None);
        v["subtasks"] = json!([]);
        index.insert(e.task.id, out_tasks.len());
        out_tasks.push(v);
    }
    for e in tasks.iter().filter(|e| top_of(e.task.id) != e.task.id) {
        let top = top_of(e.task.id);
        let parent = &tm_id[&top];
        let id = &tm_id[&e.task.id];
        let sub_id = id.split_once('.').map_or(id.as_str(), |(_, s)| s);
        let inherited = &by_id[&top].task.depends_on;
        let deps = e
            .task
            .depends_on
            .iter()
            .filter(|d| !inherited.contains(d))
            .filter_map(|d| tm_id.get(d))
            .map(|d| match d.split_once('.') {
                // A sibling by its number, as Task Master writes them.
                Some((p, s)) if p == parent => number(s),
                _ => json!(d),
            })
            .collect();
        let mut v = fill(e, number(sub_id), deps, Some(by_id[&top].task.priority));
        if let Some(o) = v.as_object_mut() {
            o.remove("subtasks");
        }
        out_tasks[index[&top]]["subtasks"]
            .as_array_mut()
            .expect("made above")
            .push(v);
    }
    let doc = json!({ tag: {
        "tasks": out_tasks,
        "metadata": {
            "created": chrono::Utc::now().to_rfc3339(),
            "description": format!("Tasks exported by llmclis {}", env!("CARGO_PKG_VERSION")),
        }
    }});
    serde_json::to_string_pretty(&doc).expect("JSON values serialize") + "\n"
}
