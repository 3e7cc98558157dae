//! The change log of a PostgreSQL database shared by replicas ([`ChangeLog`]): session rows
//! and tombstones read back by revision (step 0009's sequence and triggers), and the
//! `apx_changes` notifications heard on a connection of its own, taken again with backoff
//! when it drops.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_postgres::AsyncMessage;

use super::PgStore;
use super::sessions::from_row;
use crate::store::changes::{ChangeLog, Notice, SessionChanges};
use crate::store::sessions::COLUMNS;

/// The channel every change is announced on (step 0009's triggers).
const CHANNEL: &str = "apx_changes";
/// The first pause before the listening connection is taken again, doubled per failure.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// What a listening connection says, in order.
type Messages = Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// The PostgreSQL change log; its listeners stop when it is dropped.
#[derive(Debug)]
pub struct PgChangeLog {
    store: PgStore,
    listeners: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl PgChangeLog {
    pub fn new(store: PgStore) -> Self {
        Self { store, listeners: Mutex::default() }
    }
}

impl Drop for PgChangeLog {
    fn drop(&mut self) {
        let listeners = match self.listeners.get_mut() {
            Ok(listeners) => listeners,
            Err(poisoned) => poisoned.into_inner(),
        };
        for listener in listeners.drain(..) {
            listener.abort();
        }
    }
}

#[async_trait::async_trait]
impl ChangeLog for PgChangeLog {
    async fn newest_revision(&self) -> anyhow::Result<i64> {
        let connection = self.store.connection().await?;
        let row = connection
            .query_one(
                "SELECT GREATEST(COALESCE(MAX(revision), 0), \
                 (SELECT COALESCE(MAX(revision), 0) FROM session_tombstones)) FROM sessions",
                &[],
            )
            .await
            .context("while reading the newest revision")?;
        Ok(row.try_get(0)?)
    }

    /// Both reads see one snapshot, so a row deleted between them is not missed.
    async fn sessions_since(&self, after: i64) -> anyhow::Result<SessionChanges> {
        let mut connection = self.store.connection().await?;
        let transaction = connection
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rows = transaction
            .query(
                &format!(
                    "SELECT {COLUMNS}, revision FROM sessions WHERE revision > $1 \
                     ORDER BY revision"
                ),
                &[&after],
            )
            .await
            .context("while reading changed sessions")?;
        let tombstones = transaction
            .query(
                "SELECT revision, id FROM session_tombstones WHERE revision > $1 \
                 ORDER BY revision",
                &[&after],
            )
            .await
            .context("while reading deleted sessions")?;
        transaction.commit().await?;
        let mut changes = SessionChanges { newest: after, ..SessionChanges::default() };
        for row in &rows {
            let revision: i64 = row.try_get(COLUMN_COUNT)?;
            changes.newest = changes.newest.max(revision);
            changes.rows.push((revision, from_row(row)?));
        }
        for tombstone in &tombstones {
            let revision: i64 = tombstone.try_get(0)?;
            changes.newest = changes.newest.max(revision);
            changes.deleted.push((revision, tombstone.try_get(1)?));
        }
        Ok(changes)
    }

    async fn subscribe(&self) -> anyhow::Result<UnboundedReceiver<Notice>> {
        let listening = listen(&self.store).await?;
        let (sender, receiver) = unbounded_channel();
        let listener = tokio::spawn(relay(self.store.clone(), listening, sender));
        let mut listeners = match self.listeners.lock() {
            Ok(listeners) => listeners,
            Err(poisoned) => poisoned.into_inner(),
        };
        listeners.retain(|listener| !listener.is_finished());
        listeners.push(listener.abort_handle());
        Ok(receiver)
    }
}

/// Where `revision` sits after [`COLUMNS`] in a changed row.
const COLUMN_COUNT: usize = 17;

/// A connection that has run `LISTEN`, with the client that keeps it open.
async fn listen(store: &PgStore) -> anyhow::Result<(tokio_postgres::Client, Messages)> {
    let (client, mut connection) = store.raw_connection().await?;
    let mut messages: Messages =
        Box::pin(futures_util::stream::poll_fn(move |context| connection.poll_message(context)));
    let command = format!("LISTEN {CHANNEL}");
    {
        let listened = client.batch_execute(&command);
        tokio::pin!(listened);
        // The connection makes progress only while its messages are polled.
        loop {
            tokio::select! {
                result = &mut listened => {
                    result.context("while listening for changes")?;
                    break;
                }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error).context("while listening for changes"),
                    None => bail!("the listening connection closed before LISTEN"),
                },
            }
        }
    }
    Ok((client, messages))
}

/// Sends what the notifications say until the receiver is gone; takes the connection again
/// (with backoff) whenever it ends, then says [`Notice::Reconnected`].
async fn relay(
    store: PgStore,
    mut listening: (tokio_postgres::Client, Messages),
    sender: UnboundedSender<Notice>,
) {
    loop {
        loop {
            let message = tokio::select! {
                message = listening.1.next() => message,
                () = sender.closed() => return,
            };
            match message {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    if notification.channel() != CHANNEL {
                        continue;
                    }
                    let Some(notice) = parse(notification.payload()) else { continue };
                    if sender.send(notice).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::warn!("the change listener's connection ended: {error}");
                    break;
                }
                None => {
                    tracing::warn!("the change listener's connection closed");
                    break;
                }
            }
        }
        let mut pause = FIRST_PAUSE;
        listening = loop {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = sender.closed() => return,
            }
            match listen(&store).await {
                Ok(taken) => break taken,
                Err(error) => {
                    tracing::warn!("cannot listen for changes again: {error:#}");
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            }
        };
        if sender.send(Notice::Reconnected).is_err() {
            return;
        }
    }
}

/// A notification's payload as the triggers write it.
#[derive(serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Payload {
    Session { id: String, origin: String },
    SignInEnded,
}

/// The notice a payload carries; `None` for anything malformed or unknown (ignored).
fn parse(payload: &str) -> Option<Notice> {
    Some(match serde_json::from_str(payload).ok()? {
        Payload::Session { id, origin } => Notice::Session { id, origin },
        Payload::SignInEnded => Notice::SignInEnded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_notices_and_anything_else_is_ignored() {
        assert_eq!(
            parse(r#"{"kind":"session","id":"s-1","origin":"replica-a"}"#),
            Some(Notice::Session { id: "s-1".into(), origin: "replica-a".into() })
        );
        assert_eq!(parse(r#"{"kind":"sign_in_ended"}"#), Some(Notice::SignInEnded));
        for malformed in ["", "{", r#"{"kind":"session"}"#, r#"{"kind":"other"}"#, "[1]"] {
            assert_eq!(parse(malformed), None, "{malformed}");
        }
    }

    #[test]
    fn the_revision_follows_every_session_column() {
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
    }
}
