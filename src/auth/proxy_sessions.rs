//! Proxy-issued sessions (`aps_` tokens, sent as a bearer token or in the session cookie),
//! whoever opened them: the OAuth flows, or `POST /auth/login` with any credential the server
//! accepts. Exists whenever authentication is on, OAuth configured or not. Tokens are stored
//! only as SHA-256. A session opened from another credential names it (`bound_to`) and lives
//! only as long as it does: a static key must still be in the current key set (a map lookup,
//! no Argon2), a proxy session it came from must still be live; once one is found gone, the
//! session is deleted.

use std::sync::Arc;

use super::api_keys::{ApiKeys, KeyDigest, digest};
use super::oauth::CookiePolicy;
use super::oauth::secrets;
use super::{AuthType, Caller};
use crate::clock::now_ms;
use crate::config::{Config, origin_of};
use crate::error::ApiError;
use crate::store::oauth::{OAuthSessionRow, OAuthStore};

/// How long a signed-in browser stays signed in when OAuth does not say
/// (`auth.github.oauth.session_ttl_seconds`).
const DEFAULT_TTL_SECONDS: u64 = 24 * 3600;
/// How many `bound_to` links are followed (a session opened with a session's token, ...).
const MAX_BINDING_DEPTH: usize = 4;

/// A session `POST /auth/login` opened: the token for the cookie, and its lifetime.
#[derive(Debug)]
pub struct Opened {
    pub token: String,
    pub max_age_seconds: u64,
}

/// The proxy's own sessions and the cookie that carries them.
#[derive(Debug)]
pub struct ProxySessions {
    store: Arc<dyn OAuthStore>,
    keys: Arc<ApiKeys>,
    cookies: CookiePolicy,
    ttl_seconds: u64,
    /// Bumped whenever a session ends here (logout, a broken binding), so open streams
    /// re-check their credential at once.
    endings: tokio::sync::watch::Sender<u64>,
}

impl ProxySessions {
    pub fn new(config: &Config, store: Arc<dyn OAuthStore>, keys: Arc<ApiKeys>) -> Self {
        let ttl_seconds = config
            .auth
            .github
            .oauth
            .as_ref()
            .map_or(DEFAULT_TTL_SECONDS, |oauth| oauth.session_ttl_seconds);
        let cookies =
            CookiePolicy::new(config.server.insecure_cookies, origin_of(&config.server.public_url));
        let endings = tokio::sync::watch::Sender::new(0);
        Self { store, keys, cookies, ttl_seconds, endings }
    }

    /// Notified whenever a session ends on this server.
    pub fn endings(&self) -> tokio::sync::watch::Receiver<u64> {
        self.endings.subscribe()
    }

    /// Tells open streams that a session ended (also one `/oauth/logout` ended).
    pub fn ended(&self) {
        self.endings.send_modify(|count| *count += 1);
    }

    pub fn cookies(&self) -> &CookiePolicy {
        &self.cookies
    }

    /// The caller behind an `aps_` token (bearer or cookie); 401 when it is unknown, expired,
    /// or the credential it was opened with has ended.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let row = self
            .live_row(secrets::hash_hex(token))
            .await
            .map_err(ApiError::Internal)?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Caller {
            user_id: row.user_id.into(),
            role: row.role.into(),
            permissions: row.permissions.into(),
            auth_type: AuthType::Oauth,
            credential: Some(digest(token)),
        })
    }

    /// Whether the session of this token digest still authenticates. A store failure keeps
    /// it (open streams are not cut for a hiccup).
    pub async fn still_valid(&self, key: &KeyDigest) -> bool {
        match self.live_row(hex::encode(key)).await {
            Ok(row) => row.is_some(),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot re-check a proxy session");
                true
            }
        }
    }

    /// The unexpired session stored under `token_hash` whose bindings all still hold.
    async fn live_row(&self, token_hash: String) -> anyhow::Result<Option<OAuthSessionRow>> {
        let now = now_ms();
        let Some(row) = self.store.session_by_token(token_hash).await? else { return Ok(None) };
        if row.expires_at_ms <= now {
            return Ok(None);
        }
        let mut binding = row.bound_to.clone();
        for _ in 0..MAX_BINDING_DEPTH {
            let Some(bound_to) = binding.take() else { return Ok(Some(row)) };
            if bound_to.starts_with("api_key") {
                if self.keys.binding_holds(&bound_to) {
                    return Ok(Some(row));
                }
                break;
            }
            let Some(parent_hash) = bound_to.strip_prefix("oauth:") else { break };
            match self.store.session_by_token(parent_hash.to_string()).await? {
                Some(parent) if parent.expires_at_ms > now => binding = parent.bound_to,
                _ => break,
            }
        }
        // The credential it was made from has ended: so has the session, for good.
        self.store.delete_session(row.token_hash).await?;
        self.ended();
        tracing::info!(user_id = %row.user_id, "a sign-in session ended with its credential");
        Ok(None)
    }

    /// `POST /auth/login`: a new session for `caller`, who authenticated with a credential
    /// (static key, GitHub token or proxy token); it ends with that credential.
    pub async fn open(&self, caller: &Caller) -> Result<Opened, ApiError> {
        let bound_to = match (caller.auth_type, caller.credential) {
            (AuthType::ApiKey, Some(key)) => {
                Some(self.keys.binding_of(&key).ok_or(ApiError::Unauthenticated)?)
            }
            (AuthType::Oauth, Some(token)) => Some(format!("oauth:{}", hex::encode(token))),
            // A GitHub identity is a snapshot, as after the OAuth flow.
            (AuthType::Github, _) => None,
            _ => return Err(ApiError::Unauthenticated),
        };
        let token = secrets::proxy_token()?;
        let now = now_ms();
        let ttl_ms = i64::try_from(self.ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX / 2);
        let expires_at_ms = now.saturating_add(ttl_ms);
        let row = OAuthSessionRow {
            token_hash: secrets::hash_hex(&token),
            session_id: uuid::Uuid::new_v4().to_string(),
            user_id: caller.user_id.to_string(),
            role: caller.role.to_string(),
            permissions: caller.permissions.to_vec(),
            kind: "login".into(),
            created_at_ms: now,
            expires_at_ms,
            // Not extended by `/oauth/refresh`: signing in again is cheap.
            max_expires_at_ms: expires_at_ms,
            bound_to,
        };
        self.store.insert_session(row).await.map_err(|error| {
            tracing::warn!(error = format!("{error:#}"), "cannot save a login session");
            ApiError::StoreUnavailable
        })?;
        tracing::info!(user_id = %caller.user_id, from = caller.auth_type.as_str(), "signed in with a credential");
        Ok(Opened { token, max_age_seconds: self.ttl_seconds })
    }

    /// `POST /auth/logout`: the session behind this token ends at once (however it was made).
    pub async fn close(&self, token: &str) -> Result<(), ApiError> {
        let deleted =
            self.store.delete_session(secrets::hash_hex(token)).await.map_err(|error| {
                tracing::warn!(error = format!("{error:#}"), "cannot end a proxy session");
                ApiError::StoreUnavailable
            })?;
        if deleted {
            self.ended();
            tracing::info!("signed out");
        }
        Ok(())
    }
}
