-- Sessions find their agent through their backend's own reference (`backend_ref`: opaque,
-- versioned JSON that only the backend reads) instead of a pid and start time; as in
-- SQLite's step 0008, rows written before become the local backend's version-1 reference.
ALTER TABLE sessions ADD COLUMN backend_ref TEXT;
UPDATE sessions
   SET backend_ref = json_build_object('v', 1, 'kind', 'local', 'pid', pid,
                                       'start_ticks', pid_start_ticks, 'port', port)::text
 WHERE pid IS NOT NULL;
ALTER TABLE sessions DROP COLUMN pid;
ALTER TABLE sessions DROP COLUMN pid_start_ticks;
