//! The change feed of the session registry (`GET /sessions/events`): a broadcast of every
//! session created, removed, or whose `status` or `agent_status` changed, each with the
//! session's detail as of that change. Emitted from the registry's few mutation points and
//! from [`Session::update`](super::Session), through which every live-state change goes.
//! Nothing is built when nobody listens; a listener that falls behind is told so by the
//! channel (`Lagged`) and resynchronises from the registry.

use std::sync::Arc;

use agentapi_proxy_client::SessionDetail;
use tokio::sync::broadcast;

/// Changes kept for slow listeners before they lag.
const CAPACITY: usize = 1024;

/// One change of the registry.
#[derive(Debug, Clone)]
pub enum SessionChange {
    /// Created, or its `status` or `agent_status` changed.
    Updated(Arc<SessionDetail>),
    /// Removed (deleted or purged).
    Removed { session_id: Arc<str>, user_id: Arc<str> },
}

impl SessionChange {
    /// The owner of the session the change is about.
    pub fn user_id(&self) -> &str {
        match self {
            Self::Updated(detail) => &detail.summary.user_id,
            Self::Removed { user_id, .. } => user_id,
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionFeed(broadcast::Sender<SessionChange>);

impl Default for SessionFeed {
    fn default() -> Self {
        Self(broadcast::Sender::new(CAPACITY))
    }
}

impl SessionFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<SessionChange> {
        self.0.subscribe()
    }

    /// Sends the detail `build` makes, if anyone listens.
    pub fn updated(&self, build: impl FnOnce() -> SessionDetail) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(SessionChange::Updated(Arc::new(build())));
        }
    }

    pub fn removed(&self, session_id: &str, user_id: &str) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(SessionChange::Removed {
                session_id: session_id.into(),
                user_id: user_id.into(),
            });
        }
    }
}
