-- Profiles: one row each; the whole profile (environment, tags, templates, repository
-- history) is one JSON document, so a profile is always written atomically. `version`
-- increases with every write, so concurrent read-modify-write cycles detect each other.
CREATE TABLE profiles (
    id          TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    document    TEXT NOT NULL
);
CREATE INDEX profiles_by_user ON profiles (user_id, created_at DESC, id DESC);
CREATE INDEX profiles_by_start ON profiles (created_at DESC, id DESC);
