-- The gateway (`llmclis serve`): the keys its clients present, and which
-- client made each model call.

-- A key is shown once, when it is made; only its SHA-256 is kept. Revoking
-- sets revoked_at (the row stays, so old calls still name their client).
CREATE TABLE api_keys (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    -- The key's first characters, so a list tells keys apart.
    prefix              TEXT NOT NULL,
    budget_usd          REAL CHECK (budget_usd IS NULL OR budget_usd >= 0),
    requests_per_minute INTEGER CHECK (requests_per_minute IS NULL OR requests_per_minute > 0),
    created_at          TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    revoked_at          TEXT
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

ALTER TABLE model_calls ADD COLUMN client TEXT;
CREATE INDEX model_calls_client ON model_calls (client, id) WHERE client IS NOT NULL;
