-- Sessions opened with `POST /auth/login` name the credential they were made from, so they
-- end when it does: `api_key:<sha256 hex of the key>` or `oauth:<token_hash of the proxy
-- session>`. NULL for OAuth logins and for sessions made from a GitHub token (an identity
-- snapshot, like the OAuth flow's).
ALTER TABLE oauth_sessions ADD COLUMN bound_to TEXT;
