//! Protocol upgrades (WebSocket): once the agent answered `101 Switching Protocols`, both
//! upgraded connections are joined and bytes copied both ways until either side closes or
//! the server starts draining.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::Activity;
use super::budget::StreamTicket;
use super::sse::StreamGuard;
use crate::shutdown::{Shutdown, Stage};

/// Spawns the tunnel between the client's and the agent's upgraded connections.
pub fn tunnel(
    client: OnUpgrade,
    agent: OnUpgrade,
    shutdown: &Shutdown,
    activity: Arc<dyn Activity>,
    ticket: StreamTicket,
) {
    let shutdown = shutdown.clone();
    let guard = StreamGuard::open(activity, ticket);
    tokio::spawn(async move {
        let _guard = guard;
        let joined = async {
            let (client, agent) = tokio::try_join!(client, agent)?;
            let mut client = TokioIo::new(client);
            let mut agent = TokioIo::new(agent);
            let copied = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
            Ok::<_, anyhow::Error>(copied?)
        };
        tokio::select! {
            result = joined => match result {
                Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                Err(error) => tracing::debug!(error = format!("{error:#}"), "upgraded connection failed"),
            },
            () = shutdown.reached(Stage::Draining) => {
                tracing::debug!("closing an upgraded connection: the server is draining");
            }
        }
    });
}
