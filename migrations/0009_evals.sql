-- Eval runs (`llmclis eval`): each case under each configuration, decided
-- by the case's own check, never by the model's claim. Append-only like the
-- run records: a result is written once, when its case has finished.
CREATE TABLE eval_runs (
    id          INTEGER PRIMARY KEY,
    suite       TEXT NOT NULL,
    configs     TEXT NOT NULL,   -- JSON array of configuration names
    repeat      INTEGER NOT NULL,
    agent       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT
);

CREATE TABLE eval_results (
    id                INTEGER PRIMARY KEY,
    eval_run_id       INTEGER NOT NULL REFERENCES eval_runs(id),
    case_name         TEXT NOT NULL,
    config            TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    -- solved, unsolved, protected_changed, over_tokens, timed_out, error
    outcome           TEXT NOT NULL,
    solved            INTEGER NOT NULL CHECK (solved IN (0, 1)),
    detail            TEXT NOT NULL DEFAULT '',
    steps             INTEGER NOT NULL DEFAULT 0,
    model_calls       INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    seconds           REAL NOT NULL DEFAULT 0,
    tool_calls        INTEGER NOT NULL DEFAULT 0,
    escalations       INTEGER NOT NULL DEFAULT 0,
    models            TEXT NOT NULL DEFAULT '[]',  -- JSON array: who answered
    created_at        TEXT NOT NULL
);

CREATE INDEX eval_results_by_run ON eval_results (eval_run_id, case_name, config);

CREATE TRIGGER eval_results_append_only_update BEFORE UPDATE ON eval_results
BEGIN
    SELECT RAISE(ABORT, 'eval results are append-only');
END;
