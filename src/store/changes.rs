//! What other replicas changed in the shared database (scale-out.md §3): session rows read
//! back in revision order, woken early by `LISTEN/NOTIFY` and polled anyway, so a lost
//! notification delays a change by one poll at most. Only PostgreSQL has one: a SQLite
//! database has a single server.

use std::time::Duration;

use super::sessions::SessionRow;

/// How long a change's revision may sit uncommitted after it was drawn (the sequence hands
/// out revisions before commit, so commits can land out of order); reads overlap this far
/// back so none is skipped.
pub const COMMIT_WINDOW: Duration = Duration::from_secs(2);

/// One read of the change log.
#[derive(Debug, Default)]
pub struct SessionChanges {
    /// Rows inserted or updated, each with its revision, in revision order.
    pub rows: Vec<(i64, SessionRow)>,
    /// Sessions deleted (id and the revision of the deletion), in revision order.
    pub deleted: Vec<(i64, String)>,
    /// The highest revision in this read (or `after` when there was none).
    pub newest: i64,
}

/// Something a notification said changed (never secrets: ids and kinds only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A session row was inserted, updated or deleted by `origin` (a replica id).
    Session { id: String, origin: String },
    /// A signed-in browser or proxy session ended (logout, expiry): open streams re-check
    /// their credentials.
    SignInEnded,
    /// The listening connection was lost and taken again: notices in between are gone.
    Reconnected,
}

/// The change log of a shared database.
#[async_trait::async_trait]
pub trait ChangeLog: Send + Sync + std::fmt::Debug {
    /// The newest revision now (where a reader that has just loaded every row starts).
    async fn newest_revision(&self) -> anyhow::Result<i64>;

    /// Rows changed and sessions deleted with a revision above `after`.
    async fn sessions_since(&self, after: i64) -> anyhow::Result<SessionChanges>;

    /// Notices as they arrive, on a connection of their own that is taken again when it
    /// drops (then [`Notice::Reconnected`]). The channel ends when the log is dropped.
    async fn subscribe(&self) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<Notice>>;
}
