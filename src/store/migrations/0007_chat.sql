-- Agent tokens (sessions.md §5): the SHA-256 of each session's APX_SESSION_TOKEN, so an
-- agent re-adopted after a restart keeps a token that still works.
CREATE TABLE agent_tokens (
    session_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Chat bridges (chat.md). The inbox: every incoming message, stored before it is
-- acknowledged; unique by platform and the service's event id.
CREATE TABLE chat_inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    message TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (platform, event_id)
);
CREATE INDEX chat_inbox_unprocessed ON chat_inbox (processed, seq);

-- Which session a thread belongs to now (the latest one; a later message after the
-- session ended starts a new one and replaces the row).
CREATE TABLE chat_threads (
    platform TEXT NOT NULL,
    team TEXT NOT NULL,
    channel TEXT NOT NULL,
    root TEXT NOT NULL,
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    -- The chat message that started the session (a re-processed one starts nothing).
    started_by TEXT NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, team, channel, root)
);
CREATE INDEX chat_threads_by_session ON chat_threads (session_id);

-- Messages for the agent, in order, per session: waiting until it is stable, then kept as
-- sent, so a chat message processed again (after a crash) is not sent twice.
CREATE TABLE chat_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    UNIQUE (session_id, message_id)
);
CREATE INDEX chat_queue_by_session ON chat_queue (session_id, sent, seq);

-- Replies posted, by turn: a turn's reply is posted once.
CREATE TABLE chat_turns (
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    posted_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, turn_id)
);
