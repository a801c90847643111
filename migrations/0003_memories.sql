-- llmclis schema, version 3: memory records. SQLite is the authority; the
-- vector index is derived from these rows and `memory reindex` rebuilds it.

CREATE TABLE memories (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    task_id    INTEGER REFERENCES tasks(id),
    type       TEXT NOT NULL CHECK (type IN ('raw_interaction', 'task_summary', 'project_summary',
                                             'handoff', 'design_doc', 'code_snippet')),
    agent      TEXT NOT NULL,
    text       TEXT NOT NULL CHECK (length(trim(text)) > 0),
    tokens     INTEGER NOT NULL,
    -- The memory ids a summary was made from.
    covers     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(covers)),
    -- Rolled into a summary: kept here, dropped from the index.
    compacted  INTEGER NOT NULL DEFAULT 0 CHECK (compacted IN (0, 1)),
    created_at TEXT NOT NULL
);

CREATE INDEX memories_project ON memories (project_id, type, id);
CREATE INDEX memories_task ON memories (task_id, type, id) WHERE task_id IS NOT NULL;

-- Nothing is deleted, and only the compacted flag ever changes.
CREATE TRIGGER memories_no_delete BEFORE DELETE ON memories
BEGIN SELECT RAISE(ABORT, 'memories are never deleted; compaction marks them'); END;
CREATE TRIGGER memories_content_fixed
BEFORE UPDATE OF project_id, task_id, type, agent, text, tokens, covers, created_at ON memories
BEGIN SELECT RAISE(ABORT, 'a memory''s content never changes'); END;
