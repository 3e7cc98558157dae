//! Schemas of the JSON the server writes or reads without a wire type in the client crate:
//! the error body of [`crate::error::ApiError`], and the answers of the auth and OAuth
//! routes, which the handlers serialize from these same types (so the document cannot drift
//! from what is sent). The
//! typed wire types (sessions, profiles, every request body) live in the client crate and
//! derive their schemas there (feature `openapi`).

use std::borrow::Cow;

use serde::Serialize;
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
#[derive(Serialize, ToSchema)]
pub struct AuthStatus {
    pub user_id: String,
    /// guest < user < member < developer < admin, or any other name.
    pub role: String,
    #[schema(value_type = Vec<PermissionName>)]
    pub permissions: Vec<String>,
    #[schema(inline)]
    pub auth_type: AuthType,
}

/// How the caller authenticated (`crate::auth::AuthType`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    None,
    ApiKey,
    Github,
    Oauth,
    SessionToken,
}

impl From<crate::auth::AuthType> for AuthType {
    fn from(kind: crate::auth::AuthType) -> Self {
        match kind {
            crate::auth::AuthType::None => Self::None,
            crate::auth::AuthType::ApiKey => Self::ApiKey,
            crate::auth::AuthType::Github => Self::Github,
            crate::auth::AuthType::Oauth => Self::Oauth,
            crate::auth::AuthType::SessionToken => Self::SessionToken,
        }
    }
}

/// `GET /auth/types`: the sign-in methods that are enabled.
#[derive(ToSchema)]
#[schema(example = json!({"enabled": true, "types": [
    {"type": "api_key", "header": "X-API-Key"}, {"type": "github"},
    {"type": "oauth", "login_url": "/oauth/login"}
]}))]
#[derive(Serialize)]
pub struct AuthTypes {
    pub enabled: bool,
    #[schema(inline)]
    pub types: Vec<AuthMethod>,
}

/// One enabled sign-in method.
#[derive(Serialize, ToSchema)]
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodKind {
    ApiKey,
    Github,
    Oauth,
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
#[derive(Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// Answer of `POST /oauth/authorize`.
#[derive(Serialize, ToSchema)]
pub struct OAuthAuthorizeResponse {
    /// `<oauth.base_url>/login/oauth/authorize?...&state=...&code_challenge=...`
    pub auth_url: String,
    pub state: String,
}

/// Answer of `GET /oauth/callback` for API clients.
#[derive(Serialize, ToSchema)]
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
#[derive(Serialize, ToSchema)]
pub struct OAuthUser {
    pub user_id: String,
    pub role: String,
    #[schema(value_type = Vec<PermissionName>)]
    pub permissions: Vec<String>,
}

/// Answer of `POST /oauth/refresh`.
#[derive(Serialize, ToSchema)]
pub struct OAuthRefreshResponse {
    pub session_id: String,
    #[schema(inline)]
    pub token_type: TokenType,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Always `Bearer`.
#[derive(Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}
