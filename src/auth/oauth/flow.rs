//! The authorization-code flow with PKCE against GitHub's web host, on the `oauth2` crate:
//! the authorization URL (client id, scopes, CSRF `state`, S256 challenge, redirect URI per
//! login), and the code exchange at `<oauth.base_url>/login/oauth/access_token` with the
//! client credentials in the form body (as GitHub documents) through the proxy's own HTTP
//! client, which follows no redirects and gives up after 5 s.
//!
//! GitHub answers a refused exchange with 200 and `{"error": ...}`, not with the 400 of
//! RFC 6749; that answer is read here as a refusal. A 5xx or redirect means GitHub is not
//! usable right now, whatever its body says.
//!
//! There is no GitHub token refresh: the GitHub token is used once to learn the identity and
//! dropped; what `/oauth/refresh` extends is the proxy's own session.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};

use crate::auth::github::GithubError;
use crate::config::OAuthConfig;

/// An OAuth client for GitHub with its authorization and token endpoints set.
pub type GithubOAuthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A started login: where to send the user, and the secrets kept until the callback.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub verifier: String,
}

/// The client for `config` (GitHub's endpoints under `oauth.base_url`).
pub fn client(config: &OAuthConfig) -> anyhow::Result<GithubOAuthClient> {
    let web = config.base_url.trim_end_matches('/');
    Ok(BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_client_secret(ClientSecret::new(config.client_secret.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_auth_uri(AuthUrl::new(format!("{web}/login/oauth/authorize"))?)
        .set_token_uri(TokenUrl::new(format!("{web}/login/oauth/access_token"))?))
}

/// A new authorization URL returning to `redirect_uri`, with a fresh 256-bit `state` and an
/// S256 PKCE challenge.
pub fn authorize(
    client: &GithubOAuthClient,
    scopes: &str,
    redirect_uri: &str,
) -> Result<Authorization, String> {
    let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|error| error.to_string())?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(|| CsrfToken::new_random_len(32))
        .add_scopes(scopes.split_whitespace().map(|scope| Scope::new(scope.to_string())))
        .set_pkce_challenge(challenge)
        .set_redirect_uri(Cow::Owned(redirect))
        .url();
    Ok(Authorization {
        url: url.to_string(),
        state: state.secret().clone(),
        verifier: verifier.secret().clone(),
    })
}

/// Exchanges `code` (with its PKCE verifier, for the same redirect URI) for a GitHub token.
pub async fn exchange(
    client: &GithubOAuthClient,
    http: &reqwest::Client,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<String, GithubError> {
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|_| GithubError::Rejected("the stored redirect URI is not a URL".into()))?;
    let answer = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .set_redirect_uri(Cow::Owned(redirect))
        .request_async(&TokenEndpoint(http))
        .await;
    match answer {
        Ok(token) => Ok(token.access_token().secret().clone()),
        Err(RequestTokenError::ServerResponse(refusal)) => Err(refused(&refusal)),
        Err(RequestTokenError::Parse(_, body)) => match serde_json::from_slice(&body) {
            Ok(refusal) => Err(refused(&refusal)),
            Err(_) => Err(GithubError::Unavailable("unreadable token endpoint answer".into())),
        },
        Err(RequestTokenError::Request(error)) => Err(error),
        Err(RequestTokenError::Other(why)) => {
            Err(GithubError::Unavailable(format!("token endpoint: {why}")))
        }
    }
}

fn refused(refusal: &BasicErrorResponse) -> GithubError {
    GithubError::Rejected(format!("token endpoint: {}", refusal.error()))
}

/// The proxy's HTTP client as `oauth2` calls it.
struct TokenEndpoint<'h>(&'h reqwest::Client);

impl<'c> AsyncHttpClient<'c> for TokenEndpoint<'_> {
    type Error = GithubError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, GithubError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(self.0, request))
    }
}

/// Sends one token request; a 5xx or a redirect is GitHub being unavailable.
async fn send(http: &reqwest::Client, request: HttpRequest) -> Result<HttpResponse, GithubError> {
    let unavailable = |why: &str| GithubError::Unavailable(format!("token endpoint: {why}"));
    let request = reqwest::Request::try_from(request).map_err(|_| unavailable("bad request"))?;
    let response = http.execute(request).await.map_err(|error| {
        unavailable(if error.is_timeout() { "timed out" } else { "connection failed" })
    })?;
    let status = response.status();
    if status.is_server_error() || status.is_redirection() {
        return Err(unavailable(status.as_str()));
    }
    let mut answer = http::Response::builder().status(status);
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    let body = response.bytes().await.map_err(|_| unavailable("answer cut short"))?;
    answer.body(body.to_vec()).map_err(|_| unavailable("unreadable answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuthConfig {
        OAuthConfig {
            client_id: "cid".into(),
            client_secret: "secret".into(),
            scope: "read:user read:org".into(),
            base_url: "https://ghe.example.com/".into(),
            allowed_redirect_uris: vec![],
            session_ttl_seconds: 60,
        }
    }

    #[test]
    fn the_authorization_url_carries_every_parameter_github_needs() {
        let client = client(&config()).expect("client");
        let started =
            authorize(&client, "read:user read:org", "https://app.example/cb").expect("authorize");
        let url = url::Url::parse(&started.url).expect("url");
        assert_eq!(
            url.as_str().split('?').next(),
            Some("https://ghe.example.com/login/oauth/authorize")
        );
        let params: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(params["client_id"], "cid");
        assert_eq!(params["redirect_uri"], "https://app.example/cb");
        assert_eq!(params["scope"], "read:user read:org");
        assert_eq!(params["state"], started.state);
        assert_eq!(params["code_challenge_method"], "S256");
        assert_eq!(params["code_challenge"], {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(started.verifier.as_bytes()))
        });
        assert!(!params.contains_key("client_secret"));
        assert!(started.state.len() >= 43 && started.verifier.len() >= 43);
        let again = authorize(&client, "", "https://app.example/cb").expect("again");
        assert_ne!((again.state, again.verifier), (started.state, started.verifier));
    }
}
