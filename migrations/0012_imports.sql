-- llmclis schema, version 12: tasks that came from another tool (Task
-- Master, beads). Each row maps the other tool's id to the task it became,
-- so importing again updates in place and never duplicates, and keeps the
-- item as it was last imported, so an export gives back the fields llmclis
-- does not model (an assignee, a design note, created_at).

CREATE TABLE imports (
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    source      TEXT NOT NULL CHECK (source IN ('taskmaster', 'beads')),
    -- Task Master's tag ('master' by default); '' for beads.
    scope       TEXT NOT NULL DEFAULT '',
    -- The other tool's id: '12', '12.3' (a subtask), 'bd-a1b2'.
    ext_id      TEXT NOT NULL,
    task_id     INTEGER NOT NULL REFERENCES tasks(id),
    original    TEXT NOT NULL CHECK (json_valid(original)),
    imported_at TEXT NOT NULL,
    PRIMARY KEY (project_id, source, scope, ext_id)
);
CREATE UNIQUE INDEX imports_task ON imports (task_id);
