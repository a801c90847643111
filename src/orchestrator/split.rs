//! A split written down: the planner's subtasks become tasks under the
//! task (each with the task's priority, dependencies by the planner's
//! indexes), and the note that says so. A run's split and `task expand`
//! write it the same way.

use super::machine::PlannedSubtask;
use crate::error::Result;
use crate::store::{NewTask, Store, Task};

/// Makes the subtasks (inside the caller's transaction) and returns their
/// ids and the note for the task.
pub fn write(
    s: &mut Store,
    task: &Task,
    subtasks: &[PlannedSubtask],
    reason: &str,
    agent: &str,
) -> Result<(Vec<i64>, String)> {
    let mut ids: Vec<i64> = Vec::new();
    for sub in subtasks {
        let t = s.create_task(
            NewTask {
                project_id: task.project_id,
                title: sub.title.clone(),
                description: sub.description.clone(),
                parent_id: Some(task.id),
                priority: Some(task.priority),
                // A role the planner made up is no hint.
                role: sub.role.as_deref().and_then(|r| r.parse().ok()),
                depends_on: sub.depends_on.iter().map(|i| ids[*i as usize]).collect(),
                ..Default::default()
            },
            agent,
        )?;
        ids.push(t.id);
    }
    let note = format!(
        "Split by the planner into {} subtasks ({}): {}",
        ids.len(),
        ids.iter()
            .map(|i| format!("#{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::text::head(reason, 300, " […]")
    );
    Ok((ids, note))
}
