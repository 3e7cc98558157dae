-- The chat columns PostgreSQL's step 0007 lacked, so its chat tables match SQLite's step 0007
-- (SQLite's step 0009 changes nothing): which chat message started a thread's session, and
-- each follow-up's chat message id (unique per session) kept as sent once the agent had it.
-- The tables were unused on PostgreSQL until this step (chat was refused there).
ALTER TABLE chat_threads ADD COLUMN started_by TEXT NOT NULL DEFAULT '';
ALTER TABLE chat_threads ALTER COLUMN started_by DROP DEFAULT;

ALTER TABLE chat_queue ADD COLUMN message_id TEXT;
UPDATE chat_queue SET message_id = 'seq-' || seq WHERE message_id IS NULL;
ALTER TABLE chat_queue ALTER COLUMN message_id SET NOT NULL;
ALTER TABLE chat_queue ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chat_queue ADD CONSTRAINT chat_queue_session_message UNIQUE (session_id, message_id);
DROP INDEX chat_queue_by_session;
CREATE INDEX chat_queue_by_session ON chat_queue (session_id, sent, seq);
