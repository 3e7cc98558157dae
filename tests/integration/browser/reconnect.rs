//! A server restart: the open page says "reconnecting…", then comes back by itself and
//! shows the replayed list, including what changed while it was away.

use std::net::SocketAddr;
use std::time::Duration;

use agentapi_proxy::sessions::local::HostOptions;
use agentapi_proxy::shutdown::{Shutdown, Stage};
use serde_json::json;

use super::{desktop, open, start_session, webdriver};
use crate::support::server::{kill_agents_under, test_config};

/// Runs the server in this process on `address` with its data under `dir`.
async fn serve(
    dir: &std::path::Path,
    address: SocketAddr,
) -> (Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let config = test_config(dir);
    let listener =
        crate::support::wait_until("the address to be free", Duration::from_secs(10), || async {
            tokio::net::TcpListener::bind(address).await.ok()
        })
        .await;
    let shutdown = Shutdown::new();
    let host =
        HostOptions { proxy_bin: Some(crate::support::binary().into()), reap_all_children: false };
    let task = tokio::spawn(agentapi_proxy::run_with(config, listener, shutdown.clone(), host));
    (shutdown, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_reconnects_after_a_server_restart() {
    if !webdriver::available("the_page_reconnects_after_a_server_restart") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (shutdown, task) = serve(dir.path(), address).await;
    let base = format!("http://{address}");
    let browser = desktop().await;
    open(&browser, &base, "/ui/").await;
    browser.wait_text("main", "No sessions yet").await;

    shutdown.advance_to(Stage::Draining);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stops")
        .expect("joins")
        .expect("ok");
    browser.wait_text("#conn", "reconnecting").await;

    let (shutdown, _task) = serve(dir.path(), address).await;
    let id = start_session(&base, &[], json!({"tags": {"after": "restart"}})).await;
    browser.wait_text(&format!("li[data-session-id='{id}']"), "after=restart").await;
    browser
        .wait_for(
            "the indicator to clear",
            "return document.querySelector('#conn').hidden;",
            json!([]),
        )
        .await;
    browser.quit().await;
    shutdown.advance_to(Stage::Immediate);
    kill_agents_under(dir.path());
}
