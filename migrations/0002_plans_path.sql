-- llmclis schema, version 2: a project may be linked to the plans.md it was
-- imported from; status changes then follow into that file.

ALTER TABLE projects ADD COLUMN plans_path TEXT;

CREATE UNIQUE INDEX projects_plans_path ON projects (plans_path) WHERE plans_path IS NOT NULL;
