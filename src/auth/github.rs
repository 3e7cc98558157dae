//! GitHub token authentication: who a GitHub token belongs to (login, organisations, teams),
//! asked of the [`GitHubApi`] (configurable base URL, so tests use a local fake), cached for
//! `auth.github.cache_seconds` by the token's SHA-256 (never the token), checked against
//! `allowed_orgs` and mapped to a role. GitHub unreachable → 503 for uncached tokens (fail
//! closed); cached identities keep working.

mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use http::HttpGitHub;

use super::api_keys::KeyDigest;
use super::{AuthType, Caller, roles};
use crate::config::GithubConfig;
use crate::error::ApiError;

/// Most cached identities; past this the cache starts over.
const CACHE_LIMIT: usize = 10_000;
/// How long a token GitHub refused is refused without asking again.
const REFUSAL_CACHE: Duration = Duration::from_secs(30);

/// Who a GitHub token belongs to. Organisation logins and teams (`org/team-slug`) are kept
/// in lower case, as GitHub compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubIdentity {
    pub login: String,
    pub orgs: Vec<String>,
    pub teams: Vec<String>,
}

/// Why GitHub gave no identity.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// GitHub does not accept the token or the code (a client problem: 401 / 400).
    #[error("GitHub refused: {0}")]
    Rejected(String),
    /// GitHub could not be asked or answered nonsense (a 503 for the client).
    #[error("GitHub is unavailable: {0}")]
    Unavailable(String),
}

/// The parts of GitHub the proxy talks to: the REST API (identity) and the OAuth web host
/// (code exchange). Implementations never log tokens or codes.
#[async_trait::async_trait]
pub trait GitHubApi: Send + Sync + std::fmt::Debug {
    /// Login, organisations and teams of the token's user, following pagination.
    async fn identity(&self, token: &str) -> Result<GithubIdentity, GithubError>;
    /// Exchanges an OAuth authorization code (with its PKCE verifier) for a GitHub token.
    async fn exchange_code(&self, exchange: CodeExchange<'_>) -> Result<String, GithubError>;
}

/// What the OAuth token endpoint needs.
#[derive(Debug)]
pub struct CodeExchange<'a> {
    pub client: &'a crate::auth::oauth::flow::GithubOAuthClient,
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

#[derive(Debug)]
struct Cached {
    identity: Arc<GithubIdentity>,
    /// The mapped caller once a request asked for it; `Some(None)`: outside `allowed_orgs`.
    caller: Option<Option<Caller>>,
    until: Instant,
}

fn outside_allowed_orgs() -> ApiError {
    ApiError::Forbidden("your GitHub account is not a member of an allowed organisation".into())
}

/// Identities by token digest, with the mapping rules applied per request.
#[derive(Debug)]
pub struct GithubAuth {
    api: Arc<dyn GitHubApi>,
    config: GithubConfig,
    cache_for: Duration,
    cache: Mutex<HashMap<KeyDigest, Cached>>,
    /// Tokens GitHub refused recently, so guessing does not turn into traffic to GitHub.
    refused: Mutex<HashMap<KeyDigest, Instant>>,
}

impl GithubAuth {
    pub fn new(api: Arc<dyn GitHubApi>, config: &GithubConfig) -> Self {
        Self {
            api,
            config: config.clone(),
            cache_for: Duration::from_secs(config.cache_seconds),
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    pub fn api(&self) -> &Arc<dyn GitHubApi> {
        &self.api
    }

    /// The caller behind a GitHub token whose digest is `key`: from the cache (role mapping
    /// included), else from GitHub.
    pub async fn authenticate(&self, token: &str, key: KeyDigest) -> Result<Caller, ApiError> {
        if let Some(caller) = self.cached_caller(&key) {
            crate::telemetry::github_lookup("cache_hit");
            return caller.ok_or_else(outside_allowed_orgs);
        }
        let identity = self.identify(token, key).await?;
        let caller = self.caller_for(&identity).ok().map(|mut caller| {
            caller.credential = Some(key);
            caller
        });
        self.remember_caller(&key, caller.clone());
        caller.ok_or_else(outside_allowed_orgs)
    }

    /// The identity behind a token, cached by its digest.
    pub async fn identify(
        &self,
        token: &str,
        key: KeyDigest,
    ) -> Result<Arc<GithubIdentity>, ApiError> {
        if let Some(identity) = self.cached(&key) {
            crate::telemetry::github_lookup("cache_hit");
            return Ok(identity);
        }
        if self.recently_refused(&key) {
            crate::telemetry::github_lookup("cached_refusal");
            return Err(ApiError::Unauthenticated);
        }
        let answer = self.api.identity(token).await;
        crate::telemetry::github_lookup(match &answer {
            Ok(_) => "github_ok",
            Err(GithubError::Rejected(_)) => "github_rejected",
            Err(GithubError::Unavailable(_)) => "github_unavailable",
        });
        match answer {
            Ok(identity) => {
                let identity = Arc::new(identity);
                self.remember(key, identity.clone());
                Ok(identity)
            }
            Err(GithubError::Rejected(why)) => {
                tracing::info!(reason = %why, "GitHub did not accept a token");
                self.remember_refusal(key);
                Err(ApiError::Unauthenticated)
            }
            Err(GithubError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "GitHub could not validate a token");
                Err(ApiError::GithubUnavailable)
            }
        }
    }

    /// Role and permissions of `identity`; 403 outside `allowed_orgs`.
    pub fn caller_for(&self, identity: &GithubIdentity) -> Result<Caller, ApiError> {
        let allowed = &self.config.allowed_orgs;
        if !allowed.is_empty()
            && !allowed.iter().any(|org| identity.orgs.contains(&org.to_ascii_lowercase()))
        {
            tracing::info!(user_id = %identity.login, "GitHub user outside the allowed organisations");
            return Err(outside_allowed_orgs());
        }
        let (role, permissions) = roles::map_teams(&self.config.user_mapping, &identity.teams);
        Ok(Caller {
            user_id: identity.login.as_str().into(),
            role: role.into(),
            permissions: permissions.into(),
            auth_type: AuthType::Github,
            credential: None,
        })
    }

    /// Whether the identity cached for this digest is still fresh (open streams end after).
    pub fn still_cached(&self, key: &KeyDigest) -> bool {
        self.cached(key).is_some()
    }

    fn cached(&self, key: &KeyDigest) -> Option<Arc<GithubIdentity>> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(key).filter(|entry| entry.until > Instant::now()).map(|e| e.identity.clone())
    }

    fn cached_caller(&self, key: &KeyDigest) -> Option<Option<Caller>> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(key).filter(|entry| entry.until > Instant::now())?.caller.clone()
    }

    fn remember_caller(&self, key: &KeyDigest, caller: Option<Caller>) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = cache.get_mut(key) {
            entry.caller = Some(caller);
        }
    }

    fn recently_refused(&self, key: &KeyDigest) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        refused.get(key).is_some_and(|until| *until > Instant::now())
    }

    fn remember_refusal(&self, key: KeyDigest) {
        let mut refused = self.refused.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if refused.len() >= CACHE_LIMIT {
            refused.clear();
        }
        refused.insert(key, Instant::now() + REFUSAL_CACHE);
    }

    fn remember(&self, key: KeyDigest, identity: Arc<GithubIdentity>) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_LIMIT {
            let now = Instant::now();
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache
            .insert(key, Cached { identity, caller: None, until: Instant::now() + self.cache_for });
    }
}
