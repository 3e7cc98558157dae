-- `/search` for one user's sessions in one state (a dashboard's "my active sessions"):
-- filtered and ordered by one index, counted from it.
CREATE INDEX sessions_by_user_status ON sessions (user_id, status, started_at DESC, id DESC);
