//! A fake GitHub on 127.0.0.1 for the auth tests: the REST API (`/user`, `/user/orgs`,
//! `/user/teams`, paginated with `Link: rel="next"`) and the OAuth web endpoints
//! (`/login/oauth/authorize` approves at once as a chosen user; `/login/oauth/access_token`
//! checks the client, the single-use code, the redirect URI and the PKCE S256 verifier).
//! Every endpoint counts its calls; the whole fake can be made to fail or to hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "fake-client-id";
pub const CLIENT_SECRET: &str = "fake-client-secret";

/// How the fake behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Normal = 0,
    /// Every endpoint answers 503.
    Down = 1,
    /// Every endpoint waits 30 s before answering (past the proxy's 5 s timeout).
    Hang = 2,
}

/// A GitHub user behind a token.
#[derive(Debug, Clone, Default)]
pub struct FakeUser {
    pub login: String,
    pub orgs: Vec<String>,
    /// `(org, team-slug)` pairs.
    pub teams: Vec<(String, String)>,
}

impl FakeUser {
    pub fn new(login: &str, orgs: &[&str], teams: &[(&str, &str)]) -> Self {
        Self {
            login: login.into(),
            orgs: orgs.iter().map(|org| org.to_string()).collect(),
            teams: teams.iter().map(|(org, slug)| (org.to_string(), slug.to_string())).collect(),
        }
    }
}

#[derive(Debug)]
struct Grant {
    token: String,
    challenge: String,
    redirect_uri: String,
}

/// Calls per endpoint.
#[derive(Debug, Default)]
pub struct Calls {
    pub user: AtomicUsize,
    pub orgs: AtomicUsize,
    pub teams: AtomicUsize,
    pub authorize: AtomicUsize,
    pub token: AtomicUsize,
    /// Token requests whose PKCE verifier matched the challenge.
    pub verified: AtomicUsize,
}

impl Calls {
    pub fn api(&self) -> usize {
        self.user.load(Ordering::SeqCst)
            + self.orgs.load(Ordering::SeqCst)
            + self.teams.load(Ordering::SeqCst)
    }

    pub fn all(&self) -> usize {
        self.api() + self.authorize.load(Ordering::SeqCst) + self.token.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
pub struct Shared {
    users: Mutex<HashMap<String, FakeUser>>,
    grants: Mutex<HashMap<String, Grant>>,
    /// The token the next authorization hands out (the user who "clicks approve").
    approve_as: Mutex<Option<String>>,
    page_size: AtomicUsize,
    mode: AtomicU8,
    codes_issued: AtomicUsize,
    pub calls: Calls,
    base: Mutex<String>,
}

/// A running fake GitHub; it stops when dropped.
pub struct FakeGithub {
    pub url: String,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGithub {
    /// Starts the fake; lists are served `page_size` entries per page.
    pub async fn start(page_size: usize) -> Self {
        let shared = Arc::new(Shared::default());
        shared.page_size.store(page_size.max(1), Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        *shared.base.lock().expect("base") = url.clone();
        let app = Router::new()
            .route("/user", get(user))
            .route("/user/orgs", get(orgs))
            .route("/user/teams", get(teams))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    pub fn add_user(&self, token: &str, user: FakeUser) {
        self.shared.users.lock().expect("users").insert(token.into(), user);
    }

    /// The next OAuth approval logs in as the owner of `token`.
    pub fn approve_as(&self, token: &str) {
        *self.shared.approve_as.lock().expect("approve") = Some(token.into());
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn calls(&self) -> &Calls {
        &self.shared.calls
    }

    /// Plays the user at GitHub: opens `auth_url` (which must point at this fake) and returns
    /// the `Location` GitHub sends the browser back to (`redirect_uri?code=..&state=..`).
    pub async fn approve(&self, auth_url: &str) -> String {
        assert!(auth_url.starts_with(&self.url), "{auth_url} is not on the fake");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let response = client.get(auth_url).send().await.expect("authorize");
        assert_eq!(response.status(), 302, "the fake approves");
        response.headers()["location"].to_str().expect("location").to_string()
    }
}

/// `S256(verifier)`, as GitHub computes it.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn misbehave(shared: &Shared) -> Option<Response> {
    match shared.mode.load(Ordering::SeqCst) {
        1 => Some((StatusCode::SERVICE_UNAVAILABLE, "down").into_response()),
        2 => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Some((StatusCode::SERVICE_UNAVAILABLE, "too late").into_response())
        }
        _ => None,
    }
}

fn user_of(shared: &Shared, headers: &HeaderMap) -> Option<FakeUser> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token "))?;
    shared.users.lock().expect("users").get(token).cloned()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Bad credentials"}))).into_response()
}

async fn user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.calls.user.fetch_add(1, Ordering::SeqCst);
    if let Some(answer) = misbehave(&shared).await {
        return answer;
    }
    match user_of(&shared, &headers) {
        Some(user) => axum::Json(json!({"login": user.login, "id": 1})).into_response(),
        None => unauthorized(),
    }
}

/// One page of `items`, with a `Link` to the next page when there is one.
fn page(shared: &Shared, path: &str, items: Vec<Value>, raw_query: Option<String>) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw_query.as_deref().unwrap_or_default()).unwrap_or_default();
    let number = pairs
        .iter()
        .find(|(key, _)| key == "page")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let size = shared.page_size.load(Ordering::SeqCst);
    let slice: Vec<Value> = items.iter().skip((number - 1) * size).take(size).cloned().collect();
    let mut response = axum::Json(Value::Array(slice)).into_response();
    if number * size < items.len() {
        let base = shared.base.lock().expect("base").clone();
        let next = format!("<{base}{path}?per_page=100&page={}>; rel=\"next\"", number + 1);
        response.headers_mut().insert(header::LINK, next.parse().expect("link"));
    }
    response
}

