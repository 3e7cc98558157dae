//! `POST /auth/login` with the GitHub-side credentials: a GitHub token and a proxy-issued
//! `aps_` token each become a cookie session with their identity; the `aps_` one ends when
//! the token it was made from logs out; `POST /auth/logout` also ends an OAuth browser
//! cookie.

use super::*;

/// `POST /auth/login {"api_key": credential}` → the `name=value` of the session cookie.
async fn dashboard_cookie(base: &str, credential: &str) -> String {
    let (code, headers, body, _) = send(
        no_redirects().post(format!("{base}/auth/login")).json(&json!({"api_key": credential})),
    )
    .await;
    assert_eq!(code, 204, "{body}");
    let cookies = set_cookies(&headers);
    let cookie = cookies.first().expect("a session cookie");
    assert!(cookie.starts_with("__Host-apx_session=aps_"), "{cookie}");
    cookie.split(';').next().expect("pair").to_string()
}

#[tokio::test]
async fn a_github_token_signs_in_with_its_identity() {
    let fake = fake().await;
    let server = TestServer::start(|config| github(config, &fake)).await;
    let base = server.base();
    let cookie = dashboard_cookie(&base, OCTOCAT).await;
    let (code, me) = status_with(&base, "Cookie", &cookie).await;
    assert_eq!(
        (code, me["user_id"].as_str(), me["role"].as_str()),
        (200, Some("octocat"), Some("developer"))
    );
    let (code, _, body, _) = send(
        no_redirects()
            .post(format!("{base}/auth/login"))
            .json(&json!({"api_key": "ghp_not_a_known_token_000000000000000000"})),
    )
    .await;
    assert_eq!((code, body["code"].as_str()), (401, Some("unauthenticated")), "GitHub refused it");
}

#[tokio::test]
async fn a_proxy_token_signs_in_and_its_logout_ends_the_cookie_session() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let (issued, _) = api_login(&base, &fake, HUBOT).await;
    let token = issued["access_token"].as_str().expect("token").to_string();
    let cookie = dashboard_cookie(&base, &token).await;
    assert!(!cookie.contains(&token[4..]), "a new token, not the one given");
    let (code, me) = status_with(&base, "Cookie", &cookie).await;
    assert_eq!(
        (code, me["user_id"].as_str(), me["role"].as_str()),
        (200, Some("hubot"), Some("admin"))
    );

    let (code, _, _, _) =
        send(no_redirects().post(format!("{base}/oauth/logout")).bearer_auth(&token)).await;
    assert_eq!(code, 200);
    let (code, _) = status_with(&base, "Cookie", &cookie).await;
    assert_eq!(code, 401, "the cookie session ended with the token it was made from");
}

#[tokio::test]
async fn auth_logout_ends_an_oauth_browser_cookie_too() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    let (_, headers, _, _) = send(client.get(format!("{base}/oauth/login?return_to=/ui/"))).await;
    let login_pair = set_cookies(&headers)[0].split(';').next().expect("pair").to_string();
    fake.approve_as(OCTOCAT);
    let back = fake.approve(headers["location"].to_str().expect("location")).await;
    let (code, headers, _, _) =
        send(client.get(back.replace(PUBLIC_URL, &base)).header("Cookie", &login_pair)).await;
    assert_eq!(code, 302);
    let session = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("__Host-apx_session=aps_"))
        .expect("session cookie");
    let session = session.split(';').next().expect("pair").to_string();
    assert_eq!(status_with(&base, "Cookie", &session).await.0, 200);
    let (code, headers, _, _) = send(
        client
            .post(format!("{base}/auth/logout"))
            .header("Cookie", &session)
            .header("X-Requested-With", "fetch"),
    )
    .await;
    assert_eq!(code, 204);
    assert!(set_cookies(&headers).iter().any(|c| c.starts_with("__Host-apx_session=;")));
    assert_eq!(status_with(&base, "Cookie", &session).await.0, 401);
}
