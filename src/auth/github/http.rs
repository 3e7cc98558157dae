//! [`HttpGitHub`]: the real GitHub over HTTPS (github.com or GHES) with reqwest: a 5 s
//! timeout per call, no redirects followed, `Link: rel="next"` pagination kept on the API's
//! own origin, and no token, code or response body ever logged.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::{CodeExchange, GitHubApi, GithubError, GithubIdentity};
use crate::auth::oauth::flow;

/// Deadline of each call to GitHub (security.md rule 7).
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Most pages read of one list (100 entries each).
const MAX_PAGES: usize = 20;

/// GitHub reached over HTTP.
#[derive(Debug, Clone)]
pub struct HttpGitHub {
    client: Client,
    /// REST API root, e.g. `https://api.github.com` or `https://HOST/api/v3`.
    api_base: String,
}

impl HttpGitHub {
    pub fn new(api_base: &str) -> anyhow::Result<Self> {
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("agentapi-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| anyhow::anyhow!("cannot build the GitHub HTTP client: {error}"))?;
        Ok(Self { client, api_base: api_base.trim_end_matches('/').to_string() })
    }

    async fn get(&self, url: &str, token: &str) -> Result<reqwest::Response, GithubError> {
        let response = self
            .client
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|error| GithubError::Unavailable(describe(&error)))?;
        match response.status() {
            status if status.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED => Err(GithubError::Rejected("the token was refused".into())),
            StatusCode::FORBIDDEN if rate_limited(response.headers()) => {
                Err(GithubError::Unavailable("rate limited".into()))
            }
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                Err(GithubError::Rejected(format!("{} from {}", response.status(), path_of(url))))
            }
            status => Err(GithubError::Unavailable(format!("{status} from {}", path_of(url)))),
        }
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, GithubError> {
        response.json().await.map_err(|error| GithubError::Unavailable(describe(&error)))
    }

    /// Every item of a paginated list, following `Link: rel="next"` on the API's origin.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
    ) -> Result<Vec<T>, GithubError> {
        let origin = Url::parse(&self.api_base)
            .map_err(|_| GithubError::Unavailable("the API base URL is invalid".into()))?
            .origin();
        let mut url = format!("{}{path}?per_page=100", self.api_base);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.get(&url, token).await?;
            let next = next_link(response.headers());
            items.extend(Self::json::<Vec<T>>(response).await?);
            match next {
                Some(next) if Url::parse(&next).is_ok_and(|n| n.origin() == origin) => url = next,
                Some(_) => {
                    return Err(GithubError::Unavailable(
                        "pagination pointed away from the API host".into(),
                    ));
                }
                None => return Ok(items),
            }
        }
        tracing::warn!(path, "GitHub list longer than {MAX_PAGES} pages; the rest is ignored");
        Ok(items)
    }

    /// A list that a token may lack the scope for (`read:org`): refusals read as empty.
    async fn optional_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
    ) -> Result<Vec<T>, GithubError> {
        match self.all_pages(path, token).await {
            Err(GithubError::Rejected(why)) => {
                tracing::info!(path, reason = %why, "GitHub list not readable with this token");
                Ok(Vec::new())
            }
            other => other,
        }
    }
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

#[async_trait::async_trait]
impl GitHubApi for HttpGitHub {
    async fn identity(&self, token: &str) -> Result<GithubIdentity, GithubError> {
        let user: User = Self::json(self.get(&format!("{}/user", self.api_base), token).await?)
            .await
            .map_err(|_| GithubError::Unavailable("GET /user answered without a login".into()))?;
        let orgs: Vec<Org> = self.optional_pages("/user/orgs", token).await?;
        let teams: Vec<Team> = self.optional_pages("/user/teams", token).await?;
        let mut org_logins: Vec<String> =
            orgs.into_iter().map(|org| org.login.to_ascii_lowercase()).collect();
        let mut team_names = Vec::with_capacity(teams.len());
        for team in teams {
            let org = team.organization.login.to_ascii_lowercase();
            team_names.push(format!("{org}/{}", team.slug.to_ascii_lowercase()));
            // A team membership is an organisation membership, even a private one.
            org_logins.push(org);
        }
        org_logins.sort();
        org_logins.dedup();
        team_names.sort();
        team_names.dedup();
        Ok(GithubIdentity { login: user.login, orgs: org_logins, teams: team_names })
    }

    async fn exchange_code(&self, exchange: CodeExchange<'_>) -> Result<String, GithubError> {
        let CodeExchange { client, code, redirect_uri, code_verifier } = exchange;
        flow::exchange(client, &self.client, code, code_verifier, redirect_uri).await
    }
}

fn rate_limited(headers: &HeaderMap) -> bool {
    headers.get("x-ratelimit-remaining").is_some_and(|value| value.as_bytes() == b"0")
}

/// The URL of `rel="next"` in a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|param| {
            let param = param.trim();
            param == "rel=\"next\"" || param == "rel=next"
        });
        let target = target.strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// A reqwest error without its URL's query (never holds secrets, but stays short).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else if error.is_decode() {
        "unreadable answer".into()
    } else {
        "request failed".into()
    }
}

fn path_of(url: &str) -> String {
    Url::parse(url).map(|url| url.path().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            "<https://api.github.com/user/teams?page=3>; rel=\"last\", \
             <https://api.github.com/user/teams?page=2>; rel=\"next\""
                .parse()
                .expect("header"),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/user/teams?page=2")
        );
        headers.insert(LINK, "<https://x/y?page=1>; rel=\"prev\"".parse().expect("header"));
        assert_eq!(next_link(&headers), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
