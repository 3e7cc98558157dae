//! The OAuth flows against the fake GitHub: the API-client flow (token, refresh, logout), states
//! that must not be honoured, the redirect allow-lists, the browser flow with its cookies and
//! CSRF guard, tokens across a restart, and a logged-out token's event stream.

use super::*;

#[tokio::test]
async fn the_api_client_flow_issues_a_proxy_token_that_refreshes_and_logs_out() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    let (issued, mut bodies) = api_login(&base, &fake, OCTOCAT).await;

    let token = issued["access_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("aps_") && token.len() == 68, "{token}");
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["user"]["user_id"], "octocat");
    assert_eq!(issued["user"]["role"], "developer");
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), 1);
    assert_eq!(fake.calls().verified.load(Ordering::SeqCst), 1, "PKCE verifier matched");
    let session_id = issued["session_id"].as_str().expect("session id").to_string();
    let expires_at = issued["expires_at"].as_str().expect("expiry").to_string();

    let (code, me) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(
        (code, me["auth_type"].as_str(), me["user_id"].as_str()),
        (200, Some("oauth"), Some("octocat"))
    );
    let api_calls = fake.calls().api();

    let (code, _, refreshed, text) =
        send(client.post(format!("{base}/oauth/refresh")).header("X-Session-ID", &session_id))
            .await;
    assert_eq!(code, 200, "{refreshed}");
    assert_eq!(refreshed["session_id"], session_id.as_str());
    assert!(refreshed["expires_at"].as_str().expect("expiry") >= expires_at.as_str());
    bodies.push(text);
    let (code, _, _, text) =
        send(client.post(format!("{base}/oauth/refresh")).bearer_auth(&token)).await;
    assert_eq!(code, 200);
    bodies.push(text);

    let (code, _, body, text) =
        send(client.post(format!("{base}/oauth/logout")).bearer_auth(&token)).await;
    assert_eq!((code, body), (200, json!({"message": "Successfully logged out"})));
    bodies.push(text);
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(code, 401, "logged out at once");
    let (code, _, _, _) =
        send(client.post(format!("{base}/oauth/refresh")).header("X-Session-ID", &session_id))
            .await;
    assert_eq!(code, 401, "a logged-out session cannot be refreshed");
    assert_eq!(fake.calls().api(), api_calls, "proxy tokens never ask GitHub");
    for body in &bodies {
        assert!(!body.contains(OCTOCAT), "the GitHub token leaked: {body}");
    }
}

#[tokio::test]
async fn unknown_reused_and_expired_states_are_refused_without_asking_github() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    let callback = |code: &str, state: &str| {
        format!(
            "{base}/oauth/callback?{}",
            serde_urlencoded::to_string([("code", code), ("state", state)]).expect("query")
        )
    };
    let (code, _, body, _) = send(client.get(callback("c", "never-issued"))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));
    let (code, _, body, _) = send(client.get(format!("{base}/oauth/callback?code=c"))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")), "no state at all");

    // A used state cannot be used again.
    let (_, _, started, _) = send(
        client.post(format!("{base}/oauth/authorize")).json(&json!({"redirect_uri": REDIRECT})),
    )
    .await;
    fake.approve_as(MONA);
    let params = query_of(&fake.approve(started["auth_url"].as_str().expect("url")).await);
    let (code, _, _, _) = send(client.get(callback(&params["code"], &params["state"]))).await;
    assert_eq!(code, 200);
    let token_calls = fake.calls().token.load(Ordering::SeqCst);
    let (code, _, body, _) = send(client.get(callback(&params["code"], &params["state"]))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));

    // An expired state: written straight into the store, ten minutes old.
    let state = "expired-state-0123456789";
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(state.as_bytes()));
    let database = server.dir.path().join("data").join("agentapi-proxy.db");
    let connection = rusqlite::Connection::open(&database).expect("open database");
    connection.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    connection
        .execute(
            "INSERT INTO oauth_states (state_hash, verifier, redirect_uri, expires_at) \
             VALUES (?1, 'verifier', ?2, ?3)",
            rusqlite::params![hash, REDIRECT, agentapi_proxy::clock::now_ms() - 1],
        )
        .expect("insert");
    let (code, _, body, _) = send(client.get(callback("c", state))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), token_calls, "GitHub was not asked");
}

