//! One chat store suite (chat.md "Never lose or double an event"), run unchanged against
//! SQLite and PostgreSQL: the inbox dedupes by (platform, event id) and keeps order; two
//! tasks storing the same event at once get exactly one "new"; threads, queues and turns
//! round-trip; everything survives reopening the database (a restart) and is processed once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use agentapi_proxy::store::chat::{ChatStore, SqliteChat, ThreadRow};
use agentapi_proxy::store::postgres::chat::PgChat;
use agentapi_proxy::store::{Location, Store};

use crate::store_suite::pg_store;
use crate::support::postgres as test_postgres;

/// Opens the database afresh, as a restarted server would.
type Open = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn ChatStore>>>>>;

#[tokio::test]
async fn the_chat_store_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let open: Open = Box::new(move || {
        let path = path.clone();
        Box::pin(async move {
            let store = Store::open(Location::File(path)).expect("open");
            Arc::new(SqliteChat::new(store)) as Arc<dyn ChatStore>
        })
    });
    run_suite(open).await;
}

#[tokio::test]
async fn the_chat_store_suite_passes_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    let url = database.url.clone();
    let open: Open = Box::new(move || {
        let url = url.clone();
        Box::pin(async move { Arc::new(PgChat::new(pg_store(&url).await)) as Arc<dyn ChatStore> })
    });
    run_suite(open).await;
}

async fn run_suite(open: Open) {
    let chat = open().await;
    inbox_dedupes_and_keeps_order(&*chat).await;
    the_same_event_stored_at_once_is_new_exactly_once(chat.clone()).await;
    threads_queues_and_turns_round_trip(&*chat).await;
    drop(chat);
    what_was_left_survives_a_restart(&*open().await).await;
}

async fn inbox_dedupes_and_keeps_order(chat: &dyn ChatStore) {
    let store = |id: &str| chat.store_incoming("slack".into(), id.into(), format!("{{{id}}}"), 1);
    for index in 0..20 {
        assert!(store(&format!("Ev{index:02}")).await.expect("store"), "Ev{index:02} is new");
    }
    assert!(!store("Ev03").await.expect("store"), "a redelivery is a duplicate");
    let other = chat.store_incoming("teams".into(), "Ev03".into(), "{}".into(), 1).await;
    assert!(other.expect("store"), "event ids are unique per platform");
    let rows = chat.unprocessed(100).await.expect("read");
    let ids: Vec<_> = rows.iter().map(|row| row.event_id.clone()).collect();
    let mut expected: Vec<_> = (0..20).map(|index| format!("Ev{index:02}")).collect();
    expected.push("Ev03".into());
    assert_eq!(ids, expected, "oldest first");
    assert!(rows.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(rows[5].message, "{Ev05}");
    assert_eq!(chat.unprocessed(3).await.expect("read").len(), 3, "the limit holds");
    for row in &rows[..20] {
        chat.mark_processed(row.seq).await.expect("mark");
    }
    let left = chat.unprocessed(100).await.expect("read");
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].platform.as_str(), left[0].event_id.as_str()), ("teams", "Ev03"));
    assert!(!store("Ev00").await.expect("store"), "a processed event is still a duplicate");
    chat.mark_processed(left[0].seq).await.expect("mark");
}

