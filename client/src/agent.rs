//! The agent behind a session (agentapi's own API, reached through the proxy):
//! status, messages, sending, uploads, the event stream, and send-and-wait.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::events::{AgentEvent, EventStream};

/// `GET /status` of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// `running` (booting or working) or `stable` (waiting for input).
    pub status: String,
    #[serde(default)]
    pub agent_type: String,
}

impl AgentStatus {
    pub fn is_stable(&self) -> bool {
        self.status == "stable"
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    /// `user` or `agent`.
    pub role: String,
    pub content: String,
    pub time: String,
}

#[derive(Debug, Deserialize)]
struct Messages {
    messages: Vec<Message>,
}

/// How a message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// A prompt; the agent must be `stable`.
    User,
    /// Raw keystrokes for the terminal.
    Raw,
}

/// Where an uploaded file landed on the agent's side.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Uploaded {
    #[serde(rename = "filePath")]
    pub file_path: String,
}

/// The agent of one session; get it from [`Client::agent`].
#[derive(Debug, Clone)]
pub struct Agent<'a> {
    pub(crate) client: &'a Client,
    pub(crate) session_id: String,
}

impl Agent<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/{}{rest}", self.session_id)
    }

    pub async fn status(&self) -> Result<AgentStatus> {
        self.client.get_json(&self.path("/status")).await
    }

    pub async fn messages(&self) -> Result<Vec<Message>> {
        Ok(self.client.get_json::<Messages>(&self.path("/messages")).await?.messages)
    }

    /// Sends a message; a `user` message needs the agent `stable` (else a 500 from it).
    pub async fn send_message(&self, content: &str, kind: MessageType) -> Result<()> {
        let body = serde_json::json!({ "content": content, "type": kind });
        let _: serde_json::Value = self.client.post_json(&self.path("/message"), &body).await?;
        Ok(())
    }

    /// Uploads a file (multipart field `file`, at most 10 MiB).
    pub async fn upload(&self, file_name: &str, bytes: Vec<u8>) -> Result<Uploaded> {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string());
        let form = reqwest::multipart::Form::new().part("file", part);
        let request =
            self.client.request(reqwest::Method::POST, &self.path("/upload")).multipart(form);
        self.client.send_json(request).await
    }

    /// The live event stream (replays the conversation first, like agentapi). No timeout.
    pub async fn events(&self) -> Result<EventStream> {
        let request = self
            .client
            .request_without_timeout(reqwest::Method::GET, &self.path("/events"))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = self.client.send(request).await?;
        Ok(EventStream::new(response))
    }

    /// Sends `content` as a user message once the agent is `stable`, waits until it is
    /// `stable` again, and returns the agent's reply (the newest agent message).
    pub async fn send_and_wait(&self, content: &str, within: Duration) -> Result<Message> {
        let work = async {
            self.wait_until_stable().await?;
            let mut events = self.events().await?;
            let before = self.messages().await?.len();
            self.send_message(content, MessageType::User).await?;
            let mut saw_running = false;
            while let Some(event) = events.next().await {
                if let AgentEvent::StatusChange { status, .. } = event? {
                    if status == "running" {
                        saw_running = true;
                    } else if status == "stable" && saw_running {
                        break;
                    }
                }
            }
            let messages = self.messages().await?;
            messages
                .into_iter()
                .skip(before)
                .rfind(|message| message.role == "agent")
                .ok_or_else(|| Error::Decode("the agent went stable without a reply".into()))
        };
        tokio::time::timeout(within, work)
            .await
            .map_err(|_| Error::Timeout(format!("no reply within {within:?}")))?
    }

    /// Polls `/status` until the agent is `stable`.
    pub async fn wait_until_stable(&self) -> Result<()> {
        let mut pause = Duration::from_millis(20);
        loop {
            if self.status().await?.is_stable() {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}
