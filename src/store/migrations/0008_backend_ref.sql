-- Sessions find their agent through their backend's own reference (`backend_ref`: opaque,
-- versioned JSON that only the backend reads) instead of a pid and start time, so a backend
-- whose agents are not local processes (Kubernetes) stores what it needs in the same row.
-- Rows written before are the local backend's: their pid, start time and port become its
-- version-1 reference, so agents that were running are re-adopted after the upgrade.
ALTER TABLE sessions ADD COLUMN backend_ref TEXT;
UPDATE sessions
   SET backend_ref = json_object('v', 1, 'kind', 'local', 'pid', pid,
                                 'start_ticks', pid_start_ticks, 'port', port)
 WHERE pid IS NOT NULL;
ALTER TABLE sessions DROP COLUMN pid;
ALTER TABLE sessions DROP COLUMN pid_start_ticks;
