-- llmclis schema, version 5: the orchestrator's records. A run has steps (one
-- task each); every model call names its step and what it was for, so a
-- task's history can be replayed call by call.

ALTER TABLE runs ADD COLUMN workers INTEGER;

CREATE TABLE run_steps (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    task_id     INTEGER NOT NULL REFERENCES tasks(id),
    step        INTEGER NOT NULL,
    agent       TEXT NOT NULL,
    role        TEXT,
    rule        TEXT,
    -- NULL while the step runs; 'lost' when the claim ran out under it.
    outcome     TEXT CHECK (outcome IN ('done', 'blocked', 'split', 'released', 'failed', 'lost')),
    model       TEXT,
    rounds      INTEGER NOT NULL DEFAULT 0,
    cost_usd    REAL NOT NULL DEFAULT 0,
    detail      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    started_at  TEXT NOT NULL,
    finished_at TEXT
);

CREATE INDEX run_steps_run ON run_steps (run_id, id);
CREATE INDEX run_steps_task ON run_steps (task_id, id);

-- plan, execute, sample, vote, critique, summarize, handoff
ALTER TABLE model_calls ADD COLUMN purpose TEXT;
ALTER TABLE model_calls ADD COLUMN step_id INTEGER REFERENCES run_steps(id);

CREATE INDEX model_calls_step ON model_calls (step_id, id) WHERE step_id IS NOT NULL;
