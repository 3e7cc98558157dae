-- Leases (scale-out.md §3): the replica that watches a session's agent (`supervisor`) and
-- until when its lease holds (`lease_expires_at`, ms since the epoch). A SQLite database has
-- one server, so the PostgreSQL step's change log (revisions, tombstones, notifications)
-- has no counterpart here; the step number is kept the same in both.
ALTER TABLE sessions ADD COLUMN supervisor TEXT;
ALTER TABLE sessions ADD COLUMN lease_expires_at INTEGER;
CREATE INDEX sessions_by_supervisor ON sessions (supervisor);
-- What the backend said about a session's last end (JSON: the cluster's reason), kept with
-- the row so every replica shows it.
ALTER TABLE sessions ADD COLUMN exit_details TEXT;
-- The latest traffic to the session seen by replicas that do not supervise it (ms), for the
-- supervisor's idle timeout.
ALTER TABLE sessions ADD COLUMN last_activity INTEGER;