#[tokio::test]
async fn redirect_uris_and_return_to_outside_the_allow_list_are_refused() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    for uri in ["https://evil.com/cb", "http://app.test/cb/more", "http://localhost:70000/", ""] {
        let (code, _, body, _) = send(
            client.post(format!("{base}/oauth/authorize")).json(&json!({"redirect_uri": uri})),
        )
        .await;
        assert_eq!((code, body["code"].as_str()), (400, Some("invalid_redirect_uri")), "{uri}");
    }
    let (code, _, _, _) = send(
        client
            .post(format!("{base}/oauth/authorize"))
            .json(&json!({"redirect_uri": "http://localhost:7000/done"})),
    )
    .await;
    assert_eq!(code, 200, "under a prefix entry");
    for return_to in ["//evil.com", "https://evil.com", "/\\evil", "evil"] {
        let url = format!(
            "{base}/oauth/login?{}",
            serde_urlencoded::to_string([("return_to", return_to)]).expect("query")
        );
        let (code, headers, body, _) = send(client.get(url)).await;
        assert_eq!((code, body["code"].as_str()), (400, Some("invalid_return_to")), "{return_to}");
        assert!(set_cookies(&headers).is_empty());
    }
    assert_eq!(fake.calls().all(), 0);
}

#[tokio::test]
async fn the_browser_flow_sets_cookies_and_guards_unsafe_requests() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();

    let (code, headers, _, _) =
        send(client.get(format!("{base}/oauth/login?return_to=/ui/"))).await;
    assert_eq!(code, 302);
    let to_github = headers["location"].to_str().expect("location").to_string();
    assert!(to_github.starts_with(&format!("{}/login/oauth/authorize?", fake.url)), "{to_github}");
    let params = query_of(&to_github);
    assert_eq!(params["redirect_uri"], format!("{PUBLIC_URL}/oauth/callback"));
    assert_eq!(params["code_challenge_method"], "S256");
    let cookies = set_cookies(&headers);
    assert_eq!(cookies.len(), 1);
    let login_cookie = &cookies[0];
    assert!(login_cookie.starts_with("__Host-apx_oauth="), "{login_cookie}");
    for flag in ["; Path=/", "; Max-Age=600", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(login_cookie.contains(flag), "{flag} missing in {login_cookie}");
    }

    fake.approve_as(OCTOCAT);
    let back = fake.approve(&to_github).await;
    assert!(back.starts_with(&format!("{PUBLIC_URL}/oauth/callback?")), "{back}");
    let callback = back.replace(PUBLIC_URL, &base);

    // Without the login cookie the state is not honoured (and is used up).
    let (code, _, body, _) = send(client.get(&callback)).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), 0);

    // A second login, this time finished by the same browser.
    let (_, headers, _, _) = send(client.get(format!("{base}/oauth/login?return_to=/ui/"))).await;
    let login_pair = set_cookies(&headers)[0].split(';').next().expect("pair").to_string();
    let back = fake.approve(headers["location"].to_str().expect("location")).await;
    let (code, headers, _, text) =
        send(client.get(back.replace(PUBLIC_URL, &base)).header("Cookie", &login_pair)).await;
    assert_eq!(code, 302, "{text}");
    assert_eq!(headers["location"], "/ui/");
    let cookies = set_cookies(&headers);
    let session_cookie =
        cookies.iter().find(|c| c.starts_with("__Host-apx_session=aps_")).expect("session cookie");
    for flag in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(session_cookie.contains(flag), "{flag} missing in {session_cookie}");
    }
    assert!(cookies.iter().any(|c| c.starts_with("__Host-apx_oauth=;") && c.contains("Max-Age=0")));
    assert!(!text.contains(OCTOCAT));
    let session = session_cookie.split(';').next().expect("pair").to_string();

    let (code, me) = status_with(&base, "Cookie", &session).await;
    assert_eq!(
        (code, me["auth_type"].as_str(), me["user_id"].as_str()),
        (200, Some("oauth"), Some("octocat"))
    );

    // Unsafe requests need proof of origin; a JSON body is proof.
    let (code, _, body, _) = send(
        client
            .post(format!("{base}/profiles"))
            .header("Cookie", &session)
            .header("Content-Type", "text/plain")
            .body(r#"{"name": "x"}"#),
    )
    .await;
    assert_eq!((code, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (code, _, created, _) = send(
        client
            .post(format!("{base}/profiles"))
            .header("Cookie", &session)
            .json(&json!({"name": "p"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let profile = format!("{base}/profiles/{}", created["profile"]["id"].as_str().expect("id"));
    for origin in [None, Some("https://evil.example"), Some("http://agents.example")] {
        let mut request = client.delete(&profile).header("Cookie", &session);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let (code, _, _, _) = send(request).await;
        assert_eq!(code, 403, "origin {origin:?}");
    }
    let (code, _, _, _) =
        send(client.delete(&profile).header("Cookie", &session).header("Origin", PUBLIC_URL)).await;
    assert_eq!(code, 200, "our own origin");

    // Logout by cookie (CSRF-guarded too) clears it and ends the session.
    let (code, _, _, _) =
        send(client.post(format!("{base}/oauth/logout")).header("Cookie", &session)).await;
    assert_eq!(code, 403, "a cross-site logout is refused");
    let (code, headers, _, _) = send(
        client
            .post(format!("{base}/oauth/logout"))
            .header("Cookie", &session)
            .header("X-Requested-With", "fetch"),
    )
    .await;
    assert_eq!(code, 200);
    assert!(set_cookies(&headers).iter().any(|c| c.starts_with("__Host-apx_session=;")));
    let (code, _) = status_with(&base, "Cookie", &session).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn insecure_cookies_drop_the_prefix_and_the_secure_flag() {
    let fake = fake().await;
    let server = TestServer::start(|config| {
        with_oauth(config, &fake);
        config.server.insecure_cookies = true;
    })
    .await;
    let (code, headers, _, _) =
        send(no_redirects().get(format!("{}/oauth/login", server.base()))).await;
    assert_eq!(code, 302);
    let cookie = &set_cookies(&headers)[0];
    assert!(cookie.starts_with("apx_oauth=") && !cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn proxy_tokens_survive_a_restart_and_stay_out_of_logs_and_the_database() {
    let fake = fake().await;
    let server = BinaryServer::start(|config| with_oauth(config, &fake)).await;
    let base = format!("http://{}", server.address);
    let (issued, _) = api_login(&base, &fake, HUBOT).await;
    let token = issued["access_token"].as_str().expect("token").to_string();
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(code, 200);
    let logs = server.logs.clone();
    let (dir, config_path) = server.kill9().await;
    let database =
        std::fs::read(dir.path().join("data").join("agentapi-proxy.db")).unwrap_or_default();
    let wal =
        std::fs::read(dir.path().join("data").join("agentapi-proxy.db-wal")).unwrap_or_default();
    for stored in [&database, &wal] {
        let text = String::from_utf8_lossy(stored);
        assert!(!text.contains(&token) && !text.contains(HUBOT), "a secret is stored in clear");
    }

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let base = format!("http://{}", server.address);
    let (code, me) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(
        (code, me["user_id"].as_str(), me["role"].as_str()),
        (200, Some("hubot"), Some("admin"))
    );
    let (code, _, _, _) =
        send(no_redirects().post(format!("{base}/oauth/logout")).bearer_auth(&token)).await;
    assert_eq!(code, 200);
    let mut lines = logs.lock().expect("logs").clone();
    lines.extend(server.logs.lock().expect("logs").iter().cloned());
    assert!(lines.iter().any(|line| line.contains("OAuth login completed")), "logs were read");
    for line in &lines {
        assert!(!line.contains(&token[4..]) && !line.contains(HUBOT), "secret in log: {line}");
        assert!(!line.contains("code-"), "an OAuth code in log: {line}");
    }
}

#[tokio::test]
async fn a_logged_out_tokens_event_stream_ends() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let (issued, _) = api_login(&base, &fake, HUBOT).await;
    let token = issued["access_token"].as_str().expect("token").to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let client = reqwest::Client::builder().default_headers(headers).build().expect("client");
    let (id, _) = crate::support::sessions::start_ok(&client, &base, json!({})).await;
    let mut events = client.get(format!("{base}/{id}/events")).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let (code, _, _, _) = send(client.post(format!("{base}/oauth/logout"))).await;
    assert_eq!(code, 200);
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its logged-out token");
}

#[tokio::test]
async fn the_client_crate_drives_the_whole_oauth_api_flow() {
    use agentapi_proxy_client::Client;
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let anonymous = Client::builder(server.base()).build().expect("client");
    let started = anonymous.oauth_authorize(REDIRECT).await.expect("authorize");
    fake.approve_as(OCTOCAT);
    let back = query_of(&fake.approve(&started.auth_url).await);
    assert_eq!(back["state"], started.state);
    let session = anonymous.oauth_callback(&back["code"], &back["state"]).await.expect("callback");
    assert!(session.access_token.starts_with("aps_"));
    let signed_in =
        Client::builder(server.base()).bearer_token(&session.access_token).build().expect("client");
    assert_eq!(signed_in.auth_status().await.expect("whoami").auth_type, "oauth");
    let refreshed = anonymous.oauth_refresh(Some(&session.session_id)).await.expect("refresh");
    assert!(refreshed.expires_at >= session.expires_at);
    signed_in.oauth_logout().await.expect("logout");
    let error = signed_in.auth_status().await.expect_err("logged out");
    assert_eq!((error.status(), error.code()), (Some(401), Some("unauthenticated")));
    let error = anonymous.oauth_callback("code", "never-issued").await.expect_err("bad state");
    assert_eq!((error.status(), error.code()), (Some(400), Some("invalid_state")));
}
