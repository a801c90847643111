-- llmclis schema, version 1.
-- Migrations are append-only: never edit a released file, add the next one.
-- Times are UTC text, '%Y-%m-%dT%H:%M:%S.mmmZ', so they sort as strings.

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(trim(name)) > 0),
    description TEXT NOT NULL DEFAULT '',
    root        TEXT,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY,
    project_id       INTEGER NOT NULL REFERENCES projects(id),
    parent_id        INTEGER REFERENCES tasks(id),
    external_ref     TEXT,
    title            TEXT NOT NULL CHECK (length(trim(title)) > 0),
    description      TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'in-progress', 'done', 'blocked')),
    priority         INTEGER NOT NULL DEFAULT 2,
    role             TEXT,
    tags             TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    created_at       TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_agent       TEXT,
    last_updated_at  TEXT,
    claimed_by       TEXT,
    lease_expires_at TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Derived columns, kept by the triggers below so that picking the next
    -- task is one index seek instead of a scan of the whole project.
    dep_count        INTEGER NOT NULL DEFAULT 0,  -- dependencies in total
    unmet_deps       INTEGER NOT NULL DEFAULT 0,  -- dependencies not done
    open_children    INTEGER NOT NULL DEFAULT 0,  -- subtasks not done
    parent_status    TEXT,                        -- the parent's status, NULL without one
    UNIQUE (project_id, external_ref)
);

CREATE INDEX tasks_project_status ON tasks (project_id, status);
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- The ready queue: pending, every dependency and subtask done, parent not
-- blocked; ordered subtasks-of-in-progress-parents first, then priority,
-- then fewer dependencies, then id. Queries must repeat the WHERE terms
-- verbatim for SQLite to use these partial indexes.
CREATE INDEX tasks_ready ON tasks
    (project_id, (parent_status IS 'in-progress') DESC, priority DESC, dep_count, id)
    WHERE status = 'pending' AND unmet_deps = 0 AND open_children = 0
      AND parent_status IS NOT 'blocked';
CREATE INDEX tasks_ready_any ON tasks
    ((parent_status IS 'in-progress') DESC, priority DESC, dep_count, id)
    WHERE status = 'pending' AND unmet_deps = 0 AND open_children = 0
      AND parent_status IS NOT 'blocked';

CREATE TABLE task_deps (
    task_id    INTEGER NOT NULL REFERENCES tasks(id),
    depends_on INTEGER NOT NULL REFERENCES tasks(id),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (task_id, depends_on),
    CHECK (task_id != depends_on)
) WITHOUT ROWID;

CREATE INDEX task_deps_reverse ON task_deps (depends_on, task_id);

CREATE TABLE task_notes (
    id         INTEGER PRIMARY KEY,
    task_id    INTEGER NOT NULL REFERENCES tasks(id),
    agent      TEXT NOT NULL,
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX task_notes_task ON task_notes (task_id, id);

-- Every status change and edit. History is never deleted.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id),
    task_id     INTEGER REFERENCES tasks(id),
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    agent       TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at  TEXT NOT NULL
);

CREATE INDEX events_task ON events (task_id, id);
CREATE INDEX events_project ON events (project_id, id);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER REFERENCES projects(id),
    agent       TEXT NOT NULL,
    mode        TEXT,
    status      TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'interrupted', 'failed')),
    max_steps   INTEGER,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    summary     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(summary))
);

CREATE TABLE model_calls (
    id                INTEGER PRIMARY KEY,
    run_id            INTEGER REFERENCES runs(id),
    task_id           INTEGER REFERENCES tasks(id),
    role              TEXT NOT NULL,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    tokens_estimated  INTEGER NOT NULL DEFAULT 0 CHECK (tokens_estimated IN (0, 1)),
    latency_ms        INTEGER,
    cost_usd          REAL NOT NULL DEFAULT 0,
    outcome           TEXT NOT NULL,
    error             TEXT,
    prompt            TEXT,
    response          TEXT,
    created_at        TEXT NOT NULL
);

CREATE INDEX model_calls_task ON model_calls (task_id, id);
CREATE INDEX model_calls_run ON model_calls (run_id, id);

-- Append-only tables refuse updates and deletes, whoever writes.
CREATE TRIGGER task_notes_no_update BEFORE UPDATE ON task_notes
BEGIN SELECT RAISE(ABORT, 'task notes are append-only'); END;
CREATE TRIGGER task_notes_no_delete BEFORE DELETE ON task_notes
BEGIN SELECT RAISE(ABORT, 'task notes are append-only'); END;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

-- Derived columns. Store code never changes parent_id and status in one
-- statement, so each trigger sees one kind of change.
CREATE TRIGGER task_deps_insert AFTER INSERT ON task_deps
BEGIN
    UPDATE tasks
       SET dep_count = dep_count + 1,
           unmet_deps = unmet_deps
               + (SELECT status IS NOT 'done' FROM tasks WHERE id = NEW.depends_on)
     WHERE id = NEW.task_id;
END;

CREATE TRIGGER task_deps_delete AFTER DELETE ON task_deps
BEGIN
    UPDATE tasks
       SET dep_count = dep_count - 1,
           unmet_deps = unmet_deps
               - (SELECT status IS NOT 'done' FROM tasks WHERE id = OLD.depends_on)
     WHERE id = OLD.task_id;
END;

CREATE TRIGGER tasks_insert_child AFTER INSERT ON tasks
WHEN NEW.parent_id IS NOT NULL
BEGIN
    UPDATE tasks SET parent_status = (SELECT status FROM tasks WHERE id = NEW.parent_id)
     WHERE id = NEW.id;
    UPDATE tasks SET open_children = open_children + (NEW.status IS NOT 'done')
     WHERE id = NEW.parent_id;
END;

CREATE TRIGGER tasks_status_change AFTER UPDATE OF status ON tasks
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE tasks
       SET unmet_deps = unmet_deps + (CASE WHEN NEW.status = 'done' THEN -1 ELSE 1 END)
     WHERE (OLD.status = 'done') != (NEW.status = 'done')
       AND id IN (SELECT task_id FROM task_deps WHERE depends_on = NEW.id);
    UPDATE tasks
       SET open_children = open_children + (CASE WHEN NEW.status = 'done' THEN -1 ELSE 1 END)
     WHERE (OLD.status = 'done') != (NEW.status = 'done')
       AND id = NEW.parent_id;
    UPDATE tasks SET parent_status = NEW.status WHERE parent_id = NEW.id;
END;

CREATE TRIGGER tasks_parent_change AFTER UPDATE OF parent_id ON tasks
WHEN OLD.parent_id IS NOT NEW.parent_id
BEGIN
    UPDATE tasks SET open_children = open_children - (NEW.status IS NOT 'done')
     WHERE id = OLD.parent_id;
    UPDATE tasks SET open_children = open_children + (NEW.status IS NOT 'done')
     WHERE id = NEW.parent_id;
    UPDATE tasks SET parent_status = (SELECT status FROM tasks WHERE id = NEW.parent_id)
     WHERE id = NEW.id;
END;
