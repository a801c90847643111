-- llmclis schema, version 6: deleting a task hides it, keeping its history.
-- A deleted task is closed (status done, so nothing waits for it) and
-- `deleted_at` is set; lists and counts leave it out, its events and notes
-- stay. Only a task nothing depends on and with no live subtasks can go.

ALTER TABLE tasks ADD COLUMN deleted_at TEXT;
