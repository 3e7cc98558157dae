-- Sessions: one row per agent server the proxy started. Times are milliseconds since the
-- Unix epoch (UTC). Environment values are never stored, only their names. Ids sort byte by
-- byte ("C" collation), as in SQLite, whatever the database's locale.
CREATE TABLE sessions (
    id               TEXT COLLATE "C" PRIMARY KEY,
    user_id          TEXT COLLATE "C" NOT NULL,
    status           TEXT NOT NULL,
    port             INTEGER,
    pid              INTEGER,
    pid_start_ticks  BIGINT,
    tags             TEXT NOT NULL DEFAULT '{}',
    env_names        TEXT NOT NULL DEFAULT '[]',
    started_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    exit_code        INTEGER,
    exit_reason      TEXT,
    agent_status     TEXT,
    initial_message  TEXT,
    restarts         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_start ON sessions (started_at DESC, id DESC);
CREATE INDEX sessions_by_user ON sessions (user_id, started_at DESC, id DESC);
CREATE INDEX sessions_by_status ON sessions (status, started_at DESC, id DESC);

-- Tags again, one row each, so `tag.<key>=<value>` filters use an index.
CREATE TABLE session_tags (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE INDEX session_tags_by_pair ON session_tags (key, value);
