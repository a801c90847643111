-- The gateway for today's clients: prompt-cache tokens on each model call,
-- keys with limits people manage, and Responses API answers kept for
-- `previous_response_id`.

-- Of a call's prompt_tokens (always the whole input), how many were read
-- from the provider's prompt cache, and how many were written to it; each
-- is priced at the registry's cached-input rates.
ALTER TABLE model_calls ADD COLUMN cached_tokens INTEGER;
ALTER TABLE model_calls ADD COLUMN cache_write_tokens INTEGER;
-- Spend by client and period reads calls by their time.
CREATE INDEX model_calls_client_time ON model_calls (client, created_at)
    WHERE client IS NOT NULL;

-- Which models a key may use (JSON array of ids or globs; NULL: all), its
-- tokens per minute, a budget that resets each day or month (NULL: over
-- the key's life), and when it stops working. A rotated key's revoked_at
-- is set in the future: it works until then.
ALTER TABLE api_keys ADD COLUMN models TEXT;
ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER
    CHECK (tokens_per_minute IS NULL OR tokens_per_minute > 0);
ALTER TABLE api_keys ADD COLUMN budget_period TEXT
    CHECK (budget_period IS NULL OR budget_period IN ('day', 'month'));
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;

-- A Responses API answer a client may continue with previous_response_id:
-- the whole conversation it answered (input items, previous ones
-- included, as JSON) and its output items. Only the client that made it
-- can read it.
CREATE TABLE responses (
    id         TEXT PRIMARY KEY,
    client     TEXT NOT NULL,
    model      TEXT NOT NULL,
    input      TEXT NOT NULL,
    output     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
