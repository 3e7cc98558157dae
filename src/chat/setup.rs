//! Starting the chat bridges the configuration enables: `chat.slack` → [`SlackSettings`] →
//! [`SlackPlatform`] (its `auth.test` retried until Slack answers, so a Slack outage never
//! keeps the proxy from starting) → the [`Bridge`]. With several replicas on one database,
//! every replica stores incoming messages and answers the chat routes, and the bridge's
//! work (Socket Mode, the inbox, the threads) runs on the one replica that leads it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::bridge::{Bridge, BridgeParts};
use super::slack::{SlackMode, SlackPlatform, SlackSettings, SlackToken};
use crate::auth::api_keys::ApiKeys;
use crate::config::Config;
use crate::sessions::SessionManager;
use crate::shutdown::{Shutdown, Stage};
use crate::store::chat::ChatStore;
use crate::store::postgres::{PgStore, leader};
use crate::store::profiles::ProfileStore;

/// The running chat services, once connected.
#[derive(Debug, Clone)]
pub struct Chat {
    pub bridge: Bridge,
    /// Slack itself, for the Events API route.
    pub slack: Arc<SlackPlatform>,
}

/// What the bridge needs from the server.
#[derive(Debug)]
pub struct ChatDeps {
    pub config: Arc<Config>,
    /// The chat bridge's tables, in whichever database the server runs on.
    pub store: Arc<dyn ChatStore>,
    pub sessions: SessionManager,
    pub profiles: Arc<dyn ProfileStore>,
    pub keys: Arc<ApiKeys>,
    pub shutdown: Shutdown,
    /// The database replicas share, when they do: the bridge's work then runs on the
    /// replica that leads it.
    pub shared: Option<PgStore>,
}

/// The Slack platform settings `chat.slack` asks for.
pub fn slack_settings(config: &Config) -> anyhow::Result<SlackSettings> {
    let slack = &config.chat.slack;
    let mode = if slack.mode == "events" { SlackMode::Events } else { SlackMode::Socket };
    let base = url::Url::parse(&slack.api_base_url)
        .map_err(|error| anyhow::anyhow!("chat.slack.api_base_url: {error}"))?;
    let mut settings = SlackSettings::new(mode, SlackToken::new(slack.bot_token.clone()), base);
    let optional = |secret: &str| (!secret.is_empty()).then(|| SlackToken::new(secret));
    settings.app_token = optional(&slack.app_token);
    settings.signing_secret = optional(&slack.signing_secret);
    Ok(settings)
}

/// Connects Slack in the background and sets `slot` once the bridge runs.
pub fn spawn(deps: ChatDeps, slot: Arc<OnceLock<Chat>>) {
    if !deps.config.chat.slack.enabled {
        return;
    }
    tokio::spawn(async move {
        let settings = match slack_settings(&deps.config) {
            Ok(settings) => settings,
            Err(error) => return tracing::error!(%error, "chat.slack is not usable"),
        };
        let mut pause = Duration::from_millis(200);
        let slack = loop {
            match SlackPlatform::connect(settings.clone()).await {
                Ok(slack) => break Arc::new(slack),
                Err(error) => {
                    tracing::warn!(%error, "cannot reach Slack yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = deps.shutdown.reached(Stage::Draining) => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        };
        let parts = |shutdown: Shutdown| BridgeParts {
            platform: slack.clone(),
            store: deps.store.clone(),
            sessions: deps.sessions.clone(),
            profiles: deps.profiles.clone(),
            config: deps.config.clone(),
            keys: deps.keys.clone(),
            shutdown,
        };
        let Some(shared) = deps.shared.clone() else {
            match Bridge::start(parts(deps.shutdown.clone())) {
                Ok(bridge) => {
                    tracing::info!(mode = deps.config.chat.slack.mode, "the Slack bridge runs");
                    let _ = slot.set(Chat { bridge, slack: slack.clone() });
                }
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "cannot start the Slack bridge")
                }
            }
            return;
        };
        match Bridge::passive(parts(deps.shutdown.clone())) {
            Ok(bridge) => {
                let _ = slot.set(Chat { bridge, slack: slack.clone() });
            }
            Err(error) => {
                return tracing::error!(
                    error = format!("{error:#}"),
                    "cannot start the Slack bridge"
                );
            }
        }
        lead_the_bridge(&shared, &deps.shutdown, || Bridge::start(parts(Shutdown::new()))).await;
    });
}

/// Runs the bridge's work whenever this replica leads it, until the server stops; a lead
/// lost (the database connection holding it ended) stops that work, and the replica waits
/// to lead again.
async fn lead_the_bridge(
    shared: &PgStore,
    shutdown: &Shutdown,
    start: impl Fn() -> anyhow::Result<Bridge>,
) {
    loop {
        let lead = tokio::select! {
            lead = leader::acquire(shared, leader::CHAT_BRIDGE) => lead,
            _ = shutdown.reached(Stage::Draining) => return,
        };
        let bridge = match start() {
            Ok(bridge) => bridge,
            Err(error) => {
                return tracing::error!(
                    error = format!("{error:#}"),
                    "cannot start the Slack bridge"
                );
            }
        };
        tracing::info!("this replica leads the Slack bridge");
        let server_stops = tokio::select! {
            _ = lead.lost() => false,
            _ = shutdown.reached(Stage::Draining) => true,
        };
        bridge.stop();
        if server_stops {
            return;
        }
        tracing::warn!("this replica lost the lead of the Slack bridge; its work stopped here");
    }
}
