-- OAuth logins in progress: one row per `state`, single-use (deleted when taken) and
-- expiring. The state is stored only as its SHA-256; the PKCE verifier is needed to finish
-- the login and lives here at most ten minutes. `binding_hash` is the SHA-256 of the
-- browser flow's login cookie (NULL for the API-client flow).
CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,
    verifier      TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    return_to     TEXT,
    binding_hash  TEXT,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);

-- Proxy-issued sessions (`aps_` tokens and browser cookies), stored only as the token's
-- SHA-256, with the identity as it was at login. The GitHub token is not stored.
CREATE TABLE oauth_sessions (
    token_hash      TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL UNIQUE,
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL,
    permissions     TEXT NOT NULL DEFAULT '[]',
    kind            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    max_expires_at  BIGINT NOT NULL
);
CREATE INDEX oauth_sessions_by_expiry ON oauth_sessions (expires_at);
