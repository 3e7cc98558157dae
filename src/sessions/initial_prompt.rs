//! Delivering a session's first prompt: wait until the agent reports `stable`, then
//! `POST /message`; retry while it is busy (500) or unreachable, for up to five minutes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentapi_proxy_client::{InitialMessageState, SessionStatus};
use http::Method;
use serde_json::json;

use super::ManagerState;
use super::session::Session;

const GIVE_UP_AFTER: Duration = Duration::from_secs(300);
/// agentapi answers `POST /message` once the agent starts working: seconds, up to ~18 s.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn deliver(inner: Arc<ManagerState>, session: Arc<Session>, content: String) {
    inner
        .record(&session, |state| state.initial_message = Some(InitialMessageState::Pending))
        .await;
    let give_up = Instant::now() + GIVE_UP_AFTER;
    let mut pause = Duration::from_millis(50);
    let outcome = loop {
        let state = session.state();
        let Some(agent) = state.process.filter(|_| state.status == SessionStatus::Active) else {
            break InitialMessageState::Failed;
        };
        let endpoint = inner.backend.endpoint(&agent);
        // The user's prompt goes to the agent only, never to a stranger that took its port.
        let status = if inner.backend.owns_endpoint(&agent) {
            crate::upstream::agent_status(&inner.client, &endpoint, Duration::from_secs(2)).await
        } else {
            None
        };
        if status.as_deref() == Some("stable") {
            let body = json!({ "content": content, "type": "user" });
            let sent = crate::upstream::exchange(
                &inner.client,
                &endpoint,
                Method::POST,
                "/message",
                Some(&body),
                POST_TIMEOUT,
            )
            .await;
            match sent {
                Ok((status, _)) if status.is_success() => break InitialMessageState::Sent,
                Ok((status, _)) if status.is_server_error() => {}
                Ok((status, body)) => {
                    tracing::warn!(session_id = %session.id, %status, body = %String::from_utf8_lossy(&body), "the agent refused the initial prompt");
                    break InitialMessageState::Failed;
                }
                Err(error) => {
                    tracing::debug!(session_id = %session.id, %error, "initial prompt not delivered yet")
                }
            }
        }
        if Instant::now() >= give_up {
            break InitialMessageState::Failed;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    };
    tracing::info!(session_id = %session.id, outcome = outcome.as_str(), "initial prompt");
    inner.record(&session, |state| state.initial_message = Some(outcome)).await;
}
