-- llmclis schema, version 7: every tool call an executing role makes (read,
-- search, patch, run the tests …), with its step, so a task's history shows
-- what the agent did to the code.

CREATE TABLE tool_calls (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER REFERENCES runs(id),
    step_id      INTEGER REFERENCES run_steps(id),
    task_id      INTEGER NOT NULL REFERENCES tasks(id),
    tool         TEXT NOT NULL,
    arguments    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(arguments)),
    outcome      TEXT NOT NULL CHECK (outcome IN ('ok', 'error')),
    result_bytes INTEGER NOT NULL,
    -- The start of what the model read, for the history.
    result       TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE INDEX tool_calls_task ON tool_calls (task_id, id);
