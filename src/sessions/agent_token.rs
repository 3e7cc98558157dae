//! Agent tokens (sessions.md §5): every agent gets `APX_SESSION_TOKEN` (`apxs_` + 256
//! random bits) and `APX_PROXY_URL`. Only the token's SHA-256 is stored (with the session,
//! so a re-adopted agent keeps a working token); presented tokens are found by their digest
//! in memory. Whether the session still lives is the caller's
//! check.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::agent_tokens::AgentTokenStore;

/// The prefix of every agent token.
pub const TOKEN_PREFIX: &str = "apxs_";

/// What an agent is given to call the proxy back.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentAccess {
    /// `APX_SESSION_TOKEN`.
    pub token: String,
    /// `APX_PROXY_URL`.
    pub proxy_url: String,
}

impl std::fmt::Debug for AgentAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentAccess")
            .field("token", &"<redacted>")
            .field("proxy_url", &self.proxy_url)
            .finish()
    }
}

/// The live set of agent tokens, by digest.
#[derive(Debug)]
pub struct AgentTokens {
    store: Arc<dyn AgentTokenStore>,
    by_digest: RwLock<HashMap<[u8; 32], String>>,
    proxy_url: OnceLock<String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl AgentTokens {
    /// Loads the stored token hashes.
    pub async fn load(store: Arc<dyn AgentTokenStore>) -> anyhow::Result<Self> {
        let mut by_digest = HashMap::new();
        for (session_id, token_hash) in store.all().await? {
            let mut key = [0u8; 32];
            if hex::decode_to_slice(&token_hash, &mut key).is_ok() {
                by_digest.insert(key, session_id);
            }
        }
        Ok(Self { store, by_digest: RwLock::new(by_digest), proxy_url: OnceLock::new() })
    }

    /// Sets the URL agents call the proxy at (`server.public_url`, else the listener's
    /// loopback address); the first call wins.
    pub fn set_proxy_url(&self, url: String) {
        let _ = self.proxy_url.set(url);
    }

    /// A new token for `session_id`, stored (hashed) before it is handed out.
    pub async fn issue(&self, session_id: &str) -> anyhow::Result<AgentAccess> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(random));
        let key = digest(&token);
        self.store.insert(session_id.to_string(), hex::encode(key), crate::clock::now_ms()).await?;
        self.write().insert(key, session_id.to_string());
        Ok(AgentAccess { token, proxy_url: self.proxy_url.get().cloned().unwrap_or_default() })
    }

    /// The session a presented token belongs to, if it is one of ours.
    pub fn session_of(&self, token: &str) -> Option<String> {
        let key = digest(token);
        let map = self.by_digest.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Looked up by digest: the map's timing depends on the digest, never on the token.
        map.get_key_value(&key)
            .filter(|(stored, _)| bool::from(stored.ct_eq(&key)))
            .map(|(_, id)| id.clone())
    }

    /// The session of a token this replica does not know yet: one another replica issued
    /// (looked up by its digest in the store; a miss costs one indexed read).
    pub async fn session_of_stored(&self, token: &str) -> Option<String> {
        if let Some(session_id) = self.session_of(token) {
            return Some(session_id);
        }
        let key = digest(token);
        let found = self.store.session_of_hash(hex::encode(key)).await;
        match found {
            Ok(Some(session_id)) => {
                self.write().insert(key, session_id.clone());
                Some(session_id)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "could not look up an agent token");
                None
            }
        }
    }

    /// Forgets the token of a session another replica deleted (it deleted the stored one).
    pub fn forget_here(&self, session_id: &str) {
        self.write().retain(|_, id| id != session_id);
    }

    /// Forgets the token of a session that is gone.
    pub async fn forget(&self, session_id: &str) {
        self.write().retain(|_, id| id != session_id);
        if let Err(error) = self.store.delete(session_id.to_string()).await {
            tracing::warn!(error = format!("{error:#}"), "could not delete an agent token");
        }
    }

    /// Forgets the tokens of every session `known` rejects (after recovery).
    pub async fn retain(&self, known: impl Fn(&str) -> bool) {
        let gone: Vec<String> =
            self.read_ids().into_iter().filter(|session_id| !known(session_id)).collect();
        for session_id in gone {
            self.forget(&session_id).await;
        }
    }

    fn read_ids(&self) -> Vec<String> {
        let map = self.by_digest.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.values().cloned().collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], String>> {
        self.by_digest.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
