//! Schemas of the JSON the server writes or reads without a wire type of its own: the error
//! body of [`crate::error::ApiError`], the answers the handlers build with `json!`, and the
//! request bodies they read field by field. The typed wire types (sessions, profiles) live
//! in the client crate and derive their schemas there (feature `openapi`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// Every non-2xx answer the proxy itself produces; answers that come from an agent under
/// `/{id}/...` are passed through untouched.
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A human sentence (the Go proxy's field name).
    pub message: String,
    /// Stable snake_case code.
    #[schema(examples("not_found", "unauthenticated", "agent_timeout"))]
    pub code: String,
    /// Only on 502/504 from a session's own agent: exit code, session status, log tail.
    pub details: Option<Value>,
}

/// `{"status": "ok"}` from the liveness routes, `{"status": "ready"}` from `/readyz`.
#[derive(ToSchema)]
pub struct Status {
    #[schema(inline)]
    pub status: StatusWord,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusWord {
    Ok,
    Ready,
}

/// A permission name (`*` = all); the list is [`crate::auth::PERMISSIONS`] itself.
pub struct PermissionName;

impl PartialSchema for PermissionName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .enum_values(Some(crate::auth::PERMISSIONS.iter().copied()))
            .into()
    }
}

impl ToSchema for PermissionName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Permission")
    }
}

/// `GET /auth/status`: the authenticated caller.
#[derive(ToSchema)]
pub struct AuthStatus {
    pub user_id: String,
    /// guest < user < member < developer < admin, or any other name.
    pub role: String,
    pub permissions: Vec<PermissionName>,
    #[schema(inline)]
    pub auth_type: AuthType,
}

/// How the caller authenticated (`crate::auth::AuthType`).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    None,
    ApiKey,
    Github,
    Oauth,
}

/// `GET /auth/types`: the sign-in methods that are enabled.
#[derive(ToSchema)]
#[schema(example = json!({"enabled": true, "types": [
    {"type": "api_key", "header": "X-API-Key"}, {"type": "github"},
    {"type": "oauth", "login_url": "/oauth/login"}
]}))]
pub struct AuthTypes {
    pub enabled: bool,
    #[schema(inline)]
    pub types: Vec<AuthMethod>,
}

/// One enabled sign-in method.
#[derive(ToSchema)]
pub struct AuthMethod {
    #[serde(rename = "type")]
    #[schema(inline)]
    pub kind: AuthMethodKind,
    /// For `api_key`: the header name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub header: Option<String>,
    /// For `oauth`: `/oauth/login`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub login_url: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodKind {
    ApiKey,
    Github,
    Oauth,
}

/// Body of `POST /profiles` (`name` required) and `PUT /profiles/{id}` (every field
/// optional; a present, non-null field replaces the stored one, objects and arrays wholesale).
#[derive(ToSchema)]
pub struct ProfileInput {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    pub description: Option<String>,
    /// Validated like the environment of `POST /start`. On `PUT`, a value sent back as
    /// `<redacted>` keeps the stored one.
    pub environment: Option<BTreeMap<String, String>>,
    pub tags: Option<BTreeMap<String, String>>,
    pub system_prompt: Option<String>,
    pub repository_history: Option<Vec<RepositoryInput>>,
    pub message_templates: Option<Vec<TemplateInput>>,
}

/// A repository to record in a profile (`POST /profiles/{id}/repositories`, upserted by
/// `url`).
#[derive(ToSchema)]
pub struct RepositoryInput {
    pub url: String,
    /// Default: a new UUID.
    pub id: Option<String>,
    /// Default: the last segment of `url`.
    pub name: Option<String>,
    pub branch: Option<String>,
    pub last_commit: Option<String>,
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Default: now.
    #[schema(format = DateTime)]
    pub accessed_at: Option<String>,
}

/// A message template to add to a profile (`POST /profiles/{id}/templates`); the same
/// `name` replaces it.
#[derive(ToSchema)]
pub struct TemplateInput {
    pub name: String,
    /// With `{{name}}` placeholders.
    pub content: String,
    /// Default: the placeholders found in `content`.
    pub variables: Option<Vec<String>>,
    /// Default: a new UUID.
    pub id: Option<String>,
    pub category: Option<String>,
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Default: now.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// Answer of `DELETE /profiles/{id}`.
#[derive(ToSchema)]
pub struct ProfileDeleted {
    #[schema(inline)]
    pub message: ProfileDeletedMessage,
    #[schema(format = "uuid")]
    pub profile_id: String,
}

/// Always `Profile deleted successfully`.
#[derive(ToSchema)]
pub enum ProfileDeletedMessage {
    #[serde(rename = "Profile deleted successfully")]
    ProfileDeletedSuccessfully,
}

/// A plain confirmation.
#[derive(ToSchema)]
pub struct Message {
    pub message: String,
}

/// Body of `POST /oauth/authorize`.
#[derive(ToSchema)]
pub struct OAuthAuthorizeRequest {
    /// Must match `auth.github.oauth.allowed_redirect_uris` (exactly, or a prefix entry
    /// ending in `/`).
    pub redirect_uri: String,
}

/// Answer of `POST /oauth/authorize`.
#[derive(ToSchema)]
pub struct OAuthAuthorizeResponse {
    /// `<oauth.base_url>/login/oauth/authorize?...&state=...&code_challenge=...`
    pub auth_url: String,
    pub state: String,
}

/// Answer of `GET /oauth/callback` for API clients.
#[derive(ToSchema)]
pub struct OAuthCallbackResponse {
    pub session_id: String,
    /// A proxy-issued `aps_...` token, accepted as a bearer token until `expires_at`.
    pub access_token: String,
    #[schema(inline)]
    pub token_type: TokenType,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(inline)]
    pub user: OAuthUser,
}

/// Who signed in.
#[derive(ToSchema)]
pub struct OAuthUser {
    pub user_id: String,
    pub role: String,
    pub permissions: Vec<PermissionName>,
}

/// Answer of `POST /oauth/refresh`.
#[derive(ToSchema)]
pub struct OAuthRefreshResponse {
    pub session_id: String,
    #[schema(inline)]
    pub token_type: TokenType,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Always `Bearer`.
#[derive(ToSchema)]
pub enum TokenType {
    Bearer,
}

/// Body of `POST /auth/login`.
#[derive(ToSchema)]
pub struct LoginRequest {
    /// Any credential the server accepts in a header: a static API key, a GitHub token (when
    /// `auth.github.enabled`), or a proxy-issued `aps_` token.
    pub api_key: String,
}
