-- Leases (scale-out.md §3), as SQLite's step 0009: the replica that watches a session's
-- agent (`supervisor`) and until when its lease holds (`lease_expires_at`, ms since the
-- epoch, the database's clock).
ALTER TABLE sessions ADD COLUMN supervisor TEXT;
ALTER TABLE sessions ADD COLUMN lease_expires_at BIGINT;
CREATE INDEX sessions_by_supervisor ON sessions (supervisor);
-- What the backend said about a session's last end (JSON: the cluster's reason), kept with
-- the row so every replica shows it.
ALTER TABLE sessions ADD COLUMN exit_details TEXT;
-- The latest traffic to the session seen by replicas that do not supervise it (ms), for the
-- supervisor's idle timeout.
ALTER TABLE sessions ADD COLUMN last_activity BIGINT;

-- PostgreSQL only (several replicas share it; SQLite has one server, so no change log):
-- every insert and update of a session takes a new `revision` from one sequence, every
-- delete leaves a tombstone with one, so a replica reads what others changed since the
-- revision it last saw; and each change is announced on channel `apx_changes` (ids and
-- kinds, never secrets) with the writer's `application_name` (its replica id) as origin.
CREATE SEQUENCE session_revisions;
-- The volatile default numbers the existing rows; afterwards the trigger sets it.
ALTER TABLE sessions ADD COLUMN revision BIGINT NOT NULL DEFAULT nextval('session_revisions');
ALTER TABLE sessions ALTER COLUMN revision DROP DEFAULT;
CREATE INDEX sessions_by_revision ON sessions (revision);

CREATE TABLE session_tombstones (
    id          TEXT COLLATE "C" NOT NULL,
    revision    BIGINT NOT NULL,
    deleted_at  BIGINT NOT NULL
);
CREATE INDEX session_tombstones_by_revision ON session_tombstones (revision);
CREATE INDEX session_tombstones_by_age ON session_tombstones (deleted_at);

-- NOT NULL is checked after BEFORE triggers, so inserts need not name `revision`. A lease
-- renewal alone (only `lease_expires_at` moves), like an activity report (`last_activity`),
-- is no change other replicas follow: it keeps its revision and is not announced, or every
-- renewal would make every replica re-read every live session.
CREATE FUNCTION apx_session_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'lease_expires_at' - 'last_activity' - 'revision')
           = (to_jsonb(OLD) - 'lease_expires_at' - 'last_activity' - 'revision') THEN
        NEW.revision := OLD.revision;
    ELSE
        NEW.revision := nextval('session_revisions');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sessions_take_revision BEFORE INSERT OR UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION apx_session_revision();

-- Tombstones older than an hour are purged here, by about one delete in 64 (those whose
-- revision is a multiple of 64), through the index on `deleted_at`: the cost stays off the
-- read path (every replica polls `sessions_since` each second) and off most deletes, and
-- at most a few dozen stale tombstones outlive the hour. A reader more than an hour behind
-- must reload every row anyway.
CREATE FUNCTION apx_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_id  TEXT;
    tombstone   BIGINT;
    now_ms      BIGINT := (extract(epoch from clock_timestamp()) * 1000)::bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.revision = OLD.revision THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        changed_id := OLD.id;
        tombstone := nextval('session_revisions');
        INSERT INTO session_tombstones (id, revision, deleted_at)
            VALUES (OLD.id, tombstone, now_ms);
        IF tombstone % 64 = 0 THEN
            DELETE FROM session_tombstones WHERE deleted_at < now_ms - 3600000;
        END IF;
    ELSE
        changed_id := NEW.id;
    END IF;
    PERFORM pg_notify('apx_changes', json_build_object(
        'kind', 'session',
        'id', changed_id,
        'origin', current_setting('application_name'))::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_announce AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION apx_session_changed();

-- A proxy or browser sign-in ended (logout, expiry purge): open streams re-check their
-- credentials. Nothing of the row is sent (its token hash least of all); notices alike in
-- one transaction are folded into one by PostgreSQL.
CREATE FUNCTION apx_sign_in_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('apx_changes', '{"kind":"sign_in_ended"}');
    RETURN NULL;
END
$$;
CREATE TRIGGER oauth_sessions_announce_end AFTER DELETE ON oauth_sessions
    FOR EACH ROW EXECUTE FUNCTION apx_sign_in_ended();
