//! The dashboard's files at the HTTP level: the shell for page routes, 404 for unknown
//! files, the security headers on every `/ui/` answer, gzip and ETags, no authentication
//! needed to load the page, and the URL printed at start.

use std::time::Duration;

use agentapi_proxy::config::{ApiKeyEntry, Config};

use crate::support::server::{BinaryServer, TestServer};
use crate::support::wait_until;

fn with_keys(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![ApiKeyEntry {
        key: Some("ap_dash_0123456789abcdef".into()),
        user_id: "dash".into(),
        role: "user".into(),
        permissions: vec!["*".into()],
        ..ApiKeyEntry::default()
    }];
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn assert_ui_headers(response: &reqwest::Response) {
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
}

#[tokio::test]
async fn page_routes_serve_the_shell_without_authentication() {
    let server = TestServer::start(with_keys).await;
    let client = plain_client();
    for path in [
        "/ui/",
        "/ui/sessions/0b7c6f4e-8d1a-4c2b-9e3f-5a6d7c8b9e0f",
        "/ui/profiles",
        "/ui/overview",
        "/ui/later",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_ui_headers(&response);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let body = response.text().await.unwrap();
        assert!(
            body.contains("<script type=\"module\" src=\"/ui/assets/app.js\">"),
            "{path}: {body}"
        );
    }
    let response = client.get(server.url("/ui")).send().await.unwrap();
    assert_eq!(response.status(), 308);
    assert_eq!(response.headers()["location"], "/ui/");
}

#[tokio::test]
async fn unknown_files_are_404_with_the_same_headers() {
    let server = TestServer::start(|_| {}).await;
    let client = plain_client();
    for path in [
        "/ui/assets/nope.js",
        "/ui/assets/index.html",
        "/ui/assets/",
        "/ui/favicon.ico",
        "/ui/sessions/x/app.js",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_ui_headers(&response);
    }
}

#[tokio::test]
async fn assets_are_gzipped_on_request_and_revalidated_by_etag() {
    let server = TestServer::start(|_| {}).await;
    // Without automatic decompression, to see what went over the wire.
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    let url = server.url("/ui/assets/app.js");
    let identity = client.get(&url).send().await.unwrap();
    assert_eq!(identity.status(), 200);
    assert_ui_headers(&identity);
    assert!(identity.headers().get("content-encoding").is_none());
    assert!(identity.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let etag = identity.headers()["etag"].to_str().unwrap().to_string();
    let plain = identity.bytes().await.unwrap();

    let gzipped = client.get(&url).header("accept-encoding", "gzip, br").send().await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["vary"], "Accept-Encoding");
    let compressed = gzipped.bytes().await.unwrap();
    assert!(compressed.len() < plain.len());
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain);

    let again = client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert_ui_headers(&again);
    let other = client.get(server.url("/ui/assets/app.css")).header("if-none-match", &etag).send();
    assert_eq!(other.await.unwrap().status(), 200, "another file's ETag does not match");
}

#[tokio::test]
async fn the_page_loads_nothing_from_another_origin() {
    let server = TestServer::start(|_| {}).await;
    let client = plain_client();
    for asset in agentapi_proxy::ui::ASSETS.iter() {
        let body =
            client.get(server.url(&format!("/ui/assets/{}", asset.name))).send().await.unwrap();
        let text = body.text().await.unwrap();
        for remote in ["http://", "https://", "//fonts.", "@import"] {
            let allowed = asset.name == "icon.svg" && text.contains("http://www.w3.org/2000/svg");
            assert!(!text.contains(remote) || allowed, "{} refers to {remote}", asset.name);
        }
    }
}

#[tokio::test]
async fn the_server_prints_the_dashboard_url_at_start() {
    let server = BinaryServer::start(|_| {}).await;
    let expected = format!("http://{}/ui/", server.address);
    wait_until("the dashboard line", Duration::from_secs(10), || async {
        server.logged(&expected).then_some(())
    })
    .await;
}
