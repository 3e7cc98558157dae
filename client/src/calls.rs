//! The proxy's own routes as methods: sessions, profiles, OAuth, and who-am-I.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Client;
use crate::error::Result;
use crate::{
    DeleteResponse, ProfileList, ProfileResponse, SearchResponse, SessionDetail, SessionStatus,
    StartRequest, StartResponse,
};

/// Filters and paging of [`Client::search`].
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub status: Option<SessionStatus>,
    pub user_id: Option<String>,
    /// Every tag must match exactly.
    pub tags: Vec<(String, String)>,
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl SearchQuery {
    fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(status) = self.status {
            pairs.push(("status".into(), status.as_str().into()));
        }
        if let Some(user) = &self.user_id {
            pairs.push(("user_id".into(), user.clone()));
        }
        for (key, value) in &self.tags {
            pairs.push((format!("tag.{key}"), value.clone()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit".into(), limit.to_string()));
        }
        if let Some(offset) = self.offset {
            pairs.push(("offset".into(), offset.to_string()));
        }
        pairs
    }
}

/// Body of [`Client::start_with_profile`] (`POST /start-with-profile`). `null` reads as
/// absent in the optional fields; other fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(as = StartWithProfileRequest, description = "Body of `POST /start-with-profile`.")
)]
pub struct StartWithProfile {
    /// Must not be empty.
    pub profile_id: String,
    #[serde(
        default,
        deserialize_with = "crate::wire::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub environment: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "crate::wire::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A template's id or name; a placeholder without a value is 400
    /// `missing_template_variable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::wire::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub template_variables: BTreeMap<String, String>,
}

/// Body of `POST /auth/login`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// Any credential the server accepts in a header: a static API key, a GitHub token (when
    /// `auth.github.enabled`), or a proxy-issued `aps_` token.
    pub api_key: String,
}

/// Body of `POST /oauth/authorize`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthAuthorizeRequest {
    /// Must match `auth.github.oauth.allowed_redirect_uris` (exactly, or a prefix entry
    /// ending in `/`).
    pub redirect_uri: String,
}

/// `GET /auth/status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuthStatus {
    pub user_id: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub auth_type: String,
}

/// `POST /oauth/authorize`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthStart {
    pub auth_url: String,
    pub state: String,
}

/// `GET /oauth/callback` and `POST /oauth/refresh`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OAuthSession {
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    pub expires_at: String,
    #[serde(default)]
    pub user: Option<Value>,
}

impl Client {
    /// `POST /start`: returns once the agent answers (`wait`), or at once with `starting`.
    pub async fn start(&self, request: &StartRequest, wait: bool) -> Result<StartResponse> {
        let path = if wait { "/start" } else { "/start?wait=false" };
        self.post_json(path, request).await
    }

    /// `POST /start-with-profile`.
    pub async fn start_with_profile(&self, request: &StartWithProfile) -> Result<StartResponse> {
        self.post_json("/start-with-profile", request).await
    }

    /// `GET /search`.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResponse> {
        self.send_json(self.request(Method::GET, "/search").query(&query.pairs())).await
    }

    /// `GET /sessions/{id}`.
    pub async fn session(&self, session_id: &str) -> Result<SessionDetail> {
        self.get_json(&format!("/sessions/{session_id}")).await
    }

    /// `GET /sessions/{id}/logs`: the last `tail` lines of the agent's output.
    pub async fn logs(&self, session_id: &str, tail: Option<u32>) -> Result<String> {
        let mut request = self.request(Method::GET, &format!("/sessions/{session_id}/logs"));
        if let Some(tail) = tail {
            request = request.query(&[("tail", tail)]);
        }
        Ok(self.send(request).await?.text().await?)
    }

    /// `DELETE /sessions/{id}`: returns once the agent is gone.
    pub async fn delete(&self, session_id: &str) -> Result<DeleteResponse> {
        self.send_json(self.request(Method::DELETE, &format!("/sessions/{session_id}"))).await
    }

    /// `GET /auth/status`.
    pub async fn auth_status(&self) -> Result<AuthStatus> {
        self.get_json("/auth/status").await
    }

    /// `POST /profiles` with any profile fields (`name` required).
    pub async fn create_profile(&self, fields: &Value) -> Result<ProfileResponse> {
        self.post_json("/profiles", fields).await
    }

    /// `GET /profiles`.
    pub async fn profiles(&self) -> Result<ProfileList> {
        self.get_json("/profiles").await
    }

    /// `GET /profiles/{id}`.
    pub async fn profile(&self, profile_id: &str) -> Result<ProfileResponse> {
        self.get_json(&format!("/profiles/{profile_id}")).await
    }

    /// `PUT /profiles/{id}`: fields present replace the stored ones.
    pub async fn update_profile(
        &self,
        profile_id: &str,
        fields: &Value,
    ) -> Result<ProfileResponse> {
        let request = self.request(Method::PUT, &format!("/profiles/{profile_id}")).json(fields);
        self.send_json(request).await
    }

    /// `DELETE /profiles/{id}`.
    pub async fn delete_profile(&self, profile_id: &str) -> Result<Value> {
        self.send_json(self.request(Method::DELETE, &format!("/profiles/{profile_id}"))).await
    }

    /// `POST /profiles/{id}/repositories` (upsert by `url`).
    pub async fn add_profile_repository(
        &self,
        profile_id: &str,
        repository: &Value,
    ) -> Result<Value> {
        self.post_json(&format!("/profiles/{profile_id}/repositories"), repository).await
    }

    /// `POST /profiles/{id}/templates` (a template's name is unique in its profile).
    pub async fn add_profile_template(&self, profile_id: &str, template: &Value) -> Result<Value> {
        self.post_json(&format!("/profiles/{profile_id}/templates"), template).await
    }

    /// `POST /oauth/authorize`: where to send the user, and the state to expect back.
    pub async fn oauth_authorize(&self, redirect_uri: &str) -> Result<OAuthStart> {
        let request = OAuthAuthorizeRequest { redirect_uri: redirect_uri.to_string() };
        self.post_json("/oauth/authorize", &request).await
    }

    /// `GET /oauth/callback`: trades GitHub's `code` for a proxy token.
    pub async fn oauth_callback(&self, code: &str, state: &str) -> Result<OAuthSession> {
        let request =
            self.request(Method::GET, "/oauth/callback").query(&[("code", code), ("state", state)]);
        self.send_json(request).await
    }

    /// `POST /oauth/refresh` for the session `session_id` (or the bearer token).
    pub async fn oauth_refresh(&self, session_id: Option<&str>) -> Result<OAuthSession> {
        let mut request = self.request(Method::POST, "/oauth/refresh");
        if let Some(session_id) = session_id {
            request = request.header("X-Session-ID", session_id);
        }
        self.send_json(request).await
    }

    /// `POST /oauth/logout`: the token stops working at once.
    pub async fn oauth_logout(&self) -> Result<Value> {
        self.send_json(self.request(Method::POST, "/oauth/logout")).await
    }
}