async fn orgs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    shared.calls.orgs.fetch_add(1, Ordering::SeqCst);
    if let Some(answer) = misbehave(&shared).await {
        return answer;
    }
    let Some(user) = user_of(&shared, &headers) else { return unauthorized() };
    let items = user.orgs.iter().map(|org| json!({"login": org})).collect();
    page(&shared, "/user/orgs", items, raw_query)
}

async fn teams(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    shared.calls.teams.fetch_add(1, Ordering::SeqCst);
    if let Some(answer) = misbehave(&shared).await {
        return answer;
    }
    let Some(user) = user_of(&shared, &headers) else { return unauthorized() };
    let items = user
        .teams
        .iter()
        .map(|(org, slug)| json!({"slug": slug, "organization": {"login": org}}))
        .collect();
    page(&shared, "/user/teams", items, raw_query)
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.calls.authorize.fetch_add(1, Ordering::SeqCst);
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID || field("code_challenge_method") != "S256" {
        return (StatusCode::BAD_REQUEST, "bad authorize request").into_response();
    }
    let Some(token) = shared.approve_as.lock().expect("approve").clone() else {
        return (StatusCode::FORBIDDEN, "nobody to approve as").into_response();
    };
    let number = shared.codes_issued.fetch_add(1, Ordering::SeqCst);
    let code = format!("code-{number}-{}", uuid::Uuid::new_v4().simple());
    let redirect_uri = field("redirect_uri");
    shared.grants.lock().expect("grants").insert(
        code.clone(),
        Grant { token, challenge: field("code_challenge"), redirect_uri: redirect_uri.clone() },
    );
    let back = serde_urlencoded::to_string([("code", code.as_str()), ("state", &field("state"))])
        .expect("query");
    let location = format!("{redirect_uri}?{back}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    shared.calls.token.fetch_add(1, Ordering::SeqCst);
    if let Some(answer) = misbehave(&shared).await {
        return answer;
    }
    let refuse = |error: &str| axum::Json(json!({"error": error})).into_response();
    let wants_json = headers
        .get(header::ACCEPT)
        .is_some_and(|value| value.to_str().unwrap_or_default().contains("application/json"));
    if !wants_json {
        return (StatusCode::OK, "access_token=form-encoded-is-wrong").into_response();
    }
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return refuse("incorrect_client_credentials");
    }
    let Some(grant) = shared.grants.lock().expect("grants").remove(&field("code")) else {
        return refuse("bad_verification_code");
    };
    if grant.redirect_uri != field("redirect_uri") {
        return refuse("redirect_uri_mismatch");
    }
    if s256(&field("code_verifier")) != grant.challenge {
        return refuse("invalid_grant");
    }
    shared.calls.verified.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"access_token": grant.token, "token_type": "bearer", "scope": "read:org"}))
        .into_response()
}
