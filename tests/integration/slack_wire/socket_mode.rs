//! Socket Mode against the fake: events are stored before they are acked, an inbox error
//! leaves them to be redelivered, duplicates and ignored events are acked, and neither a
//! dropped socket nor a `disconnect` refresh loses an event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentapi_proxy::chat::platform::ChatPlatform;
use agentapi_proxy::chat::slack::{SlackMode, SlackPlatform};
use agentapi_proxy::shutdown::Shutdown;

use super::{CollectingInbox, platform};
use crate::support::fake_slack::{
    ALICE, BOB, BOT_ID, CHANNEL, ConnectionEvent, DM_CHANNEL, Failure, FakeSlack, Injected, TEAM_ID,
};
use crate::support::wait_until;

const WAIT: Duration = Duration::from_secs(15);

/// A platform running Socket Mode into a fresh inbox; stops when dropped.
struct Running {
    platform: Arc<SlackPlatform>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.escalate();
        self.task.abort();
    }
}

async fn run(fake: &FakeSlack, inbox: Arc<CollectingInbox>) -> Running {
    let platform = platform(fake, SlackMode::Socket).await;
    assert!(!platform.connected(), "not connected before run");
    let shutdown = Shutdown::new();
    let task = tokio::spawn({
        let (platform, inbox, shutdown) = (platform.clone(), inbox.clone(), shutdown.clone());
        async move { platform.run(inbox, shutdown).await }
    });
    wait_until("the socket is connected", WAIT, || async { platform.connected().then_some(()) })
        .await;
    Running { platform, shutdown, task }
}

async fn wait_stored(inbox: &CollectingInbox, injected: &Injected) {
    let what = format!("{} in the inbox", injected.event_id);
    wait_until(&what, WAIT, || async { inbox.stored_event(&injected.event_id).map(drop) }).await;
}

