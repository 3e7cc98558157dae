//! The Events API check (`SlackPlatform::receive_http`) with requests signed as Slack signs
//! them: a good signature stores the event and answers 200; a bad, stale or missing one is
//! 401 and stores nothing; `url_verification` gets its challenge; an inbox error is 500.

use std::time::Duration;

use agentapi_proxy::chat::slack::SlackMode;
use serde_json::json;

use super::{CollectingInbox, platform};
use crate::support::fake_slack::{ALICE, CHANNEL, FakeSlack, signature, signed_headers, unix_now};

#[tokio::test]
async fn a_signed_event_is_stored_and_answered_200() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let inbox = CollectingInbox::new();
    let mention = fake.mention(ALICE, CHANNEL, "from http", None);
    let body = serde_json::to_vec(&mention.payload).expect("json");

    let answer = platform
        .receive_http(&signed_headers(&body, unix_now(), None), &body, inbox.as_ref())
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let stored = inbox.stored_event(&mention.event_id).expect("stored before the 200");
    assert_eq!(stored.text, "from http");

    let retry = signed_headers(&body, unix_now(), Some(1));
    let answer = platform.receive_http(&retry, &body, inbox.as_ref()).await;
    assert_eq!(answer.status, 200, "a retry is answered too");
    assert_eq!(inbox.stored().len(), 1);

    let bot = fake.bot_message(CHANNEL, "B0OTHER", "beep", None);
    let bot_body = serde_json::to_vec(&bot.payload).expect("json");
    let answer = platform
        .receive_http(&signed_headers(&bot_body, unix_now(), None), &bot_body, inbox.as_ref())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(inbox.stored().len(), 1, "a bot message is not stored");
}

#[tokio::test]
async fn bad_stale_or_missing_signatures_are_401_and_store_nothing() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let inbox = CollectingInbox::new();
    let mention = fake.mention(ALICE, CHANNEL, "forged", None);
    let body = serde_json::to_vec(&mention.payload).expect("json");

    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let headers = signed_headers(&body, unix_now(), None);
    let answer = platform.receive_http(&headers, &tampered, inbox.as_ref()).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.body["code"].is_string() && answer.body["message"].is_string());

    let stale = signed_headers(&body, unix_now() - 360, None);
    assert_eq!(platform.receive_http(&stale, &body, inbox.as_ref()).await.status, 401);
    let future = signed_headers(&body, unix_now() + 360, None);
    assert_eq!(platform.receive_http(&future, &body, inbox.as_ref()).await.status, 401);

    for missing in ["x-slack-signature", "x-slack-request-timestamp"] {
        let mut headers = signed_headers(&body, unix_now(), None);
        headers.remove(missing);
        assert_eq!(
            platform.receive_http(&headers, &body, inbox.as_ref()).await.status,
            401,
            "{missing}"
        );
    }
    let mut garbled = signed_headers(&body, unix_now(), None);
    garbled.insert("x-slack-signature", http::HeaderValue::from_static("v0=not-hex"));
    assert_eq!(platform.receive_http(&garbled, &body, inbox.as_ref()).await.status, 401);
    let now = unix_now();
    let mut other_secret = signed_headers(&body, now, None);
    let forged = signature("not-the-signing-secret", now, &body);
    other_secret.insert("x-slack-signature", http::HeaderValue::from_str(&forged).expect("hex"));
    assert_eq!(platform.receive_http(&other_secret, &body, inbox.as_ref()).await.status, 401);

    assert_eq!(inbox.calls(), 0, "nothing reached the inbox");
}

#[tokio::test]
async fn url_verification_answers_the_challenge_and_inbox_errors_are_500() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let inbox = CollectingInbox::new();
    let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"});
    let body = serde_json::to_vec(&challenge).expect("json");
    let answer = platform
        .receive_http(&signed_headers(&body, unix_now(), None), &body, inbox.as_ref())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({"challenge": challenge["challenge"]}));

    inbox.fail_next(1);
    let mention = fake.mention(ALICE, CHANNEL, "store me", None);
    let body = serde_json::to_vec(&mention.payload).expect("json");
    let answer = platform
        .receive_http(&signed_headers(&body, unix_now(), None), &body, inbox.as_ref())
        .await;
    assert_eq!(answer.status, 500, "Slack must retry");
    assert!(inbox.stored().is_empty());
    let retry = signed_headers(&body, unix_now(), Some(1));
    assert_eq!(platform.receive_http(&retry, &body, inbox.as_ref()).await.status, 200);
    assert_eq!(inbox.stored().len(), 1);

    let not_json = b"{not json";
    let answer = platform
        .receive_http(&signed_headers(not_json, unix_now(), None), not_json, inbox.as_ref())
        .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn the_signature_check_uses_the_injected_clock() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let mut settings = super::settings(&fake, SlackMode::Events);
    settings.clock = || 1_000_000_000_000;
    let platform =
        agentapi_proxy::chat::slack::SlackPlatform::connect(settings).await.expect("connects");
    let inbox = CollectingInbox::new();
    let mention = fake.mention(ALICE, CHANNEL, "long ago", None);
    let body = serde_json::to_vec(&mention.payload).expect("json");
    let now = platform
        .receive_http(&signed_headers(&body, unix_now(), None), &body, inbox.as_ref())
        .await;
    assert_eq!(now.status, 401, "far from the platform's clock");
    let then = signed_headers(&body, 1_000_000_000 - 299, None);
    assert_eq!(platform.receive_http(&then, &body, inbox.as_ref()).await.status, 200);
    assert_eq!(inbox.stored().len(), 1);
}