async fn the_same_event_stored_at_once_is_new_exactly_once(chat: Arc<dyn ChatStore>) {
    for round in 0..5 {
        let event = format!("race-{round}");
        let attempts = (0..8).map(|_| {
            let chat = chat.clone();
            let event = event.clone();
            tokio::spawn(async move {
                chat.store_incoming("slack".into(), event, "{}".into(), 2).await.expect("store")
            })
        });
        let results = futures_util::future::join_all(attempts).await;
        let new = results.into_iter().filter(|result| *result.as_ref().expect("task")).count();
        assert_eq!(new, 1, "exactly one of the concurrent stores of {event} is new");
    }
    let attempts = (0..8).map(|index| {
        let chat = chat.clone();
        tokio::spawn(async move {
            chat.enqueue("race".into(), "9.9".into(), format!("copy {index}"), 2)
                .await
                .expect("queue")
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    let new = results.into_iter().filter(|result| *result.as_ref().expect("task")).count();
    assert_eq!(new, 1, "a chat message queued at once from several tasks is queued once");
    let queued = chat.queued("race".into()).await.expect("queued");
    assert_eq!(queued.len(), 1);
    chat.dequeue(queued[0].seq).await.expect("dequeue");
    let rows = chat.unprocessed(100).await.expect("read");
    assert_eq!(rows.len(), 5, "one row per raced event: {rows:?}");
    for row in rows {
        chat.mark_processed(row.seq).await.expect("mark");
    }
}

fn thread(root: &str, session: &str) -> ThreadRow {
    ThreadRow {
        platform: "slack".into(),
        team: "T1".into(),
        channel: "C1".into(),
        root: root.into(),
        session_id: session.into(),
        owner: "alice".into(),
        started_at_ms: 5,
        started_by: root.into(),
        ended: false,
    }
}

async fn threads_queues_and_turns_round_trip(chat: &dyn ChatStore) {
    let find = |root: &str| chat.thread("slack".into(), "T1".into(), "C1".into(), root.into());
    assert_eq!(find("1.0").await.expect("read"), None);
    chat.set_thread(thread("1.0", "s1")).await.expect("map");
    chat.set_thread(thread("2.0", "s2")).await.expect("map");
    assert_eq!(find("1.0").await.expect("read"), Some(thread("1.0", "s1")));
    let of_session = chat.thread_of_session("s2".into()).await.expect("read");
    assert_eq!(of_session, Some(thread("2.0", "s2")));
    assert_eq!(chat.live_threads().await.expect("live").len(), 2);

    for (index, text) in ["a", "b", "c", "d"].iter().enumerate() {
        let id = format!("1.{index}");
        assert!(chat.enqueue("s1".into(), id, text.to_string(), 1).await.expect("queue"));
    }
    assert!(chat.enqueue("s2".into(), "2.1".into(), "z".into(), 1).await.expect("queue"));
    let again = chat.enqueue("s1".into(), "1.1".into(), "b".into(), 2).await.expect("queue");
    assert!(!again, "a chat message is queued once");
    assert_eq!(chat.queue_depth().await.expect("depth"), 5);
    let queued = chat.queued("s1".into()).await.expect("queued");
    let texts: Vec<_> = queued.iter().map(|row| row.message.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c", "d"], "in order");
    chat.dequeue(queued[0].seq).await.expect("dequeue");
    let sent_again = chat.enqueue("s1".into(), "1.0".into(), "a".into(), 3).await.expect("queue");
    assert!(!sent_again, "a message sent before is not queued again");
    assert_eq!(chat.queue_depth().await.expect("depth"), 4);

    assert_eq!(chat.posted_turn("s1".into(), "t1".into()).await.expect("turn"), None);
    chat.record_turn("s1".into(), "t1".into(), "m1".into(), 3).await.expect("record");
    chat.record_turn("s1".into(), "t1".into(), "m2".into(), 4).await.expect("again");
    let posted = chat.posted_turn("s1".into(), "t1".into()).await.expect("turn");
    assert_eq!(posted.as_deref(), Some("m1"), "the first post of a turn stands");

    chat.end_thread("s2".into()).await.expect("end");
    let live = chat.live_threads().await.expect("live");
    assert_eq!(live, vec![thread("1.0", "s1")]);
    assert!(chat.queued("s2".into()).await.expect("queued").is_empty(), "its queue is dropped");
    assert_eq!(chat.queue_depth().await.expect("depth"), 3);
    let ended = chat.thread_of_session("s2".into()).await.expect("read").expect("kept");
    assert!(ended.ended);
    // A later message in the ended thread starts a new session, replacing the mapping.
    chat.set_thread(thread("2.0", "s3")).await.expect("map again");
    assert_eq!(find("2.0").await.expect("read"), Some(thread("2.0", "s3")));

    assert!(chat.store_incoming("slack".into(), "left".into(), "{}".into(), 9).await.expect("s"));
}

async fn what_was_left_survives_a_restart(chat: &dyn ChatStore) {
    let left = chat.unprocessed(100).await.expect("read");
    let ids: Vec<_> = left.iter().map(|row| row.event_id.as_str()).collect();
    assert_eq!(ids, ["left"], "only the unprocessed event is processed after a restart");
    chat.mark_processed(left[0].seq).await.expect("mark");
    assert!(chat.unprocessed(100).await.expect("read").is_empty(), "processed once");
    let stored = chat.store_incoming("slack".into(), "Ev01".into(), "{}".into(), 9).await;
    assert!(!stored.expect("store"), "dedupe survives the restart");
    let queued = chat.queued("s1".into()).await.expect("queued");
    let texts: Vec<_> = queued.iter().map(|row| row.message.as_str()).collect();
    assert_eq!(texts, ["b", "c", "d"], "the queue survives, in order");
    let mut live = chat.live_threads().await.expect("live");
    live.sort_by(|a, b| a.root.cmp(&b.root));
    assert_eq!(live, vec![thread("1.0", "s1"), thread("2.0", "s3")], "mappings survive");
    let posted = chat.posted_turn("s1".into(), "t1".into()).await.expect("turn");
    assert_eq!(posted.as_deref(), Some("m1"), "a posted turn stays posted");
}
