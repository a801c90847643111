-- llmclis schema, version 11: a task's checks and the runs of them. A task
-- is done only when its checks pass on its change; each run of a check is
-- kept (append-only), and a done task whose last check passed is verified.

-- Commands (JSON array of strings, each run with `sh -c` in the project's
-- root as the change would leave it) and paths or globs the change must
-- not touch (JSON array).
ALTER TABLE tasks ADD COLUMN checks TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(checks));
ALTER TABLE tasks ADD COLUMN protected TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(protected));

CREATE TABLE check_runs (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks(id),
    run_id      INTEGER REFERENCES runs(id),
    step_id     INTEGER REFERENCES run_steps(id),
    -- The step's attempt: 1 for the first answer, 2 after one repair, …
    attempt     INTEGER NOT NULL,
    command     TEXT NOT NULL,
    -- NULL when it was killed at its timeout or refused before it ran.
    exit_code   INTEGER,
    passed      INTEGER NOT NULL CHECK (passed IN (0, 1)),
    seconds     REAL NOT NULL,
    -- The end of its output (tests say what failed last).
    output_tail TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX check_runs_task ON check_runs (task_id, id);

CREATE TRIGGER check_runs_no_update BEFORE UPDATE ON check_runs
BEGIN SELECT RAISE(ABORT, 'check runs are history: they are never changed'); END;
CREATE TRIGGER check_runs_no_delete BEFORE DELETE ON check_runs
BEGIN SELECT RAISE(ABORT, 'check runs are history: they are never deleted'); END;

-- An eval case's task as the pipeline left it: recorded done (whatever its
-- check says afterwards), and how many answers its check refused on the way.
ALTER TABLE eval_results ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE eval_results ADD COLUMN check_failures INTEGER NOT NULL DEFAULT 0;
