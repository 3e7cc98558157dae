-- Agent tokens (sessions.md §5) and the chat bridges' tables (chat.md), as SQLite's step
-- 0007: the SHA-256 of each session's APX_SESSION_TOKEN; the inbox (stored before an event
-- is acknowledged, unique by platform and event id); which session a thread belongs to; the
-- follow-ups queued per session; the replies posted, by turn.
CREATE TABLE agent_tokens (
    session_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE chat_inbox (
    seq BIGSERIAL PRIMARY KEY,
    platform TEXT NOT NULL,
    event_id TEXT NOT NULL,
    message TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (platform, event_id)
);
CREATE INDEX chat_inbox_unprocessed ON chat_inbox (processed, seq);

CREATE TABLE chat_threads (
    platform TEXT NOT NULL,
    team TEXT NOT NULL,
    channel TEXT NOT NULL,
    root TEXT NOT NULL,
    session_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    started_by TEXT NOT NULL,
    ended INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, team, channel, root)
);
CREATE INDEX chat_threads_by_session ON chat_threads (session_id);

CREATE TABLE chat_queue (
    seq BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    UNIQUE (session_id, message_id)
);
CREATE INDEX chat_queue_by_session ON chat_queue (session_id, sent, seq);

CREATE TABLE chat_turns (
    session_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, turn_id)
);