async fn wait_acked(fake: &FakeSlack, injected: &Injected, times: usize) {
    let what = format!("{} acked {times} times", injected.event_id);
    wait_until(&what, WAIT, || async {
        (fake.acks(&injected.event_id).len() >= times).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_mention_is_acked_only_after_the_inbox_stored_it_and_a_redelivery_is_acked_too() {
    let fake = FakeSlack::start(Duration::from_millis(300)).await;
    let inbox = CollectingInbox::new();
    let running = run(&fake, inbox.clone()).await;
    inbox.set_gate(false);
    let mention = fake.inject_mention(ALICE, CHANNEL, "  hi there ", None);

    wait_until("the inbox is asked", WAIT, || async { (inbox.calls() >= 1).then_some(()) }).await;
    let redelivered = || async { (fake.deliveries(&mention.event_id) >= 2).then_some(()) };
    wait_until("Slack redelivers the un-acked envelope", WAIT, redelivered).await;
    assert!(fake.acks(&mention.event_id).is_empty(), "acked before the inbox stored it");

    inbox.set_gate(true);
    wait_acked(&fake, &mention, 2).await;
    let stored = inbox.stored();
    assert_eq!(stored.len(), 1, "the redelivery is a duplicate: {stored:?}");
    let message = &stored[0];
    assert_eq!(message.event_id, mention.event_id);
    assert_eq!(message.text, "hi there");
    assert!(message.mentions_bot && !message.direct);
    assert_eq!((message.thread.team.as_str(), message.thread.channel.as_str()), (TEAM_ID, CHANNEL));
    assert_eq!(
        (message.thread.root.as_str(), message.message_id.as_str()),
        (mention.ts.as_str(), mention.ts.as_str())
    );
    assert_eq!(message.user, ALICE);
    assert!(inbox.calls() >= 2);

    running.shutdown.escalate();
    let stopped = || async { running.task.is_finished().then_some(()) };
    wait_until("run returns on shutdown", WAIT, stopped).await;
    assert!(!running.platform.connected());
}

#[tokio::test]
async fn an_inbox_error_leaves_the_event_to_be_redelivered_and_stored_later() {
    let fake = FakeSlack::start(Duration::from_millis(300)).await;
    let inbox = CollectingInbox::new();
    let _running = run(&fake, inbox.clone()).await;
    inbox.fail_next(1);
    let mention = fake.inject_mention(BOB, CHANNEL, "please", None);
    wait_stored(&inbox, &mention).await;
    wait_acked(&fake, &mention, 1).await;
    assert!(fake.deliveries(&mention.event_id) >= 2, "stored only after a redelivery");
    assert!(inbox.calls() >= 2);
    let direct = fake.direct_message("in private");
    fake.send(&direct);
    wait_stored(&inbox, &direct).await;
    let message = inbox.stored_event(&direct.event_id).expect("stored");
    assert!(message.direct && !message.mentions_bot);
    assert_eq!(
        (message.thread.channel.as_str(), message.thread.root.as_str()),
        (DM_CHANNEL, direct.ts.as_str())
    );
}

#[tokio::test]
async fn bots_ourselves_edits_and_mention_twins_are_acked_but_never_stored() {
    let fake = FakeSlack::start(Duration::from_millis(300)).await;
    let inbox = CollectingInbox::new();
    let _running = run(&fake, inbox.clone()).await;
    let root = fake.inject_mention(ALICE, CHANNEL, "start", None);
    wait_stored(&inbox, &root).await;
    let ignored = [
        fake.message_twin(&root),
        fake.bot_message(CHANNEL, "B0OTHERBOT", "beep", Some(&root.ts)),
        fake.bot_message(CHANNEL, BOT_ID, "our own reply", Some(&root.ts)),
        fake.edit(CHANNEL, &root.ts, "<@U0FAKEBOT> start, edited"),
    ];
    for event in &ignored {
        fake.send(event);
    }
    let follow_up = fake.thread_message(BOB, CHANNEL, &root.ts, "and a follow-up");
    fake.send(&follow_up);
    wait_stored(&inbox, &follow_up).await;
    for event in &ignored {
        wait_acked(&fake, event, 1).await;
    }
    let stored: Vec<String> = inbox.stored().into_iter().map(|message| message.event_id).collect();
    assert_eq!(stored, [root.event_id.clone(), follow_up.event_id.clone()]);
    let message = inbox.stored_event(&follow_up.event_id).expect("stored");
    assert!(!message.mentions_bot && message.thread.root == root.ts);
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_no_event_is_lost() {
    let fake = FakeSlack::start(Duration::from_millis(300)).await;
    let inbox = CollectingInbox::new();
    let running = run(&fake, inbox.clone()).await;
    let root = fake.inject_mention(ALICE, CHANNEL, "start", None);
    let mut injected = vec![root.clone()];
    for number in 0..12 {
        if number % 4 == 3 {
            fake.drop_connections();
        }
        let message = fake.thread_message(ALICE, CHANNEL, &root.ts, &format!("message {number}"));
        fake.send(&message);
        injected.push(message);
    }
    for event in &injected {
        wait_stored(&inbox, event).await;
    }
    assert_eq!(inbox.stored().len(), injected.len(), "each event once");
    let opened = fake
        .connection_log()
        .iter()
        .filter(|event| matches!(event, ConnectionEvent::Opened(_)))
        .count();
    assert!(opened >= 2, "reconnected: {:?}", fake.connection_log());
    wait_until("connected again", WAIT, || async { running.platform.connected().then_some(()) })
        .await;
}

#[tokio::test]
async fn a_refresh_opens_the_next_connection_before_closing_the_old_and_loses_nothing() {
    let fake = FakeSlack::start(Duration::from_millis(300)).await;
    let inbox = CollectingInbox::new();
    let _running = run(&fake, inbox.clone()).await;
    let first = fake.inject_mention(ALICE, CHANNEL, "before", None);
    wait_stored(&inbox, &first).await;

    let asked = Instant::now();
    fake.send_disconnect("refresh_requested", Duration::from_secs(30));
    let closed =
        || async { fake.connection_log().contains(&ConnectionEvent::Closed(1)).then_some(()) };
    wait_until("the old connection is closed", WAIT, closed).await;
    assert!(asked.elapsed() < Duration::from_secs(10), "the client closed it, not the fake");
    let log = fake.connection_log();
    let position = |event| log.iter().position(|seen| *seen == event).expect("in the log");
    assert!(position(ConnectionEvent::Opened(2)) < position(ConnectionEvent::Closed(1)), "{log:?}");

    let second = fake.inject_mention(BOB, CHANNEL, "after", None);
    wait_stored(&inbox, &second).await;
    assert_eq!(fake.open_connections(), 1);
    assert_eq!(inbox.stored().len(), 2);
}

#[tokio::test]
async fn connected_follows_the_socket_and_a_rate_limited_reconnect_waits_for_retry_after() {
    let fake = FakeSlack::start(Duration::from_millis(300)).await;
    let inbox = CollectingInbox::new();
    let running = run(&fake, inbox.clone()).await;
    fake.fail_next("apps.connections.open", 1, Failure::RateLimited { retry_after_secs: 2 });
    let dropped = Instant::now();
    fake.drop_connections();
    let platform = running.platform.clone();
    wait_until("disconnected", WAIT, || async { (!platform.connected()).then_some(()) }).await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "while away", None);
    wait_until("connected again", WAIT, || async { platform.connected().then_some(()) }).await;
    assert!(
        dropped.elapsed() >= Duration::from_secs(2),
        "reconnected after {:?}",
        dropped.elapsed()
    );
    assert_eq!(fake.calls("apps.connections.open"), 3, "first open, the 429, the retry");
    wait_stored(&inbox, &mention).await;
}
