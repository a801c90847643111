-- llmclis schema, version 8: everything derived from the store catches up
-- after a crash.
--
-- doc_outbox: the plan-file work a committed change implies. A trigger adds
-- a row in the same transaction as the status change or note, so no change
-- can commit without it; whoever comes next (the writer itself, the next
-- command on the project) reconciles the task's lines in plans.md and
-- issues.md with the store, which is idempotent, and marks the row applied.

CREATE TABLE doc_outbox (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    task_id    INTEGER NOT NULL REFERENCES tasks(id),
    -- Who made the change and when: the files are stamped with these, so
    -- an edit applied late reads as it would have on time.
    agent      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    applied_at TEXT
);

CREATE INDEX doc_outbox_pending ON doc_outbox (project_id, id) WHERE applied_at IS NULL;

CREATE TRIGGER doc_outbox_status AFTER INSERT ON events
WHEN NEW.task_id IS NOT NULL AND NEW.to_status IS NOT NULL
 AND (SELECT plans_path FROM projects WHERE id = NEW.project_id) IS NOT NULL
 AND (SELECT external_ref FROM tasks WHERE id = NEW.task_id) IS NOT NULL
BEGIN
    INSERT INTO doc_outbox (project_id, task_id, agent, created_at)
    VALUES (NEW.project_id, NEW.task_id, NEW.agent, NEW.created_at);
END;

CREATE TRIGGER doc_outbox_note AFTER INSERT ON task_notes
WHEN (SELECT external_ref FROM tasks WHERE id = NEW.task_id) IS NOT NULL
 AND (SELECT p.plans_path FROM projects p JOIN tasks t ON t.project_id = p.id
       WHERE t.id = NEW.task_id) IS NOT NULL
BEGIN
    INSERT INTO doc_outbox (project_id, task_id, agent, created_at)
    SELECT project_id, NEW.task_id, NEW.agent, NEW.created_at FROM tasks WHERE id = NEW.task_id;
END;

-- Memories know whether the vector index has them, and keep their vector,
-- so catching the index up after a crash re-embeds nothing.
ALTER TABLE memories ADD COLUMN vector BLOB;
ALTER TABLE memories ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0 CHECK (indexed IN (0, 1));

CREATE INDEX memories_unindexed ON memories (id) WHERE indexed = 0 AND compacted = 0;
CREATE INDEX memories_compacted_indexed ON memories (id) WHERE indexed = 1 AND compacted = 1;

-- A run says it is alive: its process, its host and a heartbeat. A run
-- whose heartbeat stopped (or whose process is gone) is closed by the next
-- one as interrupted, and its open steps as lost.
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
