-- llmclis schema, version 4: a random id for this database, so the memory
-- index of one database is never shared with another's (Edge directory,
-- Qdrant collection).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('store_id', lower(hex(randomblob(8))));
