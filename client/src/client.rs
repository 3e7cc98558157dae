//! The client: base URL, credentials, timeouts, and the request helpers every call uses.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::Agent;
use crate::error::{Error, Result};

/// Default time limit for one call (event streams have none).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the default HTTP client tries to connect before calling the server unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Credential {
    ApiKey { header: String, key: String },
    Bearer(String),
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    credential: Option<Credential>,
    key_header: String,
    timeout: Option<Duration>,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Authenticates with a static API key (sent as `X-API-Key` unless
    /// [`ClientBuilder::api_key_header`] names another header).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.credential = Some(Credential::ApiKey { header: String::new(), key: key.into() });
        self
    }

    /// The header the server reads API keys from (`auth.static.header_name`).
    pub fn api_key_header(mut self, header: impl Into<String>) -> Self {
        self.key_header = header.into();
        self
    }

    /// Authenticates with `Authorization: Bearer <token>` (a proxy OAuth token, a GitHub
    /// token, or an API key).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.credential = Some(Credential::Bearer(token.into()));
        self
    }

    /// Time limit per call; `None` for none. Event streams never time out.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this HTTP client (proxies, TLS roots, ...) instead of a default one.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Fails with [`Error::Endpoint`] when the address cannot be used; a bare `host:port`
    /// means `http://host:port`.
    pub fn build(self) -> Result<Client> {
        let base_url = base_url(&self.base_url)?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build()?,
        };
        let credential = self.credential.map(|credential| match credential {
            Credential::ApiKey { key, .. } => {
                Credential::ApiKey { header: self.key_header.clone(), key }
            }
            other => other,
        });
        Ok(Client { http, base_url, credential, timeout: self.timeout })
    }
}

/// The base URL of `endpoint`: `http://` added to a bare `host:port`, no trailing `/`. Only
/// http and https, with a host, and without a query or fragment (paths are put behind it).
fn base_url(endpoint: &str) -> Result<String> {
    let trimmed = endpoint.trim();
    let refuse = |problem: String| Error::Endpoint { endpoint: endpoint.to_string(), problem };
    if trimmed.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    let full =
        if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
    let url = reqwest::Url::parse(&full).map_err(|error| refuse(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(format!("the scheme is {}; only http and https work", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("it names no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse(
            "it carries a query or fragment; give the server's base address".into(),
        ));
    }
    Ok(full.trim_end_matches('/').to_string())
}

/// A typed client for one agentapi-proxy server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    credential: Option<Credential>,
    timeout: Option<Duration>,
}

impl Client {
    /// Starts building a client for the server at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            credential: None,
            key_header: "X-API-Key".into(),
            timeout: Some(DEFAULT_TIMEOUT),
            http: None,
        }
    }

    /// The agent behind session `session_id`.
    pub fn agent(&self, session_id: impl Into<String>) -> Agent<'_> {
        Agent { client: self, session_id: session_id.into() }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn request_without_timeout(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base_url));
        match &self.credential {
            Some(Credential::ApiKey { header, key }) => request.header(header.as_str(), key),
            Some(Credential::Bearer(token)) => request.bearer_auth(token),
            None => request,
        }
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.request_without_timeout(method, path);
        match self.timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        }
    }

    /// Sends and turns any non-2xx answer into [`Error::Api`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|error| Error::from_transport(error, &self.base_url, self.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(Error::from_body(status.as_u16(), &body))
    }

    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T> {
        let bytes = self.send(request).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|error| Error::Decode(error.to_string()))
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send_json(self.request(Method::GET, path)).await
    }

    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        self.send_json(self.request(Method::POST, path).json(body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::base_url;
    use crate::Error;

    #[test]
    fn a_bare_host_and_port_means_http() {
        assert_eq!(base_url("127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base_url(" localhost:9/ ").unwrap(), "http://localhost:9");
        assert_eq!(
            base_url("https://proxy.example/agents/").unwrap(),
            "https://proxy.example/agents"
        );
    }

    #[test]
    fn an_unusable_endpoint_says_what_is_wrong() {
        for (endpoint, problem) in [
            ("", "empty"),
            ("ftp://host", "only http and https"),
            ("http://", "host"),
            ("http://host:99999", "port"),
            ("http://host/?x=1", "query"),
        ] {
            match base_url(endpoint) {
                Err(error @ Error::Endpoint { .. }) => {
                    let text = error.to_string();
                    assert!(text.contains(problem), "{endpoint:?}: {text}");
                    assert!(text.contains("127.0.0.1:8080"), "shows an example: {text}");
                }
                other => panic!("{endpoint:?}: {other:?}"),
            }
        }
    }
}
